//! What several Fiche nodes share through PostgreSQL: heartbeats, leases, the
//! event log that carries call events and ticket changes between nodes, the
//! consumers' cursors and commands for a lease's holder.
//!
//! The log is the transport; `LISTEN/NOTIFY` is only its wake-up (a payload is
//! limited to 8,000 bytes and every NOTIFY takes a global lock at commit, so one
//! empty notification goes out per append, never an event). Appends take an
//! advisory lock for their transaction, so rows become visible in `seq` order
//! and a reader that asks for "after seq N" never skips a row committed late.
//! SQLite has the tables but no cluster: these calls refuse it.

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgListener, PgPool};
use sqlx::FromRow;
use std::time::Duration;

use crate::error::{Result, StoreError};
use crate::{Backend, Store};

/// The notification channel a log append wakes.
pub const LOG_CHANNEL: &str = "fiche_cluster_log";
/// The notification channel a new command wakes.
pub const COMMAND_CHANNEL: &str = "fiche_cluster_commands";
/// Advisory lock key serialising log appends (any fixed number; "fiche" in ASCII).
const APPEND_LOCK: i64 = 0x0066_6963_6865;

/// A connection waiting for notifications on one channel.
#[derive(Debug)]
pub struct Listener(PgListener);

impl Listener {
    /// Waits for the next notification; an error means the connection broke
    /// (notifications sent meanwhile are lost: read the log after it).
    pub async fn recv(&mut self) -> Result<()> {
        self.0.recv().await?;
        Ok(())
    }
}

/// One node's row in `cluster_nodes`.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct NodeRow {
    /// The node's name.
    pub node: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// Its HTTP address, as configured.
    pub http_addr: String,
}

/// A lease and its holder.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct LeaseRow {
    /// What it is for: `ami:<name>`, `writer`, `webhooks:<target>`, ...
    pub name: String,
    /// Who holds it (or held it last).
    pub node: String,
    /// Since when this holder has it.
    pub acquired_at: DateTime<Utc>,
    /// When it lapses unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// An entry to append to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLogEntry {
    /// The call it belongs to, for call events.
    pub call_id: Option<String>,
    /// With `call_id`, what makes the event unique in its call; a second
    /// entry with the same pair is not stored.
    pub dedupe: Option<String>,
    /// JSON.
    pub body: String,
    /// When its source saw it.
    pub at: DateTime<Utc>,
}

/// An entry read from the log.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct LogEntry {
    /// Its place in the one order of the log.
    pub seq: i64,
    /// The node whose source produced it.
    pub node: String,
    /// JSON.
    pub body: String,
}

/// A command waiting for a lease's holder.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct CommandRow {
    /// Its id, to answer it.
    pub id: i64,
    /// JSON.
    pub body: String,
}

impl Store {
    /// The PostgreSQL pool, or why there is no cluster on this database.
    fn cluster_pool(&self) -> Result<&PgPool> {
        match &self.backend {
            Backend::Postgres(pool) => Ok(pool),
            Backend::Sqlite(_) => Err(StoreError::Invalid {
                field: "cluster",
                reason: "several nodes need PostgreSQL; SQLite serves one node".into(),
            }),
        }
    }

    /// Whether this store can hold a cluster (PostgreSQL).
    pub fn supports_cluster(&self) -> bool {
        self.cluster_pool().is_ok()
    }

    /// A connection listening on `channel`.
    pub async fn listen(&self, channel: &str) -> Result<Listener> {
        let mut listener = PgListener::connect_with(self.cluster_pool()?).await?;
        listener.listen(channel).await?;
        Ok(Listener(listener))
    }

    /// Records `node`'s heartbeat. Refuses a node name whose other holder beat
    /// within `alive` and started at another time: two live nodes never share a name.
    pub async fn cluster_heartbeat(
        &self,
        node: &str,
        started_at: DateTime<Utc>,
        http_addr: &str,
        alive: Duration,
    ) -> Result<()> {
        let pool = self.cluster_pool()?;
        let alive = chrono::Duration::from_std(alive).unwrap_or(chrono::Duration::MAX);
        let updated = sqlx::query(
            "INSERT INTO cluster_nodes (node, started_at, heartbeat_at, http_addr) \
             VALUES ($1, $2, now(), $3) \
             ON CONFLICT (node) DO UPDATE SET started_at = $2, heartbeat_at = now(), http_addr = $3 \
             WHERE cluster_nodes.started_at = $2 OR cluster_nodes.heartbeat_at < now() - $4",
        )
        .bind(node)
        .bind(started_at)
        .bind(http_addr)
        .bind(alive)
        .execute(pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::Conflict {
                entity: "cluster node",
                field: "node",
            });
        }
        Ok(())
    }

    /// Every node that ever beat, latest first.
    pub async fn cluster_nodes(&self) -> Result<Vec<NodeRow>> {
        Ok(sqlx::query_as(
            "SELECT node, started_at, heartbeat_at, http_addr FROM cluster_nodes \
             ORDER BY heartbeat_at DESC, node",
        )
        .fetch_all(self.cluster_pool()?)
        .await?)
    }

    /// Takes or renews lease `name` for `node` until `ttl` from now; true
    /// when `node` holds it. Someone else's lease is taken only once expired.
    /// The database's clock decides, so the nodes' clocks may disagree.
    pub async fn lease_acquire(&self, name: &str, node: &str, ttl: Duration) -> Result<bool> {
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let held: Option<(String,)> = sqlx::query_as(
            "INSERT INTO cluster_leases (name, node, acquired_at, expires_at) \
             VALUES ($1, $2, now(), now() + $3) \
             ON CONFLICT (name) DO UPDATE SET \
               acquired_at = CASE WHEN cluster_leases.node = $2 \
                 THEN cluster_leases.acquired_at ELSE now() END, \
               node = $2, expires_at = now() + $3 \
             WHERE cluster_leases.node = $2 OR cluster_leases.expires_at < now() \
             RETURNING node",
        )
        .bind(name)
        .bind(node)
        .bind(ttl)
        .fetch_optional(self.cluster_pool()?)
        .await?;
        Ok(held.is_some())
    }

    /// Gives lease `name` up, if `node` holds it, so another node takes it at once.
    pub async fn lease_release(&self, name: &str, node: &str) -> Result<()> {
        sqlx::query(
            "UPDATE cluster_leases SET expires_at = now() - interval '1 second' \
             WHERE name = $1 AND node = $2",
        )
        .bind(name)
        .bind(node)
        .execute(self.cluster_pool()?)
        .await?;
        Ok(())
    }

    /// Every lease, held or lapsed.
    pub async fn cluster_leases(&self) -> Result<Vec<LeaseRow>> {
        Ok(sqlx::query_as(
            "SELECT name, node, acquired_at, expires_at FROM cluster_leases ORDER BY name",
        )
        .fetch_all(self.cluster_pool()?)
        .await?)
    }

    /// Appends `entries` from `node` in one transaction, skipping those already
    /// stored (same call and dedupe key), and wakes the listeners. Returns
    /// which entries were stored (false: another node stored the same one first).
    pub async fn log_append(&self, node: &str, entries: &[NewLogEntry]) -> Result<Vec<bool>> {
        let pool = self.cluster_pool()?;
        let mut tx = pool.begin().await?;
        // Rows become visible in seq order: see the module's comment.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK)
            .execute(&mut *tx)
            .await?;
        // One statement for the whole batch: one round trip, rows numbered in
        // the batch's order.
        let mut call_ids = Vec::with_capacity(entries.len());
        let mut dedupes = Vec::with_capacity(entries.len());
        let mut ats = Vec::with_capacity(entries.len());
        let mut bodies = Vec::with_capacity(entries.len());
        for entry in entries {
            call_ids.push(entry.call_id.clone());
            dedupes.push(entry.dedupe.clone());
            ats.push(entry.at);
            bodies.push(entry.body.clone());
        }
        let inserted: Vec<(Option<String>, Option<String>)> = sqlx::query_as(
            "INSERT INTO cluster_events (node, call_id, dedupe, at, body) \
             SELECT $1, call_id, dedupe, at, body FROM \
               UNNEST($2::text[], $3::text[], $4::timestamptz[], $5::text[]) \
               WITH ORDINALITY AS batch (call_id, dedupe, at, body, n) ORDER BY n \
             ON CONFLICT DO NOTHING RETURNING call_id, dedupe",
        )
        .bind(node)
        .bind(&call_ids)
        .bind(&dedupes)
        .bind(&ats)
        .bind(&bodies)
        .fetch_all(&mut *tx)
        .await?;
        let inserted: std::collections::HashSet<(String, String)> = inserted
            .into_iter()
            .filter_map(|(call, key)| Some((call?, key?)))
            .collect();
        // Entries without a key (ticket changes) are always stored.
        let stored: Vec<bool> = entries
            .iter()
            .map(|e| match (&e.call_id, &e.dedupe) {
                (Some(call), Some(key)) => inserted.contains(&(call.clone(), key.clone())),
                _ => true,
            })
            .collect();
        if stored.iter().any(|s| *s) {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(LOG_CHANNEL)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(stored)
    }

    /// Up to `limit` entries after `after`, in order, leaving out `node`'s own
    /// when given.
    pub async fn log_after(
        &self,
        after: i64,
        limit: u32,
        not_from: Option<&str>,
    ) -> Result<Vec<LogEntry>> {
        Ok(sqlx::query_as(
            "SELECT seq, node, body FROM cluster_events \
             WHERE seq > $1 AND ($3::text IS NULL OR node <> $3) ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .bind(not_from)
        .fetch_all(self.cluster_pool()?)
        .await?)
    }

    /// The last seq stored (0 when the log is empty).
    pub async fn log_end(&self) -> Result<i64> {
        let (end,): (Option<i64>,) = sqlx::query_as("SELECT max(seq) FROM cluster_events")
            .fetch_one(self.cluster_pool()?)
            .await?;
        Ok(end.unwrap_or(0))
    }

    /// The call events, up to `until`, of calls seen since `since` that have
    /// no `Ended` in the log: what a node that starts needs to know of calls
    /// in progress. At most `limit` calls, the latest.
    pub async fn log_open_calls(
        &self,
        since: DateTime<Utc>,
        until: i64,
        limit: u32,
    ) -> Result<Vec<LogEntry>> {
        Ok(sqlx::query_as(
            "SELECT seq, node, body FROM cluster_events WHERE seq <= $2 AND call_id IN ( \
               SELECT call_id FROM cluster_events WHERE at >= $1 AND seq <= $2 \
               AND call_id IS NOT NULL GROUP BY call_id \
               HAVING NOT bool_or(dedupe LIKE 'ended%') ORDER BY max(seq) DESC LIMIT $3) \
             ORDER BY seq",
        )
        .bind(since)
        .bind(until)
        .bind(i64::from(limit))
        .fetch_all(self.cluster_pool()?)
        .await?)
    }

    /// Deletes entries older than `before` that every consumer has passed,
    /// then the oldest beyond `max_rows`; returns how many went.
    pub async fn log_prune(&self, before: DateTime<Utc>, max_rows: i64) -> Result<u64> {
        let pool = self.cluster_pool()?;
        let old = sqlx::query(
            "DELETE FROM cluster_events WHERE at < $1 \
             AND seq <= (SELECT COALESCE(min(seq), 0) FROM cluster_cursors)",
        )
        .bind(before)
        .execute(pool)
        .await?
        .rows_affected();
        let over = sqlx::query(
            "DELETE FROM cluster_events WHERE seq <= \
             (SELECT seq FROM cluster_events ORDER BY seq DESC LIMIT 1 OFFSET $1)",
        )
        .bind(max_rows)
        .execute(pool)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM cluster_commands WHERE created_at < $1")
            .bind(before)
            .execute(pool)
            .await?;
        Ok(old + over)
    }

    /// Where the consumer `name` has written up to (0 before its first write).
    pub async fn cursor(&self, name: &str) -> Result<i64> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT seq FROM cluster_cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(self.cluster_pool()?)
            .await?;
        Ok(row.map_or(0, |(seq,)| seq))
    }

    /// Queues a command for the holder of `lease`; returns its id.
    pub async fn command_push(&self, lease: &str, body: &str) -> Result<i64> {
        let pool = self.cluster_pool()?;
        let mut tx = pool.begin().await?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO cluster_commands (lease, body, created_at) VALUES ($1, $2, now()) \
             RETURNING id",
        )
        .bind(lease)
        .bind(body)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(COMMAND_CHANNEL)
            .bind(lease)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Takes the commands waiting for `lease` (each is taken once).
    pub async fn commands_take(&self, lease: &str, node: &str) -> Result<Vec<CommandRow>> {
        Ok(sqlx::query_as(
            "UPDATE cluster_commands SET taken_by = $2 WHERE id IN ( \
               SELECT id FROM cluster_commands WHERE lease = $1 AND taken_by IS NULL \
               ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 100) RETURNING id, body",
        )
        .bind(lease)
        .bind(node)
        .fetch_all(self.cluster_pool()?)
        .await?)
    }

    /// Answers command `id`.
    pub async fn command_answer(&self, id: i64, answer: &str) -> Result<()> {
        sqlx::query("UPDATE cluster_commands SET answer = $2, answered_at = now() WHERE id = $1")
            .bind(id)
            .bind(answer)
            .execute(self.cluster_pool()?)
            .await?;
        Ok(())
    }

    /// Command `id`'s answer, once there is one.
    pub async fn command_answer_of(&self, id: i64) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT answer FROM cluster_commands WHERE id = $1")
                .bind(id)
                .fetch_optional(self.cluster_pool()?)
                .await?;
        Ok(row.and_then(|(answer,)| answer))
    }
}

/// Consumer `name`'s cursor, locked until `conn`'s transaction ends, so that
/// two holders of the same work (one that lost its lease and does not know it
/// yet) never both write the entries after it.
pub(crate) async fn cursor_lock(conn: &mut sqlx::PgConnection, name: &str) -> Result<i64> {
    sqlx::query("INSERT INTO cluster_cursors (name, seq) VALUES ($1, 0) ON CONFLICT DO NOTHING")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    let (seq,): (i64,) =
        sqlx::query_as("SELECT seq FROM cluster_cursors WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
    Ok(seq)
}

/// Moves consumer `name`'s cursor to `seq` (never back).
pub(crate) async fn cursor_set(conn: &mut sqlx::PgConnection, name: &str, seq: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO cluster_cursors (name, seq) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET seq = GREATEST(cluster_cursors.seq, excluded.seq)",
    )
    .bind(name)
    .bind(seq)
    .execute(conn)
    .await?;
    Ok(())
}

impl crate::TicketTx {
    /// Consumer `name`'s cursor, locked for this transaction: log entries at
    /// or before it were written already and must not be written again.
    pub async fn log_cursor(&mut self, name: &str) -> Result<i64> {
        cursor_lock(self.postgres()?, name).await
    }

    /// Moves consumer `name`'s cursor to `seq` when this transaction commits.
    pub async fn log_cursor_set(&mut self, name: &str, seq: i64) -> Result<()> {
        cursor_set(self.postgres()?, name, seq).await
    }

    fn postgres(&mut self) -> Result<&mut sqlx::PgConnection> {
        match &mut self.tx {
            crate::work::Tx::Postgres(open) => Ok(open),
            crate::work::Tx::Sqlite(_) => Err(StoreError::Invalid {
                field: "cluster",
                reason: "several nodes need PostgreSQL; SQLite serves one node".into(),
            }),
        }
    }
}

impl Store {
    /// [`Store::outbox_push`] for log entry `seq`, with consumer `cursor`
    /// moved in the same transaction: `None` when that entry was pushed already
    /// (by this node before a crash, or by the node that held the work before).
    pub async fn outbox_push_logged(
        &self,
        entry: &crate::NewOutboxEntry<'_>,
        max_rows: u64,
        cursor: &str,
        seq: i64,
    ) -> Result<Option<u64>> {
        let keep = i64::try_from(max_rows.max(1)).unwrap_or(i64::MAX);
        let mut tx = self.cluster_pool()?.begin().await?;
        if cursor_lock(&mut tx, cursor).await? >= seq {
            return Ok(None);
        }
        cursor_set(&mut tx, cursor, seq).await?;
        sqlx::query(
            "INSERT INTO webhook_outbox (target, ordering_key, event_type, payload, \
             created_at, attempts, next_attempt_at) VALUES ($1, $2, $3, $4, now(), 0, now())",
        )
        .bind(entry.target)
        .bind(entry.ordering_key)
        .bind(entry.event_type)
        .bind(entry.payload)
        .execute(&mut *tx)
        .await?;
        let dropped = sqlx::query(
            "DELETE FROM webhook_outbox WHERE target = $1 AND id <= \
             (SELECT id FROM webhook_outbox WHERE target = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
        )
        .bind(entry.target)
        .bind(keep)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Some(dropped))
    }
}
