//! The contract every call source keeps with its driver.
//!
//! A source is a sans-IO state machine: its driver feeds it what arrives
//! (`handle(now, …)`, whose input is each source's own: SIP bytes, typed AMI
//! events, CTI requests), takes the call events it queued with
//! [`CallSource::poll_event`], and wakes it at [`CallSource::next_timeout`]
//! with [`CallSource::handle_timeout`], so that a source whose peer goes
//! silent still ends its calls on time. One task owns each source and selects
//! on that timer.

use crate::model::{CallEvent, Timestamp};

/// What a driver needs from a call source besides its own `handle`.
pub trait CallSource {
    /// The next call event, oldest first.
    fn poll_event(&mut self) -> Option<CallEvent>;
    /// The earliest instant at which [`CallSource::handle_timeout`] has work.
    fn next_timeout(&self) -> Option<Timestamp>;
    /// Does what is due by `now`: expiries, grace periods; queues their events.
    fn handle_timeout(&mut self, now: Timestamp);
}

impl CallSource for crate::sip::SipTracker {
    fn poll_event(&mut self) -> Option<CallEvent> {
        crate::sip::SipTracker::poll_event(self)
    }

    fn next_timeout(&self) -> Option<Timestamp> {
        crate::sip::SipTracker::next_timeout(self)
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        crate::sip::SipTracker::handle_timeout(self, now);
    }
}

impl CallSource for crate::ami::AmiTracker {
    fn poll_event(&mut self) -> Option<CallEvent> {
        crate::ami::AmiTracker::poll_event(self)
    }

    fn next_timeout(&self) -> Option<Timestamp> {
        crate::ami::AmiTracker::next_timeout(self)
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        crate::ami::AmiTracker::handle_timeout(self, now);
    }
}
