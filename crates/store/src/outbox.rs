//! The outbound webhook outbox: deliveries waiting to be sent or retried.
//!
//! Rows of one target are delivered in id order, which keeps every call's events
//! in order. The outbox is bounded per target by the caller's `max_rows`: when a
//! push goes over it, the oldest rows of that target are dropped and counted.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use crate::error::Result;
use crate::sql::{now, stored_time};
use crate::{dispatch, Store};

/// One delivery waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct OutboxEntry {
    /// Its id: the delivery id sent to the target, increasing per push.
    pub id: i64,
    /// The target's name.
    pub target: String,
    /// What orders deliveries (the call id).
    pub ordering_key: Option<String>,
    /// The event type, e.g. "call_started".
    pub event_type: String,
    /// The body to send, exactly as signed.
    pub payload: String,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// Failed attempts so far.
    pub attempts: i32,
    /// Not to be sent before this time.
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// A delivery to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxEntry<'a> {
    /// The target's name.
    pub target: &'a str,
    /// What orders deliveries (the call id).
    pub ordering_key: Option<&'a str>,
    /// The event type.
    pub event_type: &'a str,
    /// The body to send.
    pub payload: &'a str,
}

/// Longest `last_error` kept, in characters.
const MAX_ERROR_CHARS: usize = 500;

impl Store {
    /// Queues a delivery, then drops the oldest rows of its target beyond
    /// `max_rows`. Returns how many were dropped.
    pub async fn outbox_push(&self, entry: &NewOutboxEntry<'_>, max_rows: u64) -> Result<u64> {
        let at = now();
        let keep = i64::try_from(max_rows.max(1)).unwrap_or(i64::MAX);
        dispatch!(self, |pool, dialect| {
            sqlx::query(&dialect.sql(
                "INSERT INTO webhook_outbox (target, ordering_key, event_type, payload, \
                 created_at, attempts, next_attempt_at) VALUES (?, ?, ?, ?, ?, 0, ?)",
            ))
            .bind(entry.target)
            .bind(entry.ordering_key)
            .bind(entry.event_type)
            .bind(entry.payload)
            .bind(at)
            .bind(at)
            .execute(pool)
            .await?;
            // The row `keep` places below the newest, and everything older, goes.
            let dropped = sqlx::query(&dialect.sql(
                "DELETE FROM webhook_outbox WHERE target = ? AND id <= \
                 (SELECT id FROM webhook_outbox WHERE target = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            ))
            .bind(entry.target)
            .bind(entry.target)
            .bind(keep)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(dropped)
        })
    }

    /// The oldest `limit` deliveries of `target`, in id order.
    pub async fn outbox_next(&self, target: &str, limit: u32) -> Result<Vec<OutboxEntry>> {
        dispatch!(self, |pool, dialect| {
            Ok(sqlx::query_as::<_, OutboxEntry>(&dialect.sql(
                "SELECT id, target, ordering_key, event_type, payload, created_at, attempts, \
                 next_attempt_at, last_error FROM webhook_outbox WHERE target = ? \
                 ORDER BY id LIMIT ?",
            ))
            .bind(target)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?)
        })
    }

    /// Removes a delivered entry.
    pub async fn outbox_delete(&self, id: i64) -> Result<()> {
        dispatch!(self, |pool, dialect| {
            sqlx::query(&dialect.sql("DELETE FROM webhook_outbox WHERE id = ?"))
                .bind(id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Records a failed attempt: the next one is not before `next_attempt_at`.
    pub async fn outbox_failed(
        &self,
        id: i64,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<()> {
        let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
        dispatch!(self, |pool, dialect| {
            sqlx::query(&dialect.sql(
                "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = ?, \
                 last_error = ? WHERE id = ?",
            ))
            .bind(stored_time(next_attempt_at))
            .bind(error)
            .bind(id)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// How many deliveries `target` has waiting.
    pub async fn outbox_len(&self, target: &str) -> Result<u64> {
        dispatch!(self, |pool, dialect| {
            let (n,): (i64,) = sqlx::query_as(
                &dialect.sql("SELECT COUNT(*) FROM webhook_outbox WHERE target = ?"),
            )
            .bind(target)
            .fetch_one(pool)
            .await?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }
}
