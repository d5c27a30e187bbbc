//! The closed sets shared by the store, the hub and the API, each spelt as
//! the database spells it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A stored or received value that is none of a closed set's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a {what} ({expected})")]
pub struct UnknownValue {
    /// Which set: `role`, `ticket kind`, …
    pub what: &'static str,
    /// The words it may be.
    pub expected: &'static str,
    /// What was found.
    pub value: String,
}

macro_rules! words {
    ($name:ident, $what:literal, { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl $name {
            /// The word used in JSON and in the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($word => Ok($name::$variant),)+
                    other => Err(UnknownValue {
                        what: $what,
                        expected: concat!($($word, " "),+),
                        value: other.to_owned(),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Takes calls; sees the calls that ring at, or are handled by, her extensions.
    Agent,
    /// Also sees the live board and everyone's tickets.
    Supervisor,
    /// Also manages users and settings.
    Admin,
}

words!(Role, "role", { Agent => "agent", Supervisor => "supervisor", Admin => "admin" });

impl Role {
    /// Supervisors and admins receive the whole board.
    pub fn sees_board(self) -> bool {
        matches!(self, Role::Supervisor | Role::Admin)
    }
}

/// What a ticket is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketKind {
    /// A call that took place.
    Call,
    /// A missed call to return ("à rappeler").
    Callback,
}

words!(TicketKind, "ticket kind", { Call => "call", Callback => "callback" });

/// Whether work remains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketStatus {
    /// Work remains.
    Open,
    /// Done.
    Closed,
}

words!(TicketStatus, "ticket status", { Open => "open", Closed => "closed" });

/// A ticket's priority.
///
/// The store keeps it as a level (0 normal, higher more urgent, negative
/// low) so that "most urgent first" is a plain `ORDER BY`; this is the one
/// place where levels and names meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Can wait.
    Low,
    /// The default.
    Normal,
    /// Soon.
    High,
    /// Now.
    Urgent,
}

words!(Priority, "priority", { Low => "low", Normal => "normal", High => "high", Urgent => "urgent" });

impl Priority {
    /// The priority of a stored level: below 0 low, 0 normal, 1 high, above urgent.
    pub fn from_level(level: i32) -> Self {
        match level {
            i32::MIN..=-1 => Priority::Low,
            0 => Priority::Normal,
            1 => Priority::High,
            _ => Priority::Urgent,
        }
    }

    /// The level the store keeps.
    pub fn level(self) -> i32 {
        match self {
            Priority::Low => -1,
            Priority::Normal => 0,
            Priority::High => 1,
            Priority::Urgent => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_read_back_and_unknown_ones_name_the_set() {
        for role in [Role::Agent, Role::Supervisor, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(
                serde_json::to_value(role).unwrap_or_default(),
                role.as_str()
            );
        }
        for kind in [TicketKind::Call, TicketKind::Callback] {
            assert_eq!(kind.as_str().parse::<TicketKind>(), Ok(kind));
        }
        let error = "pending".parse::<TicketStatus>().unwrap_err();
        assert_eq!(error.what, "ticket status");
        assert!(error.to_string().contains("\"pending\""));
        assert!("manual".parse::<TicketKind>().is_err());
    }

    #[test]
    fn priorities_and_levels_meet_in_one_place() {
        for p in [
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Urgent,
        ] {
            assert_eq!(Priority::from_level(p.level()), p);
            assert_eq!(serde_json::to_value(p).unwrap_or_default(), p.as_str());
        }
        assert_eq!(Priority::from_level(-7), Priority::Low);
        assert_eq!(Priority::from_level(9), Priority::Urgent);
        assert!(Priority::Urgent > Priority::High);
    }
}
