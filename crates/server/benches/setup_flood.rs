//! A flood of call setups that are never answered: what it costs Fiche.
//!
//! Starts the release `fiche serve` as a child process (SQLite in a temp dir,
//! default `info` logging), sends `SETUP_FLOOD_CALLS` SIP INVITEs as HEP over UDP
//! (each a call of its own, never answered, never ended), waits until the live
//! table stops growing, then reports the server's resident memory before and
//! after, the live table's size, the size of one `GET /api/calls/live` answer,
//! and how many log lines the flood cost.
//!
//! `cargo build --release -p fiche-server && cargo bench -p fiche-server --bench setup_flood`
//! Settings: `SETUP_FLOOD_CALLS` (default 100000), `SETUP_FLOOD_RATE` INVITEs/s
//! (default 5000), `FICHE_BIN` (default target/release/fiche).

mod support;

use bytes::Bytes;
use fiche_pbx::hep::{self, HepPacket};
use serde_json::json;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use support::{env_number, Usage, Workdir, ADMIN_PASSWORD};

const CALLER: &str = "127.0.0.1:5070";
const PHONE: &str = "127.0.0.1:5071";

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let calls = env_number("SETUP_FLOOD_CALLS", 100_000).max(1);
    let rate = env_number("SETUP_FLOOD_RATE", 5000).clamp(1, 100_000);
    let server = Workdir::new()?.serve(&[])?;
    let http_port = server.wait_for_port()?;
    let hep_port = server.wait_for_log(|line| {
        let (_, rest) = line
            .contains("HEP UDP listening")
            .then_some(line)?
            .split_once("addr=Some(127.0.0.1:")?;
        rest.split_once(')')?.0.parse::<u16>().ok()
    })?;
    let runtime = tokio::runtime::Runtime::new()?;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http_port}");
    let token = runtime.block_on(login(&client, &base))?;
    // Settle after start-up before the first reading.
    std::thread::sleep(Duration::from_secs(2));
    let before = Usage::of(server.pid())?;
    let lines_before = server.log().lines().count();

    let hep: SocketAddr = ([127, 0, 0, 1], hep_port).into();
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(hep)?;
    let interval = Duration::from_secs(1) / rate as u32;
    let start = Instant::now();
    for n in 0..calls {
        let packet = invite(&format!("flood-{n}"));
        let due = start + interval * n as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        socket.send(&packet)?;
    }
    let sent_in = start.elapsed();

    // Until the live table stops growing for 3 s (bounded by 120 s).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut total = 0;
    let mut page_bytes = 0;
    let mut last_change = Instant::now();
    while Instant::now() < deadline && last_change.elapsed() < Duration::from_secs(3) {
        let (now_total, bytes) = runtime.block_on(live(&client, &base, &token))?;
        if now_total != total {
            last_change = Instant::now();
        }
        (total, page_bytes) = (now_total, bytes);
        std::thread::sleep(Duration::from_millis(500));
    }
    let after = Usage::of(server.pid())?;
    let log = server.log();
    let lines = log.lines().count().saturating_sub(lines_before);
    println!(
        "{calls} INVITEs never answered, sent in {sent_in:.1?} ({rate}/s): live table {total} calls; \
         one GET /api/calls/live {page_bytes} bytes; RSS {:.1} → {:.1} MiB (peak {:.1} MiB); \
         {lines} log lines during the flood",
        before.rss_mib(),
        after.rss_mib(),
        after.peak_mib(),
    );
    Ok(())
}

/// The admin's session token.
async fn login(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let answer: serde_json::Value = client
        .post(format!("{base}/api/login"))
        .json(&json!({ "login": "admin", "password": ADMIN_PASSWORD }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    answer["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no token in the login answer"))
}

/// The live table's size (`X-Total-Count`) and the bytes of one default page.
async fn live(client: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<(usize, usize)> {
    let response = client
        .get(format!("{base}/api/calls/live"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?;
    let total = response
        .headers()
        .get("x-total-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bytes = response.bytes().await?.len();
    Ok((total, bytes))
}

/// An INVITE from the trunk to extension 201: a call of its own.
fn invite(call_id: &str) -> Vec<u8> {
    let sip = format!(
        "INVITE sip:201@{PHONE} SIP/2.0\r\n\
Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}\r\n\
Max-Forwards: 70\r\n\
From: \"Flood\" <sip:0612345678@{CALLER}>;tag=flood-tag\r\n\
To: <sip:201@{PHONE}>\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:0612345678@{CALLER}>\r\n\
Content-Length: 0\r\n\r\n"
    );
    hep::encode(&HepPacket {
        ip_family: Some(2),
        ip_protocol: Some(17),
        src: CALLER.parse().ok(),
        dst: PHONE.parse().ok(),
        proto_type: Some(1),
        capture_id: Some(101),
        payload: Bytes::from(sip),
        ..HepPacket::default()
    })
}
