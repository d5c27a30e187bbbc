//! Who is told what about one call event, as a pure function of the call before
//! and after the event: the hub looks the extensions up in its socket index and
//! delivers. Supervisors get every call update and every card besides what is
//! listed here; the table test at the bottom is the rule book of who sees what.

use fiche_model::{CallEventKind, CallState, Extension, LiveCall, StopCause};

use crate::protocol::Card;

/// What the hub remembers of a call beyond the live table.
#[derive(Debug, Default)]
pub(crate) struct CallMeta {
    pub(crate) card: Option<Card>,
    /// The extension that answered (the live table keeps it only for inbound calls).
    pub(crate) answered_by: Option<String>,
    /// Extensions told "withdrawn" before anyone was known to have answered.
    pub(crate) withdrawn_unattributed: Vec<String>,
}

impl CallMeta {
    /// Keeps what the hub remembers in step with an event the live table took.
    pub(crate) fn follow(&mut self, kind: &CallEventKind, changed: bool, card: Option<Card>) {
        if let Some(card) = card {
            self.card = Some(card);
        }
        match kind {
            CallEventKind::Answered { extension } if changed => {
                self.answered_by = extension.as_ref().map(|e| e.to_string());
            }
            CallEventKind::Transferred(_) if changed => self.answered_by = None,
            _ => {}
        }
    }

    /// Withdrawals sent while nobody was known to have answered are told again,
    /// naming who did, when the answer comes.
    pub(crate) fn remember_withdrawals(&mut self, routing: &Routing<'_>) {
        if routing.answered_by.is_none() {
            self.withdrawn_unattributed
                .extend(routing.withdrawals.iter().map(|(e, _)| e.clone()));
        } else {
            self.withdrawn_unattributed.clear();
        }
    }
}

/// The call as it stood before the event.
#[derive(Debug, Default)]
pub(crate) struct Before {
    /// The extensions that were ringing.
    pub(crate) ringing: Vec<Extension>,
    /// The extensions the call occupied (see [`occupied`]).
    pub(crate) occupied: Vec<String>,
}

impl Before {
    pub(crate) fn of(call: Option<&LiveCall>, meta: Option<&CallMeta>) -> Self {
        match call {
            Some(call) => Self {
                ringing: call.ringing_extensions.clone(),
                occupied: occupied(call, meta),
            },
            None => Self::default(),
        }
    }
}

/// The messages one event makes, addressed to extensions.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Routing<'e> {
    /// The extension whose sockets get the `pop`.
    pub(crate) pop: Option<&'e str>,
    /// Extensions told their ringing stopped, and why.
    pub(crate) withdrawals: Vec<(String, StopCause)>,
    /// Who answered, named in each withdrawal (`None` while unknown).
    pub(crate) answered_by: Option<String>,
    /// Extensions sent the call update (every supervisor gets it too).
    pub(crate) update: Vec<String>,
    /// Extensions sent the card that just arrived (every supervisor too);
    /// `None` when the event brought no card.
    pub(crate) card: Option<Vec<String>>,
    /// The extensions the call occupies after the event.
    pub(crate) occupied: Vec<String>,
}

/// Routes one event. `call` and `meta` are the call after the event was
/// applied; `changed` says whether it changed the live table; `new_card` whether
/// it brought a card.
pub(crate) fn route<'e>(
    kind: &'e CallEventKind,
    call: &LiveCall,
    meta: Option<&CallMeta>,
    before: &Before,
    changed: bool,
    new_card: bool,
) -> Routing<'e> {
    let occupied_after = occupied(call, meta);
    let mut pop = None;
    let mut withdrawals: Vec<(String, StopCause)> = Vec::new();
    let mut answered_by = None;
    let update = match kind {
        CallEventKind::Ringing { extension } => {
            if changed || new_card {
                pop = Some(extension.as_str());
            }
            let mut exts = concerned(call, meta);
            exts.retain(|e| e != extension.as_str());
            exts
        }
        CallEventKind::RingingStopped { extension, cause } => {
            if before.ringing.contains(extension) {
                if matches!(call.state, CallState::Answered | CallState::Held) {
                    answered_by = meta.and_then(|m| m.answered_by.clone());
                }
                withdrawals.push((extension.to_string(), *cause));
            }
            Vec::new()
        }
        CallEventKind::Answered { extension } => {
            let answerer = extension.as_deref();
            for ext in &before.ringing {
                if Some(ext.as_str()) != answerer {
                    withdrawals.push((ext.to_string(), StopCause::AnsweredElsewhere));
                }
            }
            for ext in meta.iter().flat_map(|m| &m.withdrawn_unattributed) {
                if Some(ext.as_str()) != answerer && !withdrawals.iter().any(|(e, _)| e == ext) {
                    withdrawals.push((ext.clone(), StopCause::AnsweredElsewhere));
                }
            }
            answered_by = extension.as_ref().map(|e| e.to_string());
            let mut exts = merge(&before.occupied, &occupied_after);
            exts.retain(|e| !withdrawals.iter().any(|(w, _)| w == e));
            exts
        }
        _ => merge(&before.occupied, &occupied_after),
    };
    let card = new_card.then(|| {
        // The pop already carries it to the extension that just rang.
        occupied_after
            .iter()
            .filter(|e| Some(e.as_str()) != pop)
            .cloned()
            .collect()
    });
    Routing {
        pop,
        withdrawals,
        answered_by,
        update,
        card,
        occupied: occupied_after,
    }
}

/// Extensions a call concerns besides the ones ringing: whoever handles it.
pub(crate) fn concerned(call: &LiveCall, meta: Option<&CallMeta>) -> Vec<String> {
    if call.state == CallState::Ended {
        return Vec::new();
    }
    let mut exts = Vec::with_capacity(2);
    if let Some(agent) = &call.agent_extension {
        exts.push(agent.to_string());
    }
    if let Some(answered) = meta.and_then(|m| m.answered_by.as_ref()) {
        if !exts.contains(answered) {
            exts.push(answered.clone());
        }
    }
    exts
}

/// Every extension an active call occupies: ringing there or handled there.
pub(crate) fn occupied(call: &LiveCall, meta: Option<&CallMeta>) -> Vec<String> {
    let mut exts = concerned(call, meta);
    if call.state != CallState::Ended {
        for ext in &call.ringing_extensions {
            if !exts.iter().any(|e| e == ext) {
                exts.push(ext.to_string());
            }
        }
    }
    exts
}

/// Who gets a card completed or replaced after the event that made it:
/// whoever holds the call; once it ended, the phones that rang, which showed
/// the pop (a caller who gave up before the file was read from the store must
/// still be called back with it).
pub(crate) fn card_recipients(call: &LiveCall, meta: Option<&CallMeta>) -> Vec<String> {
    if call.state == CallState::Ended {
        return call.rang_extensions.iter().map(|e| e.to_string()).collect();
    }
    occupied(call, meta)
}

/// `a` then what `b` adds.
pub(crate) fn merge(a: &[String], b: &[String]) -> Vec<String> {
    let mut out = a.to_vec();
    for e in b {
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Card;
    use fiche_model::{CallEvent, CallId, Direction, LiveCalls, Party, Source, Transfer};
    use fiche_model::{Outcome, TransferKind};

    fn ext(s: &str) -> Extension {
        Extension::new(s).unwrap()
    }

    fn started() -> CallEventKind {
        CallEventKind::CallStarted {
            source_key: "c1".into(),
            direction: Direction::Inbound,
            caller: Party {
                number: Some("0612345678".into()),
                ..Party::default()
            },
            callee: Party {
                number: Some("600".into()),
                ..Party::default()
            },
            diverted_from: vec![],
            queue: None,
        }
    }

    fn ringing(e: &str) -> CallEventKind {
        CallEventKind::Ringing { extension: ext(e) }
    }

    fn stopped(e: &str, cause: StopCause) -> CallEventKind {
        CallEventKind::RingingStopped {
            extension: ext(e),
            cause,
        }
    }

    fn answered(e: &str) -> CallEventKind {
        CallEventKind::Answered {
            extension: Some(ext(e)),
        }
    }

    fn ended(outcome: Outcome) -> CallEventKind {
        CallEventKind::Ended {
            outcome,
            cause: "BYE".into(),
        }
    }

    /// What one event makes, in words: (pop, withdrawals with who answered,
    /// update, card); `None` for an event that changed nothing.
    type Told = Option<(
        Option<String>,
        Vec<(String, StopCause, Option<String>)>,
        Vec<String>,
        Option<Vec<String>>,
    )>;

    /// A call's events, each with whether it brings a card.
    type Script = Vec<(CallEventKind, bool)>;

    /// Walks a call through the live table and the meta as the hub does, routing
    /// each event; `with_card` marks the events that bring a card.
    fn walk(events: &[(CallEventKind, bool)]) -> Vec<Told> {
        let id = CallId::from_source_key(Source::Hep, "c1");
        let mut table = LiveCalls::new();
        let mut meta = CallMeta::default();
        let mut told = Vec::new();
        for (second, (kind, with_card)) in events.iter().enumerate() {
            let event = CallEvent {
                call_id: id,
                source: Source::Hep,
                at: chrono::DateTime::from_timestamp(1_700_000_000 + second as i64, 0).unwrap(),
                kind: kind.clone(),
            };
            let before = Before::of(table.get(&id), Some(&meta));
            let changed = table.apply(&event);
            if !changed && !with_card {
                told.push(None);
                continue;
            }
            let card = with_card.then(Card::default);
            meta.follow(kind, changed, card);
            let call = table.get(&id).unwrap();
            let routing = route(kind, call, Some(&meta), &before, changed, *with_card);
            meta.remember_withdrawals(&routing);
            told.push(Some((
                routing.pop.map(str::to_owned),
                routing
                    .withdrawals
                    .iter()
                    .map(|(e, cause)| (e.clone(), *cause, routing.answered_by.clone()))
                    .collect(),
                routing.update,
                routing.card,
            )));
        }
        told
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn pop(e: &str, update: &[&str], card: Option<&[&str]>) -> Told {
        Some((Some(e.into()), vec![], strings(update), card.map(strings)))
    }

    fn update(update: &[&str]) -> Told {
        Some((None, vec![], strings(update), None))
    }

    fn withdrawn(list: &[(&str, StopCause, Option<&str>)], update: &[&str]) -> Told {
        let list = list
            .iter()
            .map(|(e, cause, by)| (e.to_string(), *cause, by.map(str::to_owned)))
            .collect();
        Some((None, list, strings(update), None))
    }

    #[test]
    fn who_is_told_what_along_a_call() {
        use StopCause::{AnsweredElsewhere, NoAnswer};
        let transfer = CallEventKind::Transferred(Transfer {
            kind: TransferKind::Blind,
            by: Some(ext("202")),
            transferee: None,
            to: Some(ext("203")),
        });
        // (the calls, each event with whether it brings a card, what each makes)
        let table: Vec<(&str, Script, Vec<Told>)> = vec![
            (
                "a ring group answered by one: the others are withdrawn naming her",
                vec![
                    (started(), false),
                    (ringing("201"), true),
                    (ringing("202"), false),
                    (ringing("202"), false),
                    (answered("202"), false),
                    (CallEventKind::Held, false),
                    (ended(Outcome::Answered), false),
                ],
                vec![
                    update(&[]),
                    // The first ring pops with the card; nobody else holds the call.
                    pop("201", &[], Some(&[])),
                    pop("202", &[], None),
                    // A repeated ring tells nobody anything.
                    None,
                    withdrawn(&[("201", AnsweredElsewhere, Some("202"))], &["202"]),
                    update(&["202"]),
                    update(&["202"]),
                ],
            ),
            (
                "a ring that stops unanswered is withdrawn without a name, then the call is missed",
                vec![
                    (started(), false),
                    (ringing("201"), true),
                    (stopped("201", NoAnswer), false),
                    (ended(Outcome::Missed), false),
                ],
                vec![
                    update(&[]),
                    pop("201", &[], Some(&[])),
                    withdrawn(&[("201", NoAnswer, None)], &[]),
                    update(&[]),
                ],
            ),
            (
                "a withdrawal before the answer is known is told again naming who answered",
                vec![
                    (started(), false),
                    (ringing("201"), false),
                    (ringing("202"), false),
                    (stopped("201", AnsweredElsewhere), false),
                    (answered("202"), false),
                ],
                vec![
                    update(&[]),
                    pop("201", &[], None),
                    pop("202", &[], None),
                    withdrawn(&[("201", AnsweredElsewhere, None)], &[]),
                    withdrawn(&[("201", AnsweredElsewhere, Some("202"))], &["202"]),
                ],
            ),
            (
                "a transfer tells the agent who had the call and the target",
                vec![
                    (started(), false),
                    (ringing("202"), true),
                    (answered("202"), false),
                    (transfer, false),
                    (ringing("203"), false),
                    (answered("203"), false),
                ],
                vec![
                    update(&[]),
                    pop("202", &[], Some(&[])),
                    update(&["202"]),
                    update(&["202", "203"]),
                    // The target's ring pops there; the transferer already knows.
                    pop("203", &[], None),
                    update(&["203"]),
                ],
            ),
            (
                "a card that arrives with a later ring goes to whoever holds the call",
                vec![
                    (started(), false),
                    (ringing("201"), false),
                    (ringing("202"), true),
                ],
                vec![
                    update(&[]),
                    pop("201", &[], None),
                    pop("202", &[], Some(&["201"])),
                ],
            ),
        ];
        for (name, events, expected) in table {
            assert_eq!(walk(&events), expected, "{name}");
        }
    }
}
