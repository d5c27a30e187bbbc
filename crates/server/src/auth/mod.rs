//! Who is calling, as a service with no HTTP in it: logging in (failure limits per
//! login and per client, password checks on the hasher's threads), sessions, the
//! [`CurrentUser`] with its role checks, the websockets open under each session, and
//! the first-run admin account. The HTTP side (reading the token from a cookie or a
//! header, the layer in front of every route, the login routes) is `http::session`.
//!
//! A session token is 32 random bytes (base64url); the store keeps only its SHA-256,
//! so a copy of the database cannot be used to log in. Sessions slide: each use
//! pushes the expiry. Looked-up sessions are cached for a few seconds; logout and
//! user changes made through this process evict them at once.

mod first_run;
pub(crate) mod hasher;
mod limiter;

pub use first_run::ensure_first_admin;
pub use limiter::{KnownClients, Limiter};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use fiche_hub::ConnectionId;
use fiche_store::{Role, Store, StoreError, UserId};
use hasher::{hasher, HashError};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
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
/// Longest login accepted before any lookup.
const MAX_LOGIN_CHARS: usize = 128;
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

/// Why a login, or an action, was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown login or wrong password (never says which).
    #[error("bad login or password")]
    BadCredentials,
    /// The password is right but the account is disabled.
    #[error("account disabled")]
    Disabled,
    /// Too many failures for this login or client: retry after the wait.
    #[error("too many failed logins, retry in {} s", .0.as_secs().max(1))]
    Blocked(Duration),
    /// The user's role does not allow the action.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The password could not be checked (workers saturated or stopped).
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
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
    /// Ok for supervisors and admins, else [`AuthError::Forbidden`].
    pub fn require_supervisor(&self) -> Result<(), AuthError> {
        match self.role {
            Role::Supervisor | Role::Admin => Ok(()),
            Role::Agent => Err(AuthError::Forbidden("supervisors only")),
        }
    }

    /// Ok for admins, else [`AuthError::Forbidden`].
    pub fn require_admin(&self) -> Result<(), AuthError> {
        match self.role {
            Role::Admin => Ok(()),
            _ => Err(AuthError::Forbidden("admins only")),
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

    pub(crate) fn from_user(user: fiche_store::User) -> Self {
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

    /// Proxies whose `X-Forwarded-For` names the client.
    pub(crate) fn trusted_proxies(&self) -> &[ipnet::IpNet] {
        &self.trusted_proxies
    }

    /// Session lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Checks `login` and `password`, counting failures per login and per
    /// `client` (a client address, when known), and opens a session. Returns the
    /// user and the token to hand to the client.
    pub async fn log_in(
        &self,
        store: &Store,
        login: &str,
        password: String,
        client: Option<&str>,
    ) -> Result<(fiche_store::User, String), AuthError> {
        let login_key = login.trim().to_lowercase();
        if login_key.is_empty() || login_key.chars().count() > MAX_LOGIN_CHARS {
            return Err(AuthError::BadCredentials);
        }
        let now = Instant::now();
        // A client's block spares the logins that already succeeded from it: one
        // office address, where someone keeps failing, must not lock everyone out.
        let client_blocked = client.and_then(|key| {
            if self.known_clients.knows(key, &login_key, now) {
                None
            } else {
                self.per_address.blocked(key, now)
            }
        });
        let blocked = self
            .per_login
            .blocked(&login_key, now)
            .into_iter()
            .chain(client_blocked)
            .max();
        if let Some(wait) = blocked {
            return Err(AuthError::Blocked(wait));
        }

        let found = store.user_password(&login_key).await?;
        let (user, hash) = found.map_or((None, None), |(user, hash)| (Some(user), Some(hash)));
        // An unknown login is checked against a dummy hash: the answer takes as long.
        let valid = match hasher().verify(hash, password).await {
            Ok(valid) => valid,
            Err(HashError::Busy) => {
                hasher::note_busy();
                return Err(HashError::Busy.into());
            }
            Err(error) => return Err(error.into()),
        };
        let user = match user {
            Some(user) if valid && !user.disabled => user,
            Some(user) if valid => {
                tracing::info!(login = ?user.login, "login refused: account disabled");
                return Err(AuthError::Disabled);
            }
            _ => {
                let later = Instant::now();
                self.per_login.fail(&login_key, later);
                if let Some(key) = client {
                    self.per_address.fail(key, later);
                }
                tracing::warn!(login = ?login_key, address = ?client, "failed login");
                return Err(AuthError::BadCredentials);
            }
        };
        self.per_login.clear(&login_key);
        if let Some(key) = client {
            self.known_clients.remember(key, &login_key, Instant::now());
        }
        let token = self.open_session(store, user.id).await?;
        if let Err(error) = store.delete_expired_sessions(Utc::now()).await {
            tracing::warn!(%error, "could not purge expired sessions");
        }
        tracing::info!(login = ?user.login, "logged in");
        Ok((user, token))
    }

    /// Opens a session for `user`; returns the token to hand to the client.
    pub async fn open_session(&self, store: &Store, user: UserId) -> Result<String, StoreError> {
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
    ) -> Result<Option<(CurrentUser, String)>, StoreError> {
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
            Err(error) => return Err(error),
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
    ) -> Result<(), StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
