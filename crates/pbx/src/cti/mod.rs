//! HTTP CTI requests → Fiche call events, without I/O: the call source of
//! phone systems that can only send HTTP. The server's webhooks
//! (`fiche_server::cti`) own the HTTP side and this translator, and drive its
//! timer through [`crate::CallSource`].
//!
//! Zammad's "Generic CTI" format is the common language: `newCall`, `answer`,
//! `hangup` ([`CtiRequest`]), with Zammad's meaning (its `Cti::Log.process` and
//! `Cti::Driver::Base`, and the request specs `spec/requests/integration/
//! cti_spec.rb`, `sipgate_spec.rb`, `placetel_spec.rb`):
//! - an `answer` by `user=voicemail` is no answer: the call ends as
//!   [`Outcome::Voicemail`], a missed call whose callback says a message was left;
//! - a `hangup` with cause `forwarded` before any answer is handled elsewhere
//!   ([`Outcome::Forwarded`]), with a transfer saying where it went;
//! - `queue` is kept on the call; a queue (or dialled number) mapped to agents
//!   in the configuration rings them when the request names nobody;
//! - an outbound `newCall` is answered with a caller id to present
//!   ([`Reply::Dial`]) when the configured routing rules say so.
//!
//! The dialects (sipgate, Placetel, Aircall, Ringover) are read into the same
//! request by their modules, with the few events the Generic format lacks
//! ([`CtiEvent`]: a phone ringing, a transfer, a voicemail left).
//!
//! A small state machine per call key (`<token name>/<callId>`): repeated
//! requests (a PBX that retries) are ignored rather than producing a second
//! start or end. Ended calls are remembered for [`ENDED_KEEP`] so that late
//! duplicates stay ignored.

pub mod aircall;
pub mod placetel;
pub mod ringover;
pub mod xml;

use crate::direction::ExtensionPatterns;
use crate::model::{
    CallEvent, CallEventKind, CallId, Direction, Extension, Outcome, Party, Source, StopCause,
    Timestamp, Transfer, TransferKind,
};
use chrono::Duration;
use fiche_matcher::{normalise, NumberKind, NumberPolicy};
use std::collections::{HashMap, HashSet, VecDeque};

/// Longest value accepted in any parameter, in bytes.
pub const MAX_VALUE_LEN: usize = 256;
/// Most `user` values kept from one request.
pub const MAX_USERS: usize = 32;
/// Most calls tracked at once; a `newCall` beyond it is refused.
pub const MAX_TRACKED_CALLS: usize = 100_000;
/// How long an ended call is remembered, to ignore late duplicates.
pub const ENDED_KEEP: Duration = Duration::minutes(10);
/// How long, by default, an unanswered call whose caller hung up waits for the
/// provider to say whether a voicemail was left (Aircall's `call.ended` comes
/// about 30 s after the hang-up; Ringover's `voicemail` once the message is
/// recorded) before it ends as missed ([`TranslatorConfig::voicemail_wait`]).
pub const VOICEMAIL_WAIT: Duration = Duration::minutes(3);
/// The `user` Zammad's specs send on an `answer` taken by the voicemail.
const VOICEMAIL_USER: &str = "voicemail";

/// What a request says happened: Zammad's three events, and the few the
/// providers' own webhooks add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtiEvent {
    /// `newCall`: a call begins (Aircall `call.created`, Ringover's first `ringing`).
    NewCall,
    /// One more phone rings (Aircall `call.ringing_on_agent`, Ringover `ringing`).
    Ringing,
    /// A phone declined the call (Aircall `call.agent_declined`).
    Declined,
    /// `answer`.
    Answer,
    /// The call was sent on (Aircall `call.transferred`).
    Transfer,
    /// The caller left a voicemail (Aircall `call.voicemail_left`, Ringover `voicemail`).
    VoicemailLeft,
    /// `hangup`.
    Hangup,
    /// The caller hung up before anyone answered; whether a voicemail was left
    /// is told later (Aircall `call.hungup`, Ringover `missed`): the call ends
    /// missed at the next [`CtiEvent::Hangup`] or [`CtiEvent::VoicemailLeft`],
    /// or after [`TranslatorConfig::voicemail_wait`].
    HungUpUnanswered,
}

impl CtiEvent {
    /// Zammad's event names.
    pub fn from_generic(name: &str) -> Option<Self> {
        match name {
            "newCall" => Some(CtiEvent::NewCall),
            "answer" => Some(CtiEvent::Answer),
            "hangup" => Some(CtiEvent::Hangup),
            _ => None,
        }
    }
}

/// One CTI request's parameters, as read from a JSON or form body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CtiRequest {
    /// `newCall`, `answer` or `hangup`.
    pub event: Option<String>,
    /// Calling number.
    pub from: Option<String>,
    /// Called number.
    pub to: Option<String>,
    /// `in` or `out`.
    pub direction: Option<String>,
    /// The PBX's call id (`callId` or `call_id`).
    pub call_id: Option<String>,
    /// Agents concerned (names or extensions); `user=a,b` counts as two.
    pub users: Vec<String>,
    /// The provider's ids of the agents concerned (sipgate `userId[]` and
    /// `fullUserId[]`, Placetel `peer`, Aircall or Ringover user id and
    /// e-mail), read through [`TranslatorConfig::agent_ids`].
    pub user_ids: Vec<String>,
    /// Queue name.
    pub queue: Option<String>,
    /// Who answered (`answer`) or where the call went.
    pub answering_number: Option<String>,
    /// Why the call ended (`hangup`).
    pub cause: Option<String>,
    /// The number the call was diverted from (sipgate `diversion`).
    pub diversion: Option<String>,
    /// Who sent the call on ([`CtiEvent::Transfer`]): her extension or
    /// provider ids (id, e-mail).
    pub transferred_by: Vec<String>,
}

/// Why a request was refused. Each maps to one HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CtiError {
    /// A required parameter is absent or empty.
    #[error("missing parameter {0}")]
    Missing(&'static str),
    /// A parameter is longer than [`MAX_VALUE_LEN`].
    #[error("parameter {0} is too long (at most {MAX_VALUE_LEN} bytes)")]
    TooLong(&'static str),
    /// `event` is not one of newCall, answer, hangup.
    #[error("unknown event {0:?} (expected newCall, answer or hangup)")]
    UnknownEvent(String),
    /// `direction` is not in or out.
    #[error("invalid direction {0:?} (expected in or out)")]
    BadDirection(String),
    /// `answer` or `hangup` for a callId never announced by `newCall`.
    #[error("unknown callId {0:?}: no newCall was received for it")]
    UnknownCall(String),
    /// Too many calls in progress.
    #[error("too many calls in progress")]
    TooManyCalls,
}

/// What the endpoint answers, besides errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `{}`.
    Accepted,
    /// `{"action":"reject","reason":"busy"}`: the caller is blocked.
    Reject,
    /// `{"action":"dial","caller_id":…,"number":…}`: place the outbound call
    /// presenting `caller_id` (Zammad's outbound caller-ID routing).
    Dial {
        /// The number to present.
        caller_id: String,
        /// The number dialled, as the request gave it.
        number: String,
    },
}

/// The result of one accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// What to answer.
    pub reply: Reply,
    /// Events for the pipeline, in order (empty for a duplicate).
    pub events: Vec<CallEvent>,
}

#[derive(Debug, Clone)]
struct Tracked {
    call_id: CallId,
    direction: Direction,
    ringing: Vec<String>,
    answered: bool,
    /// The extension the call is with (who answered, then transfer targets).
    agent: Option<String>,
    /// The voicemail took the call, or the provider said a message was left.
    voicemail: bool,
    /// The caller hung up unanswered; the call ends at this time once the
    /// provider says whether a voicemail was left (or [`VOICEMAIL_WAIT`] later).
    hung_up: Option<(Timestamp, String)>,
    blocked: bool,
    last_seen: Timestamp,
    ended: bool,
}

/// What the call log says about a call the translator does not track (one
/// started before Fiche restarted), enough to take its `answer` and `hangup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownCall {
    /// Its direction.
    pub direction: Direction,
    /// The called number, as stored.
    pub callee: Option<String>,
    /// Whether it was answered.
    pub answered: bool,
    /// Whether it ended.
    pub ended: bool,
}

/// One outbound caller-ID rule, as Zammad's `routing_table` has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdRoute {
    /// The dialled numbers it applies to, as dialled: digits, with `*`
    /// standing for one or more characters (`41*`).
    pub dest: String,
    /// The number to present.
    pub caller_id: String,
}

/// Outbound caller-ID routing: the first route whose `dest` matches the
/// dialled number, else the default; none configured: the PBX decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundRules {
    /// Routes, tried in order.
    pub routes: Vec<CallerIdRoute>,
    /// The caller id presented when no route matches.
    pub default_caller_id: Option<String>,
}

impl OutboundRules {
    /// The caller id to present when dialling `to`, if any rule says.
    pub fn caller_id_for(&self, to: &str) -> Option<&str> {
        self.routes
            .iter()
            .find(|route| glob_matches(&route.dest, to))
            .map(|route| route.caller_id.as_str())
            .or(self.default_caller_id.as_deref())
    }
}

/// Zammad's destination match (`dest.gsub('*', '.+?')`, anchored): `*` is one
/// or more characters, everything else is literal.
fn glob_matches(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            // `*` takes at least one character, then the rest must match.
            (1..=tail.len())
                .filter(|&n| tail.is_char_boundary(n))
                .any(|n| glob_matches(rest, &tail[n..]))
        }
    }
}

/// Translation settings.
#[derive(Debug, Clone)]
pub struct TranslatorConfig {
    /// How numbers are normalised.
    pub policy: NumberPolicy,
    /// Which numbers are agent extensions.
    pub agents: ExtensionPatterns,
    /// Callers refused with `reject`, as E.164 (or as given when not a public number).
    pub blocked: HashSet<String>,
    /// An answered call with no request for this long ends as failed, "signal lost".
    pub silence_timeout: Duration,
    /// A call not answered yet ends so after this long without a request: a
    /// flood of `newCall`s never answered does not stay for the silence timeout.
    pub ringing_timeout: Duration,
    /// The agents a queue rings when a request names nobody (Zammad's
    /// `notify_map`), by queue name or dialled number as the PBX sends it.
    pub queues: HashMap<String, Vec<String>>,
    /// The providers' ids of agents (sipgate user ids, Placetel peers,
    /// Aircall and Ringover user ids or e-mails), lower-cased → extension.
    pub agent_ids: HashMap<String, String>,
    /// Outbound caller-ID routing.
    pub outbound: OutboundRules,
    /// How long an unanswered call whose caller hung up waits for news of a
    /// voicemail ([`CtiEvent::HungUpUnanswered`]); [`VOICEMAIL_WAIT`] by default.
    pub voicemail_wait: Duration,
}

/// The per-call state machine.
#[derive(Debug)]
pub struct Translator {
    config: TranslatorConfig,
    calls: HashMap<String, Tracked>,
    /// Events of calls expired by [`crate::CallSource::handle_timeout`].
    out: VecDeque<CallEvent>,
}

impl Translator {
    /// An empty translator.
    pub fn new(config: TranslatorConfig) -> Self {
        Self {
            config,
            calls: HashMap::new(),
            out: VecDeque::new(),
        }
    }

    /// How many calls are tracked (ended ones included until forgotten).
    pub fn tracked(&self) -> usize {
        self.calls.len()
    }

    /// The call key of a request (`<token name>/<callId>`) and the call id it
    /// maps to; `None` without a callId.
    pub fn call_key(token_name: &str, request: &CtiRequest) -> Option<(String, CallId)> {
        let source_key = request
            .call_id
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())?;
        let key = format!("{token_name}/{source_key}");
        let call_id = CallId::from_source_key(Source::Cti, &key);
        Some((key, call_id))
    }

    /// Whether the call `key` is tracked.
    pub fn is_tracked(&self, key: &str) -> bool {
        self.calls.contains_key(key)
    }

    /// Forgets the call `key`: its next request takes its state from the call
    /// log again (what was committed), as after a restart.
    pub fn forget(&mut self, key: &str) {
        self.calls.remove(key);
    }

    /// Tracks again a call started before a restart, from what the call log
    /// knows, so that its `answer` and `hangup` are taken. The phones that rang
    /// are not stored: the called extension stands for them. A call already
    /// tracked is left alone.
    pub fn restore(&mut self, key: String, known: &KnownCall, now: Timestamp) {
        if self.calls.contains_key(&key) || self.calls.len() >= MAX_TRACKED_CALLS {
            return;
        }
        let ringing = match (known.direction, known.callee.as_deref()) {
            (Direction::Outbound, _) | (_, None) => Vec::new(),
            (_, Some(callee)) if self.config.agents.is_agent(callee) => vec![callee.to_owned()],
            _ => Vec::new(),
        };
        let call_id = CallId::from_source_key(Source::Cti, &key);
        self.calls.insert(
            key,
            Tracked {
                call_id,
                direction: known.direction,
                ringing,
                answered: known.answered,
                agent: None,
                voicemail: false,
                hung_up: None,
                blocked: false,
                last_seen: now,
                ended: known.ended,
            },
        );
    }

    /// Handles one Generic CTI request of the PBX known as `token_name`,
    /// received at `now`.
    pub fn handle(
        &mut self,
        token_name: &str,
        request: &CtiRequest,
        now: Timestamp,
    ) -> Result<Translated, CtiError> {
        check_lengths(request)?;
        let name = request
            .event
            .as_deref()
            .filter(|e| !e.is_empty())
            .ok_or(CtiError::Missing("event"))?;
        let event =
            CtiEvent::from_generic(name).ok_or_else(|| CtiError::UnknownEvent(name.to_owned()))?;
        self.handle_event(token_name, event, request, now)
    }

    /// Handles one request already read into an event (the dialects' modules
    /// do that), received at `now`.
    pub fn handle_event(
        &mut self,
        token_name: &str,
        event: CtiEvent,
        request: &CtiRequest,
        now: Timestamp,
    ) -> Result<Translated, CtiError> {
        check_lengths(request)?;
        let source_key = request
            .call_id
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or(CtiError::Missing("callId"))?;
        let key = format!("{token_name}/{source_key}");
        if event == CtiEvent::NewCall {
            return self.new_call(key, request, now);
        }
        let mut started = Vec::new();
        if matches!(event, CtiEvent::Ringing | CtiEvent::VoicemailLeft)
            && !self.calls.contains_key(&key)
            && request.direction.is_some()
        {
            // Providers without a "call created" event (Ringover) start a
            // call with its first ring, or its voicemail.
            let new = self.new_call(key.clone(), request, now)?;
            if new.reply == Reply::Reject || event == CtiEvent::Ringing {
                return Ok(new);
            }
            started = new.events;
        }
        let agents = self.resolve_agents(request);
        let answering = self.answering_extension(request, &agents);
        let call = self
            .calls
            .get_mut(&key)
            .ok_or_else(|| CtiError::UnknownCall(source_key.to_owned()))?;
        call.last_seen = now;
        if call.ended || call.blocked {
            return Ok(ignored());
        }
        let events = match event {
            CtiEvent::NewCall => Vec::new(),
            CtiEvent::Ringing => ring(call, &agents, now),
            CtiEvent::Declined => stop_ringing(call, &agents, StopCause::Rejected, now),
            CtiEvent::Answer if is_voicemail(request) => {
                let everyone = call.ringing.clone();
                call.voicemail = true;
                stop_ringing(call, &everyone, StopCause::NoAnswer, now)
            }
            CtiEvent::Answer => answer(call, answering, now),
            CtiEvent::Transfer => transfer(call, request, &agents, &self.config, now),
            // The providers tell once the message is recorded: the caller
            // has hung up, the call is over.
            CtiEvent::VoicemailLeft if call.answered => Vec::new(),
            CtiEvent::VoicemailLeft => {
                call.voicemail = true;
                let (at, cause) = call
                    .hung_up
                    .take()
                    .unwrap_or_else(|| (now, "voicemail".to_owned()));
                let everyone = call.ringing.clone();
                let mut events = stop_ringing(call, &everyone, StopCause::NoAnswer, now);
                events.extend(end(call, &cause, None, at));
                events
            }
            CtiEvent::HungUpUnanswered if call.answered => end(call, "normalClearing", None, now),
            CtiEvent::HungUpUnanswered if call.direction != Direction::Inbound => {
                end(call, cause_of(request).unwrap_or("cancel"), None, now)
            }
            CtiEvent::HungUpUnanswered => {
                let cause = cause_of(request).unwrap_or("cancel").to_owned();
                let everyone = call.ringing.clone();
                if call.hung_up.is_none() {
                    call.hung_up = Some((now, cause));
                }
                stop_ringing(call, &everyone, StopCause::Cancelled, now)
            }
            CtiEvent::Hangup => {
                let (at, cause) = match call.hung_up.take() {
                    // The end the provider told first is when it ended.
                    Some((at, cause)) => (at, cause_of(request).map_or(cause, str::to_owned)),
                    None => (
                        now,
                        cause_of(request).unwrap_or("normalClearing").to_owned(),
                    ),
                };
                end(call, &cause, forwarded_to(request), at)
            }
        };
        started.extend(events);
        Ok(Translated {
            reply: Reply::Accepted,
            events: started,
        })
    }

    /// The calls that went silent by `now` end ("signal lost"); unanswered
    /// calls whose caller hung up end missed once they waited long enough.
    fn expire_silent(&mut self, now: Timestamp) -> Vec<CallEvent> {
        let mut events = Vec::new();
        let silence = self.config.silence_timeout;
        let ringing = self.config.ringing_timeout;
        let voicemail_wait = self.config.voicemail_wait;
        self.calls.retain(|_, call| {
            if call.ended || call.blocked {
                return now - call.last_seen < ENDED_KEEP;
            }
            if let Some((at, cause)) = call.hung_up.clone() {
                if now - at < voicemail_wait {
                    return true;
                }
                call.hung_up = None;
                events.extend(end(call, &cause, None, at));
                return true;
            }
            let limit = if call.answered { silence } else { ringing };
            if now - call.last_seen < limit {
                return true;
            }
            events.push(event(
                call.call_id,
                now,
                CallEventKind::Ended {
                    outcome: Outcome::Failed,
                    cause: "signal lost".to_owned(),
                },
            ));
            false
        });
        events
    }

    fn new_call(
        &mut self,
        key: String,
        request: &CtiRequest,
        now: Timestamp,
    ) -> Result<Translated, CtiError> {
        let direction_text = request
            .direction
            .as_deref()
            .ok_or(CtiError::Missing("direction"))?;
        let outgoing = match direction_text {
            "in" => false,
            "out" => true,
            other => return Err(CtiError::BadDirection(other.to_owned())),
        };
        let dial = if outgoing {
            self.dial_reply(request)
        } else {
            None
        };
        if let Some(call) = self.calls.get_mut(&key) {
            call.last_seen = now;
            let mut repeat = duplicate(call);
            if let (Reply::Accepted, Some(dial)) = (&repeat.reply, dial) {
                repeat.reply = dial;
            }
            return Ok(repeat);
        }
        if self.calls.len() >= MAX_TRACKED_CALLS {
            return Err(CtiError::TooManyCalls);
        }
        let caller = self.party(request.from.as_deref());
        let callee = self.party(request.to.as_deref());
        let call_id = CallId::from_source_key(Source::Cti, &key);
        let mut tracked = Tracked {
            call_id,
            direction: Direction::Inbound,
            ringing: Vec::new(),
            answered: false,
            agent: None,
            voicemail: false,
            hung_up: None,
            blocked: false,
            last_seen: now,
            ended: false,
        };
        if !outgoing
            && caller
                .number
                .as_ref()
                .is_some_and(|n| self.config.blocked.contains(n))
        {
            tracked.blocked = true;
            self.calls.insert(key, tracked);
            return Ok(Translated {
                reply: Reply::Reject,
                events: Vec::new(),
            });
        }
        let agents = &self.config.agents;
        let is_agent = |p: &Party| p.number.as_deref().is_some_and(|n| agents.is_agent(n));
        tracked.direction = match (outgoing, is_agent(&caller) && is_agent(&callee)) {
            (_, true) => Direction::Internal,
            (true, false) => Direction::Outbound,
            (false, false) => Direction::Inbound,
        };
        let named = self.resolve_agents(request);
        let mut caller = caller;
        if tracked.direction == Direction::Outbound {
            // The agent who places the call, when the PBX names her rather
            // than sending her extension as `from`.
            if let ([agent], false) = (named.as_slice(), is_agent(&caller)) {
                caller.number = Some(agent.clone());
            }
        } else {
            // Who rings: the agents named, else the queue's (or dialled
            // number's) agents from the configuration, else the called extension.
            let mut ringing = named;
            if ringing.is_empty() {
                ringing = self.queue_agents(request, &callee);
            }
            if ringing.is_empty() {
                if let Some(to) = callee.number.as_deref().filter(|n| agents.is_agent(n)) {
                    ringing.push(to.to_owned());
                }
            }
            tracked.ringing = ringing;
        }
        let diverted_from = request
            .diversion
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| vec![d.to_owned()])
            .unwrap_or_default();
        let mut events = vec![event(
            call_id,
            now,
            CallEventKind::CallStarted {
                // The whole key, as AMI does (`<name>/<Linkedid>`): the call
                // id derives from it, and the call log checks that it does.
                source_key: key.clone(),
                direction: tracked.direction,
                caller,
                callee,
                diverted_from,
                queue: request
                    .queue
                    .as_deref()
                    .map(str::trim)
                    .filter(|q| !q.is_empty())
                    .map(str::to_owned),
            },
        )];
        for extension in tracked.ringing.iter().filter_map(|e| Extension::new(e)) {
            events.push(event(call_id, now, CallEventKind::Ringing { extension }));
        }
        self.calls.insert(key, tracked);
        Ok(Translated {
            reply: dial.unwrap_or(Reply::Accepted),
            events,
        })
    }

    /// Zammad's `caller_id_rewrite`: the caller id to present on an outbound call.
    fn dial_reply(&self, request: &CtiRequest) -> Option<Reply> {
        let to = request
            .to
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())?;
        let caller_id = self.config.outbound.caller_id_for(to)?;
        Some(Reply::Dial {
            caller_id: caller_id.to_owned(),
            number: to.to_owned(),
        })
    }

    /// The extensions of the agents a request names, in order, once each:
    /// `user` values that are extensions or known ids, then `user_ids`.
    fn resolve_agents(&self, request: &CtiRequest) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for value in request.users.iter().chain(&request.user_ids) {
            if let Some(extension) = self.agent_extension(value) {
                if !out.contains(&extension) {
                    out.push(extension);
                }
            }
        }
        out
    }

    /// An agent's extension from a value naming her: the extension itself or
    /// a provider id the configuration maps.
    fn agent_extension(&self, value: &str) -> Option<String> {
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        if self.config.agents.is_agent(value) {
            return Some(value.to_owned());
        }
        self.config.agent_ids.get(&value.to_lowercase()).cloned()
    }

    /// The agents the configuration maps to the request's queue, else to the
    /// dialled number (as sent, or in E.164).
    fn queue_agents(&self, request: &CtiRequest, callee: &Party) -> Vec<String> {
        let queues = &self.config.queues;
        let candidates = [
            request.queue.as_deref(),
            request.to.as_deref(),
            callee.number.as_deref(),
        ];
        let Some(list) = candidates
            .into_iter()
            .flatten()
            .map(str::trim)
            .find_map(|name| queues.get(name))
        else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        for agent in list {
            if let Some(extension) = self.agent_extension(agent) {
                if !out.contains(&extension) {
                    out.push(extension);
                }
            }
        }
        out
    }

    /// The extension that answered: `answeringNumber` when it names an agent
    /// (an extension, or an id the configuration maps), else the one agent the
    /// request names (sipgate's `answeringNumber` is the number that was
    /// reached, its `userId` the agent), else `answeringNumber` as sent, else
    /// the only ringing extension (decided by [`answer`]).
    fn answering_extension(&self, request: &CtiRequest, named: &[String]) -> Answering {
        let number = request
            .answering_number
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty());
        if let Some(agent) = number.and_then(|n| self.agent_extension(n)) {
            return Answering::Known(agent);
        }
        match (named, number) {
            ([one], _) => Answering::Known(one.clone()),
            (_, Some(number)) => Answering::Known(number.to_owned()),
            ([], None) => Answering::Unnamed,
            (_, None) => Answering::Ambiguous,
        }
    }

    /// A party from a number as the PBX sent it: extensions as they are, public
    /// numbers in E.164 read with the configured region, hidden callers withheld.
    fn party(&self, raw: Option<&str>) -> Party {
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
            return Party::default();
        };
        let number = match normalise(raw, &self.config.policy) {
            NumberKind::E164(e164) => e164,
            NumberKind::Extension(ext) => ext,
            NumberKind::Withheld => {
                return Party {
                    number: None,
                    name: None,
                    withheld: true,
                }
            }
            NumberKind::Invalid(text) => {
                international_digits(raw, &self.config.policy).unwrap_or(text)
            }
        };
        Party {
            number: Some(number),
            name: None,
            withheld: false,
        }
    }
}

/// Who answered, as far as a request tells.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answering {
    Known(String),
    Unnamed,
    Ambiguous,
}

/// Phones that start ringing (those not ringing already).
fn ring(call: &mut Tracked, extensions: &[String], now: Timestamp) -> Vec<CallEvent> {
    if call.answered || call.direction == Direction::Outbound {
        return Vec::new();
    }
    let mut events = Vec::new();
    for extension in extensions {
        if call.ringing.contains(extension) {
            continue;
        }
        if let Some(ext) = Extension::new(extension) {
            call.ringing.push(extension.clone());
            events.push(event(
                call.call_id,
                now,
                CallEventKind::Ringing { extension: ext },
            ));
        }
    }
    events
}

/// Phones that stop ringing, for `cause`.
fn stop_ringing(
    call: &mut Tracked,
    extensions: &[String],
    cause: StopCause,
    now: Timestamp,
) -> Vec<CallEvent> {
    let mut events = Vec::new();
    for extension in extensions {
        let Some(at) = call.ringing.iter().position(|r| r == extension) else {
            continue;
        };
        call.ringing.remove(at);
        if let Some(ext) = Extension::new(extension) {
            events.push(event(
                call.call_id,
                now,
                CallEventKind::RingingStopped {
                    extension: ext,
                    cause,
                },
            ));
        }
    }
    events
}

fn answer(call: &mut Tracked, answering: Answering, now: Timestamp) -> Vec<CallEvent> {
    if call.voicemail {
        return Vec::new();
    }
    let extension = match (call.direction, answering) {
        (Direction::Outbound, _) => None,
        (_, Answering::Known(extension)) => Some(extension),
        (_, Answering::Unnamed) => match call.ringing.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        },
        (_, Answering::Ambiguous) => None,
    };
    if call.answered {
        // Another phone taking an answered call over (Ringover sends one
        // `answered` per agent): a transfer to her, then her answer.
        let Some(to) = extension.filter(|e| call.agent.as_ref() != Some(e)) else {
            return Vec::new();
        };
        let by = call.agent.replace(to.clone());
        return vec![
            event(
                call.call_id,
                now,
                CallEventKind::Transferred(Transfer {
                    kind: TransferKind::Blind,
                    by: by.as_deref().and_then(Extension::new),
                    transferee: None,
                    to: Extension::new(&to),
                }),
            ),
            event(
                call.call_id,
                now,
                CallEventKind::Answered {
                    extension: Extension::new(&to),
                },
            ),
        ];
    }
    call.answered = true;
    call.hung_up = None;
    let others: Vec<String> = call
        .ringing
        .iter()
        .filter(|r| Some(*r) != extension.as_ref())
        .cloned()
        .collect();
    let mut events = stop_ringing(call, &others, StopCause::AnsweredElsewhere, now);
    call.ringing.clear();
    call.agent.clone_from(&extension);
    events.push(event(
        call.call_id,
        now,
        CallEventKind::Answered {
            extension: extension.as_deref().and_then(Extension::new),
        },
    ));
    events
}

fn transfer(
    call: &mut Tracked,
    request: &CtiRequest,
    named: &[String],
    config: &TranslatorConfig,
    now: Timestamp,
) -> Vec<CallEvent> {
    // The target: an agent named, else the number it went to.
    let to = named.first().cloned().or_else(|| {
        request
            .answering_number
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
    });
    let by = request
        .transferred_by
        .iter()
        .map(|b| b.trim())
        .find_map(|b| {
            if config.agents.is_agent(b) {
                Some(b.to_owned())
            } else {
                config.agent_ids.get(&b.to_lowercase()).cloned()
            }
        })
        .or_else(|| call.agent.clone());
    if to.is_none() && by.is_none() {
        return Vec::new();
    }
    if let Some(target) = &to {
        call.agent = Some(target.clone());
    }
    vec![event(
        call.call_id,
        now,
        CallEventKind::Transferred(Transfer {
            kind: TransferKind::Blind,
            by: by.as_deref().and_then(Extension::new),
            transferee: None,
            to: to.as_deref().and_then(Extension::new),
        }),
    )]
}

/// The call's end, as Zammad counts it: answered calls are answered whatever
/// the cause; a voicemail is a missed call to return; `forwarded` before an
/// answer is handled elsewhere, and says where it went.
fn end(call: &mut Tracked, cause: &str, forwarded: Option<&str>, at: Timestamp) -> Vec<CallEvent> {
    call.ended = true;
    let outcome = match cause {
        _ if call.answered => Outcome::Answered,
        _ if call.voicemail => Outcome::Voicemail,
        "voicemail" => Outcome::Voicemail,
        "forwarded" => Outcome::Forwarded,
        "busy" => Outcome::Busy,
        "blocked" => Outcome::Rejected,
        "congestion" | "notFound" => Outcome::Failed,
        // normalClearing before an answer: the caller hung up while it rang.
        _ => Outcome::Missed,
    };
    let mut events = Vec::new();
    if cause == "forwarded" {
        if let Some(to) = forwarded {
            events.push(event(
                call.call_id,
                at,
                CallEventKind::Transferred(Transfer {
                    kind: TransferKind::Blind,
                    by: None,
                    transferee: None,
                    to: Extension::new(to),
                }),
            ));
        }
    }
    events.push(event(
        call.call_id,
        at,
        CallEventKind::Ended {
            outcome,
            cause: cause.to_owned(),
        },
    ));
    events
}

fn cause_of(request: &CtiRequest) -> Option<&str> {
    request
        .cause
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
}

/// Where a forwarded call went: `answeringNumber`, else sipgate's `diversion`.
fn forwarded_to(request: &CtiRequest) -> Option<&str> {
    [
        request.answering_number.as_deref(),
        request.diversion.as_deref(),
    ]
    .into_iter()
    .flatten()
    .map(str::trim)
    .find(|n| !n.is_empty())
}

/// Zammad's voicemail answer: `user=voicemail` (as Placetel and sipgate send).
fn is_voicemail(request: &CtiRequest) -> bool {
    request
        .users
        .iter()
        .any(|u| u.trim().eq_ignore_ascii_case(VOICEMAIL_USER))
}

/// Numbers such as sipgate's `4921112345678`: international digits without `+`
/// or `00`. Tried only when the number is not valid read with the region.
fn international_digits(raw: &str, policy: &NumberPolicy) -> Option<String> {
    if raw.starts_with('0') || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match normalise(&format!("+{raw}"), policy) {
        NumberKind::E164(e164) => Some(e164),
        _ => None,
    }
}

/// A repeated or late request: nothing happens, Zammad's `{}` is the answer.
fn ignored() -> Translated {
    Translated {
        reply: Reply::Accepted,
        events: Vec::new(),
    }
}

/// A repeated `newCall`: a blocked caller stays rejected.
fn duplicate(call: &Tracked) -> Translated {
    Translated {
        reply: if call.blocked {
            Reply::Reject
        } else {
            Reply::Accepted
        },
        events: Vec::new(),
    }
}

fn event(call_id: CallId, at: Timestamp, kind: CallEventKind) -> CallEvent {
    CallEvent {
        call_id,
        source: Source::Cti,
        at,
        kind,
    }
}

fn check_lengths(request: &CtiRequest) -> Result<(), CtiError> {
    let fields = [
        ("event", &request.event),
        ("from", &request.from),
        ("to", &request.to),
        ("direction", &request.direction),
        ("callId", &request.call_id),
        ("queue", &request.queue),
        ("answeringNumber", &request.answering_number),
        ("cause", &request.cause),
        ("diversion", &request.diversion),
    ];
    for (name, value) in fields {
        if value.as_ref().is_some_and(|v| v.len() > MAX_VALUE_LEN) {
            return Err(CtiError::TooLong(name));
        }
    }
    if request.users.iter().any(|u| u.len() > MAX_VALUE_LEN) {
        return Err(CtiError::TooLong("user"));
    }
    if request
        .user_ids
        .iter()
        .chain(&request.transferred_by)
        .any(|u| u.len() > MAX_VALUE_LEN)
    {
        return Err(CtiError::TooLong("userId"));
    }
    Ok(())
}

impl crate::CallSource for Translator {
    fn poll_event(&mut self) -> Option<CallEvent> {
        self.out.pop_front()
    }

    fn next_timeout(&self) -> Option<Timestamp> {
        self.calls
            .values()
            .map(|call| {
                if let (Some((at, _)), false) = (&call.hung_up, call.ended) {
                    return *at + self.config.voicemail_wait;
                }
                let keep = if call.ended || call.blocked {
                    ENDED_KEEP
                } else if call.answered {
                    self.config.silence_timeout
                } else {
                    self.config.ringing_timeout
                };
                call.last_seen + keep
            })
            .min()
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        let expired = self.expire_silent(now);
        self.out.extend(expired);
    }
}

impl CtiRequest {
    /// Reads parameters from `name=value` pairs (form fields, or a JSON object's
    /// members flattened). Unknown names are ignored, as Zammad does; `user`
    /// may repeat (`user`, `user[]`) and list several names (`user=a,b`);
    /// sipgate's `userId[]`, `fullUserId[]` and Placetel's `peer` name agents
    /// by the provider's ids.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let mut request = CtiRequest::default();
        for (name, value) in pairs {
            let value = value.into();
            let slot = match name.as_ref() {
                "event" => &mut request.event,
                "from" => &mut request.from,
                "to" => &mut request.to,
                "direction" => &mut request.direction,
                "callId" | "call_id" => &mut request.call_id,
                "queue" => &mut request.queue,
                "answeringNumber" | "answering_number" => &mut request.answering_number,
                "cause" => &mut request.cause,
                "diversion" => &mut request.diversion,
                "user" | "user[]" => {
                    for one in value.split(',') {
                        if request.users.len() < MAX_USERS && !one.trim().is_empty() {
                            request.users.push(one.trim().to_owned());
                        }
                    }
                    continue;
                }
                "userId" | "userId[]" | "fullUserId" | "fullUserId[]" | "peer" => {
                    if request.user_ids.len() < MAX_USERS && !value.trim().is_empty() {
                        request.user_ids.push(value);
                    }
                    continue;
                }
                _ => continue,
            };
            *slot = Some(value);
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CallSource as _;

    /// Runs the translator's timer at `now` (the source contract) and takes
    /// the events it queued.
    fn expired(t: &mut Translator, now: Timestamp) -> Vec<CallEvent> {
        t.handle_timeout(now);
        std::iter::from_fn(|| t.poll_event()).collect()
    }
    use chrono::DateTime;

    fn translator() -> Translator {
        Translator::new(TranslatorConfig {
            policy: NumberPolicy {
                default_region: "FR".into(),
                outside_line_prefix: None,
                extension_max_len: 5,
            },
            agents: ExtensionPatterns::new([r"2\d\d"]).unwrap(),
            blocked: ["+33899123456".to_owned()].into_iter().collect(),
            silence_timeout: Duration::hours(4),
            ringing_timeout: Duration::minutes(5),
            queues: HashMap::new(),
            agent_ids: HashMap::new(),
            outbound: OutboundRules::default(),
            voicemail_wait: VOICEMAIL_WAIT,
        })
    }

    fn at(secs: i64) -> Timestamp {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn req(pairs: &[(&str, &str)]) -> CtiRequest {
        CtiRequest::from_pairs(pairs.iter().map(|(k, v)| (*k, (*v).to_owned())))
    }

    fn kinds(t: &Translated) -> Vec<CallEventKind> {
        t.events.iter().map(|e| e.kind.clone()).collect()
    }

    #[test]
    fn inbound_answered_call_rings_then_answers_then_ends_answered() {
        let mut t = translator();
        let new = t
            .handle(
                "pbx1",
                &req(&[
                    ("event", "newCall"),
                    ("direction", "in"),
                    ("from", "0612345678"),
                    ("to", "201"),
                    ("callId", "c1"),
                ]),
                at(0),
            )
            .unwrap();
        assert_eq!(new.reply, Reply::Accepted);
        let id = CallId::from_source_key(Source::Cti, "pbx1/c1");
        assert!(new
            .events
            .iter()
            .all(|e| e.call_id == id && e.source == Source::Cti));
        match &new.events[0].kind {
            CallEventKind::CallStarted {
                direction,
                caller,
                callee,
                source_key,
                ..
            } => {
                assert_eq!(*direction, Direction::Inbound);
                // A national number is French here, never German.
                assert_eq!(caller.number.as_deref(), Some("+33612345678"));
                assert_eq!(callee.number.as_deref(), Some("201"));
                assert_eq!(source_key, "pbx1/c1");
                assert_eq!(CallId::from_source_key(Source::Cti, source_key), id);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            new.events[1].kind,
            CallEventKind::Ringing {
                extension: Extension::new("201").unwrap()
            }
        );
        let answer = t
            .handle(
                "pbx1",
                &req(&[
                    ("event", "answer"),
                    ("call_id", "c1"),
                    ("answeringNumber", "201"),
                ]),
                at(5),
            )
            .unwrap();
        assert_eq!(
            kinds(&answer),
            [CallEventKind::Answered {
                extension: Extension::new("201")
            }]
        );
        let hangup = t
            .handle(
                "pbx1",
                &req(&[
                    ("event", "hangup"),
                    ("callId", "c1"),
                    ("cause", "normalClearing"),
                ]),
                at(60),
            )
            .unwrap();
        assert_eq!(
            kinds(&hangup),
            [CallEventKind::Ended {
                outcome: Outcome::Answered,
                cause: "normalClearing".into()
            }]
        );
        assert_eq!(hangup.events[0].at, at(60));
    }

    #[test]
    fn cancel_before_answer_is_a_missed_call() {
        let mut t = translator();
        t.handle(
            "p",
            &req(&[
                ("event", "newCall"),
                ("direction", "in"),
                ("from", "+33612345678"),
                ("to", "0140000000"),
                ("user", "201"),
                ("user", "202"),
                ("callId", "x"),
            ]),
            at(0),
        )
        .unwrap();
        let end = t
            .handle(
                "p",
                &req(&[("event", "hangup"), ("callId", "x"), ("cause", "cancel")]),
                at(9),
            )
            .unwrap();
        assert_eq!(
            kinds(&end),
            [CallEventKind::Ended {
                outcome: Outcome::Missed,
                cause: "cancel".into()
            }]
        );
    }

    #[test]
    fn answer_in_a_ring_group_withdraws_the_other_phones() {
        let mut t = translator();
        let new = t
            .handle(
                "p",
                &req(&[
                    ("event", "newCall"),
                    ("direction", "in"),
                    ("from", "0612345678"),
                    ("to", "0140000000"),
                    ("user[]", "201"),
                    ("user[]", "202"),
                    ("callId", "g"),
                ]),
                at(0),
            )
            .unwrap();
        assert_eq!(new.events.len(), 3, "started + two ringing");
        let answer = t
            .handle(
                "p",
                &req(&[("event", "answer"), ("callId", "g"), ("user", "202")]),
                at(3),
            )
            .unwrap();
        assert_eq!(
            kinds(&answer),
            [
                CallEventKind::RingingStopped {
                    extension: Extension::new("201").unwrap(),
                    cause: StopCause::AnsweredElsewhere
                },
                CallEventKind::Answered {
                    extension: Extension::new("202")
                }
            ]
        );
    }

    #[test]
    fn outbound_call_has_no_ringing_and_busy_ends_busy() {
        let mut t = translator();
        let new = t
            .handle(
                "p",
                &req(&[
                    ("event", "newCall"),
                    ("direction", "out"),
                    ("from", "201"),
                    ("to", "0612345678"),
                    ("callId", "o"),
                ]),
                at(0),
            )
            .unwrap();
        assert_eq!(new.events.len(), 1);
        assert!(matches!(
            &new.events[0].kind,
            CallEventKind::CallStarted { direction: Direction::Outbound, callee, .. }
                if callee.number.as_deref() == Some("+33612345678")
        ));
        let end = t
            .handle(
                "p",
                &req(&[("event", "hangup"), ("callId", "o"), ("cause", "busy")]),
                at(4),
            )
            .unwrap();
        assert_eq!(
            kinds(&end),
            [CallEventKind::Ended {
                outcome: Outcome::Busy,
                cause: "busy".into()
            }]
        );
    }

    #[test]
    fn forwarded_call_is_transferred_then_ends() {
        let mut t = translator();
        t.handle(
            "p",
            &req(&[
                ("event", "newCall"),
                ("direction", "in"),
                ("from", "0612345678"),
                ("to", "201"),
                ("callId", "f"),
            ]),
            at(0),
        )
        .unwrap();
        let end = t
            .handle(
                "p",
                &req(&[
                    ("event", "hangup"),
                    ("callId", "f"),
                    ("cause", "forwarded"),
                    ("answeringNumber", "0698765432"),
                ]),
                at(4),
            )
            .unwrap();
        assert_eq!(
            kinds(&end),
            [
                CallEventKind::Transferred(Transfer {
                    kind: TransferKind::Blind,
                    by: None,
                    transferee: None,
                    to: Extension::new("0698765432"),
                }),
                CallEventKind::Ended {
                    outcome: Outcome::Forwarded,
                    cause: "forwarded".into()
                }
            ]
        );
    }

    #[test]
    fn blocked_caller_is_rejected_without_events_and_its_hangup_is_quiet() {
        let mut t = translator();
        let new = t
            .handle(
                "p",
                &req(&[
                    ("event", "newCall"),
                    ("direction", "in"),
                    ("from", "0899123456"),
                    ("to", "201"),
                    ("callId", "b"),
                ]),
                at(0),
            )
            .unwrap();
        assert_eq!(new.reply, Reply::Reject);
        assert!(new.events.is_empty());
        let end = t
            .handle(
                "p",
                &req(&[("event", "hangup"), ("callId", "b"), ("cause", "blocked")]),
                at(1),
            )
            .unwrap();
        assert!(end.events.is_empty());
        assert_eq!(end.reply, Reply::Accepted);
    }

    #[test]
    fn duplicates_are_ignored_and_unknown_calls_refused() {
        let mut t = translator();
        let new = req(&[
            ("event", "newCall"),
            ("direction", "in"),
            ("from", "0612345678"),
            ("to", "201"),
            ("callId", "d"),
        ]);
        assert_eq!(t.handle("p", &new, at(0)).unwrap().events.len(), 2);
        assert!(t.handle("p", &new, at(1)).unwrap().events.is_empty());
        // The same callId from another PBX is another call.
        assert_eq!(t.handle("q", &new, at(1)).unwrap().events.len(), 2);
        assert_eq!(
            t.handle("p", &req(&[("event", "answer"), ("callId", "nope")]), at(2)),
            Err(CtiError::UnknownCall("nope".into()))
        );
        let hangup = req(&[("event", "hangup"), ("callId", "d")]);
        assert_eq!(t.handle("p", &hangup, at(3)).unwrap().events.len(), 1);
        assert!(t.handle("p", &hangup, at(4)).unwrap().events.is_empty());
    }

    #[test]
    fn a_call_restored_from_the_log_takes_its_answer_and_hangup() {
        let mut t = translator();
        let answer = req(&[("event", "answer"), ("callId", "r")]);
        assert_eq!(
            t.handle("p", &answer, at(0)),
            Err(CtiError::UnknownCall("r".into()))
        );
        let (key, id) = Translator::call_key("p", &answer).unwrap();
        assert_eq!(
            (key.as_str(), id),
            ("p/r", CallId::from_source_key(Source::Cti, "p/r"))
        );
        let known = KnownCall {
            direction: Direction::Inbound,
            callee: Some("201".into()),
            answered: false,
            ended: false,
        };
        t.restore(key.clone(), &known, at(1));
        assert!(t.is_tracked(&key));
        let answered = t.handle("p", &answer, at(2)).unwrap();
        assert_eq!(
            kinds(&answered),
            [CallEventKind::Answered {
                extension: Extension::new("201")
            }],
            "the called extension stands for the phones that rang"
        );
        assert!(answered.events.iter().all(|e| e.call_id == id));
        let hangup = req(&[
            ("event", "hangup"),
            ("callId", "r"),
            ("cause", "normalClearing"),
        ]);
        assert_eq!(
            kinds(&t.handle("p", &hangup, at(3)).unwrap()),
            [CallEventKind::Ended {
                outcome: Outcome::Answered,
                cause: "normalClearing".into()
            }]
        );

        // A call the log has as ended: late requests are quiet.
        let mut t = translator();
        t.restore(
            "p/old".into(),
            &KnownCall {
                ended: true,
                ..known.clone()
            },
            at(0),
        );
        let late = req(&[("event", "hangup"), ("callId", "old")]);
        assert!(t.handle("p", &late, at(1)).unwrap().events.is_empty());

        // Restoring never overrides what is tracked.
        let mut t = translator();
        let new = req(&[
            ("event", "newCall"),
            ("direction", "in"),
            ("from", "0612345678"),
            ("to", "202"),
            ("callId", "live"),
        ]);
        t.handle("p", &new, at(0)).unwrap();
        t.restore(
            "p/live".into(),
            &KnownCall {
                ended: true,
                ..known
            },
            at(1),
        );
        let hangup = req(&[("event", "hangup"), ("callId", "live"), ("cause", "cancel")]);
        assert_eq!(t.handle("p", &hangup, at(2)).unwrap().events.len(), 1);
    }

    #[test]
    fn bad_requests_name_what_is_wrong() {
        let mut t = translator();
        assert_eq!(
            t.handle("p", &req(&[("event", "ring"), ("callId", "1")]), at(0)),
            Err(CtiError::UnknownEvent("ring".into()))
        );
        assert_eq!(
            t.handle(
                "p",
                &req(&[
                    ("event", "newCall"),
                    ("direction", "sideways"),
                    ("callId", "1")
                ]),
                at(0)
            ),
            Err(CtiError::BadDirection("sideways".into()))
        );
        assert_eq!(
            t.handle(
                "p",
                &req(&[("event", "newCall"), ("direction", "in")]),
                at(0)
            ),
            Err(CtiError::Missing("callId"))
        );
        let long = "9".repeat(MAX_VALUE_LEN + 1);
        assert_eq!(
            t.handle(
                "p",
                &req(&[("event", "newCall"), ("from", &long), ("callId", "1")]),
                at(0)
            ),
            Err(CtiError::TooLong("from"))
        );
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn international_digits_without_plus_and_withheld_callers() {
        let t = translator();
        assert_eq!(
            t.party(Some("4930123456789")).number.as_deref(),
            Some("+4930123456789")
        );
        assert_eq!(
            t.party(Some("0033612345678")).number.as_deref(),
            Some("+33612345678")
        );
        assert!(t.party(Some("anonymous")).withheld);
    }

    #[test]
    fn silent_calls_end_as_signal_lost_and_ended_calls_are_forgotten() {
        let mut t = translator();
        t.handle(
            "p",
            &req(&[
                ("event", "newCall"),
                ("direction", "in"),
                ("from", "0612345678"),
                ("to", "201"),
                ("callId", "s"),
            ]),
            at(0),
        )
        .unwrap();
        t.handle(
            "p",
            &req(&[
                ("event", "newCall"),
                ("direction", "in"),
                ("from", "0612345678"),
                ("to", "201"),
                ("callId", "e"),
            ]),
            at(0),
        )
        .unwrap();
        t.handle("p", &req(&[("event", "hangup"), ("callId", "e")]), at(1))
            .unwrap();
        assert!(expired(&mut t, at(60)).is_empty());
        assert_eq!(t.tracked(), 2);
        let lost = expired(&mut t, at(5 * 3600));
        assert_eq!(lost.len(), 1);
        assert!(matches!(
            &lost[0].kind,
            CallEventKind::Ended {
                outcome: Outcome::Failed,
                ..
            }
        ));
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn unanswered_calls_expire_after_the_ringing_timeout_answered_ones_after_the_silence() {
        let mut t = translator();
        for call in ["ringing", "answered"] {
            t.handle(
                "p",
                &req(&[
                    ("event", "newCall"),
                    ("direction", "in"),
                    ("from", "0612345678"),
                    ("to", "201"),
                    ("callId", call),
                ]),
                at(0),
            )
            .unwrap();
        }
        t.handle(
            "p",
            &req(&[("event", "answer"), ("callId", "answered")]),
            at(1),
        )
        .unwrap();
        assert!(expired(&mut t, at(4 * 60)).is_empty(), "within 5 minutes");
        let lost = expired(&mut t, at(5 * 60 + 1));
        assert_eq!(lost.len(), 1);
        assert_eq!(
            lost[0].call_id,
            Translator::call_key("p", &req(&[("callId", "ringing")]))
                .unwrap()
                .1
        );
        assert_eq!(t.tracked(), 1, "the answered call stays");
        // The timer its driver sleeps on: the answered call's silence limit.
        let due = t.next_timeout().expect("a tracked call has a deadline");
        assert!(due > at(4 * 3600) && due <= at(4 * 3600 + 2), "{due}");
        assert!(expired(&mut t, at(3 * 3600)).is_empty());
        assert_eq!(expired(&mut t, at(4 * 3600 + 2)).len(), 1);
    }

    fn configured() -> Translator {
        let mut t = translator();
        t.config.queues = [(
            "support".to_owned(),
            vec!["201".to_owned(), "w1".to_owned()],
        )]
        .into_iter()
        .collect();
        t.config.agent_ids = [
            ("w1".to_owned(), "202".to_owned()),
            ("claire@example.com".to_owned(), "203".to_owned()),
        ]
        .into_iter()
        .collect();
        t.config.outbound = OutboundRules {
            routes: vec![
                CallerIdRoute {
                    dest: "41*".into(),
                    caller_id: "41715880339000".into(),
                },
                CallerIdRoute {
                    dest: "491714000000".into(),
                    caller_id: "41715880339000".into(),
                },
            ],
            default_caller_id: Some("4930777000000".into()),
        };
        t
    }

    fn names(t: &Translated) -> Vec<String> {
        t.events
            .iter()
            .map(|e| match &e.kind {
                CallEventKind::CallStarted { queue, .. } => {
                    format!("started {}", queue.as_deref().unwrap_or("-"))
                }
                CallEventKind::Ringing { extension } => format!("ringing {extension}"),
                CallEventKind::RingingStopped { extension, cause } => {
                    format!("stopped {extension} {cause}")
                }
                CallEventKind::Answered { extension } => {
                    format!("answered {}", extension.as_deref().unwrap_or("-"))
                }
                CallEventKind::Transferred(t) => format!(
                    "transferred {}→{}",
                    t.by.as_deref().unwrap_or("-"),
                    t.to.as_deref().unwrap_or("-")
                ),
                CallEventKind::Ended { outcome, cause } => {
                    format!("ended {} {cause}", outcome.as_str())
                }
                other => other.name().to_owned(),
            })
            .collect()
    }

    /// A promise, the requests of one call, and what each request makes.
    type Case = (
        &'static str,
        &'static [Pairs],
        &'static [&'static [&'static str]],
    );
    type Pairs = &'static [(&'static str, &'static str)];

    #[test]
    fn zammad_semantics_as_its_specs_define_them() {
        // (promise, requests of one call, what each request makes)
        let cases: &[Case] = &[
            (
                "answered by the voicemail: no answer, the phones stop, a voicemail at the end",
                &[
                    &[
                        ("event", "newCall"),
                        ("direction", "in"),
                        ("from", "4912347114711"),
                        ("to", "4930600000000"),
                        ("user", "201,202"),
                    ],
                    &[("event", "answer"), ("user", "voicemail")],
                    &[("event", "hangup"), ("cause", "normalClearing")],
                ],
                &[
                    &["started -", "ringing 201", "ringing 202"],
                    &["stopped 201 no answer", "stopped 202 no answer"],
                    &["ended voicemail normalClearing"],
                ],
            ),
            (
                "forwarded before an answer: handled elsewhere, and where it went",
                &[
                    &[
                        ("event", "newCall"),
                        ("direction", "in"),
                        ("from", "0612345678"),
                        ("to", "201"),
                    ],
                    &[
                        ("event", "hangup"),
                        ("cause", "forwarded"),
                        ("answeringNumber", "0698765432"),
                    ],
                ],
                &[
                    &["started -", "ringing 201"],
                    &["transferred -→0698765432", "ended forwarded forwarded"],
                ],
            ),
            (
                "forwarded after an answer stays answered",
                &[
                    &[
                        ("event", "newCall"),
                        ("direction", "in"),
                        ("from", "0612345678"),
                        ("to", "201"),
                    ],
                    &[("event", "answer"), ("answeringNumber", "201")],
                    &[
                        ("event", "hangup"),
                        ("cause", "forwarded"),
                        ("answeringNumber", "0698765432"),
                    ],
                ],
                &[
                    &["started -", "ringing 201"],
                    &["answered 201"],
                    &["transferred -→0698765432", "ended answered forwarded"],
                ],
            ),
            (
                "a queue named and nobody: the queue's agents ring, ids read through the map",
                &[&[
                    ("event", "newCall"),
                    ("direction", "in"),
                    ("from", "anonymous"),
                    ("to", "4930600000000"),
                    ("user", ""),
                    ("queue", "support"),
                ]],
                &[&["started support", "ringing 201", "ringing 202"]],
            ),
            (
                "a queue and users: the users ring, the queue is kept",
                &[&[
                    ("event", "newCall"),
                    ("direction", "in"),
                    ("from", "anonymous"),
                    ("to", "4930600000000"),
                    ("user", "203"),
                    ("queue", "support"),
                ]],
                &[&["started support", "ringing 203"]],
            ),
            (
                "sipgate's userId[] names the agent through the map; answered by her",
                &[
                    &[
                        ("event", "newCall"),
                        ("direction", "in"),
                        ("from", "4912347114711"),
                        ("to", "4930600000000"),
                        ("user[]", "Claire Martin"),
                        ("userId[]", "w1"),
                    ],
                    &[
                        ("event", "answer"),
                        ("userId", "w1"),
                        ("user", "Claire Martin"),
                        ("answeringNumber", "4930600000000"),
                    ],
                ],
                &[&["started -", "ringing 202"], &["answered 202"]],
            ),
            (
                "an answer after the hangup changes nothing",
                &[
                    &[
                        ("event", "newCall"),
                        ("direction", "in"),
                        ("from", "0612345678"),
                        ("to", "201"),
                    ],
                    &[("event", "hangup"), ("cause", "normalClearing")],
                    &[("event", "answer")],
                ],
                &[
                    &["started -", "ringing 201"],
                    &["ended missed normalClearing"],
                    &[],
                ],
            ),
        ];
        for (n, (promise, requests, expected)) in cases.iter().enumerate() {
            let mut t = configured();
            let id = format!("c{n}");
            for (i, (pairs, want)) in requests.iter().zip(expected.iter()).enumerate() {
                let mut pairs = pairs.to_vec();
                pairs.push(("callId", &id));
                let got = t.handle("p", &req(&pairs), at(i as i64)).unwrap();
                assert_eq!(names(&got), *want, "{promise} (request {i})");
            }
        }
    }

    #[test]
    fn outbound_calls_get_the_caller_id_the_routing_rules_give() {
        let mut t = configured();
        let cases = [
            ("4912347114711", "4930777000000", "the default caller id"),
            ("491714000000", "41715880339000", "an exact destination"),
            ("4147110000000", "41715880339000", "41*"),
        ];
        for (n, (to, caller_id, promise)) in cases.into_iter().enumerate() {
            let id = format!("o{n}");
            let request = req(&[
                ("event", "newCall"),
                ("direction", "out"),
                ("from", "201"),
                ("to", to),
                ("callId", &id),
            ]);
            let dial = Reply::Dial {
                caller_id: caller_id.into(),
                number: to.into(),
            };
            assert_eq!(
                t.handle("p", &request, at(0)).unwrap().reply,
                dial,
                "{promise}"
            );
            assert_eq!(
                t.handle("p", &request, at(1)).unwrap().reply,
                dial,
                "{promise}, repeated"
            );
        }
        // Inbound calls and sites without rules get {}.
        let inbound = req(&[
            ("event", "newCall"),
            ("direction", "in"),
            ("from", "0612345678"),
            ("to", "201"),
            ("callId", "i"),
        ]);
        assert_eq!(
            t.handle("p", &inbound, at(0)).unwrap().reply,
            Reply::Accepted
        );
        let mut plain = translator();
        let out = req(&[
            ("event", "newCall"),
            ("direction", "out"),
            ("from", "201"),
            ("to", "0612345678"),
            ("callId", "x"),
        ]);
        assert_eq!(
            plain.handle("p", &out, at(0)).unwrap().reply,
            Reply::Accepted
        );
        assert!(glob_matches("41*", "4147"));
        assert!(!glob_matches("41*", "41"), "* is at least one character");
        assert!(!glob_matches("41*", "4941"));
        assert!(glob_matches("4*1*", "45617"));
    }

    #[test]
    fn provider_events_ring_transfer_and_wait_for_the_voicemail() {
        let mut t = configured();
        let base = [
            ("direction", "in"),
            ("from", "+33612345678"),
            ("to", "+33422202020"),
            ("callId", "a1"),
            ("queue", "Support"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = base.to_vec();
            pairs.extend_from_slice(extra);
            req(&pairs)
        };
        let step = |t: &mut Translator, e: CtiEvent, r: &CtiRequest, s: i64| {
            names(&t.handle_event("air", e, r, at(s)).unwrap())
        };
        // Aircall, a ring group nobody answers; the caller leaves a message.
        assert_eq!(
            step(&mut t, CtiEvent::NewCall, &with(&[]), 0),
            ["started Support"]
        );
        assert_eq!(
            step(&mut t, CtiEvent::Ringing, &with(&[("peer", "w1")]), 1),
            ["ringing 202"]
        );
        assert_eq!(
            step(
                &mut t,
                CtiEvent::Ringing,
                &with(&[("peer", "CLAIRE@example.com")]),
                1
            ),
            ["ringing 203"]
        );
        assert_eq!(
            step(&mut t, CtiEvent::Declined, &with(&[("peer", "w1")]), 2),
            ["stopped 202 rejected"]
        );
        assert_eq!(
            step(&mut t, CtiEvent::HungUpUnanswered, &with(&[]), 20),
            ["stopped 203 cancelled"]
        );
        assert!(
            expired(&mut t, at(60)).is_empty(),
            "waits for the voicemail news"
        );
        let end = t
            .handle_event(
                "air",
                CtiEvent::Hangup,
                &with(&[("cause", "voicemail")]),
                at(50),
            )
            .unwrap();
        assert_eq!(names(&end), ["ended voicemail voicemail"]);
        assert_eq!(
            end.events[0].at,
            at(20),
            "the call ended when the caller hung up"
        );

        // The same, the news never comes: missed after VOICEMAIL_WAIT.
        let mut t = configured();
        step(&mut t, CtiEvent::NewCall, &with(&[]), 0);
        step(
            &mut t,
            CtiEvent::HungUpUnanswered,
            &with(&[("cause", "OUT_PLANNING")]),
            10,
        );
        assert_eq!(t.next_timeout(), Some(at(10) + VOICEMAIL_WAIT));
        let lost = expired(&mut t, at(10) + VOICEMAIL_WAIT);
        assert!(
            matches!(&lost[..], [CallEvent { kind: CallEventKind::Ended { outcome: Outcome::Missed, cause }, at: when, .. }] if cause == "OUT_PLANNING" && *when == at(10)),
            "{lost:?}"
        );

        // Ringover: the first ring starts the call, a second agent's answer
        // takes it over, the hang-up of an answered call ends it at once.
        let mut t = configured();
        assert_eq!(
            step(&mut t, CtiEvent::Ringing, &with(&[("peer", "w1")]), 0),
            ["started Support", "ringing 202"]
        );
        assert_eq!(
            step(&mut t, CtiEvent::Answer, &with(&[("peer", "w1")]), 3),
            ["answered 202"]
        );
        assert_eq!(
            step(
                &mut t,
                CtiEvent::Answer,
                &with(&[("peer", "claire@example.com")]),
                9
            ),
            ["transferred 202→203", "answered 203"]
        );
        assert_eq!(
            step(
                &mut t,
                CtiEvent::Transfer,
                &with(&[("answeringNumber", "0698765432")]),
                12
            ),
            ["transferred 203→0698765432"]
        );
        assert_eq!(
            step(&mut t, CtiEvent::HungUpUnanswered, &with(&[]), 30),
            ["ended answered normalClearing"]
        );
        // A voicemail that comes alone starts and ends its call.
        let mut t = configured();
        assert_eq!(
            step(&mut t, CtiEvent::VoicemailLeft, &with(&[]), 0),
            ["started Support", "ended voicemail voicemail"]
        );
    }
}
