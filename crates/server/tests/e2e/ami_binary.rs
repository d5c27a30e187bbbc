//! The real `fiche serve` binary fed by the AMI test server over real TCP
//! (`FICHE_AMI_*` variables, or `[[ami]]` tables of a `--config` file): for
//! every AMI flow of issue 3, the exact call events streamed on `/ws` and the
//! call as `/api/calls/live` shows it once ended. The expected events are those
//! `ami_flows.rs` asserts on the driver alone: the binary must not change them.
//!
//! `cargo test -p fiche-server --test e2e ami_binary::`; nothing installed
//! (`FICHE_E2E_KEEP=1` keeps Fiche's logs).
//! The time limits below are guards against a hung test, not speed assertions.

use bytes::Bytes;
use fiche_e2e::ami_server::{AmiScript, AmiServerOptions, AmiTestServer};
use fiche_e2e::events::{epoch_seconds, lines};
use fiche_e2e::fiche_ami::{AmiGate, AmiSetup, FicheProcess, Scratch};
use fiche_e2e::ws::EventStream;
use fiche_pbx::hep::{encode, HepPacket};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

/// Guard against a hung test: the longest wait for the events of one flow.
const GUARD: Duration = Duration::from_secs(30);
/// Silence after the last `ended` before the event list is closed, so that an
/// extra event after the end is seen (and fails the test).
const QUIET_AFTER_END: Duration = Duration::from_millis(500);

const INBOUND: &str = "#1 call_started inbound caller=0612345678 (DUPONT Marie) callee=0412345678";
const NORMAL_CLEARING: &str = "Normal Clearing (Q.850 cause 16)";
/// The AMI test server's credentials.
const USER: &str = "fiche";
const SECRET: &str = "s3cret";

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn env_setup(addr: SocketAddr, secret: &str) -> AmiSetup {
    AmiSetup::Env {
        addr: addr.to_string(),
        username: USER.to_owned(),
        secret: secret.to_owned(),
    }
}

async fn ami_server(script: &str) -> AmiTestServer {
    AmiTestServer::start(
        AmiServerOptions::default(),
        AmiScript::load(script).expect("loading the AMI script"),
    )
    .await
    .expect("starting the AMI test server")
}

/// One AMI test server replaying a script behind a gate, and one Fiche.
struct Bed {
    // Drop order is field order: Fiche first, its folder last.
    fiche: FicheProcess,
    events: EventStream,
    gate: AmiGate,
    server: AmiTestServer,
    _scratch: Scratch,
    /// When the test began (seconds since the epoch, with slack).
    began: f64,
}

impl Bed {
    /// Fiche with the AMI source of `setup(gate address)`; the gate opens once
    /// `/ws` is subscribed, so the replay cannot start before the test listens.
    async fn start(script: &str, setup: impl FnOnce(SocketAddr) -> AmiSetup) -> Self {
        let began = now_seconds() - 1.0;
        let server = ami_server(script).await;
        let gate = AmiGate::start(server.addr())
            .await
            .expect("starting the gate");
        let scratch = Scratch::create().expect("scratch folder");
        let fiche = FicheProcess::start(&scratch, "fiche", &setup(gate.addr()), &[])
            .await
            .expect("starting fiche");
        let events = fiche.events().await.expect("subscribing to /ws");
        gate.open();
        Self {
            fiche,
            events,
            gate,
            server,
            _scratch: scratch,
            began,
        }
    }

    /// Events until every started call has ended and a quiet time passed.
    async fn collect(&mut self) -> Vec<Value> {
        self.events.collect(GUARD, QUIET_AFTER_END).await
    }

    /// Fiche's log tail and the events, for failure messages.
    fn context(&self, events: &[Value], what: &str) -> String {
        format!(
            "{what}\n--- events on /ws:\n{}\n--- fiche log (tail):\n{}",
            events
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            self.fiche.log_tail(60),
        )
    }
}

/// The call ids in order of first appearance.
fn call_ids(events: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for event in events {
        let id = event["call_id"].as_str().unwrap_or_default().to_owned();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// The fields every event of a type carries, whatever the source (the HEP
/// suite sees the same): `call_id`, `source`, `at`, `type`, then these.
fn event_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "call_started" => &["source_key", "direction", "caller", "callee"],
        "ringing" | "answered" => &["extension"],
        "ringing_stopped" => &["extension", "cause"],
        "parties_updated" => &["caller", "callee"],
        "transferred" => &["kind", "by", "transferee", "to"],
        "ended" => &["outcome", "cause"],
        _ => &[],
    }
}

/// The keys of a `/api/calls/live` entry.
const LIVE_FIELDS: &[&str] = &[
    "id",
    "source",
    "source_key",
    "state",
    "direction",
    "caller",
    "callee",
    "ringing_extensions",
    "rang_extensions",
    "agent_extension",
    "answered_by",
    "transferred_to",
    "transfers",
    "diverted_from",
    "started_at",
    "answered_at",
    "ended_at",
    "outcome",
    "cause",
];

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// What one call must look like in `/api/calls/live` once ended.
struct Live {
    direction: &'static str,
    caller: Option<&'static str>,
    withheld: bool,
    callee: &'static str,
    outcome: &'static str,
    rang: &'static [&'static str],
    agent: Option<&'static str>,
    transferred: &'static [&'static str],
}

/// An inbound call from the usual caller to the DID.
const fn inbound(
    outcome: &'static str,
    rang: &'static [&'static str],
    agent: Option<&'static str>,
) -> Live {
    Live {
        direction: "inbound",
        caller: Some("0612345678"),
        withheld: false,
        callee: "0412345678",
        outcome,
        rang,
        agent,
        transferred: &[],
    }
}

/// Checks the events of every call (source, order, times, JSON fields) and
/// each call's `/api/calls/live` entry against `lives` (one per call, in start
/// order); the table must hold these calls and no other. Returns the entries.
async fn check_calls(bed: &Bed, events: &[Value], lives: &[Live]) -> Vec<Value> {
    let fail = |what: &str| bed.context(events, what);
    let ids = call_ids(events);
    assert_eq!(ids.len(), lives.len(), "{}", fail("number of calls"));
    let mut previous = bed.began;
    for event in events {
        assert_eq!(event["source"], "ami", "{}", fail("source of an event"));
        let kind = event["type"].as_str().unwrap_or_default();
        let mut expected = set(&["call_id", "source", "at", "type"]);
        expected.extend(set(event_fields(kind)));
        assert_eq!(
            keys(event),
            expected,
            "{}",
            fail(&format!("fields of {event}"))
        );
        let at = event["at"].as_str().unwrap_or_default();
        let seconds = epoch_seconds(at)
            .unwrap_or_else(|| panic!("{}", fail(&format!("`at` is not RFC 3339 UTC: {at:?}"))));
        assert!(
            seconds >= previous && seconds <= now_seconds() + 1.0,
            "{}",
            fail(&format!("`at` {at} out of order or outside the test run"))
        );
        previous = seconds;
    }
    let table = bed.fiche.live_calls().await.expect("GET /api/calls/live");
    assert_eq!(
        table.len(),
        lives.len(),
        "{}",
        fail(&format!("/api/calls/live holds other calls: {table:#?}"))
    );
    let mut entries = Vec::new();
    for (id, expect) in ids.iter().zip(lives) {
        let of_call: Vec<&Value> = events.iter().filter(|e| e["call_id"] == **id).collect();
        let (started, ended) = (of_call[0], of_call[of_call.len() - 1]);
        assert_eq!(started["type"], "call_started", "{}", fail("first event"));
        assert_eq!(ended["type"], "ended", "{}", fail("last event"));
        let live = table
            .iter()
            .find(|c| c["id"] == **id)
            .unwrap_or_else(|| panic!("{}", fail(&format!("call {id} not in {table:#?}"))))
            .clone();
        let fail = |what: &str| fail(&format!("{what}; /api/calls/live entry: {live:#}"));
        assert_eq!(keys(&live), set(LIVE_FIELDS), "{}", fail("fields"));
        for party in ["caller", "callee"] {
            assert_eq!(
                keys(&live[party]),
                set(&["number", "name", "withheld"]),
                "{}",
                fail(party)
            );
        }
        assert_eq!(live["source"], "ami", "{}", fail("source"));
        assert_eq!(
            live["source_key"],
            started["source_key"],
            "{}",
            fail("source_key")
        );
        assert_eq!(live["state"], "ended", "{}", fail("state"));
        assert_eq!(live["direction"], expect.direction, "{}", fail("direction"));
        assert_eq!(
            live["caller"]["number"],
            json!(expect.caller),
            "{}",
            fail("caller")
        );
        assert_eq!(
            live["caller"]["withheld"],
            expect.withheld,
            "{}",
            fail("withheld")
        );
        assert_eq!(
            live["caller"],
            started["caller"],
            "{}",
            fail("caller as started")
        );
        assert_eq!(
            live["callee"]["number"],
            expect.callee,
            "{}",
            fail("callee")
        );
        assert_eq!(live["outcome"], expect.outcome, "{}", fail("outcome"));
        assert_eq!(live["cause"], ended["cause"], "{}", fail("cause"));
        assert_eq!(
            live["ringing_extensions"],
            json!([]),
            "{}",
            fail("ringing_extensions")
        );
        assert_eq!(
            live["rang_extensions"],
            json!(expect.rang),
            "{}",
            fail("rang_extensions")
        );
        assert_eq!(
            live["agent_extension"],
            json!(expect.agent),
            "{}",
            fail("agent_extension")
        );
        assert_eq!(
            live["transferred_to"],
            json!(expect.transferred),
            "{}",
            fail("transferred_to")
        );
        assert_eq!(
            live["diverted_from"],
            json!([]),
            "{}",
            fail("diverted_from")
        );
        let instant = |v: &Value| v.as_str().and_then(epoch_seconds);
        assert_eq!(
            instant(&live["started_at"]),
            instant(&started["at"]),
            "{}",
            fail("started_at")
        );
        assert_eq!(
            instant(&live["ended_at"]),
            instant(&ended["at"]),
            "{}",
            fail("ended_at")
        );
        let answered = of_call.iter().find(|e| e["type"] == "answered");
        assert_eq!(
            instant(&live["answered_at"]),
            answered.and_then(|e| instant(&e["at"])),
            "{}",
            fail("answered_at is the answered time")
        );
        entries.push(live);
    }
    entries
}

/// Plays `script` through a Fiche configured by `FICHE_AMI_*`, expects exactly
/// `expected` on `/ws` and `lives` in `/api/calls/live`.
async fn flow(script: &str, expected: &[&str], lives: &[Live]) -> (Bed, Vec<Value>, Vec<Value>) {
    let mut bed = Bed::start(script, |addr| env_setup(addr, SECRET)).await;
    let events = bed.collect().await;
    assert_eq!(lines(&events), expected, "{}", bed.context(&events, script));
    let entries = check_calls(&bed, &events, lives).await;
    (bed, events, entries)
}

#[tokio::test]
async fn inbound_answered() {
    let (bed, events, entries) = flow(
        "inbound_answered",
        &[
            INBOUND,
            "#1 ringing 201",
            "#1 answered 201",
            &format!("#1 ended answered: {NORMAL_CLEARING}"),
        ],
        &[inbound("answered", &["201"], Some("201"))],
    )
    .await;
    assert_eq!(entries[0]["source_key"], "asterisk/1700000100.1");
    assert_eq!(entries[0]["caller"]["name"], "DUPONT Marie");
    // `FICHE_AMI_*` logs in with the MD5 challenge: the secret never crosses the wire.
    let wire = bed.gate.client_text();
    assert!(wire.contains("AuthType: MD5\r\n"), "{wire}");
    assert!(!wire.contains(SECRET), "{wire}");
    assert!(
        !bed.fiche.log_text().contains(SECRET),
        "the secret is logged"
    );
    same_shape_as_a_hep_call(bed, &events, &entries[0]).await;
}

/// A SIP call mirrored as HEP into the same Fiche: its events and its live
/// entry must have exactly the JSON structure of the AMI call's.
async fn same_shape_as_a_hep_call(mut bed: Bed, ami_events: &[Value], ami_live: &Value) {
    let call_id = format!("hep-shape-{}@fiche.test", std::process::id());
    let trunk: SocketAddr = "127.0.0.1:5080".parse().expect("address");
    let pbx: SocketAddr = "127.0.0.1:5060".parse().expect("address");
    let from = "From: \"Client Test\" <sip:0612345678@127.0.0.1:5080>;tag=c1";
    let invite_via = "Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-shape-1";
    let to = "To: <sip:201@127.0.0.1:5060>";
    let to_tagged = "To: <sip:201@127.0.0.1:5060>;tag=p1";
    let messages = [
        (trunk, pbx, format!("INVITE sip:201@127.0.0.1:5060 SIP/2.0\r\n{invite_via}\r\nMax-Forwards: 70\r\n{from}\r\n{to}\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:0612345678@127.0.0.1:5080>\r\nContent-Length: 0\r\n\r\n")),
        (pbx, trunk, format!("SIP/2.0 180 Ringing\r\n{invite_via}\r\n{from}\r\n{to_tagged}\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")),
        (pbx, trunk, format!("SIP/2.0 200 OK\r\n{invite_via}\r\n{from}\r\n{to_tagged}\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:201@127.0.0.1:5060>\r\nContent-Length: 0\r\n\r\n")),
        (trunk, pbx, format!("ACK sip:201@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-shape-2\r\nMax-Forwards: 70\r\n{from}\r\n{to_tagged}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")),
        (trunk, pbx, format!("BYE sip:201@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-shape-3\r\nMax-Forwards: 70\r\n{from}\r\n{to_tagged}\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n")),
        (pbx, trunk, format!("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-shape-3\r\n{from}\r\n{to_tagged}\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n")),
    ];
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp socket");
    for (src, dst, payload) in messages {
        let packet = HepPacket {
            ip_family: Some(2),
            ip_protocol: Some(17),
            src: Some(src),
            dst: Some(dst),
            timestamp: Some(chrono::Utc::now()),
            proto_type: Some(1),
            capture_id: Some(101),
            correlation_id: Some(Bytes::from(call_id.clone())),
            payload: Bytes::from(payload),
            ..HepPacket::default()
        };
        socket
            .send_to(&encode(&packet), ("127.0.0.1", bed.fiche.hep_port()))
            .await
            .expect("sending HEP");
        // The mirror's own pace; UDP order on loopback is kept anyway.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let hep_events = bed.collect().await;
    assert_eq!(
        lines(&hep_events),
        [
            "#1 call_started inbound caller=0612345678 (Client Test) callee=201",
            "#1 ringing 201",
            "#1 answered 201",
            "#1 ended answered: caller hung up",
        ],
        "{}",
        bed.context(&hep_events, "the HEP call")
    );
    let table = bed.fiche.live_calls().await.expect("GET /api/calls/live");
    let hep_live = table
        .iter()
        .find(|c| c["source"] == "hep")
        .unwrap_or_else(|| panic!("no HEP call in {table:#?}"));
    assert_eq!(
        shape(hep_live),
        shape(ami_live),
        "live entries: {hep_live:#} vs {ami_live:#}"
    );
    let shapes = |events: &[Value]| -> BTreeMap<String, Value> {
        events
            .iter()
            .map(|e| (e["type"].as_str().unwrap_or_default().to_owned(), shape(e)))
            .collect()
    };
    let (hep_shapes, ami_shapes) = (shapes(&hep_events), shapes(ami_events));
    for (kind, hep_shape) in &hep_shapes {
        assert_eq!(Some(hep_shape), ami_shapes.get(kind), "shape of {kind}");
    }
}

/// The structure of a JSON value: objects keep their keys, leaves become
/// their JSON type (`null` and strings both count as optional text).
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
        Value::Array(_) => json!("array"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) | Value::Null => json!("text"),
    }
}

#[tokio::test]
async fn inbound_missed() {
    flow(
        "inbound_missed",
        &[
            INBOUND,
            "#1 ringing 201",
            &format!("#1 ended missed: {NORMAL_CLEARING}"),
        ],
        &[inbound("missed", &["201"], None)],
    )
    .await;
}

#[tokio::test]
async fn ring_group_of_three_answered_by_one() {
    flow(
        "ring_group",
        &[
            INBOUND,
            "#1 ringing 201",
            "#1 ringing 202",
            "#1 ringing 203",
            "#1 answered 202",
            "#1 ringing_stopped 201: answered elsewhere",
            "#1 ringing_stopped 203: answered elsewhere",
            &format!("#1 ended answered: {NORMAL_CLEARING}"),
        ],
        &[inbound("answered", &["201", "202", "203"], Some("202"))],
    )
    .await;
}

#[tokio::test]
async fn queue_answered_after_ring_no_answer() {
    flow(
        "queue_answered",
        &[
            INBOUND,
            "#1 ringing 201",
            "#1 ringing_stopped 201: no answer",
            "#1 ringing 203",
            "#1 answered 203",
            &format!("#1 ended answered: {NORMAL_CLEARING}"),
        ],
        &[inbound("answered", &["201", "203"], Some("203"))],
    )
    .await;
}

#[tokio::test]
async fn queue_abandoned() {
    flow(
        "queue_abandoned",
        &[
            INBOUND,
            "#1 ringing 201",
            "#1 ended missed: abandoned in queue 400 after waiting 11 s",
        ],
        &[inbound("missed", &["201"], None)],
    )
    .await;
}

#[tokio::test]
async fn blind_transfer_201_to_202() {
    flow(
        "blind_transfer",
        &[
            INBOUND,
            "#1 ringing 201",
            "#1 answered 201",
            "#1 transferred 202 blind by 201 sending 0612345678",
            "#1 ringing 202",
            "#1 answered 202",
            &format!("#1 ended answered: {NORMAL_CLEARING}"),
        ],
        &[Live {
            transferred: &["202"],
            ..inbound("answered", &["201", "202"], Some("202"))
        }],
    )
    .await;
}

#[tokio::test]
async fn attended_transfer() {
    flow(
        "attended_transfer",
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
            &format!("#1 ended answered: {NORMAL_CLEARING}"),
        ],
        &[
            Live {
                transferred: &["202"],
                ..inbound("answered", &["201"], Some("202"))
            },
            Live {
                direction: "internal",
                caller: Some("201"),
                withheld: false,
                callee: "202",
                outcome: "answered",
                rang: &["202"],
                agent: Some("201"),
                transferred: &[],
            },
        ],
    )
    .await;
}

#[tokio::test]
async fn hold_and_unhold() {
    flow(
        "hold_unhold",
        &[
            INBOUND,
            "#1 ringing 201",
            "#1 answered 201",
            "#1 held",
            "#1 resumed",
            &format!("#1 ended answered: {NORMAL_CLEARING}"),
        ],
        &[inbound("answered", &["201"], Some("201"))],
    )
    .await;
}

#[tokio::test]
async fn outbound_from_an_agent() {
    flow(
        "outbound",
        &[
            "#1 call_started outbound caller=201 (Claire) callee=0612345678",
            "#1 answered -",
            &format!("#1 ended answered: {NORMAL_CLEARING}"),
        ],
        &[Live {
            direction: "outbound",
            caller: Some("201"),
            withheld: false,
            callee: "0612345678",
            outcome: "answered",
            rang: &[],
            agent: Some("201"),
            transferred: &[],
        }],
    )
    .await;
}

#[tokio::test]
async fn local_channels_make_no_phantom_call() {
    flow(
        "local_followme",
        &[
            INBOUND,
            "#1 ringing 201",
            "#1 answered 201",
            &format!("#1 ended answered: {NORMAL_CLEARING}"),
        ],
        &[inbound("answered", &["201"], Some("201"))],
    )
    .await;
}

#[tokio::test]
async fn withheld_caller() {
    let (_, _, entries) = flow(
        "withheld",
        &[
            "#1 call_started inbound caller=withheld callee=0412345678",
            "#1 ringing 201",
            &format!("#1 ended missed: {NORMAL_CLEARING}"),
        ],
        &[Live {
            caller: None,
            withheld: true,
            ..inbound("missed", &["201"], None)
        }],
    )
    .await;
    assert!(entries[0]["caller"]["name"].is_null(), "{:#}", entries[0]);
}

#[tokio::test]
async fn connection_dropped_while_ringing_and_restored_after_the_call_ended() {
    let (bed, _, entries) = flow(
        "drop_during_ringing",
        &[
            INBOUND,
            "#1 ringing 201",
            "#1 ended missed: ended while disconnected",
        ],
        &[inbound("missed", &["201"], None)],
    )
    .await;
    assert!(bed.server.logins() >= 2, "Fiche logged in again");
    assert_eq!(entries[0]["cause"], "ended while disconnected");
}

#[tokio::test]
async fn fiche_restarted_during_an_answered_call() {
    let server = ami_server("restart_answered").await;
    let scratch = Scratch::create().expect("scratch folder");
    let began = now_seconds() - 1.0;

    let first_gate = AmiGate::start(server.addr()).await.expect("gate");
    let first = FicheProcess::start(
        &scratch,
        "fiche-1",
        &env_setup(first_gate.addr(), SECRET),
        &[],
    )
    .await
    .expect("starting fiche");
    let mut events = first.events().await.expect("subscribing to /ws");
    first_gate.open();
    let mut before = Vec::new();
    while !before.iter().any(|e: &Value| e["type"] == "answered") {
        match events.next(GUARD).await {
            Some(event) => before.push(event),
            None => panic!("no answered event; got {before:#?}\n{}", first.log_tail(60)),
        }
    }
    assert_eq!(
        lines(&before),
        [INBOUND, "#1 ringing 201", "#1 answered 201"]
    );
    drop(events);
    // A crash, not a clean stop: no Logoff reaches the PBX.
    first.kill().await.expect("killing fiche");

    // A new Fiche, empty table, on the same PBX: the resync shows the call
    // once, already answered; then it ends normally.
    let second_gate = AmiGate::start(server.addr()).await.expect("gate");
    let fiche = FicheProcess::start(
        &scratch,
        "fiche-2",
        &env_setup(second_gate.addr(), SECRET),
        &[],
    )
    .await
    .expect("restarting fiche");
    let events = fiche.events().await.expect("subscribing to /ws");
    second_gate.open();
    let mut bed = Bed {
        fiche,
        events,
        gate: second_gate,
        server,
        _scratch: scratch,
        // The resync dates the call from the channel's age as the PBX reports
        // it (the test server says `Duration: 00:00:42`).
        began: began - 42.0,
    };
    let after = bed.collect().await;
    assert_eq!(
        lines(&after),
        [
            INBOUND,
            "#1 answered 201",
            &format!("#1 ended answered: {NORMAL_CLEARING}"),
        ],
        "{}",
        bed.context(&after, "after the restart")
    );
    assert_eq!(
        before[0]["call_id"], after[0]["call_id"],
        "same call id across the restart"
    );
    // One entry in the table: no duplicate, no ghost.
    let entries = check_calls(&bed, &after, &[inbound("answered", &[], Some("201"))]).await;
    let instant = |key: &str| {
        entries[0][key]
            .as_str()
            .and_then(epoch_seconds)
            .unwrap_or_default()
    };
    let age = instant("answered_at") - instant("started_at");
    assert!(
        (41.0..=43.0).contains(&age),
        "started 42 s before the resync, as the PBX says: {:#}",
        entries[0]
    );
    assert_eq!(bed.server.logins(), 2);
}

#[tokio::test]
async fn md5_login_configured_in_a_toml_file() {
    let mut bed = Bed::start("inbound_answered", |addr| {
        AmiSetup::Toml(format!(
            "[[ami]]\nname = \"paris\"\naddr = \"{addr}\"\nusername = \"{USER}\"\nsecret = \"{SECRET}\"\nmd5 = true\n"
        ))
    })
    .await;
    let events = bed.collect().await;
    assert_eq!(
        lines(&events),
        [
            INBOUND,
            "#1 ringing 201",
            "#1 answered 201",
            &format!("#1 ended answered: {NORMAL_CLEARING}"),
        ],
        "{}",
        bed.context(&events, "TOML-configured source")
    );
    check_calls(&bed, &events, &[inbound("answered", &["201"], Some("201"))]).await;
    let wire = bed.gate.client_text();
    assert!(wire.contains("Action: Challenge\r\n"), "{wire}");
    assert!(wire.contains("AuthType: MD5\r\n"), "{wire}");
    assert!(wire.contains("\r\nKey: "), "{wire}");
    assert!(
        !wire.contains(SECRET),
        "the secret crossed the wire: {wire}"
    );
    assert!(
        !bed.fiche.log_text().contains(SECRET),
        "the secret is logged"
    );
}

#[tokio::test]
async fn wrong_secret_keeps_fiche_running_and_retrying_without_logging_it() {
    let wrong = "wr0ng-Secret-7f3a";
    let server = AmiTestServer::start(AmiServerOptions::default(), AmiScript::default())
        .await
        .expect("starting the AMI test server");
    let scratch = Scratch::create().expect("scratch folder");
    let mut fiche = FicheProcess::start(
        &scratch,
        "fiche",
        &env_setup(server.addr(), wrong),
        // Every level: the secret must not appear even in traces.
        &[("FICHE_LOG", "trace".to_owned())],
    )
    .await
    .expect("starting fiche");
    let deadline = tokio::time::Instant::now() + GUARD;
    while server.failed_logins() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Fiche retries its login; log:\n{}",
            fiche.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.logins(), 0);
    assert!(fiche.is_running(), "fiche exited:\n{}", fiche.log_tail(40));
    assert_eq!(fiche.health().await.expect("GET /healthz"), 200);
    let log = fiche.log_text();
    assert!(
        log.contains("Authentication failed"),
        "the refusal is logged:\n{log}"
    );
    for secret in [wrong, SECRET] {
        assert!(
            !log.contains(secret),
            "the secret {secret:?} is logged:\n{log}"
        );
    }
}

#[tokio::test]
async fn two_pbxs_configured_at_once() {
    let paris = ami_server("inbound_answered").await;
    let lyon = ami_server("outbound").await;
    let paris_gate = AmiGate::start(paris.addr()).await.expect("gate");
    let lyon_gate = AmiGate::start(lyon.addr()).await.expect("gate");
    let scratch = Scratch::create().expect("scratch folder");
    let config = format!(
        "[[ami]]\nname = \"paris\"\naddr = \"{}\"\nusername = \"{USER}\"\nsecret = \"{SECRET}\"\n\n\
         [[ami]]\nname = \"lyon\"\naddr = \"{}\"\nusername = \"{USER}\"\nsecret = \"{SECRET}\"\nmd5 = false\n",
        paris_gate.addr(),
        lyon_gate.addr()
    );
    let fiche = FicheProcess::start(&scratch, "fiche", &AmiSetup::Toml(config), &[])
        .await
        .expect("starting fiche");
    let mut events = fiche.events().await.expect("subscribing to /ws");
    paris_gate.open();
    lyon_gate.open();
    let all = events.collect_calls(GUARD, QUIET_AFTER_END, 2).await;
    let context = |what: &str| {
        format!(
            "{what}\n--- events:\n{all:#?}\n--- fiche log (tail):\n{}",
            fiche.log_tail(60)
        )
    };
    let ids = call_ids(&all);
    assert_eq!(ids.len(), 2, "{}", context("two calls"));
    let mut per_call: Vec<Vec<String>> = ids
        .iter()
        .map(|id| {
            let of_call: Vec<Value> = all
                .iter()
                .filter(|e| e["call_id"] == **id)
                .cloned()
                .collect();
            lines(&of_call)
        })
        .collect();
    per_call.sort();
    assert_eq!(
        per_call,
        [
            vec![
                "#1 call_started inbound caller=0612345678 (DUPONT Marie) callee=0412345678"
                    .to_owned(),
                "#1 ringing 201".to_owned(),
                "#1 answered 201".to_owned(),
                format!("#1 ended answered: {NORMAL_CLEARING}"),
            ],
            vec![
                "#1 call_started outbound caller=201 (Claire) callee=0612345678".to_owned(),
                "#1 answered -".to_owned(),
                format!("#1 ended answered: {NORMAL_CLEARING}"),
            ],
        ],
        "{}",
        context("each PBX's call")
    );
    let table = fiche.live_calls().await.expect("GET /api/calls/live");
    let mut rows: Vec<(String, String, String)> = table
        .iter()
        .map(|c| {
            (
                c["direction"].as_str().unwrap_or_default().to_owned(),
                c["state"].as_str().unwrap_or_default().to_owned(),
                c["source"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("inbound".to_owned(), "ended".to_owned(), "ami".to_owned()),
            ("outbound".to_owned(), "ended".to_owned(), "ami".to_owned()),
        ],
        "{}",
        context("/api/calls/live")
    );
    // Each source logged in as its own table says.
    let paris_wire = paris_gate.client_text();
    assert!(paris_wire.contains("AuthType: MD5\r\n"), "{paris_wire}");
    assert!(!paris_wire.contains(SECRET), "{paris_wire}");
    let lyon_wire = lyon_gate.client_text();
    assert!(
        lyon_wire.contains(&format!("Secret: {SECRET}\r\n")),
        "{lyon_wire}"
    );
    assert_eq!((paris.logins(), lyon.logins()), (1, 1));
    assert!(!fiche.log_text().contains(SECRET), "the secret is logged");
}

/// A manager that stops answering is noticed by the keepalive configured in the
/// `[[ami]]` table (`ping_interval_secs`, `ping_timeout_secs`), and dialled again.
#[tokio::test]
async fn wedged_manager_is_detected_with_the_configured_keepalive() {
    let options = AmiServerOptions {
        answer_pings: false,
        ..AmiServerOptions::default()
    };
    let server = AmiTestServer::start(options, AmiScript::default())
        .await
        .expect("starting the AMI test server");
    let scratch = Scratch::create().expect("scratch folder");
    let config = format!(
        "[[ami]]\naddr = \"{}\"\nusername = \"{USER}\"\nsecret = \"{SECRET}\"\nping_interval_secs = 1\nping_timeout_secs = 1\n",
        server.addr()
    );
    let mut fiche = FicheProcess::start(&scratch, "fiche", &AmiSetup::Toml(config), &[])
        .await
        .expect("starting fiche");
    tokio::time::timeout(GUARD, server.ready_sessions(2))
        .await
        .unwrap_or_else(|_| panic!("no second session; log:\n{}", fiche.log_tail(40)));
    assert!(server.pings() >= 1);
    assert!(fiche.is_running(), "fiche exited:\n{}", fiche.log_tail(40));
    assert_eq!(fiche.health().await.expect("GET /healthz"), 200);
    let log = fiche.log_text();
    assert!(log.contains("AMI connection lost"), "{log}");
}

/// Two PBXs may hand out the same Linkedid (`<epoch>.<counter>`: two boxes
/// booted in the same second, a cloned VM, an HA pair): they are still two calls.
#[tokio::test]
async fn two_pbxs_with_the_same_linked_id_make_two_calls() {
    let paris = ami_server("inbound_answered").await;
    let lyon = ami_server("inbound_answered").await;
    let paris_gate = AmiGate::start(paris.addr()).await.expect("gate");
    let lyon_gate = AmiGate::start(lyon.addr()).await.expect("gate");
    let scratch = Scratch::create().expect("scratch folder");
    let config = format!(
        "[[ami]]\nname = \"paris\"\naddr = \"{}\"\nusername = \"{USER}\"\nsecret = \"{SECRET}\"\n\n\
         [[ami]]\nname = \"lyon\"\naddr = \"{}\"\nusername = \"{USER}\"\nsecret = \"{SECRET}\"\n",
        paris_gate.addr(),
        lyon_gate.addr()
    );
    let fiche = FicheProcess::start(&scratch, "fiche", &AmiSetup::Toml(config), &[])
        .await
        .expect("starting fiche");
    let mut events = fiche.events().await.expect("subscribing to /ws");
    paris_gate.open();
    lyon_gate.open();
    let all = events.collect_calls(GUARD, QUIET_AFTER_END, 2).await;
    let table = fiche.live_calls().await.expect("GET /api/calls/live");
    assert_eq!(
        (call_ids(&all).len(), table.len()),
        (2, 2),
        "events: {:#?}\n/api/calls/live: {table:#?}",
        lines(&all)
    );
}

/// Click-to-call from "Mes rappels", through the binary: an agent's
/// `POST /api/calls/originate` rings her own extension over AMI, then dials the
/// customer; the answer names the call the event stream then shows. A user
/// with no extension is refused before anything reaches Asterisk.
#[tokio::test]
async fn click_to_call_from_the_api_rings_the_agents_own_extension() {
    use fiche_e2e::{auth, http};
    let server = AmiTestServer::start(AmiServerOptions::default(), AmiScript::default())
        .await
        .expect("starting the AMI test server");
    let scratch = Scratch::create().expect("scratch folder");
    let fiche = FicheProcess::start(&scratch, "fiche", &env_setup(server.addr(), SECRET), &[])
        .await
        .expect("starting fiche");
    let mut events = fiche.events().await.expect("subscribing to /ws");
    tokio::time::timeout(GUARD, server.ready_sessions(1))
        .await
        .expect("fiche logs in to the AMI test server");
    let port = fiche.http_port();
    let admin = auth::admin_token(port).await.expect("admin login");
    let claire = json!({
        "login": "claire",
        "password": "claire-password-1",
        "role": "agent",
        "extensions": ["201"],
    })
    .to_string();
    let (status, body) = http::request(port, "POST", "/api/users", Some(&admin), Some(&claire))
        .await
        .expect("creating claire");
    assert_eq!(status, 201, "{body}");
    let token = auth::login(port, "claire", "claire-password-1")
        .await
        .expect("claire's login");

    let dial = json!({ "number": "0612345678" }).to_string();
    let (status, body) = http::request(
        port,
        "POST",
        "/api/calls/originate",
        Some(&token),
        Some(&dial),
    )
    .await
    .expect("click-to-call");
    assert_eq!(status, 202, "{body}\n{}", fiche.log_tail(40));
    let answer: Value = serde_json::from_str(&body).expect("JSON answer");
    let streamed = events.collect(GUARD, QUIET_AFTER_END).await;
    assert_eq!(
        lines(&streamed),
        [
            "#1 call_started outbound caller=201 callee=0612345678",
            "#1 answered -",
            &format!("#1 ended answered: {NORMAL_CLEARING}"),
        ],
        "{}",
        fiche.log_tail(40)
    );
    assert_eq!(streamed[0]["call_id"], answer["call_id"]);
    let originates = server.originates();
    assert_eq!(originates.len(), 1);
    let field = |key: &str| {
        originates[0]
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(field("Channel"), "PJSIP/201");
    assert_eq!(field("Exten"), "0612345678");

    // The admin owns no extension: refused, naming the field, and no Originate.
    let (status, body) = http::request(
        port,
        "POST",
        "/api/calls/originate",
        Some(&admin),
        Some(&dial),
    )
    .await
    .expect("click-to-call as admin");
    assert_eq!(status, 422, "{body}");
    let refusal: Value = serde_json::from_str(&body).expect("JSON refusal");
    assert_eq!(refusal["error"]["field"], "extensions", "{body}");
    assert_eq!(server.originates().len(), 1);
}
