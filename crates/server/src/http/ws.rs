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
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tracing::debug;

/// Read buffer of a socket, allocated when it opens and kept while it lives:
/// ten thousand idle agents hold ten thousand of these. Browsers send only
/// small commands (a `pong` frame is about 20 bytes); a larger message (up to
/// `MAX_INCOMING_MESSAGE`) grows the buffer as it arrives.
const READ_BUFFER: usize = 128;
/// Zero: every frame goes to the socket at once (the pump flushes each message
/// anyway); nothing waits in tungstenite for more data.
const WRITE_BUFFER: usize = 0;
/// Largest browser message read. Twice the hub's limit, so that a message a
/// little too large is answered `bad_message` by the hub; beyond this the
/// connection is dropped without reading further.
const MAX_INCOMING_MESSAGE: usize = 2 * fiche_hub::MAX_CLIENT_MESSAGE;
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
    // Only what the socket needs lives as long as it: thousands stay open. Boxed:
    // both the upgrade callback and the socket's future hold it for the
    // socket's life, as a pointer rather than twice inline.
    let owner = Box::new(Owner {
        hub: state.hub,
        auth: state.auth,
        user_id: user.id,
        viewer: user.viewer(),
        digest: digest.map(|axum::Extension(d)| d.0).unwrap_or_default(),
        _permit: permit,
    });
    sized(ws).on_upgrade(move |socket| {
        // Split before the socket's future exists: the socket moves to the heap
        // once, instead of also being kept in the future's state, which lives
        // inline in the task of every idle socket.
        let (sink, stream) = socket.split();
        // A task of its own: axum's upgrade task (≈ 780 B, sized by the
        // upgrade's states) ends here instead of living as long as the socket.
        tokio::spawn(run_hub_socket(sink, TextFrames(stream), owner));
        std::future::ready(())
    })
}

/// Who a hub socket belongs to, and its place among the open sockets.
struct Owner {
    hub: fiche_hub::Hub,
    auth: std::sync::Arc<crate::auth::Auth>,
    user_id: i64,
    viewer: fiche_hub::Viewer,
    digest: String,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// The browser's text messages; ends at a close frame, an error or the end of
/// the connection. A plain struct rather than stream combinators: it is part
/// of every idle socket's state.
struct TextFrames(SplitStream<WebSocket>);

impl futures_util::Stream for TextFrames {
    type Item = String;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<String>> {
        use std::task::Poll;
        loop {
            return match self.0.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(Message::Text(text)))) => Poll::Ready(Some(text.to_string())),
                Poll::Ready(Some(Ok(Message::Close(_)) | Err(_)) | None) => Poll::Ready(None),
                // Binary frames are ignored; pings are answered by the websocket layer.
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

async fn run_hub_socket(
    mut sink: SplitSink<WebSocket, Message>,
    mut stream: TextFrames,
    owner: Box<Owner>,
) {
    // Fields are moved, not copied into new locals: every byte of this future's
    // state is held by each idle socket.
    let conn = owner.hub.connect(owner.viewer);
    let id = conn.id;
    owner.auth.register_socket(owner.user_id, id, owner.digest);
    let end = fiche_hub::pump(&owner.hub, conn, &mut sink, &mut stream).await;
    owner.auth.unregister_socket(owner.user_id, id);
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
        drop(sink.send(Message::Close(Some(close))).await);
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
