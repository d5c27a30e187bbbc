//! Draining one target's persistent outbox, in order: the loop shared by the
//! webhook targets and Odoo. A [`Courier`] attempts one row; this loop reads
//! the rows, waits for each one's due time, deletes what was delivered or
//! dropped, and on a failure records the next attempt and stops the batch, so
//! later rows wait behind it and order is kept per target.

use fiche_store::{OutboxEntry, Store};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Rows read at a time.
const BATCH: u32 = 100;
/// A target with nothing to send looks at the outbox this often anyway.
const IDLE_POLL: Duration = Duration::from_secs(30);
/// Wait before reading again after the database failed.
const DB_RETRY: Duration = Duration::from_secs(1);

/// What one attempt at a row came to.
pub(crate) enum Attempt {
    /// Delivered: the row goes.
    Delivered,
    /// Refused for good: the row goes (the courier said why).
    Dropped,
    /// Worth trying again after `delay`; later rows wait.
    Retry {
        /// Kept on the row, for whoever looks at the outbox.
        reason: String,
        /// Until the next attempt.
        delay: Duration,
    },
}

/// One target's side of the loop: attempts a row and logs what it means.
pub(crate) trait Courier: Send {
    /// The target's name in the outbox.
    fn target(&self) -> &str;

    /// Attempts `entry` once.
    fn attempt(&mut self, entry: &OutboxEntry) -> impl Future<Output = Attempt> + Send;
}

/// Delivers `courier`'s outbox rows in order until `shutdown`; `waker` is told
/// when rows were added.
pub(crate) async fn drain(
    store: Store,
    mut courier: impl Courier,
    waker: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let batch = match store.outbox_next(courier.target(), BATCH).await {
            Ok(batch) => batch,
            Err(error) => {
                warn!(target = %courier.target(), %error, "reading the outbox failed");
                if sleep_or_stop(DB_RETRY, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                () = waker.notified() => {}
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
            let outcome = match courier.attempt(&entry).await {
                Attempt::Delivered | Attempt::Dropped => store.outbox_delete(entry.id).await,
                Attempt::Retry { reason, delay } => {
                    let next =
                        chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                    if let Err(error) = store.outbox_failed(entry.id, next, &reason).await {
                        warn!(target = %courier.target(), %error, "recording a failed delivery failed");
                    }
                    // Later rows wait behind this one: re-read from the head.
                    break;
                }
            };
            if let Err(error) = outcome {
                warn!(target = %courier.target(), %error, "removing a delivered row failed");
                break;
            }
        }
    }
}

/// 1 s after the first failure, doubling, at most `max`.
pub(crate) fn backoff(attempts: i32, max: Duration) -> Duration {
    let exponent = u32::try_from(attempts.clamp(0, 20)).unwrap_or(20);
    Duration::from_secs(1u64 << exponent).min(max)
}

/// Sleeps `duration`; true when `shutdown` fired first.
pub(crate) async fn sleep_or_stop(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => false,
        () = shutdown.cancelled() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_up_to_its_bound() {
        let max = Duration::from_secs(300);
        let waits: Vec<u64> = (0..12).map(|n| backoff(n, max).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(-3, max), Duration::from_secs(1));
        assert_eq!(backoff(i32::MAX, max), max);
    }
}
