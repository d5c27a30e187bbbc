//! Fuzzes the AMI framer with arbitrary bytes in arbitrary read sizes, and
//! feeds what it decodes through the typed events and the call tracker.
//! Invariants: no panic, and the buffer never holds much more than one
//! message's cap.
#![no_main]

use bytes::BytesMut;
use fiche_pbx::ami::{AmiEvent, AmiFramer, AmiTracker, TrackerConfig, MAX_MESSAGE_LEN};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut framer = AmiFramer::new();
    // Compiling the default patterns once keeps the fuzzer fast.
    static CONFIG: OnceLock<TrackerConfig> = OnceLock::new();
    let mut tracker = AmiTracker::new(
        CONFIG
            .get_or_init(|| TrackerConfig {
                // Phones named by an account, as on the recorded platform.
                aliases: [("150010001", "201"), ("150010002", "202"), ("150010003", "203")]
                    .into_iter()
                    .map(|(a, e)| (a.to_owned(), e.to_owned()))
                    .collect(),
                ..TrackerConfig::default()
            })
            .clone(),
    );
    let mut now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    let mut buf = BytesMut::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match framer.decode(&mut buf) {
                Ok(Some(message)) => {
                    // Time moves on so that presentation and cancel timers fire.
                    now += chrono::Duration::milliseconds(250);
                    if let Some(due) = tracker.next_timeout().filter(|d| *d <= now) {
                        tracker.handle_timeout(due);
                    }
                    tracker.handle(now, &AmiEvent::from_message(&message));
                    while tracker.poll_event().is_some() {}
                }
                Ok(None) => break,
                Err(_) => continue,
            }
        }
        assert!(buf.len() <= MAX_MESSAGE_LEN + chunk + 1);
    }
    tracker.handle_timeout(now + chrono::Duration::hours(1));
    tracker.resync_begin();
    tracker.resync_end(now);
    while tracker.poll_event().is_some() {}
});
