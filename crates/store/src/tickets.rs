//! Tickets and their events: the schema is whole now, the API is the minimum the hub
//! issue builds on (create, read, append an event).

use std::fmt;

use chrono::{DateTime, Utc};
use fiche_pbx::model::CallId;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use crate::customers::{check_e164, CustomerId};
use crate::error::{map_db_error, Result, StoreError};
use crate::sql::{now, stored_time, DbUuid};
use crate::users::UserId;
use crate::{dispatch, Store};

/// Longest subject, reason or group, in characters.
const MAX_SHORT_CHARS: usize = 512;
/// Longest event body (JSON text), in bytes.
const MAX_BODY_BYTES: usize = 65_536;

/// Id of a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TicketId(pub i64);

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Id of a ticket event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TicketEventId(pub i64);

/// What a ticket is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketKind {
    /// A call that took place.
    Call,
    /// A missed call to return ("à rappeler").
    Callback,
}

/// Whether work remains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketStatus {
    /// Work remains.
    Open,
    /// Done.
    Closed,
}

impl TicketKind {
    fn as_str(self) -> &'static str {
        match self {
            TicketKind::Call => "call",
            TicketKind::Callback => "callback",
        }
    }
}

impl TicketStatus {
    fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Open => "open",
            TicketStatus::Closed => "closed",
        }
    }
}

/// A ticket to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTicket {
    /// The call that created it; a call creates at most one ticket.
    pub call_id: Option<CallId>,
    /// The customer concerned.
    pub customer_id: Option<CustomerId>,
    /// The number to call back (also for callers who are not customers).
    pub phone_e164: Option<String>,
    /// Call or callback.
    pub kind: TicketKind,
    /// Open or closed.
    pub status: TicketStatus,
    /// Short title.
    pub subject: String,
    /// Reason picked by the agent.
    pub reason: Option<String>,
    /// Higher is more urgent; 0 is normal.
    pub priority: i32,
    /// Assigned agent.
    pub assignee_user_id: Option<UserId>,
    /// Assigned group (ring group, queue, team).
    pub assignee_group: Option<String>,
    /// When it should be done.
    pub due_at: Option<DateTime<Utc>>,
}

/// A stored ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Its id.
    pub id: TicketId,
    /// The call that created it.
    pub call_id: Option<CallId>,
    /// The customer concerned.
    pub customer_id: Option<CustomerId>,
    /// The number to call back.
    pub phone_e164: Option<String>,
    /// Call or callback.
    pub kind: TicketKind,
    /// Open or closed.
    pub status: TicketStatus,
    /// Short title.
    pub subject: String,
    /// Reason.
    pub reason: Option<String>,
    /// Higher is more urgent.
    pub priority: i32,
    /// Assigned agent.
    pub assignee_user_id: Option<UserId>,
    /// Assigned group.
    pub assignee_group: Option<String>,
    /// When it should be done.
    pub due_at: Option<DateTime<Utc>>,
    /// Calls counted against it (merged missed calls).
    pub attempts: i32,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When it was closed.
    pub closed_at: Option<DateTime<Utc>>,
}

/// An event to append to a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTicketEvent {
    /// The ticket.
    pub ticket_id: TicketId,
    /// Who did it; `None` for Fiche itself.
    pub author_user_id: Option<UserId>,
    /// "note", "status", "call", "assign", ...
    pub kind: String,
    /// A call linked by this event.
    pub call_id: Option<CallId>,
    /// Details, as JSON; shape depends on `kind`.
    pub body: serde_json::Value,
}

/// A stored ticket event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketEvent {
    /// Its id.
    pub id: TicketEventId,
    /// The ticket.
    pub ticket_id: TicketId,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub author_user_id: Option<UserId>,
    /// What kind.
    pub kind: String,
    /// The linked call.
    pub call_id: Option<CallId>,
    /// Details.
    pub body: serde_json::Value,
}

#[derive(FromRow)]
struct TicketRow {
    id: i64,
    call_id: Option<DbUuid>,
    customer_id: Option<i64>,
    phone_e164: Option<String>,
    kind: String,
    status: String,
    subject: String,
    reason: Option<String>,
    priority: i32,
    assignee_user_id: Option<i64>,
    assignee_group: Option<String>,
    due_at: Option<DateTime<Utc>>,
    attempts: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
}

#[derive(FromRow)]
struct TicketEventRow {
    id: i64,
    ticket_id: i64,
    at: DateTime<Utc>,
    author_user_id: Option<i64>,
    kind: String,
    call_id: Option<DbUuid>,
    body: String,
}

fn corrupt(entity: &'static str, field: &'static str, value: &str) -> StoreError {
    StoreError::Corrupt {
        entity,
        field,
        value: value.to_owned(),
    }
}

impl TryFrom<TicketRow> for Ticket {
    type Error = StoreError;

    fn try_from(row: TicketRow) -> Result<Ticket> {
        let kind = match row.kind.as_str() {
            "call" => TicketKind::Call,
            "callback" => TicketKind::Callback,
            other => return Err(corrupt("ticket", "kind", other)),
        };
        let status = match row.status.as_str() {
            "open" => TicketStatus::Open,
            "closed" => TicketStatus::Closed,
            other => return Err(corrupt("ticket", "status", other)),
        };
        Ok(Ticket {
            id: TicketId(row.id),
            call_id: row.call_id.map(|id| CallId(id.0)),
            customer_id: row.customer_id.map(CustomerId),
            phone_e164: row.phone_e164,
            kind,
            status,
            subject: row.subject,
            reason: row.reason,
            priority: row.priority,
            assignee_user_id: row.assignee_user_id.map(UserId),
            assignee_group: row.assignee_group,
            due_at: row.due_at,
            attempts: row.attempts,
            created_at: row.created_at,
            updated_at: row.updated_at,
            closed_at: row.closed_at,
        })
    }
}

impl TryFrom<TicketEventRow> for TicketEvent {
    type Error = StoreError;

    fn try_from(row: TicketEventRow) -> Result<TicketEvent> {
        let body = serde_json::from_str(&row.body)
            .map_err(|_| corrupt("ticket_event", "body", &row.body))?;
        Ok(TicketEvent {
            id: TicketEventId(row.id),
            ticket_id: TicketId(row.ticket_id),
            at: row.at,
            author_user_id: row.author_user_id.map(UserId),
            kind: row.kind,
            call_id: row.call_id.map(|id| CallId(id.0)),
            body,
        })
    }
}

const TICKET_COLUMNS: &str = "id, call_id, customer_id, phone_e164, kind, status, subject, \
     reason, priority, assignee_user_id, assignee_group, due_at, attempts, created_at, \
     updated_at, closed_at";

fn check_short(field: &'static str, text: &str) -> Result<()> {
    if text.chars().count() > MAX_SHORT_CHARS || text.contains('\0') {
        return Err(StoreError::invalid(
            field,
            format!("at most {MAX_SHORT_CHARS} characters, no NUL"),
        ));
    }
    Ok(())
}

impl Store {
    /// Creates a ticket. A second ticket for the same call is a
    /// [`StoreError::Conflict`] on `call_id`.
    pub async fn insert_ticket(&self, ticket: &NewTicket) -> Result<Ticket> {
        check_short("subject", &ticket.subject)?;
        for (field, value) in [
            ("reason", &ticket.reason),
            ("assignee_group", &ticket.assignee_group),
        ] {
            if let Some(value) = value {
                check_short(field, value)?;
            }
        }
        if let Some(e164) = &ticket.phone_e164 {
            check_e164("phone_e164", e164)?;
        }
        let at = now();
        let closed_at = (ticket.status == TicketStatus::Closed).then_some(at);
        let row: TicketRow = dispatch!(self, |pool, dialect| {
            let sql = dialect.sql_owned(format!(
                "INSERT INTO tickets (call_id, customer_id, phone_e164, kind, status, subject, \
                 reason, priority, assignee_user_id, assignee_group, due_at, attempts, \
                 created_at, updated_at, closed_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {TICKET_COLUMNS}"
            ));
            sqlx::query_as(&sql)
                .bind(ticket.call_id.map(|id| DbUuid(id.0)))
                .bind(ticket.customer_id.map(|id| id.0))
                .bind(&ticket.phone_e164)
                .bind(ticket.kind.as_str())
                .bind(ticket.status.as_str())
                .bind(&ticket.subject)
                .bind(&ticket.reason)
                .bind(ticket.priority)
                .bind(ticket.assignee_user_id.map(|id| id.0))
                .bind(&ticket.assignee_group)
                .bind(ticket.due_at.map(stored_time))
                .bind(i32::from(ticket.call_id.is_some()))
                .bind(at)
                .bind(at)
                .bind(closed_at)
                .fetch_one(pool)
                .await
                // The referenced call, customer or user is missing.
                .map_err(|e| {
                    map_db_error(
                        e,
                        Some((
                            "call, customer or user",
                            "referenced by the ticket".to_owned(),
                        )),
                    )
                })?
        });
        row.try_into()
    }

    /// The ticket `id`.
    pub async fn get_ticket(&self, id: TicketId) -> Result<Ticket> {
        let row: Option<TicketRow> = dispatch!(self, |pool, dialect| {
            let sql =
                dialect.sql_owned(format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?"));
            sqlx::query_as(&sql).bind(id.0).fetch_optional(pool).await?
        });
        row.ok_or_else(|| StoreError::not_found("ticket", id))?
            .try_into()
    }

    /// Appends an event to a ticket.
    pub async fn add_ticket_event(&self, event: &NewTicketEvent) -> Result<TicketEvent> {
        let kind = event.kind.trim();
        if kind.is_empty() {
            return Err(StoreError::invalid("kind", "must not be empty"));
        }
        check_short("kind", kind)?;
        let body = event.body.to_string();
        if body.len() > MAX_BODY_BYTES {
            return Err(StoreError::invalid(
                "body",
                format!("longer than {MAX_BODY_BYTES} bytes"),
            ));
        }
        let row: TicketEventRow = dispatch!(self, |pool, dialect| {
            sqlx::query_as(&dialect.sql(
                "INSERT INTO ticket_events (ticket_id, at, author_user_id, kind, call_id, body) \
                 VALUES (?, ?, ?, ?, ?, ?) \
                 RETURNING id, ticket_id, at, author_user_id, kind, call_id, body",
            ))
            .bind(event.ticket_id.0)
            .bind(now())
            .bind(event.author_user_id.map(|id| id.0))
            .bind(kind)
            .bind(event.call_id.map(|id| DbUuid(id.0)))
            .bind(body)
            .fetch_one(pool)
            .await
            .map_err(|e| map_db_error(e, Some(("ticket", event.ticket_id.to_string()))))?
        });
        row.try_into()
    }

    /// A ticket's events, oldest first.
    pub async fn ticket_events(&self, ticket_id: TicketId) -> Result<Vec<TicketEvent>> {
        let rows: Vec<TicketEventRow> = dispatch!(self, |pool, dialect| {
            sqlx::query_as(&dialect.sql(
                "SELECT id, ticket_id, at, author_user_id, kind, call_id, body \
                 FROM ticket_events WHERE ticket_id = ? ORDER BY at, id",
            ))
            .bind(ticket_id.0)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(TicketEvent::try_from).collect()
    }
}
