//! The websockets. `GET /ws`: the browser's hub socket (protocol in
//! docs/ws-protocol.md): each user sees only what the hub routes to them.
//! `GET /ws/events`: every call event as one JSON text message, for supervisors,
//! admins and integrations.
//!
//! Both need a session (the layer in front of the router refuses the upgrade with
//! 401 otherwise). A socket that cannot keep up is closed with code 1013 ("try
//! again later") rather than buffered: the page reconnects and resyncs.

use super::error::ApiError;
use super::AppState;
use crate::auth::CurrentUser;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fiche_hub::PumpEnd;
use futures_util::{SinkExt, StreamExt};
use std::pin::Pin;
use std::task::{Context, Poll};
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

/// Ok when a websocket upgrade comes from the server's own pages, or from a
/// page of `allowed` (`[websocket] allowed_origins`). Browsers always send
/// `Origin` on a websocket, and the session cookie goes with it whatever page
/// opens the socket: without this check any site an agent visits could read
/// her pops. The server's own origin is the host the browser asked for (its
/// `Host`); the scheme is not compared, since a TLS proxy in front changes it.
/// A request without `Origin` is not a browser's (an integration's client) and
/// needs its token anyway.
pub(crate) fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let refused = || {
        ApiError::Forbidden(
            "cross-origin websocket refused: open Fiche's own page, or add the page's origin to \
             [websocket] allowed_origins"
                .into(),
        )
    };
    let origin = origin
        .to_str()
        .map_err(|_| refused())?
        .trim()
        .trim_end_matches('/');
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return Ok(());
    }
    let authority = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .ok_or_else(refused)?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(refused)?;
    if !authority.is_empty() && authority.eq_ignore_ascii_case(host.trim()) {
        Ok(())
    } else {
        Err(refused())
    }
}

/// `GET /ws`: the hub socket of the logged-in user.
pub(super) async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    headers: HeaderMap,
    user: CurrentUser,
    digest: Option<axum::Extension<crate::auth::SessionDigest>>,
) -> Response {
    if let Err(refused) = check_origin(&headers, &state.allowed_origins) {
        return refused.into_response();
    }
    // The session layer names the session of every request it lets through.
    let Some(session) = digest.and_then(|axum::Extension(d)| d.key()) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let Ok(permit) = state.auth.socket_permits.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many sockets").into_response();
    };
    // Only what the socket needs lives as long as it: thousands stay open.
    // Boxed: one pointer in the socket's task rather than eight words.
    let sockets = state.sockets.clone();
    let owner = Box::new(Owner {
        hub: state.hub,
        auth: state.auth,
        session,
        _permit: permit,
    });
    let viewer = user.viewer();
    let user_id = user.id;
    sized(ws).on_upgrade(move |socket| {
        // Registered before the socket's task exists: the viewer and the
        // session are handed over here instead of being kept in the task.
        let conn = owner.hub.connect(viewer);
        owner.auth.register_socket(owner.session, user_id, conn.id);
        // A task of its own: axum's upgrade task (≈ 780 B, sized by the
        // upgrade's states) ends here instead of living as long as the socket.
        // Tracked, so that a stopping server waits for its close frame.
        sockets.spawn(hub_socket(HubSocket(socket), conn, owner));
        std::future::ready(())
    })
}

/// Who a hub socket belongs to, for as long as it is open.
struct Owner {
    hub: fiche_hub::Hub,
    auth: std::sync::Arc<crate::auth::Auth>,
    session: crate::auth::SessionKey,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// A hub socket as the pump drives it: the browser's text messages in (the
/// stream ends at a close frame, an error or the end of the connection),
/// websocket messages out. One object rather than a split pair: splitting
/// moves the websocket behind a shared lock of its own, more bytes in every
/// idle socket.
struct HubSocket(WebSocket);

impl futures_util::Stream for HubSocket {
    type Item = String;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<String>> {
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

impl futures_util::Sink<Message> for HubSocket {
    type Error = axum::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready_unpin(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        self.0.start_send_unpin(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_flush_unpin(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_close_unpin(cx)
    }
}

/// Runs a hub socket to its end, then closes it with a code saying why.
///
/// A plain function returning an `async move` block rather than an `async
/// fn`: an `async fn` keeps its arguments twice in its state (as passed, and
/// moved into its locals), and the websocket alone is 368 bytes in the task of
/// every idle socket. `hub_socket_task_stays_small` holds the size.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would keep the 368-byte websocket twice in every idle socket's task"
)]
fn hub_socket(
    mut socket: HubSocket,
    conn: fiche_hub::Connection,
    owner: Box<Owner>,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        let id = conn.id;
        let end = fiche_hub::pump(&owner.hub, conn, &mut socket).await;
        owner.auth.unregister_socket(owner.session, id);
        debug!(connection = %id, ?end, "hub socket ended");
        let close = match end {
            PumpEnd::TooSlow => Some(CloseFrame {
                code: 1013,
                reason: "too slow: reconnect".into(),
            }),
            // The server is stopping: "going away", the page reconnects.
            PumpEnd::Removed if owner.hub.is_closing() => Some(CloseFrame {
                code: 1001,
                reason: "server restarting".into(),
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
            drop(socket.send(Message::Close(Some(close))).await);
        }
    }
}

/// `GET /ws/events`: the raw call-event stream, for supervisors and admins.
pub(super) async fn upgrade_events(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    headers: HeaderMap,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    check_origin(&headers, &state.allowed_origins)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_servers_own_origin_and_the_allowed_ones_open_a_socket() {
        let allowed = ["https://crm.example.com".to_owned()];
        let check = |origin: Option<&str>, host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, host.parse().unwrap());
            if let Some(origin) = origin {
                headers.insert(header::ORIGIN, origin.parse().unwrap());
            }
            check_origin(&headers, &allowed).is_ok()
        };
        let table = [
            (None, "fiche.example.com", true),
            (Some("https://fiche.example.com"), "fiche.example.com", true),
            (Some("http://127.0.0.1:8080"), "127.0.0.1:8080", true),
            (Some("HTTPS://Fiche.Example.com"), "fiche.example.com", true),
            (Some("https://crm.example.com/"), "fiche.example.com", true),
            (Some("https://evil.example"), "fiche.example.com", false),
            (Some("http://127.0.0.1:9999"), "127.0.0.1:8080", false),
            (
                Some("https://fiche.example.com.evil.example"),
                "fiche.example.com",
                false,
            ),
            (Some("null"), "fiche.example.com", false),
            (Some("https://"), "", false),
        ];
        for (origin, host, expected) in table {
            assert_eq!(check(origin, host), expected, "{origin:?} on {host}");
        }
    }

    fn future_size<A, B, C, F>(_: fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Ten thousand idle sockets each hold one such task. tokio rounds a task
    /// up to 128 bytes with ≈ 104 bytes of its own, so up to 536 bytes of
    /// future make a 640-byte task; an `async fn` here was 872 (a 1 KiB task).
    #[test]
    fn hub_socket_task_stays_small() {
        let size = future_size(hub_socket);
        assert!(size <= 536, "the hub socket's future grew to {size} bytes");
        assert!(
            std::mem::size_of::<WebSocket>() < size,
            "the websocket is inside it"
        );
    }
}
