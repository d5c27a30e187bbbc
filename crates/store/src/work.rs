//! One write transaction over calls and tickets, and the drafts an agent saves on
//! a call's card before the call has its ticket.
//!
//! The ticket writer applies a whole batch of call events in one [`TicketTx`]: one
//! commit (one fsync on SQLite) per batch instead of several per event. The same
//! operations exist on [`Store`] as one-transaction shortcuts.
//!
//! Drafts: a note, reason or priority saved while the phone rings goes to
//! `ticket_drafts`, keyed by the call; the writer moves it onto the call's ticket in
//! the transaction that gives the call its ticket ([`TicketTx::apply_drafts`]). Both
//! sides first take a per-call lock ([`TicketTx::lock_call`]), so a save racing with
//! the ticket's creation lands exactly once: either the writer sees the draft, or
//! the save sees the ticket.

use chrono::{DateTime, Utc};
use fiche_model::CallId;
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, Sqlite};

use crate::error::{Result, StoreError};
use crate::sql::{now, stored_time, DbUuid, Dialect};
use crate::tickets::{Ticket, TicketPatch, TicketStatus};
use crate::users::UserId;
use crate::{begin_write, dispatch, Backend, Store};

/// Longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 10_000;
/// Most drafts held for one call; a page saving in a loop is refused beyond.
pub const MAX_DRAFTS_PER_CALL: i64 = 50;

/// An open write transaction over calls and tickets. Dropped without
/// [`TicketTx::commit`], it rolls back.
pub struct TicketTx {
    pub(crate) tx: Tx,
}

pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

/// Runs `$body` with `$conn` bound to the transaction's connection and `$dialect`
/// to its dialect; like `dispatch!` for a [`TicketTx`].
macro_rules! on_tx {
    ($tx:expr, |$conn:ident, $dialect:ident| $body:expr) => {
        match &mut $tx.tx {
            $crate::work::Tx::Sqlite(open) => {
                let $conn: &mut sqlx::SqliteConnection = &mut **open;
                let $dialect = $crate::sql::Dialect::Sqlite;
                $body
            }
            $crate::work::Tx::Postgres(open) => {
                let $conn: &mut sqlx::PgConnection = &mut **open;
                let $dialect = $crate::sql::Dialect::Postgres;
                $body
            }
        }
    };
}
pub(crate) use on_tx;

impl Store {
    /// Begins a write transaction over calls and tickets (on SQLite it takes the
    /// write lock at once).
    pub async fn begin_tickets(&self) -> Result<TicketTx> {
        let tx = match &self.backend {
            Backend::Sqlite(pool) => Tx::Sqlite(begin_write!(pool, Dialect::Sqlite)),
            Backend::Postgres(pool) => Tx::Postgres(begin_write!(pool, Dialect::Postgres)),
        };
        Ok(TicketTx { tx })
    }
}

impl TicketTx {
    /// Makes everything done in the transaction durable.
    pub async fn commit(self) -> Result<()> {
        match self.tx {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    /// Undoes everything done in the transaction.
    pub async fn rollback(self) -> Result<()> {
        match self.tx {
            Tx::Sqlite(tx) => tx.rollback().await?,
            Tx::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }

    /// Serialises the writes about one call's ticket until the transaction ends.
    /// SQLite's write transactions are already serialised (`BEGIN IMMEDIATE`); on
    /// PostgreSQL this takes an advisory lock keyed by the call id.
    pub async fn lock_call(&mut self, call_id: CallId) -> Result<()> {
        on_tx!(self, |conn, dialect| {
            if dialect == Dialect::Postgres {
                let bytes = call_id.0.as_bytes();
                let mut key = [0u8; 8];
                key.copy_from_slice(&bytes[..8]);
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(i64::from_be_bytes(key))
                    .execute(&mut *conn)
                    .await?;
            }
        });
        Ok(())
    }

    /// The user who owns `extension`, if any (the same one as
    /// [`Store::user_for_extension`] when several do).
    pub async fn user_for_extension(&mut self, extension: &str) -> Result<Option<UserId>> {
        let id: Option<i64> = on_tx!(self, |conn, dialect| {
            sqlx::query_scalar(&dialect.sql(
                "SELECT u.id FROM users u JOIN user_extensions e ON e.user_id = u.id \
                 WHERE e.extension = ? ORDER BY lower(u.login) DESC LIMIT 1",
            ))
            .bind(extension.trim())
            .fetch_optional(&mut *conn)
            .await?
        });
        Ok(id.map(UserId))
    }
}

/// What an agent saved on a call's card: each field given changes the ticket,
/// `None` leaves it alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketDraft {
    /// A note to add.
    pub note: Option<String>,
    /// Reason picked.
    pub reason: Option<String>,
    /// Priority (higher is more urgent).
    pub priority: Option<i32>,
    /// Follow-up time.
    pub due_at: Option<DateTime<Utc>>,
    /// Close (or reopen) the ticket.
    pub status: Option<TicketStatus>,
}

impl TicketDraft {
    fn check(&self) -> Result<()> {
        if let Some(note) = &self.note {
            if note.trim().is_empty()
                || note.chars().count() > MAX_NOTE_CHARS
                || note.contains('\0')
            {
                return Err(StoreError::invalid(
                    "note",
                    format!("1 to {MAX_NOTE_CHARS} characters, no NUL"),
                ));
            }
        }
        if let Some(reason) = &self.reason {
            crate::tickets::check_short("reason", reason)?;
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self == &TicketDraft::default()
    }
}

/// What became of a [`TicketDraft`] saved with [`Store::save_call_draft`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DraftSaved {
    /// The call had its ticket: the draft was applied to it.
    Applied(Box<Ticket>),
    /// The call has no ticket yet: the draft waits for it.
    Held,
}

#[derive(sqlx::FromRow)]
struct DraftRow {
    id: i64,
    author_user_id: Option<i64>,
    at: DateTime<Utc>,
    note: Option<String>,
    reason: Option<String>,
    priority: Option<i32>,
    due_at: Option<DateTime<Utc>>,
    status: Option<String>,
}

impl Store {
    /// Saves what an agent typed on the card of call `call_id`: applied at once to
    /// the call's ticket when it has one, otherwise held until the ticket writer
    /// gives the call its ticket. A call that ended without a ticket is refused
    /// (`Invalid` on `call_id`), as is an empty draft.
    pub async fn save_call_draft(
        &self,
        call_id: CallId,
        draft: &TicketDraft,
        author: Option<UserId>,
    ) -> Result<DraftSaved> {
        draft.check()?;
        if draft.is_empty() {
            return Err(StoreError::invalid("draft", "nothing to save"));
        }
        let mut tx = self.begin_tickets().await?;
        tx.lock_call(call_id).await?;
        if let Some(ticket) = tx.ticket_for_call(call_id).await? {
            let ticket = tx.apply_draft(&ticket, draft, author, now()).await?;
            tx.commit().await?;
            return Ok(DraftSaved::Applied(Box::new(ticket)));
        }
        if let Some(call) = tx.get_call(call_id).await? {
            if call.ended_at.is_some() {
                return Err(StoreError::invalid(
                    "call_id",
                    "the call ended without a ticket (its kind makes none)",
                ));
            }
        }
        let held: i64 = on_tx!(tx, |conn, dialect| {
            sqlx::query_scalar(&dialect.sql("SELECT COUNT(*) FROM ticket_drafts WHERE call_id = ?"))
                .bind(DbUuid(call_id.0))
                .fetch_one(&mut *conn)
                .await?
        });
        if held >= MAX_DRAFTS_PER_CALL {
            return Err(StoreError::invalid(
                "call_id",
                format!("at most {MAX_DRAFTS_PER_CALL} saves before the call has its ticket"),
            ));
        }
        let at = now();
        on_tx!(tx, |conn, dialect| {
            sqlx::query(&dialect.sql(
                "INSERT INTO ticket_drafts (call_id, author_user_id, at, note, reason, priority, \
                 due_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ))
            .bind(DbUuid(call_id.0))
            .bind(author.map(|u| u.0))
            .bind(at)
            .bind(draft.note.as_deref().map(str::trim))
            .bind(&draft.reason)
            .bind(draft.priority)
            .bind(draft.due_at.map(stored_time))
            .bind(draft.status.map(TicketStatus::as_str))
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                crate::error::map_db_error(e, Some(("user", "author of the draft".to_owned())))
            })?;
        });
        tx.commit().await?;
        Ok(DraftSaved::Held)
    }

    /// Drafts held for call `call_id` (none once its ticket took them).
    pub async fn call_drafts(&self, call_id: CallId) -> Result<Vec<TicketDraft>> {
        let rows: Vec<DraftRow> = dispatch!(self, |pool, dialect| {
            sqlx::query_as(&dialect.sql(
                "SELECT id, author_user_id, at, note, reason, priority, due_at, status \
                 FROM ticket_drafts WHERE call_id = ? ORDER BY at, id",
            ))
            .bind(DbUuid(call_id.0))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(|row| draft_of(&row)).collect()
    }
}

fn draft_of(row: &DraftRow) -> Result<TicketDraft> {
    let status = match row.status.as_deref() {
        None => None,
        Some("open") => Some(TicketStatus::Open),
        Some("closed") => Some(TicketStatus::Closed),
        Some(other) => {
            return Err(StoreError::Corrupt {
                entity: "ticket_draft",
                field: "status",
                value: other.to_owned(),
            })
        }
    };
    Ok(TicketDraft {
        note: row.note.clone(),
        reason: row.reason.clone(),
        priority: row.priority,
        due_at: row.due_at,
        status,
    })
}

impl TicketTx {
    /// Applies `draft` to `ticket` as `author` did it at `at`: the fields given,
    /// then the note as a "note" event. Returns the ticket as it now is.
    pub(crate) async fn apply_draft(
        &mut self,
        ticket: &Ticket,
        draft: &TicketDraft,
        author: Option<UserId>,
        at: DateTime<Utc>,
    ) -> Result<Ticket> {
        let patch = TicketPatch {
            status: draft.status,
            reason: draft.reason.clone().map(Some),
            priority: draft.priority,
            due_at: draft.due_at.map(Some),
            assignee_user_id: None,
            subject: None,
        };
        let mut updated = if patch == TicketPatch::default() {
            ticket.clone()
        } else {
            self.update_ticket(ticket.id, &patch, author).await?
        };
        if let Some(note) = draft.note.as_deref().map(str::trim) {
            self.insert_event(
                ticket.id,
                author,
                "note",
                None,
                &serde_json::json!({ "text": note }).to_string(),
                at,
            )
            .await?;
            updated = self.get_ticket(ticket.id).await?;
        }
        Ok(updated)
    }

    /// Moves the drafts held for `call_id` onto `ticket` (the call's ticket), oldest
    /// first, and forgets them. Call [`TicketTx::lock_call`] first. Returns the
    /// ticket as it now is when there was any draft.
    pub async fn apply_drafts(
        &mut self,
        call_id: CallId,
        ticket: &Ticket,
    ) -> Result<Option<Ticket>> {
        let mut rows: Vec<DraftRow> = on_tx!(self, |conn, dialect| {
            sqlx::query_as(&dialect.sql(
                "DELETE FROM ticket_drafts WHERE call_id = ? \
                 RETURNING id, author_user_id, at, note, reason, priority, due_at, status",
            ))
            .bind(DbUuid(call_id.0))
            .fetch_all(&mut *conn)
            .await?
        });
        if rows.is_empty() {
            return Ok(None);
        }
        // RETURNING gives no order.
        rows.sort_by_key(|r| (r.at, r.id));
        let mut current = ticket.clone();
        for row in &rows {
            let draft = draft_of(row)?;
            current = self
                .apply_draft(&current, &draft, row.author_user_id.map(UserId), row.at)
                .await?;
        }
        Ok(Some(current))
    }

    /// Whether drafts are held for `call_id`.
    pub async fn has_drafts(&mut self, call_id: CallId) -> Result<bool> {
        let found: Option<i64> = on_tx!(self, |conn, dialect| {
            sqlx::query_scalar(
                &dialect.sql("SELECT id FROM ticket_drafts WHERE call_id = ? LIMIT 1"),
            )
            .bind(DbUuid(call_id.0))
            .fetch_optional(&mut *conn)
            .await?
        });
        Ok(found.is_some())
    }
}
