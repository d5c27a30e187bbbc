//! The live-call table: the current state of every call, built from call events.
//!
//! Fed with the same [`CallEvent`] stream whatever the source, so the HTTP API
//! and the supervisor board read one table. Ended calls stay visible for a
//! configurable linger time so that a board can show how they ended.

use crate::call::{
    CallEvent, CallEventKind, CallId, Direction, Extension, Outcome, Party, Source, Timestamp,
    Transfer,
};
use serde::Serialize;
use std::collections::HashMap;

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallState {
    /// Started, no phone rings yet.
    Setup,
    /// At least one phone rings.
    Ringing,
    /// Connected.
    Answered,
    /// Connected and on hold.
    Held,
    /// Over.
    Ended,
}

/// One call as the live table shows it (the `/api/calls/live` JSON shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveCall {
    /// Fiche's id of the call.
    pub id: CallId,
    /// Where it was observed.
    pub source: Source,
    /// The source's own key (SIP Call-ID, AMI Linkedid).
    pub source_key: String,
    /// Where it stands.
    pub state: CallState,
    /// Inbound, outbound or internal.
    pub direction: Direction,
    /// Who calls.
    pub caller: Party,
    /// Who is called.
    pub callee: Party,
    /// Extensions ringing now (empty once answered or ended).
    pub ringing_extensions: Vec<Extension>,
    /// Every extension that rang during the call, in order.
    pub rang_extensions: Vec<Extension>,
    /// The agent the call is with now: who answered (or placed an outbound
    /// call), then the target of each transfer.
    pub agent_extension: Option<Extension>,
    /// The first phone that answered, whatever transfers came after.
    pub answered_by: Option<Extension>,
    /// Transfer targets, in order.
    pub transferred_to: Vec<Extension>,
    /// Each transfer: its kind, who transferred, who was sent on, and where.
    pub transfers: Vec<Transfer>,
    /// Forwarding history from the signalling.
    pub diverted_from: Vec<String>,
    /// The queue or line the call came through, when the source names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// When the call started.
    pub started_at: Timestamp,
    /// When it was answered.
    pub answered_at: Option<Timestamp>,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
    /// How it ended.
    pub outcome: Option<Outcome>,
    /// Why it ended.
    pub cause: Option<String>,
}

/// Table of live (and recently ended) calls.
#[derive(Debug)]
pub struct LiveCalls {
    calls: HashMap<CallId, LiveCall>,
    /// Most calls held; see [`LiveCalls::with_max`].
    max: usize,
}

impl Default for LiveCalls {
    fn default() -> Self {
        Self::with_max(usize::MAX)
    }
}

impl LiveCalls {
    /// An empty table with no bound but the sources' own.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty table of at most `max` calls. A call that starts when it is
    /// full takes the place of the call that ended first, else of the oldest
    /// call not answered (a flood of setups replaces itself); when every call is
    /// answered and live, the new one is left out of the table.
    pub fn with_max(max: usize) -> Self {
        Self {
            calls: HashMap::new(),
            max: max.max(1),
        }
    }

    /// Makes room for one call: `Ok` with the call that made way, if one had
    /// to; `Err` when every call is answered and live. Linear in the table,
    /// and only run once it is full.
    fn make_room(&mut self) -> Result<Option<CallId>, ()> {
        if self.calls.len() < self.max {
            return Ok(None);
        }
        let ended = self
            .calls
            .values()
            .filter_map(|c| c.ended_at.map(|at| (at, c.id)))
            .min();
        let unanswered = || {
            self.calls
                .values()
                .filter(|c| matches!(c.state, CallState::Setup | CallState::Ringing))
                .map(|c| (c.started_at, c.id))
                .min()
        };
        match ended.or_else(unanswered) {
            Some((_, id)) => {
                self.calls.remove(&id);
                Ok(Some(id))
            }
            None => Err(()),
        }
    }

    /// Applies one event. Events for a call never started are ignored (a
    /// source always sends `CallStarted` first); returns whether the table changed.
    pub fn apply(&mut self, event: &CallEvent) -> bool {
        self.apply_evicting(event).0
    }

    /// [`LiveCalls::apply`], also naming the call that made way for a new one
    /// when the table was full, so that whoever keeps records per call can
    /// forget it too.
    pub fn apply_evicting(&mut self, event: &CallEvent) -> (bool, Option<CallId>) {
        let mut evicted = None;
        let changed = self.apply_inner(event, &mut evicted);
        (changed, evicted)
    }

    fn apply_inner(&mut self, event: &CallEvent, evicted: &mut Option<CallId>) -> bool {
        if let CallEventKind::CallStarted {
            source_key,
            direction,
            caller,
            callee,
            diverted_from,
            queue,
        } = &event.kind
        {
            if self.calls.contains_key(&event.call_id) {
                return false;
            }
            match self.make_room() {
                Ok(made_way) => *evicted = made_way,
                Err(()) => return false,
            }
            let agent_extension = match direction {
                Direction::Outbound | Direction::Internal => {
                    caller.number.as_deref().and_then(Extension::new)
                }
                Direction::Inbound => None,
            };
            self.calls.insert(
                event.call_id,
                LiveCall {
                    id: event.call_id,
                    source: event.source,
                    source_key: source_key.clone(),
                    state: CallState::Setup,
                    direction: *direction,
                    caller: caller.clone(),
                    callee: callee.clone(),
                    ringing_extensions: Vec::new(),
                    rang_extensions: Vec::new(),
                    agent_extension,
                    answered_by: None,
                    transferred_to: Vec::new(),
                    transfers: Vec::new(),
                    diverted_from: diverted_from.clone(),
                    queue: queue.clone(),
                    started_at: event.at,
                    answered_at: None,
                    ended_at: None,
                    outcome: None,
                    cause: None,
                },
            );
            return true;
        }
        let Some(call) = self.calls.get_mut(&event.call_id) else {
            return false;
        };
        if call.state == CallState::Ended {
            return false;
        }
        match &event.kind {
            CallEventKind::CallStarted { .. } => return false,
            CallEventKind::Ringing { extension } => {
                if call.ringing_extensions.contains(extension) {
                    return false;
                }
                call.ringing_extensions.push(extension.clone());
                if !call.rang_extensions.contains(extension) {
                    call.rang_extensions.push(extension.clone());
                }
                if call.state == CallState::Setup {
                    call.state = CallState::Ringing;
                }
            }
            CallEventKind::RingingStopped { extension, .. } => {
                let before = call.ringing_extensions.len();
                call.ringing_extensions.retain(|e| e != extension);
                if before == call.ringing_extensions.len() {
                    return false;
                }
            }
            CallEventKind::Answered { extension } => {
                if matches!(call.state, CallState::Answered | CallState::Held) {
                    // A later answer: a transfer target or a picker took the call over.
                    let Some(extension) = extension else {
                        return false;
                    };
                    let was_ringing = !call.ringing_extensions.is_empty();
                    call.ringing_extensions.clear();
                    // A blind transfer names its target before the target's
                    // phone rings: its answer ends that ringing.
                    if call.agent_extension.as_ref() == Some(extension) {
                        return was_ringing;
                    }
                    if call.direction == Direction::Inbound || call.agent_extension.is_some() {
                        call.agent_extension = Some(extension.clone());
                    }
                    return true;
                }
                call.state = CallState::Answered;
                call.answered_at = Some(event.at);
                call.ringing_extensions.clear();
                call.answered_by = extension.clone();
                if extension.is_some() && call.direction == Direction::Inbound {
                    call.agent_extension = extension.clone();
                }
            }
            CallEventKind::PartiesUpdated { caller, callee } => {
                call.caller = caller.clone();
                call.callee = callee.clone();
            }
            CallEventKind::Held => {
                if call.state != CallState::Answered {
                    return false;
                }
                call.state = CallState::Held;
            }
            CallEventKind::Resumed => {
                if call.state != CallState::Held {
                    return false;
                }
                call.state = CallState::Answered;
            }
            CallEventKind::Transferred(transfer) => {
                call.transfers.push(transfer.clone());
                if let Some(to) = &transfer.to {
                    call.transferred_to.push(to.clone());
                    if call.direction == Direction::Inbound || call.agent_extension.is_some() {
                        call.agent_extension = Some(to.clone());
                    }
                }
            }
            CallEventKind::Ended { outcome, cause } => {
                call.state = CallState::Ended;
                call.ringing_extensions.clear();
                call.ended_at = Some(event.at);
                call.outcome = Some(*outcome);
                call.cause = Some(cause.clone());
            }
        }
        true
    }

    /// The call with this id, if known.
    pub fn get(&self, id: &CallId) -> Option<&LiveCall> {
        self.calls.get(id)
    }

    /// Every call in the table, oldest first.
    pub fn snapshot(&self) -> Vec<LiveCall> {
        self.page(0, usize::MAX)
    }

    /// At most `limit` calls, oldest first, after skipping `offset`; only
    /// those are copied.
    pub fn page(&self, offset: usize, limit: usize) -> Vec<LiveCall> {
        let mut calls: Vec<&LiveCall> = self.calls.values().collect();
        calls.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        calls
            .into_iter()
            .skip(offset)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Calls not yet ended.
    pub fn active(&self) -> impl Iterator<Item = &LiveCall> {
        self.calls.values().filter(|c| c.state != CallState::Ended)
    }

    /// Forgets calls that ended before `ended_before`; returns how many.
    pub fn prune(&mut self, ended_before: Timestamp) -> usize {
        let before = self.calls.len();
        self.calls
            .retain(|_, c| c.ended_at.is_none_or(|ended| ended >= ended_before));
        before - self.calls.len()
    }

    /// Number of calls in the table (ended ones included until pruned).
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// True when the table holds no call.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn ext(s: &str) -> Extension {
        Extension::new(s).unwrap()
    }

    fn at(s: i64) -> Timestamp {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap_or_default()
    }

    fn ev(s: i64, kind: CallEventKind) -> CallEvent {
        CallEvent {
            call_id: CallId::from_source_key(Source::Hep, "c1"),
            source: Source::Hep,
            at: at(s),
            kind,
        }
    }

    fn started() -> CallEvent {
        ev(
            0,
            CallEventKind::CallStarted {
                source_key: "c1".into(),
                direction: Direction::Inbound,
                caller: Party {
                    number: Some("0612345678".into()),
                    name: Some("<b>x</b>".into()),
                    withheld: false,
                },
                callee: Party {
                    number: Some("600".into()),
                    ..Party::default()
                },
                diverted_from: vec![],
                queue: None,
            },
        )
    }

    #[test]
    fn ring_group_answered_by_one() {
        let mut t = LiveCalls::new();
        assert!(t.apply(&started()));
        for e in ["201", "202", "203"] {
            assert!(t.apply(&ev(1, CallEventKind::Ringing { extension: ext(e) })));
        }
        assert!(!t.apply(&ev(
            1,
            CallEventKind::Ringing {
                extension: ext("202")
            }
        )));
        let id = CallId::from_source_key(Source::Hep, "c1");
        assert_eq!(t.get(&id).map(|c| c.state), Some(CallState::Ringing));
        assert!(t.apply(&ev(
            3,
            CallEventKind::Answered {
                extension: Some(ext("202"))
            }
        )));
        let call = t.get(&id).cloned().unwrap();
        assert_eq!(call.state, CallState::Answered);
        assert_eq!(call.agent_extension.as_deref(), Some("202"));
        assert_eq!(call.answered_by.as_deref(), Some("202"));
        assert!(call.ringing_extensions.is_empty());
        assert_eq!(call.rang_extensions, ["201", "202", "203"]);
        assert!(t.apply(&ev(4, CallEventKind::Held)));
        assert!(t.apply(&ev(5, CallEventKind::Resumed)));
        assert!(t.apply(&ev(
            9,
            CallEventKind::Ended {
                outcome: Outcome::Answered,
                cause: "BYE".into()
            }
        )));
        assert!(
            !t.apply(&ev(10, CallEventKind::Held)),
            "nothing changes an ended call"
        );
        let call = t.get(&id).cloned().unwrap();
        assert_eq!(call.outcome, Some(Outcome::Answered));
        assert_eq!(call.ended_at, Some(at(9)));
        assert_eq!(t.prune(at(9)), 0);
        assert_eq!(t.prune(at(10)), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn a_blind_transfer_target_stops_ringing_when_she_answers() {
        let mut t = LiveCalls::new();
        let id = CallId::from_source_key(Source::Hep, "c1");
        t.apply(&started());
        t.apply(&ev(
            1,
            CallEventKind::Ringing {
                extension: ext("202"),
            },
        ));
        t.apply(&ev(
            2,
            CallEventKind::Answered {
                extension: Some(ext("202")),
            },
        ));
        t.apply(&ev(
            3,
            CallEventKind::Transferred(Transfer {
                kind: crate::call::TransferKind::Blind,
                by: Some(ext("202")),
                transferee: None,
                to: Some(ext("203")),
            }),
        ));
        t.apply(&ev(
            4,
            CallEventKind::Ringing {
                extension: ext("203"),
            },
        ));
        assert!(t.apply(&ev(
            5,
            CallEventKind::Answered {
                extension: Some(ext("203"))
            }
        )));
        let call = t.get(&id).cloned().unwrap();
        assert!(call.ringing_extensions.is_empty(), "{call:?}");
        assert_eq!(call.agent_extension.as_deref(), Some("203"));
        assert!(!t.apply(&ev(
            6,
            CallEventKind::Answered {
                extension: Some(ext("203"))
            }
        )));
    }

    #[test]
    fn a_transfer_target_who_answers_takes_the_call_over() {
        let mut t = LiveCalls::new();
        t.apply(&started());
        t.apply(&ev(
            1,
            CallEventKind::Ringing {
                extension: ext("201"),
            },
        ));
        t.apply(&ev(
            2,
            CallEventKind::Answered {
                extension: Some(ext("201")),
            },
        ));
        assert!(t.apply(&ev(
            5,
            CallEventKind::Transferred(Transfer {
                kind: crate::call::TransferKind::Blind,
                by: Some(ext("201")),
                transferee: Some(ext("0612345678")),
                to: Some(ext("401")),
            })
        )));
        t.apply(&ev(
            6,
            CallEventKind::Ringing {
                extension: ext("202"),
            },
        ));
        t.apply(&ev(
            6,
            CallEventKind::Ringing {
                extension: ext("203"),
            },
        ));
        assert!(t.apply(&ev(
            8,
            CallEventKind::Answered {
                extension: Some(ext("203"))
            }
        )));
        assert!(
            !t.apply(&ev(
                8,
                CallEventKind::Answered {
                    extension: Some(ext("203"))
                }
            )),
            "the same answer twice changes nothing"
        );
        let call = t
            .get(&CallId::from_source_key(Source::Hep, "c1"))
            .cloned()
            .unwrap();
        assert_eq!(
            call.answered_by.as_deref(),
            Some("201"),
            "the first answerer stays"
        );
        assert_eq!(
            call.agent_extension.as_deref(),
            Some("203"),
            "not the group number"
        );
        assert!(call.ringing_extensions.is_empty());
        assert_eq!(call.answered_at, Some(at(2)));
        assert_eq!(call.transfers.len(), 1);
        assert_eq!(call.rang_extensions, ["201", "202", "203"]);
    }

    #[test]
    fn events_before_start_are_ignored() {
        let mut t = LiveCalls::new();
        assert!(!t.apply(&ev(
            1,
            CallEventKind::Ringing {
                extension: ext("201")
            }
        )));
        assert!(t.is_empty());
    }

    fn started_as(key: &str, s: i64) -> CallEvent {
        let mut event = started();
        event.call_id = CallId::from_source_key(Source::Hep, key);
        event.at = at(s);
        if let CallEventKind::CallStarted { source_key, .. } = &mut event.kind {
            *source_key = key.to_owned();
        }
        event
    }

    #[test]
    fn a_full_table_drops_ended_then_oldest_unanswered_calls_never_answered_ones() {
        let mut t = LiveCalls::with_max(3);
        for (key, s) in [("answered", 0), ("setup-old", 1), ("ended", 2)] {
            assert!(t.apply(&started_as(key, s)));
        }
        let mut answer = started_as("answered", 3);
        answer.kind = CallEventKind::Answered { extension: None };
        assert!(t.apply(&answer));
        let mut end = started_as("ended", 4);
        end.kind = CallEventKind::Ended {
            outcome: Outcome::Missed,
            cause: "cancel".into(),
        };
        assert!(t.apply(&end));
        let keys = |t: &LiveCalls| -> Vec<String> {
            t.snapshot().into_iter().map(|c| c.source_key).collect()
        };
        assert!(t.apply(&started_as("flood-1", 5)));
        assert_eq!(
            keys(&t),
            ["answered", "setup-old", "flood-1"],
            "the ended call left first"
        );
        assert!(t.apply(&started_as("flood-2", 6)));
        assert_eq!(
            keys(&t),
            ["answered", "flood-1", "flood-2"],
            "then the oldest setup"
        );
        assert_eq!(t.page(1, 1).len(), 1);
        assert_eq!(t.page(1, 1)[0].source_key, "flood-1");
        let mut full = LiveCalls::with_max(1);
        assert!(full.apply(&started_as("answered", 0)));
        assert!(full.apply(&answer));
        assert!(
            !full.apply(&started_as("new", 1)),
            "an answered live call is never dropped"
        );
        assert_eq!(keys(&full), ["answered"]);
    }
}
