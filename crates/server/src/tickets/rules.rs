//! The rules that turn calls into work, as pure functions: what the writer
//! read about a call goes in, what to do with tickets comes out. The writer
//! (`writer.rs`) is the IO shell around them: it reads these facts inside its
//! transaction, applies the actions, and publishes after the commit.
//!
//! The table tests below read like the product's promises ("a ring group
//! rings, nobody answers, the number already has an open callback: one more
//! attempt on it").

use super::{CallKind, TicketsConfig};
use chrono::{DateTime, Duration, Utc};
use fiche_hub::Priority;
use fiche_pbx::{Direction, Outcome};

/// Which rule a call falls under once it ended (or was answered, `outcome`
/// still unknown). A call the phone system forwarded out before anyone here
/// answered was handled elsewhere: a call, not a callback (Zammad counts it
/// done). A voicemail is a missed call.
pub fn kind_of(direction: Direction, answered: bool, outcome: Option<Outcome>) -> CallKind {
    match (direction, answered) {
        (Direction::Inbound, true) => CallKind::InboundAnswered,
        (Direction::Inbound, false) if outcome == Some(Outcome::Forwarded) => {
            CallKind::InboundAnswered
        }
        (Direction::Inbound, false) => CallKind::Missed,
        (Direction::Outbound, _) => CallKind::Outbound,
        (Direction::Internal, _) => CallKind::Internal,
    }
}

/// Whether an ended call makes (or keeps) a ticket: its kind is one the site
/// wants, or the agent wrote something on its card (a call of any kind with
/// notes becomes a ticket, or the notes would be lost).
pub fn makes_ticket(config: &TicketsConfig, kind: CallKind, has_drafts: bool) -> bool {
    config.create_for.contains(&kind) || has_drafts
}

/// Whether an answered inbound call gets its ticket at the answer (so the
/// agent's notes land on it while she talks), rather than at the end.
pub fn ticket_at_answer(config: &TicketsConfig, direction: Direction) -> bool {
    direction == Direction::Inbound && config.create_for.contains(&CallKind::InboundAnswered)
}

/// What the writer knows about a call that needs a call ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallTicketFacts {
    /// The ticket the call already has.
    pub existing: Option<i64>,
    /// An open ticket of the same customer, when the site links calls to it.
    pub open_for_customer: Option<i64>,
    /// The agent's extension (who answered, or placed the call).
    pub agent: Option<String>,
}

/// What to do for a call ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallTicketAction {
    /// The call has its ticket already.
    Keep(i64),
    /// Link the call to the customer's open ticket.
    Link(i64),
    /// Open a call ticket, assigned to the owner of this extension if any.
    Create {
        /// Whose ticket it is.
        assign_to_extension: Option<String>,
    },
}

/// The call ticket rule.
pub fn call_ticket(config: &TicketsConfig, facts: &CallTicketFacts) -> CallTicketAction {
    if let Some(ticket) = facts.existing {
        return CallTicketAction::Keep(ticket);
    }
    if config.link_to_open_ticket {
        if let Some(open) = facts.open_for_customer {
            return CallTicketAction::Link(open);
        }
    }
    CallTicketAction::Create {
        assign_to_extension: facts.agent.clone(),
    }
}

/// What the writer knows about a missed inbound call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissedFacts {
    /// The ticket the call already has (a replay).
    pub existing: Option<i64>,
    /// An open callback for the caller's number.
    pub open_callback: Option<i64>,
    /// The caller is a customer with other work open.
    pub customer_has_open_work: bool,
    /// The phones that rang, in order.
    pub rang: Vec<String>,
    /// The number the caller dialled (a ring group, a queue, a DID).
    pub dialled: Option<String>,
    /// The queue the phone system says the call came through.
    pub queue: Option<String>,
    /// The caller reached the voicemail (and may have left a message).
    pub voicemail: bool,
    /// When the call ended.
    pub ended_at: DateTime<Utc>,
}

/// What to do with a missed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissedAction {
    /// The call has its ticket already.
    Keep(i64),
    /// One more attempt on the number's open callback (merged, not a new post-it).
    Attempt(i64),
    /// A new callback.
    NewCallback {
        /// When exactly one phone rang, the callback is its owner's.
        assign_to_extension: Option<String>,
        /// Otherwise (or when that phone has no owner) the group's: the
        /// queue, else the dialled number.
        group: String,
        /// The callback says a voicemail was left: listen to it first.
        voicemail: bool,
        /// Known customers with work already open are called back first.
        priority: Priority,
        /// When it is due.
        due_at: DateTime<Utc>,
    },
}

/// The group a callback nobody owns goes to when the dialled number is unknown.
pub const DEFAULT_GROUP: &str = "accueil";

/// The missed-call rule.
pub fn missed(config: &TicketsConfig, facts: &MissedFacts) -> MissedAction {
    if let Some(ticket) = facts.existing {
        return MissedAction::Keep(ticket);
    }
    if let Some(open) = facts.open_callback {
        return MissedAction::Attempt(open);
    }
    let assign_to_extension = match facts.rang.as_slice() {
        [only] => Some(only.clone()),
        _ => None,
    };
    MissedAction::NewCallback {
        assign_to_extension,
        group: facts
            .queue
            .clone()
            .or_else(|| facts.dialled.clone())
            .unwrap_or_else(|| DEFAULT_GROUP.to_owned()),
        voicemail: facts.voicemail,
        priority: if facts.customer_has_open_work {
            Priority::High
        } else {
            Priority::Normal
        },
        due_at: facts.ended_at + Duration::minutes(i64::from(config.callback_delay_minutes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minutes * 60, 0).unwrap_or_default()
    }

    fn missed_facts(rang: &[&str], open_callback: Option<i64>, open_work: bool) -> MissedFacts {
        MissedFacts {
            existing: None,
            open_callback,
            customer_has_open_work: open_work,
            rang: rang.iter().map(|e| (*e).to_owned()).collect(),
            dialled: Some("600".to_owned()),
            queue: None,
            voicemail: false,
            ended_at: at(0),
        }
    }

    #[test]
    fn missed_calls_as_the_product_promises() {
        let config = TicketsConfig::default();
        let cases: &[(&str, MissedFacts, MissedAction)] = &[
            (
                "ring group 201+202, nobody answers, an open callback exists for that number: attempt on it",
                missed_facts(&["201", "202"], Some(7), false),
                MissedAction::Attempt(7),
            ),
            (
                "only 201 rang: the callback is hers, due 30 minutes after the call",
                missed_facts(&["201"], None, false),
                MissedAction::NewCallback {
                    assign_to_extension: Some("201".into()),
                    group: "600".into(),
                    priority: Priority::Normal,
                    due_at: at(30),
                    voicemail: false,
                },
            ),
            (
                "201 and 202 rang: the group's callback (the number dialled)",
                missed_facts(&["201", "202"], None, false),
                MissedAction::NewCallback {
                    assign_to_extension: None,
                    group: "600".into(),
                    priority: Priority::Normal,
                    due_at: at(30),
                    voicemail: false,
                },
            ),
            (
                "a customer with work already open is called back first",
                missed_facts(&["201", "202"], None, true),
                MissedAction::NewCallback {
                    assign_to_extension: None,
                    group: "600".into(),
                    priority: Priority::High,
                    due_at: at(30),
                    voicemail: false,
                },
            ),
            (
                "no phone rang at all (hung up in the menu): still a callback, for the group",
                missed_facts(&[], None, false),
                MissedAction::NewCallback {
                    assign_to_extension: None,
                    group: "600".into(),
                    priority: Priority::Normal,
                    due_at: at(30),
                    voicemail: false,
                },
            ),
            (
                "the caller left a voicemail: a callback saying so, for the queue the call came through",
                MissedFacts {
                    queue: Some("support".into()),
                    voicemail: true,
                    ..missed_facts(&["201", "202"], None, false)
                },
                MissedAction::NewCallback {
                    assign_to_extension: None,
                    group: "support".into(),
                    priority: Priority::Normal,
                    due_at: at(30),
                    voicemail: true,
                },
            ),
            (
                "a voicemail from a number with an open callback: one more attempt on it",
                MissedFacts {
                    voicemail: true,
                    ..missed_facts(&["201"], Some(7), false)
                },
                MissedAction::Attempt(7),
            ),
            (
                "a replayed end changes nothing",
                MissedFacts {
                    existing: Some(3),
                    ..missed_facts(&["201"], Some(7), false)
                },
                MissedAction::Keep(3),
            ),
        ];
        for (promise, facts, expected) in cases {
            assert_eq!(&missed(&config, facts), expected, "{promise}");
        }
        let unknown_number = MissedFacts {
            dialled: None,
            ..missed_facts(&["201", "202"], None, false)
        };
        assert!(matches!(
            missed(&config, &unknown_number),
            MissedAction::NewCallback { group, .. } if group == DEFAULT_GROUP
        ));
    }

    #[test]
    fn which_calls_make_tickets() {
        let config = TicketsConfig::default();
        let cases = [
            (
                "an answered inbound call",
                Direction::Inbound,
                true,
                false,
                true,
            ),
            (
                "a missed inbound call",
                Direction::Inbound,
                false,
                false,
                true,
            ),
            ("an outbound call", Direction::Outbound, true, false, true),
            ("an internal call", Direction::Internal, true, false, false),
            (
                "an internal call with notes on its card",
                Direction::Internal,
                true,
                true,
                true,
            ),
        ];
        for (promise, direction, answered, drafts, makes) in cases {
            let kind = kind_of(direction, answered, None);
            assert_eq!(makes_ticket(&config, kind, drafts), makes, "{promise}");
        }
        assert_eq!(
            kind_of(Direction::Inbound, false, Some(Outcome::Forwarded)),
            CallKind::InboundAnswered,
            "forwarded out before an answer: handled elsewhere, not missed"
        );
        assert_eq!(
            kind_of(Direction::Inbound, false, Some(Outcome::Voicemail)),
            CallKind::Missed,
            "a voicemail is a missed call, called back"
        );
        assert!(ticket_at_answer(&config, Direction::Inbound));
        assert!(!ticket_at_answer(&config, Direction::Outbound));
    }

    #[test]
    fn call_tickets_link_to_open_work_only_when_the_site_asks() {
        let facts = CallTicketFacts {
            existing: None,
            open_for_customer: Some(9),
            agent: Some("201".into()),
        };
        let mut config = TicketsConfig::default();
        assert_eq!(
            call_ticket(&config, &facts),
            CallTicketAction::Create {
                assign_to_extension: Some("201".into())
            }
        );
        config.link_to_open_ticket = true;
        assert_eq!(call_ticket(&config, &facts), CallTicketAction::Link(9));
        let replay = CallTicketFacts {
            existing: Some(4),
            ..facts
        };
        assert_eq!(call_ticket(&config, &replay), CallTicketAction::Keep(4));
    }
}
