//! Passive SIP call tracking: captured SIP messages in, [`CallEvent`]s out.
//!
//! Sans-IO: [`SipTracker::handle`] takes one captured message (a HEP payload)
//! and the current time, [`SipTracker::poll_event`] yields the resulting
//! events, [`SipTracker::next_timeout`] / [`SipTracker::handle_timeout`] let
//! the driver reap calls whose signalling went silent. No sockets, no clock.
//!
//! Messages are parsed with `rsip`; `message` repairs what rsip 0.4 refuses
//! (bare LF, folded headers) and maps the compact header forms it does not know.
//! The call model and its traps are described in
//! `shared/reference/hep-sip.md` Part C; the decisions taken here:
//!
//! - One call per Call-ID, started by an INVITE without To-tag. Every INVITE
//!   without To-tag of that Call-ID is a *leg*, named by its top Via branch.
//!   A leg whose branch appears lower in another leg's Via stack was proxied
//!   further (the caller→Kamailio leg); only the deepest legs (the phones) ring
//!   and answer, with the Request-URI user as the extension.
//! - The call ends when the caller's leg (a leg no other leg proxied) gets a
//!   final response, on CANCEL from the caller, or on BYE in the answered dialog.
//!   401/407/3xx on the caller's leg wait `challenge_grace` for the re-sent INVITE.
//! - When a phone's Contact user is not its extension, the extension comes from
//!   the phone's REGISTER (Contact `host:port` → To user).
//! - Duplicates (retransmissions, the received and forwarded copies a proxy
//!   mirrors) are dropped by a short-lived set of payload hashes, and every
//!   transition is idempotent anyway.
//! - Memory is bounded: at most `max_calls` calls (the oldest unanswered one is
//!   ended and dropped first), `max_legs_per_call` legs, `max_dedup_entries`
//!   remembered payloads.

mod identity;
mod message;
mod sdp;
mod tracker;

pub use tracker::SipTracker;

use crate::direction::ExtensionPatterns;
use std::time::Duration;

/// Settings of a [`SipTracker`]. Build with `..Default::default()` and override.
#[derive(Debug, Clone)]
pub struct SipTrackerConfig {
    /// Which numbers are agent extensions (decides the call direction).
    pub agents: ExtensionPatterns,
    /// An answered call with no SIP message for this long ends as failed, cause
    /// "signal lost" (its BYE was lost). Default 4 hours.
    pub silence_timeout: Duration,
    /// A call still in setup or ringing with no SIP message for this long is
    /// reaped the same way. Default 5 minutes.
    pub ringing_timeout: Duration,
    /// After 401/407 or a 3xx on the caller's leg, how long to wait for the
    /// re-sent INVITE before ending the call with that response. Default 32 s
    /// (SIP Timer B).
    pub challenge_grace: Duration,
    /// When every phone leg failed but the final response to the caller was not
    /// seen (lost mirror packet), how long to wait for it or for a new branch.
    /// Default 4 s.
    pub branch_failure_grace: Duration,
    /// How long an ended call is remembered, so late copies and retransmissions
    /// do not start it again. Default 64 s.
    pub linger: Duration,
    /// How long a payload is remembered to drop its duplicates. Default 32 s.
    pub dedup_window: Duration,
    /// Most calls tracked at once (live and lingering). Default 100 000.
    pub max_calls: usize,
    /// Most INVITE legs (forks, retries) tracked per call. Default 32.
    pub max_legs_per_call: usize,
    /// Most payload hashes remembered for duplicate detection. Default 262 144.
    pub max_dedup_entries: usize,
}

impl Default for SipTrackerConfig {
    fn default() -> Self {
        Self {
            agents: ExtensionPatterns::default(),
            silence_timeout: Duration::from_secs(4 * 3600),
            ringing_timeout: Duration::from_secs(5 * 60),
            challenge_grace: Duration::from_secs(32),
            branch_failure_grace: Duration::from_secs(4),
            linger: Duration::from_secs(64),
            dedup_window: Duration::from_secs(32),
            max_calls: 100_000,
            max_legs_per_call: 32,
            max_dedup_entries: 262_144,
        }
    }
}

/// Why a captured message could not be used. Messages the tracker does not
/// need (REGISTER, OPTIONS, ...) are ignored without error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SipError {
    /// The payload is larger than any SIP message carried by HEP.
    #[error("SIP message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a SIP message; `what` names the part that failed.
    #[error("cannot parse the SIP {what}: {detail}")]
    Parse {
        /// "start line", "status line" or "message" (headers, URI).
        what: &'static str,
        /// Escaped, shortened description (safe to log).
        detail: String,
    },
    /// A header every SIP message must carry is missing.
    #[error("SIP message without a {0} header")]
    MissingHeader(&'static str),
    /// A header is present but unusable.
    #[error("invalid SIP {header} header: {reason}")]
    InvalidHeader {
        /// The header name.
        header: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests;
