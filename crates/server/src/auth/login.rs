//! `POST /api/login`, `POST /api/logout`, `GET /api/me`.

use super::hasher::{hasher, HashError};
use super::{over_tls, session_cookie, too_many, CurrentUser, SessionDigest};
use crate::http::error::ApiError;
use crate::http::AppState;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Instant;
use tracing::{info, warn};

/// Longest login accepted before any lookup.
const MAX_LOGIN_CHARS: usize = 128;

/// The login, logout and me routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    login: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Json<Credentials>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(credentials) = body?;
    let login_key = credentials.login.trim().to_lowercase();
    if login_key.is_empty() || login_key.chars().count() > MAX_LOGIN_CHARS {
        return Err(ApiError::Unauthorized("bad login or password".into()));
    }
    let address_key =
        peer.map(|Extension(ConnectInfo(addr))| state.auth.client(addr.ip(), &headers).to_string());
    let now = Instant::now();
    // A client's block spares the logins that already succeeded from it: one
    // office address, where someone keeps failing, must not lock everyone out.
    let client_blocked = address_key.as_deref().and_then(|key| {
        if state.auth.known_clients.knows(key, &login_key, now) {
            None
        } else {
            state.auth.per_address.blocked(key, now)
        }
    });
    let blocked = state
        .auth
        .per_login
        .blocked(&login_key, now)
        .into_iter()
        .chain(client_blocked)
        .max();
    if let Some(wait) = blocked {
        return Ok(too_many(wait));
    }

    let found = state.store.user_password(&login_key).await?;
    let (user, hash) = found.map_or((None, None), |(user, hash)| (Some(user), Some(hash)));
    // An unknown login is checked against a dummy hash: the answer takes as long.
    let valid = match hasher().verify(hash, credentials.password).await {
        Ok(valid) => valid,
        Err(HashError::Busy) => {
            super::hasher::note_busy();
            return Ok(busy());
        }
        Err(error) => return Err(error.into()),
    };

    let user = match user {
        Some(user) if valid && !user.disabled => user,
        Some(user) if valid => {
            info!(login = ?user.login, "login refused: account disabled");
            return Err(ApiError::Unauthorized("account disabled".into()));
        }
        _ => {
            let later = Instant::now();
            state.auth.per_login.fail(&login_key, later);
            if let Some(key) = &address_key {
                state.auth.per_address.fail(key, later);
            }
            warn!(login = ?login_key, address = ?address_key, "failed login");
            return Err(ApiError::Unauthorized("bad login or password".into()));
        }
    };
    state.auth.per_login.clear(&login_key);
    if let Some(key) = &address_key {
        state
            .auth
            .known_clients
            .remember(key, &login_key, Instant::now());
    }
    let token = state.auth.open_session(&state.store, user.id).await?;
    if let Err(error) = state
        .store
        .delete_expired_sessions(chrono::Utc::now())
        .await
    {
        warn!(%error, "could not purge expired sessions");
    }
    // Users added or changed with `fiche user` while the server runs join the
    // hub's agent directory (the board, "taken by") at their next login.
    if let Err(error) = crate::http::users::join_directory(&state.store, &state.hub, &user).await {
        warn!(%error, "could not refresh the agent directory");
    }
    info!(login = ?user.login, "logged in");
    let cookie = session_cookie(Some(&token), state.auth.ttl(), over_tls(&headers));
    let current = CurrentUser::from_user(user);
    let body = serde_json::json!({ "user": current, "token": token });
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// A 503 answer with `Retry-After: 1`: every password worker is busy and the
/// queue is full; the login is not counted as a failure.
fn busy() -> Response {
    let mut response = ApiError::from(HashError::Busy).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

async fn logout(
    State(state): State<AppState>,
    digest: Option<Extension<SessionDigest>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(Extension(SessionDigest(digest))) = digest {
        state
            .auth
            .close_session(&state.store, &state.hub, &digest)
            .await?;
    }
    let cookie = session_cookie(None, state.auth.ttl(), over_tls(&headers));
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

/// `GET /api/me`: the user, and whether this server is `fiche demo` (the
/// board then shows admins its "Simuler un appel" button).
#[derive(serde::Serialize)]
struct Me {
    #[serde(flatten)]
    user: CurrentUser,
    demo: bool,
}

async fn me(State(state): State<AppState>, user: CurrentUser) -> Json<Me> {
    Json(Me {
        user,
        demo: state.demo.is_some(),
    })
}
