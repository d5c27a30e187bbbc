//! End-to-end over real TCP: the AMI driver (`fiche_pbx::driver::ami::run`)
//! against the AMI test server replaying `tests/data/ami/*.ami`. Checks the
//! call events Fiche emits and the live-call table they build.
//!
//! The time limits below are guards against a hung test, not speed assertions.

use fiche_e2e::ami_server::{AmiScript, AmiServerOptions, AmiTestServer};
use fiche_e2e::events::lines;
use fiche_pbx::driver::ami::{run, AmiCommand, AmiSourceConfig, OriginateError};
use fiche_pbx::{CallEvent, CallEventKind, CallState, LiveCalls, Outcome};
use serde_json::json;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Guard against a hung test.
const GUARD: Duration = Duration::from_secs(30);

struct Fiche {
    events: mpsc::Receiver<CallEvent>,
    commands: mpsc::Sender<AmiCommand>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

fn config(server: &AmiTestServer, use_md5: bool) -> AmiSourceConfig {
    let options = AmiServerOptions::default();
    let mut config = AmiSourceConfig::new(
        "test-pbx",
        server.addr().to_string(),
        options.username,
        options.secret,
    );
    config.use_md5 = use_md5;
    config.ping_interval = Duration::from_millis(100);
    config.ping_timeout = Duration::from_millis(500);
    config.reconnect_initial = Duration::from_millis(20);
    config.reconnect_max = Duration::from_millis(200);
    config
}

fn start_fiche(config: AmiSourceConfig) -> Fiche {
    let (events_tx, events) = mpsc::channel(256);
    let (commands, commands_rx) = mpsc::channel(8);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(config, events_tx, commands_rx, shutdown.clone()));
    Fiche {
        events,
        commands,
        shutdown,
        task,
    }
}

impl Fiche {
    /// Collects events until `calls` calls have ended.
    async fn until_ended(&mut self, calls: usize) -> Vec<CallEvent> {
        let mut out = Vec::new();
        let mut ended = 0;
        let collect = async {
            while ended < calls {
                let Some(event) = self.events.recv().await else {
                    break;
                };
                if matches!(event.kind, CallEventKind::Ended { .. }) {
                    ended += 1;
                }
                out.push(event);
            }
        };
        tokio::time::timeout(GUARD, collect)
            .await
            .unwrap_or_else(|_| panic!("timed out; events so far: {:#?}", render(&out)));
        out
    }

    /// Collects events until one of `kind` arrives.
    async fn until(&mut self, kind: &str) -> Vec<CallEvent> {
        let mut out = Vec::new();
        let collect = async {
            while let Some(event) = self.events.recv().await {
                let done = event.kind.name() == kind;
                out.push(event);
                if done {
                    break;
                }
            }
        };
        tokio::time::timeout(GUARD, collect)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out waiting for {kind}; events so far: {:#?}",
                    render(&out)
                )
            });
        out
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(GUARD, self.task)
            .await
            .expect("the driver stops on shutdown")
            .expect("the driver does not panic");
    }
}

/// The golden lines of typed events, read through their JSON (what `/ws`
/// streams): the same lines `ami_binary` gets from the binary.
fn render(events: &[CallEvent]) -> Vec<String> {
    let json: Vec<serde_json::Value> = events
        .iter()
        .map(|event| serde_json::to_value(event).unwrap_or_else(|e| json!(e.to_string())))
        .collect();
    lines(&json)
}

fn live_table(events: &[CallEvent]) -> LiveCalls {
    let mut table = LiveCalls::new();
    for event in events {
        table.apply(event);
    }
    table
}

/// Replays `script`, expects exactly `expected`, returns the events.
async fn flow(script: &str, use_md5: bool, expected: &[&str]) -> Vec<CallEvent> {
    let server = AmiTestServer::start(
        AmiServerOptions::default(),
        AmiScript::load(script).unwrap(),
    )
    .await
    .unwrap();
    let mut fiche = start_fiche(config(&server, use_md5));
    let calls = expected
        .iter()
        .filter(|e| e.contains(" call_started "))
        .count();
    let events = fiche.until_ended(calls).await;
    assert_eq!(render(&events), expected, "{script}");
    assert!(events.iter().all(|e| e.source == fiche_pbx::Source::Ami));
    fiche.stop().await;
    server.stop().await;
    events
}

const INBOUND: &str = "#1 call_started inbound caller=0612345678 (DUPONT Marie) callee=0412345678";

#[tokio::test]
async fn inbound_answered_with_md5_login() {
    let events = flow(
        "inbound_answered",
        true,
        &[
            INBOUND,
            "#1 ringing 201",
            "#1 answered 201",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ],
    )
    .await;
    let table = live_table(&events);
    let call = table.snapshot().pop().unwrap();
    assert_eq!(call.state, CallState::Ended);
    assert_eq!(call.agent_extension.as_deref(), Some("201"));
    assert_eq!(call.outcome, Some(Outcome::Answered));
    let json = serde_json::to_value(&call).unwrap();
    assert_eq!(json["source"], "ami");
    assert_eq!(json["source_key"], "test-pbx/1700000100.1");
    assert_eq!(json["caller"]["number"], "0612345678");
}

#[tokio::test]
async fn inbound_missed() {
    flow(
        "inbound_missed",
        false,
        &[
            INBOUND,
            "#1 ringing 201",
            "#1 ended missed: Normal Clearing (Q.850 cause 16)",
        ],
    )
    .await;
}

#[tokio::test]
async fn ring_group_of_three_answered_by_one() {
    let events = flow(
        "ring_group",
        false,
        &[
            INBOUND,
            "#1 ringing 201",
            "#1 ringing 202",
            "#1 ringing 203",
            "#1 answered 202",
            "#1 ringing_stopped 201: answered elsewhere",
            "#1 ringing_stopped 203: answered elsewhere",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ],
    )
    .await;
    let call = live_table(&events).snapshot().pop().unwrap();
    assert_eq!(call.rang_extensions, ["201", "202", "203"]);
    assert_eq!(call.agent_extension.as_deref(), Some("202"));
}

#[tokio::test]
async fn queue_answered_after_ring_no_answer() {
    flow(
        "queue_answered",
        false,
        &[
            INBOUND,
            "#1 ringing 201",
            "#1 ringing_stopped 201: no answer",
            "#1 ringing 203",
            "#1 answered 203",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ],
    )
    .await;
}

#[tokio::test]
async fn queue_abandoned() {
    let events = flow(
        "queue_abandoned",
        false,
        &[
            INBOUND,
            "#1 ringing 201",
            "#1 ended missed: abandoned in queue 400 after waiting 11 s",
        ],
    )
    .await;
    let call = live_table(&events).snapshot().pop().unwrap();
    assert_eq!(call.outcome, Some(Outcome::Missed));
}

#[tokio::test]
async fn blind_transfer() {
    let events = flow(
        "blind_transfer",
        false,
        &[
            INBOUND,
            "#1 ringing 201",
            "#1 answered 201",
            "#1 transferred 202 blind by 201 sending 0612345678",
            "#1 ringing 202",
            "#1 answered 202",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ],
    )
    .await;
    let call = live_table(&events).snapshot().pop().unwrap();
    assert_eq!(call.transferred_to, ["202"]);
    assert_eq!(call.agent_extension.as_deref(), Some("202"));
}

#[tokio::test]
async fn attended_transfer() {
    flow(
        "attended_transfer",
        false,
        &[
            INBOUND,
            "#1 ringing 201",
            "#1 answered 201",
            "#1 held",
            "#2 call_started internal caller=201 (Claire) callee=202",
            "#2 ringing 202",
            "#2 answered 202",
            "#1 transferred 202 attended by 201 sending 0612345678",
            "#1 answered 202",
            "#1 resumed",
            "#2 ended answered: attended transfer completed",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ],
    )
    .await;
}

#[tokio::test]
async fn hold_and_unhold() {
    flow(
        "hold_unhold",
        false,
        &[
            INBOUND,
            "#1 ringing 201",
            "#1 answered 201",
            "#1 held",
            "#1 resumed",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ],
    )
    .await;
}

#[tokio::test]
async fn outbound_from_an_agent() {
    let events = flow(
        "outbound",
        false,
        &[
            "#1 call_started outbound caller=201 (Claire) callee=0612345678",
            "#1 answered -",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ],
    )
    .await;
    let call = live_table(&events).snapshot().pop().unwrap();
    assert_eq!(call.agent_extension.as_deref(), Some("201"));
}

#[tokio::test]
async fn local_channels_make_no_phantom_call() {
    flow(
        "local_followme",
        false,
        &[
            INBOUND,
            "#1 ringing 201",
            "#1 answered 201",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ],
    )
    .await;
}

#[tokio::test]
async fn withheld_caller() {
    let events = flow(
        "withheld",
        false,
        &[
            "#1 call_started inbound caller=withheld callee=0412345678",
            "#1 ringing 201",
            "#1 ended missed: Normal Clearing (Q.850 cause 16)",
        ],
    )
    .await;
    let json = serde_json::to_value(live_table(&events).snapshot().pop().unwrap()).unwrap();
    assert_eq!(json["caller"]["withheld"], true);
    assert!(json["caller"]["number"].is_null());
}

#[tokio::test]
async fn connection_dropped_while_ringing_and_restored_after_the_call_ended() {
    let server = AmiTestServer::start(
        AmiServerOptions::default(),
        AmiScript::load("drop_during_ringing").unwrap(),
    )
    .await
    .unwrap();
    let mut fiche = start_fiche(config(&server, false));
    let events = fiche.until_ended(1).await;
    assert_eq!(
        render(&events),
        [
            INBOUND,
            "#1 ringing 201",
            "#1 ended missed: ended while disconnected"
        ]
    );
    assert!(server.logins() >= 2, "Fiche logged in again");
    let call = live_table(&events).snapshot().pop().unwrap();
    assert_eq!(call.state, CallState::Ended);
    assert!(call.ringing_extensions.is_empty());
    fiche.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn fiche_restarted_during_an_answered_call() {
    let server = AmiTestServer::start(
        AmiServerOptions::default(),
        AmiScript::load("restart_answered").unwrap(),
    )
    .await
    .unwrap();
    let mut first = start_fiche(config(&server, false));
    let before = first.until("answered").await;
    assert_eq!(
        render(&before),
        [INBOUND, "#1 ringing 201", "#1 answered 201"]
    );
    first.stop().await;

    // A new Fiche with an empty table: the resync shows the call once.
    let mut second = start_fiche(config(&server, false));
    let after = second.until_ended(1).await;
    assert_eq!(
        render(&after),
        [
            INBOUND,
            "#1 answered 201",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)"
        ]
    );
    assert_eq!(
        before[0].call_id, after[0].call_id,
        "same call id across the restart"
    );
    let table = live_table(&after);
    assert_eq!(table.len(), 1, "no duplicate, no ghost");
    assert_eq!(table.snapshot()[0].agent_extension.as_deref(), Some("201"));
    second.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn click_to_call_rings_the_agent_then_dials_the_customer() {
    let server = AmiTestServer::start(AmiServerOptions::default(), AmiScript::default())
        .await
        .unwrap();
    let mut fiche = start_fiche(config(&server, false));
    server.ready_sessions(1).await;
    let (reply, answer) = oneshot::channel();
    fiche
        .commands
        .send(AmiCommand::Originate {
            agent_extension: "201".into(),
            number: "0612345678".into(),
            caller_id: None,
            reply,
        })
        .await
        .unwrap();
    let call_id = tokio::time::timeout(GUARD, answer)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let events = fiche.until_ended(1).await;
    assert_eq!(
        render(&events),
        [
            "#1 call_started outbound caller=201 callee=0612345678",
            "#1 answered -",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ]
    );
    assert_eq!(
        events[0].call_id, call_id,
        "the originate returns the call's id"
    );
    let originate = &server.originates()[0];
    let field = |key: &str| {
        originate
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    assert_eq!(field("Channel"), "PJSIP/201");
    assert_eq!(field("Exten"), "0612345678");
    assert_eq!(field("Context"), "from-internal");
    assert_eq!(field("Async"), "true");
    assert_eq!(field("CallerID"), "0612345678");

    // Not an agent: refused before reaching Asterisk.
    let (reply, answer) = oneshot::channel();
    fiche
        .commands
        .send(AmiCommand::Originate {
            agent_extension: "PJSIP/201&PJSIP/202".into(),
            number: "0612345678".into(),
            caller_id: None,
            reply,
        })
        .await
        .unwrap();
    let refused = tokio::time::timeout(GUARD, answer).await.unwrap().unwrap();
    assert!(matches!(
        refused,
        Err(OriginateError::Invalid {
            field: "agent_extension",
            ..
        })
    ));
    assert_eq!(server.originates().len(), 1);
    fiche.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn wedged_manager_is_detected_by_ping_and_reconnected() {
    let options = AmiServerOptions {
        answer_pings: false,
        ..AmiServerOptions::default()
    };
    let server = AmiTestServer::start(options, AmiScript::default())
        .await
        .unwrap();
    let fiche = start_fiche(config(&server, false));
    // Each session stops answering pings, so Fiche must drop it and log in again.
    tokio::time::timeout(GUARD, server.ready_sessions(3))
        .await
        .expect("Fiche reconnects after unanswered pings");
    assert!(server.pings() >= 2);
    fiche.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn wrong_secret_is_refused_and_retried_without_crashing() {
    let server = AmiTestServer::start(AmiServerOptions::default(), AmiScript::default())
        .await
        .unwrap();
    let mut config = config(&server, true);
    config.secret = "wrong".into();
    let fiche = start_fiche(config);
    let deadline = tokio::time::Instant::now() + GUARD;
    while server.failed_logins() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Fiche retries its login"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.logins(), 0);
    fiche.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn two_pbxs_feed_one_event_stream() {
    let first = AmiTestServer::start(
        AmiServerOptions::default(),
        AmiScript::load("inbound_answered").unwrap(),
    )
    .await
    .unwrap();
    let second = AmiTestServer::start(
        AmiServerOptions::default(),
        AmiScript::load("outbound").unwrap(),
    )
    .await
    .unwrap();
    let (events_tx, mut events) = mpsc::channel(256);
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    for (name, server) in [("paris", &first), ("lyon", &second)] {
        let mut config = config(server, false);
        config.name = name.into();
        let (_commands, commands_rx) = mpsc::channel(1);
        tasks.push(tokio::spawn(run(
            config,
            events_tx.clone(),
            commands_rx,
            shutdown.clone(),
        )));
    }
    drop(events_tx);
    let mut got = Vec::new();
    let collect = async {
        let mut ended = 0;
        while ended < 2 {
            let event = events.recv().await.expect("both sources run");
            ended += usize::from(matches!(event.kind, CallEventKind::Ended { .. }));
            got.push(event);
        }
    };
    tokio::time::timeout(GUARD, collect)
        .await
        .expect("both calls end");
    let table = live_table(&got);
    assert_eq!(table.len(), 2);
    let mut outcomes: Vec<_> = table
        .snapshot()
        .iter()
        .map(|c| (c.direction, c.outcome))
        .collect();
    outcomes.sort_by_key(|(d, _)| format!("{d:?}"));
    assert_eq!(
        outcomes,
        [
            (fiche_pbx::Direction::Inbound, Some(Outcome::Answered)),
            (fiche_pbx::Direction::Outbound, Some(Outcome::Answered)),
        ]
    );
    shutdown.cancel();
    for task in tasks {
        tokio::time::timeout(GUARD, task).await.unwrap().unwrap();
    }
    first.stop().await;
    second.stop().await;
}
