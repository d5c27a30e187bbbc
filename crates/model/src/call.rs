//! The call model every source produces: typed call events and the parties of a call.
//!
//! HEP/SIP, AMI and (later) HTTP CTI sources all translate what they see into
//! [`CallEvent`]s; nothing downstream may care which source a call came from,
//! except through the informative [`Source`] field.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// Wall-clock instant, always UTC; serialised as RFC 3339.
pub type Timestamp = DateTime<Utc>;

/// Where a call was observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// SIP mirrored as HEP v3.
    Hep,
    /// Asterisk Manager Interface.
    Ami,
    /// HTTP CTI webhook (Zammad-compatible).
    Cti,
}

impl Source {
    /// The lowercase name used in JSON and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Hep => "hep",
            Source::Ami => "ami",
            Source::Cti => "cti",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fiche's identifier of a call.
///
/// Derived (UUID v5) from the source and the source's own key (SIP Call-ID, AMI
/// Linkedid, CTI callId), so the same call seen twice, after a restart or by two
/// Fiche nodes, gets the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallId(pub Uuid);

/// Namespace of [`CallId::from_source_key`]; a fixed random UUID, never change it.
const CALL_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5f1c_2b8e_9a47_4c1d_8e0f_6a3b_7d29_c4e1);

impl CallId {
    /// The stable id of the call `key` as seen by `source`.
    pub fn from_source_key(source: Source, key: &str) -> Self {
        let mut name = Vec::with_capacity(key.len() + 4);
        name.extend_from_slice(source.as_str().as_bytes());
        name.push(b':');
        name.extend_from_slice(key.as_bytes());
        CallId(Uuid::new_v5(&CALL_ID_NAMESPACE, &name))
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One end of a call as the phone system presents it.
///
/// `name` is chosen by whoever placed the call: untrusted text, kept exactly as
/// received, never to be rendered as HTML nor logged unescaped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    /// The number or user part as signalled (not normalised), `None` when absent or withheld.
    pub number: Option<String>,
    /// The display name as signalled, `None` when absent.
    pub name: Option<String>,
    /// The caller asked for privacy (anonymous, `Privacy: id`, restricted presentation).
    pub withheld: bool,
}

/// Which way a call goes, relative to the agents' extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From outside to an agent (or a group of agents).
    Inbound,
    /// From an agent extension to outside.
    Outbound,
    /// From an agent extension to another agent extension.
    Internal,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Someone answered; the call was connected.
    Answered,
    /// Nobody answered, or the caller gave up while it rang.
    Missed,
    /// The callee was busy.
    Busy,
    /// The callee declined the call.
    Rejected,
    /// The call failed: wrong number, network error, lost signalling.
    Failed,
    /// Nobody answered; the voicemail took the call. A missed call: the
    /// caller who left a message is called back.
    Voicemail,
    /// The phone system forwarded the call out before anyone here answered
    /// (to a mobile, another site): handled elsewhere, not missed.
    Forwarded,
}

impl Outcome {
    /// The lowercase name used in JSON and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Missed => "missed",
            Outcome::Busy => "busy",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
            Outcome::Voicemail => "voicemail",
            Outcome::Forwarded => "forwarded",
        }
    }
}

/// The kind of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferKind {
    /// Sent on without consultation (SIP REFER without Replaces, AMI BlindTransfer).
    Blind,
    /// After a consultation call (REFER with Replaces, AMI AttendedTransfer).
    Attended,
    /// An attended transfer completed while the target still rang: the
    /// transferer consulted nobody, the transferee hears the target ring.
    Blonde,
}

impl TransferKind {
    /// The lowercase name used in JSON and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Blind => "blind",
            TransferKind::Attended => "attended",
            TransferKind::Blonde => "blonde",
        }
    }
}

/// A phone's extension, or a number, as the phone system names a party: never empty.
///
/// Pops are routed by extension, so an empty one would match nobody and hide
/// a call; the type makes it impossible. Built with [`Extension::new`], which
/// trims and refuses an empty value; deserialising refuses it too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Extension(String);

/// The error of an empty [`Extension`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an extension cannot be empty")]
pub struct EmptyExtension;

impl Extension {
    /// `value` trimmed, or `None` when nothing is left.
    pub fn new(value: &str) -> Option<Self> {
        let value = value.trim();
        (!value.is_empty()).then(|| Extension(value.to_owned()))
    }

    /// The extension as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Extension {
    type Error = EmptyExtension;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value.trim().len() == value.len() && !value.is_empty() {
            Ok(Extension(value))
        } else {
            Extension::new(&value).ok_or(EmptyExtension)
        }
    }
}

impl From<Extension> for String {
    fn from(value: Extension) -> Self {
        value.0
    }
}

impl std::ops::Deref for Extension {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Extension {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Extension {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Extension {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<String> for Extension {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<Extension> for String {
    fn eq(&self, other: &Extension) -> bool {
        self == &other.0
    }
}

impl PartialEq<&str> for Extension {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why one phone stopped ringing while its call went on (or just before it
/// ended). The hub withdraws the pop with it; serialised as the words pages and
/// integrations already read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StopCause {
    /// Another phone answered (a ring group's losing legs, Q.850 26): not a miss.
    #[serde(rename = "answered elsewhere")]
    AnsweredElsewhere,
    /// The phone was busy.
    #[serde(rename = "busy")]
    Busy,
    /// The phone rang out without an answer.
    #[serde(rename = "no answer")]
    NoAnswer,
    /// The person at the phone declined the call.
    #[serde(rename = "rejected")]
    Rejected,
    /// The caller gave up, or the PBX stopped ringing that phone.
    #[serde(rename = "cancelled")]
    Cancelled,
    /// The phone could not be reached (unregistered, congestion, an error).
    #[serde(rename = "unavailable")]
    Unavailable,
    /// The phone's leg moved into another call (a transfer, a pickup).
    #[serde(rename = "moved to another call")]
    MovedToAnotherCall,
    /// The source lost sight of the phone (a reconnect found it gone).
    #[serde(rename = "stopped ringing while disconnected")]
    Disconnected,
}

impl StopCause {
    /// The words used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            StopCause::AnsweredElsewhere => "answered elsewhere",
            StopCause::Busy => "busy",
            StopCause::NoAnswer => "no answer",
            StopCause::Rejected => "rejected",
            StopCause::Cancelled => "cancelled",
            StopCause::Unavailable => "unavailable",
            StopCause::MovedToAnotherCall => "moved to another call",
            StopCause::Disconnected => "stopped ringing while disconnected",
        }
    }
}

impl fmt::Display for StopCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One transfer of a call: who sent whom where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Blind, attended or blonde.
    pub kind: TransferKind,
    /// Who transferred (the phone that pressed transfer), when known.
    pub by: Option<Extension>,
    /// Who was sent on (the party the transferer talked to), when known.
    pub transferee: Option<Extension>,
    /// The transfer target (extension or number), when known.
    pub to: Option<Extension>,
}

/// Something that happened to a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEvent {
    /// The call this event belongs to.
    pub call_id: CallId,
    /// Where it was observed.
    pub source: Source,
    /// When it happened (as the source's clock or the receive time says).
    pub at: Timestamp,
    /// What happened.
    #[serde(flatten)]
    pub kind: CallEventKind,
}

/// What happened to a call. Serialised with a `type` tag in snake_case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CallEventKind {
    /// The first event of every call.
    CallStarted {
        /// The source's own key of the call: SIP Call-ID, AMI Linkedid, CTI callId.
        source_key: String,
        /// Inbound, outbound or internal.
        direction: Direction,
        /// Who calls.
        caller: Party,
        /// Who is called (the dialled number or extension).
        callee: Party,
        /// Forwarding history (Diversion / History-Info targets, oldest first).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        diverted_from: Vec<String>,
        /// The queue (or line, hunt group) the phone system says the call
        /// came through, as it names it; only sources that tell (CTI webhooks).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queue: Option<String>,
    },
    /// A phone rings. One per ringing phone: a ring group rings several.
    Ringing {
        /// The agent extension that rings.
        extension: Extension,
    },
    /// A phone stopped ringing without the call ending (another phone answered,
    /// that phone declined or timed out) — its pop is withdrawn.
    RingingStopped {
        /// The extension that stopped ringing.
        extension: Extension,
        /// Why.
        cause: StopCause,
    },
    /// The call was answered.
    Answered {
        /// The extension that answered, when known (an outbound call is answered by the far end).
        extension: Option<Extension>,
    },
    /// Caller or callee identity changed (connected-line update, caller id set by the PBX).
    PartiesUpdated {
        /// Who calls now.
        caller: Party,
        /// Who is called now.
        callee: Party,
    },
    /// One party put the call on hold.
    Held,
    /// The call was taken off hold.
    Resumed,
    /// The call was transferred.
    Transferred(Transfer),
    /// The call is over. Always the last event of a call.
    Ended {
        /// How it ended.
        outcome: Outcome,
        /// Human-readable cause: SIP status and reason, Q.850 text, "signal lost", ...
        cause: String,
    },
}

impl CallEventKind {
    /// The `type` tag of this event as serialised.
    pub fn name(&self) -> &'static str {
        match self {
            CallEventKind::CallStarted { .. } => "call_started",
            CallEventKind::Ringing { .. } => "ringing",
            CallEventKind::RingingStopped { .. } => "ringing_stopped",
            CallEventKind::Answered { .. } => "answered",
            CallEventKind::PartiesUpdated { .. } => "parties_updated",
            CallEventKind::Held => "held",
            CallEventKind::Resumed => "resumed",
            CallEventKind::Transferred(_) => "transferred",
            CallEventKind::Ended { .. } => "ended",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_id_is_stable_per_source_and_key() {
        let a = CallId::from_source_key(Source::Hep, "abc@host");
        assert_eq!(a, CallId::from_source_key(Source::Hep, "abc@host"));
        assert_ne!(a, CallId::from_source_key(Source::Ami, "abc@host"));
        assert_ne!(a, CallId::from_source_key(Source::Hep, "abd@host"));
    }

    #[test]
    fn events_serialise_with_a_type_tag() {
        let event = CallEvent {
            call_id: CallId::from_source_key(Source::Hep, "x"),
            source: Source::Hep,
            at: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            kind: CallEventKind::Ringing {
                extension: Extension::new("201").unwrap(),
            },
        };
        let json = serde_json::to_value(&event).unwrap_or_default();
        assert_eq!(json["type"], "ringing");
        assert_eq!(json["extension"], "201");
        assert_eq!(json["source"], "hep");
        assert_eq!(json["at"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn an_extension_is_never_empty() {
        assert_eq!(Extension::new("  "), None);
        assert_eq!(Extension::new(" 201 ").unwrap(), "201");
        assert!(serde_json::from_str::<Extension>("\"\"").is_err());
        assert!(serde_json::from_value::<CallEventKind>(serde_json::json!({
            "type": "ringing", "extension": ""
        }))
        .is_err());
        let transfer = CallEventKind::Transferred(Transfer {
            kind: TransferKind::Blonde,
            by: Extension::new("201"),
            transferee: Extension::new("202"),
            to: Extension::new("203"),
        });
        let json = serde_json::to_value(&transfer).unwrap_or_default();
        assert_eq!(json["type"], "transferred");
        assert_eq!(json["kind"], "blonde");
        assert_eq!(json["by"], "201");
        assert_eq!(json["transferee"], "202");
        assert_eq!(json["to"], "203");
    }
}
