//! Asterisk Manager Interface: framing, typed events, actions and the call tracker.
//!
//! All sans-IO: [`AmiFramer`] turns bytes into [`AmiMessage`]s,
//! [`AmiEvent::from_message`] types them, [`AmiTracker`] turns them into the
//! same [`crate::CallEvent`] stream as the SIP tracker, and [`Action`] /
//! [`PendingActions`] encode actions and match their replies. The tokio driver
//! that owns the socket is `crate::driver::ami` (feature `driver`).

mod action;
mod event;
mod frame;
mod tracker;

pub use action::{md5_login_key, Action, ActionOutcome, Originate, PendingActions};
pub use event::{AgentFields, AmiEvent, ChannelSnapshot, HangupCause};
pub use frame::{AmiError, AmiFramer, AmiMessage, MAX_MESSAGE_LEN};
pub use tracker::{
    AmiTracker, ChannelPatterns, TrackerConfig, TrackerConfigError, DEFAULT_CHANNEL_PATTERNS,
    ENDED_WHILE_DISCONNECTED,
};

#[cfg(test)]
mod tests;
