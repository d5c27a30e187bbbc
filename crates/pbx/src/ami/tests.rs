//! Golden tests: the scripted AMI flows of `tests/data/ami/*.ami` replayed
//! through framer, typed events and tracker on a fake clock, checked against
//! the call events a user would see.

use super::*;
use crate::model::{CallEvent, CallEventKind, CallId, Extension, Party, Timestamp, Transfer};
use bytes::BytesMut;
use chrono::DateTime;
use std::collections::{BTreeMap, HashMap};

/// One step of a script, as the AMI test server reads it.
enum Step {
    Message(String),
    Sleep(i64),
    Drop,
    AwaitClient,
    Restart,
}

fn load(name: &str) -> Vec<Step> {
    let path = format!(
        "{}/../../tests/data/ami/{name}.ami",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut steps = Vec::new();
    let mut message = String::new();
    for line in text.lines() {
        let flush = |message: &mut String, steps: &mut Vec<Step>| {
            if !message.is_empty() {
                steps.push(Step::Message(std::mem::take(message)));
            }
        };
        if line.is_empty() {
            flush(&mut message, &mut steps);
        } else if line.starts_with('#') {
        } else if let Some(directive) = line.strip_prefix('@') {
            flush(&mut message, &mut steps);
            let mut words = directive.split_whitespace();
            steps.push(match words.next() {
                Some("sleep") => Step::Sleep(words.next().and_then(|n| n.parse().ok()).unwrap()),
                Some("drop") => Step::Drop,
                Some("await_client") => Step::AwaitClient,
                Some("restart") => Step::Restart,
                other => panic!("unknown directive {other:?}"),
            });
        } else {
            message.push_str(line);
            message.push_str("\r\n");
        }
    }
    if !message.is_empty() {
        steps.push(Step::Message(message));
    }
    steps
}

fn decode(text: &str) -> AmiMessage {
    let mut buf = BytesMut::from(text);
    buf.extend_from_slice(b"\r\n");
    AmiFramer::new().decode(&mut buf).unwrap().unwrap()
}

/// The PBX's own view of live channels, as the test server keeps it, so that a
/// resync can be answered.
#[derive(Default)]
struct Pbx {
    channels: BTreeMap<String, Vec<(String, String)>>,
}

const SNAPSHOT_KEYS: &[&str] = &[
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
];

impl Pbx {
    fn apply(&mut self, message: &AmiMessage) {
        let Some(uid) = message.get("Uniqueid") else {
            return;
        };
        if message.event() == Some("Hangup") {
            self.channels.remove(uid);
            return;
        }
        let snapshot: Vec<(String, String)> = SNAPSHOT_KEYS
            .iter()
            .filter_map(|k| message.get(k).map(|v| (k.to_string(), v.to_owned())))
            .collect();
        self.channels.insert(uid.to_owned(), snapshot);
    }

    fn list(&self) -> Vec<AmiMessage> {
        let mut out: Vec<AmiMessage> = self
            .channels
            .values()
            .map(|fields| {
                let mut all = vec![("Event".to_string(), "CoreShowChannel".to_string())];
                all.push(("ActionID".into(), "r1".into()));
                all.extend(fields.iter().cloned());
                all.push(("Duration".into(), "00:00:42".into()));
                AmiMessage::from_fields(&all)
            })
            .collect();
        out.push(AmiMessage::from_fields(&[
            ("Event", "CoreShowChannelsComplete"),
            ("ActionID", "r1"),
        ]));
        out
    }
}

fn t0() -> Timestamp {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn tracker() -> AmiTracker {
    AmiTracker::new(TrackerConfig::default())
}

fn resync(tracker: &mut AmiTracker, pbx: &Pbx, now: Timestamp) {
    tracker.resync_begin();
    for message in pbx.list() {
        tracker.handle(now, &AmiEvent::from_message(&message));
    }
    assert!(!tracker.is_resyncing());
}

fn show_party(party: &Party) -> String {
    let mut s = match (&party.number, party.withheld) {
        (_, true) => "withheld".to_owned(),
        (Some(n), false) => n.clone(),
        (None, false) => "-".to_owned(),
    };
    if let Some(name) = &party.name {
        s.push_str(&format!(" ({name})"));
    }
    s
}

/// Renders events as `#<n> <type> <details>`, numbering calls in start order.
fn render(events: &[CallEvent]) -> Vec<String> {
    let mut numbers: HashMap<CallId, usize> = HashMap::new();
    events
        .iter()
        .map(|event| {
            let next = numbers.len() + 1;
            let n = *numbers.entry(event.call_id).or_insert(next);
            let details = match &event.kind {
                CallEventKind::CallStarted {
                    direction,
                    caller,
                    callee,
                    ..
                } => format!(
                    "{direction:?} caller={} callee={}",
                    show_party(caller),
                    show_party(callee)
                )
                .to_lowercase(),
                CallEventKind::Ringing { extension } => extension.to_string(),
                CallEventKind::RingingStopped { extension, cause } => {
                    format!("{extension}: {cause}")
                }
                CallEventKind::Answered { extension } => extension
                    .as_ref()
                    .map_or_else(|| "-".into(), |e| e.to_string()),
                CallEventKind::PartiesUpdated { caller, callee } => {
                    format!(
                        "caller={} callee={}",
                        show_party(caller),
                        show_party(callee)
                    )
                }
                CallEventKind::Held | CallEventKind::Resumed => String::new(),
                CallEventKind::Transferred(t) => show_transfer(t),
                CallEventKind::Ended { outcome, cause } => format!("{}: {cause}", outcome.as_str()),
            };
            format!("#{n} {} {details}", event.kind.name())
                .trim_end()
                .to_owned()
        })
        .collect()
}

/// Replays a script through the framer and the tracker; `@drop` … `@await_client`
/// loses the events in between and resyncs; `@restart` replaces the tracker with
/// a fresh one that resyncs (Fiche restarted).
fn replay(name: &str) -> Vec<CallEvent> {
    let mut pbx = Pbx::default();
    let mut tracker = tracker();
    let mut now = t0();
    let mut connected = true;
    let mut events = Vec::new();
    let drain = |tracker: &mut AmiTracker, events: &mut Vec<CallEvent>| {
        while let Some(event) = tracker.poll_event() {
            events.push(event);
        }
    };
    // A first connection resyncs on an idle PBX.
    resync(&mut tracker, &pbx, now);
    for step in load(name) {
        match step {
            Step::Message(text) => {
                now += chrono::Duration::milliseconds(10);
                let message = decode(&text);
                pbx.apply(&message);
                if connected {
                    tracker.handle(now, &AmiEvent::from_message(&message));
                }
            }
            Step::Sleep(ms) => now += chrono::Duration::milliseconds(ms),
            Step::Drop => connected = false,
            Step::AwaitClient => {
                connected = true;
                resync(&mut tracker, &pbx, now);
            }
            Step::Restart => {
                drain(&mut tracker, &mut events);
                tracker = self::tracker();
                resync(&mut tracker, &pbx, now);
            }
        }
        if tracker.next_timeout().is_some_and(|t| t <= now) {
            tracker.handle_timeout(now);
        }
        drain(&mut tracker, &mut events);
    }
    now += chrono::Duration::seconds(10);
    tracker.handle_timeout(now);
    drain(&mut tracker, &mut events);
    assert_eq!(tracker.live_calls(), 0, "{name}: every call ended");
    events
}

fn check(name: &str, expected: &[&str]) {
    let got = render(&replay(name));
    assert_eq!(got, expected, "{name}");
}

#[test]
fn inbound_answered() {
    check(
        "inbound_answered",
        &[
            "#1 call_started inbound caller=0612345678 (dupont marie) callee=0412345678",
            "#1 ringing 201",
            "#1 answered 201",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ],
    );
}

#[test]
fn inbound_missed() {
    check(
        "inbound_missed",
        &[
            "#1 call_started inbound caller=0612345678 (dupont marie) callee=0412345678",
            "#1 ringing 201",
            "#1 ended missed: Normal Clearing (Q.850 cause 16)",
        ],
    );
}

#[test]
fn ring_group_of_three_answered_by_one() {
    check(
        "ring_group",
        &[
            "#1 call_started inbound caller=0612345678 (dupont marie) callee=0412345678",
            "#1 ringing 201",
            "#1 ringing 202",
            "#1 ringing 203",
            "#1 answered 202",
            "#1 ringing_stopped 201: answered elsewhere",
            "#1 ringing_stopped 203: answered elsewhere",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ],
    );
}

#[test]
fn queue_answered_after_ring_no_answer() {
    check(
        "queue_answered",
        &[
            "#1 call_started inbound caller=0612345678 (dupont marie) callee=0412345678",
            "#1 ringing 201",
            "#1 ringing_stopped 201: no answer",
            "#1 ringing 203",
            "#1 answered 203",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ],
    );
}

#[test]
fn queue_abandoned() {
    check(
        "queue_abandoned",
        &[
            "#1 call_started inbound caller=0612345678 (dupont marie) callee=0412345678",
            "#1 ringing 201",
            "#1 ended missed: abandoned in queue 400 after waiting 11 s",
        ],
    );
}

#[test]
fn blind_transfer() {
    check(
        "blind_transfer",
        &[
            "#1 call_started inbound caller=0612345678 (dupont marie) callee=0412345678",
            "#1 ringing 201",
            "#1 answered 201",
            "#1 transferred 202 blind by 201 sending 0612345678",
            "#1 ringing 202",
            "#1 answered 202",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ],
    );
}

#[test]
fn attended_transfer() {
    check(
        "attended_transfer",
        &[
            "#1 call_started inbound caller=0612345678 (dupont marie) callee=0412345678",
            "#1 ringing 201",
            "#1 answered 201",
            "#1 held",
            "#2 call_started internal caller=201 (claire) callee=202",
            "#2 ringing 202",
            "#2 answered 202",
            "#1 transferred 202 attended by 201 sending 0612345678",
            "#1 answered 202",
            "#1 resumed",
            "#2 ended answered: attended transfer completed",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ],
    );
}

#[test]
fn hold_and_unhold() {
    check(
        "hold_unhold",
        &[
            "#1 call_started inbound caller=0612345678 (dupont marie) callee=0412345678",
            "#1 ringing 201",
            "#1 answered 201",
            "#1 held",
            "#1 resumed",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ],
    );
}

#[test]
fn outbound_from_an_agent() {
    check(
        "outbound",
        &[
            "#1 call_started outbound caller=201 (claire) callee=0612345678",
            "#1 answered -",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ],
    );
}

#[test]
fn local_channels_make_no_phantom_call() {
    check(
        "local_followme",
        &[
            "#1 call_started inbound caller=0612345678 (dupont marie) callee=0412345678",
            "#1 ringing 201",
            "#1 answered 201",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ],
    );
}

#[test]
fn withheld_caller() {
    check(
        "withheld",
        &[
            "#1 call_started inbound caller=withheld callee=0412345678",
            "#1 ringing 201",
            "#1 ended missed: Normal Clearing (Q.850 cause 16)",
        ],
    );
}

#[test]
fn connection_dropped_while_ringing_and_call_ended_meanwhile() {
    check(
        "drop_during_ringing",
        &[
            "#1 call_started inbound caller=0612345678 (dupont marie) callee=0412345678",
            "#1 ringing 201",
            "#1 ended missed: ended while disconnected",
        ],
    );
}

#[test]
fn fiche_restarted_during_an_answered_call() {
    let events = replay("restart_answered");
    let rendered = render(&events);
    assert_eq!(
        rendered,
        [
            "#1 call_started inbound caller=0612345678 (dupont marie) callee=0412345678",
            "#1 ringing 201",
            "#1 answered 201",
            // The new Fiche: same call id, started once, answered once, no ghost.
            "#1 call_started inbound caller=0612345678 (dupont marie) callee=0412345678",
            "#1 answered 201",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ]
    );
    // The restarted tracker dates the call from the channel's age.
    assert_eq!(events[3].at, events[4].at - chrono::Duration::seconds(42));
}

#[test]
fn reconnect_during_an_answered_call_adds_nothing() {
    let mut pbx = Pbx::default();
    let mut tracker = tracker();
    let now = t0();
    for step in load("restart_answered") {
        match step {
            Step::Message(text) => {
                let message = decode(&text);
                pbx.apply(&message);
                tracker.handle(now, &AmiEvent::from_message(&message));
            }
            Step::Restart => break,
            _ => {}
        }
    }
    while tracker.poll_event().is_some() {}
    resync(&mut tracker, &pbx, now);
    assert_eq!(
        tracker.poll_event(),
        None,
        "a reconnect adds no event to a known call"
    );
    assert_eq!(tracker.live_calls(), 1);
}

#[test]
fn ringing_leg_cancelled_while_the_call_goes_on_is_withdrawn_after_the_grace() {
    // Follow-me style: 201 is cancelled, then 202 rings.
    let mut tracker = tracker();
    let now = t0();
    let m = |fields: &[(&str, &str)]| AmiMessage::from_fields(fields);
    let feed = |tracker: &mut AmiTracker, at: Timestamp, message: AmiMessage| {
        tracker.handle(at, &AmiEvent::from_message(&message));
    };
    feed(
        &mut tracker,
        now,
        m(&[
            ("Event", "Newchannel"),
            ("Channel", "PJSIP/ovh-1"),
            ("CallerIDNum", "0612345678"),
            ("Exten", "600"),
            ("Uniqueid", "1.1"),
            ("Linkedid", "1.1"),
        ]),
    );
    feed(
        &mut tracker,
        now,
        m(&[
            ("Event", "Newchannel"),
            ("Channel", "PJSIP/201-2"),
            ("Uniqueid", "1.2"),
            ("Linkedid", "1.1"),
        ]),
    );
    feed(
        &mut tracker,
        now,
        m(&[
            ("Event", "Newstate"),
            ("Channel", "PJSIP/201-2"),
            ("ChannelState", "5"),
            ("Uniqueid", "1.2"),
            ("Linkedid", "1.1"),
        ]),
    );
    feed(
        &mut tracker,
        now,
        m(&[
            ("Event", "DialEnd"),
            ("Channel", "PJSIP/ovh-1"),
            ("Uniqueid", "1.1"),
            ("Linkedid", "1.1"),
            ("DestChannel", "PJSIP/201-2"),
            ("DestUniqueid", "1.2"),
            ("DestLinkedid", "1.1"),
            ("DialStatus", "CANCEL"),
        ]),
    );
    let mut events = Vec::new();
    while let Some(e) = tracker.poll_event() {
        events.push(e);
    }
    assert_eq!(
        render(&events).len(),
        2,
        "started and ringing; the cancel waits"
    );
    let deadline = tracker.next_timeout().unwrap();
    assert_eq!(deadline, now + chrono::Duration::seconds(2));
    tracker.handle_timeout(deadline);
    let stopped = tracker.poll_event().unwrap();
    assert_eq!(
        stopped.kind,
        CallEventKind::RingingStopped {
            extension: Extension::new("201").unwrap(),
            cause: crate::model::StopCause::Cancelled
        }
    );
    assert_eq!(tracker.next_timeout(), None);
}

#[test]
fn originate_gets_the_announced_call_id_and_parties() {
    let mut tracker = tracker();
    let now = t0();
    let call_id = tracker.expect_originate(now, "fiche-42", "201", "0612345678");
    let message = AmiMessage::from_fields(&[
        ("Event", "Newchannel"),
        ("Channel", "PJSIP/201-00000009"),
        ("ChannelState", "0"),
        ("CallerIDNum", "<unknown>"),
        ("Exten", "s"),
        ("Uniqueid", "fiche-42"),
        ("Linkedid", "fiche-42"),
    ]);
    tracker.handle(now, &AmiEvent::from_message(&message));
    let ring = AmiMessage::from_fields(&[
        ("Event", "Newstate"),
        ("Channel", "PJSIP/201-00000009"),
        ("ChannelState", "5"),
        ("Uniqueid", "fiche-42"),
        ("Linkedid", "fiche-42"),
    ]);
    tracker.handle(now, &AmiEvent::from_message(&ring));
    let started = tracker.poll_event().unwrap();
    assert_eq!(started.call_id, call_id);
    assert_eq!(
        render(&[started]),
        ["#1 call_started outbound caller=201 callee=0612345678"]
    );
    assert_eq!(
        tracker.poll_event(),
        None,
        "the agent's own phone ringing is not a pop"
    );
}

#[test]
fn channel_patterns_read_extensions() {
    let patterns = ChannelPatterns::default();
    assert_eq!(patterns.extension("PJSIP/201-00000012"), Some("201"));
    assert_eq!(patterns.extension("SIP/9170-12-0000003c"), Some("9170-12"));
    assert_eq!(
        patterns.extension("Local/201@from-queue-0000000a;1"),
        Some("201")
    );
    assert_eq!(
        patterns.extension("Local/FMPR-201@from-internal-00000005;2"),
        None
    );
    assert!(
        ChannelPatterns::new(["PJSIP/(.*)"]).is_err(),
        "an ext group is required"
    );
}

#[test]
fn noise_is_cheap_and_harmless() {
    let mut tracker = tracker();
    let message = AmiMessage::from_fields(&[
        ("Event", "VarSet"),
        ("Uniqueid", "1.1"),
        ("Linkedid", "1.1"),
    ]);
    tracker.handle(t0(), &AmiEvent::from_message(&message));
    assert_eq!(tracker.poll_event(), None);
    assert_eq!(tracker.live_calls(), 0);
}

/// A minimal event for hand-written sequences: `(event, channel, uid, linked, extra…)`.
fn event(name: &str, channel: &str, uid: &str, extra: &[(&str, &str)]) -> AmiMessage {
    let mut fields: Vec<(&str, &str)> = vec![
        ("Event", name),
        ("Channel", channel),
        ("Uniqueid", uid),
        ("Linkedid", "9.1"),
    ];
    fields.extend_from_slice(extra);
    AmiMessage::from_fields(&fields)
}

fn feed_all(messages: &[AmiMessage]) -> Vec<String> {
    let mut tracker = tracker();
    let mut events = Vec::new();
    for message in messages {
        tracker.handle(t0(), &AmiEvent::from_message(message));
        while let Some(e) = tracker.poll_event() {
            events.push(e);
        }
    }
    render(&events)
}

fn outbound_attempt(status: &str, cause: &str, text: &str) -> Vec<String> {
    let dest = [
        ("DestChannel", "PJSIP/ovh-00000002"),
        ("DestUniqueid", "9.2"),
        ("DestLinkedid", "9.1"),
        ("DialStatus", status),
    ];
    feed_all(&[
        event(
            "Newchannel",
            "PJSIP/201-00000001",
            "9.1",
            &[("CallerIDNum", "201"), ("Exten", "0612345678")],
        ),
        event("Newchannel", "PJSIP/ovh-00000002", "9.2", &[]),
        event("DialEnd", "PJSIP/201-00000001", "9.1", &dest),
        event(
            "Hangup",
            "PJSIP/ovh-00000002",
            "9.2",
            &[("Cause", cause), ("Cause-txt", text)],
        ),
        event(
            "Hangup",
            "PJSIP/201-00000001",
            "9.1",
            &[("Cause", cause), ("Cause-txt", text)],
        ),
    ])
}

#[test]
fn outbound_outcomes_follow_dial_status_and_cause() {
    let busy = outbound_attempt("BUSY", "17", "User busy");
    assert_eq!(busy[1], "#1 ended busy: User busy (Q.850 cause 17)");
    let rejected = outbound_attempt("BUSY", "21", "Call Rejected");
    assert_eq!(
        rejected[1],
        "#1 ended rejected: Call Rejected (Q.850 cause 21)"
    );
    let wrong_number = outbound_attempt("CONGESTION", "1", "Unallocated (unassigned) number");
    assert_eq!(
        wrong_number[1],
        "#1 ended failed: Unallocated (unassigned) number (Q.850 cause 1)"
    );
    let no_answer = outbound_attempt("NOANSWER", "19", "User alerting, no answer");
    assert_eq!(
        no_answer[1],
        "#1 ended missed: User alerting, no answer (Q.850 cause 19)"
    );
    // The callee's busy leg decides even when the caller's leg ends "normally".
    let busy_then_normal = feed_all(&[
        event(
            "Newchannel",
            "PJSIP/201-00000001",
            "9.1",
            &[("CallerIDNum", "201"), ("Exten", "202")],
        ),
        event("Newchannel", "PJSIP/202-00000002", "9.2", &[]),
        event(
            "Hangup",
            "PJSIP/202-00000002",
            "9.2",
            &[("Cause", "17"), ("Cause-txt", "User busy")],
        ),
        event(
            "Hangup",
            "PJSIP/201-00000001",
            "9.1",
            &[("Cause", "16"), ("Cause-txt", "Normal Clearing")],
        ),
    ]);
    assert_eq!(
        busy_then_normal,
        [
            "#1 call_started internal caller=201 callee=202",
            "#1 ended busy: User busy (Q.850 cause 17)",
        ]
    );
}

#[test]
fn inbound_ring_group_with_one_busy_phone_is_still_missed() {
    let got = feed_all(&[
        event(
            "Newchannel",
            "PJSIP/ovh-00000001",
            "9.1",
            &[("CallerIDNum", "0612345678"), ("Exten", "600")],
        ),
        event("Newchannel", "PJSIP/201-00000002", "9.2", &[]),
        event("Newchannel", "PJSIP/202-00000003", "9.3", &[]),
        event(
            "Newstate",
            "PJSIP/201-00000002",
            "9.2",
            &[("ChannelState", "5")],
        ),
        event(
            "Hangup",
            "PJSIP/202-00000003",
            "9.3",
            &[("Cause", "17"), ("Cause-txt", "User busy")],
        ),
        event("Hangup", "PJSIP/201-00000002", "9.2", &[("Cause", "16")]),
        event(
            "Hangup",
            "PJSIP/ovh-00000001",
            "9.1",
            &[("Cause", "16"), ("Cause-txt", "Normal Clearing")],
        ),
    ]);
    assert_eq!(
        got,
        [
            "#1 call_started inbound caller=0612345678 callee=600",
            "#1 ringing 201",
            "#1 ended missed: Normal Clearing (Q.850 cause 16)",
        ]
    );
}

#[test]
fn out_of_order_answer_before_dial_end_is_one_answer() {
    let dest = [
        ("DestChannel", "PJSIP/201-00000002"),
        ("DestUniqueid", "9.2"),
        ("DestLinkedid", "9.1"),
        ("DialStatus", "ANSWER"),
    ];
    let got = feed_all(&[
        event(
            "Newchannel",
            "PJSIP/ovh-00000001",
            "9.1",
            &[("CallerIDNum", "0612345678"), ("Exten", "600")],
        ),
        event("Newchannel", "PJSIP/201-00000002", "9.2", &[]),
        event(
            "Newstate",
            "PJSIP/201-00000002",
            "9.2",
            &[("ChannelState", "6")],
        ),
        event("DialEnd", "PJSIP/ovh-00000001", "9.1", &dest),
        event("Hangup", "PJSIP/201-00000002", "9.2", &[("Cause", "16")]),
        event(
            "Hangup",
            "PJSIP/ovh-00000001",
            "9.1",
            &[("Cause", "16"), ("Cause-txt", "Normal Clearing")],
        ),
    ]);
    assert_eq!(
        got,
        [
            "#1 call_started inbound caller=0612345678 callee=600",
            "#1 answered 201",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ]
    );
}

#[test]
fn call_pickup_answers_the_ringing_call_by_the_picker() {
    // 201 rings; 202 dials *8 (its own call), picks the call up: Asterisk
    // re-stamps 202's channel with the ringing call's Linkedid.
    let picker = |name: &str, linked: &str, state: &str| {
        AmiMessage::from_fields(&[
            ("Event", name),
            ("Channel", "PJSIP/202-00000003"),
            ("ChannelState", state),
            ("CallerIDNum", "202"),
            ("Exten", "*8"),
            ("Uniqueid", "9.3"),
            ("Linkedid", linked),
        ])
    };
    let dest = [
        ("DestChannel", "PJSIP/201-00000002"),
        ("DestUniqueid", "9.2"),
        ("DestLinkedid", "9.1"),
        ("DialStatus", "CANCEL"),
    ];
    let got = feed_all(&[
        event(
            "Newchannel",
            "PJSIP/ovh-00000001",
            "9.1",
            &[("CallerIDNum", "0612345678"), ("Exten", "600")],
        ),
        event("Newchannel", "PJSIP/201-00000002", "9.2", &[]),
        event(
            "Newstate",
            "PJSIP/201-00000002",
            "9.2",
            &[("ChannelState", "5")],
        ),
        picker("Newchannel", "9.3", "4"),
        picker("Newstate", "9.3", "6"),
        event("DialEnd", "PJSIP/ovh-00000001", "9.1", &dest),
        event("Hangup", "PJSIP/201-00000002", "9.2", &[("Cause", "26")]),
        picker("BridgeEnter", "9.1", "6"),
        picker("Hangup", "9.1", "6"),
        event(
            "Hangup",
            "PJSIP/ovh-00000001",
            "9.1",
            &[("Cause", "16"), ("Cause-txt", "Normal Clearing")],
        ),
    ]);
    assert_eq!(
        got,
        [
            "#1 call_started inbound caller=0612345678 callee=600",
            "#1 ringing 201",
            "#1 ringing_stopped 201: answered elsewhere",
            "#1 answered 202",
            "#1 ended answered: Normal Clearing (Q.850 cause 16)",
        ]
    );
}

/// `<to> <kind>[ by <by>][ sending <transferee>]`, the golden form of a transfer.
fn show_transfer(t: &Transfer) -> String {
    let mut s = format!("{} {}", t.to.as_deref().unwrap_or("-"), t.kind.as_str());
    if let Some(by) = &t.by {
        s.push_str(&format!(" by {by}"));
    }
    if let Some(transferee) = &t.transferee {
        s.push_str(&format!(" sending {transferee}"));
    }
    s
}
