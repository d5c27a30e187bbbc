//! The HEP driver: UDP and TCP listeners feeding one SIP tracker task.
//!
//! The sockets only receive, filter by source network and auth key, and decode;
//! every SIP message then goes through a bounded channel to the single task that
//! owns the [`SipTracker`], which turns them into [`CallEvent`]s. One tracker task
//! keeps per-call state free of locks and in arrival order.

use crate::hep::{self, HepError, HepPacket, HepStreamDecoder, HEP_MAX_PACKET};
use crate::model::{CallEvent, Timestamp};
use crate::sip::{SipTracker, SipTrackerConfig};
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// Capacity of the listeners → tracker channel. When the tracker falls behind,
/// UDP readers wait (the kernel buffer then absorbs or drops) and TCP peers are
/// slowed by TCP flow control: nothing grows without bound.
pub const SIP_QUEUE_CAPACITY: usize = 8192;

/// At most this many HEP TCP connections at once; further ones wait for a slot.
pub const MAX_TCP_CONNECTIONS: usize = 256;

/// Who may send HEP.
#[derive(Debug, Clone)]
pub struct HepFilter {
    /// Allowed source networks.
    pub allow: Vec<IpNet>,
    /// Required auth key (chunk 0x000e), when set.
    pub auth_key: Option<Bytes>,
}

impl HepFilter {
    fn allows_peer(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        self.allow.iter().any(|net| net.contains(&ip))
    }

    fn allows_packet(&self, packet: &HepPacket) -> bool {
        match &self.auth_key {
            None => true,
            Some(key) => packet
                .auth_key
                .as_ref()
                .is_some_and(|given| constant_time_eq(given, key)),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One SIP message as captured, on its way to the tracker.
#[derive(Debug)]
pub struct SipCapture {
    /// When Fiche received it (the tracker's clock).
    pub received_at: Timestamp,
    /// Capture source address from the HEP packet.
    pub src: Option<SocketAddr>,
    /// Capture destination address from the HEP packet.
    pub dst: Option<SocketAddr>,
    /// The SIP message.
    pub payload: Bytes,
}

/// Logs a kind of problem at most once per interval, with the count suppressed,
/// so a flood of bad packets cannot flood the log.
struct RateLimitedLog {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// Returns the number of suppressed occurrences to report, or `None` to stay quiet.
    fn tick(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Bad-input accounting shared by the listeners of one kind.
struct Complaints {
    denied: RateLimitedLog,
    malformed: RateLimitedLog,
    legacy: RateLimitedLog,
    bad_auth: RateLimitedLog,
}

impl Complaints {
    fn new() -> Self {
        let every = Duration::from_secs(10);
        Self {
            denied: RateLimitedLog::new(every),
            malformed: RateLimitedLog::new(every),
            legacy: RateLimitedLog::new(every),
            bad_auth: RateLimitedLog::new(every),
        }
    }

    fn decode_error(&mut self, peer: SocketAddr, error: &HepError) {
        if let HepError::LegacyVersion(version) = error {
            if let Some(suppressed) = self.legacy.tick() {
                warn!(%peer, version, suppressed, "HEP v1/v2 packet refused: the sender is misconfigured, set it to HEP version 3 (Kamailio: modparam(\"siptrace\", \"hep_version\", 3))");
            }
        } else if let Some(suppressed) = self.malformed.tick() {
            warn!(%peer, %error, suppressed, "malformed HEP packet dropped");
        }
    }
}

/// Decodes one datagram or stream packet and forwards it when it is SIP.
async fn forward(
    packet: HepPacket,
    peer: SocketAddr,
    filter: &HepFilter,
    complaints: &mut Complaints,
    out: &mpsc::Sender<SipCapture>,
) -> Result<(), mpsc::error::SendError<SipCapture>> {
    if !filter.allows_packet(&packet) {
        if let Some(suppressed) = complaints.bad_auth.tick() {
            warn!(%peer, suppressed, "HEP packet with a wrong or missing auth key dropped");
        }
        return Ok(());
    }
    if !packet.is_sip() {
        return Ok(());
    }
    out.send(SipCapture {
        received_at: Utc::now(),
        src: packet.src,
        dst: packet.dst,
        payload: packet.payload,
    })
    .await
}

/// Receives HEP over UDP until `shutdown`.
pub async fn run_udp(
    socket: UdpSocket,
    filter: Arc<HepFilter>,
    out: mpsc::Sender<SipCapture>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; HEP_MAX_PACKET];
    let mut complaints = Complaints::new();
    loop {
        let (len, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            received = socket.recv_from(&mut buf) => match received {
                Ok(r) => r,
                Err(error) => {
                    // ICMP errors from earlier sends and the like: not fatal to a receiver.
                    debug!(%error, "HEP UDP receive error");
                    continue;
                }
            },
        };
        if !filter.allows_peer(peer.ip()) {
            if let Some(suppressed) = complaints.denied.tick() {
                warn!(%peer, suppressed, "HEP from a network not in hep.allow dropped");
            }
            continue;
        }
        let Some(datagram) = buf.get(..len) else {
            continue;
        };
        match hep::decode(datagram) {
            Ok(packet) => {
                if forward(packet, peer, &filter, &mut complaints, &out)
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(error) => complaints.decode_error(peer, &error),
        }
    }
}

/// Accepts HEP over TCP until `shutdown`; each connection is a stream of packets.
pub async fn run_tcp(
    listener: TcpListener,
    filter: Arc<HepFilter>,
    out: mpsc::Sender<SipCapture>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    warn!(%error, "HEP TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if !filter.allows_peer(peer.ip()) {
            warn!(%peer, "HEP TCP connection from a network not in hep.allow refused");
            continue;
        }
        let filter = filter.clone();
        let out = out.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            serve_tcp_connection(stream, peer, &filter, &out, &shutdown).await;
        });
    }
    connections.close();
    connections.wait().await;
}

async fn serve_tcp_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    filter: &HepFilter,
    out: &mpsc::Sender<SipCapture>,
    shutdown: &CancellationToken,
) {
    debug!(%peer, "HEP TCP connection");
    let mut decoder = HepStreamDecoder::new();
    let mut buf = BytesMut::with_capacity(HEP_MAX_PACKET);
    let mut complaints = Complaints::new();
    loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(packet)) => {
                    if forward(packet, peer, filter, &mut complaints, out)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    complaints.decode_error(peer, &error);
                    // A bad packet whose length was sound was consumed whole; a bad
                    // header cannot be resynchronised on a HEP boundary: drop it.
                    if error.breaks_framing() {
                        info!(%peer, "HEP TCP connection closed after a malformed packet");
                        return;
                    }
                }
            }
        }
        let read = tokio::select! {
            () = shutdown.cancelled() => return,
            read = stream.read_buf(&mut buf) => read,
        };
        match read {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) => {
                debug!(%peer, %error, "HEP TCP read error");
                return;
            }
        }
    }
}

/// Owns the SIP tracker: captures in, call events out, silent calls reaped on time.
/// Returns when `shutdown` fires or every sender is gone.
pub async fn run_tracker(
    config: SipTrackerConfig,
    mut captures: mpsc::Receiver<SipCapture>,
    events: mpsc::Sender<CallEvent>,
    shutdown: CancellationToken,
) {
    let mut tracker = SipTracker::new(config);
    let mut parse_errors = RateLimitedLog::new(Duration::from_secs(10));
    loop {
        let deadline = tracker.next_timeout().map(|at| {
            let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::time::Instant::now() + wait
        });
        tokio::select! {
            () = shutdown.cancelled() => return,
            capture = captures.recv() => {
                let Some(capture) = capture else { return };
                if let Err(error) = tracker.handle(capture.received_at, capture.src, capture.dst, &capture.payload) {
                    if let Some(suppressed) = parse_errors.tick() {
                        warn!(src = ?capture.src, %error, suppressed, "SIP message not understood");
                    }
                }
            }
            () = sleep_until(deadline) => tracker.handle_timeout(Utc::now()),
        }
        while let Some(event) = tracker.poll_event() {
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_filtered_by_network_including_mapped_v4() {
        let filter = HepFilter {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            auth_key: None,
        };
        assert!(filter.allows_peer("127.0.0.1".parse().unwrap()));
        assert!(filter.allows_peer("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!filter.allows_peer("192.0.2.1".parse().unwrap()));
        assert!(!filter.allows_peer("::1".parse().unwrap()));
    }

    #[test]
    fn auth_key_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
