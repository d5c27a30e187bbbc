//! Outbound webhooks: every call event and every ticket change, as JSON (or call
//! events as Zammad CTI requests), to the configured HTTP(S) targets.
//!
//! A sink of the pipeline and the ticket feed write into the persistent outbox
//! (one row per target); one delivery task per target sends its rows in id
//! order, so each call's events and each ticket's changes arrive in order,
//! retrying with exponential backoff. A target
//! that is down loses nothing (up to its `max_outbox_rows`, past which the oldest
//! rows are dropped with a warning), and a restart resumes from the outbox.
//! Delivery is at least once: a receiver deduplicates on `X-Fiche-Delivery`.

pub mod payload;

use crate::config::{WebhookConfig, WebhookKind};
use crate::pipeline::SinkEvent;
use anyhow::{bail, Context};
use fiche_hub::TicketSummary;
use fiche_pbx::CallEvent;
use fiche_store::{NewOutboxEntry, OutboxEntry, Store};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

/// Capacity of the pipeline → outbox writer channel.
const SINK_CAPACITY: usize = 1024;
/// Wait after a database error before trying again.
const DB_RETRY: Duration = Duration::from_secs(1);
/// Attempts to write one row into the outbox before it is given up (logged).
const WRITE_ATTEMPTS: u32 = 5;

/// One configured target, ready to use.
#[derive(Clone)]
pub struct Target {
    /// Its name: the outbox key and what logs show (never the URL's secrets).
    pub name: String,
    url: String,
    kind: WebhookKind,
    secret: Option<String>,
    events: HashSet<String>,
    timeout: Duration,
    max_rows: u64,
    max_backoff: Duration,
    client: reqwest::Client,
}

impl Target {
    /// The target a `[[webhooks]]` table describes; fails when its `ca_file`
    /// cannot be read or holds no certificate.
    pub fn new(config: &WebhookConfig) -> anyhow::Result<Self> {
        let name = config.target_name();
        let mut client = reqwest::Client::builder()
            .user_agent(concat!("fiche/", env!("CARGO_PKG_VERSION")))
            // The system's CA store (a company CA installed system-wide) on top
            // of the built-in public roots.
            .tls_built_in_native_certs(true)
            .tls_built_in_webpki_certs(true);
        if let Some(path) = &config.ca_file {
            let what = || format!("webhook {name:?}: ca_file {}", path.display());
            let pem = std::fs::read(path).with_context(what)?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).with_context(what)?;
            if certificates.is_empty() {
                bail!("{}: no PEM certificate in it", what());
            }
            for certificate in certificates {
                client = client.add_root_certificate(certificate);
            }
        }
        let client = client
            .build()
            .with_context(|| format!("webhook {name:?}: HTTP client"))?;
        Ok(Self {
            name,
            url: config.url.clone(),
            kind: config.kind,
            secret: config.secret.clone().filter(|s| !s.is_empty()),
            events: config.events.iter().cloned().collect(),
            timeout: Duration::from_secs(config.timeout_secs.max(1)),
            max_rows: config.max_outbox_rows.max(1),
            max_backoff: Duration::from_secs(config.max_backoff_secs.max(1)),
            client,
        })
    }

    fn wants(&self, event_type: &str) -> bool {
        self.events.is_empty() || self.events.contains(event_type)
    }
}

/// `sha256=<hex>`: HMAC-SHA256 of `body` with `secret`, the `X-Fiche-Signature` value.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length; the error branch cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Starts the outbox writer and one delivery task per target under `tasks`;
/// returns the sink to register in the pipeline's outputs, `None` when no
/// target is configured. `tickets` is the ticket feed's listener end; `stats`
/// holds each target's counters, in the order of `configs`.
pub fn start(
    configs: &[WebhookConfig],
    stats: &crate::metrics::WebhookStats,
    store: Store,
    tickets: Option<mpsc::Receiver<TicketSummary>>,
    tasks: &TaskTracker,
    cluster: Option<crate::cluster::Cluster>,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<mpsc::Sender<SinkEvent>>> {
    if configs.is_empty() {
        return Ok(None);
    }
    let targets = configs
        .iter()
        .map(Target::new)
        .collect::<anyhow::Result<Vec<Target>>>()?;
    let mut wakers = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let notify = Arc::new(Notify::new());
        wakers.push(notify.clone());
        info!(target = %target.name, kind = ?target.kind, "webhook target");
        let counters = stats
            .get(i)
            .cloned()
            .unwrap_or_else(|| Arc::new(crate::metrics::TargetStats::new(target.name.clone())));
        let courier = Courier {
            target: target.clone(),
            stats: counters,
        };
        let store = store.clone();
        // In a cluster one node delivers each target, in order.
        tasks.spawn(crate::cluster::claimed(
            cluster.clone(),
            format!("webhook:{}", target.name),
            shutdown.clone(),
            move |tenure| {
                crate::outbox::drain(store.clone(), courier.clone(), notify.clone(), tenure)
            },
        ));
    }
    let (sink, events) = mpsc::channel(SINK_CAPACITY);
    tasks.spawn(write(targets, wakers, store, events, tickets));
    Ok(Some(sink))
}

/// Writes every call event and ticket change into the outbox until both the
/// pipeline's sink and the ticket feed are closed.
async fn write(
    targets: Vec<Target>,
    wakers: Vec<Arc<Notify>>,
    store: Store,
    mut events: mpsc::Receiver<SinkEvent>,
    mut tickets: Option<mpsc::Receiver<TicketSummary>>,
) {
    let mut zammad = payload::ZammadCalls::default();
    let has_zammad = targets.iter().any(|t| t.kind == WebhookKind::Zammad);
    let mut events_open = true;
    while events_open || tickets.is_some() {
        tokio::select! {
            // A call's events first: the ticket a call made follows the call.
            biased;
            event = events.recv(), if events_open => {
                let Some(SinkEvent { event, receipt, log_seq, .. }) = event else {
                    events_open = false;
                    continue;
                };
                // The event's deliveries are stored before its source is answered.
                let mut stored = true;
                if has_zammad && zammad.needs_parties(&event) {
                    recall_parties(&store, &mut zammad, &event).await;
                }
                for (target, waker) in targets.iter().zip(&wakers) {
                    let Some((event_type, body)) = (match target.kind {
                        WebhookKind::Json => payload::json(&event),
                        WebhookKind::Zammad => zammad.form(&event),
                    }) else {
                        continue;
                    };
                    if !target.wants(&event_type) && !target.wants(event.kind.name()) {
                        continue;
                    }
                    let key = event.call_id.to_string();
                    let delivery = Delivery { ordering_key: &key, event_type: &event_type, body: &body, log_seq };
                    stored &= push(&store, target, waker, delivery).await;
                }
                zammad.forget_ended();
                if let (true, Some(receipt)) = (stored, receipt) {
                    receipt.durable();
                }
            }
            ticket = recv_ticket(&mut tickets), if tickets.is_some() => {
                let Some(ticket) = ticket else {
                    tickets = None;
                    continue;
                };
                let (event_type, body) = payload::ticket_json(&ticket);
                let key = format!("ticket:{}", ticket.id);
                for (target, waker) in targets.iter().zip(&wakers) {
                    // Zammad's CTI API only knows calls.
                    if target.kind == WebhookKind::Zammad || !target.wants(&event_type) {
                        continue;
                    }
                    // A lost ticket change is logged by `push`; nothing waits on it.
                    let delivery = Delivery { ordering_key: &key, event_type: &event_type, body: &body, log_seq: None };
                    let _stored = push(&store, target, waker, delivery).await;
                }
            }
        }
    }
}

async fn recv_ticket(tickets: &mut Option<mpsc::Receiver<TicketSummary>>) -> Option<TicketSummary> {
    match tickets {
        Some(rx) => rx.recv().await,
        None => None,
    }
}

/// A call that started before a restart: Zammad wants its parties on every
/// request, so they are read back from the call log.
async fn recall_parties(store: &Store, zammad: &mut payload::ZammadCalls, event: &CallEvent) {
    match store.get_call(event.call_id).await {
        Ok(Some(call)) => {
            let from = if call.caller_withheld {
                None
            } else {
                call.caller_number
            };
            zammad.remember(event.call_id, call.direction, from, call.callee_number);
        }
        Ok(None) => {}
        Err(e) => {
            warn!(error = %e, call = %event.call_id, "reading a call back for the Zammad target failed");
        }
    }
}

/// The cursor of `target`'s outbox writes in a cluster's log.
pub fn cursor_name(target: &str) -> String {
    format!("webhooks:{target}")
}

/// The cursors of every configured target (see [`cursor_name`]).
pub fn cursor_names(configs: &[WebhookConfig]) -> Vec<String> {
    configs
        .iter()
        .map(|c| cursor_name(&c.target_name()))
        .collect()
}

/// One delivery to queue.
struct Delivery<'a> {
    ordering_key: &'a str,
    event_type: &'a str,
    body: &'a str,
    /// In a cluster, the event's place in the log (pushed once per target).
    log_seq: Option<i64>,
}

/// Queues one delivery for `target` (retrying database errors a few times) and
/// wakes its delivery task; false when the delivery could not be stored.
async fn push(store: &Store, target: &Target, waker: &Notify, delivery: Delivery<'_>) -> bool {
    let Delivery {
        ordering_key,
        event_type,
        body,
        log_seq,
    } = delivery;
    let entry = NewOutboxEntry {
        target: &target.name,
        ordering_key: Some(ordering_key),
        event_type,
        payload: body,
    };
    let mut attempt = 1;
    let stored = loop {
        let pushed = match log_seq {
            None => store.outbox_push(&entry, target.max_rows).await,
            Some(seq) => store
                .outbox_push_logged(&entry, target.max_rows, &cursor_name(&target.name), seq)
                .await
                // Pushed already (before a crash, or by the last holder): done.
                .map(|dropped| dropped.unwrap_or(0)),
        };
        match pushed {
            Ok(0) => break true,
            Ok(dropped) => {
                warn!(target = %target.name, dropped, max = target.max_rows,
                    "webhook outbox full: oldest deliveries dropped");
                break true;
            }
            Err(e) if attempt < WRITE_ATTEMPTS => {
                warn!(target = %target.name, error = %e, attempt, "webhook outbox write failed, retrying");
                attempt += 1;
                tokio::time::sleep(DB_RETRY).await;
            }
            Err(e) => {
                error!(target = %target.name, error = %e, key = %ordering_key, event = %event_type,
                    "webhook outbox write failed; this delivery is lost");
                break false;
            }
        }
    };
    waker.notify_one();
    stored
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    /// Worth retrying: network error, timeout, 408, 429, 5xx.
    Retry(String),
    /// The target refused this delivery for good (another 4xx): dropped.
    Refused(String),
}

/// Sends one target's outbox rows (see [`crate::outbox::drain`]), counting
/// them for `/metrics`.
#[derive(Clone)]
struct Courier {
    target: Target,
    stats: Arc<crate::metrics::TargetStats>,
}

impl crate::outbox::Courier for Courier {
    fn target(&self) -> &str {
        &self.target.name
    }

    async fn attempt(&mut self, entry: &OutboxEntry) -> crate::outbox::Attempt {
        let target = &self.target;
        match send(target, entry).await {
            Attempt::Delivered => {
                self.stats.delivered();
                crate::outbox::Attempt::Delivered
            }
            Attempt::Refused(reason) => {
                self.stats.refused();
                warn!(target = %target.name, delivery = entry.id, %reason, "webhook delivery refused by the target; dropped");
                crate::outbox::Attempt::Dropped
            }
            Attempt::Retry(reason) => {
                self.stats.retried();
                let delay = crate::outbox::backoff(entry.attempts, target.max_backoff);
                warn!(target = %target.name, delivery = entry.id, attempts = entry.attempts + 1,
                    retry_in = ?delay, %reason, "webhook delivery failed");
                crate::outbox::Attempt::Retry { reason, delay }
            }
        }
    }
}

async fn send(target: &Target, entry: &OutboxEntry) -> Attempt {
    let content_type = match target.kind {
        WebhookKind::Json => "application/json",
        WebhookKind::Zammad => "application/x-www-form-urlencoded",
    };
    let mut request = target
        .client
        .post(&target.url)
        .timeout(target.timeout)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .header("X-Fiche-Event", &entry.event_type)
        .header("X-Fiche-Delivery", entry.id.to_string())
        .body(entry.payload.clone());
    if let Some(secret) = &target.secret {
        request = request.header(
            "X-Fiche-Signature",
            signature(secret, entry.payload.as_bytes()),
        );
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                Attempt::Delivered
            } else if status.is_server_error()
                || status == reqwest::StatusCode::REQUEST_TIMEOUT
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            {
                Attempt::Retry(format!("HTTP {status}"))
            } else {
                Attempt::Refused(format!("HTTP {status}"))
            }
        }
        Err(e) => Attempt::Retry(describe(e)),
    }
}

/// A failed request's reason with its causes (reqwest's own message alone says
/// "error sending request"), without the URL: it may hold credentials.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    if let Some(hint) = tls_hint(&text) {
        text.push_str(" (");
        text.push_str(hint);
        text.push(')');
    }
    text
}

/// What an admin should look at when rustls refused the target's certificate.
fn tls_hint(reason: &str) -> Option<&'static str> {
    if reason.contains("UnknownIssuer") {
        Some("TLS: the target's certificate is not signed by a trusted CA; a private CA goes in the target's ca_file")
    } else if reason.contains("certificate") {
        Some("TLS: the target's certificate was refused (expired, or for another name?)")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_the_hmac_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn refused_certificates_get_a_hint() {
        let unknown = "error sending request: client error (Connect): invalid peer certificate: UnknownIssuer";
        assert!(tls_hint(unknown).is_some_and(|h| h.contains("ca_file")));
        let name = "error sending request: client error (Connect): invalid peer certificate: NotValidForName";
        assert!(tls_hint(name).is_some_and(|h| h.contains("another name")));
        assert_eq!(tls_hint("error sending request: connection refused"), None);
    }
}
