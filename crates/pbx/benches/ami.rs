//! Throughput of the AMI path on one core: framing + typed events + call tracking.
//!
//! Workload: the thirteen scripted flows of `tests/data/ami/*.ami` (inbound,
//! ring group, queues with Local members, transfers, hold, outbound, …, with
//! their VarSet / Newexten / RTCPSent / DeviceStateChange noise), repeated with
//! fresh Uniqueids so every copy is a new set of calls, sent as CRLF bytes in
//! 4 KiB reads as a socket would deliver them.
//!
//! A second workload replays the real recordings of
//! `../shared/recordings/ami/` (cacofonisk's production Asterisk flows and the
//! raw manager streams), each copy with its Uniqueids and Linkedids renamed so
//! that every copy is a new set of calls; `FICHE_AMI_RECORDINGS` names
//! another folder.
//!
//! Run: `cargo bench -p fiche-pbx --bench ami`. "elements/s" = AMI events per
//! second (every message counts, noise included), twice: in wall-clock time and
//! in the CPU time of the benchmark thread (the per-core figure, meaningful on a
//! machine shared with other builds).

use bytes::BytesMut;
use chrono::DateTime;
use criterion::measurement::Measurement;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fiche_pbx::ami::{AmiEvent, AmiFramer, AmiTracker, TrackerConfig};
use std::hint::black_box;
use support::ThreadCpuTime;

mod support;

const COPIES: usize = 50;
const READ_SIZE: usize = 4096;

/// The recorded-style stream and its number of messages.
fn stream() -> (Vec<u8>, u64) {
    let dir = format!("{}/../../tests/data/ami", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "ami"))
        .collect();
    names.sort();
    let mut flows = String::new();
    for path in names {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines() {
            // Directives and comments are for the test server, not the wire.
            if line.starts_with('@') || line.starts_with('#') {
                continue;
            }
            flows.push_str(line);
            flows.push_str("\r\n");
        }
        flows.push_str("\r\n");
    }
    let mut out = String::from("Asterisk Call Manager/9.0.0\r\n");
    for copy in 0..COPIES {
        out.push_str(&flows.replace("170000", &format!("17{copy:04}")));
    }
    let messages = out.matches("\r\nEvent: ").count() as u64;
    (out.into_bytes(), messages)
}

/// Copies of the real recordings in the second workload.
const RECORDED_COPIES: usize = 100;

/// The real recordings as one CRLF stream, and its number of messages.
fn recorded_stream() -> (Vec<u8>, u64) {
    let dir = std::env::var("FICHE_AMI_RECORDINGS").unwrap_or_else(|_| {
        format!(
            "{}/../../../shared/recordings/ami",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "json" || ext == "txt")
                && !path.ends_with("expectations.json")
        })
        .collect();
    paths.sort();
    let mut flows: Vec<Vec<(String, String)>> = Vec::new();
    for path in paths {
        let bytes = std::fs::read(&path).unwrap_or_default();
        if path.extension().is_some_and(|ext| ext == "json") {
            let list: Vec<serde_json::Map<String, serde_json::Value>> =
                serde_json::from_slice(&bytes).unwrap_or_default();
            for object in list {
                flows.push(
                    object
                        .into_iter()
                        .filter(|(k, v)| !(k == "content" && v.as_str() == Some("")))
                        .map(|(k, v)| match v {
                            serde_json::Value::String(s) => (k, s),
                            other => (k, other.to_string()),
                        })
                        .collect(),
                );
            }
        } else {
            let mut framer = AmiFramer::new();
            let mut buf = BytesMut::from(&bytes[..]);
            buf.extend_from_slice(b"\r\n\r\n");
            while let Ok(Some(message)) = framer.decode(&mut buf) {
                flows.push(
                    message
                        .iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                );
            }
        }
    }
    let mut out = String::from("Asterisk Call Manager/9.0.0\r\n");
    let mut messages = 0;
    for copy in 0..RECORDED_COPIES {
        for fields in &flows {
            for (key, value) in fields {
                let lower = key.to_ascii_lowercase();
                let renamed = lower.ends_with("uniqueid") || lower.ends_with("linkedid");
                if renamed && !value.is_empty() {
                    out.push_str(&format!("{key}: c{copy}-{value}\r\n"));
                } else {
                    out.push_str(&format!("{key}: {value}\r\n"));
                }
            }
            out.push_str("\r\n");
            messages += 1;
        }
    }
    (out.into_bytes(), messages)
}

fn replay(stream: &[u8]) -> usize {
    let mut framer = AmiFramer::new();
    let mut tracker = AmiTracker::new(TrackerConfig::default());
    let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    let mut buf = BytesMut::with_capacity(READ_SIZE * 4);
    let mut call_events = 0;
    for read in stream.chunks(READ_SIZE) {
        buf.extend_from_slice(read);
        while let Ok(Some(message)) = framer.decode(&mut buf) {
            tracker.handle(now, &AmiEvent::from_message(&message));
            while let Some(event) = tracker.poll_event() {
                black_box(&event);
                call_events += 1;
            }
        }
    }
    call_events
}

fn frame_only(stream: &[u8]) -> usize {
    let mut framer = AmiFramer::new();
    let mut buf = BytesMut::with_capacity(READ_SIZE * 4);
    let mut messages = 0;
    for read in stream.chunks(READ_SIZE) {
        buf.extend_from_slice(read);
        while let Ok(Some(message)) = framer.decode(&mut buf) {
            black_box(&message);
            messages += 1;
        }
    }
    messages
}

fn bench<M: Measurement>(c: &mut Criterion<M>, group_name: &str) {
    let (stream, messages) = stream();
    assert!(replay(&stream) > 0, "the stream produces call events");
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(messages));
    group.sample_size(20);
    group.bench_function("parse_and_track", |b| b.iter(|| replay(black_box(&stream))));
    group.bench_function("frame_only", |b| b.iter(|| frame_only(black_box(&stream))));
    group.finish();

    let (recorded, messages) = recorded_stream();
    assert!(
        replay(&recorded) > 0,
        "the real recordings produce call events"
    );
    let mut group = c.benchmark_group(format!("{group_name}_real_recordings"));
    group.throughput(Throughput::Elements(messages));
    group.sample_size(20);
    group.bench_function("parse_and_track", |b| {
        b.iter(|| replay(black_box(&recorded)))
    });
    group.finish();
}

fn wall_clock(c: &mut Criterion) {
    bench(c, "ami_wall_clock");
}

fn cpu_time(c: &mut Criterion<ThreadCpuTime>) {
    bench(c, "ami_cpu_time");
}

criterion_group!(wall, wall_clock);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = cpu_time
}
criterion_main!(wall, cpu);
