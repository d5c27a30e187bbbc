//! Drives one socket: writes its queued messages (the hub's heartbeat pings
//! among them) and reads the browser's messages.
//!
//! Generic over one socket that is both a sink of anything made from a
//! `String` (a websocket's text message) and a `Stream<Item = String>` of text
//! messages, so it is tested without HTTP; the server maps its websocket's
//! text frames in (and ends the stream on a close frame or error).
//!
//! A future written by hand rather than an `async fn` with `select!`: its
//! state is part of every idle socket's task, and here it is the socket, the
//! queue handle and a few words. No timer per socket: the hub's heartbeat pings
//! every socket from one task, and a write is timed only while it waits.

use crate::hub::{Connection, Hub, HubError};
use crate::protocol::control_text;
use crate::ClientMessage;
use futures_util::{Sink, Stream};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::time::{sleep, Sleep};
use tracing::debug;

/// Why [`pump`] returned; the server picks the websocket close code from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpEnd {
    /// The browser's stream ended (close frame, error, or gone).
    ClientClosed,
    /// The browser answered no heartbeat for a whole interval (the hub closed
    /// it), or one write took longer than an interval.
    TimedOut,
    /// The queue overflowed more than the hub tolerates; suggested close code 1013.
    TooSlow,
    /// Writing to the socket failed.
    SinkFailed,
    /// The hub dropped the connection (it was disconnected elsewhere).
    Removed,
}

/// Runs one socket until it ends; the socket is disconnected from the hub
/// when the returned future completes or is dropped.
///
/// Any message from the browser counts as a sign of life for the hub's
/// heartbeat ([`Hub::run_heartbeat`]); a `ping` is answered `pong`. When the
/// queue overflowed, the stale queued deltas are dropped and the hub queues a
/// fresh snapshot.
pub fn pump<'a, S, M>(hub: &'a Hub, conn: Connection, socket: &'a mut S) -> Pump<'a, S, M>
where
    S: Sink<M> + Stream<Item = String> + Unpin,
    M: From<String>,
{
    Pump {
        message: PhantomData,
        hub,
        conn,
        socket,
        outgoing: None,
        flushing: false,
        write_timer: None,
        last_seq: 0,
    }
}

/// The future of [`pump`].
#[must_use = "a pump does nothing unless awaited"]
pub struct Pump<'a, S, M> {
    /// The message type the socket takes, made from each outgoing text.
    message: PhantomData<fn(String) -> M>,
    hub: &'a Hub,
    conn: Connection,
    socket: &'a mut S,
    /// A message waiting for the socket to accept it.
    outgoing: Option<String>,
    /// A message was handed to the socket and is not flushed yet.
    flushing: bool,
    /// Deadline of a write that waits; made only then, since writes are rare
    /// next to the time a socket is idle.
    write_timer: Option<Pin<Box<Sleep>>>,
    /// Seq of the last message written, carried by `pong` and `error` replies.
    last_seq: u64,
}

impl<S, M> Drop for Pump<'_, S, M> {
    fn drop(&mut self) {
        self.hub.disconnect(self.conn.id);
    }
}

impl<S, M> Future for Pump<'_, S, M>
where
    S: Sink<M> + Stream<Item = String> + Unpin,
    M: From<String>,
{
    type Output = PumpEnd;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<PumpEnd> {
        let this = self.get_mut();
        loop {
            if this.outgoing.is_some() || this.flushing {
                match this.poll_write(cx) {
                    Poll::Ready(Ok(())) => this.write_timer = None,
                    Poll::Ready(Err(end)) => return Poll::Ready(end),
                    Poll::Pending => {
                        let every = this.hub.config().ping_every;
                        let timer = this
                            .write_timer
                            .get_or_insert_with(|| Box::pin(sleep(every)));
                        if timer.as_mut().poll(cx).is_ready() {
                            debug!(connection = %this.conn.id, "write timed out");
                            return Poll::Ready(PumpEnd::TimedOut);
                        }
                        return Poll::Pending;
                    }
                }
            }
            match this.conn.poll_recv(cx) {
                Poll::Ready(Some(frame)) => {
                    if this.conn.too_slow() {
                        return Poll::Ready(PumpEnd::TooSlow);
                    }
                    if this.conn.lagged() {
                        // Everything queued is stale: the hub replaces it with a snapshot.
                        debug!(connection = %this.conn.id, "socket lagged, resyncing");
                        if this.hub.resync(this.conn.id).is_err() {
                            return Poll::Ready(PumpEnd::Removed);
                        }
                        continue;
                    }
                    this.outgoing = Some(if frame.is_ping() {
                        // The seq of the last message written, whatever
                        // was queued after the beat.
                        control_text(this.last_seq, "ping", None)
                    } else {
                        this.last_seq = frame.seq();
                        frame.to_text()
                    });
                    continue;
                }
                Poll::Ready(None) => {
                    return Poll::Ready(if this.conn.too_slow() {
                        PumpEnd::TooSlow
                    } else if this.conn.silent() {
                        PumpEnd::TimedOut
                    } else {
                        PumpEnd::Removed
                    });
                }
                Poll::Pending => {}
            }
            let Some(incoming) = ready!(Pin::new(&mut *this.socket).poll_next(cx)) else {
                return Poll::Ready(PumpEnd::ClientClosed);
            };
            this.conn.heard();
            let reply = match this.hub.handle_client_message(this.conn.id, &incoming) {
                Ok(ClientMessage::Ping) => control_text(this.last_seq, "pong", None),
                Ok(ClientMessage::Unsupported) => {
                    control_text(this.last_seq, "error", Some("unsupported"))
                }
                Ok(_) => continue,
                Err(HubError::UnknownConnection(_)) => return Poll::Ready(PumpEnd::Removed),
                Err(error) => {
                    debug!(connection = %this.conn.id, %error, "bad client message");
                    control_text(this.last_seq, "error", Some("bad_message"))
                }
            };
            this.outgoing = Some(reply);
        }
    }
}

impl<S, M> Pump<'_, S, M>
where
    S: Sink<M> + Unpin,
    M: From<String>,
{
    /// Hands the outgoing message to the socket and flushes it.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PumpEnd>> {
        let mut socket = Pin::new(&mut *self.socket);
        if self.outgoing.is_some() {
            if ready!(socket.as_mut().poll_ready(cx)).is_err() {
                return Poll::Ready(Err(PumpEnd::SinkFailed));
            }
            if let Some(message) = self.outgoing.take() {
                if socket.as_mut().start_send(M::from(message)).is_err() {
                    return Poll::Ready(Err(PumpEnd::SinkFailed));
                }
                self.flushing = true;
            }
        }
        if ready!(socket.poll_flush(cx)).is_err() {
            return Poll::Ready(Err(PumpEnd::SinkFailed));
        }
        self.flushing = false;
        Poll::Ready(Ok(()))
    }
}
