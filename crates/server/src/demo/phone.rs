//! The simulated phone system: one task that places the demo's calls on a
//! timer (the first a few seconds after start, then one every 15 to 30 s),
//! on demand (`POST /api/demo/calls`), and at once for an agent who just
//! opened her page, and plays each call's SIP messages as HEP v3 datagrams
//! into Fiche's own HEP listener. The real listener, tracker and pipeline
//! then handle them as they handle a real PBX's mirror.

use super::scenario::{self, Caller, Scenario, Script, Timing};
use super::seed;
use super::sip::SipPacket;
use bytes::Bytes;
use fiche_hub::Hub;
use fiche_pbx::hep::{try_encode, HepPacket, PayloadEncoding, PROTO_TYPE_SIP};
use fiche_pbx::{CallId, Source};
use rand::Rng;
use serde::Serialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The first call, after start: long enough for the listeners to run, short
/// enough that whoever started the demo sees calls at once on the board.
const FIRST_CALL_AFTER: Duration = Duration::from_secs(3);
/// Between two calls placed on the timer, at random within these bounds.
const CALL_EVERY_SECS: std::ops::RangeInclusive<u64> = 15..=30;
/// How soon an agent who just opened her page gets a call.
const GREET_AFTER: Duration = Duration::from_secs(2);
/// How often the phone system looks at who is connected.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// Most calls playing at once; an on-demand call beyond is refused (busy).
pub const MAX_PLAYING: usize = 12;
/// Pending on-demand requests; a full queue answers "busy" at once.
pub const REQUEST_CAPACITY: usize = 8;
/// The HEP capture id the simulated PBX sends (Kamailio's in the test PBX).
const CAPTURE_ID: u32 = 101;

/// A call placed by the simulated phone system.
#[derive(Debug, Clone, Serialize)]
pub struct PlacedCall {
    /// The scenario's key (`known_answered`, `transfer`, …).
    pub scenario: &'static str,
    /// What happens, in French.
    pub title: &'static str,
    /// Fiche's ids of the call (two for a transfer: the call and its new leg).
    pub call_ids: Vec<CallId>,
}

/// Why an on-demand call was not placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// Too many calls are playing or waiting.
    #[error("the simulated phone system is busy: too many calls at once")]
    Busy,
    /// The phone system stopped (the server is shutting down).
    #[error("the simulated phone system has stopped")]
    Stopped,
}

/// The handle the HTTP route uses to ask for a call.
#[derive(Debug, Clone)]
pub struct DemoHandle {
    requests: mpsc::Sender<oneshot::Sender<Result<PlacedCall, PlaceError>>>,
}

impl DemoHandle {
    /// Places the next scenario now.
    pub async fn place_call(&self) -> Result<PlacedCall, PlaceError> {
        let (reply, answer) = oneshot::channel();
        self.requests.try_send(reply).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => PlaceError::Busy,
            mpsc::error::TrySendError::Closed(_) => PlaceError::Stopped,
        })?;
        answer.await.map_err(|_| PlaceError::Stopped)?
    }
}

/// The simulated phone system, before it runs.
pub struct PhoneSystem {
    target: SocketAddr,
    auth_key: Option<Bytes>,
    requests: mpsc::Receiver<oneshot::Sender<Result<PlacedCall, PlaceError>>>,
    handle: DemoHandle,
    run_id: String,
    placed: u64,
    rotation: usize,
}

/// One call being played.
struct Playing {
    script: Script,
    started: Instant,
    next: usize,
}

impl Playing {
    fn next_at(&self) -> Option<Instant> {
        self.script
            .steps
            .get(self.next)
            .map(|s| self.started + s.at)
    }
}

impl PhoneSystem {
    /// A phone system sending to Fiche's HEP listener at `target`, with the
    /// configured HEP auth key.
    pub fn new(target: SocketAddr, auth_key: Option<String>) -> Self {
        let (tx, rx) = mpsc::channel(REQUEST_CAPACITY);
        let run_id: String = {
            let mut rng = rand::thread_rng();
            (0..6)
                .map(|_| char::from(b"0123456789abcdef"[rng.gen_range(0..16)]))
                .collect()
        };
        Self {
            target,
            auth_key: auth_key.map(Bytes::from),
            requests: rx,
            handle: DemoHandle { requests: tx },
            run_id,
            placed: 0,
            rotation: 0,
        }
    }

    /// The handle that asks this phone system for calls (the HTTP route's).
    pub fn handle(&self) -> DemoHandle {
        self.handle.clone()
    }

    /// Places calls until `shutdown`; `hub` tells which agents have a page open.
    pub async fn run(mut self, hub: Hub, shutdown: CancellationToken) {
        let bind: SocketAddr = if self.target.is_ipv6() {
            (std::net::Ipv6Addr::LOCALHOST, 0).into()
        } else {
            (std::net::Ipv4Addr::LOCALHOST, 0).into()
        };
        let socket = match UdpSocket::bind(bind).await {
            Ok(socket) => socket,
            Err(error) => {
                warn!(%error, "demo phone system: no UDP socket, no simulated calls");
                return;
            }
        };
        info!(target = %self.target, "demo phone system: calls go to the HEP listener");
        let mut playing: Vec<Playing> = Vec::new();
        let mut next_call = Instant::now() + FIRST_CALL_AFTER;
        let mut greet: Option<String> = None;
        let mut online: HashSet<String> = HashSet::new();
        let mut watch = tokio::time::interval(WATCH_EVERY);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = playing
                .iter()
                .filter_map(Playing::next_at)
                .min()
                .map_or(next_call, |step| step.min(next_call));
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = sleep_until(wake) => {}
                request = self.requests.recv() => {
                    let Some(reply) = request else { return };
                    let placed = if playing.len() >= MAX_PLAYING {
                        Err(PlaceError::Busy)
                    } else {
                        Ok(self.place(&mut playing, None))
                    };
                    drop(reply.send(placed));
                }
                _ = watch.tick() => {
                    let now_online = online_extensions(&hub);
                    if let Some(ext) = now_online.difference(&online).next() {
                        debug!(extension = %ext, "demo: an agent opened her page, a call for her");
                        greet = Some(ext.clone());
                    }
                    online = now_online;
                    // Her call comes as soon as her phone is free.
                    if greet.as_deref().is_some_and(|ext| !busy(&playing).contains(ext)) {
                        next_call = next_call.min(Instant::now() + GREET_AFTER);
                    }
                }
            }
            let now = Instant::now();
            for call in &mut playing {
                while call.next_at().is_some_and(|at| at <= now) {
                    if let Some(step) = call.script.steps.get(call.next) {
                        self.send(&socket, &step.packet).await;
                    }
                    call.next += 1;
                }
            }
            playing.retain(|call| call.next < call.script.steps.len());
            if now >= next_call {
                if playing.len() < MAX_PLAYING {
                    let mut prefer = greet.take();
                    if prefer
                        .as_deref()
                        .is_some_and(|ext| busy(&playing).contains(ext))
                    {
                        // Still on a call: her own call waits until she hangs up.
                        greet = prefer.take();
                    }
                    self.place(&mut playing, prefer.as_deref());
                }
                let secs = rand::thread_rng().gen_range(CALL_EVERY_SECS);
                next_call = now + Duration::from_secs(secs);
            }
        }
    }

    /// Starts the next scenario (one ringing `prefer` when given), now.
    fn place(&mut self, playing: &mut Vec<Playing>, prefer: Option<&str>) -> PlacedCall {
        let busy = busy(playing);
        let scenario = pick(self.rotation, prefer, &busy);
        if let Some(index) = Scenario::ROTATION.iter().position(|s| *s == scenario) {
            self.rotation = (index + 1) % Scenario::ROTATION.len();
        }
        self.placed += 1;
        let nonce = format!("{}-{}", self.run_id, self.placed);
        let caller = caller_for(scenario);
        let script = scenario::script(scenario, &nonce, &caller, random_timing(scenario));
        info!(scenario = scenario.key(), "demo: {}", scenario.title());
        let placed = PlacedCall {
            scenario: scenario.key(),
            title: scenario.title(),
            call_ids: script
                .call_ids
                .iter()
                .map(|key| CallId::from_source_key(Source::Hep, key))
                .collect(),
        };
        playing.push(Playing {
            script,
            started: Instant::now(),
            next: 0,
        });
        placed
    }

    async fn send(&self, socket: &UdpSocket, packet: &SipPacket) {
        match hep_datagram(packet, self.auth_key.clone()) {
            Ok(datagram) => {
                if let Err(error) = socket.send_to(&datagram, self.target).await {
                    debug!(%error, "demo: a HEP datagram was not sent");
                }
            }
            Err(error) => warn!(%error, "demo: a SIP message could not be wrapped in HEP"),
        }
    }
}

/// `packet` as the HEP v3 datagram a Kamailio `siptrace` mirror sends (also
/// what the cluster tests send to several nodes).
pub fn hep_datagram(
    packet: &SipPacket,
    auth_key: Option<Bytes>,
) -> Result<Vec<u8>, fiche_pbx::hep::HepEncodeError> {
    let hep = HepPacket {
        ip_family: Some(if packet.src.is_ipv6() { 10 } else { 2 }),
        ip_protocol: Some(17),
        src: Some(packet.src),
        dst: Some(packet.dst),
        timestamp: Some(chrono::Utc::now()),
        proto_type: Some(PROTO_TYPE_SIP),
        capture_id: Some(CAPTURE_ID),
        auth_key,
        correlation_id: None,
        node_name: Some(Bytes::from_static(b"fiche-demo")),
        payload: Bytes::from(packet.text.clone().into_bytes()),
    };
    try_encode(&hep, PayloadEncoding::Plain)
}

/// The extensions of the agents who have a page open.
fn online_extensions(hub: &Hub) -> HashSet<String> {
    hub.agents()
        .into_iter()
        .filter(|agent| agent.connections > 0)
        .flat_map(|agent| agent.extensions)
        .collect()
}

/// The phones the calls being played occupy.
fn busy(playing: &[Playing]) -> HashSet<&'static str> {
    playing
        .iter()
        .flat_map(|call| call.script.scenario.phones().iter().copied())
        .collect()
}

/// The scenario to place: from `rotation` on, the first that rings `prefer`
/// (when given) and whose phones are free; else the first whose phones are
/// free; else the next in turn (phones ring during a call: call waiting).
pub(super) fn pick(rotation: usize, prefer: Option<&str>, busy: &HashSet<&str>) -> Scenario {
    let order = || {
        (0..Scenario::ROTATION.len())
            .map(move |i| Scenario::ROTATION[(rotation + i) % Scenario::ROTATION.len()])
    };
    let free = |s: &Scenario| s.phones().iter().all(|p| !busy.contains(p));
    let rings = |s: &Scenario| prefer.is_none_or(|ext| s.first_rings().contains(&ext));
    order()
        .find(|s| free(s) && rings(s))
        .or_else(|| order().find(|s| rings(s)))
        .or_else(|| order().find(free))
        .unwrap_or(Scenario::ROTATION[rotation % Scenario::ROTATION.len()])
}

fn caller_for(scenario: Scenario) -> Caller {
    match scenario {
        Scenario::KnownMissed | Scenario::RepeatMissed => seed::regular_caller(),
        Scenario::UnknownAnswered => seed::stranger(),
        Scenario::KnownAnswered
        | Scenario::GroupAnswered
        | Scenario::WithheldGroup
        | Scenario::Transfer => seed::calling_customer(),
    }
}

fn random_timing(scenario: Scenario) -> Timing {
    let mut rng = rand::thread_rng();
    let missed = matches!(scenario, Scenario::KnownMissed | Scenario::RepeatMissed);
    let ring_ms = if missed {
        rng.gen_range(12_000..=18_000)
    } else {
        rng.gen_range(4_000..=9_000)
    };
    Timing {
        ring: Duration::from_millis(ring_ms),
        talk: Duration::from_millis(rng.gen_range(8_000..=20_000)),
    }
}
