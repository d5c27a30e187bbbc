//! `GET /ws`: every call event as one JSON text message.
//!
//! A socket that cannot keep up is closed with code 1013 ("try again later")
//! rather than buffered: the page reconnects and reloads `/api/calls/live`.

use super::AppState;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tracing::debug;

/// Per-socket buffer sizes: small, since thousands of agents stay connected and
/// browsers send us almost nothing.
const READ_BUFFER: usize = 4 * 1024;
const WRITE_BUFFER: usize = 8 * 1024;
const MAX_INCOMING_MESSAGE: usize = 64 * 1024;
/// Ping interval; a socket that does not answer two pings in a row is closed.
const PING_EVERY: Duration = Duration::from_secs(30);

pub(super) async fn upgrade(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(MAX_INCOMING_MESSAGE)
        .on_upgrade(move |socket| stream_events(socket, state))
}

async fn stream_events(socket: WebSocket, state: AppState) {
    let mut events = state.fanout.subscribe();
    let (mut sink, mut incoming) = socket.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut unanswered_pings = 0u8;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(json) => {
                    if sink.send(Message::Text(json.as_ref().into())).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    debug!(missed, "websocket too slow, closing it");
                    let close = CloseFrame { code: 1013, reason: "lagged: reload".into() };
                    drop(sink.send(Message::Close(Some(close))).await);
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            message = incoming.next() => match message {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => unanswered_pings = 0,
            },
            _ = ping.tick() => {
                if unanswered_pings >= 2 {
                    return;
                }
                unanswered_pings += 1;
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}
