//! The HTTP side of sessions: the token a request carries (cookie `fiche_session`
//! or `Authorization: Bearer`), the client behind a proxy, the layer that refuses
//! every route but the public ones without a session, the [`CurrentUser`]
//! extractor, and `POST /api/login`, `POST /api/logout`, `GET /api/me`. What a
//! session is, and the rules of logging in, are the `auth` service's.

use crate::auth::hasher::HashError;
use crate::auth::{AuthError, CurrentUser, SessionDigest, COOKIE};
use crate::http::error::ApiError;
use crate::http::AppState;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tracing::warn;

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
    let client = peer.map(|Extension(ConnectInfo(addr))| {
        client_address(addr.ip(), &headers, state.auth.trusted_proxies()).to_string()
    });
    let logged_in = state
        .auth
        .log_in(
            &state.store,
            &credentials.login,
            credentials.password,
            client.as_deref(),
        )
        .await;
    let (user, token) = match logged_in {
        Ok(found) => found,
        Err(AuthError::Blocked(wait)) => return Ok(too_many(wait)),
        Err(AuthError::Hash(HashError::Busy)) => return Ok(busy()),
        Err(error) => return Err(error.into()),
    };
    // Users added or changed with `fiche user` while the server runs join the
    // hub's agent directory (the board, "taken by") at their next login.
    if let Err(error) = crate::http::users::join_directory(&state.store, &state.hub, &user).await {
        warn!(%error, "could not refresh the agent directory");
    }
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

/// The session token a request carries: `Authorization: Bearer`, else the cookie.
pub(crate) fn request_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        return value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim);
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then_some(value.trim())
        })
}

/// The client of a request that came from `peer`. When `peer` is a trusted
/// proxy, `X-Forwarded-For` (each proxy appends the address it got the request
/// from) is read from the right: the first address that is not itself a
/// trusted proxy is the client. A value that is not an address stops the walk
/// at the last address believed. From any other peer the header is ignored: a
/// client could write anything in it.
pub(crate) fn client_address(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        let parsed = hop
            .parse::<IpAddr>()
            .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|a| a.ip()));
        let Ok(ip) = parsed else {
            break;
        };
        client = ip.to_canonical();
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

/// Whether the client reached us over TLS (directly or through a proxy that says so).
pub(crate) fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// Routes reachable without a session. The login and CTI routes are public
/// whatever the method, so that a wrong method is answered 405 by the router.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/login.html" | "/login.js" | "/style.css" | "/i18n.js" | "/favicon.ico"
    ) || path == "/api/login"
        || path.starts_with("/api/v1/cti/")
}

/// Pages that send an unauthenticated browser to the login page.
fn is_page(path: &str) -> bool {
    matches!(path, "/" | "/index.html" | "/board.html")
}

/// The layer in front of every route: public routes pass; the others need a live
/// session, whose user is then available to handlers as [`CurrentUser`].
pub(crate) async fn require_session(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if is_public(path) {
        return next.run(request).await;
    }
    let page = is_page(path);
    let found = match request_token(request.headers()) {
        Some(token) => {
            let token = token.to_owned();
            state.auth.authenticate(&state.store, &token).await
        }
        None => Ok(None),
    };
    match found {
        Ok(Some((user, digest))) => {
            let user_id = crate::http::access_log::LoggedUser(user.id);
            request.extensions_mut().insert(user);
            request.extensions_mut().insert(SessionDigest(digest));
            let mut response = next.run(request).await;
            // For the access log, which runs outside this layer.
            response.extensions_mut().insert(user_id);
            response
        }
        Ok(None) if page => Redirect::to("/login.html").into_response(),
        Ok(None) => unauthorized(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

fn unauthorized() -> Response {
    ApiError::Unauthorized("login required".into()).into_response()
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(user) = parts.extensions.get::<CurrentUser>() {
            return Ok(user.clone());
        }
        let token = request_token(&parts.headers)
            .map(str::to_owned)
            .ok_or_else(|| ApiError::Unauthorized("login required".into()))?;
        match state.auth.authenticate(&state.store, &token).await? {
            Some((user, digest)) => {
                parts.extensions.insert(SessionDigest(digest));
                Ok(user)
            }
            None => Err(ApiError::Unauthorized("login required".into())),
        }
    }
}

/// `Set-Cookie` value opening (or, with `None`, clearing) the session cookie.
pub(crate) fn session_cookie(token: Option<&str>, ttl: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match token {
        Some(token) => format!(
            "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
            ttl.as_secs()
        ),
        None => format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}"),
    }
}

/// A 429 answer with `Retry-After`.
pub(crate) fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let mut response =
        ApiError::TooManyRequests(format!("too many failed logins, retry in {secs} s"))
            .into_response();
    if let Ok(value) = secs.to_string().parse() {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saturated_hasher_is_a_503_to_retry_in_a_second() {
        let response = busy();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn a_blocked_login_is_a_429_with_retry_after() {
        let response = too_many(Duration::from_millis(2500));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn the_token_comes_from_the_bearer_header_or_the_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=b; fiche_session=tok1; c=d".parse().unwrap(),
        );
        assert_eq!(request_token(&headers), Some("tok1"));
        headers.insert(header::AUTHORIZATION, "Bearer tok2".parse().unwrap());
        assert_eq!(request_token(&headers), Some("tok2"));
        assert_eq!(request_token(&HeaderMap::new()), None);
    }

    #[test]
    fn only_login_health_and_cti_are_public() {
        assert!(is_public("/healthz"));
        assert!(is_public("/api/login"));
        assert!(is_public("/api/v1/cti/abc"));
        assert!(is_public("/login.html"));
        // Any method: the router answers 405 for the ones these routes lack.
        assert!(is_public("/api/login"));
        assert!(!is_public("/api/calls/live"));
        assert!(!is_public("/ws"));
        assert!(!is_public("/app.js"));
        assert!(!is_public("/"));
    }

    #[test]
    fn the_client_is_read_from_x_forwarded_for_only_behind_a_trusted_proxy() {
        let trusted: Vec<ipnet::IpNet> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let table = [
            // (peer, X-Forwarded-For, client)
            ("192.0.2.1", None, "192.0.2.1"),
            ("192.0.2.1", Some("203.0.113.7"), "192.0.2.1"),
            ("127.0.0.1", None, "127.0.0.1"),
            ("127.0.0.1", Some("203.0.113.7"), "203.0.113.7"),
            (
                "127.0.0.1",
                Some("198.51.100.1, 203.0.113.7"),
                "203.0.113.7",
            ),
            ("127.0.0.1", Some("203.0.113.7, 10.1.2.3"), "203.0.113.7"),
            ("127.0.0.1", Some("203.0.113.7:5000"), "203.0.113.7"),
            ("127.0.0.1", Some("[2001:db8::1]:443"), "2001:db8::1"),
            ("127.0.0.1", Some("203.0.113.7, unknown"), "127.0.0.1"),
            ("127.0.0.1", Some("unknown, 10.1.2.3"), "10.1.2.3"),
            ("::ffff:127.0.0.1", Some("203.0.113.9"), "203.0.113.9"),
        ];
        for (peer, forwarded, client) in table {
            let mut headers = HeaderMap::new();
            if let Some(value) = forwarded {
                headers.insert("x-forwarded-for", value.parse().unwrap());
            }
            assert_eq!(
                client_address(ip(peer), &headers, &trusted),
                ip(client),
                "{peer} {forwarded:?}"
            );
        }
    }
}
