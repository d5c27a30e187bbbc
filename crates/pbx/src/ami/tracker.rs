//! The AMI call tracker: typed AMI events in, Fiche call events out.
//!
//! Sans-IO: `handle(now, &event)`, `poll_event()`, `next_timeout()`,
//! `handle_timeout(now)`. A call is the set of channels sharing a `Linkedid`;
//! its [`CallId`] comes from the Linkedid of its first channel and never changes,
//! even when Asterisk re-stamps channels with another Linkedid (transfers,
//! pickups: the calls are merged). `Local/` halves carry calls between real
//! legs but never start a call and are never reported as parties.
//!
//! **Invariant:** every call gets `CallStarted` first and `Ended` last, exactly once.

use super::event::{AgentFields, AmiEvent, ChannelSnapshot, HangupCause};
use crate::direction::ExtensionPatterns;
use crate::model::{
    CallEvent, CallEventKind, CallId, Direction, Extension, Outcome, Party, Source, StopCause,
    Timestamp, Transfer, TransferKind,
};
use regex::Regex;
use std::collections::{HashMap, VecDeque};

/// Cause given to calls found gone after a reconnect.
pub const ENDED_WHILE_DISCONNECTED: &str = "ended while disconnected";

/// Errors building a tracker configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrackerConfigError {
    /// A channel pattern is not a valid regular expression.
    #[error("invalid AMI channel pattern {pattern:?}: {source}")]
    BadPattern {
        /// The pattern as configured.
        pattern: String,
        /// Why it is invalid.
        source: regex::Error,
    },
    /// A channel pattern has no `ext` capture group.
    #[error("AMI channel pattern {pattern:?} has no (?P<ext>…) group")]
    NoExtGroup {
        /// The pattern as configured.
        pattern: String,
    },
}

/// How to read the phone's extension from a channel name (`PJSIP/201-00000012` → `201`).
///
/// Each pattern is a regular expression with a named group `ext`, tried in order.
#[derive(Debug, Clone)]
pub struct ChannelPatterns {
    patterns: Vec<Regex>,
}

/// The default channel patterns: PJSIP, chan_sip and IAX2 device legs (the
/// trailing `-<hex>` counter is cut, endpoint names may contain `-`), and
/// FreePBX queue members `Local/201@from-queue-…;1`.
pub const DEFAULT_CHANNEL_PATTERNS: &[&str] = &[
    r"^(?:PJSIP|SIP|IAX2)/(?P<ext>.+)-[0-9a-fA-F]+$",
    r"^Local/(?P<ext>[^@;/]+)@from-queue-[0-9a-fA-F]+;[12]$",
];

impl ChannelPatterns {
    /// Compiles `patterns`; each must have an `ext` group.
    pub fn new<I, S>(patterns: I) -> Result<Self, TrackerConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut compiled = Vec::new();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let regex = Regex::new(pattern).map_err(|source| TrackerConfigError::BadPattern {
                pattern: pattern.to_owned(),
                source,
            })?;
            if !regex.capture_names().any(|n| n == Some("ext")) {
                return Err(TrackerConfigError::NoExtGroup {
                    pattern: pattern.to_owned(),
                });
            }
            compiled.push(regex);
        }
        Ok(Self { patterns: compiled })
    }

    /// The extension of `channel`, when a pattern matches.
    pub fn extension<'c>(&self, channel: &'c str) -> Option<&'c str> {
        self.patterns.iter().find_map(|regex| {
            regex
                .captures(channel)
                .and_then(|c| c.name("ext"))
                .map(|m| m.as_str())
        })
    }
}

impl Default for ChannelPatterns {
    fn default() -> Self {
        Self::new(DEFAULT_CHANNEL_PATTERNS)
            .unwrap_or_else(|_| unreachable!("the default channel patterns are valid"))
    }
}

/// What the tracker needs to know about the site.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// Which numbers are agent extensions (direction, which legs are "ringing at an agent").
    pub agents: ExtensionPatterns,
    /// How to read an extension from a channel name.
    pub channels: ChannelPatterns,
    /// Phones the PBX names by an account rather than by their extension
    /// (`SIP/150010002-…` for extension 202): what a channel pattern reads
    /// → the extension it stands for.
    pub aliases: HashMap<String, String>,
    /// How long a cancelled ringing leg waits for its call to end before its
    /// pop is withdrawn: a caller hanging up cancels every leg just before the
    /// call ends, and that should read as one `Ended`, not a stop per phone.
    pub cancel_grace: chrono::Duration,
    /// How long a new call may go without being presented to anyone (no dial,
    /// no queue, no ringing phone: an IVR, a voicemail menu) before it is
    /// announced anyway. Until then its caller id may still be rewritten by
    /// the dialplan, so the announcement waits for the final one.
    pub present_after: chrono::Duration,
    /// Name of the PBX this tracker listens to. When set, calls' source keys are
    /// `<pbx>/<Linkedid>`: Linkedids are `<epoch>.<counter>`, so two PBXs (a
    /// cloned VM, an HA pair, two boxes booted in the same second) can hand out
    /// the same one, and their calls must not merge.
    pub pbx: String,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            agents: ExtensionPatterns::default(),
            channels: ChannelPatterns::default(),
            aliases: HashMap::new(),
            cancel_grace: chrono::Duration::seconds(2),
            present_after: chrono::Duration::seconds(2),
            pbx: String::new(),
        }
    }
}

#[derive(Debug)]
struct Channel {
    name: String,
    linked_id: String,
    local: bool,
    /// The phone this channel reaches, read from its name and mapped through
    /// the aliases (not necessarily an agent's).
    phone: Option<Extension>,
    state: u8,
    held: bool,
    /// The Linkedid this channel had before a transfer moved it: events still
    /// carrying it are late, not a move back.
    stale_linked_id: Option<String>,
    /// Resync generation in which the channel was last seen.
    seen: u64,
    /// Created by the running resync: its call may need rebuilding.
    from_resync: bool,
    duration_secs: i64,
    caller_id_num: String,
    caller_id_name: String,
    presentation: Option<u8>,
    connected_line_num: String,
    connected_line_name: String,
    /// The dialplan extension when the channel was created: on a leg that
    /// enters the PBX, the number it dialled.
    exten: String,
    /// The dialplan extension now.
    exten_now: String,
    /// The channel whose `Dial` created this one.
    dialed_by: Option<String>,
    /// Created by an `Originate` (a `DialBegin` without a caller).
    originated: bool,
    /// Dialled, directly or through Local halves, from the `;2` half of an
    /// originated Local channel: the click-to-dial agent's side.
    originator_side: bool,
    /// Bridges entered, newest last (bounded): who talked with whom, for transfers.
    bridges: Vec<String>,
}

#[derive(Debug)]
struct Call {
    call_id: CallId,
    source_key: String,
    started: bool,
    /// Not started yet: announce it by then even if nobody is dialled.
    present_by: Option<Timestamp>,
    /// The caller's channel; for a click-to-dial, the agent's phone.
    origin: Option<String>,
    /// Placed by an `Originate`: one outbound call from the agent, no pop for her.
    click_to_dial: bool,
    direction: Direction,
    caller: Party,
    callee: Party,
    channels: Vec<String>,
    ringing: Vec<Extension>,
    /// Ringing legs cancelled, withdrawn unless the call ends by the deadline.
    cancelled: Vec<(Extension, Timestamp)>,
    answered: bool,
    /// The agent who answered last: the first answerer, then whoever took
    /// the call over (a transfer target, a picker).
    talking_to: Option<Extension>,
    held: bool,
    abandoned: Option<(String, Option<u32>)>,
    /// The last failed dial attempt: its outcome and why.
    dial_failure: Option<(Outcome, String)>,
    last_cause: Option<(u16, String)>,
    end_note: Option<String>,
}

/// The source key of a call: the Linkedid, namespaced by the PBX when named.
fn source_key(pbx: &str, linked_id: &str) -> String {
    if pbx.is_empty() {
        linked_id.to_owned()
    } else {
        format!("{pbx}/{linked_id}")
    }
}

impl Call {
    fn new(pbx: &str, linked_id: &str) -> Self {
        let source_key = source_key(pbx, linked_id);
        Call {
            call_id: CallId::from_source_key(Source::Ami, &source_key),
            source_key,
            started: false,
            present_by: None,
            origin: None,
            click_to_dial: false,
            direction: Direction::Inbound,
            caller: Party::default(),
            callee: Party::default(),
            channels: Vec::new(),
            ringing: Vec::new(),
            cancelled: Vec::new(),
            answered: false,
            talking_to: None,
            held: false,
            abandoned: None,
            dial_failure: None,
            last_cause: None,
            end_note: None,
        }
    }
}

#[derive(Debug)]
struct ExpectedOriginate {
    channel_id: String,
    agent_extension: String,
    number: String,
    at: Timestamp,
}

/// The sans-IO AMI call tracker.
#[derive(Debug)]
pub struct AmiTracker {
    config: TrackerConfig,
    channels: HashMap<String, Channel>,
    calls: HashMap<String, Call>,
    out: VecDeque<CallEvent>,
    originates: Vec<ExpectedOriginate>,
    /// Local channel pairs by base name (`Local/201@ctx-0000002a`): the
    /// Uniqueids of the `;1` and `;2` halves.
    local_pairs: HashMap<String, [Option<String>; 2]>,
    generation: u64,
    resyncing: bool,
}

/// How long an announced originate waits for its first channel.
const ORIGINATE_EXPECTATION_SECS: i64 = 300;
/// At most this many announced originates are remembered.
const MAX_EXPECTED_ORIGINATES: usize = 256;
/// At most this many bridges are remembered per channel (a call parked and
/// transferred many times keeps only its latest).
const MAX_BRIDGES_PER_CHANNEL: usize = 8;
/// Longest chain of dials and Local halves followed back to a call's root.
const MAX_DIAL_HOPS: usize = 32;

/// `Local/…;1` and `;2` halves carry a call between real legs; they are never parties.
fn is_local(channel: &str) -> bool {
    channel.starts_with("Local/")
}

/// `Local/201@ctx-0000002a;2` → (`Local/201@ctx-0000002a`, 2).
fn local_half(channel: &str) -> Option<(&str, u8)> {
    let (base, half) = channel.rsplit_once(';')?;
    match half {
        "1" => Some((base, 1)),
        "2" => Some((base, 2)),
        _ => None,
    }
}

/// The extension a Local channel was asked to reach: `Local/202@ctx-…;1` → `202`.
fn local_exten(channel: &str) -> Option<&str> {
    let rest = channel.strip_prefix("Local/")?;
    let exten = rest.split(['@', ';', '/']).next()?;
    (!exten.is_empty()).then_some(exten)
}

fn is_unknown(value: &str) -> bool {
    let value = value.trim();
    value.is_empty() || value == "<unknown>" || value.eq_ignore_ascii_case("unknown")
}

fn is_withheld(value: &str) -> bool {
    let value = value.trim();
    [
        "anonymous",
        "restricted",
        "private",
        "withheld",
        "unavailable",
    ]
    .iter()
    .any(|w| value.eq_ignore_ascii_case(w))
}

/// A party from AMI caller-id values: `<unknown>`, empty and anonymous mean no number.
fn party(number: &str, name: &str, presentation: Option<u8>) -> Party {
    let restricted = presentation.is_some_and(|p| p >= 32);
    let withheld = restricted || is_withheld(number);
    let number = (!withheld && !is_unknown(number)).then(|| number.trim().to_owned());
    let hide_name = is_unknown(name) || (withheld && is_withheld(name));
    let name = (!hide_name).then(|| name.to_owned());
    Party {
        number,
        name,
        withheld,
    }
}

fn dialled_number(exten: &str) -> Option<String> {
    let exten = exten.trim();
    (!exten.is_empty() && exten != "s" && !is_unknown(exten)).then(|| exten.to_owned())
}

/// Looks like a phone number or extension someone dialled (digits, `+`, `*`, `#`).
fn is_dialable(value: &str) -> bool {
    let digits = value.strip_prefix('+').unwrap_or(value);
    !digits.is_empty()
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
}

/// The number a `Dial` asked for: a Local destination's extension, the
/// destination's dialplan extension, or the last part of the dial string.
fn dial_target(dest: &ChannelSnapshot<'_>, dial_string: &str) -> Option<String> {
    if is_local(dest.channel) {
        return local_exten(dest.channel).map(str::to_owned);
    }
    dialled_number(dest.exten)
        .filter(|e| is_dialable(e))
        .or_else(|| {
            let last = dial_string.rsplit('/').next().unwrap_or_default();
            let last = last.split(['@', '!', ',']).next().unwrap_or_default();
            is_dialable(last).then(|| last.to_owned())
        })
}

/// `HH:MM:SS` (or plain seconds) → seconds.
fn duration_secs(duration: &str) -> i64 {
    duration
        .split(':')
        .try_fold(0i64, |acc, part| {
            part.trim().parse::<i64>().ok().map(|n| acc * 60 + n)
        })
        .unwrap_or(0)
}

fn cause_text(cause: Option<&(u16, String)>) -> String {
    match cause {
        Some((code, text)) if !text.is_empty() => format!("{text} (Q.850 cause {code})"),
        Some((code, _)) => format!("Q.850 cause {code}"),
        None => "hung up".to_owned(),
    }
}

/// Outcome of an unanswered call from a Q.850 cause, when the cause says more than "normal".
fn outcome_from_cause(code: u16) -> Option<Outcome> {
    match code {
        17 => Some(Outcome::Busy),
        21 => Some(Outcome::Rejected),
        18..=20 => Some(Outcome::Missed),
        1..=3 | 22 | 27 | 28 | 34 | 38 | 41 | 42 | 47 | 58 | 127 => Some(Outcome::Failed),
        _ => None,
    }
}

impl AmiTracker {
    /// A tracker with no call.
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            channels: HashMap::new(),
            calls: HashMap::new(),
            out: VecDeque::new(),
            originates: Vec::new(),
            local_pairs: HashMap::new(),
            generation: 0,
            resyncing: false,
        }
    }

    /// The next call event, oldest first.
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.out.pop_front()
    }

    /// Number of calls not yet ended.
    pub fn live_calls(&self) -> usize {
        self.calls.values().filter(|c| c.started).count()
    }

    /// Announces a click-to-call: the channel created with Uniqueid `channel_id`
    /// is the agent's phone calling `number`. Returns the id the call will have.
    pub fn expect_originate(
        &mut self,
        now: Timestamp,
        channel_id: &str,
        agent_extension: &str,
        number: &str,
    ) -> CallId {
        let horizon = now - chrono::Duration::seconds(ORIGINATE_EXPECTATION_SECS);
        self.originates.retain(|o| o.at >= horizon);
        if self.originates.len() >= MAX_EXPECTED_ORIGINATES {
            self.originates.remove(0);
        }
        self.originates.push(ExpectedOriginate {
            channel_id: channel_id.to_owned(),
            agent_extension: agent_extension.to_owned(),
            number: number.to_owned(),
            at: now,
        });
        CallId::from_source_key(Source::Ami, &source_key(&self.config.pbx, channel_id))
    }

    /// The earliest instant at which [`AmiTracker::handle_timeout`] has work.
    pub fn next_timeout(&self) -> Option<Timestamp> {
        self.calls
            .values()
            .flat_map(|c| {
                c.cancelled
                    .iter()
                    .map(|(_, deadline)| *deadline)
                    .chain(c.present_by.filter(|_| !c.started && !c.click_to_dial))
            })
            .min()
    }

    /// Announces calls that waited long enough without being presented, and
    /// withdraws the pops of cancelled legs whose call went on ringing elsewhere.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let mut due_calls: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                !c.started && !c.click_to_dial && c.present_by.is_some_and(|d| d <= now)
            })
            .map(|(k, _)| k.clone())
            .collect();
        due_calls.sort();
        for key in due_calls {
            self.present(now, &key, None);
        }
        let keys: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.cancelled.iter().any(|(_, d)| *d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let due: Vec<Extension> = match self.calls.get_mut(&key) {
                Some(call) => {
                    let due = call
                        .cancelled
                        .iter()
                        .filter(|(_, d)| *d <= now)
                        .map(|(e, _)| e.clone())
                        .collect();
                    call.cancelled.retain(|(_, d)| *d > now);
                    due
                }
                None => continue,
            };
            for extension in due {
                self.stop_ringing(now, &key, &extension, StopCause::Cancelled);
            }
        }
    }

    /// Feeds one AMI event.
    pub fn handle(&mut self, now: Timestamp, event: &AmiEvent<'_>) {
        match event {
            AmiEvent::Other(_) => {}
            AmiEvent::Newchannel(s) => self.on_new_channel(now, s),
            AmiEvent::Newstate(s) => {
                if let Some(key) = self.touch(now, s) {
                    self.on_state(now, &key, s.unique_id);
                }
            }
            AmiEvent::NewCallerid {
                channel,
                presentation,
            } => self.on_caller_id(now, channel, *presentation),
            AmiEvent::NewConnectedLine(s) | AmiEvent::BridgeLeave { channel: s, .. } => {
                self.touch(now, s);
            }
            AmiEvent::BridgeEnter { channel, bridge_id } => {
                self.touch(now, channel);
                if let Some(c) = self.channels.get_mut(channel.unique_id) {
                    if !bridge_id.is_empty() && !c.bridges.iter().any(|b| b == bridge_id) {
                        if c.bridges.len() >= MAX_BRIDGES_PER_CHANNEL {
                            c.bridges.remove(0);
                        }
                        c.bridges.push((*bridge_id).to_owned());
                    }
                }
            }
            AmiEvent::DialBegin {
                caller,
                dest,
                dial_string,
            } => self.on_dial_begin(now, caller.as_ref(), dest, dial_string),
            AmiEvent::DialState { dest, status } => {
                if let Some(key) = self.touch(now, dest) {
                    if status.eq_ignore_ascii_case("RINGING") {
                        self.ring_leg(now, &key, dest.unique_id);
                    }
                }
            }
            AmiEvent::DialEnd {
                caller,
                dest,
                status,
            } => {
                if let Some(caller) = caller {
                    self.touch(now, caller);
                }
                if let Some(key) = self.touch(now, dest) {
                    self.on_dial_end(now, &key, dest.unique_id, status);
                }
            }
            AmiEvent::Hold(s) => self.on_hold(now, s, true),
            AmiEvent::Unhold(s) => self.on_hold(now, s, false),
            AmiEvent::Hangup { channel, cause } => self.on_hangup(now, channel, cause),
            AmiEvent::BlindTransfer {
                result,
                transferer,
                transferee,
                extension,
            } => {
                if result.eq_ignore_ascii_case("Success") {
                    self.on_blind_transfer(
                        now,
                        transferer.as_ref(),
                        transferee.as_ref(),
                        extension,
                    );
                }
            }
            AmiEvent::AttendedTransfer {
                result,
                orig_transferer,
                second_transferer,
                transferee,
                transfer_target,
                orig_bridge,
                second_bridge,
            } => {
                if result.eq_ignore_ascii_case("Success") {
                    self.on_attended_transfer(
                        now,
                        AttendedTransferFacts {
                            orig_transferer: orig_transferer.as_ref(),
                            second_transferer: second_transferer.as_ref(),
                            transferee: transferee.as_ref(),
                            transfer_target: transfer_target.as_ref(),
                            orig_bridge,
                            second_bridge,
                        },
                    );
                }
            }
            AmiEvent::LocalBridge {
                local_one,
                local_two,
            } => {
                for s in [local_one, local_two].into_iter().flatten() {
                    self.touch(now, s);
                }
            }
            AmiEvent::QueueCallerJoin { channel, .. } => {
                if let Some(key) = self.touch(now, channel) {
                    self.present(now, &key, Some(channel.unique_id));
                }
            }
            AmiEvent::QueueCallerLeave { channel, .. } => {
                self.touch(now, channel);
            }
            AmiEvent::QueueCallerAbandon {
                channel,
                queue,
                hold_time,
            } => {
                if let Some(key) = self.touch(now, channel) {
                    if let Some(call) = self.calls.get_mut(&key) {
                        call.abandoned = Some((queue.to_string(), *hold_time));
                    }
                }
            }
            AmiEvent::AgentCalled(f) => {
                if let Some((key, extension)) = self.agent(now, f) {
                    let caller = f.caller.map(|c| c.unique_id);
                    self.present(now, &key, caller);
                    self.ring(now, &key, &extension);
                }
            }
            AmiEvent::AgentRingNoAnswer(f) => {
                if let Some((key, extension)) = self.agent(now, f) {
                    self.stop_ringing(now, &key, &extension, StopCause::NoAnswer);
                }
            }
            AmiEvent::AgentConnect(f) => {
                if let Some((key, extension)) = self.agent(now, f) {
                    self.answer(now, &key, Some(extension));
                }
            }
            AmiEvent::AgentComplete(f) => {
                self.agent(now, f);
            }
            AmiEvent::CoreShowChannel {
                channel, duration, ..
            } => {
                if self.resyncing {
                    self.resync_channel(now, channel, duration);
                }
            }
            AmiEvent::CoreShowChannelsComplete { .. } => {
                if self.resyncing {
                    self.resync_end(now);
                }
            }
        }
    }

    /// Starts a resync: channels not reported (nor seen in live events) before
    /// [`AmiTracker::resync_end`] are taken as gone.
    pub fn resync_begin(&mut self) {
        self.generation += 1;
        self.resyncing = true;
    }

    /// Gives up a resync whose list never came (the action failed): nothing is
    /// dropped, since absence from a list we did not get proves nothing.
    pub fn resync_abort(&mut self) {
        self.resyncing = false;
        for channel in self.channels.values_mut() {
            channel.from_resync = false;
        }
    }

    /// True between `resync_begin` and `resync_end`.
    pub fn is_resyncing(&self) -> bool {
        self.resyncing
    }

    /// One live channel from `CoreShowChannels`; `duration` is its `HH:MM:SS` age.
    pub fn resync_channel(
        &mut self,
        now: Timestamp,
        channel: &ChannelSnapshot<'_>,
        duration: &str,
    ) {
        if self.channels.contains_key(channel.unique_id) {
            self.touch(now, channel);
            if let Some(c) = self.channels.get_mut(channel.unique_id) {
                c.from_resync = true;
                if let Some(state) = channel.state {
                    c.state = state;
                }
            }
            return;
        }
        self.insert_channel(channel);
        if let Some(c) = self.channels.get_mut(channel.unique_id) {
            c.from_resync = true;
            c.duration_secs = duration_secs(duration);
        }
    }

    /// Ends the resync: drops channels gone while disconnected, ends calls left
    /// without a real leg ("ended while disconnected"), starts the calls found
    /// live that were unknown (a restart of Fiche), without duplicates.
    pub fn resync_end(&mut self, now: Timestamp) {
        self.resyncing = false;
        let generation = self.generation;
        let mut gone: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, c)| c.seen < generation)
            .map(|(uid, _)| uid.clone())
            .collect();
        gone.sort_by_key(|uid| uid_order(uid));
        let mut stopped: Vec<(String, Extension)> = Vec::new();
        let mut touched_calls: Vec<String> = Vec::new();
        for uid in gone {
            let Some(channel) = self.forget_channel(&uid) else {
                continue;
            };
            let key = channel.linked_id;
            if let Some(call) = self.calls.get_mut(&key) {
                call.channels.retain(|u| u != &uid);
                call.end_note = Some(ENDED_WHILE_DISCONNECTED.to_owned());
            }
            if let Some(extension) = channel.phone.filter(|_| !channel.local) {
                stopped.push((key.clone(), extension));
            }
            if !touched_calls.contains(&key) {
                touched_calls.push(key);
            }
        }
        // Calls left without a real leg end (their ringing goes with them);
        // calls that go on withdraw the pops of the legs that vanished.
        for key in &touched_calls {
            self.end_if_empty(now, key);
        }
        for (key, extension) in stopped {
            self.stop_ringing(now, &key, &extension, StopCause::Disconnected);
        }
        // Rebuild what the list shows: unknown calls start, legs ring or answer.
        let mut keys: Vec<String> = self
            .channels
            .values()
            .filter(|c| c.from_resync)
            .map(|c| c.linked_id.clone())
            .collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            if let Some(call) = self.calls.get_mut(&key) {
                // Known calls survive a reconnect; the note only explains an end.
                call.end_note = None;
            }
            self.rebuild(now, &key);
        }
        for channel in self.channels.values_mut() {
            channel.from_resync = false;
        }
    }

    fn rebuild(&mut self, now: Timestamp, key: &str) {
        let started = self.calls.get(key).is_some_and(|c| c.started);
        if !started {
            let Some(call) = self.calls.get(key) else {
                return;
            };
            // The caller leg: the channel whose Uniqueid is the Linkedid, else the oldest real one.
            let mut candidates: Vec<(&String, &Channel)> = call
                .channels
                .iter()
                .filter_map(|u| self.channels.get_key_value(u))
                .filter(|(_, c)| !c.local)
                .collect();
            candidates.sort_by_key(|(u, c)| (u.as_str() != key, -c.duration_secs, uid_order(u)));
            let Some((origin, channel)) = candidates.first() else {
                return;
            };
            let origin = (*origin).clone();
            let started_at = now - chrono::Duration::seconds(channel.duration_secs);
            self.start_call(started_at, key, Some(&origin));
        }
        let legs: Vec<String> = self
            .calls
            .get(key)
            .map(|c| c.channels.clone())
            .unwrap_or_default();
        for uid in legs {
            let from_resync = self.channels.get(&uid).is_some_and(|c| c.from_resync);
            if from_resync {
                self.on_state(now, key, &uid);
            }
        }
    }

    /// The phone a channel name reaches: the pattern's extension, through the aliases.
    fn phone_of(&self, channel: &str) -> Option<Extension> {
        let raw = self.config.channels.extension(channel)?;
        let mapped = self.config.aliases.get(raw).map_or(raw, String::as_str);
        Extension::new(mapped)
    }

    /// Removes a channel, and its place in the Local pair index.
    fn forget_channel(&mut self, uid: &str) -> Option<Channel> {
        let channel = self.channels.remove(uid)?;
        if channel.local {
            self.index_local(&channel.name, uid, false);
        }
        Some(channel)
    }

    /// Records a channel we have not seen yet, creating its call record.
    fn insert_channel(&mut self, s: &ChannelSnapshot<'_>) {
        let local = is_local(s.channel);
        if local {
            self.index_local(s.channel, s.unique_id, true);
        }
        let phone = self.phone_of(s.channel);
        self.channels.insert(
            s.unique_id.to_owned(),
            Channel {
                name: s.channel.to_owned(),
                linked_id: s.linked_id.to_owned(),
                local,
                phone,
                state: s.state.unwrap_or(0),
                held: false,
                stale_linked_id: None,
                seen: self.generation,
                from_resync: false,
                duration_secs: 0,
                caller_id_num: s.caller_id_num.to_owned(),
                caller_id_name: s.caller_id_name.to_owned(),
                presentation: None,
                connected_line_num: s.connected_line_num.to_owned(),
                connected_line_name: s.connected_line_name.to_owned(),
                exten: s.exten.to_owned(),
                exten_now: s.exten.to_owned(),
                dialed_by: None,
                originated: false,
                originator_side: false,
                bridges: Vec::new(),
            },
        );
        self.calls
            .entry(s.linked_id.to_owned())
            .or_insert_with(|| Call::new(&self.config.pbx, s.linked_id))
            .channels
            .push(s.unique_id.to_owned());
    }

    fn on_new_channel(&mut self, now: Timestamp, s: &ChannelSnapshot<'_>) {
        if self.channels.contains_key(s.unique_id) {
            self.touch(now, s);
            return;
        }
        self.insert_channel(s);
        if let Some(i) = self
            .originates
            .iter()
            .position(|o| o.channel_id == s.unique_id)
        {
            // Our own click-to-call: caller and number are known, announce it now.
            let expected = self.originates.remove(i);
            if let Some(c) = self.channels.get_mut(s.unique_id) {
                c.originated = true;
            }
            if let Some(call) = self.calls.get_mut(s.linked_id) {
                call.click_to_dial = true;
            }
            let caller = party(&expected.agent_extension, "", None);
            let callee = party(&expected.number, "", None);
            self.announce(now, s.linked_id, Some(s.unique_id), caller, callee);
            return;
        }
        let present_after = self.config.present_after;
        if let Some(call) = self.calls.get_mut(s.linked_id) {
            if !call.started && !is_local(s.channel) && call.present_by.is_none() {
                call.present_by = Some(now + present_after);
            }
        }
    }

    /// Follows dials and Local halves back to the channel the call grew from.
    fn root_of<'u>(&'u self, uid: &'u str) -> &'u str {
        let mut current = uid;
        for _ in 0..MAX_DIAL_HOPS {
            let Some(channel) = self.channels.get(current) else {
                break;
            };
            let next = match &channel.dialed_by {
                Some(parent) => Some(parent.as_str()),
                None => self.local_sibling(current, 2),
            };
            match next {
                Some(next) if self.channels.contains_key(next) => current = next,
                _ => break,
            }
        }
        current
    }

    /// The other half of `uid` when `uid` is the `half` half of a Local pair.
    fn local_sibling(&self, uid: &str, half: u8) -> Option<&str> {
        let channel = self.channels.get(uid)?;
        if !channel.local {
            return None;
        }
        let (base, this) = local_half(&channel.name)?;
        if this != half {
            return None;
        }
        let pair = self.local_pairs.get(base)?;
        pair[usize::from(2 - half)].as_deref()
    }

    /// Remembers (or forgets) a Local half in the pair index.
    fn index_local(&mut self, name: &str, uid: &str, present: bool) {
        let Some((base, half)) = local_half(name) else {
            return;
        };
        let slot = usize::from(half - 1);
        if present {
            self.local_pairs.entry(base.to_owned()).or_default()[slot] = Some(uid.to_owned());
        } else if let Some(pair) = self.local_pairs.get_mut(base) {
            if pair[slot].as_deref() == Some(uid) {
                pair[slot] = None;
            }
            if pair.iter().all(Option::is_none) {
                self.local_pairs.remove(base);
            }
        }
    }

    /// True when what `uid` dials rings the click-to-dial agent, not the customer.
    fn dials_for_originator(&self, uid: &str) -> bool {
        let Some(channel) = self.channels.get(uid) else {
            return false;
        };
        if channel.originator_side {
            return true;
        }
        self.local_sibling(uid, 2)
            .and_then(|s| self.channels.get(s))
            .is_some_and(|s| s.originated || s.originator_side)
    }

    /// A leg that can ring or answer for the call: a real channel that is
    /// neither the caller nor, on a click-to-dial, the agent's own phone.
    fn is_callee_leg(&self, key: &str, uid: &str) -> bool {
        let Some(channel) = self.channels.get(uid) else {
            return false;
        };
        if channel.local || channel.originated || channel.originator_side {
            return false;
        }
        match self.calls.get(key) {
            Some(call) if call.started => call.origin.as_deref() != Some(uid),
            // Not announced yet: the channel the call grew from is its caller.
            Some(_) => self.default_origin(key).as_deref() != Some(uid),
            None => false,
        }
    }

    /// The caller's channel of a call not yet started: the real channel the
    /// call grew from (the one named by its Linkedid first).
    fn default_origin(&self, key: &str) -> Option<String> {
        let call = self.calls.get(key)?;
        let mut roots: Vec<&String> = call
            .channels
            .iter()
            .filter(|u| {
                self.channels.get(u.as_str()).is_some_and(|c| {
                    !c.local && c.dialed_by.is_none() && !c.originated && !c.originator_side
                })
            })
            .collect();
        roots.sort_by_key(|u| (u.as_str() != key, uid_order(u)));
        roots.first().map(|u| (*u).clone())
    }

    /// The call is presented to someone (dialled, queued, ringing, or waited
    /// long enough): announce it with the caller id the dialplan settled on.
    fn present(&mut self, now: Timestamp, key: &str, trigger: Option<&str>) {
        let Some(call) = self.calls.get(key) else {
            return;
        };
        if call.started || call.click_to_dial {
            return;
        }
        let origin = trigger
            .map(|t| self.root_of(t))
            .filter(|r| self.channels.get(*r).is_some_and(|c| !c.local))
            .map(str::to_owned)
            .or_else(|| self.default_origin(key));
        self.start_call(now, key, origin.as_deref());
    }

    /// A click-to-dial's far side is dialled: one outbound call from the agent.
    fn present_click_to_dial(&mut self, now: Timestamp, key: &str, target: Option<String>) {
        let Some(call) = self.calls.get(key) else {
            return;
        };
        if call.started {
            return;
        }
        let mut agents: Vec<&String> = call
            .channels
            .iter()
            .filter(|u| {
                self.channels.get(u.as_str()).is_some_and(|c| {
                    !c.local && (c.originated || c.originator_side) && c.phone.is_some()
                })
            })
            .collect();
        // The agent's phone is the one that answered the originate.
        agents.sort_by_key(|u| {
            (
                self.channels.get(u.as_str()).map(|c| c.state) != Some(6),
                uid_order(u),
            )
        });
        let origin = agents.first().map(|u| (*u).clone());
        let caller = match origin.as_deref().and_then(|u| self.channels.get(u)) {
            Some(c) => {
                let number = c
                    .phone
                    .as_ref()
                    .filter(|p| self.config.agents.is_agent(p))
                    .map(|p| p.to_string())
                    .or_else(|| dialled_number(&c.caller_id_num))
                    .or_else(|| c.phone.as_ref().map(|p| p.to_string()));
                Party {
                    number,
                    ..Party::default()
                }
            }
            None => Party::default(),
        };
        let callee = Party {
            number: target,
            ..Party::default()
        };
        self.announce(now, key, origin.as_deref(), caller, callee);
    }

    fn start_call(&mut self, now: Timestamp, key: &str, origin: Option<&str>) {
        let (caller, callee) = match origin.and_then(|uid| self.channels.get(uid)) {
            Some(channel) => (
                party(
                    &channel.caller_id_num,
                    &channel.caller_id_name,
                    channel.presentation,
                ),
                Party {
                    number: dialled_number(&channel.exten)
                        .or_else(|| dialled_number(&channel.exten_now)),
                    ..Party::default()
                },
            ),
            None => {
                // Only Local halves and dialled legs: a dialled leg's caller id
                // is the callee's number and its connected line is the caller.
                let leg = self.calls.get(key).and_then(|call| {
                    call.channels
                        .iter()
                        .filter_map(|u| self.channels.get(u))
                        .find(|c| !c.local)
                });
                match leg {
                    Some(c) => (
                        party(&c.connected_line_num, &c.connected_line_name, None),
                        Party {
                            number: c
                                .phone
                                .as_ref()
                                .map(|p| p.to_string())
                                .or_else(|| dialled_number(&c.caller_id_num)),
                            ..Party::default()
                        },
                    ),
                    None => (Party::default(), Party::default()),
                }
            }
        };
        self.announce(now, key, origin, caller, callee);
    }

    fn announce(
        &mut self,
        now: Timestamp,
        key: &str,
        origin: Option<&str>,
        caller: Party,
        callee: Party,
    ) {
        // The caller is an agent when the call comes from an agent's phone,
        // whatever number the dialplan presents for it (a company's main line).
        let caller_phone_is_agent = origin
            .and_then(|u| self.channels.get(u))
            .and_then(|c| c.phone.as_ref())
            .is_some_and(|p| self.config.agents.is_agent(p));
        let agents = &self.config.agents;
        let caller_is_agent =
            caller_phone_is_agent || caller.number.as_deref().is_some_and(|n| agents.is_agent(n));
        let callee_is_agent = callee.number.as_deref().is_some_and(|n| agents.is_agent(n));
        let direction = match (caller_is_agent, callee_is_agent) {
            (true, true) => Direction::Internal,
            (true, false) => Direction::Outbound,
            _ => Direction::Inbound,
        };
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        if call.started {
            return;
        }
        call.started = true;
        call.present_by = None;
        call.origin = origin.map(str::to_owned);
        call.direction = direction;
        call.caller = caller.clone();
        call.callee = callee.clone();
        let kind = CallEventKind::CallStarted {
            source_key: call.source_key.clone(),
            direction,
            caller,
            callee,
            diverted_from: Vec::new(),
            queue: None,
        };
        self.out.push_back(CallEvent {
            call_id: call.call_id,
            source: Source::Ami,
            at: now,
            kind,
        });
    }

    /// Updates a known channel from a snapshot; follows Linkedid changes (merging
    /// calls). Returns the key of the channel's call. Unknown channels are
    /// ignored: only `Newchannel` and resync create channels.
    fn touch(&mut self, now: Timestamp, s: &ChannelSnapshot<'_>) -> Option<String> {
        let generation = self.generation;
        let channel = self.channels.get_mut(s.unique_id)?;
        channel.seen = generation;
        if let Some(state) = s.state {
            channel.state = state;
        }
        if !s.exten.is_empty() {
            s.exten.clone_into(&mut channel.exten_now);
        }
        if channel.linked_id != s.linked_id
            && !s.linked_id.is_empty()
            && channel.stale_linked_id.as_deref() != Some(s.linked_id)
        {
            let old = channel.linked_id.clone();
            if self.calls.contains_key(s.linked_id) {
                self.move_channel(now, s.unique_id, &old, s.linked_id);
            }
        }
        self.channels.get(s.unique_id).map(|c| c.linked_id.clone())
    }

    /// Moves a channel, and what it dialled (its Local other half, the legs
    /// dialled from there, …), from one call to another: a dial subtree
    /// belongs to one call.
    fn move_channel(&mut self, now: Timestamp, uid: &str, from: &str, to: &str) {
        let mut pending = vec![uid.to_owned()];
        let mut moved = 0;
        while let Some(next) = pending.pop() {
            if moved >= MAX_DIAL_HOPS * 4 {
                break;
            }
            moved += 1;
            self.move_one(now, &next, from, to);
            let Some(call) = self.calls.get(from) else {
                break;
            };
            let sibling = self.local_sibling(&next, 1).map(str::to_owned);
            for child in call.channels.iter() {
                let dialled_here = self
                    .channels
                    .get(child)
                    .is_some_and(|c| c.dialed_by.as_deref() == Some(next.as_str()));
                if dialled_here || sibling.as_deref() == Some(child.as_str()) {
                    pending.push(child.clone());
                }
            }
        }
    }

    fn move_one(&mut self, now: Timestamp, uid: &str, from: &str, to: &str) {
        if let Some(channel) = self.channels.get_mut(uid) {
            channel.linked_id = to.to_owned();
            channel.stale_linked_id = Some(from.to_owned());
        }
        if let Some(call) = self.calls.get_mut(from) {
            call.channels.retain(|u| u != uid);
            if call.origin.as_deref() == Some(uid) {
                call.origin = None;
            }
            // What this leg rang for the call it leaves is over there.
            if let Some(phone) = self.channels.get(uid).and_then(|c| c.phone.clone()) {
                call.cancelled.retain(|(e, _)| e != &phone);
            }
        }
        if let Some(phone) = self.channels.get(uid).and_then(|c| c.phone.clone()) {
            self.stop_ringing(now, from, &phone, StopCause::MovedToAnotherCall);
        }
        let from_has_real_legs = self.calls.get(from).is_some_and(|call| {
            call.channels
                .iter()
                .any(|u| self.channels.get(u).is_some_and(|c| !c.local))
        });
        if let Some(call) = self.calls.get_mut(from) {
            if !from_has_real_legs && call.end_note.is_none() {
                call.end_note = Some("merged into another call".to_owned());
            }
        }
        if let Some(call) = self.calls.get_mut(to) {
            if !call.channels.iter().any(|u| u == uid) {
                call.channels.push(uid.to_owned());
            }
        }
        // A talking leg joining an unanswered call is a pickup (or a bridge of
        // two calls): the call is answered, by that leg's extension if an agent's.
        let talking = self
            .channels
            .get(uid)
            .is_some_and(|c| !c.local && c.state == 6);
        if talking {
            if !from_has_real_legs {
                if let Some(call) = self.calls.get_mut(from) {
                    call.answered = true;
                }
            }
            if self.is_callee_leg(to, uid) {
                let extension = self.agent_extension_of(uid);
                self.answer(now, to, extension);
            }
        }
        self.end_if_empty(now, from);
    }

    fn on_caller_id(&mut self, now: Timestamp, s: &ChannelSnapshot<'_>, presentation: Option<u8>) {
        let Some(key) = self.touch(now, s) else {
            return;
        };
        if let Some(channel) = self.channels.get_mut(s.unique_id) {
            channel.caller_id_num = s.caller_id_num.to_owned();
            channel.caller_id_name = s.caller_id_name.to_owned();
            channel.presentation = presentation;
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if !call.started || call.origin.as_deref() != Some(s.unique_id) {
            return;
        }
        if call.direction != Direction::Inbound {
            // An agent's own caller id is the extension; outbound presentation is not news.
            return;
        }
        let caller = party(s.caller_id_num, s.caller_id_name, presentation);
        if caller != call.caller {
            call.caller = caller.clone();
            let callee = call.callee.clone();
            self.emit_for(now, &key, CallEventKind::PartiesUpdated { caller, callee });
        }
    }

    /// A leg's state is known: ringing legs ring, answered legs answer.
    fn on_state(&mut self, now: Timestamp, key: &str, uid: &str) {
        let Some(channel) = self.channels.get(uid) else {
            return;
        };
        if !self.is_callee_leg(key, uid) {
            return;
        }
        match channel.state {
            5 => self.ring_leg(now, key, uid),
            6 => self.answer_leg(now, key, uid),
            _ => {}
        }
    }

    fn agent_extension_of(&self, uid: &str) -> Option<Extension> {
        let channel = self.channels.get(uid)?;
        channel
            .phone
            .as_ref()
            .filter(|p| self.config.agents.is_agent(p))
            .cloned()
    }

    /// How a transfer names a leg: the agent's extension, else the number the
    /// leg presents, else the phone's name.
    fn party_name(&self, uid: &str) -> Option<Extension> {
        let channel = self.channels.get(uid)?;
        self.agent_extension_of(uid)
            .or_else(|| {
                party(&channel.caller_id_num, "", channel.presentation)
                    .number
                    .and_then(|n| Extension::new(&n))
            })
            .or_else(|| channel.phone.clone())
    }

    /// A callee leg rings: announce the call if it was not yet, and pop.
    fn ring_leg(&mut self, now: Timestamp, key: &str, uid: &str) {
        if !self.is_callee_leg(key, uid) {
            return;
        }
        self.present(now, key, None);
        if let Some(extension) = self.agent_extension_of(uid) {
            self.ring(now, key, &extension);
        }
    }

    /// A callee leg answers.
    fn answer_leg(&mut self, now: Timestamp, key: &str, uid: &str) {
        if !self.is_callee_leg(key, uid) {
            return;
        }
        self.present(now, key, None);
        let extension = self.agent_extension_of(uid);
        self.answer(now, key, extension);
    }

    fn ring(&mut self, now: Timestamp, key: &str, extension: &Extension) {
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        if !call.started {
            return;
        }
        if let Some(i) = call.cancelled.iter().position(|(e, _)| e == extension) {
            // Rung again before its pop was withdrawn: it never stopped for the user.
            call.cancelled.remove(i);
            return;
        }
        if call.ringing.contains(extension) {
            return;
        }
        call.ringing.push(extension.clone());
        self.emit_for(
            now,
            key,
            CallEventKind::Ringing {
                extension: extension.clone(),
            },
        );
    }

    fn stop_ringing(&mut self, now: Timestamp, key: &str, extension: &Extension, cause: StopCause) {
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        call.cancelled.retain(|(e, _)| e != extension);
        let before = call.ringing.len();
        call.ringing.retain(|e| e != extension);
        if before != call.ringing.len() {
            self.emit_for(
                now,
                key,
                CallEventKind::RingingStopped {
                    extension: extension.clone(),
                    cause,
                },
            );
        }
    }

    fn answer(&mut self, now: Timestamp, key: &str, extension: Option<Extension>) {
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        if !call.started {
            return;
        }
        if call.answered && (extension.is_none() || call.talking_to == extension) {
            // The far end, or the agent already talking: nothing new.
            return;
        }
        // A later answer is a transfer target or a picker taking the call
        // over: she is who the caller talks to now, and keeps her card.
        call.answered = true;
        if extension.is_some() {
            call.talking_to.clone_from(&extension);
        }
        call.cancelled.clear();
        let others: Vec<Extension> = call
            .ringing
            .drain(..)
            .filter(|e| Some(e) != extension.as_ref())
            .collect();
        self.emit_for(now, key, CallEventKind::Answered { extension });
        for other in others {
            self.emit_for(
                now,
                key,
                CallEventKind::RingingStopped {
                    extension: other,
                    cause: StopCause::AnsweredElsewhere,
                },
            );
        }
    }

    fn on_dial_begin(
        &mut self,
        now: Timestamp,
        caller: Option<&ChannelSnapshot<'_>>,
        dest: &ChannelSnapshot<'_>,
        dial_string: &str,
    ) {
        let caller_key = caller.and_then(|c| self.touch(now, c));
        let Some(dest_key) = self.touch(now, dest) else {
            return;
        };
        let Some(caller_uid) = caller.map(|c| c.unique_id).filter(|_| caller_key.is_some()) else {
            if caller.is_none() {
                // An Originate: the channel it creates is the agent's side.
                if let Some(c) = self.channels.get_mut(dest.unique_id) {
                    c.originated = true;
                }
                if let Some(call) = self.calls.get_mut(&dest_key) {
                    call.click_to_dial = true;
                }
            }
            return;
        };
        let Some(key) = caller_key else {
            return;
        };
        // A dialled channel belongs to its dialler's call. One that already
        // lives in another call is a phone picking this call up (or, on
        // Asterisk 11, which has no Linkedid, every dialled channel).
        if dest_key != key {
            self.move_channel(now, dest.unique_id, &dest_key, &key);
        }
        // The `;2` half of a dialled Local channel carries the dial on: it
        // moved with its `;1` half. One that lives apart (Asterisk 11 gives
        // each half its own id) joins too.
        let sibling = self.local_sibling(dest.unique_id, 1).map(str::to_owned);
        if let Some(sibling) = sibling {
            let from = self.channels.get(&sibling).map(|c| c.linked_id.clone());
            if let Some(from) = from.filter(|f| f != &key) {
                self.move_channel(now, &sibling, &from, &key);
            }
        }
        let originator_side = self.dials_for_originator(caller_uid);
        if let Some(c) = self.channels.get_mut(dest.unique_id) {
            c.dialed_by = Some(caller_uid.to_owned());
            c.originator_side = originator_side;
        }
        let click_to_dial = self.calls.get(&key).is_some_and(|c| c.click_to_dial);
        if click_to_dial {
            if !originator_side {
                self.present_click_to_dial(now, &key, dial_target(dest, dial_string));
            }
        } else {
            self.present(now, &key, Some(caller_uid));
        }
        // A leg already ringing or up when dialled (a pickup) counts now.
        let state = self.channels.get(dest.unique_id).map(|c| c.state);
        match state {
            Some(5) => self.ring_leg(now, &key, dest.unique_id),
            Some(6) => self.answer_leg(now, &key, dest.unique_id),
            _ => {}
        }
    }

    fn on_dial_end(&mut self, now: Timestamp, key: &str, uid: &str, status: &str) {
        if !self.is_callee_leg(key, uid) {
            return;
        }
        let extension = self.agent_extension_of(uid);
        let status = status.split(':').next().unwrap_or_default().trim();
        let failure = match status {
            "ANSWER" => {
                self.answer_leg(now, key, uid);
                return;
            }
            "BUSY" => Some((Outcome::Busy, StopCause::Busy)),
            "NOANSWER" => Some((Outcome::Missed, StopCause::NoAnswer)),
            "CHANUNAVAIL" | "CONGESTION" => Some((Outcome::Failed, StopCause::Unavailable)),
            "CANCEL" => None,
            _ => Some((Outcome::Missed, StopCause::NoAnswer)),
        };
        let grace = self.config.cancel_grace;
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        match (failure, extension) {
            (Some((outcome, cause)), Some(extension)) => {
                if outcome != Outcome::Missed || call.dial_failure.is_none() {
                    call.dial_failure = Some((outcome, format!("dial status {status}")));
                }
                self.stop_ringing(now, key, &extension, cause);
            }
            (Some((outcome, _)), None) => {
                call.dial_failure = Some((outcome, format!("dial status {status}")));
            }
            (None, Some(extension)) => {
                if call.ringing.contains(&extension)
                    && !call.cancelled.iter().any(|(e, _)| e == &extension)
                {
                    call.cancelled.push((extension, now + grace));
                }
            }
            (None, None) => {}
        }
    }

    fn on_hold(&mut self, now: Timestamp, s: &ChannelSnapshot<'_>, held: bool) {
        let Some(key) = self.touch(now, s) else {
            return;
        };
        if let Some(channel) = self.channels.get_mut(s.unique_id) {
            channel.held = held;
        }
        let any_held = self.any_held(&key);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if !call.answered {
            return;
        }
        if any_held && !call.held {
            call.held = true;
            self.emit_for(now, &key, CallEventKind::Held);
        } else if !any_held && call.held {
            call.held = false;
            self.emit_for(now, &key, CallEventKind::Resumed);
        }
    }

    fn any_held(&self, key: &str) -> bool {
        self.calls.get(key).is_some_and(|call| {
            call.channels
                .iter()
                .any(|u| self.channels.get(u).is_some_and(|c| c.held))
        })
    }

    fn on_hangup(&mut self, now: Timestamp, s: &ChannelSnapshot<'_>, cause: &HangupCause<'_>) {
        let Some(key) = self.touch(now, s) else {
            return;
        };
        // The last real leg of a call nobody was presented to (hung up in an
        // IVR, in a menu): the call still happened, announce it before it ends.
        let unannounced_last_leg = self.calls.get(&key).is_some_and(|call| {
            !call.started
                && !call.click_to_dial
                && self.channels.get(s.unique_id).is_some_and(|c| !c.local)
                && !call
                    .channels
                    .iter()
                    .any(|u| u != s.unique_id && self.channels.get(u).is_some_and(|c| !c.local))
        });
        if unannounced_last_leg {
            self.present(now, &key, Some(s.unique_id));
        }
        let Some(channel) = self.forget_channel(s.unique_id) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.channels.retain(|u| u != s.unique_id);
        let is_origin = call.origin.as_deref() == Some(s.unique_id);
        if !channel.local {
            if is_origin {
                call.last_cause = Some((cause.code, cause.text.to_owned()));
            } else if let Some(outcome) = outcome_from_cause(cause.code) {
                let why = cause_text(Some(&(cause.code, cause.text.to_owned())));
                call.dial_failure = Some((outcome, why));
            }
            if call.last_cause.is_none() && cause.code != 26 {
                call.last_cause = Some((cause.code, cause.text.to_owned()));
            }
        }
        let was_held = channel.held;
        if let Some(extension) = channel.phone.filter(|_| !channel.local) {
            let still_ringing = call.ringing.contains(&extension);
            let has_real_legs = call
                .channels
                .iter()
                .any(|u| self.channels.get(u).is_some_and(|c| !c.local));
            if still_ringing && has_real_legs {
                match cause.code {
                    17 => self.stop_ringing(now, &key, &extension, StopCause::Busy),
                    21 => self.stop_ringing(now, &key, &extension, StopCause::Rejected),
                    18 | 19 => self.stop_ringing(now, &key, &extension, StopCause::NoAnswer),
                    26 => self.stop_ringing(now, &key, &extension, StopCause::AnsweredElsewhere),
                    _ => {
                        let grace = self.config.cancel_grace;
                        if let Some(call) = self.calls.get_mut(&key) {
                            if !call.cancelled.iter().any(|(e, _)| e == &extension) {
                                call.cancelled.push((extension, now + grace));
                            }
                        }
                    }
                }
            }
        }
        if was_held {
            let any_held = self.any_held(&key);
            if let Some(call) = self.calls.get_mut(&key) {
                if call.held && !any_held && !call.channels.is_empty() {
                    call.held = false;
                    self.emit_for(now, &key, CallEventKind::Resumed);
                }
            }
        }
        self.end_if_empty(now, &key);
    }

    fn on_blind_transfer(
        &mut self,
        now: Timestamp,
        transferer: Option<&ChannelSnapshot<'_>>,
        transferee: Option<&ChannelSnapshot<'_>>,
        extension: &str,
    ) {
        let transferee_key = transferee.and_then(|s| self.touch(now, s));
        let transferer_key = transferer.and_then(|s| self.touch(now, s));
        let Some(key) = transferee_key.or(transferer_key) else {
            return;
        };
        let transfer = Transfer {
            kind: TransferKind::Blind,
            by: transferer.and_then(|s| self.party_name(s.unique_id)),
            transferee: transferee.and_then(|s| self.party_name(s.unique_id)),
            to: Extension::new(extension),
        };
        self.emit_for(now, &key, CallEventKind::Transferred(transfer));
    }

    fn on_attended_transfer(&mut self, now: Timestamp, facts: AttendedTransferFacts<'_, '_>) {
        let orig_key = facts.orig_transferer.and_then(|s| self.touch(now, s));
        if let Some(s) = facts.second_transferer {
            self.touch(now, s);
        }
        let transferee_key = facts.transferee.and_then(|s| self.touch(now, s));
        if let Some(s) = facts.transfer_target {
            self.touch(now, s);
        }
        let Some(transferer_key) = orig_key.or(transferee_key) else {
            return;
        };
        let first_transferer = facts.orig_transferer.map(|s| s.unique_id);
        let second_transferer = facts.second_transferer.map(|s| s.unique_id);
        let transferers = [first_transferer, second_transferer];
        let known_real = |uid: &str| self.channels.get(uid).is_some_and(|c| !c.local);
        let real_in_bridge = |bridge: &str, exclude: &[Option<&str>]| -> Vec<String> {
            if bridge.is_empty() {
                return Vec::new();
            }
            let mut uids: Vec<&String> = self
                .channels
                .iter()
                .filter(|(u, c)| {
                    !c.local
                        && c.bridges.iter().any(|b| b == bridge)
                        && !exclude.contains(&Some(u.as_str()))
                })
                .map(|(u, _)| u)
                .collect();
            uids.sort_by_key(|u| uid_order(u));
            uids.into_iter().cloned().collect()
        };
        // Who was sent on: named by newer Asterisk; else whoever shared the
        // first bridge with the transferer (13–15 name neither side); else
        // the other real leg of the transferer's call.
        let mut transferee = facts
            .transferee
            .map(|t| t.unique_id)
            .filter(|u| known_real(u) && !transferers.contains(&Some(u)))
            .map(str::to_owned);
        if transferee.is_none() {
            transferee = real_in_bridge(facts.orig_bridge, &transferers)
                .into_iter()
                .next();
        }
        if transferee.is_none() {
            transferee = self.calls.get(&transferer_key).and_then(|call| {
                call.channels
                    .iter()
                    .find(|u| !transferers.contains(&Some(u.as_str())) && known_real(u))
                    .cloned()
            });
        }
        // The target: named by newer Asterisk; else whoever shared the
        // consultation bridge with the transferer; else (a blonde transfer,
        // still ringing) the other real leg of the consultation call.
        let mut exclude: Vec<Option<&str>> = transferers.to_vec();
        exclude.push(transferee.as_deref());
        let mut targets: Vec<String> = facts
            .transfer_target
            .map(|t| t.unique_id)
            .filter(|u| known_real(u) && !exclude.contains(&Some(u)))
            .map(str::to_owned)
            .into_iter()
            .collect();
        if targets.is_empty() {
            targets = real_in_bridge(facts.second_bridge, &exclude);
        }
        let second_call = second_transferer
            .and_then(|u| self.channels.get(u))
            .map(|c| c.linked_id.clone());
        if targets.is_empty() {
            // Every phone the consultation call still rings (a ring group).
            if let Some(call) = second_call.as_ref().and_then(|k| self.calls.get(k)) {
                targets = call
                    .channels
                    .iter()
                    .filter(|u| !exclude.contains(&Some(u.as_str())) && known_real(u))
                    .cloned()
                    .collect();
                targets.sort_by_key(|u| uid_order(u));
            }
        }
        let target = targets.first().cloned();
        let call_of = |uid: &Option<String>| {
            uid.as_deref()
                .and_then(|u| self.channels.get(u))
                .map(|c| c.linked_id.clone())
        };
        // The transfer belongs to the call the two parties end up in: the one
        // Asterisk already joined them in, else the transferee's (the target
        // joins it, as Asterisk will re-stamp it).
        let (transferee_call, target_call) = (call_of(&transferee), call_of(&target));
        let key = match (&transferee_call, &target_call) {
            (Some(a), Some(b)) if a == b => a.clone(),
            (Some(a), _) => a.clone(),
            _ => transferer_key,
        };
        // Said from that call's side: its own party was sent on to the other
        // one. When Asterisk moved the transferee in before the event, the
        // roles swap (the target was this call's party all along).
        let moved_in = |uid: &Option<String>| {
            uid.as_deref()
                .and_then(|u| self.channels.get(u))
                .is_some_and(|c| c.stale_linked_id.is_some())
        };
        let (sent, to_uid) =
            if transferee_call == target_call && moved_in(&transferee) && !moved_in(&target) {
                (target.clone(), transferee.clone())
            } else {
                (transferee.clone(), target.clone())
            };
        let target_answered = targets
            .iter()
            .any(|u| self.channels.get(u).is_some_and(|c| c.state == 6));
        let kind = if target.is_some() && !target_answered {
            TransferKind::Blonde
        } else {
            TransferKind::Attended
        };
        // Several phones still ringing: the number the transferer dialled
        // (the group), not one of them.
        let dialled_group = (targets.len() > 1)
            .then(|| {
                second_call
                    .as_ref()
                    .and_then(|k| self.calls.get(k))
                    .and_then(|call| call.callee.number.as_deref())
                    .and_then(Extension::new)
            })
            .flatten();
        let to = dialled_group
            .or_else(|| to_uid.as_deref().and_then(|u| self.party_name(u)))
            .or_else(|| {
                facts
                    .second_transferer
                    .and_then(|s| dialled_number(s.connected_line_num))
                    .and_then(|n| Extension::new(&n))
            });
        let transfer = Transfer {
            kind,
            by: first_transferer
                .or(second_transferer)
                .and_then(|u| self.party_name(u)),
            transferee: sent.as_deref().and_then(|u| self.party_name(u)),
            to,
        };
        self.emit_for(now, &key, CallEventKind::Transferred(transfer));
        // Asterisk will re-stamp the targets with the call's Linkedid; move
        // them now so the consultation call ends as soon as the transferer
        // hangs up, and phones still ringing ring for the transferred caller.
        for uid in targets {
            let from = self.channels.get(&uid).map(|c| c.linked_id.clone());
            if let Some(from) = from.filter(|f| f != &key) {
                if let Some(call) = self.calls.get_mut(&from) {
                    call.end_note = Some("attended transfer completed".to_owned());
                }
                self.move_channel(now, &uid, &from, &key);
                if self.channels.get(&uid).is_some_and(|c| c.state != 6) {
                    self.ring_leg(now, &key, &uid);
                }
            }
        }
    }

    /// Call key and agent extension of an `Agent*` queue event.
    fn agent(&mut self, now: Timestamp, f: &AgentFields<'_>) -> Option<(String, Extension)> {
        let key = f
            .caller
            .as_ref()
            .and_then(|s| self.touch(now, s))
            .or_else(|| f.dest.as_ref().and_then(|s| self.touch(now, s)))?;
        let agents = &self.config.agents;
        let aliased = |raw: &str| -> Option<Extension> {
            let mapped = self.config.aliases.get(raw).map_or(raw, String::as_str);
            Extension::new(mapped).filter(|e| agents.is_agent(e))
        };
        let extension = f
            .dest
            .as_ref()
            .and_then(|d| self.config.channels.extension(d.channel))
            .and_then(aliased)
            .or_else(|| {
                f.interface
                    .split_once('/')
                    .map(|(_, rest)| rest.split(['@', '/']).next().unwrap_or(rest))
                    .and_then(aliased)
            })
            .or_else(|| aliased(f.member_name))?;
        Some((key, extension))
    }

    fn end_if_empty(&mut self, now: Timestamp, key: &str) {
        let Some(call) = self.calls.get(key) else {
            return;
        };
        let has_real_legs = call
            .channels
            .iter()
            .any(|u| self.channels.get(u).is_some_and(|c| !c.local));
        if has_real_legs {
            return;
        }
        if !call.started {
            // Only Local halves so far (an originate through Local): wait for a
            // real leg, or forget the record once nothing is left.
            if call.channels.is_empty() {
                self.calls.remove(key);
            }
            return;
        }
        let Some(call) = self.calls.remove(key) else {
            return;
        };
        for uid in &call.channels {
            self.forget_channel(uid);
        }
        let (outcome, cause) = if call.answered {
            (
                Outcome::Answered,
                call.end_note
                    .clone()
                    .unwrap_or_else(|| cause_text(call.last_cause.as_ref())),
            )
        } else if let Some((queue, hold_time)) = &call.abandoned {
            let waited = hold_time.map_or_else(String::new, |s| format!(" after waiting {s} s"));
            (
                Outcome::Missed,
                format!("abandoned in queue {queue}{waited}"),
            )
        } else {
            let by_cause = call
                .last_cause
                .as_ref()
                .and_then(|(code, _)| outcome_from_cause(*code))
                .map(|outcome| (outcome, cause_text(call.last_cause.as_ref())));
            // A failed dial decides only for calls placed by an agent: an
            // inbound call rings many phones, one busy phone is not the outcome.
            let by_dial = call
                .dial_failure
                .clone()
                .filter(|_| call.direction != Direction::Inbound);
            let (outcome, why) = by_cause
                .or(by_dial)
                .unwrap_or_else(|| (Outcome::Missed, cause_text(call.last_cause.as_ref())));
            (outcome, call.end_note.clone().unwrap_or(why))
        };
        self.out.push_back(CallEvent {
            call_id: call.call_id,
            source: Source::Ami,
            at: now,
            kind: CallEventKind::Ended { outcome, cause },
        });
    }

    fn emit_for(&mut self, now: Timestamp, key: &str, kind: CallEventKind) {
        let Some(call) = self.calls.get(key) else {
            return;
        };
        if !call.started {
            return;
        }
        self.out.push_back(CallEvent {
            call_id: call.call_id,
            source: Source::Ami,
            at: now,
            kind,
        });
    }
}

/// What an `AttendedTransfer` event says, borrowed for the tracker.
struct AttendedTransferFacts<'e, 'a> {
    orig_transferer: Option<&'e ChannelSnapshot<'a>>,
    second_transferer: Option<&'e ChannelSnapshot<'a>>,
    transferee: Option<&'e ChannelSnapshot<'a>>,
    transfer_target: Option<&'e ChannelSnapshot<'a>>,
    orig_bridge: &'a str,
    second_bridge: &'a str,
}

/// Sort key of a Uniqueid `[system-]epoch.seq`: older first.
fn uid_order(uid: &str) -> (u64, u64) {
    let tail = uid.rsplit('-').next().unwrap_or(uid);
    let (epoch, seq) = tail.split_once('.').unwrap_or((tail, "0"));
    (
        epoch.parse().unwrap_or(u64::MAX),
        seq.parse().unwrap_or(u64::MAX),
    )
}
