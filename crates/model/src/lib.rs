//! Fiche's vocabulary, defined once so that no two crates can drift apart.
//!
//! - [`call`]: what every call source produces ([`CallEvent`]), the parties
//!   of a call, [`Extension`] (never empty) and [`Transfer`];
//! - [`live`]: the live-call table those events build;
//! - [`person`]: when two customer records are the same person ([`Identity`]),
//!   one rule for the import and the store;
//! - [`vocab`]: the closed sets the store, the hub and the HTTP API share —
//!   [`Role`], [`TicketKind`], [`TicketStatus`], [`Priority`] — spelt as the
//!   database spells them.
//!
//! Wire shapes stay per boundary (websocket messages in the hub, rows in the
//! store, JSON in the server); these are the words they are made of. No IO,
//! no async: every crate may depend on this one.

pub mod call;
pub mod live;
pub mod person;
pub mod vocab;

pub use call::{
    CallEvent, CallEventKind, CallId, Direction, EmptyExtension, Extension, Outcome, Party, Source,
    StopCause, Timestamp, Transfer, TransferKind,
};
pub use live::{CallState, LiveCall, LiveCalls};
pub use person::Identity;
pub use vocab::{Priority, Role, TicketKind, TicketStatus, UnknownValue};
