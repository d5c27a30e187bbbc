//! Zammad "Generic CTI" requests → Fiche call events, without I/O: the call
//! source of phone systems that can only send HTTP. The server's webhook
//! (`fiche_server::cti`) owns the HTTP side and this translator, and drives
//! its timer through [`crate::CallSource`].
//!
//! A small state machine per call key (`<token name>/<callId>`): `newCall` starts
//! a call, `answer` answers it, `hangup` ends it. Repeated requests (a PBX that
//! retries) are ignored rather than producing a second start or end. Ended calls
//! are remembered for [`ENDED_KEEP`] so that late duplicates stay ignored.

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
    /// Agents concerned (names or extensions).
    pub users: Vec<String>,
    /// Queue name, informative.
    pub queue: Option<String>,
    /// Who answered (`answer`) or where the call went.
    pub answering_number: Option<String>,
    /// Why the call ended (`hangup`).
    pub cause: Option<String>,
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
                blocked: false,
                last_seen: now,
                ended: known.ended,
            },
        );
    }

    /// Handles one request of the PBX known as `token_name`, received at `now`.
    pub fn handle(
        &mut self,
        token_name: &str,
        request: &CtiRequest,
        now: Timestamp,
    ) -> Result<Translated, CtiError> {
        check_lengths(request)?;
        let event = request
            .event
            .as_deref()
            .filter(|e| !e.is_empty())
            .ok_or(CtiError::Missing("event"))?;
        if !matches!(event, "newCall" | "answer" | "hangup") {
            return Err(CtiError::UnknownEvent(event.to_owned()));
        }
        let source_key = request
            .call_id
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or(CtiError::Missing("callId"))?;
        let key = format!("{token_name}/{source_key}");
        match event {
            "newCall" => self.new_call(key, request, now),
            "answer" => self.answer(&key, source_key, request, now),
            _ => self.hangup(&key, source_key, request, now),
        }
    }

    /// The calls that went silent by `now` end ("signal lost").
    fn expire_silent(&mut self, now: Timestamp) -> Vec<CallEvent> {
        let mut events = Vec::new();
        let silence = self.config.silence_timeout;
        let ringing = self.config.ringing_timeout;
        self.calls.retain(|_, call| {
            if call.ended || call.blocked {
                return now - call.last_seen < ENDED_KEEP;
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
        if let Some(call) = self.calls.get_mut(&key) {
            call.last_seen = now;
            return Ok(duplicate(call));
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
        if tracked.direction != Direction::Outbound {
            // Who rings: the agents named by extension, else the called extension.
            let mut ringing: Vec<String> = request
                .users
                .iter()
                .map(|u| u.trim())
                .filter(|u| agents.is_agent(u))
                .map(str::to_owned)
                .collect();
            if ringing.is_empty() {
                if let Some(to) = callee.number.as_deref().filter(|n| agents.is_agent(n)) {
                    ringing.push(to.to_owned());
                }
            }
            ringing.dedup();
            tracked.ringing = ringing;
        }
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
                diverted_from: Vec::new(),
                queue: None,
            },
        )];
        for extension in tracked.ringing.iter().filter_map(|e| Extension::new(e)) {
            events.push(event(call_id, now, CallEventKind::Ringing { extension }));
        }
        self.calls.insert(key, tracked);
        Ok(Translated {
            reply: Reply::Accepted,
            events,
        })
    }

    fn answer(
        &mut self,
        key: &str,
        source_key: &str,
        request: &CtiRequest,
        now: Timestamp,
    ) -> Result<Translated, CtiError> {
        let agents = self.config.agents.clone();
        let call = self
            .calls
            .get_mut(key)
            .ok_or_else(|| CtiError::UnknownCall(source_key.to_owned()))?;
        call.last_seen = now;
        if call.answered || call.ended || call.blocked {
            return Ok(ignored());
        }
        call.answered = true;
        let extension = match call.direction {
            Direction::Outbound => None,
            _ => answering_extension(request, &call.ringing, &agents),
        };
        let mut events = Vec::new();
        for ringing in &call.ringing {
            if Some(ringing) == extension.as_ref() {
                continue;
            }
            if let Some(ringing) = Extension::new(ringing) {
                events.push(event(
                    call.call_id,
                    now,
                    CallEventKind::RingingStopped {
                        extension: ringing,
                        cause: StopCause::AnsweredElsewhere,
                    },
                ));
            }
        }
        let extension = extension.as_deref().and_then(Extension::new);
        events.push(event(
            call.call_id,
            now,
            CallEventKind::Answered { extension },
        ));
        Ok(Translated {
            reply: Reply::Accepted,
            events,
        })
    }

    fn hangup(
        &mut self,
        key: &str,
        source_key: &str,
        request: &CtiRequest,
        now: Timestamp,
    ) -> Result<Translated, CtiError> {
        let call = self
            .calls
            .get_mut(key)
            .ok_or_else(|| CtiError::UnknownCall(source_key.to_owned()))?;
        call.last_seen = now;
        if call.ended || call.blocked {
            return Ok(ignored());
        }
        call.ended = true;
        let cause = request
            .cause
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .unwrap_or("normalClearing");
        let outcome = match cause {
            _ if call.answered => Outcome::Answered,
            "busy" => Outcome::Busy,
            "blocked" => Outcome::Rejected,
            "congestion" | "notFound" => Outcome::Failed,
            // normalClearing before an answer: the caller hung up while it rang.
            _ => Outcome::Missed,
        };
        let mut events = Vec::new();
        if cause == "forwarded" {
            if let Some(to) = request
                .answering_number
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
            {
                events.push(event(
                    call.call_id,
                    now,
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
            now,
            CallEventKind::Ended {
                outcome,
                cause: cause.to_owned(),
            },
        ));
        Ok(Translated {
            reply: Reply::Accepted,
            events,
        })
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

/// The extension that answered: `answeringNumber`, else the one agent named in
/// `user`, else the only ringing extension.
fn answering_extension(
    request: &CtiRequest,
    ringing: &[String],
    agents: &ExtensionPatterns,
) -> Option<String> {
    if let Some(number) = request
        .answering_number
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        return Some(number.to_owned());
    }
    let named: Vec<&str> = request
        .users
        .iter()
        .map(|u| u.trim())
        .filter(|u| agents.is_agent(u))
        .collect();
    match (named.as_slice(), ringing) {
        ([one], _) => Some((*one).to_owned()),
        ([], [one]) => Some(one.clone()),
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
    ];
    for (name, value) in fields {
        if value.as_ref().is_some_and(|v| v.len() > MAX_VALUE_LEN) {
            return Err(CtiError::TooLong(name));
        }
    }
    if request.users.iter().any(|u| u.len() > MAX_VALUE_LEN) {
        return Err(CtiError::TooLong("user"));
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
    /// may repeat (`user`, `user[]`).
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
                "user" | "user[]" => {
                    if request.users.len() < MAX_USERS {
                        request.users.push(value);
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
                    outcome: Outcome::Missed,
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
}
