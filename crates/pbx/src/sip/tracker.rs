//! The call state machine: one [`Call`] per SIP Call-ID, fed with message facts.

use super::identity::{self, IdentityHeaders};
use super::message::{self, MessageKind, SipFacts, StartLine};
use super::{sdp, SipError, SipTrackerConfig};
use crate::model::{
    CallEvent, CallEventKind, CallId, Direction, Extension, Outcome, Source, StopCause, Timestamp,
    Transfer, TransferKind,
};
use crate::ExtensionPatterns;
use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

/// Lower Via branches kept per leg (enough for a chain of proxies).
const MAX_LOWER_BRANCHES: usize = 8;
/// Phone registrations remembered (Contact location → extension).
const MAX_REGISTRATIONS: usize = 65_536;
/// REFERs remembered per call to drop their mirrored copies.
const MAX_REFERS_SEEN: usize = 16;
/// Events waiting for [`SipTracker::poll_event`]; the driver drains after each
/// call, so reaching this means it stopped polling: the oldest are dropped.
const MAX_PENDING_EVENTS: usize = 65_536;

/// Where an INVITE leg stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegState {
    Calling,
    Ringing,
    Answered,
    Failed,
}

/// One INVITE client transaction of the call (one hop, one fork branch).
#[derive(Debug)]
struct Leg {
    /// Top Via branch of the INVITE: names the leg in its responses and CANCEL.
    branch: String,
    /// The Via branches under the top one: the legs this one proxies.
    lower: Vec<String>,
    cseq: u32,
    /// Request-URI user, else To user: the phone this leg rings.
    extension: Option<String>,
    to_tag: Option<String>,
    state: LegState,
    /// Another leg carries this leg's branch lower in its Via stack.
    proxied: bool,
}

/// An extension announced as ringing.
#[derive(Debug)]
struct RingingExtension {
    extension: String,
    /// Its leg failed while it was the only phone ringing: the stop is announced
    /// only if the call goes on (a next phone rings), else `Ended` says it all.
    stop_cause: Option<StopCause>,
}

/// An end decided but held back, waiting for a re-sent INVITE or a lost response.
#[derive(Debug, Clone)]
struct PendingEnd {
    at: Timestamp,
    outcome: Outcome,
    cause: String,
}

#[derive(Debug)]
struct Call {
    id: CallId,
    /// Creation order, to tell this call from an older one with the same Call-ID.
    serial: u64,
    caller_tag: String,
    legs: Vec<Leg>,
    ringing: Vec<RingingExtension>,
    answered: bool,
    answered_to_tag: Option<String>,
    /// Hold requested by the caller side, by the callee side.
    held_by: [bool; 2],
    refers_seen: VecDeque<(String, u32)>,
    last_seen: Timestamp,
    pending_end: Option<PendingEnd>,
    ended_at: Option<Timestamp>,
    /// Time of this call's earliest entry in the timer heap (never later than its deadline).
    scheduled: Option<Timestamp>,
    /// Highest CSeq among the caller's legs: finals to older attempts are stale.
    root_cseq: u32,
    /// Placed by an agent to the outside: the far end ringing is no agent's
    /// phone, so it raises no `Ringing` and its answer names no extension.
    outbound: bool,
}

/// Hasher for keys that already are hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Recently seen payloads, bounded in time and count.
#[derive(Debug, Default)]
struct Dedup {
    seen: HashSet<u64, BuildHasherDefault<PassThrough>>,
    order: VecDeque<(Timestamp, u64)>,
}

impl Dedup {
    /// True when `hash` was seen within `window` (forgetting older entries).
    fn contains(&mut self, now: Timestamp, hash: u64, window: Duration) -> bool {
        let horizon = now - chrono_duration(window);
        while let Some(&(at, old)) = self.order.front() {
            if at > horizon {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&old);
        }
        self.seen.contains(&hash)
    }

    /// Remembers `hash`, forgetting the oldest entries beyond `cap`.
    fn insert(&mut self, now: Timestamp, hash: u64, cap: usize) {
        while self.order.len() >= cap.max(1) {
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        if self.seen.insert(hash) {
            self.order.push_back((now, hash));
        }
    }
}

/// Keyed 64-bit hash of a payload, eight bytes at a time (folded multiply, as
/// in wyhash): fast enough to run on every message, and keyed so that a sender
/// cannot predict collisions. A collision only drops one message as a duplicate.
fn payload_hash(seed: u64, bytes: &[u8]) -> u64 {
    const K1: u64 = 0xa076_1d64_78bd_642f;
    const K2: u64 = 0xe703_7ed1_a0b4_28db;
    let fold = |a: u64, b: u64| {
        let product = u128::from(a) * u128::from(b);
        (product as u64) ^ ((product >> 64) as u64)
    };
    let mut h = seed ^ (bytes.len() as u64).wrapping_mul(K1);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = fold(h ^ u64::from_le_bytes(word) ^ K1, K2);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    fold(h ^ u64::from_le_bytes(tail) ^ K2, K1 ^ seed)
}

/// How often a kind of reaped call is logged at most; the others are counted.
const REAP_LOG_EVERY: chrono::Duration = chrono::Duration::seconds(10);

/// Logs a kind of reaped call at most once per [`REAP_LOG_EVERY`] of the
/// tracker's clock, with how many went unlogged, so that a flood of setups
/// never answered costs a few log lines, not one per call.
#[derive(Debug, Default)]
struct ReapLog {
    last: Option<Timestamp>,
    suppressed: u64,
}

impl ReapLog {
    /// The count of unlogged occurrences to report now, or `None` to stay quiet.
    fn tick(&mut self, now: Timestamp) -> Option<u64> {
        if self.last.is_some_and(|last| now - last < REAP_LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Tracks SIP dialogs and emits call events. See the module docs.
#[derive(Debug)]
pub struct SipTracker {
    config: SipTrackerConfig,
    calls: HashMap<String, Call>,
    /// Deadlines, lazily invalidated: an entry is live only if it equals its call's `scheduled`.
    timers: BinaryHeap<Reverse<(Timestamp, String)>>,
    /// Calls in creation order, for eviction at `max_calls`; stale entries are skipped.
    creation_order: VecDeque<(u64, String)>,
    next_serial: u64,
    dedup: Dedup,
    /// Random per tracker, so crafted payloads cannot aim at a known hash.
    hash_seed: u64,
    events: VecDeque<CallEvent>,
    active: usize,
    /// `host:port` of each registered Contact → the extension (REGISTER To user),
    /// for phones whose Contact user is not their extension.
    registrations: HashMap<String, String>,
    /// Calls ended for silence, logged a few at a time.
    silent_log: ReapLog,
    /// Calls dropped for room, logged a few at a time.
    dropped_log: ReapLog,
}

impl SipTracker {
    /// A tracker with no call.
    pub fn new(config: SipTrackerConfig) -> Self {
        Self {
            config,
            calls: HashMap::new(),
            timers: BinaryHeap::new(),
            creation_order: VecDeque::new(),
            next_serial: 0,
            dedup: Dedup::default(),
            hash_seed: RandomState::new().hash_one(0x5eed_u64),
            events: VecDeque::new(),
            active: 0,
            registrations: HashMap::new(),
            silent_log: ReapLog::default(),
            dropped_log: ReapLog::default(),
        }
    }

    /// One captured SIP message (the HEP payload) with the capture's addresses.
    ///
    /// Traffic that is not about calls (OPTIONS, SUBSCRIBE, NOTIFY, MESSAGE, ...)
    /// and messages of unknown calls are ignored cheaply, before rsip parses
    /// anything; REGISTER is read only to learn which Contact is which extension.
    /// An error means the payload is not usable SIP (it is reported again if it
    /// comes again: only usable messages enter the duplicate filter).
    pub fn handle(
        &mut self,
        now: Timestamp,
        src: Option<SocketAddr>,
        dst: Option<SocketAddr>,
        payload: &[u8],
    ) -> Result<(), SipError> {
        let Some(normalised) = message::normalise(payload)? else {
            return Ok(());
        };
        let head = normalised.head();
        let start = StartLine::parse(head)?;
        let pre = message::prescan(head);
        let needs_call = match start {
            StartLine::Request { method, .. } => match method {
                "INVITE" | "REGISTER" => false,
                "CANCEL" | "BYE" | "UPDATE" | "REFER" => true,
                _ => {
                    self.touch(now, pre.call_id);
                    return Ok(());
                }
            },
            StartLine::Response { code, .. } => {
                // 100 Trying is hop-by-hop progress: no call state in it.
                if pre.cseq_method != Some("INVITE") || code == 100 {
                    self.touch(now, pre.call_id);
                    return Ok(());
                }
                true
            }
        };
        if needs_call && !pre.call_id.is_some_and(|c| self.is_live(c)) {
            return Ok(());
        }
        let hash = payload_hash(self.hash_seed, &normalised.bytes);
        if self.dedup.contains(now, hash, self.config.dedup_window) {
            tracing::trace!(?src, ?dst, "duplicate SIP message dropped");
            return Ok(());
        }
        let parsed = message::parse(&normalised.bytes, start)?;
        let facts = SipFacts::extract(&parsed, start)?;
        // Only usable messages are remembered, so a broken one is reported every time.
        self.dedup.insert(now, hash, self.config.max_dedup_entries);
        match &facts.kind {
            MessageKind::Request { method, .. } => match method {
                // An INVITE inside a dialog Fiche never saw start (a call set up
                // before Fiche listened, refreshed by a re-INVITE) is a live call
                // all the same: it starts one, as an initial INVITE would.
                rsip::Method::Invite if facts.to_tag.is_none() || !self.is_live(facts.call_id) => {
                    self.on_initial_invite(now, &facts)
                }
                rsip::Method::Invite | rsip::Method::Update => self.on_offer_in_dialog(now, &facts),
                rsip::Method::Cancel => self.on_cancel(now, &facts),
                rsip::Method::Bye => self.on_bye(now, &facts),
                rsip::Method::Refer => self.on_refer(now, &facts)?,
                rsip::Method::Register => self.on_register(&facts),
                _ => {}
            },
            MessageKind::Response { code, reason } => {
                if facts.cseq_method == "INVITE" {
                    self.on_invite_response(now, &facts, *code, reason);
                }
            }
        }
        Ok(())
    }

    /// The next event, in the order they happened.
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called; may
    /// be early (a call that got news since is simply rescheduled).
    pub fn next_timeout(&self) -> Option<Timestamp> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Ends calls that went silent and forgets calls ended long enough ago.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, key))) = self.timers.pop() else {
                break;
            };
            let Some(call) = self.calls.get_mut(&key) else {
                continue;
            };
            if call.scheduled != Some(at) {
                continue;
            }
            call.scheduled = None;
            let deadline = self.deadline(&key);
            match deadline {
                Some(d) if d > now => self.schedule(&key),
                _ => self.expire(now, &key),
            }
        }
    }

    /// Calls not yet ended.
    pub fn active_calls(&self) -> usize {
        self.active
    }

    fn expire(&mut self, now: Timestamp, key: &str) {
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        if call.ended_at.is_some() {
            self.calls.remove(key);
            return;
        }
        let (outcome, cause) = match call.pending_end.take() {
            Some(p) if p.at <= now => (p.outcome, p.cause),
            _ => {
                if let Some(suppressed) = self.silent_log.tick(now) {
                    tracing::info!(call_id = %call.id, sip_call_id = ?key, answered = call.answered,
                        suppressed, "no SIP message for too long, call ended");
                }
                (Outcome::Failed, "signal lost".to_owned())
            }
        };
        self.end(now, key, outcome, cause);
    }

    fn is_live(&self, call_id: &str) -> bool {
        self.calls
            .get(call_id)
            .is_some_and(|c| c.ended_at.is_none())
    }

    fn touch(&mut self, now: Timestamp, call_id: Option<&str>) {
        if let Some(call) = call_id.and_then(|c| self.calls.get_mut(c)) {
            if call.ended_at.is_none() && now > call.last_seen {
                call.last_seen = now;
            }
        }
    }

    /// When the call needs attention next: removal, a held-back end, or silence.
    fn deadline(&self, key: &str) -> Option<Timestamp> {
        let call = self.calls.get(key)?;
        if let Some(ended) = call.ended_at {
            return Some(ended + chrono_duration(self.config.linger));
        }
        let quiet = if call.answered {
            self.config.silence_timeout
        } else {
            self.config.ringing_timeout
        };
        let silence = call.last_seen + chrono_duration(quiet);
        Some(match &call.pending_end {
            Some(p) => p.at.min(silence),
            None => silence,
        })
    }

    /// Keeps a heap entry no later than the call's deadline.
    fn schedule(&mut self, key: &str) {
        let Some(deadline) = self.deadline(key) else {
            return;
        };
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        if call.scheduled.is_none_or(|s| deadline < s) {
            call.scheduled = Some(deadline);
            self.timers.push(Reverse((deadline, key.to_owned())));
        }
    }

    fn emit(&mut self, id: CallId, at: Timestamp, kind: CallEventKind) {
        if self.events.len() >= MAX_PENDING_EVENTS {
            tracing::error!("call events are not being polled; dropping the oldest");
            self.events.pop_front();
        }
        self.events.push_back(CallEvent {
            call_id: id,
            source: Source::Hep,
            at,
            kind,
        });
    }

    /// Ends the call once; later calls are no-ops.
    fn end(&mut self, now: Timestamp, key: &str, outcome: Outcome, cause: String) {
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        if call.ended_at.is_some() {
            return;
        }
        call.ended_at = Some(now);
        call.pending_end = None;
        call.ringing.clear();
        let id = call.id;
        self.active = self.active.saturating_sub(1);
        self.emit(id, now, CallEventKind::Ended { outcome, cause });
        self.schedule(key);
    }

    fn on_initial_invite(&mut self, now: Timestamp, f: &SipFacts<'_>) {
        let leg = self.new_leg(f);
        if let Some(call) = self.calls.get_mut(f.call_id) {
            if call.ended_at.is_some() {
                return;
            }
            call.last_seen = call.last_seen.max(now);
            if let Some(index) = call.leg_index(&leg.branch) {
                // A leg first learned from its phone's response: the INVITE names
                // the phone when the response could not.
                let known = &mut call.legs[index];
                if known.extension.is_none() && leg.extension.is_some() {
                    known.extension = leg.extension;
                    if known.state == LegState::Ringing {
                        let key = f.call_id.to_owned();
                        self.on_ringing(now, &key, Some(index));
                    }
                }
                return;
            }
            if call.legs.len() >= self.config.max_legs_per_call {
                tracing::warn!(call_id = %call.id, "too many INVITE legs, ignoring one more");
                return;
            }
            // A new attempt (after a challenge or redirect) or a new branch: the call goes on.
            call.pending_end = None;
            add_leg(call, leg);
            let key = f.call_id.to_owned();
            self.schedule(&key);
            return;
        }
        self.make_room(now);
        let headers = IdentityHeaders {
            from: f.from,
            p_asserted_identity: f.p_asserted_identity.clone(),
            remote_party_id: f.remote_party_id.clone(),
            privacy: f.privacy.clone(),
            diversion: f.diversion.clone(),
            history_info: f.history_info.clone(),
        };
        let caller = identity::caller(&headers);
        let callee = identity::callee(f.to);
        let direction = self
            .config
            .agents
            .direction(caller.number.as_deref(), callee.number.as_deref());
        let id = CallId::from_source_key(Source::Hep, f.call_id);
        let serial = self.next_serial;
        self.next_serial += 1;
        let mut call = Call {
            id,
            serial,
            caller_tag: f.from_tag.unwrap_or("").to_owned(),
            legs: Vec::new(),
            ringing: Vec::new(),
            answered: false,
            answered_to_tag: None,
            held_by: [false; 2],
            refers_seen: VecDeque::new(),
            last_seen: now,
            pending_end: None,
            ended_at: None,
            scheduled: None,
            root_cseq: 0,
            outbound: direction == Direction::Outbound,
        };
        add_leg(&mut call, leg);
        tracing::debug!(call_id = %id, sip_call_id = ?f.call_id, ?direction, "call started");
        self.emit(
            id,
            now,
            CallEventKind::CallStarted {
                source_key: f.call_id.to_owned(),
                direction,
                caller,
                callee,
                diverted_from: identity::diverted_from(&headers),
                queue: None,
            },
        );
        self.calls.insert(f.call_id.to_owned(), call);
        self.creation_order
            .push_back((serial, f.call_id.to_owned()));
        if self.creation_order.len() > 2 * self.calls.len() + 1024 {
            // Calls forgotten after their linger leave stale entries behind.
            let calls = &self.calls;
            self.creation_order
                .retain(|(serial, key)| calls.get(key).is_some_and(|c| c.serial == *serial));
        }
        self.active += 1;
        self.schedule(f.call_id);
    }

    /// Learns which extension a phone's Contact belongs to.
    fn on_register(&mut self, f: &SipFacts<'_>) {
        let Some(extension) = identity::uri_number(identity::parse_name_addr(f.to).uri) else {
            return;
        };
        let header_expires = f.expires.and_then(|e| e.parse::<u32>().ok());
        for contact in f.contacts.iter().flat_map(|c| identity::split_list(c)) {
            let contact = identity::parse_name_addr(contact);
            let Some(location) = identity::uri_location(contact.uri) else {
                continue;
            };
            let expires = identity::param(contact.params, "expires")
                .and_then(|e| e.parse::<u32>().ok())
                .or(header_expires);
            if expires == Some(0) {
                self.registrations.remove(&location);
            } else if self.registrations.len() < MAX_REGISTRATIONS
                || self.registrations.contains_key(&location)
            {
                self.registrations.insert(location, extension.clone());
            }
        }
    }

    fn new_leg(&self, f: &SipFacts<'_>) -> Leg {
        let (request_user, request_uri) = match &f.kind {
            MessageKind::Request {
                request_user,
                request_uri,
                ..
            } => (request_user.clone(), *request_uri),
            MessageKind::Response { .. } => (None, ""),
        };
        // A phone reached at its registered Contact whose user part is not the
        // extension (e.g. `sip:yealink-3f2a@10.0.0.7`): the REGISTER says which it is.
        let request_user = match request_user {
            Some(user) if self.config.agents.is_agent(&user) => Some(user),
            other => identity::uri_location(request_uri)
                .and_then(|location| self.registrations.get(&location).cloned())
                .or(other),
        };
        leg_of(f, request_user.or_else(|| identity::callee(f.to).number))
    }

    /// Frees a slot when `max_calls` is reached: a lingering ended call, else the
    /// oldest unanswered call (ended as failed), else the oldest call.
    fn make_room(&mut self, now: Timestamp) {
        let mut budget = self.creation_order.len();
        while self.calls.len() >= self.config.max_calls.max(1) && budget > 0 {
            budget -= 1;
            let Some((serial, key)) = self.creation_order.pop_front() else {
                break;
            };
            let Some(call) = self.calls.get(&key) else {
                continue;
            };
            if call.serial != serial {
                continue;
            }
            let answered_live = call.answered && call.ended_at.is_none();
            if answered_live && budget > 0 {
                self.creation_order.push_back((serial, key));
                continue;
            }
            if call.ended_at.is_none() {
                if let Some(suppressed) = self.dropped_log.tick(now) {
                    tracing::warn!(
                        call_id = %call.id,
                        max_calls = self.config.max_calls,
                        suppressed,
                        "too many calls tracked, dropping the oldest unanswered one"
                    );
                }
                self.end(
                    now,
                    &key,
                    Outcome::Failed,
                    "dropped: too many calls tracked".to_owned(),
                );
            }
            self.calls.remove(&key);
        }
    }

    fn on_invite_response(&mut self, now: Timestamp, f: &SipFacts<'_>, code: u16, reason: &str) {
        let key = f.call_id;
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        if call.ended_at.is_some() {
            return;
        }
        call.last_seen = call.last_seen.max(now);
        if code == 100 {
            return;
        }
        let index = match call.leg_index(f.branches.first().copied().unwrap_or("")) {
            Some(index) => index,
            None => {
                // A proxy's processes mirror independently: a phone's answer to a
                // forked INVITE can reach us before the INVITE itself. Its Via
                // stack names the leg it forks from, so the leg is learned here.
                let forks_known_leg = f
                    .branches
                    .iter()
                    .skip(1)
                    .any(|b| call.leg_index(b).is_some());
                let named = f.branches.first().is_some_and(|b| !b.is_empty());
                if !named || !forks_known_leg || call.legs.len() >= self.config.max_legs_per_call {
                    // A response to a re-INVITE, or to a leg whose INVITE was not mirrored.
                    return;
                }
                let extension = contact_extension(f, &self.registrations, &self.config.agents);
                add_leg(call, leg_of(f, extension));
                call.legs.len() - 1
            }
        };
        let target = call.deepest_for(index, f.to_tag);
        match code {
            101..=199 => {
                if let Some(t) = target {
                    if let Some(tag) = f.to_tag {
                        call.legs[t].to_tag.get_or_insert_with(|| tag.to_owned());
                    }
                }
                self.on_ringing(now, key, target);
            }
            200..=299 => {
                if let Some(t) = target {
                    if let Some(tag) = f.to_tag {
                        call.legs[t].to_tag.get_or_insert_with(|| tag.to_owned());
                    }
                }
                self.on_answered(now, key, target, f.to_tag);
            }
            _ => self.on_final_failure(now, key, index, code, reason),
        }
        self.schedule(key);
    }

    fn on_ringing(&mut self, now: Timestamp, key: &str, target: Option<usize>) {
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        let Some(t) = target else {
            return;
        };
        if call.answered || matches!(call.legs[t].state, LegState::Failed | LegState::Answered) {
            return;
        }
        call.legs[t].state = LegState::Ringing;
        if call.outbound {
            return;
        }
        let Some(extension) = call.legs[t].extension.clone() else {
            return;
        };
        if call
            .ringing
            .iter()
            .any(|r| r.extension == extension && r.stop_cause.is_none())
        {
            return;
        }
        let id = call.id;
        // A phone that failed earlier while alone: the call goes on, so say it stopped.
        let stopped: Vec<(String, StopCause)> = call
            .ringing
            .iter_mut()
            .filter_map(|r| r.stop_cause.take().map(|c| (r.extension.clone(), c)))
            .collect();
        call.ringing.retain(|r| r.extension != extension);
        call.ringing
            .retain(|r| !stopped.iter().any(|(e, _)| *e == r.extension));
        call.ringing.push(RingingExtension {
            extension: extension.clone(),
            stop_cause: None,
        });
        for (extension, cause) in stopped {
            if let Some(extension) = Extension::new(&extension) {
                self.emit(id, now, CallEventKind::RingingStopped { extension, cause });
            }
        }
        if let Some(extension) = Extension::new(&extension) {
            self.emit(id, now, CallEventKind::Ringing { extension });
        }
    }

    fn on_answered(
        &mut self,
        now: Timestamp,
        key: &str,
        target: Option<usize>,
        to_tag: Option<&str>,
    ) {
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        if call.answered {
            return;
        }
        call.answered = true;
        call.pending_end = None;
        call.answered_to_tag = to_tag.map(str::to_owned);
        let extension = target.and_then(|t| {
            call.legs[t].state = LegState::Answered;
            call.legs[t].extension.clone()
        });
        let extension = extension.filter(|_| !call.outbound);
        let id = call.id;
        let others: Vec<String> = call
            .ringing
            .drain(..)
            .filter(|r| r.stop_cause.is_none() && Some(&r.extension) != extension.as_ref())
            .map(|r| r.extension)
            .collect();
        let extension = extension.as_deref().and_then(Extension::new);
        self.emit(id, now, CallEventKind::Answered { extension });
        for extension in others.iter().filter_map(|e| Extension::new(e)) {
            self.emit(
                id,
                now,
                CallEventKind::RingingStopped {
                    extension,
                    cause: StopCause::AnsweredElsewhere,
                },
            );
        }
    }

    fn on_final_failure(
        &mut self,
        now: Timestamp,
        key: &str,
        index: usize,
        code: u16,
        reason: &str,
    ) {
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        if call.answered
            || matches!(
                call.legs[index].state,
                LegState::Failed | LegState::Answered
            )
        {
            return;
        }
        call.legs[index].state = LegState::Failed;
        let cause = response_cause(code, reason);
        if call.is_root(index) {
            if call.legs[index].cseq < call.root_cseq {
                return;
            }
            if matches!(code, 300..=399 | 401 | 407) {
                // The caller usually re-sends (credentials, new target): same call.
                call.pending_end = Some(PendingEnd {
                    at: now + chrono_duration(self.config.challenge_grace),
                    outcome: Outcome::Failed,
                    cause,
                });
                return;
            }
            self.end(now, key, response_outcome(code), cause);
            return;
        }
        if call.legs[index].proxied {
            return;
        }
        let stop = stop_cause(code);
        self.stop_ringing(now, key, index, stop);
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        let all_failed = call
            .legs
            .iter()
            .enumerate()
            .filter(|(i, l)| !l.proxied && !call.is_root(*i))
            .all(|(_, l)| l.state == LegState::Failed);
        if all_failed && call.pending_end.is_none() {
            call.pending_end = Some(PendingEnd {
                at: now + chrono_duration(self.config.branch_failure_grace),
                outcome: response_outcome(code),
                cause,
            });
        }
    }

    /// The phone of leg `index` no longer rings. Announced at once when another
    /// phone still rings; otherwise held back (see [`RingingExtension::stop_cause`]).
    fn stop_ringing(&mut self, now: Timestamp, key: &str, index: usize, cause: StopCause) {
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        let Some(extension) = call.legs[index].extension.clone() else {
            return;
        };
        let Some(position) = call
            .ringing
            .iter()
            .position(|r| r.extension == extension && r.stop_cause.is_none())
        else {
            return;
        };
        let others_ring = call
            .ringing
            .iter()
            .any(|r| r.extension != extension && r.stop_cause.is_none());
        if others_ring {
            call.ringing.remove(position);
            let id = call.id;
            if let Some(extension) = Extension::new(&extension) {
                self.emit(id, now, CallEventKind::RingingStopped { extension, cause });
            }
        } else {
            call.ringing[position].stop_cause = Some(cause);
        }
    }

    fn on_cancel(&mut self, now: Timestamp, f: &SipFacts<'_>) {
        let key = f.call_id;
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        call.last_seen = call.last_seen.max(now);
        if call.answered || call.ended_at.is_some() {
            return;
        }
        let Some(index) = call.leg_index(f.branches.first().copied().unwrap_or("")) else {
            return;
        };
        if call.is_root(index) {
            if call.legs[index].cseq >= call.root_cseq {
                self.end(
                    now,
                    key,
                    Outcome::Missed,
                    "caller hung up (CANCEL)".to_owned(),
                );
            }
            return;
        }
        if call.legs[index].proxied || call.legs[index].state == LegState::Failed {
            return;
        }
        call.legs[index].state = LegState::Failed;
        let elsewhere = f.reason.is_some_and(|r| {
            r.split(';')
                .any(|p| p.trim().eq_ignore_ascii_case("cause=200"))
        });
        let cause = if elsewhere {
            StopCause::AnsweredElsewhere
        } else {
            StopCause::Cancelled
        };
        self.stop_ringing(now, key, index, cause);
        self.schedule(key);
    }

    fn on_bye(&mut self, now: Timestamp, f: &SipFacts<'_>) {
        let key = f.call_id;
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        if call.ended_at.is_some() {
            return;
        }
        call.last_seen = call.last_seen.max(now);
        let from_caller = f.from_tag.unwrap_or("") == call.caller_tag;
        if !call.answered {
            // Only the caller may end an early dialog with BYE.
            if from_caller {
                self.end(now, key, Outcome::Missed, "caller hung up (BYE)".to_owned());
            }
            return;
        }
        if !call.in_answered_dialog(f) {
            // BYE of an extra dialog (a second phone answered too): the call goes on.
            return;
        }
        let cause = if from_caller {
            "caller hung up"
        } else {
            "callee hung up"
        };
        self.end(now, key, Outcome::Answered, cause.to_owned());
    }

    fn on_offer_in_dialog(&mut self, now: Timestamp, f: &SipFacts<'_>) {
        let key = f.call_id;
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        if call.ended_at.is_some() {
            return;
        }
        call.last_seen = call.last_seen.max(now);
        if !call.answered || !call.in_answered_dialog(f) {
            return;
        }
        let Some(hold) = sdp::offer_is_hold(f.body) else {
            return;
        };
        let side = usize::from(f.from_tag.unwrap_or("") != call.caller_tag);
        let was_held = call.held_by.iter().any(|h| *h);
        call.held_by[side] = hold;
        let is_held = call.held_by.iter().any(|h| *h);
        let id = call.id;
        if is_held != was_held {
            let kind = if is_held {
                CallEventKind::Held
            } else {
                CallEventKind::Resumed
            };
            self.emit(id, now, kind);
        }
        self.schedule(key);
    }

    fn on_refer(&mut self, now: Timestamp, f: &SipFacts<'_>) -> Result<(), SipError> {
        let key = f.call_id;
        let Some(call) = self.calls.get_mut(key) else {
            return Ok(());
        };
        if call.ended_at.is_some() {
            return Ok(());
        }
        call.last_seen = call.last_seen.max(now);
        let refer_to = f.refer_to.ok_or(SipError::MissingHeader("Refer-To"))?;
        let seen = (f.from_tag.unwrap_or("").to_owned(), f.cseq);
        if call.refers_seen.contains(&seen) {
            return Ok(());
        }
        if call.refers_seen.len() >= MAX_REFERS_SEEN {
            call.refers_seen.pop_front();
        }
        call.refers_seen.push_back(seen);
        let target = identity::parse_name_addr(refer_to);
        let parts = identity::uri_parts(target.uri);
        let to = parts
            .user
            .map(|u| identity::decode_user(u).into_owned())
            .unwrap_or_else(|| {
                if parts.host.is_empty() {
                    target.uri.to_owned()
                } else {
                    parts.host.to_owned()
                }
            });
        let kind = if parts.headers.to_ascii_lowercase().contains("replaces=") {
            TransferKind::Attended
        } else {
            TransferKind::Blind
        };
        let id = call.id;
        // The REFER names only the target; who sent it and who is sent on
        // are the dialog's two ends, which a proxy's mirror does not tie to phones.
        let transfer = Transfer {
            kind,
            by: None,
            transferee: None,
            to: Extension::new(&to),
        };
        self.emit(id, now, CallEventKind::Transferred(transfer));
        self.schedule(key);
        Ok(())
    }
}

/// The leg a message's Via stack names: its top branch, and the branches it proxies.
fn leg_of(f: &SipFacts<'_>, extension: Option<String>) -> Leg {
    Leg {
        branch: f.branches.first().copied().unwrap_or("").to_owned(),
        lower: f
            .branches
            .iter()
            .skip(1)
            .filter(|b| !b.is_empty())
            .take(MAX_LOWER_BRANCHES)
            .map(|b| (*b).to_owned())
            .collect(),
        cseq: f.cseq,
        extension,
        to_tag: None,
        state: LegState::Calling,
        proxied: false,
    }
}

/// The extension a phone's response names in its Contact: the registered
/// location's, else a user part that is an agent's extension. `None` when
/// unsure, so that only the INVITE names the phone.
fn contact_extension(
    f: &SipFacts<'_>,
    registrations: &HashMap<String, String>,
    agents: &ExtensionPatterns,
) -> Option<String> {
    let contact = identity::parse_name_addr(identity::split_list(f.contacts.first()?).next()?);
    identity::uri_location(contact.uri)
        .and_then(|location| registrations.get(&location).cloned())
        .or_else(|| identity::uri_number(contact.uri).filter(|user| agents.is_agent(user)))
}

fn add_leg(call: &mut Call, mut leg: Leg) {
    for other in &mut call.legs {
        if leg.lower.contains(&other.branch) {
            other.proxied = true;
        }
        if other.lower.contains(&leg.branch) {
            leg.proxied = true;
        }
    }
    call.legs.push(leg);
    let index = call.legs.len() - 1;
    if call.is_root(index) {
        call.root_cseq = call.root_cseq.max(call.legs[index].cseq);
    }
}

impl Call {
    fn leg_index(&self, branch: &str) -> Option<usize> {
        if branch.is_empty() {
            return None;
        }
        self.legs.iter().position(|l| l.branch == branch)
    }

    /// The caller's own INVITE: a leg no known leg proxied to, and not one of
    /// several forks of the same unseen leg (when the mirror lost the caller's
    /// INVITE, one phone's 486 must not end a ring group).
    fn is_root(&self, index: usize) -> bool {
        let leg = &self.legs[index];
        let has_parent = self.legs.iter().any(|o| leg.lower.contains(&o.branch));
        let has_sibling = leg.lower.first().is_some_and(|parent| {
            self.legs
                .iter()
                .enumerate()
                .any(|(i, o)| i != index && o.lower.first() == Some(parent))
        });
        !has_parent && !has_sibling
    }

    /// The phone leg a response on leg `index` speaks for: the leg itself when
    /// nothing deeper exists, else the deeper leg with the same To-tag, else the
    /// only deeper leg still in progress.
    fn deepest_for(&self, index: usize, to_tag: Option<&str>) -> Option<usize> {
        let leg = &self.legs[index];
        if !leg.proxied {
            return Some(index);
        }
        let descendants = || {
            self.legs
                .iter()
                .enumerate()
                .filter(|(_, l)| !l.proxied && l.lower.contains(&leg.branch))
        };
        if let Some(tag) = to_tag {
            if let Some((i, _)) = descendants().find(|(_, l)| l.to_tag.as_deref() == Some(tag)) {
                return Some(i);
            }
        }
        let mut live = descendants().filter(|(_, l)| l.state != LegState::Failed);
        match (live.next(), live.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    }

    /// The request belongs to the answered dialog (not to an extra forked one).
    fn in_answered_dialog(&self, f: &SipFacts<'_>) -> bool {
        let Some(answered) = self.answered_to_tag.as_deref() else {
            return true;
        };
        let (from, to) = (f.from_tag.unwrap_or(""), f.to_tag.unwrap_or(""));
        (from == self.caller_tag && to == answered) || (from == answered && to == self.caller_tag)
    }
}

/// "486 Busy Here": status and reason phrase (the standard phrase if none was sent).
fn response_cause(code: u16, reason: &str) -> String {
    let reason = if reason.is_empty() {
        standard_reason(code)
    } else {
        reason
    };
    format!("{code} {}", message::excerpt(reason))
}

fn standard_reason(code: u16) -> &'static str {
    match code {
        300..=399 => "Redirection",
        401 => "Unauthorized",
        404 => "Not Found",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500..=599 => "Server Error",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "Failure",
    }
}

/// How a final response to the caller ends the call.
fn response_outcome(code: u16) -> Outcome {
    match code {
        408 | 480 | 487 => Outcome::Missed,
        486 | 600 => Outcome::Busy,
        603 | 607 => Outcome::Rejected,
        _ => Outcome::Failed,
    }
}

/// Why one phone stopped ringing after its final response.
fn stop_cause(code: u16) -> StopCause {
    match code {
        486 | 600 => StopCause::Busy,
        408 | 480 => StopCause::NoAnswer,
        603 | 607 => StopCause::Rejected,
        487 => StopCause::Cancelled,
        _ => StopCause::Unavailable,
    }
}
