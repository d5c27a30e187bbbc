//! The HEP driver: one SIP tracker task that reads the UDP socket itself, and
//! TCP listeners feeding it.
//!
//! The sockets only receive, filter by source network and auth key, and decode.
//! One task owns the [`SipTracker`], which turns SIP messages into
//! [`CallEvent`]s: it reads the UDP socket itself ([`UdpReceiver`]), and each
//! TCP connection's task sends it its messages through a bounded channel. One
//! tracker task keeps per-call state free of locks and in arrival order.
//!
//! The TCP listener cannot be starved ([`TcpLimits`]): a connection is closed
//! when a packet it began is not complete within the partial-packet timeout or
//! when it sends nothing for the idle timeout, and a new connection is always
//! accepted: when its source, or the listener, is at its limit, the connection
//! that has waited longest since its last byte is closed first (those that never
//! delivered a whole packet before those that did). So stalled or dead
//! connections, however many, cannot keep the PBX out.

use crate::hep::{self, HepError, HepPacket, HepStreamDecoder, HEP_MAX_PACKET};
use crate::model::{CallEvent, Timestamp};
use crate::sip::{SipTracker, SipTrackerConfig};
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// Capacity of the listeners → tracker channel. When the tracker falls behind,
/// UDP readers wait (the kernel buffer then absorbs or drops) and TCP peers are
/// slowed by TCP flow control: nothing grows without bound.
pub const SIP_QUEUE_CAPACITY: usize = 8192;

/// Limits of the HEP TCP listener, so that no peer can starve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// Most connections open at once, every source together. A new connection
    /// beyond it closes the one idle the longest. Default 256.
    pub max_connections: usize,
    /// Most connections open at once from one source address; a new one beyond
    /// it closes that source's connection idle the longest. Default 64: a proxy
    /// may open one connection per worker process, and closing a working one
    /// can lose what it was sending.
    pub max_per_source: usize,
    /// A connection that sends nothing for this long is closed (the PBX
    /// reconnects when it has something to send). Default 10 minutes.
    pub idle_timeout: Duration,
    /// A packet begun must be complete within this, or the connection is closed.
    /// Default 10 s.
    pub partial_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_per_source: 64,
            idle_timeout: Duration::from_secs(600),
            partial_timeout: Duration::from_secs(10),
        }
    }
}

/// Who may send HEP.
#[derive(Debug, Clone)]
pub struct HepFilter {
    /// Allowed source networks.
    pub allow: Vec<IpNet>,
    /// Required auth key (chunk 0x000e), when set.
    pub auth_key: Option<Bytes>,
    /// What the listeners accepted and dropped, and why (shared with `/metrics`).
    pub stats: Arc<HepStats>,
}

/// Why a HEP packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HepDrop {
    /// From a network not in `hep.allow` (over TCP: each connection refused).
    NotAllowed,
    /// Not a HEP v3 packet that decodes.
    Malformed,
    /// HEP v1 or v2: the sender is misconfigured.
    LegacyVersion,
    /// Without the configured auth key, or with another one.
    BadAuthKey,
    /// A HEP packet that carries no SIP (RTCP, logs, …): nothing Fiche reads.
    NotSip,
}

impl HepDrop {
    /// Every reason, in a fixed order.
    pub const ALL: [HepDrop; 5] = [
        HepDrop::NotAllowed,
        HepDrop::Malformed,
        HepDrop::LegacyVersion,
        HepDrop::BadAuthKey,
        HepDrop::NotSip,
    ];

    /// The reason as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            HepDrop::NotAllowed => "not_allowed",
            HepDrop::Malformed => "malformed",
            HepDrop::LegacyVersion => "legacy_version",
            HepDrop::BadAuthKey => "bad_auth_key",
            HepDrop::NotSip => "not_sip",
        }
    }
}

/// HEP transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HepTransport {
    /// Datagrams.
    Udp,
    /// A stream of packets per connection.
    Tcp,
}

impl HepTransport {
    /// Both transports.
    pub const ALL: [HepTransport; 2] = [HepTransport::Udp, HepTransport::Tcp];

    /// The transport as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            HepTransport::Udp => "udp",
            HepTransport::Tcp => "tcp",
        }
    }
}

/// Counters of the HEP listeners: relaxed atomic additions, nothing else, on
/// the receive path.
#[derive(Debug, Default)]
pub struct HepStats {
    accepted: [AtomicU64; 2],
    dropped: [AtomicU64; 5],
}

impl HepStats {
    /// SIP messages passed on to the tracker, per transport.
    pub fn accepted(&self, transport: HepTransport) -> u64 {
        self.accepted[transport as usize].load(Relaxed)
    }

    /// Packets dropped for `reason`.
    pub fn dropped(&self, reason: HepDrop) -> u64 {
        self.dropped[reason as usize].load(Relaxed)
    }

    fn accept(&self, transport: HepTransport) {
        self.accepted[transport as usize].fetch_add(1, Relaxed);
    }

    fn drop_for(&self, reason: HepDrop) {
        self.dropped[reason as usize].fetch_add(1, Relaxed);
    }
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

    fn decode_error(&mut self, peer: SocketAddr, error: &HepError, stats: &HepStats) {
        if let HepError::LegacyVersion(version) = error {
            stats.drop_for(HepDrop::LegacyVersion);
            if let Some(suppressed) = self.legacy.tick() {
                warn!(%peer, version, suppressed, "HEP v1/v2 packet refused: the sender is misconfigured, set it to HEP version 3 (Kamailio: modparam(\"siptrace\", \"hep_version\", 3))");
            }
        } else {
            stats.drop_for(HepDrop::Malformed);
            if let Some(suppressed) = self.malformed.tick() {
                warn!(%peer, %error, suppressed, "malformed HEP packet dropped");
            }
        }
    }
}

/// The SIP message a decoded packet carries, when it passes the auth key;
/// counted accepted or dropped.
fn capture(
    packet: HepPacket,
    (peer, transport): (SocketAddr, HepTransport),
    filter: &HepFilter,
    complaints: &mut Complaints,
) -> Option<SipCapture> {
    if !filter.allows_packet(&packet) {
        filter.stats.drop_for(HepDrop::BadAuthKey);
        if let Some(suppressed) = complaints.bad_auth.tick() {
            warn!(%peer, suppressed, "HEP packet with a wrong or missing auth key dropped");
        }
        return None;
    }
    if !packet.is_sip() {
        filter.stats.drop_for(HepDrop::NotSip);
        return None;
    }
    filter.stats.accept(transport);
    Some(SipCapture {
        received_at: Utc::now(),
        src: packet.src,
        dst: packet.dst,
        payload: packet.payload,
    })
}

/// The HEP UDP socket as the tracker's task reads it: datagrams in, SIP
/// captures out, everything else dropped and counted.
pub struct UdpReceiver {
    socket: UdpSocket,
    filter: Arc<HepFilter>,
    /// One datagram at a time; HEP over UDP is at most one datagram.
    buf: Vec<u8>,
    complaints: Complaints,
}

impl UdpReceiver {
    /// Reads `socket` with `filter`.
    pub fn new(socket: UdpSocket, filter: Arc<HepFilter>) -> Self {
        Self {
            socket,
            filter,
            buf: vec![0u8; HEP_MAX_PACKET],
            complaints: Complaints::new(),
        }
    }

    /// The next SIP message that passes the filter. Cancel-safe: nothing is
    /// held across the one await, the socket's receive.
    pub async fn recv(&mut self) -> SipCapture {
        loop {
            let (len, peer) = match self.socket.recv_from(&mut self.buf).await {
                Ok(r) => r,
                Err(error) => {
                    // ICMP errors from earlier sends and the like: not fatal to a receiver.
                    debug!(%error, "HEP UDP receive error");
                    continue;
                }
            };
            if let Some(capture) = self.accept(len, peer) {
                return capture;
            }
        }
    }

    fn accept(&mut self, len: usize, peer: SocketAddr) -> Option<SipCapture> {
        if !self.filter.allows_peer(peer.ip()) {
            self.filter.stats.drop_for(HepDrop::NotAllowed);
            if let Some(suppressed) = self.complaints.denied.tick() {
                warn!(%peer, suppressed, "HEP from a network not in hep.allow dropped");
            }
            return None;
        }
        let datagram = self.buf.get(..len)?;
        match hep::decode(datagram) {
            Ok(packet) => {
                let from = (peer, HepTransport::Udp);
                capture(packet, from, &self.filter, &mut self.complaints)
            }
            Err(error) => {
                self.complaints
                    .decode_error(peer, &error, &self.filter.stats);
                None
            }
        }
    }
}

/// One open TCP connection as the listener sees it.
#[derive(Debug)]
struct OpenConnection {
    peer: IpAddr,
    /// Shared with the connection's task, which updates it as bytes arrive.
    activity: Arc<Activity>,
    /// Cancelled to close the connection.
    close: CancellationToken,
}

/// What a connection's task reports to the listener, without a lock.
#[derive(Debug, Default)]
struct Activity {
    /// Milliseconds since the listener started, at the last byte received.
    last_byte_ms: std::sync::atomic::AtomicU64,
    /// At least one whole packet came: a working sender, closed last.
    delivered: std::sync::atomic::AtomicBool,
}

/// The open connections, to choose which one to close when full.
#[derive(Debug, Default)]
struct ConnectionTable {
    open: HashMap<u64, OpenConnection>,
    next_id: u64,
}

impl ConnectionTable {
    /// The connection to close to make room for one more from `peer`, if any:
    /// within the source when it is at its limit, else among all when the
    /// listener is. Never-delivering connections go first, then the longest idle.
    fn victim(&self, peer: IpAddr, limits: &TcpLimits) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let from_peer = self.open.values().filter(|c| c.peer == peer).count();
        let same_source = from_peer >= limits.max_per_source.max(1);
        if !same_source && self.open.len() < limits.max_connections.max(1) {
            return None;
        }
        self.open
            .iter()
            .filter(|(_, c)| !same_source || c.peer == peer)
            .min_by_key(|(_, c)| {
                (
                    c.activity.delivered.load(Relaxed),
                    c.activity.last_byte_ms.load(Relaxed),
                )
            })
            .map(|(id, _)| *id)
    }
}

/// Removes a connection from the table when its task ends.
struct Registered {
    table: Arc<Mutex<ConnectionTable>>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
            .remove(&self.id);
    }
}

/// Accepts HEP over TCP until `shutdown`; each connection is a stream of packets.
/// Accepting never waits: see the module docs for how room is made.
pub async fn run_tcp(
    listener: TcpListener,
    filter: Arc<HepFilter>,
    limits: TcpLimits,
    out: mpsc::Sender<SipCapture>,
    shutdown: CancellationToken,
) {
    let started = tokio::time::Instant::now();
    let table = Arc::new(Mutex::new(ConnectionTable::default()));
    let connections = TaskTracker::new();
    let mut denied = RateLimitedLog::new(Duration::from_secs(10));
    let mut evicted = RateLimitedLog::new(Duration::from_secs(10));
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // Out of file descriptors and the like: wait, rather than spin.
                    warn!(%error, "HEP TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if !filter.allows_peer(peer.ip()) {
            filter.stats.drop_for(HepDrop::NotAllowed);
            if let Some(suppressed) = denied.tick() {
                warn!(%peer, suppressed, "HEP TCP connection from a network not in hep.allow refused");
            }
            continue;
        }
        let activity = Arc::new(Activity::default());
        activity
            .last_byte_ms
            .store(elapsed_ms(started), std::sync::atomic::Ordering::Relaxed);
        let close = shutdown.child_token();
        let id = {
            let mut table = table.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(victim) = table.victim(peer.ip(), &limits) {
                if let Some(old) = table.open.remove(&victim) {
                    old.close.cancel();
                    if let Some(suppressed) = evicted.tick() {
                        warn!(%peer, closed_peer = %old.peer, suppressed, open = table.open.len(),
                            "HEP TCP connections full: the one idle the longest closed for a new one");
                    }
                }
            }
            let id = table.next_id;
            table.next_id += 1;
            table.open.insert(
                id,
                OpenConnection {
                    peer: peer.ip(),
                    activity: activity.clone(),
                    close: close.clone(),
                },
            );
            id
        };
        let registered = Registered {
            table: table.clone(),
            id,
        };
        let filter = filter.clone();
        let out = out.clone();
        connections.spawn(async move {
            let _registered = registered;
            let connection = TcpConnection {
                peer,
                filter: &filter,
                out: &out,
                close: &close,
                limits: &limits,
                activity: &activity,
                started,
            };
            connection.serve(stream).await;
        });
    }
    connections.close();
    connections.wait().await;
}

fn elapsed_ms(since: tokio::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One accepted connection's task.
struct TcpConnection<'a> {
    peer: SocketAddr,
    filter: &'a HepFilter,
    out: &'a mpsc::Sender<SipCapture>,
    /// Cancelled on shutdown or when the listener makes room.
    close: &'a CancellationToken,
    limits: &'a TcpLimits,
    activity: &'a Activity,
    started: tokio::time::Instant,
}

impl TcpConnection<'_> {
    async fn serve(&self, mut stream: TcpStream) {
        use std::sync::atomic::Ordering::Relaxed;
        let peer = self.peer;
        debug!(%peer, "HEP TCP connection");
        let mut decoder = HepStreamDecoder::new();
        let mut buf = BytesMut::with_capacity(HEP_MAX_PACKET);
        let mut complaints = Complaints::new();
        let mut last_byte = tokio::time::Instant::now();
        // When the packet now in `buf` began; `None` between packets.
        let mut packet_began: Option<tokio::time::Instant> = None;
        loop {
            let mut decoded = false;
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(packet)) => {
                        decoded = true;
                        self.activity.delivered.store(true, Relaxed);
                        let from = (peer, HepTransport::Tcp);
                        let capture = capture(packet, from, self.filter, &mut complaints);
                        if let Some(capture) = capture {
                            if self.out.send(capture).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        complaints.decode_error(peer, &error, &self.filter.stats);
                        // A bad packet whose length was sound was consumed whole; a bad
                        // header cannot be resynchronised on a HEP boundary: drop it.
                        if error.breaks_framing() {
                            info!(%peer, "HEP TCP connection closed after a malformed packet");
                            return;
                        }
                        decoded = true;
                    }
                }
            }
            // A packet's clock starts with its first byte: bytes left after a
            // whole packet began with the read that completed it.
            if buf.is_empty() {
                packet_began = None;
            } else if decoded || packet_began.is_none() {
                packet_began = Some(last_byte);
            }
            let deadline = match packet_began {
                Some(began) => began + self.limits.partial_timeout,
                None => last_byte + self.limits.idle_timeout,
            };
            let read = tokio::select! {
                () = self.close.cancelled() => return,
                () = tokio::time::sleep_until(deadline) => {
                    let why = if packet_began.is_some() { "a packet left incomplete" } else { "idle" };
                    debug!(%peer, why, "HEP TCP connection timed out");
                    return;
                }
                read = stream.read_buf(&mut buf) => read,
            };
            match read {
                Ok(0) => return,
                Ok(_) => {
                    last_byte = tokio::time::Instant::now();
                    self.activity
                        .last_byte_ms
                        .store(elapsed_ms(self.started), Relaxed);
                }
                Err(error) => {
                    debug!(%peer, %error, "HEP TCP read error");
                    return;
                }
            }
        }
    }
}

/// Owns the SIP tracker, and reads the UDP socket itself when there is one:
/// captures in, call events out, silent calls reaped on time. TCP connections,
/// one task each, send their captures through `tcp` ([`SIP_QUEUE_CAPACITY`]).
///
/// The UDP socket is read here rather than in a task of its own: a datagram
/// goes from the socket to the tracker without a channel and a task wake-up
/// between them, which was one hop of every pop. Backpressure is unchanged:
/// while `events` is full the socket is not read, and the kernel's buffer
/// absorbs or drops, as when the channel between them was full.
///
/// Returns when `shutdown` fires, when the pipeline is gone, or when there is
/// no UDP socket and every TCP sender is gone.
pub async fn run_tracker(
    config: SipTrackerConfig,
    mut udp: Option<UdpReceiver>,
    mut tcp: mpsc::Receiver<SipCapture>,
    events: mpsc::Sender<CallEvent>,
    shutdown: CancellationToken,
) {
    let mut tracker = SipTracker::new(config);
    let mut parse_errors = RateLimitedLog::new(Duration::from_secs(10));
    let mut tcp_open = true;
    loop {
        let deadline = tracker.next_timeout().map(|at| {
            let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::time::Instant::now() + wait
        });
        let capture = tokio::select! {
            () = shutdown.cancelled() => return,
            capture = recv_udp(udp.as_mut()) => Some(capture),
            capture = tcp.recv(), if tcp_open => match capture {
                Some(capture) => Some(capture),
                None if udp.is_none() => return,
                None => {
                    tcp_open = false;
                    None
                }
            },
            () = sleep_until(deadline) => {
                tracker.handle_timeout(Utc::now());
                None
            }
        };
        if let Some(capture) = capture {
            if let Err(error) = tracker.handle(
                capture.received_at,
                capture.src,
                capture.dst,
                &capture.payload,
            ) {
                if let Some(suppressed) = parse_errors.tick() {
                    warn!(src = ?capture.src, %error, suppressed, "SIP message not understood");
                }
            }
        }
        while let Some(event) = tracker.poll_event() {
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// The next capture from the UDP socket; never, without one.
async fn recv_udp(udp: Option<&mut UdpReceiver>) -> SipCapture {
    match udp {
        Some(udp) => udp.recv().await,
        None => std::future::pending().await,
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
            stats: Arc::default(),
        };
        assert!(filter.allows_peer("127.0.0.1".parse().unwrap()));
        assert!(filter.allows_peer("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!filter.allows_peer("192.0.2.1".parse().unwrap()));
        assert!(!filter.allows_peer("::1".parse().unwrap()));
    }

    /// A listener on loopback with small limits; its captures and its stop.
    async fn listener(
        limits: TcpLimits,
    ) -> (
        SocketAddr,
        mpsc::Receiver<SipCapture>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(16);
        let shutdown = CancellationToken::new();
        let filter = Arc::new(HepFilter {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            auth_key: None,
            stats: Arc::default(),
        });
        let task = tokio::spawn(run_tcp(listener, filter, limits, tx, shutdown.clone()));
        (addr, rx, shutdown, task)
    }

    fn sip_packet() -> Vec<u8> {
        hep::encode(&HepPacket {
            proto_type: Some(1),
            payload: Bytes::from_static(b"OPTIONS sip:201@127.0.0.1 SIP/2.0\r\n\r\n"),
            ..HepPacket::default()
        })
    }

    /// Waits (bounded) until the server closes `stream`.
    async fn closed(stream: &mut TcpStream) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn a_new_connection_closes_the_stalled_one_idle_longest_and_partial_packets_time_out() {
        use tokio::io::AsyncWriteExt;
        let limits = TcpLimits {
            max_connections: 8,
            max_per_source: 2,
            idle_timeout: Duration::from_secs(60),
            partial_timeout: Duration::from_millis(300),
        };
        let (addr, mut captures, shutdown, task) = listener(limits).await;
        let packet = sip_packet();
        let mut oldest = TcpStream::connect(addr).await.unwrap();
        oldest.write_all(&packet[..10]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut newer = TcpStream::connect(addr).await.unwrap();
        newer.write_all(&packet[..10]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The source is at its limit: the PBX's new connection gets in.
        let mut pbx = TcpStream::connect(addr).await.unwrap();
        pbx.write_all(&packet).await.unwrap();
        let capture = tokio::time::timeout(Duration::from_secs(5), captures.recv()).await;
        assert!(
            matches!(capture, Ok(Some(_))),
            "the new connection is served"
        );
        assert!(
            closed(&mut oldest).await,
            "the oldest stalled one made room"
        );
        // The other stalled one goes at its partial-packet timeout; the PBX's stays.
        assert!(
            closed(&mut newer).await,
            "a packet left half sent times out"
        );
        pbx.write_all(&packet).await.unwrap();
        let capture = tokio::time::timeout(Duration::from_secs(5), captures.recv()).await;
        assert!(
            matches!(capture, Ok(Some(_))),
            "the PBX's connection still works"
        );
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn packets_sent_back_to_back_never_count_as_one_slow_packet() {
        use tokio::io::AsyncWriteExt;
        let limits = TcpLimits {
            partial_timeout: Duration::from_millis(200),
            ..TcpLimits::default()
        };
        let (addr, mut captures, shutdown, task) = listener(limits).await;
        let packet = sip_packet();
        let mut pbx = TcpStream::connect(addr).await.unwrap();
        // Each write ends mid-packet; the stream is never idle for the timeout,
        // and no single packet takes that long.
        let split = packet.len() / 2;
        pbx.write_all(&packet[..split]).await.unwrap();
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut chunk = packet[split..].to_vec();
            chunk.extend_from_slice(&packet[..split]);
            pbx.write_all(&chunk).await.unwrap();
            let capture = tokio::time::timeout(Duration::from_secs(5), captures.recv()).await;
            assert!(matches!(capture, Ok(Some(_))));
        }
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn udp_packets_are_counted_accepted_or_dropped_with_their_reason() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let stats = Arc::new(HepStats::default());
        let filter = Arc::new(HepFilter {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            auth_key: Some(Bytes::from_static(b"key")),
            stats: stats.clone(),
        });
        let mut receiver = UdpReceiver::new(socket, filter);
        let with_key = |proto_type, key: Option<&'static [u8]>| {
            hep::encode(&HepPacket {
                proto_type: Some(proto_type),
                auth_key: key.map(Bytes::from_static),
                payload: Bytes::from_static(b"OPTIONS sip:201@127.0.0.1 SIP/2.0\r\n\r\n"),
                ..HepPacket::default()
            })
        };
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for datagram in [
            with_key(1, Some(b"key")),
            with_key(1, Some(b"other")),
            with_key(1, None),
            with_key(5, Some(b"key")),
            b"not HEP at all".to_vec(),
            with_key(1, Some(b"key")),
        ] {
            sender.send_to(&datagram, addr).await.unwrap();
        }
        for _ in 0..2 {
            let capture = tokio::time::timeout(Duration::from_secs(5), receiver.recv()).await;
            assert!(capture.is_ok(), "both keyed SIP packets pass");
        }
        // The datagrams are read in order: the last one passed, so all were seen.
        assert_eq!(stats.accepted(HepTransport::Udp), 2);
        assert_eq!(stats.accepted(HepTransport::Tcp), 0);
        assert_eq!(stats.dropped(HepDrop::BadAuthKey), 2);
        assert_eq!(stats.dropped(HepDrop::NotSip), 1);
        assert_eq!(stats.dropped(HepDrop::Malformed), 1);
        assert_eq!(stats.dropped(HepDrop::NotAllowed), 0);
    }

    #[tokio::test]
    async fn the_tracker_reads_udp_itself_and_outlives_the_tcp_listener() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let filter = Arc::new(HepFilter {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            auth_key: None,
            stats: Arc::default(),
        });
        let config = SipTrackerConfig {
            agents: crate::ExtensionPatterns::new([r"2\d\d"]).unwrap(),
            ..SipTrackerConfig::default()
        };
        // No TCP listener: its channel is closed from the start.
        let (tcp_tx, tcp_rx) = mpsc::channel(16);
        drop(tcp_tx);
        let (events_tx, mut events) = mpsc::channel(16);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_tracker(
            config,
            Some(UdpReceiver::new(socket, filter)),
            tcp_rx,
            events_tx,
            shutdown.clone(),
        ));
        let invite = "INVITE sip:201@127.0.0.1:5060 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-udp\r\n\
            From: <sip:0612345678@127.0.0.1>;tag=c1\r\n\
            To: <sip:201@127.0.0.1>\r\n\
            Call-ID: udp-tracker@127.0.0.1\r\n\
            CSeq: 1 INVITE\r\n\
            Contact: <sip:0612345678@127.0.0.1:5090>\r\n\
            Content-Length: 0\r\n\r\n";
        let datagram = hep::encode(&HepPacket {
            proto_type: Some(1),
            payload: Bytes::from_static(invite.as_bytes()),
            ..HepPacket::default()
        });
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sender.send_to(&datagram, addr).await.unwrap();
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("the INVITE became an event")
            .expect("the tracker is running");
        assert_eq!(event.kind.name(), "call_started");
        shutdown.cancel();
        task.await.unwrap();
    }

    #[test]
    fn auth_key_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
