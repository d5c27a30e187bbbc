//! Throughput of the HEP/SIP path on one core: HEP v3 decode + SIP call tracking.
//!
//! Workload: 500 inbound calls through Kamailio as `siptrace trace_mode=1`
//! mirrors them (every proxied message twice): INVITE, 100, 180, 200, ACK, BYE
//! and its 200, 14 SIP messages per call with realistic headers and SDP, each
//! call with its own Call-ID, tags and branches; plus, in the `mixed` case, an
//! OPTIONS qualify round trip per call, the noise a real mirror carries.
//!
//! Run: `cargo bench -p fiche-pbx --bench hep_sip`. Criterion reports
//! "elements/s" = SIP messages per second, twice: in wall-clock time, and in the
//! CPU time of the benchmark thread (`/proc/thread-self/schedstat`), which is the
//! per-core figure and stays meaningful on a machine shared with other builds.

use bytes::Bytes;
use chrono::{DateTime, Duration};
use criterion::measurement::Measurement;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fiche_pbx::hep::{self, HepPacket};
use fiche_pbx::sip::{SipTracker, SipTrackerConfig};
use fiche_pbx::ExtensionPatterns;
use std::hint::black_box;
use std::net::SocketAddr;
use support::ThreadCpuTime;

mod support;

const CALLS: usize = 500;
const KAMAILIO: &str = "127.0.0.1:5060";
const CALLER: &str = "127.0.0.1:5090";
const PHONE: &str = "127.0.0.1:5071";

const SDP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n";

/// (source, destination, head template) of one call; `{n}` is the call number,
/// `{sdp}` marks a message with the SDP body.
const CALL_FLOW: &[(&str, &str, &str)] = &[
    (CALLER, KAMAILIO, "INVITE sip:201@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-{n}-1-0\r\nFrom: \"Claire Martin\" <sip:0612345678@127.0.0.1:5090>;tag={n}SIPpTag001\r\nTo: <sip:201@127.0.0.1:5060>\r\nCall-ID: {n}-4821@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:0612345678@127.0.0.1:5090>\r\nMax-Forwards: 70\r\nUser-Agent: sipp\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, UPDATE\r\nSupported: replaces, timer\r\nContent-Type: application/sdp\r\n{sdp}"),
    (KAMAILIO, CALLER, "SIP/2.0 100 trying -- your call is important to us\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-{n}-1-0;rport=5090\r\nFrom: \"Claire Martin\" <sip:0612345678@127.0.0.1:5090>;tag={n}SIPpTag001\r\nTo: <sip:201@127.0.0.1:5060>\r\nCall-ID: {n}-4821@127.0.0.1\r\nCSeq: 1 INVITE\r\nServer: kamailio (5.6.3 (x86_64/linux))\r\n"),
    (KAMAILIO, PHONE, "INVITE sip:201@127.0.0.1:5071 SIP/2.0\r\nRecord-Route: <sip:127.0.0.1;lr;ftag={n}SIPpTag001>\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{n}.a1b2c3d4e5f60718.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;rport=5090;branch=z9hG4bK-{n}-1-0\r\nFrom: \"Claire Martin\" <sip:0612345678@127.0.0.1:5090>;tag={n}SIPpTag001\r\nTo: <sip:201@127.0.0.1:5060>\r\nCall-ID: {n}-4821@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:0612345678@127.0.0.1:5090>\r\nMax-Forwards: 69\r\nUser-Agent: sipp\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, UPDATE\r\nSupported: replaces, timer\r\nContent-Type: application/sdp\r\n{sdp}"),
    (PHONE, KAMAILIO, "SIP/2.0 100 Trying\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{n}.a1b2c3d4e5f60718.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;rport=5090;branch=z9hG4bK-{n}-1-0\r\nFrom: \"Claire Martin\" <sip:0612345678@127.0.0.1:5090>;tag={n}SIPpTag001\r\nTo: <sip:201@127.0.0.1:5060>\r\nCall-ID: {n}-4821@127.0.0.1\r\nCSeq: 1 INVITE\r\n"),
    (PHONE, KAMAILIO, "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{n}.a1b2c3d4e5f60718.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;rport=5090;branch=z9hG4bK-{n}-1-0\r\nRecord-Route: <sip:127.0.0.1;lr;ftag={n}SIPpTag001>\r\nFrom: \"Claire Martin\" <sip:0612345678@127.0.0.1:5090>;tag={n}SIPpTag001\r\nTo: <sip:201@127.0.0.1:5060>;tag={n}SIPpTag012\r\nCall-ID: {n}-4821@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:201@127.0.0.1:5071>\r\n"),
    (KAMAILIO, CALLER, "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;rport=5090;branch=z9hG4bK-{n}-1-0\r\nRecord-Route: <sip:127.0.0.1;lr;ftag={n}SIPpTag001>\r\nFrom: \"Claire Martin\" <sip:0612345678@127.0.0.1:5090>;tag={n}SIPpTag001\r\nTo: <sip:201@127.0.0.1:5060>;tag={n}SIPpTag012\r\nCall-ID: {n}-4821@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:201@127.0.0.1:5071>\r\n"),
    (PHONE, KAMAILIO, "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{n}.a1b2c3d4e5f60718.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;rport=5090;branch=z9hG4bK-{n}-1-0\r\nRecord-Route: <sip:127.0.0.1;lr;ftag={n}SIPpTag001>\r\nFrom: \"Claire Martin\" <sip:0612345678@127.0.0.1:5090>;tag={n}SIPpTag001\r\nTo: <sip:201@127.0.0.1:5060>;tag={n}SIPpTag012\r\nCall-ID: {n}-4821@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:201@127.0.0.1:5071>\r\nContent-Type: application/sdp\r\n{sdp}"),
    (KAMAILIO, CALLER, "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;rport=5090;branch=z9hG4bK-{n}-1-0\r\nRecord-Route: <sip:127.0.0.1;lr;ftag={n}SIPpTag001>\r\nFrom: \"Claire Martin\" <sip:0612345678@127.0.0.1:5090>;tag={n}SIPpTag001\r\nTo: <sip:201@127.0.0.1:5060>;tag={n}SIPpTag012\r\nCall-ID: {n}-4821@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:201@127.0.0.1:5071>\r\nContent-Type: application/sdp\r\n{sdp}"),
    (CALLER, KAMAILIO, "ACK sip:201@127.0.0.1:5071 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-{n}-2-0\r\nRoute: <sip:127.0.0.1;lr;ftag={n}SIPpTag001>\r\nFrom: \"Claire Martin\" <sip:0612345678@127.0.0.1:5090>;tag={n}SIPpTag001\r\nTo: <sip:201@127.0.0.1:5060>;tag={n}SIPpTag012\r\nCall-ID: {n}-4821@127.0.0.1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\n"),
    (KAMAILIO, PHONE, "ACK sip:201@127.0.0.1:5071 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{n}.ack.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;rport=5090;branch=z9hG4bK-{n}-2-0\r\nFrom: \"Claire Martin\" <sip:0612345678@127.0.0.1:5090>;tag={n}SIPpTag001\r\nTo: <sip:201@127.0.0.1:5060>;tag={n}SIPpTag012\r\nCall-ID: {n}-4821@127.0.0.1\r\nCSeq: 1 ACK\r\nMax-Forwards: 69\r\n"),
    (CALLER, KAMAILIO, "BYE sip:201@127.0.0.1:5071 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-{n}-3-0\r\nRoute: <sip:127.0.0.1;lr;ftag={n}SIPpTag001>\r\nFrom: \"Claire Martin\" <sip:0612345678@127.0.0.1:5090>;tag={n}SIPpTag001\r\nTo: <sip:201@127.0.0.1:5060>;tag={n}SIPpTag012\r\nCall-ID: {n}-4821@127.0.0.1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\n"),
    (KAMAILIO, PHONE, "BYE sip:201@127.0.0.1:5071 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{n}.bye.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;rport=5090;branch=z9hG4bK-{n}-3-0\r\nFrom: \"Claire Martin\" <sip:0612345678@127.0.0.1:5090>;tag={n}SIPpTag001\r\nTo: <sip:201@127.0.0.1:5060>;tag={n}SIPpTag012\r\nCall-ID: {n}-4821@127.0.0.1\r\nCSeq: 2 BYE\r\nMax-Forwards: 69\r\n"),
    (PHONE, KAMAILIO, "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{n}.bye.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;rport=5090;branch=z9hG4bK-{n}-3-0\r\nFrom: \"Claire Martin\" <sip:0612345678@127.0.0.1:5090>;tag={n}SIPpTag001\r\nTo: <sip:201@127.0.0.1:5060>;tag={n}SIPpTag012\r\nCall-ID: {n}-4821@127.0.0.1\r\nCSeq: 2 BYE\r\n"),
    (KAMAILIO, CALLER, "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;rport=5090;branch=z9hG4bK-{n}-3-0\r\nFrom: \"Claire Martin\" <sip:0612345678@127.0.0.1:5090>;tag={n}SIPpTag001\r\nTo: <sip:201@127.0.0.1:5060>;tag={n}SIPpTag012\r\nCall-ID: {n}-4821@127.0.0.1\r\nCSeq: 2 BYE\r\n"),
];

/// The qualify noise: Kamailio pings the phone, the phone answers.
const OPTIONS_FLOW: &[(&str, &str, &str)] = &[
    (KAMAILIO, PHONE, "OPTIONS sip:201@127.0.0.1:5071 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{n}.opt.0\r\nFrom: <sip:keepalive@127.0.0.1>;tag={n}opt\r\nTo: <sip:201@127.0.0.1:5071>\r\nCall-ID: {n}-opt@127.0.0.1\r\nCSeq: 10 OPTIONS\r\nMax-Forwards: 70\r\n"),
    (PHONE, KAMAILIO, "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{n}.opt.0\r\nFrom: <sip:keepalive@127.0.0.1>;tag={n}opt\r\nTo: <sip:201@127.0.0.1:5071>;tag={n}x\r\nCall-ID: {n}-opt@127.0.0.1\r\nCSeq: 10 OPTIONS\r\n"),
];

fn sip_text(template: &str, n: usize) -> String {
    let (head, body) = match template.strip_suffix("{sdp}") {
        Some(head) => (head, SDP),
        None => (template, ""),
    };
    format!(
        "{}Content-Length: {}\r\n\r\n{body}",
        head.replace("{n}", &n.to_string()),
        body.len()
    )
}

/// HEP v3 datagrams of `CALLS` calls, interleaved ten calls at a time as a busy
/// mirror would deliver them.
fn datagrams(with_options: bool) -> Vec<Vec<u8>> {
    let start = DateTime::from_timestamp(1_763_935_200, 0).unwrap_or_default();
    let mut out = Vec::new();
    for batch in (0..CALLS).collect::<Vec<_>>().chunks(10) {
        let options: &[(&str, &str, &str)] = if with_options { OPTIONS_FLOW } else { &[] };
        for &(src, dst, template) in CALL_FLOW.iter().chain(options) {
            for &n in batch {
                let packet = HepPacket {
                    ip_family: Some(2),
                    ip_protocol: Some(17),
                    src: src.parse::<SocketAddr>().ok(),
                    dst: dst.parse::<SocketAddr>().ok(),
                    timestamp: Some(start + Duration::milliseconds(out.len() as i64)),
                    proto_type: Some(1),
                    capture_id: Some(101),
                    payload: Bytes::from(sip_text(template, n)),
                    ..HepPacket::default()
                };
                out.push(hep::encode(&packet));
            }
        }
    }
    out
}

/// Decodes and tracks every datagram; returns the number of call events.
fn run(datagrams: &[Vec<u8>]) -> usize {
    let mut tracker = SipTracker::new(SipTrackerConfig {
        agents: ExtensionPatterns::new([r"2\d\d"]).unwrap_or_default(),
        ..SipTrackerConfig::default()
    });
    let mut events = 0;
    for datagram in datagrams {
        let Ok(packet) = hep::decode(datagram) else {
            continue;
        };
        let now = packet.timestamp.unwrap_or_default();
        if tracker
            .handle(now, packet.src, packet.dst, &packet.payload)
            .is_err()
        {
            continue;
        }
        while tracker.poll_event().is_some() {
            events += 1;
        }
    }
    events
}

fn bench<M: Measurement>(c: &mut Criterion<M>, group_name: &str) {
    let mut group = c.benchmark_group(group_name);
    for (name, with_options) in [("call_flows", false), ("call_flows_with_options", true)] {
        let input = datagrams(with_options);
        // Every call yields CallStarted, Ringing, Answered, Ended: the bench measures real work.
        assert_eq!(run(&input), CALLS * 4, "the benchmark flows must track");
        group.throughput(Throughput::Elements(input.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &input, |b, input| {
            b.iter(|| black_box(run(black_box(input))));
        });
    }
    group.finish();
}

fn wall_clock(c: &mut Criterion) {
    bench(c, "hep_sip_wall_clock");
}

fn cpu_time(c: &mut Criterion<ThreadCpuTime>) {
    bench(c, "hep_sip_cpu_time");
}

criterion_group!(wall, wall_clock);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = cpu_time
}
criterion_main!(wall, cpu);
