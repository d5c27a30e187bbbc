//! Fuzzes the SIP call tracker: the input, cut at NUL bytes, is a sequence of
//! captured SIP payloads fed to one `SipTracker`, one second apart.
//!
//! Besides "never panics" (rsip included), it checks the event stream contract:
//! every call starts with `CallStarted`, ends at most once, and `Ended` is its
//! last event, also after the silence reaper ran.

#![no_main]

use chrono::{DateTime, Duration};
use fiche_pbx::sip::{SipTracker, SipTrackerConfig};
use fiche_pbx::{CallEventKind, CallId};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::sync::OnceLock;

/// Built once: compiling the agent patterns per input would dominate the run.
fn config() -> SipTrackerConfig {
    static CONFIG: OnceLock<SipTrackerConfig> = OnceLock::new();
    CONFIG
        .get_or_init(|| SipTrackerConfig {
            max_calls: 4,
            max_legs_per_call: 4,
            ..SipTrackerConfig::default()
        })
        .clone()
}

#[derive(PartialEq)]
enum Seen {
    Live,
    Ended,
}

fuzz_target!(|data: &[u8]| {
    let mut tracker = SipTracker::new(config());
    let start = DateTime::from_timestamp(1_763_935_200, 0).unwrap_or_default();
    let mut calls: HashMap<CallId, Seen> = HashMap::new();
    let mut check = |tracker: &mut SipTracker| {
        while let Some(event) = tracker.poll_event() {
            match (&event.kind, calls.get(&event.call_id)) {
                (CallEventKind::CallStarted { .. }, None | Some(Seen::Ended)) => {
                    calls.insert(event.call_id, Seen::Live);
                }
                (CallEventKind::CallStarted { .. }, Some(Seen::Live)) => {
                    panic!("call started twice")
                }
                (_, None | Some(Seen::Ended)) => panic!("event outside a live call: {event:?}"),
                (CallEventKind::Ended { .. }, Some(Seen::Live)) => {
                    calls.insert(event.call_id, Seen::Ended);
                }
                (_, Some(Seen::Live)) => {}
            }
        }
    };
    for (i, payload) in data.split(|&b| b == 0).enumerate() {
        let now = start + Duration::seconds(i as i64);
        let _ = tracker.handle(now, None, None, payload);
        check(&mut tracker);
    }
    // Far in the future every call has been reaped and forgotten.
    for hours in [1, 5, 10] {
        tracker.handle_timeout(start + Duration::hours(hours));
        check(&mut tracker);
    }
    assert_eq!(tracker.active_calls(), 0, "a call survived the reaper");
    assert!(calls.values().all(|s| *s == Seen::Ended));
});
