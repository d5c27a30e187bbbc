//! Who is calling: login sessions (cookie `fiche_session` or `Authorization: Bearer`),
//! the [`CurrentUser`] extractor with its role checks, the layer that refuses every
//! route but the public ones without a session, and the first-run admin account.
//!
//! A session token is 32 random bytes (base64url); the store keeps only its SHA-256,
//! so a copy of the database cannot be used to log in. Sessions slide: each use
//! pushes the expiry. Looked-up sessions are cached for a few seconds; logout and
//! user changes made through this process evict them at once.

mod first_run;
pub(crate) mod hasher;
mod limiter;
pub(crate) mod login;

pub use first_run::ensure_first_admin;
pub use limiter::{KnownClients, Limiter};

use crate::http::error::ApiError;
use crate::http::AppState;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use fiche_hub::ConnectionId;
use fiche_store::{Role, Store, UserId};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Bound;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Name of the session cookie.
pub const COOKIE: &str = "fiche_session";
/// Default session lifetime after its last use.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// A session's expiry is written back at most this often (sliding, without a
/// database write per request).
const TOUCH_EVERY: Duration = Duration::from_secs(300);
/// How long a looked-up session is trusted without asking the store again.
const CACHE_FOR: Duration = Duration::from_secs(5);
/// Most cached sessions; beyond, the cache is emptied (it only saves queries).
const MAX_CACHED: usize = 50_000;
/// Length of a token's text (32 bytes in base64url without padding).
const TOKEN_CHARS: usize = 43;
/// Most websockets open at once; beyond, upgrades are answered 503.
pub const MAX_SOCKETS: usize = 20_000;
/// How often the sessions behind open websockets are looked up: a socket whose
/// session expired, or was ended by another process (`fiche user passwd`), is
/// closed within this time, and a session with a page open is kept alive. One
/// query per 500 sessions.
pub const SOCKET_SESSION_CHECK: Duration = Duration::from_secs(10);
/// Sessions looked up per query, and per page of the registry walk: bounds the
/// memory a check takes whatever the number of open websockets.
const SESSIONS_PER_CHECK: usize = 500;
/// Failed logins per login name, and per client address, before a pause.
const FAILURES_PER_LOGIN: u32 = 5;
const FAILURES_PER_ADDRESS: u32 = 20;
const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// A login that succeeded from a client is spared that client's block for
/// this long: colleagues behind one office address keep logging in while
/// someone there (or a script) fails.
const KNOWN_CLIENT_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// The `[auth]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Hours a session lasts after its last use (1 to 720).
    #[serde(default = "default_session_hours")]
    pub session_hours: u64,
    /// Reverse proxies whose `X-Forwarded-For` names the client, for the
    /// per-client login limit (`FICHE_TRUSTED_PROXIES`, comma-separated).
    /// Empty: the connection's address is the client, and `X-Forwarded-For`
    /// is ignored.
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_hours: default_session_hours(),
            trusted_proxies: Vec::new(),
        }
    }
}

fn default_session_hours() -> u64 {
    SESSION_TTL.as_secs() / 3600
}

impl AuthConfig {
    /// The session lifetime, bounded to 1 hour .. 30 days.
    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_hours.clamp(1, 720) * 3600)
    }
}

/// The authenticated user of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrentUser {
    /// The user's id in the store.
    pub id: i64,
    /// Login name.
    pub login: String,
    /// Name shown to colleagues.
    pub display_name: String,
    /// What the user may do.
    pub role: Role,
    /// The extensions the user answers.
    pub extensions: Vec<String>,
}

impl CurrentUser {
    /// Ok for supervisors and admins, else 403.
    pub fn require_supervisor(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Supervisor | Role::Admin => Ok(()),
            Role::Agent => Err(ApiError::Forbidden("supervisors only".into())),
        }
    }

    /// Ok for admins, else 403.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            _ => Err(ApiError::Forbidden("admins only".into())),
        }
    }

    /// What the hub needs to route this user's socket.
    pub fn viewer(&self) -> fiche_hub::Viewer {
        fiche_hub::Viewer {
            user_id: self.id,
            role: match self.role {
                Role::Agent => fiche_hub::Role::Agent,
                Role::Supervisor => fiche_hub::Role::Supervisor,
                Role::Admin => fiche_hub::Role::Admin,
            },
            extensions: self.extensions.clone(),
        }
    }

    fn from_user(user: fiche_store::User) -> Self {
        Self {
            id: user.id.0,
            login: user.login,
            display_name: user.display_name,
            role: user.role,
            extensions: user.extensions,
        }
    }
}

/// The digest of the session a request came with (for logout).
#[derive(Debug, Clone)]
pub(crate) struct SessionDigest(pub(crate) String);

impl SessionDigest {
    /// The digest as the socket registry keeps it.
    pub(crate) fn key(&self) -> Option<SessionKey> {
        SessionKey::from_hex(&self.0)
    }
}

/// A session digest as raw bytes: kept beside each open websocket, where the
/// 64-character text would cost a heap allocation per socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SessionKey([u8; 32]);

impl SessionKey {
    fn from_hex(digest: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(digest, &mut bytes).ok()?;
        Some(Self(bytes))
    }

    fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

#[derive(Debug, Clone)]
struct Cached {
    user: CurrentUser,
    at: Instant,
}

/// Sessions, failed-login counters and the open websockets of each user.
#[derive(Debug)]
pub struct Auth {
    ttl: Duration,
    cache: Mutex<HashMap<String, Cached>>,
    pub(crate) per_login: Limiter,
    pub(crate) per_address: Limiter,
    /// (client, login) pairs that logged in successfully, spared the client's block.
    pub(crate) known_clients: KnownClients,
    /// Proxies whose `X-Forwarded-For` is believed.
    trusted_proxies: Vec<ipnet::IpNet>,
    /// Open hub sockets by session, each with its user. Ordered, so the
    /// periodic check walks it a page at a time.
    sockets: Mutex<BTreeMap<SessionKey, Vec<(ConnectionId, i64)>>>,
    /// Caps the websockets open at once.
    pub socket_permits: std::sync::Arc<Semaphore>,
}

impl Default for Auth {
    fn default() -> Self {
        Self::new(SESSION_TTL)
    }
}

impl Auth {
    /// Sessions lasting `ttl` after their last use.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            cache: Mutex::new(HashMap::new()),
            per_login: Limiter::new(FAILURES_PER_LOGIN, FAILURE_WINDOW),
            per_address: Limiter::new(FAILURES_PER_ADDRESS, FAILURE_WINDOW),
            known_clients: KnownClients::new(KNOWN_CLIENT_FOR),
            trusted_proxies: Vec::new(),
            sockets: Mutex::new(BTreeMap::new()),
            socket_permits: std::sync::Arc::new(Semaphore::new(MAX_SOCKETS)),
        }
    }

    /// The same, believing `X-Forwarded-For` from these proxies.
    pub fn trusting(mut self, proxies: Vec<ipnet::IpNet>) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// The client behind a connection from `peer`: see [`client_address`].
    pub(crate) fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_address(peer, headers, &self.trusted_proxies)
    }

    /// Session lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Opens a session for `user`; returns the token to hand to the client.
    pub async fn open_session(&self, store: &Store, user: UserId) -> Result<String, ApiError> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let expires = Utc::now() + chrono_ttl(self.ttl);
        store.create_session(&digest(&token), user, expires).await?;
        Ok(token)
    }

    /// The user behind `token`, if its session is live and the user enabled.
    pub async fn authenticate(
        &self,
        store: &Store,
        token: &str,
    ) -> Result<Option<(CurrentUser, String)>, ApiError> {
        if token.len() != TOKEN_CHARS || URL_SAFE_NO_PAD.decode(token).is_err() {
            return Ok(None);
        }
        let digest = digest(token);
        let now = Instant::now();
        if let Some(cached) = self.cache().get(&digest) {
            if now.duration_since(cached.at) < CACHE_FOR {
                return Ok(Some((cached.user.clone(), digest)));
            }
        }
        let at = Utc::now();
        let Some(session) = store.session(&digest, at).await? else {
            self.cache().remove(&digest);
            return Ok(None);
        };
        let user = match store.get_user(session.user_id).await {
            Ok(user) => user,
            Err(fiche_store::StoreError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        if user.disabled {
            self.cache().remove(&digest);
            return Ok(None);
        }
        let fresh_expiry = at + chrono_ttl(self.ttl);
        if fresh_expiry - session.expires_at > chrono_ttl(TOUCH_EVERY) {
            store.touch_session(&digest, fresh_expiry).await?;
        }
        let user = CurrentUser::from_user(user);
        let mut cache = self.cache();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(
            digest.clone(),
            Cached {
                user: user.clone(),
                at: now,
            },
        );
        Ok(Some((user, digest)))
    }

    /// Ends the session with this digest and closes its websockets.
    pub(crate) async fn close_session(
        &self,
        store: &Store,
        hub: &fiche_hub::Hub,
        digest: &str,
    ) -> Result<(), ApiError> {
        self.cache().remove(digest);
        store.delete_session(digest).await?;
        let Some(key) = SessionKey::from_hex(digest) else {
            return Ok(());
        };
        if let Some(sockets) = self.sockets().get(&key) {
            for (id, _) in sockets {
                hub.disconnect(*id);
            }
        }
        Ok(())
    }

    /// Forgets what is cached about `user` (its role, extensions or status changed).
    pub fn forget_user(&self, user: i64) {
        self.cache().retain(|_, cached| cached.user.id != user);
    }

    /// Closes every websocket of `user` (disabled, or role changed: the page
    /// reconnects, or goes to the login page).
    pub fn disconnect_user(&self, hub: &fiche_hub::Hub, user: i64) {
        // A walk over every socket: rare (an admin changed the user).
        let ids: Vec<ConnectionId> = self
            .sockets()
            .values()
            .flatten()
            .filter(|(_, owner)| *owner == user)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            hub.disconnect(id);
        }
    }

    /// Looks up the sessions behind the open websockets, a page of
    /// [`SESSIONS_PER_CHECK`] at a time. Sockets whose session expired or is
    /// gone from the store are closed (the hub ends them; the page sees close
    /// code 1008). Live sessions are kept alive as if used: a page left open
    /// all day is in use, and Claire must not find herself logged out in the
    /// middle of a call. Returns how many sessions ended.
    pub async fn close_ended_sessions(
        &self,
        store: &Store,
        hub: &fiche_hub::Hub,
    ) -> Result<usize, fiche_store::StoreError> {
        let mut ended = 0;
        let mut after = None;
        loop {
            let page: Vec<SessionKey> = {
                let sockets = self.sockets();
                let from = after.map_or(Bound::Unbounded, Bound::Excluded);
                sockets
                    .range((from, Bound::Unbounded))
                    .take(SESSIONS_PER_CHECK)
                    .map(|(key, _)| *key)
                    .collect()
            };
            let Some(last) = page.last() else {
                return Ok(ended);
            };
            after = Some(*last);
            let digests: Vec<String> = page.iter().map(|key| key.to_hex()).collect();
            let at = Utc::now();
            let live = store.live_sessions(&digests, at).await?;
            let fresh_expiry = at + chrono_ttl(self.ttl);
            let stale: Vec<String> = live
                .iter()
                .filter(|(_, expires)| fresh_expiry - *expires > chrono_ttl(TOUCH_EVERY))
                .map(|(digest, _)| digest.clone())
                .collect();
            if !stale.is_empty() {
                store.touch_sessions(&stale, fresh_expiry).await?;
            }
            let live: HashSet<&str> = live.iter().map(|(digest, _)| digest.as_str()).collect();
            for (key, digest) in page.iter().zip(&digests) {
                if live.contains(digest.as_str()) {
                    continue;
                }
                self.cache().remove(digest);
                if let Some(sockets) = self.sockets().get(key) {
                    for (id, _) in sockets {
                        hub.disconnect(*id);
                    }
                }
                ended += 1;
            }
            if page.len() < SESSIONS_PER_CHECK {
                return Ok(ended);
            }
        }
    }

    pub(crate) fn register_socket(&self, session: SessionKey, user: i64, id: ConnectionId) {
        self.sockets().entry(session).or_default().push((id, user));
    }

    pub(crate) fn unregister_socket(&self, session: SessionKey, id: ConnectionId) {
        let mut sockets = self.sockets();
        if let Some(list) = sockets.get_mut(&session) {
            list.retain(|(socket, _)| *socket != id);
            if list.is_empty() {
                sockets.remove(&session);
            }
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sockets(&self) -> std::sync::MutexGuard<'_, BTreeMap<SessionKey, Vec<(ConnectionId, i64)>>> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs [`Auth::close_ended_sessions`] every [`SOCKET_SESSION_CHECK`] until `shutdown`.
pub async fn watch_socket_sessions(
    auth: std::sync::Arc<Auth>,
    store: Store,
    hub: fiche_hub::Hub,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut every = tokio::time::interval(SOCKET_SESSION_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(error) = auth.close_ended_sessions(&store, &hub).await {
            tracing::warn!(%error, "checking the sessions of open websockets");
        }
    }
}

fn chrono_ttl(ttl: Duration) -> chrono::Duration {
    chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(12))
}

/// Hex SHA-256 of a token: what the store keeps.
fn digest(token: &str) -> String {
    let hash = Sha256::digest(token.as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
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
pub async fn require_session(
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
        Err(error) => error.into_response(),
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

    #[test]
    fn digests_are_hex_sha256() {
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn session_keys_round_trip_and_refuse_what_is_not_a_digest() {
        let hex = digest("abc");
        let key = SessionKey::from_hex(&hex).expect("a digest");
        assert_eq!(key.to_hex(), hex);
        assert_eq!(SessionKey::from_hex(""), None);
        assert_eq!(SessionKey::from_hex(&hex[..62]), None);
        assert_eq!(SessionKey::from_hex(&hex.replace('a', "g")), None);
    }
}
