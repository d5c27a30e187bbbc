//! Fiche's websocket hub: decides which browser sees what, and keeps each
//! browser's view consistent.
//!
//! A ringing call pops only at the agents whose extension rings; call updates
//! and ticket changes go to the agents they concern; supervisors get the whole
//! board. Each socket starts with a snapshot, then numbered deltas through a
//! bounded queue, so a slow browser is resynced instead of growing memory or
//! delaying the others. The hub knows nothing of HTTP or the store: the server
//! fills cards and figures, drives each socket with [`pump`], which is
//! generic over any `Sink`/`Stream` of text messages, and runs the hub's one
//! heartbeat ([`Hub::run_heartbeat`]). The message format is documented in
//! `docs/ws-protocol.md`.

mod hub;
pub mod protocol;
mod pump;
mod queue;
mod routing;
pub mod stats;

pub use hub::{
    Connection, ConnectionId, Hub, HubConfig, HubError, MAX_CALLS, MAX_CLIENT_MESSAGE,
    MAX_OVERFLOWS, PING_EVERY, QUEUE_CAPACITY,
};
pub use protocol::{
    AgentInfo, AgentState, AgentView, Card, CardLink, ClientMessage, CustomerCard, CustomerSummary,
    Figures, Frame, HistoryItem, Priority, Role, TicketKind, TicketStatus, TicketSummary, Viewer,
    PROTOCOL_VERSION,
};
pub use pump::{pump, Pump, PumpEnd};
pub use stats::{Histogram, HistogramSnapshot, HubStats};
