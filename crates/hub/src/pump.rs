//! Drives one socket: writes its queued messages, reads the browser's
//! messages, and keeps the heartbeat.
//!
//! Generic over a sink of anything made from a `String` (a websocket's text
//! message) and a `Stream<Item = String>` of text messages, so it is tested
//! without HTTP; the server maps its websocket's text frames in (and ends the
//! stream on a close frame or error).

use crate::hub::{Connection, Hub, HubError};
use crate::protocol::control_text;
use crate::ClientMessage;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::{interval_at, timeout, Instant, MissedTickBehavior};
use tracing::debug;

/// Why [`pump`] returned; the server picks the websocket close code from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpEnd {
    /// The browser's stream ended (close frame, error, or gone).
    ClientClosed,
    /// Nothing heard from the browser for two heartbeat intervals, or one
    /// write took longer than an interval.
    TimedOut,
    /// The queue overflowed more than the hub tolerates; suggested close code 1013.
    TooSlow,
    /// Writing to the socket failed.
    SinkFailed,
    /// The hub dropped the connection (it was disconnected elsewhere).
    Removed,
}

/// Runs one socket until it ends, then disconnects it from the hub.
///
/// Every `ping_every` it writes `{"v":1,"seq":N,"type":"ping"}` (N = seq of
/// the last message written; heartbeats do not advance it), and any message
/// from the browser counts as a sign of life. When the queue overflowed, the
/// stale queued deltas are dropped and the hub queues a fresh snapshot.
pub async fn pump<Si, M, St>(
    hub: &Hub,
    mut conn: Connection,
    sink: &mut Si,
    stream: &mut St,
) -> PumpEnd
where
    Si: Sink<M> + Unpin,
    M: From<String>,
    St: Stream<Item = String> + Unpin,
{
    let end = run(hub, &mut conn, sink, stream).await;
    hub.disconnect(conn.id);
    end
}

async fn run<Si, M, St>(hub: &Hub, conn: &mut Connection, sink: &mut Si, stream: &mut St) -> PumpEnd
where
    Si: Sink<M> + Unpin,
    M: From<String>,
    St: Stream<Item = String> + Unpin,
{
    let every = hub.config().ping_every;
    let mut ticks = interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut last_seq = 0u64;
    loop {
        let text = tokio::select! {
            frame = conn.recv() => {
                let Some(frame) = frame else {
                    return if conn.too_slow() { PumpEnd::TooSlow } else { PumpEnd::Removed };
                };
                if conn.too_slow() {
                    return PumpEnd::TooSlow;
                }
                if conn.lagged() {
                    // Everything queued is stale: the hub replaces it with a snapshot.
                    debug!(connection = %conn.id, "socket lagged, resyncing");
                    if hub.resync(conn.id).is_err() {
                        return PumpEnd::Removed;
                    }
                    continue;
                }
                last_seq = frame.seq();
                frame.to_text()
            }
            incoming = stream.next() => {
                let Some(incoming) = incoming else {
                    return PumpEnd::ClientClosed;
                };
                last_heard = Instant::now();
                match hub.handle_client_message(conn.id, &incoming) {
                    Ok(ClientMessage::Ping) => control_text(last_seq, "pong", None),
                    Ok(ClientMessage::Unsupported) => {
                        control_text(last_seq, "error", Some("unsupported"))
                    }
                    Ok(_) => continue,
                    Err(HubError::UnknownConnection(_)) => return PumpEnd::Removed,
                    Err(error) => {
                        debug!(connection = %conn.id, %error, "bad client message");
                        control_text(last_seq, "error", Some("bad_message"))
                    }
                }
            }
            now = ticks.tick() => {
                if now.duration_since(last_heard) >= every * 2 {
                    debug!(connection = %conn.id, "socket silent, dropping it");
                    return PumpEnd::TimedOut;
                }
                control_text(last_seq, "ping", None)
            }
        };
        // Boxed: inline, the send and its timer would stay part of every idle
        // socket's state; a write is rare next to the time a socket waits.
        match Box::pin(timeout(every, sink.send(M::from(text)))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return PumpEnd::SinkFailed,
            Err(_) => return PumpEnd::TimedOut,
        }
    }
}
