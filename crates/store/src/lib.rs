//! Fiche's storage: the customer file, its phone numbers, users and their extensions,
//! calls and tickets, behind one typed API over SQLite (embedded default, one file) or
//! PostgreSQL (larger and multi-node installs), chosen by the database URL.
//!
//! SQL stays inside this crate: callers see [`Store`] methods and plain structs. Each
//! query is written once with `?` placeholders and run on whichever backend the store
//! holds; the schema lives in the top-level `migrations/sqlite` and `migrations/postgres`
//! folders and is embedded in the binary.
//!
//! Schema decisions, the same on both backends:
//! - timestamps are UTC, truncated to microseconds before they are written so that both
//!   backends return what was stored: `TIMESTAMPTZ` on PostgreSQL, RFC 3339 `TEXT` on
//!   SQLite (sqlx's chrono mapping; every value has the `+00:00` offset, so text order
//!   is time order);
//! - ids are 64-bit integers, except calls, keyed by the UUID derived from
//!   (source, source_key) (`UUID` on PostgreSQL, hyphenated `TEXT` on SQLite);
//! - JSON (customer tags, ticket event bodies, webhook payloads) is `TEXT` on both;
//! - phone numbers are stored as typed (`raw`) and normalised (`e164`, given by the
//!   matcher); `e164` is indexed, and unique per customer;
//! - `sqlx::Any` is not used: in sqlx 0.8 it maps neither chrono nor uuid types.

mod backup;
mod calls;
mod cluster;
mod cti;
mod customers;
mod error;
mod kpis;
mod odoo;
mod outbox;
mod password;
mod sessions;
mod sql;
mod tickets;
mod users;
mod work;

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use calls::{Call, CallUpsert};
pub use cluster::{
    CommandRow, LeaseRow, Listener, LogEntry, NewLogEntry, NodeRow, COMMAND_CHANNEL, LOG_CHANNEL,
};
pub use cti::CtiToken;
pub use customers::{
    BatchOutcome, CheckedCustomer, Customer, CustomerChange, CustomerId, CustomerPage,
    CustomerQuery, MatchedBy, MergeKeys, MergeMatches, MirrorOutcome, NewCustomer, NewPhone, Phone,
    PhoneEntry, PhoneId, UpsertAction, MAX_BATCH_ROWS, MAX_CHANGES_PAGE, MAX_CUSTOMER_RANGE,
};
pub use error::{Result, StoreError};
pub use kpis::{CallQuery, Kpis, MAX_CALL_PAGE};
pub use outbox::{NewOutboxEntry, OutboxEntry};
pub use password::{HashMemory, PasswordHash};
pub use sessions::Session;
pub use tickets::{
    Assignee, NewTicket, NewTicketEvent, Ticket, TicketEvent, TicketEventId, TicketId, TicketKind,
    TicketPatch, TicketQuery, TicketStatus, MAX_PAGE,
};
pub use users::{NewUser, Role, User, UserId, UserUpdate, UsersStamp};
pub use work::{DraftSaved, TicketDraft, TicketTx, MAX_DRAFTS_PER_CALL, MAX_NOTE_CHARS};

/// How long a SQLite connection waits for another writer before failing with "busy".
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// SQLite allows one writer at a time; a few connections let readers run alongside it.
const SQLITE_MAX_CONNECTIONS: u32 = 4;
/// SQLite page cache per connection, as SQLite's `cache_size` pragma wants it
/// (negative: KiB). Allocated as used; 32 MiB.
const SQLITE_CACHE_KIB: i64 = -32_768;
/// PostgreSQL connections per Fiche process.
const POSTGRES_MAX_CONNECTIONS: u32 = 10;

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// The database, SQLite or PostgreSQL. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the backend's pool and `$dialect` to its
/// [`sql::Dialect`]. The body is written once and compiled for each backend, so the
/// same sqlx calls are type-checked against both.
macro_rules! dispatch {
    ($store:expr, |$pool:ident, $dialect:ident| $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite($pool) => {
                let $dialect = $crate::sql::Dialect::Sqlite;
                $body
            }
            $crate::Backend::Postgres($pool) => {
                let $dialect = $crate::sql::Dialect::Postgres;
                $body
            }
        }
    };
}
pub(crate) use dispatch;

/// Begins a write transaction. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and writes later fails
/// with "database is locked" when another connection wrote in between, without
/// waiting for the busy timeout.
macro_rules! begin_write {
    ($pool:expr, $dialect:expr) => {
        match $dialect {
            $crate::sql::Dialect::Sqlite => $pool.begin_with("BEGIN IMMEDIATE").await?,
            $crate::sql::Dialect::Postgres => $pool.begin().await?,
        }
    };
}
pub(crate) use begin_write;

impl Store {
    /// Opens the database at `url`: `sqlite://PATH` (the file is created on first run;
    /// `sqlite::memory:` for a throw-away database) or `postgres://user@host/db`
    /// (`postgresql://` too; `?options[search_path]=schema` selects a schema).
    ///
    /// SQLite runs in WAL mode with foreign keys enforced and a busy timeout;
    /// `synchronous=NORMAL`, which in WAL mode cannot corrupt the file but may lose the
    /// last transactions on a power cut (not on a crash of Fiche).
    pub async fn connect(url: &str) -> Result<Store> {
        Self::open(url, true).await
    }

    /// [`Store::connect`] to a database that must exist already: a SQLite file
    /// missing is an error rather than a new empty database (what a backup of
    /// the wrong path would otherwise copy).
    pub async fn connect_existing(url: &str) -> Result<Store> {
        Self::open(url, false).await
    }

    async fn open(url: &str, create_sqlite_file: bool) -> Result<Store> {
        let backend = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::Url(format!("{}: {e}", redacted_url(url))))?
                .create_if_missing(create_sqlite_file)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                // Page cache per connection, in KiB (negative): the default 2 MiB is
                // smaller than the indexes of a large customer file.
                .pragma("cache_size", SQLITE_CACHE_KIB.to_string());
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let pool = if in_memory {
                // Every connection to `:memory:` is a separate database: keep exactly one,
                // forever.
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_with(options)
                    .await?
            } else {
                SqlitePoolOptions::new()
                    .max_connections(SQLITE_MAX_CONNECTIONS)
                    .connect_with(options)
                    .await?
            };
            Backend::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| StoreError::Url(format!("{}: {e}", redacted_url(url))))?;
            let pool = PgPoolOptions::new()
                .max_connections(POSTGRES_MAX_CONNECTIONS)
                .connect_with(options)
                .await?;
            Backend::Postgres(pool)
        } else {
            return Err(StoreError::Url(format!(
                "{}: expected sqlite://PATH or postgres://…",
                redacted_url(url)
            )));
        };
        tracing::info!(url = %redacted_url(url), "database connected");
        Ok(Store { backend })
    }

    /// Applies the migrations not applied yet; a no-op when the schema is current.
    pub async fn migrate(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(pool) => SQLITE_MIGRATOR.run(pool).await?,
            Backend::Postgres(pool) => POSTGRES_MIGRATOR.run(pool).await?,
        }
        Ok(())
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(pool) => pool.close().await,
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    /// "sqlite" or "postgres".
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// `url` with its password, if any, replaced by `***`: safe to log or display.
pub fn redacted_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let user_info = &authority[..at];
    let Some(colon) = user_info.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..scheme_end + 3],
        &user_info[..colon],
        &rest[at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(
            redacted_url("postgres://fiche:s3cr@t@db.local:5432/fiche?sslmode=require"),
            "postgres://fiche:***@db.local:5432/fiche?sslmode=require"
        );
        assert_eq!(
            redacted_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redacted_url("sqlite://fiche.db"), "sqlite://fiche.db");
    }
}
