//! One socket's bounded outgoing queue.
//!
//! A tokio bounded `mpsc` allocates its first 32-slot block and two
//! cache-padded halves up front: about 1 KiB per socket before any message,
//! which is most of the budget for 10,000 idle agents. This queue is one small
//! allocation: a `VecDeque` that allocates only when messages wait and is
//! released as soon as they are written, the waker of its one reader (the
//! socket's pump, polled by hand rather than through a `Notify` whose waiting
//! future would sit in every idle socket's task), the socket's lag status, and
//! its heartbeat count. Pushing never waits: a full queue is reported, not
//! awaited.

use crate::protocol::Frame;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// Where a socket stands with respect to its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Deltas flow.
    Ok,
    /// The queue overflowed: what it holds is stale; the reader resyncs.
    Lagged,
    /// Closed by the hub after repeated overflows.
    TooSlow,
    /// Closed by the hub's heartbeat: the browser did not answer its pings.
    Silent,
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
    /// Heartbeats since the browser was last heard from.
    silent_beats: u8,
    /// A heartbeat ping is due after the queued frames. A flag rather than a
    /// queued frame: a beat reaches every socket at once, and ten thousand
    /// queue buffers allocated together would stay in the process's memory
    /// after they are freed.
    ping: bool,
    /// The seq the ping carries: that of the last message queued at the beat.
    ping_seq: u64,
    /// The pump waiting for a frame.
    reader: Option<Waker>,
}

#[derive(Debug)]
pub(crate) struct Queue {
    slots: Mutex<Slots>,
}

impl Queue {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            slots: Mutex::new(Slots {
                frames: VecDeque::new(),
                status: Status::Ok,
                closed: false,
                silent_beats: 0,
                ping: false,
                ping_seq: 0,
                reader: None,
            }),
        })
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        // Slots stay consistent across a panic: every update is one field write.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn push(&self, frame: Frame, capacity: usize) -> Result<(), PushError> {
        let reader = {
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
            slots.reader.take()
        };
        if let Some(reader) = reader {
            reader.wake();
        }
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
        let reader = {
            let mut slots = self.slots();
            slots.closed = true;
            slots.reader.take()
        };
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    /// One heartbeat: a socket that stayed silent since the previous one is
    /// closed (`Silent`, returns false); otherwise a ping carrying `seq` is
    /// due after the queued frames (it takes no slot and allocates nothing),
    /// and the beat is counted until the browser is heard from.
    pub(crate) fn beat(&self, seq: u64) -> bool {
        let (alive, reader) = {
            let mut slots = self.slots();
            slots.silent_beats = slots.silent_beats.saturating_add(1);
            let alive = slots.silent_beats < 2;
            if !alive {
                slots.status = Status::Silent;
                slots.closed = true;
            } else if !slots.closed {
                slots.ping = true;
                slots.ping_seq = seq;
            }
            (alive, slots.reader.take())
        };
        if let Some(reader) = reader {
            reader.wake();
        }
        alive
    }

    /// The browser said something: it is alive.
    pub(crate) fn heard(&self) {
        self.slots().silent_beats = 0;
    }

    pub(crate) fn try_pop(&self) -> Option<Frame> {
        Self::pop_from(&mut self.slots())
    }

    fn pop_from(slots: &mut Slots) -> Option<Frame> {
        let Some(frame) = slots.frames.pop_front() else {
            return std::mem::take(&mut slots.ping).then(|| Frame::ping(slots.ping_seq));
        };
        // An idle socket holds no buffer: an allocation per message costs less
        // than 64 bytes kept by each of thousands of sockets.
        if slots.frames.is_empty() && slots.frames.capacity() > 0 {
            slots.frames = VecDeque::new();
        }
        Some(frame)
    }

    pub(crate) fn len(&self) -> usize {
        self.slots().frames.len()
    }

    /// The next frame; `None` once the queue is closed and empty; otherwise
    /// the reader is woken at the next push or close.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<Frame>> {
        let mut slots = self.slots();
        if let Some(frame) = Self::pop_from(&mut slots) {
            return Poll::Ready(Some(frame));
        }
        if slots.closed {
            return Poll::Ready(None);
        }
        match &slots.reader {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => slots.reader = Some(cx.waker().clone()),
        }
        Poll::Pending
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

    #[test]
    fn a_beat_pings_until_one_goes_unanswered_then_closes() {
        let queue = Queue::new();
        assert!(queue.beat(7), "first beat: pinged");
        let ping = queue.try_pop().expect("the ping");
        assert!(ping.is_ping());
        assert_eq!(ping.seq(), 7);
        assert!(queue.try_pop().is_none(), "one ping per beat");
        queue.heard();
        assert!(queue.beat(7), "answered: pinged again");
        assert!(!queue.beat(7), "unanswered: closed");
        assert_eq!(queue.status(), Status::Silent);
        assert_eq!(queue.push(frame(8), 32), Err(PushError::Closed));
    }

    #[test]
    fn a_full_queue_gets_its_ping_after_what_it_holds() {
        let queue = Queue::new();
        queue.push(frame(1), 1).unwrap();
        assert!(queue.beat(1));
        assert_eq!(queue.len(), 1, "the ping takes no slot");
        assert_eq!(queue.push(frame(2), 1), Err(PushError::Full));
        assert!(!queue.try_pop().expect("the message").is_ping());
        assert!(queue.try_pop().expect("then the ping").is_ping());
        assert!(!queue.beat(1), "the ping was not answered");
    }
}
