//! The inbound CTI endpoint: `POST /api/v1/cti/{token}`, Zammad "Generic CTI"
//! compatible, for phone systems that can only send HTTP (sipgate, Placetel,
//! 3CX bridges, FusionPBX scripts).
//!
//! Requests become the same call events as HEP and AMI (`source: "cti"`) and go
//! into the pipeline. A request is answered only once its events are durable
//! (the call's row, its ticket and its webhook deliveries committed): a phone
//! system never sends an acknowledged request again, so what it was told is
//! recorded must survive a crash. Concurrent requests share the writers'
//! commits. The token is the only credential: it is looked up by its
//! SHA-256 hash, and neither it nor the request path is ever logged. The route is
//! merged outside the session-authenticated router (see `serve.rs`), so no
//! request-logging layer of that router sees the path either.

pub mod cli;
pub mod providers;
/// The translator lives with the other call sources, in `fiche-pbx`.
pub use fiche_pbx::cti as translate;

use crate::pipeline::{Acknowledged, Receipt};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use fiche_store::Store;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Mutex};
use tracing::{info, warn};
pub use translate::{
    CtiError, CtiEvent, CtiRequest, KnownCall, Reply, Translator, TranslatorConfig,
};

/// Largest request body accepted.
const MAX_BODY: usize = 16 * 1024;
/// How long the token list is trusted before it is read again: a token revoked
/// with `fiche cti token revoke` is refused at most this long after.
const TOKENS_FRESH: Duration = Duration::from_secs(5);
/// An unknown token re-reads the list at most this often (a new token works
/// within a second; a flood of wrong tokens does not hammer the database).
const TOKENS_RETRY: Duration = Duration::from_secs(1);
/// `last_used_at` is written at most this often per token.
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// How often silent calls are expired.
const EXPIRE_EVERY: Duration = Duration::from_secs(5);
/// How long a request waits for its events to be durable before it is
/// answered 503 (the phone system then retries; replays are harmless).
const DURABLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Zammad's answer to a wrong token, word for word.
const INVALID_TOKEN: &str = "Invalid token, please contact your admin!";

/// The hex SHA-256 of a token, as stored. Tokens are 256-bit random values, so a
/// fast unsalted hash is enough (and keeps every request cheap).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// What the endpoint needs, shared by its requests.
#[derive(Clone)]
pub struct CtiContext(Arc<Inner>);

struct Inner {
    store: Store,
    events: mpsc::Sender<Acknowledged>,
    // One lock orders translation and sending, so one call's events reach the
    // pipeline in the order its requests were handled.
    translator: Mutex<Translator>,
    tokens: Mutex<Tokens>,
    /// The cloud providers' settings (sipgate's callback URL, Aircall's and
    /// Ringover's secrets).
    providers: providers::ProviderSettings,
}

struct Tokens {
    by_hash: HashMap<String, String>,
    loaded_at: Option<Instant>,
    touched: HashMap<String, Instant>,
}

impl CtiContext {
    /// A context sending events into `events` (the pipeline's acknowledged input).
    pub fn new(
        store: Store,
        events: mpsc::Sender<Acknowledged>,
        config: TranslatorConfig,
        providers: providers::ProviderSettings,
    ) -> Self {
        Self(Arc::new(Inner {
            store,
            events,
            providers,
            translator: Mutex::new(Translator::new(config)),
            tokens: Mutex::new(Tokens {
                by_hash: HashMap::new(),
                loaded_at: None,
                touched: HashMap::new(),
            }),
        }))
    }

    /// Ends silent calls every [`EXPIRE_EVERY`] until `shutdown`, whether
    /// requests come or not.
    pub async fn run_expiry(self, shutdown: tokio_util::sync::CancellationToken) {
        use fiche_pbx::CallSource as _;
        loop {
            // The translator's own timer (the source contract), checked at
            // least every EXPIRE_EVERY: a call restored from the log may be due
            // earlier than anything the translator knew of.
            let wait = {
                let translator = self.0.translator.lock().await;
                translator
                    .next_timeout()
                    .and_then(|due| (due - Utc::now()).to_std().ok())
                    .map_or(EXPIRE_EVERY, |d| d.min(EXPIRE_EVERY))
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let mut translator = self.0.translator.lock().await;
            translator.handle_timeout(Utc::now());
            let events: Vec<fiche_pbx::CallEvent> =
                std::iter::from_fn(|| translator.poll_event()).collect();
            if events.is_empty() {
                continue;
            }
            // Nobody waits on these; the receipt is only the channel's item type.
            let (receipt, _unheard) = Receipt::new();
            let item = Acknowledged { events, receipt };
            if self.0.events.send(item).await.is_err() {
                return;
            }
        }
    }

    /// The name of the live token `token`, if any.
    async fn token_name(&self, token: &str) -> Result<Option<String>, fiche_store::StoreError> {
        let hash = token_hash(token);
        let mut tokens = self.0.tokens.lock().await;
        let age = tokens.loaded_at.map(|t| t.elapsed());
        let stale = age.is_none_or(|a| a >= TOKENS_FRESH);
        let retry = !tokens.by_hash.contains_key(&hash) && age.is_none_or(|a| a >= TOKENS_RETRY);
        if stale || retry {
            let list = self.0.store.list_cti_tokens().await?;
            tokens.by_hash = list
                .into_iter()
                .filter(|t| t.revoked_at.is_none())
                .map(|t| (t.token_hash, t.name))
                .collect();
            tokens.loaded_at = Some(Instant::now());
        }
        let Some(name) = tokens.by_hash.get(&hash).cloned() else {
            return Ok(None);
        };
        let due = tokens
            .touched
            .get(&name)
            .is_none_or(|t| t.elapsed() >= TOUCH_EVERY);
        if due {
            tokens.touched.insert(name.clone(), Instant::now());
            let store = self.0.store.clone();
            let touched = name.clone();
            tokio::spawn(async move {
                if let Err(error) = store.touch_cti_token(&touched, Utc::now()).await {
                    warn!(%error, token = %touched, "could not record CTI token use");
                }
            });
        }
        Ok(Some(name))
    }
}

/// The routes (Generic CTI and the providers' dialects), with their own
/// state; merge them into the application.
pub fn router(context: CtiContext) -> Router {
    Router::new()
        .route("/api/v1/cti/{token}", post(receive))
        .merge(providers::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(context)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn receive(
    State(context): State<CtiContext>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let name = match context.authenticate(&token).await {
        Ok(name) => name,
        Err(refused) => return refused.json(),
    };
    let request = match parse_body(&headers, &body) {
        Ok(request) => request,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match context.process(&name, None, &request).await {
        Ok(Reply::Accepted) => Json(json!({})).into_response(),
        Ok(Reply::Reject) => Json(json!({ "action": "reject", "reason": "busy" })).into_response(),
        Ok(Reply::Dial { caller_id, number }) => {
            Json(json!({ "action": "dial", "caller_id": caller_id, "number": number }))
                .into_response()
        }
        Err(refused) => refused.json(),
    }
}

/// Why a request was not taken: its status and message, written in the
/// answer's format by each route (JSON, or XML for sipgate and Placetel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong; never a secret.
    pub message: String,
}

impl Refused {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// Zammad's JSON error: `{"error": "…"}`.
    pub fn json(self) -> Response {
        error(self.status, self.message)
    }
}

impl From<CtiError> for Refused {
    fn from(e: CtiError) -> Self {
        let status = match e {
            CtiError::UnknownCall(_) => StatusCode::NOT_FOUND,
            CtiError::TooManyCalls => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Refused::new(status, e.to_string())
    }
}

impl CtiContext {
    /// The name of the live token `token`, or the refusal (Zammad's words
    /// for a wrong token).
    pub(crate) async fn authenticate(&self, token: &str) -> Result<String, Refused> {
        match self.token_name(token).await {
            Ok(Some(name)) => Ok(name),
            Ok(None) => {
                warn!("CTI request with an unknown or revoked token refused");
                Err(Refused::new(StatusCode::UNAUTHORIZED, INVALID_TOKEN))
            }
            Err(error_) => {
                warn!(error = %error_, "CTI token lookup failed");
                Err(Refused::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database unavailable, retry later",
                ))
            }
        }
    }

    /// Translates one request of the PBX `name` (`event`: a dialect's, or
    /// `None` for a Generic CTI request naming its own), and waits until its
    /// events are durable: the reply, once it may be given.
    pub(crate) async fn process(
        &self,
        name: &str,
        event: Option<CtiEvent>,
        request: &CtiRequest,
    ) -> Result<Reply, Refused> {
        let context = self;
        let (mut reply, mut durable) = translate(context, name, event, request, None).await?;
        if let Err(CtiError::UnknownCall(_)) = reply {
            // Perhaps a call that started before Fiche restarted: the call log has it.
            match recall(context, name, request).await {
                Ok(Some(known)) => {
                    // An unknown call made no events: nothing of the first try to wait for.
                    (reply, durable) =
                        translate(context, name, event, request, Some(known)).await?;
                }
                Ok(None) => {}
                Err(error_) => {
                    warn!(error = %error_, "CTI call lookup failed");
                    return Err(Refused::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "database unavailable, retry later",
                    ));
                }
            }
        }
        if let Err(refused) = wait_durable(durable).await {
            // The translator moved on, the database did not: forgotten, the call's
            // state comes from the call log again, so the phone system's retry of
            // this request makes its events again instead of passing as a repeat.
            if let Some((key, _)) = Translator::call_key(name, request) {
                context.0.translator.lock().await.forget(&key);
            }
            return Err(refused);
        }
        if let Ok(Reply::Reject) = reply {
            info!(pbx = %name, caller = ?request.from, "blocked caller rejected");
        }
        reply.map_err(Refused::from)
    }
}

/// What a request's events came to, for its source: answered when durable.
type Durable = Option<oneshot::Receiver<bool>>;

/// Waits until the events a request sent are durable; the 503 that ends the
/// request when they are not (the phone system retries it).
async fn wait_durable(durable: Durable) -> Result<(), Refused> {
    let Some(answer) = durable else {
        return Ok(());
    };
    match tokio::time::timeout(DURABLE_TIMEOUT, answer).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false) | Err(_)) => {
            warn!("CTI request not recorded; answered 503 so that the phone system retries");
            Err(Refused::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not recorded, retry later",
            ))
        }
        Err(_) => {
            warn!(timeout = ?DURABLE_TIMEOUT, "CTI request not recorded in time; answered 503");
            Err(Refused::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not recorded in time, retry later",
            ))
        }
    }
}

/// Translates `request` (after tracking again the `restored` call, if any) and
/// sends its events into the pipeline; the reply and what to wait on before
/// giving it, or the response that ends the request.
async fn translate(
    context: &CtiContext,
    name: &str,
    event: Option<CtiEvent>,
    request: &CtiRequest,
    restored: Option<(String, KnownCall)>,
) -> Result<(Result<Reply, CtiError>, Durable), Refused> {
    let now = Utc::now();
    let mut translator = context.0.translator.lock().await;
    let mut events = Vec::new();
    if let Some((key, known)) = restored {
        translator.restore(key, &known, now);
    }
    let handled = match event {
        Some(event) => translator.handle_event(name, event, request, now),
        None => translator.handle(name, request, now),
    };
    let reply = match handled {
        Ok(translated) => {
            events.extend(translated.events);
            Ok(translated.reply)
        }
        Err(e) => Err(e),
    };
    if events.is_empty() {
        return Ok((reply, None));
    }
    // Sent under the translator's lock, so one call's events stay in order.
    let (receipt, durable) = Receipt::new();
    let item = Acknowledged { events, receipt };
    if context.0.events.send(item).await.is_err() {
        return Err(Refused::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down",
        ));
    }
    Ok((reply, Some(durable)))
}

/// The call a request names, as the call log has it, when the translator does
/// not track it (read without holding the translator's lock).
async fn recall(
    context: &CtiContext,
    name: &str,
    request: &CtiRequest,
) -> Result<Option<(String, KnownCall)>, fiche_store::StoreError> {
    let Some((key, call_id)) = Translator::call_key(name, request) else {
        return Ok(None);
    };
    let Some(call) = context.0.store.get_call(call_id).await? else {
        return Ok(None);
    };
    let known = KnownCall {
        direction: call.direction,
        callee: call.callee_number,
        answered: call.answered_at.is_some(),
        ended: call.ended_at.is_some(),
    };
    Ok(Some((key, known)))
}

/// Reads a JSON object or a form-encoded body (also what Zammad accepts: form
/// when the content type is not JSON).
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<CtiRequest, String> {
    body_pairs(headers, body).map(CtiRequest::from_pairs)
}

/// A JSON object's members (arrays repeat their name) or a form's fields.
pub(crate) fn body_pairs(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, String> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !is_json {
        return serde_urlencoded::from_bytes(body).map_err(|e| format!("invalid form body: {e}"));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
    let Value::Object(map) = value else {
        return Err("invalid JSON body: expected an object".to_owned());
    };
    let mut pairs = Vec::with_capacity(map.len());
    for (name, value) in map {
        match value {
            Value::Array(items) => {
                for item in items {
                    if let Some(text) = scalar(item) {
                        pairs.push((name.clone(), text));
                    }
                }
            }
            other => {
                if let Some(text) = scalar(other) {
                    pairs.push((name, text));
                }
            }
        }
    }
    Ok(pairs)
}

fn scalar(value: Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The translator's settings from the configuration: blocked numbers are read
/// with the configured region, so `0899…` and `+33 8 99…` block the same caller.
pub fn translator_config(
    config: &crate::config::Config,
    agents: &fiche_pbx::ExtensionPatterns,
) -> TranslatorConfig {
    let policy = config.numbers.policy();
    let blocked = config
        .cti
        .blocked_numbers
        .iter()
        .map(|raw| match fiche_matcher::normalise(raw, &policy) {
            fiche_matcher::NumberKind::E164(e164) => e164,
            _ => raw.trim().to_owned(),
        })
        .collect();
    let cti = &config.cti;
    TranslatorConfig {
        policy,
        agents: agents.clone(),
        blocked,
        silence_timeout: seconds(config.calls.silence_timeout_secs),
        ringing_timeout: seconds(config.calls.ringing_timeout_secs),
        queues: cti
            .queues
            .iter()
            .map(|(queue, agents)| (queue.trim().to_owned(), agents.clone()))
            .collect(),
        agent_ids: cti
            .agents
            .iter()
            .map(|(id, extension)| (id.trim().to_lowercase(), extension.trim().to_owned()))
            .collect(),
        outbound: translate::OutboundRules {
            routes: cti
                .outbound
                .routes
                .iter()
                .map(|r| translate::CallerIdRoute {
                    dest: r.dest.trim().to_owned(),
                    caller_id: r.caller_id.trim().to_owned(),
                })
                .collect(),
            default_caller_id: cti
                .outbound
                .default_caller_id
                .as_deref()
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
        },
        voicemail_wait: seconds(cti.voicemail_wait_secs),
    }
}

fn seconds(secs: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
}
