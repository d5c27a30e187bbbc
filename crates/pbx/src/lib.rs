//! Listens to the phone system and turns what it sees into one typed stream of
//! call events.
//!
//! Two families of sources: SIP mirrored as HEP v3 (Kamailio, OpenSIPS, Asterisk,
//! FreeSWITCH, heplify) and the Asterisk Manager Interface. Parsers and trackers
//! are sans-IO — bytes and a clock in, events out — so they are unit-tested and
//! fuzzed without sockets. The tokio drivers that own sockets live behind the
//! `driver` feature.

pub mod ami;
pub mod cti;
pub mod direction;
pub mod hep;
pub mod sip;
mod source;

pub use source::CallSource;

/// The call model, defined once in `fiche-model` (re-exported so that
/// `fiche_pbx::model::…` keeps naming it).
pub use fiche_model::call as model;
/// The live-call table, defined in `fiche-model`.
pub use fiche_model::live;

#[cfg(feature = "driver")]
pub mod driver;

pub use direction::ExtensionPatterns;
pub use live::{CallState, LiveCall, LiveCalls};
pub use model::{
    CallEvent, CallEventKind, CallId, Direction, EmptyExtension, Extension, Outcome, Party, Source,
    StopCause, Timestamp, Transfer, TransferKind,
};
