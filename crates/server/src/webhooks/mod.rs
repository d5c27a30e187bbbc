//! Outbound webhooks: every call event, as JSON (or as Zammad CTI requests), to
//! the configured HTTP targets.
//!
//! A sink of the pipeline writes each event into the persistent outbox (one row
//! per target); one delivery task per target sends its rows in id order, so each
//! call's events arrive in order, retrying with exponential backoff. A target
//! that is down loses nothing (up to its `max_outbox_rows`, past which the oldest
//! rows are dropped with a warning), and a restart resumes from the outbox.
//! Delivery is at least once: a receiver deduplicates on `X-Fiche-Delivery`.

pub mod payload;

use crate::config::{WebhookConfig, WebhookKind};
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
/// Rows read from the outbox at a time.
const BATCH: u32 = 100;
/// A delivery task with nothing to send looks at the outbox this often anyway.
const IDLE_POLL: Duration = Duration::from_secs(30);
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
}

impl Target {
    /// The target a `[[webhooks]]` table describes.
    pub fn new(config: &WebhookConfig) -> Self {
        Self {
            name: config.target_name(),
            url: config.url.clone(),
            kind: config.kind,
            secret: config.secret.clone().filter(|s| !s.is_empty()),
            events: config.events.iter().cloned().collect(),
            timeout: Duration::from_secs(config.timeout_secs.max(1)),
            max_rows: config.max_outbox_rows.max(1),
            max_backoff: Duration::from_secs(config.max_backoff_secs.max(1)),
        }
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
/// target is configured.
pub fn start(
    configs: &[WebhookConfig],
    store: Store,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<mpsc::Sender<CallEvent>>> {
    if configs.is_empty() {
        return Ok(None);
    }
    let targets: Vec<Target> = configs.iter().map(Target::new).collect();
    let client = reqwest::Client::builder()
        .user_agent(concat!("fiche/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let mut wakers = Vec::new();
    for target in &targets {
        let notify = Arc::new(Notify::new());
        wakers.push(notify.clone());
        info!(target = %target.name, kind = ?target.kind, "webhook target");
        tasks.spawn(deliver(
            target.clone(),
            store.clone(),
            client.clone(),
            notify,
            shutdown.clone(),
        ));
    }
    let (sink, events) = mpsc::channel(SINK_CAPACITY);
    tasks.spawn(write(targets, wakers, store, events));
    Ok(Some(sink))
}

/// Writes every event into the outbox until the pipeline drops the sink.
async fn write(
    targets: Vec<Target>,
    wakers: Vec<Arc<Notify>>,
    store: Store,
    mut events: mpsc::Receiver<CallEvent>,
) {
    let mut zammad = payload::ZammadCalls::default();
    while let Some(event) = events.recv().await {
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
            let call_id = event.call_id.to_string();
            let entry = NewOutboxEntry {
                target: &target.name,
                ordering_key: Some(&call_id),
                event_type: &event_type,
                payload: &body,
            };
            let mut attempt = 1;
            loop {
                match store.outbox_push(&entry, target.max_rows).await {
                    Ok(0) => break,
                    Ok(dropped) => {
                        warn!(target = %target.name, dropped, max = target.max_rows,
                            "webhook outbox full: oldest deliveries dropped");
                        break;
                    }
                    Err(e) if attempt < WRITE_ATTEMPTS => {
                        warn!(target = %target.name, error = %e, attempt, "webhook outbox write failed, retrying");
                        attempt += 1;
                        tokio::time::sleep(DB_RETRY).await;
                    }
                    Err(e) => {
                        error!(target = %target.name, error = %e, call = %call_id, event = %event_type,
                            "webhook outbox write failed; this delivery is lost");
                        break;
                    }
                }
            }
            waker.notify_one();
        }
        zammad.forget_ended();
    }
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    /// Worth retrying: network error, timeout, 408, 429, 5xx.
    Retry(String),
    /// The target refused this delivery for good (another 4xx): dropped.
    Refused(String),
}

/// Sends `target`'s outbox rows in order until `shutdown`.
async fn deliver(
    target: Target,
    store: Store,
    client: reqwest::Client,
    notify: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let batch = match store.outbox_next(&target.name, BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                warn!(target = %target.name, error = %e, "reading the webhook outbox failed");
                if sleep_or_stop(DB_RETRY, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                () = notify.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
                () = shutdown.cancelled() => return,
            }
            continue;
        }
        for entry in batch {
            let wait = (entry.next_attempt_at - chrono::Utc::now())
                .to_std()
                .unwrap_or_default();
            if !wait.is_zero() && sleep_or_stop(wait, &shutdown).await {
                return;
            }
            if shutdown.is_cancelled() {
                return;
            }
            let outcome = match send(&client, &target, &entry).await {
                Attempt::Delivered => store.outbox_delete(entry.id).await,
                Attempt::Refused(reason) => {
                    warn!(target = %target.name, delivery = entry.id, %reason, "webhook delivery refused by the target; dropped");
                    store.outbox_delete(entry.id).await
                }
                Attempt::Retry(reason) => {
                    let delay = backoff(entry.attempts, target.max_backoff);
                    warn!(target = %target.name, delivery = entry.id, attempts = entry.attempts + 1,
                        retry_in = ?delay, %reason, "webhook delivery failed");
                    let next =
                        chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                    if let Err(e) = store.outbox_failed(entry.id, next, &reason).await {
                        warn!(target = %target.name, error = %e, "recording a failed webhook delivery failed");
                    }
                    // Later rows wait behind this one: re-read from the head.
                    break;
                }
            };
            if let Err(e) = outcome {
                warn!(target = %target.name, error = %e, "removing a delivered webhook failed");
                break;
            }
        }
    }
}

/// 1 s after the first failure, doubling, at most `max`.
fn backoff(attempts: i32, max: Duration) -> Duration {
    let exponent = u32::try_from(attempts.clamp(0, 20)).unwrap_or(20);
    Duration::from_secs(1u64 << exponent).min(max)
}

/// Sleeps `duration`; true when `shutdown` fired first.
async fn sleep_or_stop(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => false,
        () = shutdown.cancelled() => true,
    }
}

async fn send(client: &reqwest::Client, target: &Target, entry: &OutboxEntry) -> Attempt {
    let content_type = match target.kind {
        WebhookKind::Json => "application/json",
        WebhookKind::Zammad => "application/x-www-form-urlencoded",
    };
    let mut request = client
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
        // Without the URL: it may hold credentials.
        Err(e) => Attempt::Retry(e.without_url().to_string()),
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
    fn backoff_doubles_up_to_the_ceiling() {
        let max = Duration::from_secs(300);
        assert_eq!(backoff(0, max), Duration::from_secs(1));
        assert_eq!(backoff(3, max), Duration::from_secs(8));
        assert_eq!(backoff(40, max), max);
    }
}
