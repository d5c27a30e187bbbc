//! One socket's bounded outgoing queue.
//!
//! A tokio bounded `mpsc` allocates its first 32-slot block and two
//! cache-padded halves up front: about 1 KiB per socket before any message,
//! which is most of the budget for 10,000 idle agents. This queue holds a
//! `VecDeque` that allocates only when messages wait and is released as soon
//! as they are written, a `Notify` for the one reader, and the socket's lag status, in one
//! small allocation. Pushing never waits: a full queue is reported, not awaited.

use crate::protocol::Frame;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;

/// Where a socket stands with respect to its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Deltas flow.
    Ok,
    /// The queue overflowed: what it holds is stale; the reader resyncs.
    Lagged,
    /// Closed by the hub after repeated overflows.
    TooSlow,
}

/// Why a push failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The queue holds `capacity` messages.
    Full,
    /// The reader is gone, or the hub closed the queue.
    Closed,
    /// The socket is lagged: deltas are skipped until it resyncs.
    Lagged,
}

#[derive(Debug)]
struct Slots {
    frames: VecDeque<Frame>,
    status: Status,
    closed: bool,
}

#[derive(Debug)]
pub(crate) struct Queue {
    slots: Mutex<Slots>,
    ready: Notify,
}

impl Queue {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            slots: Mutex::new(Slots {
                frames: VecDeque::new(),
                status: Status::Ok,
                closed: false,
            }),
            ready: Notify::new(),
        })
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        // Slots stay consistent across a panic: every update is one field write.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn push(&self, frame: Frame, capacity: usize) -> Result<(), PushError> {
        {
            let mut slots = self.slots();
            if slots.closed {
                return Err(PushError::Closed);
            }
            if slots.status != Status::Ok {
                return Err(PushError::Lagged);
            }
            if slots.frames.len() >= capacity {
                return Err(PushError::Full);
            }
            slots.frames.push_back(frame);
        }
        self.ready.notify_one();
        Ok(())
    }

    pub(crate) fn status(&self) -> Status {
        self.slots().status
    }

    pub(crate) fn set_status(&self, status: Status) {
        self.slots().status = status;
    }

    /// Drops every queued frame (stale once a snapshot replaces them) and
    /// clears `Lagged` (not `TooSlow`).
    pub(crate) fn reset(&self) {
        let mut slots = self.slots();
        slots.frames = VecDeque::new();
        if slots.status == Status::Lagged {
            slots.status = Status::Ok;
        }
    }

    /// Ends the queue: the reader gets what is queued, then `None`.
    pub(crate) fn close(&self) {
        self.slots().closed = true;
        self.ready.notify_one();
    }

    pub(crate) fn try_pop(&self) -> Option<Frame> {
        let mut slots = self.slots();
        let frame = slots.frames.pop_front();
        // An idle socket holds no buffer: an allocation per message costs less
        // than 64 bytes kept by each of thousands of sockets.
        if slots.frames.is_empty() && slots.frames.capacity() > 0 {
            slots.frames = VecDeque::new();
        }
        frame
    }

    pub(crate) fn len(&self) -> usize {
        self.slots().frames.len()
    }

    fn is_closed(&self) -> bool {
        self.slots().closed
    }

    /// The next frame; `None` once the queue is closed and empty.
    pub(crate) async fn pop(&self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.try_pop() {
                return Some(frame);
            }
            if self.is_closed() {
                return None;
            }
            // One reader: a push between the check and here leaves a permit.
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ServerMessage;

    fn frame(seq: u64) -> Frame {
        Frame::new(seq, ServerMessage::Callbacks { open: 1 }.to_body().unwrap())
    }

    #[test]
    fn bounded_and_releases_its_buffer_after_a_burst() {
        let queue = Queue::new();
        for seq in 0..32 {
            queue.push(frame(seq), 32).unwrap();
        }
        assert_eq!(queue.push(frame(99), 32), Err(PushError::Full));
        let mut seen = 0;
        while let Some(f) = queue.try_pop() {
            assert_eq!(f.seq(), seen);
            seen += 1;
        }
        assert_eq!(seen, 32);
        assert_eq!(queue.slots().frames.capacity(), 0);
        queue.close();
        assert_eq!(queue.push(frame(0), 32), Err(PushError::Closed));
    }
}
