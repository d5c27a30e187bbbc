//! HEP's crash window: how long a call event waits in memory between its HEP
//! packet's arrival and the commit that puts it on disk. HEP has no
//! acknowledgement, so a crash loses what is in that window.
//!
//! Starts the release `fiche serve` as a child process (SQLite in a temp dir,
//! the ticket writer's debug lines on), sends calls as HEP over UDP at a steady
//! rate (INVITE, 180, 200, ACK, BYE, 200, all at once), then reads the writer's
//! `batch committed … waited_us=` lines: for each committed batch, the age of
//! its oldest event when the commit returned. Reports their percentiles.
//!
//! `cargo build --release -p fiche-server && cargo bench -p fiche-server --bench hep_window`
//! Settings: `HEP_WINDOW_CALLS` (default 3000), `HEP_WINDOW_RATE` calls/s
//! (default 100), `FICHE_BIN` (default target/release/fiche).

mod support;

use bytes::Bytes;
use fiche_pbx::hep::{self, HepPacket};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use support::{env_number, percentile, Workdir};

const CALLER: &str = "127.0.0.1:5070";
const PHONE: &str = "127.0.0.1:5071";

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let calls = env_number("HEP_WINDOW_CALLS", 3000).max(1);
    let rate = env_number("HEP_WINDOW_RATE", 100).clamp(1, 10_000);
    let server = Workdir::new()?.serve(&[(
        "FICHE_LOG",
        "info,fiche_server::tickets::writer=debug,fiche_pbx=warn",
    )])?;
    let hep_port = server.wait_for_log(|line| {
        let (_, rest) = line
            .contains("HEP UDP listening")
            .then_some(line)?
            .split_once("addr=Some(127.0.0.1:")?;
        rest.split_once(')')?.0.parse::<u16>().ok()
    })?;
    server.wait_for_port()?;
    let hep: SocketAddr = ([127, 0, 0, 1], hep_port).into();
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(hep)?;
    let interval = Duration::from_secs(1) / rate as u32;
    let start = Instant::now();
    for n in 0..calls {
        let packets = call_flow(&format!("window-{n}"));
        let due = start + interval * n as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for packet in packets {
            socket.send(&packet)?;
        }
    }
    // Until every event is committed: nothing new for 3 s (bounded by 60 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut waits = Vec::new();
    let mut events = 0;
    let mut last_change = Instant::now();
    while Instant::now() < deadline && last_change.elapsed() < Duration::from_secs(3) {
        let (now_waits, now_events) = committed(&server.log());
        if now_events != events {
            last_change = Instant::now();
        }
        (waits, events) = (now_waits, now_events);
        std::thread::sleep(Duration::from_millis(200));
    }
    waits.sort();
    if waits.is_empty() {
        anyhow::bail!("no `batch committed` line in the log");
    }
    println!(
        "{calls} HEP calls at {rate}/s: {events} events in {} commits; age of a batch's oldest event at its commit: \
         p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        waits.len(),
        percentile(&waits, 0.5),
        percentile(&waits, 0.9),
        percentile(&waits, 0.99),
        waits.last().copied().unwrap_or_default(),
    );
    Ok(())
}

/// The waits of the `batch committed` lines, and how many events they committed.
fn committed(log: &str) -> (Vec<Duration>, usize) {
    let mut waits = Vec::new();
    let mut events = 0;
    for line in log.lines().filter(|l| l.contains("batch committed")) {
        let field = |name: &str| -> Option<u64> {
            let (_, rest) = line.split_once(name)?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        if let (Some(n), Some(us)) = (field("events="), field("waited_us=")) {
            events += n as usize;
            waits.push(Duration::from_micros(us));
        }
    }
    (waits, events)
}

/// The SIP messages of one direct call to extension 201, answered and hung up.
fn call_flow(call_id: &str) -> Vec<Vec<u8>> {
    let from = format!("From: \"Bench\" <sip:0612345678@{CALLER}>;tag=caller-tag\r\n");
    let request = |method: &str, cseq: &str, branch: u8, to_tag: &str| {
        format!(
            "{method} sip:201@{PHONE} SIP/2.0\r\n\
Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}-{branch}\r\n\
Max-Forwards: 70\r\n{from}\
To: <sip:201@{PHONE}>{to_tag}\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq}\r\n\
Contact: <sip:0612345678@{CALLER}>\r\n\
Content-Length: 0\r\n\r\n"
        )
    };
    let response = |status: &str, cseq: &str, branch: u8| {
        format!(
            "SIP/2.0 {status}\r\n\
Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}-{branch}\r\n{from}\
To: <sip:201@{PHONE}>;tag=phone-tag\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq}\r\n\
Contact: <sip:201@{PHONE}>\r\n\
Content-Length: 0\r\n\r\n"
        )
    };
    vec![
        hep_packet(CALLER, PHONE, &request("INVITE", "1 INVITE", 1, "")),
        hep_packet(PHONE, CALLER, &response("180 Ringing", "1 INVITE", 1)),
        hep_packet(PHONE, CALLER, &response("200 OK", "1 INVITE", 1)),
        hep_packet(CALLER, PHONE, &request("ACK", "1 ACK", 2, ";tag=phone-tag")),
        hep_packet(CALLER, PHONE, &request("BYE", "2 BYE", 3, ";tag=phone-tag")),
        hep_packet(PHONE, CALLER, &response("200 OK", "2 BYE", 3)),
    ]
}

fn hep_packet(src: &str, dst: &str, sip: &str) -> Vec<u8> {
    hep::encode(&HepPacket {
        ip_family: Some(2),
        ip_protocol: Some(17),
        src: src.parse().ok(),
        dst: dst.parse().ok(),
        proto_type: Some(1),
        capture_id: Some(101),
        payload: Bytes::copy_from_slice(sip.as_bytes()),
        ..HepPacket::default()
    })
}
