//! Real Asterisk recordings, replayed: every flow of `expectations.json` in
//! `../shared/recordings/ami/` (or `FICHE_AMI_RECORDINGS`) must produce the
//! caller, called number, rung phones, answerer, outcome, transfers and number
//! of call records a correct tracker reports. First through the sans-IO tracker
//! alone, then through the real `fiche serve` binary fed by the AMI test server.
//!
//! `cargo test -p fiche-server --test e2e ami_recordings::`.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use fiche_e2e::ami_server::{AmiScript, AmiServerOptions, AmiTestServer, Pace};
use fiche_e2e::fiche_ami::{AmiGate, AmiSetup, FicheProcess, Scratch};
use fiche_e2e::recordings::{self, Flow};
use fiche_pbx::ami::{AmiEvent, AmiMessage, AmiTracker, TrackerConfig};
use serde_json::Value;

/// The tracker alone, on a fake clock: 10 ms between messages, then a quiet
/// minute so that every timer has fired.
fn replay_in_process(flow: &Flow) -> Vec<Value> {
    let config = TrackerConfig {
        aliases: recordings::aliases(&flow.expect).into_iter().collect(),
        ..TrackerConfig::default()
    };
    let mut tracker = AmiTracker::new(config);
    let mut now: DateTime<Utc> = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    let mut events = Vec::new();
    let drain = |tracker: &mut AmiTracker, events: &mut Vec<Value>| {
        while let Some(event) = tracker.poll_event() {
            events.push(serde_json::to_value(&event).expect("call events serialise"));
        }
    };
    for fields in &flow.messages {
        let message = AmiMessage::from_fields(fields);
        now += ChronoDuration::milliseconds(10);
        if let Some(due) = tracker.next_timeout().filter(|d| *d <= now) {
            tracker.handle_timeout(due);
        }
        tracker.handle(now, &AmiEvent::from_message(&message));
        drain(&mut tracker, &mut events);
    }
    now += ChronoDuration::seconds(60);
    tracker.handle_timeout(now);
    drain(&mut tracker, &mut events);
    events
}

fn show(events: &[Value]) -> String {
    events
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_recorded_flow_is_tracked_right_by_the_tracker_alone() {
    let flows = recordings::flows().expect("loading the AMI recordings");
    assert!(
        !flows.is_empty(),
        "no recorded flow in {:?}",
        recordings::dir()
    );
    let mut failures = Vec::new();
    for flow in &flows {
        let events = replay_in_process(flow);
        let verdict = recordings::check(&flow.expect, &events);
        record(&mut failures, flow, verdict, || show(&events));
    }
    conclude(flows.len(), &failures);
}

/// Prints a flow's verdict, with `details` when it is wrong, and keeps the failure.
fn record(
    failures: &mut Vec<String>,
    flow: &Flow,
    verdict: Result<(), String>,
    details: impl FnOnce() -> String,
) {
    match verdict {
        Ok(()) => println!("ok   {}", flow.name),
        Err(why) => {
            println!("FAIL {}: {why}\n{}", flow.name, details());
            failures.push(format!("{}: {why}", flow.name));
        }
    }
}

/// How many flows were right; fails the test when one was not.
fn conclude(flows: usize, failures: &[String]) {
    println!("{} of {flows} flows right", flows - failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Guard against a hung test: the longest wait for the events of one flow.
const GUARD: std::time::Duration = std::time::Duration::from_secs(30);
/// Silence after the last `ended` before the event list is closed, so that an
/// extra event after the end is seen (and fails the test).
const QUIET_AFTER_END: std::time::Duration = std::time::Duration::from_millis(700);

/// `calls.agent_extensions` as Fiche ships it (the harness narrows it to `2\d\d`).
const DEFAULT_AGENT_EXTENSIONS: &str = r"[1-9]\d{1,4}";

/// What the binary showed for one flow: its events and its live table.
struct Seen {
    events: Vec<Value>,
    live: Vec<Value>,
    /// `GET /api/calls` once every ended call is written.
    call_log: Vec<Value>,
    log: String,
}

/// The call log once it holds `ended` calls: the ticket writer commits
/// after the events are out, so it is read until it caught up (bounded).
async fn settled_call_log(fiche: &FicheProcess, ended: usize) -> anyhow::Result<Vec<Value>> {
    let deadline = std::time::Instant::now() + GUARD;
    loop {
        let page = fiche.get_json("/api/calls?limit=100").await?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        let done = items.iter().filter(|c| !c["ended_at"].is_null()).count();
        if done >= ended || std::time::Instant::now() >= deadline {
            return Ok(items);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// One `fiche serve` fed by the AMI test server replaying `flow`, the flow's
/// aliases in `FICHE_AMI_ALIASES`.
async fn replay_through_fiche(flow: &Flow, pace: Pace) -> anyhow::Result<Seen> {
    let server = AmiTestServer::start(
        AmiServerOptions::default(),
        AmiScript::from_recording(&flow.messages, pace),
    )
    .await?;
    let gate = AmiGate::start(server.addr()).await?;
    let scratch = Scratch::create()?;
    let aliases = recordings::aliases(&flow.expect)
        .iter()
        .map(|(account, extension)| format!("{account}={extension}"))
        .collect::<Vec<_>>()
        .join(",");
    let setup = AmiSetup::Env {
        addr: gate.addr().to_string(),
        username: AmiServerOptions::default().username,
        secret: AmiServerOptions::default().secret,
    };
    let fiche = FicheProcess::start(
        &scratch,
        "fiche",
        &setup,
        &[
            ("FICHE_AMI_ALIASES", aliases),
            // Fiche's own default: every short number is an internal
            // extension (phones, ring groups, queues), as on most sites.
            (
                "FICHE_AGENT_EXTENSIONS",
                DEFAULT_AGENT_EXTENSIONS.to_owned(),
            ),
        ],
    )
    .await?;
    let mut stream = fiche.events().await?;
    gate.open();
    let events = stream.collect(GUARD, QUIET_AFTER_END).await;
    let live = fiche.live_calls().await?;
    let ended = events.iter().filter(|e| e["type"] == "ended").count();
    let call_log = settled_call_log(&fiche, ended).await?;
    let log = fiche.log_tail(40);
    fiche.kill().await?;
    Ok(Seen {
        events,
        live,
        call_log,
        log,
    })
}

/// The live table must say what the events said: rung phones, answerer, transfers.
fn check_live(seen: &Seen) -> Result<(), String> {
    let reports = recordings::reports(&seen.events)?;
    let Some(main) = reports.first() else {
        // No call at all: whether that is right, the expectations said.
        return Ok(());
    };
    let first_id = seen
        .events
        .iter()
        .find(|e| e["type"] == "call_started")
        .and_then(|e| e["call_id"].as_str())
        .unwrap_or_default();
    let Some(live) = seen.live.iter().find(|c| c["id"] == first_id) else {
        return Err(format!("call {first_id} is not in /api/calls/live"));
    };
    let mut wrong = Vec::new();
    if live["rang_extensions"] != serde_json::json!(main.rang) {
        wrong.push(format!(
            "live rang_extensions {}, events rang {:?}",
            live["rang_extensions"], main.rang
        ));
    }
    let answered = main.answered.clone().flatten();
    if live["answered_by"].as_str() != answered.as_deref() {
        wrong.push(format!(
            "live answered_by {}, events {answered:?}",
            live["answered_by"]
        ));
    }
    let transfers = live["transfers"].as_array().map_or(0, Vec::len);
    if transfers != main.transfers.len() {
        wrong.push(format!(
            "live has {transfers} transfers, events {}",
            main.transfers.len()
        ));
    }
    if live["state"] != "ended" || live["outcome"].as_str() != main.outcome.as_deref() {
        wrong.push(format!(
            "live state {} outcome {}, events {:?}",
            live["state"], live["outcome"], main.outcome
        ));
    }
    // The next day, the call log must tell who took the call.
    match seen.call_log.iter().find(|c| c["id"] == first_id) {
        None => wrong.push(format!("call {first_id} is not in the call log")),
        Some(logged) => {
            if logged["rang"] != serde_json::json!(main.rang) {
                wrong.push(format!(
                    "logged rang {}, events {:?}",
                    logged["rang"], main.rang
                ));
            }
            if logged["answered_by"].as_str() != answered.as_deref() {
                wrong.push(format!(
                    "logged answered_by {}, events {answered:?}",
                    logged["answered_by"]
                ));
            }
            let logged_transfers: Vec<[Option<String>; 4]> = logged["transfers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    ["kind", "by", "transferee", "to"].map(|k| t[k].as_str().map(str::to_owned))
                })
                .collect();
            if logged_transfers != main.transfers {
                wrong.push(format!(
                    "logged transfers {logged_transfers:?}, events {:?}",
                    main.transfers
                ));
            }
            if logged["outcome"].as_str() != main.outcome.as_deref() {
                wrong.push(format!("logged outcome {}", logged["outcome"]));
            }
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

async fn every_flow_through_the_binary(pace: Pace) {
    let flows = recordings::flows().expect("loading the AMI recordings");
    assert!(
        !flows.is_empty(),
        "no recorded flow in {:?}",
        recordings::dir()
    );
    let mut failures = Vec::new();
    for flow in &flows {
        let seen = match replay_through_fiche(flow, pace).await {
            Ok(seen) => seen,
            Err(error) => {
                failures.push(format!("{}: {error:#}", flow.name));
                continue;
            }
        };
        let verdict =
            recordings::check(&flow.expect, &seen.events).and_then(|()| check_live(&seen));
        record(&mut failures, flow, verdict, || {
            format!(
                "--- events:\n{}\n--- fiche log (tail):\n{}",
                show(&seen.events),
                seen.log
            )
        });
    }
    conclude(flows.len(), &failures);
}

#[tokio::test]
async fn every_recorded_flow_is_tracked_right_through_fiche_serve_as_fast_as_possible() {
    every_flow_through_the_binary(Pace::AsFastAsPossible).await;
}

#[tokio::test]
async fn every_recorded_flow_is_tracked_right_through_fiche_serve_at_recorded_pace() {
    every_flow_through_the_binary(Pace::Recorded).await;
}

/// The raw byte streams (`*.txt`) replay too: every call they hold starts
/// once and ends once, and Fiche stays up.
#[tokio::test]
async fn raw_recorded_streams_replay_without_a_broken_call() {
    let mut files: Vec<_> = std::fs::read_dir(recordings::dir())
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "txt"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    assert!(
        !files.is_empty(),
        "no raw recording in {:?}",
        recordings::dir()
    );
    for file in files {
        let messages = recordings::load(&file).expect("framing a raw recording");
        let flow = Flow {
            name: file.display().to_string(),
            messages,
            expect: Value::Null,
        };
        let seen = replay_through_fiche(&flow, Pace::AsFastAsPossible)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", flow.name));
        if let Err(why) = recordings::reports(&seen.events) {
            panic!("{}: {why}\n{}", flow.name, show(&seen.events));
        }
    }
}
