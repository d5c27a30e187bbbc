//! What a browser sees through the hub: routing, snapshots, sequence numbers,
//! backpressure and heartbeat.

use chrono::DateTime;
use fiche_hub::{
    pump, AgentInfo, Card, Connection, CustomerCard, Figures, Hub, HubConfig, Priority, PumpEnd,
    Role, TicketKind, TicketStatus, TicketSummary, Viewer,
};
use fiche_model::{
    CallEvent, CallEventKind, CallId, Direction, Extension, Outcome, Party, Source, StopCause,
    Timestamp, Transfer, TransferKind,
};
use futures_util::{Sink, Stream};
use serde_json::Value;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// A websocket as the pump sees it: what the pump writes goes to `sink`,
/// what the browser says comes from `stream`.
struct Duplex<Si, St> {
    sink: Si,
    stream: St,
}

impl<Si: Sink<String> + Unpin, St: Unpin> Sink<String> for Duplex<Si, St> {
    type Error = Si::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().sink).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: String) -> Result<(), Self::Error> {
        Pin::new(&mut self.get_mut().sink).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().sink).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().sink).poll_close(cx)
    }
}

impl<Si: Unpin, St: Stream<Item = String> + Unpin> Stream for Duplex<Si, St> {
    type Item = String;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<String>> {
        Pin::new(&mut self.get_mut().stream).poll_next(cx)
    }
}

fn at(s: i64) -> Timestamp {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

fn call_id(key: &str) -> CallId {
    CallId::from_source_key(Source::Hep, key)
}

fn ev(key: &str, s: i64, kind: CallEventKind) -> CallEvent {
    CallEvent {
        call_id: call_id(key),
        source: Source::Hep,
        at: at(s),
        kind,
    }
}

fn inbound(key: &str, from: &str) -> CallEvent {
    ev(
        key,
        0,
        CallEventKind::CallStarted {
            source_key: key.into(),
            direction: Direction::Inbound,
            caller: Party {
                number: Some(from.into()),
                name: Some("<script>alert(1)</script>".into()),
                withheld: false,
            },
            callee: Party {
                number: Some("600".into()),
                ..Party::default()
            },
            diverted_from: vec![],
            queue: None,
        },
    )
}

fn ringing(key: &str, ext: &str) -> CallEvent {
    ev(
        key,
        1,
        CallEventKind::Ringing {
            extension: Extension::new(ext).unwrap(),
        },
    )
}

fn answered(key: &str, ext: &str) -> CallEvent {
    ev(
        key,
        5,
        CallEventKind::Answered {
            extension: Extension::new(ext),
        },
    )
}

fn ended(key: &str, outcome: Outcome) -> CallEvent {
    ev(
        key,
        60,
        CallEventKind::Ended {
            outcome,
            cause: "BYE".into(),
        },
    )
}

fn card(name: &str) -> Card {
    Card {
        caller_display: "+33 6 12 34 56 78".into(),
        customer: Some(CustomerCard {
            id: 7,
            name: name.into(),
            company: Some("Boulangerie Martin".into()),
            ..CustomerCard::default()
        }),
        other_matches: vec![],
        unknown: false,
    }
}

fn agent(user_id: i64, ext: &str) -> Viewer {
    Viewer {
        user_id,
        role: Role::Agent,
        extensions: vec![ext.into()],
    }
}

fn supervisor(user_id: i64) -> Viewer {
    Viewer {
        user_id,
        role: Role::Supervisor,
        extensions: vec![],
    }
}

fn directory() -> Vec<AgentInfo> {
    [
        (1, "Claire", "201"),
        (2, "Malik", "202"),
        (3, "Inès", "203"),
    ]
    .into_iter()
    .map(|(user_id, name, ext)| AgentInfo {
        user_id,
        name: name.into(),
        extensions: vec![ext.into()],
    })
    .collect()
}

fn hub() -> Hub {
    let hub = Hub::new(HubConfig::default());
    hub.set_agents(directory());
    hub
}

/// Every message queued for a connection, parsed, checking the envelope.
fn drain(conn: &mut Connection) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(frame) = conn.try_recv() {
        let value: Value = serde_json::from_str(&frame.to_text()).unwrap();
        assert_eq!(value["v"], 1);
        assert_eq!(value["seq"], frame.seq());
        out.push(value);
    }
    out
}

fn types(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect()
}

#[test]
fn agent_b_never_receives_agent_a_pop() {
    let hub = hub();
    let mut a = hub.connect(agent(1, "201"));
    let mut b = hub.connect(agent(2, "202"));
    drain(&mut a);
    drain(&mut b);

    hub.publish_call(&inbound("c1", "0612345678"), None);
    hub.publish_call(&ringing("c1", "201"), Some(card("Mme Martin")));
    hub.publish_call(&answered("c1", "201"), None);
    hub.publish_call(&ev("c1", 9, CallEventKind::Held), None);
    hub.publish_call(&ended("c1", Outcome::Answered), None);

    let got_a = drain(&mut a);
    assert_eq!(types(&got_a), ["pop", "call", "call", "call"]);
    assert_eq!(got_a[0]["card"]["customer"]["name"], "Mme Martin");
    assert_eq!(
        got_a[0]["call"]["caller"]["name"],
        "<script>alert(1)</script>"
    );
    assert!(drain(&mut b).is_empty(), "B must see nothing of A's call");
}

#[test]
fn ring_group_pops_three_then_withdraws_two_naming_who_answered() {
    let hub = hub();
    let mut conns: Vec<Connection> = [(1, "201"), (2, "202"), (3, "203")]
        .into_iter()
        .map(|(u, e)| hub.connect(agent(u, e)))
        .collect();
    let mut outsider = hub.connect(agent(4, "204"));
    for c in &mut conns {
        drain(c);
    }
    drain(&mut outsider);

    hub.publish_call(&inbound("g", "0612345678"), Some(card("Mme Martin")));
    for ext in ["201", "202", "203"] {
        hub.publish_call(&ringing("g", ext), None);
    }
    let pops: Vec<Vec<Value>> = conns.iter_mut().map(drain).collect();
    for (got, ext) in pops.iter().zip(["201", "202", "203"]) {
        assert_eq!(types(got), ["pop"], "{ext}");
        assert_eq!(got[0]["extension"], ext);
        assert_eq!(
            got[0]["card"]["customer"]["name"], "Mme Martin",
            "card kept from call start"
        );
    }

    // The SIP tracker says Answered, then RingingStopped for the others.
    hub.publish_call(&answered("g", "202"), None);
    for ext in ["201", "203"] {
        hub.publish_call(
            &ev(
                "g",
                5,
                CallEventKind::RingingStopped {
                    extension: Extension::new(ext).unwrap(),
                    cause: StopCause::AnsweredElsewhere,
                },
            ),
            None,
        );
    }
    let after: Vec<Vec<Value>> = conns.iter_mut().map(drain).collect();
    for i in [0, 2] {
        assert_eq!(
            types(&after[i]),
            ["withdrawn"],
            "one withdrawal each, not two"
        );
        assert_eq!(after[i][0]["answered_by"], "202");
        assert_eq!(after[i][0]["answered_by_name"], "Malik");
        assert_eq!(after[i][0]["call_id"], call_id("g").to_string());
    }
    assert_eq!(types(&after[1]), ["call"]);
    assert_eq!(after[1][0]["event"], "answered");
    assert!(drain(&mut outsider).is_empty());
}

#[test]
fn the_hub_counts_pops_and_withdrawals_queued_and_each_pops_latency() {
    let hub = hub();
    let conns: Vec<Connection> = [(1, "201"), (2, "202")]
        .into_iter()
        .map(|(u, e)| hub.connect(agent(u, e)))
        .collect();
    let _supervisor = hub.connect(supervisor(9));
    // The packet that made the phones ring arrived 20 ms ago.
    let arrived = chrono::Utc::now() - chrono::Duration::milliseconds(20);
    let at_arrival = |mut event: CallEvent| {
        event.at = arrived;
        event
    };
    hub.publish_call(&at_arrival(inbound("s", "0612345678")), None);
    assert_eq!(hub.stats().pops_sent(), 0, "a call start pops nothing");
    for ext in ["201", "202", "209"] {
        hub.publish_call(&at_arrival(ringing("s", ext)), None);
    }
    assert_eq!(hub.stats().pops_sent(), 2, "nobody is at 209");
    let latency = hub.stats().pop_latency();
    assert_eq!(latency.count, 2);
    assert!(latency.sum >= 2.0 * 0.02, "{latency:?}");
    let bucket_0_01: u64 = latency
        .buckets
        .iter()
        .filter(|(le, _)| *le <= 0.01)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(bucket_0_01, 0, "20 ms is above 10 ms: {latency:?}");

    hub.publish_call(&answered("s", "202"), None);
    assert_eq!(hub.stats().pops_withdrawn(), 1, "201's pop only");
    assert_eq!(
        hub.connections_by_role(),
        [(Role::Agent, 2), (Role::Supervisor, 1), (Role::Admin, 0)]
    );
    drop(conns);
}

#[test]
fn a_card_built_after_the_first_pop_reaches_every_ringing_agent() {
    let hub = hub();
    let mut a = hub.connect(agent(1, "201"));
    let mut b = hub.connect(agent(2, "202"));
    let mut c = hub.connect(agent(3, "203"));
    hub.publish_call(&inbound("g", "0612345678"), None);
    hub.publish_call(&ringing("g", "201"), None);
    hub.publish_call(&ringing("g", "202"), Some(card("Mme Martin")));
    let got_a = drain(&mut a);
    assert_eq!(types(&got_a), ["snapshot", "pop", "card"]);
    assert!(got_a[1]["card"].is_null());
    assert_eq!(got_a[2]["card"]["customer"]["name"], "Mme Martin");
    let got_b = drain(&mut b);
    assert_eq!(
        types(&got_b),
        ["snapshot", "pop"],
        "the pop carries the card"
    );
    assert_eq!(got_b[1]["card"]["customer"]["name"], "Mme Martin");
    assert_eq!(types(&drain(&mut c)), ["snapshot"]);

    // The agent creates the customer from the "unknown caller" form.
    hub.publish_card(call_id("g"), card("Mme Martin-Durand"));
    for conn in [&mut a, &mut b] {
        assert_eq!(
            drain(conn)[0]["card"]["customer"]["name"],
            "Mme Martin-Durand"
        );
    }
    assert!(drain(&mut c).is_empty());
}

/// A call missed before its card was completed from the store (the caller
/// hung up within the completion's time): the file still reaches the phones
/// that rang, so Claire has it to call back; nobody else gets it.
#[test]
fn a_card_completed_after_a_missed_call_reaches_the_phones_that_rang() {
    let hub = hub();
    let mut a = hub.connect(agent(1, "201"));
    let mut c = hub.connect(agent(3, "203"));
    hub.publish_call(&inbound("m", "0612345678"), None);
    hub.publish_call(&ringing("m", "201"), Some(card("Mme Martin")));
    hub.publish_call(&ended("m", Outcome::Missed), None);
    drain(&mut a);
    drain(&mut c);
    hub.publish_card(call_id("m"), card("Mme Martin, avec son dossier"));
    let got = drain(&mut a);
    assert_eq!(types(&got), ["card"], "{got:?}");
    assert_eq!(
        got[0]["card"]["customer"]["name"],
        "Mme Martin, avec son dossier"
    );
    assert!(drain(&mut c).is_empty());
}

#[test]
fn ringing_stopped_before_answer_is_completed_with_who_answered() {
    let hub = hub();
    let mut a = hub.connect(agent(1, "201"));
    hub.connect(agent(2, "202"));
    hub.publish_call(&inbound("g", "0612345678"), None);
    hub.publish_call(&ringing("g", "201"), None);
    hub.publish_call(&ringing("g", "202"), None);
    drain(&mut a);
    hub.publish_call(
        &ev(
            "g",
            4,
            CallEventKind::RingingStopped {
                extension: Extension::new("201").unwrap(),
                cause: StopCause::AnsweredElsewhere,
            },
        ),
        None,
    );
    hub.publish_call(&answered("g", "202"), None);
    let got = drain(&mut a);
    assert_eq!(types(&got), ["withdrawn", "withdrawn"]);
    assert!(got[0]["answered_by"].is_null());
    assert_eq!(got[1]["answered_by"], "202");
}

#[test]
fn reconnecting_agent_gets_snapshot_with_its_ringing_call() {
    let hub = hub();
    let first = hub.connect(agent(1, "201"));
    hub.publish_call(&inbound("c1", "0612345678"), None);
    hub.publish_call(&ringing("c1", "201"), Some(card("Mme Martin")));
    hub.publish_call(&inbound("other", "0699999999"), None);
    hub.publish_call(&ringing("other", "202"), None);
    hub.set_open_callbacks(1, 4);
    hub.disconnect(first.id);

    let mut again = hub.connect(agent(1, "201"));
    let got = drain(&mut again);
    assert_eq!(types(&got), ["snapshot"]);
    assert_eq!(got[0]["seq"], 1);
    let calls = got[0]["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "only its own call: {calls:?}");
    assert_eq!(calls[0]["call"]["id"], call_id("c1").to_string());
    assert_eq!(calls[0]["call"]["ringing_extensions"][0], "201");
    assert_eq!(calls[0]["card"]["customer"]["name"], "Mme Martin");
    assert_eq!(got[0]["open_callbacks"], 4);
    assert!(
        got[0].get("agents").is_none(),
        "agents do not get the board"
    );
}

#[test]
fn seq_increments_by_one_and_resync_sends_a_snapshot() {
    let hub = hub();
    let mut a = hub.connect(agent(1, "201"));
    hub.publish_call(&inbound("c1", "0612345678"), None);
    hub.publish_call(&ringing("c1", "201"), None);
    hub.publish_call(&answered("c1", "201"), None);
    hub.set_open_callbacks(1, 2);
    let got = drain(&mut a);
    let seqs: Vec<u64> = got.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(types(&got), ["snapshot", "pop", "call", "callbacks"]);

    let reply = hub
        .handle_client_message(a.id, r#"{"type":"resync"}"#)
        .unwrap();
    assert_eq!(reply, fiche_hub::ClientMessage::Resync);
    let got = drain(&mut a);
    assert_eq!(types(&got), ["snapshot"]);
    assert_eq!(got[0]["seq"], 5);
    assert_eq!(got[0]["calls"][0]["call"]["state"], "answered");
    assert_eq!(got[0]["open_callbacks"], 2);

    assert!(hub.handle_client_message(a.id, "not json").is_err());
    assert!(hub
        .handle_client_message(a.id, &"x".repeat(10_000))
        .is_err());
    assert!(drain(&mut a).is_empty(), "bad input changes nothing");
}

#[test]
fn supervisors_see_every_call_agent_state_ticket_and_figures() {
    let hub = hub();
    let mut sup = hub.connect(supervisor(9));
    let first = drain(&mut sup);
    assert_eq!(types(&first), ["snapshot"]);
    assert_eq!(first[0]["agents"].as_array().unwrap().len(), 3);
    assert_eq!(first[0]["agents"][0]["state"], "offline");
    assert!(first[0]["figures"].is_null() && first[0].get("figures").is_some());

    let _a = hub.connect(agent(1, "201"));
    hub.publish_call(&inbound("c1", "0612345678"), None);
    hub.publish_call(&ringing("c1", "201"), Some(card("Mme Martin")));
    hub.publish_call(&inbound("c2", "0699999999"), None);
    hub.publish_call(&ringing("c2", "202"), None);
    hub.publish_call(&answered("c1", "201"), None);
    hub.publish_figures(Figures {
        calls_in: 2,
        ..Figures::default()
    });

    let got = drain(&mut sup);
    let calls: Vec<(&str, &str)> = got
        .iter()
        .filter(|m| m["type"] == "call")
        .map(|m| {
            (
                m["call"]["source_key"].as_str().unwrap(),
                m["event"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("c1", "call_started"),
            ("c1", "ringing"),
            ("c2", "call_started"),
            ("c2", "ringing"),
            ("c1", "answered")
        ]
    );
    let states: Vec<(i64, &str)> = got
        .iter()
        .filter(|m| m["type"] == "agent_state")
        .map(|m| {
            (
                m["agent"]["user_id"].as_i64().unwrap(),
                m["agent"]["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (1, "available"),
            (1, "ringing"),
            (2, "ringing"),
            (1, "on_call")
        ]
    );
    assert!(got
        .iter()
        .any(|m| m["type"] == "card" && m["card"]["customer"]["name"] == "Mme Martin"));
    assert_eq!(got.last().unwrap()["type"], "figures");
    assert_eq!(got.last().unwrap()["figures"]["calls_in"], 2);

    drain(&mut sup);
    hub.handle_client_message(sup.id, r#"{"type":"resync"}"#)
        .unwrap();
    let snap = drain(&mut sup);
    assert_eq!(snap[0]["calls"].as_array().unwrap().len(), 2);
    assert_eq!(snap[0]["figures"]["calls_in"], 2);
    assert_eq!(snap[0]["agents"][0]["state"], "on_call");
    assert_eq!(snap[0]["agents"][0]["call_id"], call_id("c1").to_string());
}

#[test]
fn tickets_go_to_assignee_call_agent_and_supervisors_only() {
    let hub = hub();
    let mut a = hub.connect(agent(1, "201"));
    let mut b = hub.connect(agent(2, "202"));
    let mut c = hub.connect(agent(3, "203"));
    let mut sup = hub.connect(supervisor(9));
    hub.publish_call(&inbound("c1", "0612345678"), None);
    hub.publish_call(&ringing("c1", "201"), None);
    hub.publish_call(&answered("c1", "201"), None);
    for conn in [&mut a, &mut b, &mut c, &mut sup] {
        drain(conn);
    }
    hub.publish_ticket(&TicketSummary {
        id: 42,
        kind: TicketKind::Callback,
        status: TicketStatus::Open,
        priority: Priority::High,
        subject: "Rappeler Mme Martin".into(),
        customer_id: Some(7),
        customer_name: Some("Mme Martin".into()),
        assignee_user_id: Some(2),
        call_id: Some(call_id("c1")),
        due_at: None,
        attempts: 1,
        updated_at: at(70),
        created: false,
    });
    for (conn, expected) in [(&mut a, 1), (&mut b, 1), (&mut c, 0), (&mut sup, 1)] {
        let got = drain(conn);
        assert_eq!(got.len(), expected);
        if expected == 1 {
            assert_eq!(got[0]["type"], "ticket");
            assert_eq!(got[0]["ticket"]["id"], 42);
        }
    }
}

#[test]
fn ended_calls_leave_the_agents_active_list() {
    let hub = hub();
    let mut a = hub.connect(agent(1, "201"));
    hub.publish_call(&inbound("c1", "0612345678"), None);
    hub.publish_call(&ringing("c1", "201"), None);
    hub.publish_call(&answered("c1", "201"), None);
    hub.publish_call(&ended("c1", Outcome::Answered), None);
    let got = drain(&mut a);
    assert_eq!(got.last().unwrap()["event"], "ended");
    assert_eq!(got.last().unwrap()["call"]["state"], "ended");
    hub.resync(a.id).unwrap();
    let snap = drain(&mut a);
    assert_eq!(snap[0]["calls"].as_array().unwrap().len(), 0);
    assert_eq!(hub.agents()[0].state, fiche_hub::AgentState::Available);
}

#[test]
fn missed_ring_tells_the_ringing_agents_it_ended() {
    let hub = hub();
    let mut a = hub.connect(agent(1, "201"));
    let mut b = hub.connect(agent(2, "202"));
    hub.publish_call(&inbound("m", "0612345678"), None);
    hub.publish_call(&ringing("m", "201"), None);
    hub.publish_call(&ringing("m", "202"), None);
    drain(&mut a);
    drain(&mut b);
    hub.publish_call(&ended("m", Outcome::Missed), None);
    for conn in [&mut a, &mut b] {
        let got = drain(conn);
        assert_eq!(types(&got), ["call"]);
        assert_eq!(got[0]["call"]["outcome"], "missed");
    }
}

#[test]
fn transfer_moves_the_call_to_the_target_agent() {
    let hub = hub();
    let mut a = hub.connect(agent(1, "201"));
    let mut b = hub.connect(agent(2, "202"));
    hub.publish_call(&inbound("t", "0612345678"), None);
    hub.publish_call(&ringing("t", "201"), None);
    hub.publish_call(&answered("t", "201"), None);
    drain(&mut a);
    drain(&mut b);
    hub.publish_call(
        &ev(
            "t",
            20,
            CallEventKind::Transferred(Transfer {
                kind: TransferKind::Blind,
                by: None,
                transferee: None,
                to: Extension::new("202"),
            }),
        ),
        None,
    );
    assert_eq!(
        drain(&mut a)[0]["event"],
        "transferred",
        "the transferring agent sees it leave"
    );
    assert_eq!(drain(&mut b)[0]["call"]["agent_extension"], "202");
    hub.publish_call(&ev("t", 30, CallEventKind::Held), None);
    assert!(drain(&mut a).is_empty(), "no longer A's call");
    assert_eq!(drain(&mut b)[0]["event"], "held");
}

#[test]
fn moving_an_extension_moves_the_pops() {
    let hub = hub();
    let mut a = hub.connect(agent(1, "201"));
    let mut b = hub.connect(agent(2, "202"));
    let mut dir = directory();
    dir[0].extensions = vec![];
    dir[1].extensions = vec!["202".into(), "201".into()];
    hub.set_agents(dir);
    drain(&mut a);
    drain(&mut b);
    hub.publish_call(&inbound("c1", "0612345678"), None);
    hub.publish_call(&ringing("c1", "201"), None);
    assert!(drain(&mut a).is_empty());
    assert_eq!(types(&drain(&mut b)), ["pop"]);
}

#[test]
fn an_agent_added_or_changed_alone_gets_pops_and_reaches_the_board() {
    let hub = hub();
    let mut sup = hub.connect(supervisor(9));
    // A new account for Léa (a login or `POST /api/users`), already connected.
    let mut lea = hub.connect(agent(4, "204"));
    drain(&mut sup);
    drain(&mut lea);
    let lea_info = |extensions: &[&str]| AgentInfo {
        user_id: 4,
        name: "Léa".into(),
        extensions: extensions.iter().map(|e| (*e).to_owned()).collect(),
    };
    assert!(hub.upsert_agent(lea_info(&["204"])));
    let board = drain(&mut sup);
    assert_eq!(types(&board), ["agent_state"]);
    assert_eq!(board[0]["agent"]["name"], "Léa");
    assert_eq!(board[0]["agent"]["state"], "available");
    assert_eq!(board[0]["agent"]["connections"], 1);

    // The same entry again (her next login) tells nobody anything.
    assert!(hub.upsert_agent(lea_info(&["204"])));
    assert!(drain(&mut sup).is_empty());

    // She takes extension 205 instead: pops follow, 204 rings nobody.
    assert!(hub.upsert_agent(lea_info(&["205"])));
    assert_eq!(types(&drain(&mut sup)), ["agent_state"]);
    hub.publish_call(&inbound("c1", "0612345678"), None);
    hub.publish_call(&ringing("c1", "204"), None);
    assert!(drain(&mut lea).is_empty());
    hub.publish_call(&inbound("c2", "0612345679"), None);
    hub.publish_call(&ringing("c2", "205"), None);
    assert_eq!(types(&drain(&mut lea)), ["pop"]);

    // Claire's extension is hers in the directory: taking it needs the whole
    // directory, so nothing changes here and Claire still gets its pops.
    let mut claire = hub.connect(agent(1, "201"));
    drain(&mut claire);
    drain(&mut sup);
    assert!(!hub.upsert_agent(lea_info(&["201"])));
    assert!(drain(&mut sup).is_empty());
    hub.publish_call(&inbound("c3", "0612345670"), None);
    hub.publish_call(&ringing("c3", "201"), None);
    assert_eq!(types(&drain(&mut claire)), ["pop"]);
    assert!(drain(&mut lea).is_empty());
}

#[test]
fn a_socket_that_never_reads_does_not_block_others_and_resyncs_when_it_drains() {
    let hub = Hub::new(HubConfig {
        queue_capacity: 4,
        ..HubConfig::default()
    });
    hub.set_agents(directory());
    let stuck = hub.connect(supervisor(8));
    let mut live = hub.connect(supervisor(9));
    for i in 0..50 {
        let key = format!("c{i}");
        hub.publish_call(&inbound(&key, "0612345678"), None);
        // The live browser reads as it goes.
        assert!(
            !drain(&mut live).is_empty(),
            "event {i} reached the live socket"
        );
    }
    assert!(stuck.lagged());
    assert_eq!(stuck.queued(), 4, "queue bounded at its capacity");

    // The stuck socket is now driven: it drops its stale deltas and starts from a snapshot.
    let (sink_tx, mut sink_rx) = mpsc::channel::<String>(64);
    let sink = Box::pin(futures_util::sink::unfold(
        sink_tx,
        |tx, text: String| async move { tx.send(text).await.map(|()| tx) },
    ));
    let (_in_tx, in_rx) = mpsc::channel::<String>(1);
    let stream = Box::pin(futures_util::stream::unfold(in_rx, |mut rx| async move {
        rx.recv().await.map(|m| (m, rx))
    }));
    let mut socket = Duplex { sink, stream };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let hub2 = hub.clone();
        let id = stuck.id;
        let task = async move { pump(&hub2, stuck, &mut socket).await };
        let read = async {
            let text = sink_rx.recv().await.unwrap();
            let first: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(first["type"], "snapshot");
            assert_eq!(
                first["calls"].as_array().unwrap().len(),
                50,
                "the fresh board"
            );
            hub.publish_call(&inbound("after", "0612345678"), None);
            let next: Value = serde_json::from_str(&sink_rx.recv().await.unwrap()).unwrap();
            assert_eq!(next["seq"].as_u64(), first["seq"].as_u64().map(|s| s + 1));
            hub.disconnect(id);
        };
        let (end, ()) = tokio::join!(task, read);
        assert_eq!(end, PumpEnd::Removed);
    });
}

#[test]
fn a_socket_overflowing_too_often_is_closed() {
    let hub = Hub::new(HubConfig {
        queue_capacity: 2,
        max_overflows: 1,
        ..HubConfig::default()
    });
    let stuck = hub.connect(supervisor(8));
    for i in 0..3 {
        hub.publish_call(&inbound(&format!("c{i}"), "0612345678"), None);
    }
    assert!(stuck.lagged());
    hub.resync(stuck.id).unwrap();
    for i in 3..6 {
        hub.publish_call(&inbound(&format!("c{i}"), "0612345678"), None);
    }
    assert!(stuck.too_slow());
    assert_eq!(hub.connections(), 0);
    let mut stuck = stuck;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let rest = rt.block_on(async {
        let mut n = 0;
        while stuck.recv().await.is_some() {
            n += 1;
        }
        n
    });
    assert!(rest <= 2, "the queue ends after what it held");
}

#[tokio::test(start_paused = true)]
async fn heartbeat_pings_and_drops_a_silent_socket() {
    let hub = hub();
    tokio::spawn(hub.clone().run_heartbeat());
    let conn = hub.connect(agent(1, "201"));
    let (sink_tx, mut sink_rx) = mpsc::channel::<String>(64);
    let sink = Box::pin(futures_util::sink::unfold(
        sink_tx,
        |tx, text: String| async move { tx.send(text).await.map(|()| tx) },
    ));
    // A browser that never says anything (but keeps the TCP stream open).
    let stream = futures_util::stream::pending::<String>();
    let mut socket = Duplex { sink, stream };
    let started = tokio::time::Instant::now();
    let end = pump(&hub, conn, &mut socket).await;
    assert_eq!(end, PumpEnd::TimedOut);
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(60),
        "dropped after two silent intervals"
    );
    let mut texts = Vec::new();
    while let Ok(t) = sink_rx.try_recv() {
        texts.push(serde_json::from_str::<Value>(&t).unwrap());
    }
    assert_eq!(types(&texts), ["snapshot", "ping"]);
    assert_eq!(
        texts[1]["seq"], 1,
        "ping carries the last seq without advancing it"
    );
    assert_eq!(hub.connections(), 0);
    assert_eq!(hub.agents()[0].state, fiche_hub::AgentState::Offline);
}

#[tokio::test(start_paused = true)]
async fn a_browser_answering_pings_stays_connected() {
    let hub = hub();
    tokio::spawn(hub.clone().run_heartbeat());
    let conn = hub.connect(agent(1, "201"));
    let (sink_tx, mut sink_rx) = mpsc::channel::<String>(64);
    let sink = Box::pin(futures_util::sink::unfold(
        sink_tx,
        |tx, text: String| async move { tx.send(text).await.map(|()| tx) },
    ));
    let (in_tx, in_rx) = mpsc::channel::<String>(4);
    let stream = Box::pin(futures_util::stream::unfold(in_rx, |mut rx| async move {
        rx.recv().await.map(|m| (m, rx))
    }));
    let mut socket = Duplex { sink, stream };
    let browser = async move {
        let mut pings = 0;
        while let Some(text) = sink_rx.recv().await {
            let msg: Value = serde_json::from_str(&text).unwrap();
            if msg["type"] == "ping" {
                pings += 1;
                if pings == 5 {
                    break; // 150 s alive; then hang up.
                }
                in_tx.send(r#"{"type":"pong"}"#.into()).await.unwrap();
            }
        }
        in_tx.send(r#"{"type":"ping"}"#.into()).await.unwrap();
        let pong: Value = serde_json::from_str(&sink_rx.recv().await.unwrap()).unwrap();
        assert_eq!(pong["type"], "pong");
        in_tx.send("<not json>".into()).await.unwrap();
        let error: Value = serde_json::from_str(&sink_rx.recv().await.unwrap()).unwrap();
        assert_eq!(
            (error["type"].as_str(), error["code"].as_str()),
            (Some("error"), Some("bad_message"))
        );
        in_tx
            .send(r#"{"type":"click_to_call"}"#.into())
            .await
            .unwrap();
        let error: Value = serde_json::from_str(&sink_rx.recv().await.unwrap()).unwrap();
        assert_eq!(error["code"], "unsupported");
        drop(in_tx);
        pings
    };
    let (end, pings) = tokio::join!(pump(&hub, conn, &mut socket), browser);
    assert_eq!(pings, 5);
    assert_eq!(end, PumpEnd::ClientClosed);
}

#[test]
fn one_heartbeat_pings_every_socket_and_drops_only_the_silent_ones() {
    let hub = hub();
    let mut quiet = hub.connect(agent(1, "201"));
    let mut alive = hub.connect(agent(2, "202"));
    drain(&mut quiet);
    drain(&mut alive);
    hub.publish_call(&inbound("c1", "0612345678"), None);
    hub.publish_call(&ringing("c1", "202"), None);
    let delta = drain(&mut alive);
    assert_eq!(hub.heartbeat(), 0, "nobody dropped at the first beat");
    let quiet_ping = drain(&mut quiet);
    let alive_ping = drain(&mut alive);
    assert_eq!(types(&quiet_ping), ["ping"]);
    assert_eq!(types(&alive_ping), ["ping"]);
    assert_eq!(
        alive_ping[0]["seq"],
        delta.last().unwrap()["seq"],
        "a ping carries the seq of the last message, without advancing it"
    );
    alive.heard();
    assert_eq!(
        hub.heartbeat(),
        1,
        "the socket that never answered is dropped"
    );
    assert!(quiet.silent());
    assert!(!alive.silent());
    assert_eq!(types(&drain(&mut alive)), ["ping"]);
    assert_eq!(hub.connections(), 1);
    let agents = hub.agents();
    assert_eq!(agents[0].state, fiche_hub::AgentState::Offline);
    assert_ne!(agents[1].state, fiche_hub::AgentState::Offline);
}

/// A socket whose writes never complete (the browser stopped reading and
/// TCP is full).
struct Stalled;

impl Sink<String> for Stalled {
    type Error = std::convert::Infallible;

    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, _: String) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Pending
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Pending
    }
}

#[tokio::test(start_paused = true)]
async fn a_write_that_never_completes_times_out_after_one_interval() {
    let hub = hub();
    let conn = hub.connect(agent(1, "201"));
    let mut socket = Duplex {
        sink: Stalled,
        stream: futures_util::stream::pending::<String>(),
    };
    let started = tokio::time::Instant::now();
    let end = pump(&hub, conn, &mut socket).await;
    assert_eq!(end, PumpEnd::TimedOut);
    assert_eq!(started.elapsed(), fiche_hub::PING_EVERY);
    assert_eq!(hub.connections(), 0, "the stalled socket left the hub");
}

#[test]
fn unknown_connection_is_a_typed_error() {
    let hub = hub();
    let conn = hub.connect(agent(1, "201"));
    hub.disconnect(conn.id);
    assert!(matches!(
        hub.handle_client_message(conn.id, r#"{"type":"pong"}"#),
        Err(fiche_hub::HubError::UnknownConnection(_))
    ));
    assert!(hub.resync(conn.id).is_err());
}

/// A flood of setups never answered cannot grow the board without bound: the
/// hub holds `max_calls`, the oldest unanswered setup makes way (its card and
/// its place at the agents' extensions with it), and answered calls stay.
#[test]
fn a_flood_of_setups_replaces_itself_on_a_bounded_board() {
    let hub = Hub::new(HubConfig {
        max_calls: 3,
        ..HubConfig::default()
    });
    hub.set_agents(directory());
    hub.publish_call(&inbound("talking", "0611111111"), None);
    hub.publish_call(&ringing("talking", "201"), Some(card("Dupont")));
    hub.publish_call(&answered("talking", "201"), None);
    for i in 0..50 {
        let key = format!("flood{i}");
        hub.publish_call(&inbound(&key, "0699999999"), None);
        hub.publish_call(&ringing(&key, "202"), Some(card("Inconnu")));
    }
    let board = hub.visible_calls(&supervisor(9));
    assert_eq!(board.len(), 3, "the board holds at most max_calls");
    assert!(
        board.iter().any(|c| c.id == call_id("talking")),
        "the answered call stays"
    );
    assert!(board.iter().any(|c| c.id == call_id("flood49")));
    assert!(
        hub.call(&call_id("flood0")).is_none(),
        "the oldest setup made way"
    );
    // 202 sees only the setups the board still holds.
    let nadia = hub.visible_calls(&agent(2, "202"));
    assert_eq!(nadia.len(), 2, "{nadia:?}");
    // A connecting supervisor's snapshot is bounded too.
    let mut sup = hub.connect(supervisor(9));
    let snapshot = drain(&mut sup);
    assert_eq!(snapshot[0]["type"], "snapshot");
    assert_eq!(snapshot[0]["calls"].as_array().map(Vec::len), Some(3));
}
