//! Every call flow of `sip-test-scripts/scenarios/`, played by sipp through the
//! real Kamailio test PBX, mirrored as HEP v3 into a real `fiche serve`: the
//! exact call events Fiche streams on `/ws`, and the call as `/api/calls/live`
//! shows it once ended.
//!
//! Needs `kamailio` and `sipp`: `cargo test -p fiche-server --test e2e sip_flows::`
//! (`FICHE_E2E_KEEP=1` keeps logs and SIP traces).

use fiche_e2e::events::{epoch_seconds, lines, of_call};
use fiche_e2e::{exclusive, Testbed};
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// What the caller's identity must look like in `call_started` and the live table.
#[derive(Debug, Clone, Copy)]
struct Caller {
    number: Option<&'static str>,
    /// `None`: not checked (a withheld caller's name is checked separately).
    name: Option<Option<&'static str>>,
    withheld: bool,
}

/// The ordinary test caller: From 0612345678, asserted identity +33612345678.
const CLIENT: Caller = Caller {
    number: Some("+33612345678"),
    name: Some(Some("Client Test")),
    withheld: false,
};

/// What one scenario must produce.
#[derive(Debug)]
struct Expect {
    scenario: &'static str,
    events: &'static [&'static str],
    direction: &'static str,
    caller: Caller,
    callee: &'static str,
    outcome: &'static str,
    rang: &'static [&'static str],
    agent_extension: Option<&'static str>,
}

/// What a passing scenario hands back for scenario-specific checks.
struct Seen {
    events: Vec<Value>,
    live: Value,
}

/// Plays the scenario on a fresh testbed and checks every expectation; the
/// failure message carries the events, Fiche's log and the caller's SIP trace.
async fn check(expect: Expect) -> Seen {
    let _serial = exclusive().await;
    // Kamailio stamps the mirror with its own clock; allow it a little slack.
    let run_started = now_seconds() - 1.0;
    let bed = Testbed::start().await.expect("starting fiche and kamailio");
    let played = bed
        .play(expect.scenario)
        .await
        .expect("playing the scenario");
    played.assert_sipp_ok();
    let context = |what: &str| {
        format!(
            "scenario {}: {what}\n--- events on /ws:\n{}\n{}\n--- caller's SIP trace (Call-ID {}):\n{}",
            expect.scenario,
            played
                .events
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            bed.logs(),
            played.call_id,
            played.caller_trace(),
        )
    };

    let calls: BTreeSet<String> = played
        .events
        .iter()
        .map(|e| e["call_id"].as_str().unwrap_or("(no call_id)").to_owned())
        .collect();
    assert_eq!(
        calls.len(),
        1,
        "{}",
        context("expected events of exactly one call")
    );
    let events: Vec<Value> = of_call(&played.events, &played.call_id)
        .into_iter()
        .cloned()
        .collect();
    assert!(
        !events.is_empty(),
        "{}",
        context("no call_started whose source_key is the SIP Call-ID")
    );
    assert_eq!(
        lines(&events),
        expect.events,
        "{}",
        context("call events differ")
    );
    let mut previous = run_started;
    for event in &events {
        assert_eq!(event["source"], "hep", "{}", context("source of an event"));
        let at = event["at"].as_str().unwrap_or_default();
        let Some(seconds) = epoch_seconds(at) else {
            panic!("{}", context(&format!("`at` is not RFC 3339 UTC: {at:?}")));
        };
        // The call happened during this test, and its events in order.
        assert!(
            seconds >= previous && seconds <= now_seconds() + 1.0,
            "{}",
            context(&format!("`at` {at} out of order or outside the test run"))
        );
        previous = seconds;
    }

    let started = &events[0];
    assert_eq!(
        started["source_key"],
        played.call_id.as_str(),
        "{}",
        context("source_key")
    );
    let ended = &events[events.len() - 1];
    let cause = ended["cause"].as_str().unwrap_or_default();
    assert!(!cause.is_empty(), "{}", context("ended without a cause"));

    let live = bed
        .live_call(&played.call_id)
        .await
        .unwrap_or_else(|e| panic!("{}", context(&format!("{e:#}"))));
    let live_context = |what: &str| context(&format!("{what}; /api/calls/live entry: {live:#}"));
    for (name, party) in [
        ("call_started", &started["caller"]),
        ("live", &live["caller"]),
    ] {
        assert_eq!(
            party["number"],
            json!(expect.caller.number),
            "{}",
            live_context(&format!("{name} caller number"))
        );
        assert_eq!(
            party["withheld"],
            json!(expect.caller.withheld),
            "{}",
            live_context(&format!("{name} caller withheld"))
        );
        if let Some(display) = expect.caller.name {
            assert_eq!(
                party["name"],
                json!(display),
                "{}",
                live_context(&format!("{name} caller display name"))
            );
        }
    }
    assert_eq!(
        started["callee"]["number"],
        expect.callee,
        "{}",
        context("callee")
    );
    assert_eq!(
        started["direction"],
        expect.direction,
        "{}",
        context("direction")
    );

    assert_eq!(live["id"], started["call_id"], "{}", live_context("id"));
    assert_eq!(live["source"], "hep", "{}", live_context("source"));
    assert_eq!(live["state"], "ended", "{}", live_context("state"));
    assert_eq!(
        live["direction"],
        expect.direction,
        "{}",
        live_context("direction")
    );
    assert_eq!(
        live["callee"]["number"],
        expect.callee,
        "{}",
        live_context("callee")
    );
    assert_eq!(
        live["outcome"],
        expect.outcome,
        "{}",
        live_context("outcome")
    );
    assert_eq!(live["cause"], ended["cause"], "{}", live_context("cause"));
    assert_eq!(
        live["ringing_extensions"],
        json!([]),
        "{}",
        live_context("ringing_extensions")
    );
    assert_eq!(
        live["rang_extensions"],
        json!(expect.rang),
        "{}",
        live_context("rang_extensions")
    );
    assert_eq!(
        live["agent_extension"],
        json!(expect.agent_extension),
        "{}",
        live_context("agent_extension")
    );
    let instant = |key: &str| live[key].as_str().and_then(epoch_seconds);
    let (started_at, ended_at) = (instant("started_at"), instant("ended_at"));
    assert_eq!(
        started_at,
        epoch_seconds(started["at"].as_str().unwrap_or_default()),
        "{}",
        live_context("started_at is the call_started time")
    );
    assert_eq!(
        ended_at,
        epoch_seconds(ended["at"].as_str().unwrap_or_default()),
        "{}",
        live_context("ended_at is the ended time")
    );
    match instant("answered_at") {
        Some(answered_at) => {
            assert_eq!(
                expect.outcome,
                "answered",
                "{}",
                live_context("answered_at on an unanswered call")
            );
            assert!(
                started_at <= Some(answered_at) && Some(answered_at) <= ended_at,
                "{}",
                live_context("answered_at between started_at and ended_at")
            );
        }
        None => assert_ne!(
            expect.outcome,
            "answered",
            "{}",
            live_context("answered call without answered_at")
        ),
    }
    Seen { events, live }
}

#[tokio::test]
async fn answered_call_the_agent_hangs_up() {
    check(Expect {
        scenario: "answered-agent-bye",
        events: &[
            "#1 call_started inbound caller=+33612345678 (Client Test) callee=201",
            "#1 ringing 201",
            "#1 answered 201",
            "#1 ended answered: callee hung up",
        ],
        direction: "inbound",
        caller: CLIENT,
        callee: "201",
        outcome: "answered",
        rang: &["201"],
        agent_extension: Some("201"),
    })
    .await;
}

#[tokio::test]
async fn answered_call_the_caller_hangs_up() {
    check(Expect {
        scenario: "answered-caller-bye",
        events: &[
            "#1 call_started inbound caller=+33612345678 (Client Test) callee=201",
            "#1 ringing 201",
            "#1 answered 201",
            "#1 ended answered: caller hung up",
        ],
        direction: "inbound",
        caller: CLIENT,
        callee: "201",
        outcome: "answered",
        rang: &["201"],
        agent_extension: Some("201"),
    })
    .await;
}

#[tokio::test]
async fn caller_hangs_up_while_ringing_is_a_missed_call() {
    check(Expect {
        scenario: "missed-cancel",
        events: &[
            "#1 call_started inbound caller=+33612345678 (Client Test) callee=201",
            "#1 ringing 201",
            "#1 ended missed: caller hung up (CANCEL)",
        ],
        direction: "inbound",
        caller: CLIENT,
        callee: "201",
        outcome: "missed",
        rang: &["201"],
        agent_extension: None,
    })
    .await;
}

#[tokio::test]
async fn nobody_answers_480_is_a_missed_call() {
    check(Expect {
        scenario: "missed-480",
        events: &[
            "#1 call_started inbound caller=+33612345678 (Client Test) callee=201",
            "#1 ringing 201",
            "#1 ended missed: 480 Temporarily Unavailable",
        ],
        direction: "inbound",
        caller: CLIENT,
        callee: "201",
        outcome: "missed",
        rang: &["201"],
        agent_extension: None,
    })
    .await;
}

#[tokio::test]
async fn nobody_answers_408_is_a_missed_call() {
    check(Expect {
        scenario: "missed-408",
        events: &[
            "#1 call_started inbound caller=+33612345678 (Client Test) callee=201",
            "#1 ringing 201",
            "#1 ended missed: 408 Request Timeout",
        ],
        direction: "inbound",
        caller: CLIENT,
        callee: "201",
        outcome: "missed",
        rang: &["201"],
        agent_extension: None,
    })
    .await;
}

#[tokio::test]
async fn busy_phone_486_is_a_busy_call_that_never_rang() {
    check(Expect {
        scenario: "busy-486",
        events: &[
            "#1 call_started inbound caller=+33612345678 (Client Test) callee=201",
            "#1 ended busy: 486 Busy Here",
        ],
        direction: "inbound",
        caller: CLIENT,
        callee: "201",
        outcome: "busy",
        rang: &[],
        agent_extension: None,
    })
    .await;
}

#[tokio::test]
async fn agent_holds_and_resumes() {
    check(Expect {
        scenario: "hold-resume",
        events: &[
            "#1 call_started inbound caller=+33612345678 (Client Test) callee=201",
            "#1 ringing 201",
            "#1 answered 201",
            "#1 held",
            "#1 resumed",
            "#1 ended answered: caller hung up",
        ],
        direction: "inbound",
        caller: CLIENT,
        callee: "201",
        outcome: "answered",
        rang: &["201"],
        agent_extension: Some("201"),
    })
    .await;
}

#[tokio::test]
async fn agent_transfers_blind_to_202() {
    let seen = check(Expect {
        scenario: "blind-transfer",
        events: &[
            "#1 call_started inbound caller=+33612345678 (Client Test) callee=201",
            "#1 ringing 201",
            "#1 answered 201",
            "#1 transferred 202 blind",
            "#1 ended answered: callee hung up",
        ],
        direction: "inbound",
        caller: CLIENT,
        callee: "201",
        outcome: "answered",
        rang: &["201"],
        // The live table hands the call to the transfer target.
        agent_extension: Some("202"),
    })
    .await;
    assert_eq!(
        seen.live["transferred_to"],
        json!(["202"]),
        "{:#}",
        seen.live
    );
}

#[tokio::test]
async fn withheld_number_stays_hidden() {
    let seen = check(Expect {
        scenario: "withheld",
        events: &[
            "#1 call_started inbound caller=withheld callee=201",
            "#1 ringing 201",
            "#1 answered 201",
            "#1 ended answered: caller hung up",
        ],
        direction: "inbound",
        caller: Caller {
            number: None,
            name: None,
            withheld: true,
        },
        callee: "201",
        outcome: "answered",
        rang: &["201"],
        agent_extension: Some("201"),
    })
    .await;
    // The real number travels in P-Asserted-Identity with Privacy: id; it must
    // not leak through any field of any event nor the live table.
    for value in seen.events.iter().chain([&seen.live]) {
        assert!(
            !value.to_string().contains("612345678"),
            "withheld number leaked: {value}"
        );
    }
}

#[tokio::test]
async fn display_name_with_html_is_kept_as_sent() {
    check(Expect {
        scenario: "display-name-script",
        events: &[
            "#1 call_started inbound caller=0612345678 (<script>alert(1)</script>) callee=201",
            "#1 ringing 201",
            "#1 answered 201",
            "#1 ended answered: caller hung up",
        ],
        direction: "inbound",
        caller: Caller {
            number: Some("0612345678"),
            name: Some(Some("<script>alert(1)</script>")),
            withheld: false,
        },
        callee: "201",
        outcome: "answered",
        rang: &["201"],
        agent_extension: Some("201"),
    })
    .await;
}

#[tokio::test]
async fn display_name_in_utf8_is_kept_as_sent() {
    check(Expect {
        scenario: "display-name-utf8",
        events: &[
            "#1 call_started inbound caller=+33612345678 (Élodie Müller) callee=201",
            "#1 ringing 201",
            "#1 answered 201",
            "#1 ended answered: caller hung up",
        ],
        direction: "inbound",
        caller: Caller {
            number: Some("+33612345678"),
            name: Some(Some("Élodie Müller")),
            withheld: false,
        },
        callee: "201",
        outcome: "answered",
        rang: &["201"],
        agent_extension: Some("201"),
    })
    .await;
}

#[tokio::test]
async fn ring_group_answered_by_the_second_phone() {
    check(Expect {
        scenario: "ring-group",
        events: &[
            "#1 call_started inbound caller=+33612345678 (Client Test) callee=600",
            "#1 ringing 201",
            "#1 ringing 202",
            "#1 ringing 203",
            "#1 answered 202",
            "#1 ringing_stopped 201: answered elsewhere",
            "#1 ringing_stopped 203: answered elsewhere",
            "#1 ended answered: caller hung up",
        ],
        direction: "inbound",
        caller: CLIENT,
        callee: "600",
        outcome: "answered",
        rang: &["201", "202", "203"],
        agent_extension: Some("202"),
    })
    .await;
}

#[tokio::test]
async fn outbound_call_from_agent_201() {
    check(Expect {
        scenario: "outbound",
        // The customer's phone is not an agent extension: no `ringing` for it,
        // and the answer names no extension (model.rs: answered by the far end).
        events: &[
            "#1 call_started outbound caller=201 (Claire) callee=0612345678",
            "#1 answered -",
            "#1 ended answered: caller hung up",
        ],
        direction: "outbound",
        caller: Caller {
            number: Some("201"),
            name: Some(Some("Claire")),
            withheld: false,
        },
        callee: "0612345678",
        outcome: "answered",
        rang: &[],
        agent_extension: Some("201"),
    })
    .await;
}

#[tokio::test]
async fn challenged_internal_call_is_one_answered_call() {
    // 203 gets 407 from Kamailio and re-sends its INVITE with credentials: the
    // first attempt must not show up as a failed call of its own.
    check(Expect {
        scenario: "internal-challenged",
        events: &[
            "#1 call_started internal caller=203 (Remote Agent) callee=201",
            "#1 ringing 201",
            "#1 answered 201",
            "#1 ended answered: caller hung up",
        ],
        direction: "internal",
        caller: Caller {
            number: Some("203"),
            name: Some(Some("Remote Agent")),
            withheld: false,
        },
        callee: "201",
        outcome: "answered",
        rang: &["201"],
        // live.rs: an internal call stays with the agent who placed it.
        agent_extension: Some("203"),
    })
    .await;
}

#[tokio::test]
async fn ring_group_nobody_answers_is_one_missed_call() {
    check(Expect {
        scenario: "ring-group-missed",
        events: &[
            "#1 call_started inbound caller=+33612345678 (Client Test) callee=600",
            "#1 ringing 201",
            "#1 ringing 202",
            "#1 ringing 203",
            "#1 ended missed: caller hung up (CANCEL)",
        ],
        direction: "inbound",
        caller: CLIENT,
        callee: "600",
        outcome: "missed",
        rang: &["201", "202", "203"],
        agent_extension: None,
    })
    .await;
}

#[tokio::test]
async fn ring_group_one_agent_busy_another_answers() {
    check(Expect {
        scenario: "ring-group-one-busy",
        events: &[
            "#1 call_started inbound caller=+33612345678 (Client Test) callee=600",
            "#1 ringing 201",
            "#1 ringing 202",
            "#1 ringing 203",
            "#1 ringing_stopped 203: busy",
            "#1 answered 202",
            "#1 ringing_stopped 201: answered elsewhere",
            "#1 ended answered: caller hung up",
        ],
        direction: "inbound",
        caller: CLIENT,
        callee: "600",
        outcome: "answered",
        rang: &["201", "202", "203"],
        agent_extension: Some("202"),
    })
    .await;
}
