//! HEP over TCP cannot be starved: the real `fiche serve` binary with hundreds
//! of stalled TCP connections (half a packet sent, then nothing, as a PBX's
//! dead connections pile up) still tracks a call sent on a new connection, and
//! still hears UDP.
//!
//! Nothing installed.

use bytes::Bytes;
use fiche_e2e::fiche_ami::{AmiSetup, FicheProcess, Scratch};
use fiche_pbx::hep::{encode, HepPacket};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

/// Connections opened and left with half a packet.
const STALLED: usize = 300;
/// How soon the call on a fresh connection must show in `/api/calls/live`.
const TRACKED_WITHIN: Duration = Duration::from_secs(1);

/// One INVITE from a trunk to extension 201, mirrored as HEP.
fn invite(call_id: &str) -> Vec<u8> {
    let trunk: SocketAddr = "127.0.0.1:5080".parse().expect("address");
    let pbx: SocketAddr = "127.0.0.1:5060".parse().expect("address");
    let payload = format!(
        "INVITE sip:201@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: \"Client Test\" <sip:0612345678@127.0.0.1:5080>;tag=c1\r\n\
         To: <sip:201@127.0.0.1:5060>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:0612345678@127.0.0.1:5080>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    encode(&HepPacket {
        ip_family: Some(2),
        ip_protocol: Some(17),
        src: Some(trunk),
        dst: Some(pbx),
        timestamp: Some(chrono::Utc::now()),
        proto_type: Some(1),
        capture_id: Some(101),
        correlation_id: Some(Bytes::from(call_id.to_owned())),
        payload: Bytes::from(payload),
        ..HepPacket::default()
    })
}

/// Waits until the live table lists a call with `source_key` = `call_id`;
/// how long it took, or `None` after `limit`.
async fn tracked(fiche: &FicheProcess, call_id: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        let calls = fiche.live_calls().await.expect("GET /api/calls/live");
        if calls.iter().any(|c| c["source_key"] == call_id) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test]
async fn stalled_tcp_connections_do_not_keep_the_pbx_out() {
    let scratch = Scratch::create().expect("scratch dir");
    let fiche = FicheProcess::start(&scratch, "fiche", &AmiSetup::Toml(String::new()), &[])
        .await
        .expect("starting fiche");
    let hep = ("127.0.0.1", fiche.hep_port());
    let half = invite("stalled@fiche.test");
    let half = &half[..half.len() / 2];
    let mut stalled = Vec::with_capacity(STALLED);
    for _ in 0..STALLED {
        let mut stream = TcpStream::connect(hep).await.expect("connect");
        // A write to a connection Fiche already closed may fail: that is the point.
        let _ = stream.write_all(half).await;
        stalled.push(stream);
    }
    // Let Fiche accept (and make room among) every one of them first.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let call_id = format!("tcp-after-stall-{}@fiche.test", std::process::id());
    let mut pbx = TcpStream::connect(hep).await.expect("connect");
    pbx.write_all(&invite(&call_id)).await.expect("send");
    let took = tracked(&fiche, &call_id, Duration::from_secs(10)).await;
    assert!(
        took.is_some_and(|t| t <= TRACKED_WITHIN),
        "a call over a fresh TCP connection after {STALLED} stalled ones: tracked after {took:?}; log:\n{}",
        fiche.log_tail(30)
    );

    // UDP is heard meanwhile too.
    let udp_call = format!("udp-during-stall-{}@fiche.test", std::process::id());
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp socket");
    socket.send_to(&invite(&udp_call), hep).await.expect("send");
    let took = tracked(&fiche, &udp_call, Duration::from_secs(10)).await;
    assert!(
        took.is_some_and(|t| t <= TRACKED_WITHIN),
        "a call over UDP during the stall: tracked after {took:?}"
    );
    // Evictions are logged, but not once per connection.
    let log = fiche.log_text();
    let evictions = log.matches("idle the longest closed").count();
    assert!(
        (1..=3).contains(&evictions),
        "{evictions} eviction lines for {STALLED} connections"
    );
    drop(stalled);
}
