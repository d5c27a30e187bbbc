//! The websockets. `GET /ws`: the browser's hub socket (protocol in
//! docs/ws-protocol.md): each user sees only what the hub routes to them.
//! `GET /ws/events`: every call event as one JSON text message, for supervisors,
//! admins and integrations.
//!
//! Both need a session (the layer in front of the router refuses the upgrade with
//! 401 otherwise). A socket that cannot keep up is closed with code 1013 ("try
//! again later") rather than buffered: the page reconnects and resyncs.

use super::AppState;
use crate::auth::CurrentUser;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fiche_hub::PumpEnd;
use futures_util::future::ready;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tracing::debug;

/// Per-socket buffer sizes: small, since thousands of agents stay connected and
/// browsers send us almost nothing.
const READ_BUFFER: usize = 4 * 1024;
const WRITE_BUFFER: usize = 8 * 1024;
const MAX_INCOMING_MESSAGE: usize = fiche_hub::MAX_CLIENT_MESSAGE;
/// Ping interval of `/ws/events`; a socket that does not answer two pings in a row is closed.
const PING_EVERY: Duration = Duration::from_secs(30);

/// Small socket buffers. No cap on the write buffer: tungstenite refuses any
/// single message larger than the cap, and a supervisor's snapshot can be large;
/// the hub's bounded queue and the pump's send timeout bound what waits.
fn sized(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(MAX_INCOMING_MESSAGE)
        .max_frame_size(MAX_INCOMING_MESSAGE)
}

/// `GET /ws`: the hub socket of the logged-in user.
pub(super) async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    user: CurrentUser,
    digest: Option<axum::Extension<crate::auth::SessionDigest>>,
) -> Response {
    let Ok(permit) = state.auth.socket_permits.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many sockets").into_response();
    };
    let digest = digest.map(|axum::Extension(d)| d.0).unwrap_or_default();
    sized(ws).on_upgrade(move |socket| async move {
        run_hub_socket(socket, state, user, digest).await;
        drop(permit);
    })
}

async fn run_hub_socket(socket: WebSocket, state: AppState, user: CurrentUser, digest: String) {
    let conn = state.hub.connect(user.viewer());
    let id = conn.id;
    state.auth.register_socket(user.id, id, digest);
    let (sink, stream) = socket.split();
    let mut sink =
        sink.with(|text: String| ready(Ok::<_, axum::Error>(Message::Text(text.into()))));
    let stream = stream
        .take_while(|message| ready(matches!(message, Ok(m) if !matches!(m, Message::Close(_)))))
        .filter_map(|message| {
            ready(match message {
                Ok(Message::Text(text)) => Some(text.to_string()),
                _ => None,
            })
        });
    let mut stream = std::pin::pin!(stream);
    let end = fiche_hub::pump(&state.hub, conn, &mut sink, &mut stream).await;
    state.auth.unregister_socket(user.id, id);
    debug!(connection = %id, ?end, "hub socket ended");
    let close = match end {
        PumpEnd::TooSlow => Some(CloseFrame {
            code: 1013,
            reason: "too slow: reconnect".into(),
        }),
        PumpEnd::Removed => Some(CloseFrame {
            code: 1008,
            reason: "session ended".into(),
        }),
        PumpEnd::TimedOut => Some(CloseFrame {
            code: 1001,
            reason: "timed out".into(),
        }),
        PumpEnd::ClientClosed | PumpEnd::SinkFailed => None,
    };
    if let Some(close) = close {
        drop(sink.get_mut().send(Message::Close(Some(close))).await);
    }
}

/// `GET /ws/events`: the raw call-event stream, for supervisors and admins.
pub(super) async fn upgrade_events(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Response, super::error::ApiError> {
    user.require_supervisor()?;
    let Ok(permit) = state.auth.socket_permits.clone().try_acquire_owned() else {
        return Ok((StatusCode::SERVICE_UNAVAILABLE, "too many sockets").into_response());
    };
    Ok(sized(ws).on_upgrade(move |socket| async move {
        stream_events(socket, state).await;
        drop(permit);
    }))
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
