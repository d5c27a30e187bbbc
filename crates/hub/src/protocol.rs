//! The websocket protocol's types: what the server sends a browser and what a
//! browser may send back. Documented with examples in `docs/ws-protocol.md`.
//!
//! The customer, ticket and figure types are plain serde structs owned here,
//! because the hub owns the protocol; the server converts its store types into
//! them. Every server message is serialised once per message, and each socket
//! adds its own envelope (`v`, `seq`) when it writes the frame, so a card sent
//! to three agents and ten supervisors costs one `serde_json` pass.

use chrono::NaiveDate;
use fiche_model::{CallId, Direction, LiveCall, Outcome, StopCause, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

/// Version of the message format, the `v` of every server message.
pub const PROTOCOL_VERSION: u32 = 1;

pub use fiche_model::Role;

/// The user behind one socket, as the server authenticated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewer {
    /// The user's id in the store.
    pub user_id: i64,
    /// What the user may see.
    pub role: Role,
    /// The phone extensions the user owns; a call ringing there pops on their screen.
    pub extensions: Vec<String>,
}

/// One agent of the directory the server pushes with `Hub::set_agents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// The user's id in the store.
    pub user_id: i64,
    /// Display name shown to colleagues ("Claire M.").
    pub name: String,
    /// The extensions the agent owns.
    pub extensions: Vec<String>,
}

/// What an agent is doing, derived from the live calls and socket presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// No call, at least one browser connected.
    Available,
    /// A call rings at one of the agent's extensions.
    Ringing,
    /// Talking (or dialling out).
    OnCall,
    /// Every connected call is on hold.
    OnHold,
    /// No call and no browser connected.
    Offline,
}

/// One agent as the supervisor board shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    /// The user's id in the store.
    pub user_id: i64,
    /// Display name.
    pub name: String,
    /// The extensions the agent owns.
    pub extensions: Vec<String>,
    /// What the agent is doing.
    pub state: AgentState,
    /// The call that sets the state (ringing, talking or held), if any.
    pub call_id: Option<CallId>,
    /// Browsers the agent has open.
    pub connections: u32,
}

/// Customer side of a pop card, built by the server from the store and matcher.
///
/// Every string here comes from outside (callers, imported files, notes):
/// pages render it as text, never as HTML.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Card {
    /// The caller's number formatted for people ("+33 6 12 34 56 78"), or
    /// the withheld/unknown label the server chose.
    pub caller_display: String,
    /// The matched customer, when exactly one (or a best one) matched.
    pub customer: Option<CustomerCard>,
    /// Other customers sharing the number.
    pub other_matches: Vec<CustomerSummary>,
    /// No customer has this number: the page offers to create one or attach the number.
    pub unknown: bool,
}

/// The customer file as the pop card shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CustomerCard {
    /// The customer's id in the store.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Company, if any.
    pub company: Option<String>,
    /// Free tags ("VIP", "contentieux").
    pub tags: Vec<String>,
    /// The customer's standing notes.
    pub notes: Option<String>,
    /// Open tickets of the customer, most urgent first.
    pub open_tickets: Vec<TicketSummary>,
    /// The last calls and tickets (the server sends at most 5), newest first.
    pub recent: Vec<HistoryItem>,
    /// Links to the customer and its open tickets in another system (Odoo's
    /// "Ouvrir dans Odoo"); sent once the card is completed from the store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<CardLink>,
}

/// A link to the customer or one of its tickets in another system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardLink {
    /// What it opens: `odoo_partner` or `odoo_ticket`.
    pub kind: String,
    /// Where: built by the server from its configuration and record ids only.
    pub url: String,
    /// For a ticket link, the Fiche ticket it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<i64>,
}

/// A customer in a list (other matches, search results).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CustomerSummary {
    /// The customer's id in the store.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Company, if any.
    pub company: Option<String>,
}

/// One line of a customer's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HistoryItem {
    /// A past call.
    Call {
        /// The call.
        call_id: CallId,
        /// When it started.
        at: Timestamp,
        /// Which way it went.
        direction: Direction,
        /// How it ended.
        outcome: Option<Outcome>,
        /// Talk time in seconds, for answered calls.
        duration_secs: Option<u32>,
        /// The agent's extension.
        agent_extension: Option<String>,
    },
    /// A ticket.
    Ticket {
        /// The ticket.
        ticket_id: i64,
        /// When it was last updated.
        at: Timestamp,
        /// Its subject.
        subject: String,
        /// Its status.
        status: TicketStatus,
    },
}

// Ticket words are the store's, defined once: the hub offers no status or
// kind the database would refuse.
pub use fiche_model::{Priority, TicketKind, TicketStatus};

/// A ticket as lists, cards and change messages carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketSummary {
    /// The ticket's id in the store.
    pub id: i64,
    /// What created it.
    pub kind: TicketKind,
    /// Where it stands.
    pub status: TicketStatus,
    /// Priority.
    pub priority: Priority,
    /// One-line subject.
    pub subject: String,
    /// The customer, when known.
    pub customer_id: Option<i64>,
    /// The customer's name, when known.
    pub customer_name: Option<String>,
    /// The assigned user; `None` for a ticket assigned to the group.
    pub assignee_user_id: Option<i64>,
    /// The call that created it or that it was last linked to.
    pub call_id: Option<CallId>,
    /// When the callback is due.
    pub due_at: Option<Timestamp>,
    /// Missed calls merged into this callback ticket.
    pub attempts: u32,
    /// Last change.
    pub updated_at: Timestamp,
    /// This change created the ticket: the first message about it (a later
    /// message about the same ticket says `false`).
    #[serde(default)]
    pub created: bool,
}

/// Today's figures, computed by the server and pushed as a whole; the hub only
/// keeps the latest and hands it to supervisors.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Figures {
    /// The day these figures cover (local day of the team).
    pub day: Option<NaiveDate>,
    /// Inbound calls.
    pub calls_in: u32,
    /// Outbound calls.
    pub calls_out: u32,
    /// Answered inbound calls divided by inbound calls, 0.0 to 1.0 (`None` before the first call).
    pub answered_rate: Option<f64>,
    /// Missed inbound calls.
    pub missed: u32,
    /// Missed calls whose callback ticket is still open.
    pub missed_not_called_back: u32,
    /// Open callbacks past their due time.
    pub overdue_callbacks: u32,
    /// Due time of the oldest overdue callback.
    pub oldest_overdue_due_at: Option<Timestamp>,
    /// Mean seconds between the start of an inbound call and its answer.
    pub average_wait_secs: Option<f64>,
    /// Mean talk time of answered calls, in seconds.
    pub average_duration_secs: Option<f64>,
    /// Open tickets (all kinds).
    pub open_tickets: u32,
    /// Calls started in each hour of the day, index 0 = 00:00–00:59.
    pub calls_per_hour: [u32; 24],
}

/// A call and its card, as snapshots list them.
#[derive(Debug, Clone, Serialize)]
pub struct CallCard<'a> {
    /// The call.
    pub call: &'a LiveCall,
    /// The customer side, when the server has sent one.
    pub card: Option<&'a Card>,
}

/// Body of a `snapshot` message.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot<'a> {
    /// What this socket may see.
    pub role: Role,
    /// The extensions this socket's user owns.
    pub extensions: &'a [String],
    /// Agents: their ringing and active calls. Supervisors: every call in the
    /// live table, ended ones included until they are pruned.
    pub calls: Vec<CallCard<'a>>,
    /// The user's open callbacks.
    pub open_callbacks: u32,
    /// Supervisors: every agent and their state. Absent for agents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<&'a AgentView>>,
    /// Supervisors: today's figures (`null` until the server has pushed them).
    /// Absent for agents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub figures: Option<Option<&'a Figures>>,
}

/// Every message the server sends, without its envelope (`v`, `seq`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    /// The full state this socket may see; replaces whatever the page had.
    Snapshot(Snapshot<'a>),
    /// A call rings at one of this user's extensions: show the card.
    Pop {
        /// The extension that rings.
        extension: &'a str,
        /// The call.
        call: &'a LiveCall,
        /// The customer side, when the server has built it.
        card: Option<&'a Card>,
    },
    /// Something happened to a call this socket follows.
    Call {
        /// The call event's `type` (`answered`, `held`, `ended`, ...).
        event: &'a str,
        /// When it happened.
        at: Timestamp,
        /// The call after the event.
        call: &'a LiveCall,
    },
    /// A new or corrected card for a call (customer created or attached).
    Card {
        /// The call.
        call_id: CallId,
        /// The new card.
        card: &'a Card,
    },
    /// The call stopped ringing at this user's extension but goes on elsewhere.
    Withdrawn {
        /// The call.
        call_id: CallId,
        /// This user's extension that stopped ringing.
        extension: &'a str,
        /// Why ("answered elsewhere", "busy", ...).
        cause: StopCause,
        /// The extension that took the call, once known.
        answered_by: Option<&'a str>,
        /// The name of the agent who took it, when the directory knows them.
        answered_by_name: Option<&'a str>,
    },
    /// A ticket this socket follows was created or changed.
    Ticket {
        /// The ticket after the change.
        ticket: &'a TicketSummary,
    },
    /// The user's count of open callbacks changed.
    Callbacks {
        /// Open callbacks.
        open: u32,
    },
    /// One agent's state changed (supervisors).
    AgentState {
        /// The agent after the change.
        agent: &'a AgentView,
    },
    /// The agent directory was replaced (supervisors).
    Agents {
        /// Every agent.
        agents: Vec<&'a AgentView>,
    },
    /// Today's figures changed (supervisors).
    Figures {
        /// The new figures.
        figures: &'a Figures,
    },
}

impl ServerMessage<'_> {
    /// Serialises the message body once, to be shared by every recipient.
    pub fn to_body(&self) -> Result<Body, serde_json::Error> {
        serde_json::to_string(self).map(|json| Body(Arc::new(json)))
    }
}

/// A serialised message body (`{"type":...}`), shared by every socket that receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body(Arc<String>);

impl Body {
    /// The JSON object, without envelope.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One queued message for one socket: a shared body and this socket's sequence number.
///
/// Kept two words wide: the queue's first block holds 32 of these for every
/// idle socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    seq: u64,
    body: Body,
}

impl Frame {
    pub(crate) fn new(seq: u64, body: Body) -> Self {
        Self { seq, body }
    }

    /// A heartbeat ping carrying `seq` (it does not advance it); allocates nothing.
    pub(crate) fn ping(seq: u64) -> Self {
        Self::new(seq, PING.clone())
    }

    /// Whether this is a heartbeat ping rather than a message.
    pub fn is_ping(&self) -> bool {
        Arc::ptr_eq(&self.body.0, &PING.0)
    }

    /// This socket's sequence number of the message.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The message body without envelope.
    pub fn body(&self) -> &str {
        self.body.as_str()
    }

    /// The text frame to write: `{"v":1,"seq":N,` followed by the body's fields.
    pub fn to_text(&self) -> String {
        envelope(self.seq, self.body.as_str())
    }
}

/// Wraps a serialised object body (`{"type":...}`) in the `v`/`seq` envelope.
fn envelope(seq: u64, body: &str) -> String {
    let mut text = String::with_capacity(body.len() + 32);
    let _ = write!(text, "{{\"v\":{PROTOCOL_VERSION},\"seq\":{seq},");
    // Bodies are serde-serialised tagged enums: always an object with a `type` field.
    text.push_str(body.strip_prefix('{').unwrap_or(body));
    text
}

/// The body of every heartbeat ping, made once.
static PING: LazyLock<Body> = LazyLock::new(|| Body(Arc::new(r#"{"type":"ping"}"#.to_owned())));

/// A heartbeat or error frame written by the socket pump. These carry the seq
/// of the last message sent and do not advance it. `kind` and `code` are
/// constants of this crate, never outside text.
pub(crate) fn control_text(seq: u64, kind: &str, code: Option<&str>) -> String {
    match code {
        Some(code) => envelope(seq, &format!("{{\"type\":\"{kind}\",\"code\":\"{code}\"}}")),
        None => envelope(seq, &format!("{{\"type\":\"{kind}\"}}")),
    }
}

/// What a browser may send.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// The page saw a gap in `seq` (or lost its state): send a fresh snapshot.
    Resync,
    /// Answer to the server's `ping`.
    Pong,
    /// The page checks the server is alive; the server answers `pong`.
    Ping,
    /// Any other type: reserved for later actions (notes, click-to-call, ...).
    #[serde(other)]
    Unsupported,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_version_and_seq_before_the_body() {
        let body = ServerMessage::Callbacks { open: 3 }.to_body().unwrap();
        let frame = Frame::new(7, body);
        assert_eq!(
            frame.to_text(),
            r#"{"v":1,"seq":7,"type":"callbacks","open":3}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&frame.to_text()).unwrap();
        assert_eq!(parsed["open"], 3);
        assert_eq!(
            control_text(7, "ping", None),
            r#"{"v":1,"seq":7,"type":"ping"}"#
        );
        assert_eq!(
            control_text(7, "error", Some("bad_message")),
            r#"{"v":1,"seq":7,"type":"error","code":"bad_message"}"#
        );
    }

    #[test]
    fn unknown_client_types_are_reserved_not_errors() {
        let msg: ClientMessage = serde_json::from_str(r#"{"type":"note","text":"x"}"#).unwrap();
        assert_eq!(msg, ClientMessage::Unsupported);
        let msg: ClientMessage = serde_json::from_str(r#"{"type":"resync"}"#).unwrap();
        assert_eq!(msg, ClientMessage::Resync);
        assert!(serde_json::from_str::<ClientMessage>(r#"{"kind":"resync"}"#).is_err());
    }

    #[test]
    fn frame_is_two_words() {
        assert_eq!(std::mem::size_of::<Frame>(), 16);
    }
}
