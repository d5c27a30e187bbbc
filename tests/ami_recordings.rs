//! Real Asterisk recordings, replayed: every flow of `expectations.json` in
//! `../shared/recordings/ami/` (or `FICHE_AMI_RECORDINGS`) must produce the
//! caller, called number, rung phones, answerer, outcome, transfers and number
//! of call records a correct tracker reports. First through the sans-IO tracker
//! alone, then through the real `fiche serve` binary fed by the AMI test server.
//!
//! Needs a built server for the second part:
//! `cargo build -p fiche-server && cargo test -p fiche-e2e --test ami_recordings`.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
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
        match recordings::check(&flow.expect, &events) {
            Ok(()) => println!("ok   {}", flow.name),
            Err(why) => {
                println!("FAIL {}: {why}\n{}", flow.name, show(&events));
                failures.push(format!("{}: {why}", flow.name));
            }
        }
    }
    println!(
        "{} of {} flows right",
        flows.len() - failures.len(),
        flows.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
