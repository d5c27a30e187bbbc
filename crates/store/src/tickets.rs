//! Tickets and their events: the schema is whole now, the API is the minimum the hub
//! issue builds on (create, read, append an event).

use std::fmt;

use chrono::{DateTime, Utc};
use fiche_model::CallId;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use crate::customers::{check_e164, CustomerId};
use crate::error::{map_db_error, Result, StoreError};
use crate::sql::{now, stored_time, DbUuid};
use crate::users::UserId;
use crate::work::{on_tx, TicketTx};
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

pub use fiche_model::{TicketKind, TicketStatus};

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
    /// The queue or line the call came through, as the phone system names it.
    pub queue: Option<String>,
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
    /// The queue or line the call came through.
    pub queue: Option<String>,
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
    queue: Option<String>,
    due_at: Option<DateTime<Utc>>,
    attempts: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
}

#[derive(FromRow)]
pub(crate) struct TicketEventRow {
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
            queue: row.queue,
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
     reason, priority, assignee_user_id, assignee_group, queue, due_at, attempts, created_at, \
     updated_at, closed_at";

pub(crate) fn check_short(field: &'static str, text: &str) -> Result<()> {
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
        let mut tx = self.begin_tickets().await?;
        let created = tx.insert_ticket(ticket).await?;
        tx.commit().await?;
        created.ok_or(StoreError::Conflict {
            entity: "ticket",
            field: "call_id",
        })
    }

    /// The ticket `id`.
    pub async fn get_ticket(&self, id: TicketId) -> Result<Ticket> {
        let row: Option<TicketRow> = dispatch!(self, |pool, dialect| {
            sqlx::query_as(&dialect.sql_owned(one_ticket_sql("id = ?")))
                .bind(id.0)
                .fetch_optional(pool)
                .await?
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
        let mut tx = self.begin_tickets().await?;
        let row = tx
            .insert_event(
                event.ticket_id,
                event.author_user_id,
                kind,
                event.call_id,
                &body,
                now(),
            )
            .await?;
        tx.commit().await?;
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

fn one_ticket_sql(condition: &str) -> String {
    format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE {condition}")
}

/// The ticket a call created or was linked to, the oldest first.
const TICKET_FOR_CALL: &str = "call_id = ? OR id IN \
     (SELECT ticket_id FROM ticket_events WHERE call_id = ?) ORDER BY id LIMIT 1";
/// The oldest open callback for a number.
const OPEN_CALLBACK_FOR_PHONE: &str =
    "phone_e164 = ? AND kind = 'callback' AND status = 'open' ORDER BY id LIMIT 1";
/// The customer's most recent open ticket.
const OPEN_TICKET_FOR_CUSTOMER: &str =
    "customer_id = ? AND status = 'open' ORDER BY id DESC LIMIT 1";

impl TicketTx {
    /// Creates a ticket; `None` when the call already has one (nothing written).
    pub async fn insert_ticket(&mut self, ticket: &NewTicket) -> Result<Option<Ticket>> {
        check_short("subject", &ticket.subject)?;
        for (field, value) in [
            ("reason", &ticket.reason),
            ("assignee_group", &ticket.assignee_group),
            ("queue", &ticket.queue),
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
        let row: Option<TicketRow> = on_tx!(self, |conn, dialect| {
            // A conflict would abort a PostgreSQL transaction: skip it instead.
            let sql = dialect.sql_owned(format!(
                "INSERT INTO tickets (call_id, customer_id, phone_e164, kind, status, subject, \
                 reason, priority, assignee_user_id, assignee_group, queue, due_at, attempts, \
                 created_at, updated_at, closed_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (call_id) WHERE call_id IS NOT NULL DO NOTHING \
                 RETURNING {TICKET_COLUMNS}"
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
                .bind(&ticket.queue)
                .bind(ticket.due_at.map(stored_time))
                .bind(i32::from(ticket.call_id.is_some()))
                .bind(at)
                .bind(at)
                .bind(closed_at)
                .fetch_optional(&mut *conn)
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
        row.map(Ticket::try_from).transpose()
    }

    /// The ticket `id`.
    pub async fn get_ticket(&mut self, id: TicketId) -> Result<Ticket> {
        let row: Option<TicketRow> = on_tx!(self, |conn, dialect| {
            sqlx::query_as(&dialect.sql_owned(one_ticket_sql("id = ?")))
                .bind(id.0)
                .fetch_optional(&mut *conn)
                .await?
        });
        row.ok_or_else(|| StoreError::not_found("ticket", id))?
            .try_into()
    }

    /// Appends an event (kind and body already checked).
    pub(crate) async fn insert_event(
        &mut self,
        ticket_id: TicketId,
        author: Option<UserId>,
        kind: &str,
        call_id: Option<CallId>,
        body: &str,
        at: DateTime<Utc>,
    ) -> Result<TicketEventRow> {
        let row: TicketEventRow = on_tx!(self, |conn, dialect| {
            sqlx::query_as(&dialect.sql(
                "INSERT INTO ticket_events (ticket_id, at, author_user_id, kind, call_id, body) \
                 VALUES (?, ?, ?, ?, ?, ?) \
                 RETURNING id, ticket_id, at, author_user_id, kind, call_id, body",
            ))
            .bind(ticket_id.0)
            .bind(stored_time(at))
            .bind(author.map(|id| id.0))
            .bind(kind)
            .bind(call_id.map(|id| DbUuid(id.0)))
            .bind(body)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| map_db_error(e, Some(("ticket", ticket_id.to_string()))))?
        });
        Ok(row)
    }

    /// See [`Store::ticket_for_call`].
    pub async fn ticket_for_call(&mut self, call_id: CallId) -> Result<Option<Ticket>> {
        let row: Option<TicketRow> = on_tx!(self, |conn, dialect| {
            sqlx::query_as(&dialect.sql_owned(one_ticket_sql(TICKET_FOR_CALL)))
                .bind(DbUuid(call_id.0))
                .bind(DbUuid(call_id.0))
                .fetch_optional(&mut *conn)
                .await?
        });
        row.map(Ticket::try_from).transpose()
    }

    /// See [`Store::open_callback_for_phone`].
    pub async fn open_callback_for_phone(&mut self, phone_e164: &str) -> Result<Option<Ticket>> {
        let row: Option<TicketRow> = on_tx!(self, |conn, dialect| {
            sqlx::query_as(&dialect.sql_owned(one_ticket_sql(OPEN_CALLBACK_FOR_PHONE)))
                .bind(phone_e164)
                .fetch_optional(&mut *conn)
                .await?
        });
        row.map(Ticket::try_from).transpose()
    }

    /// See [`Store::open_ticket_for_customer`].
    pub async fn open_ticket_for_customer(
        &mut self,
        customer: CustomerId,
    ) -> Result<Option<Ticket>> {
        let row: Option<TicketRow> = on_tx!(self, |conn, dialect| {
            sqlx::query_as(&dialect.sql_owned(one_ticket_sql(OPEN_TICKET_FOR_CUSTOMER)))
                .bind(customer.0)
                .fetch_optional(&mut *conn)
                .await?
        });
        row.map(Ticket::try_from).transpose()
    }

    /// See [`Store::update_ticket`].
    pub async fn update_ticket(
        &mut self,
        id: TicketId,
        patch: &TicketPatch,
        author: Option<UserId>,
    ) -> Result<Ticket> {
        if let Some(subject) = &patch.subject {
            check_short("subject", subject)?;
        }
        if let Some(Some(reason)) = &patch.reason {
            check_short("reason", reason)?;
        }
        let before = self.get_ticket(id).await?;
        let at = now();
        let status = patch.status.unwrap_or(before.status);
        let closed_at = match (before.status, status) {
            (TicketStatus::Open, TicketStatus::Closed) => Some(at),
            (_, TicketStatus::Open) => None,
            (TicketStatus::Closed, TicketStatus::Closed) => before.closed_at,
        };
        let reason = patch.reason.clone().unwrap_or(before.reason.clone());
        let priority = patch.priority.unwrap_or(before.priority);
        let due_at = patch.due_at.unwrap_or(before.due_at);
        let assignee = patch.assignee_user_id.unwrap_or(before.assignee_user_id);
        let subject = patch.subject.clone().unwrap_or(before.subject.clone());
        let row: TicketRow = on_tx!(self, |conn, dialect| {
            let sql = dialect.sql_owned(format!(
                "UPDATE tickets SET status = ?, reason = ?, priority = ?, due_at = ?, \
                 assignee_user_id = ?, subject = ?, updated_at = ?, closed_at = ? \
                 WHERE id = ? RETURNING {TICKET_COLUMNS}"
            ));
            sqlx::query_as(&sql)
                .bind(status.as_str())
                .bind(&reason)
                .bind(priority)
                .bind(due_at.map(stored_time))
                .bind(assignee.map(|u| u.0))
                .bind(&subject)
                .bind(at)
                .bind(closed_at)
                .bind(id.0)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| map_db_error(e, Some(("user", "assigned to the ticket".to_owned()))))?
        });
        if status != before.status {
            let body = serde_json::json!({ "from": before.status, "to": status }).to_string();
            self.insert_event(id, author, "status", None, &body, at)
                .await?;
        }
        row.try_into()
    }

    /// See [`Store::link_call`].
    pub async fn link_call(
        &mut self,
        id: TicketId,
        call_id: CallId,
        kind: &str,
        body: serde_json::Value,
    ) -> Result<Option<Ticket>> {
        let at = now();
        let attempt = i32::from(kind == "attempt");
        let body = body.to_string();
        let row: Option<TicketRow> = on_tx!(self, |conn, dialect| {
            let linked: Option<i64> =
                sqlx::query_scalar(&dialect.sql(
                    "SELECT id FROM ticket_events WHERE ticket_id = ? AND call_id = ? LIMIT 1",
                ))
                .bind(id.0)
                .bind(DbUuid(call_id.0))
                .fetch_optional(&mut *conn)
                .await?;
            let is_own: Option<i64> = sqlx::query_scalar(
                &dialect.sql("SELECT id FROM tickets WHERE id = ? AND call_id = ?"),
            )
            .bind(id.0)
            .bind(DbUuid(call_id.0))
            .fetch_optional(&mut *conn)
            .await?;
            if linked.is_some() || is_own.is_some() {
                None
            } else {
                sqlx::query(&dialect.sql(
                    "INSERT INTO ticket_events (ticket_id, at, author_user_id, kind, call_id, body) \
                     VALUES (?, ?, NULL, ?, ?, ?)",
                ))
                .bind(id.0)
                .bind(at)
                .bind(kind)
                .bind(DbUuid(call_id.0))
                .bind(&body)
                .execute(&mut *conn)
                .await
                .map_err(|e| map_db_error(e, Some(("ticket or call", id.to_string()))))?;
                let sql = dialect.sql_owned(format!(
                    "UPDATE tickets SET attempts = attempts + ?, updated_at = ? WHERE id = ? \
                     RETURNING {TICKET_COLUMNS}"
                ));
                let row: TicketRow = sqlx::query_as(&sql)
                    .bind(attempt)
                    .bind(at)
                    .bind(id.0)
                    .fetch_one(&mut *conn)
                    .await?;
                Some(row)
            }
        });
        row.map(Ticket::try_from).transpose()
    }

    /// See [`Store::close_callbacks_reached`].
    pub async fn close_callbacks_reached(
        &mut self,
        phone_e164: &str,
        call_id: CallId,
    ) -> Result<Vec<Ticket>> {
        let at = now();
        let rows: Vec<TicketRow> = on_tx!(self, |conn, dialect| {
            let sql = dialect.sql_owned(format!(
                "UPDATE tickets SET status = 'closed', closed_at = ?, updated_at = ? \
                 WHERE phone_e164 = ? AND kind = 'callback' AND status = 'open' \
                 AND (call_id IS NULL OR call_id <> ?) RETURNING {TICKET_COLUMNS}"
            ));
            let rows: Vec<TicketRow> = sqlx::query_as(&sql)
                .bind(at)
                .bind(at)
                .bind(phone_e164)
                .bind(DbUuid(call_id.0))
                .fetch_all(&mut *conn)
                .await?;
            for row in &rows {
                sqlx::query(&dialect.sql(
                    "INSERT INTO ticket_events (ticket_id, at, author_user_id, kind, call_id, body) \
                     VALUES (?, ?, NULL, 'reached', ?, '{}')",
                ))
                .bind(row.id)
                .bind(at)
                .bind(DbUuid(call_id.0))
                .execute(&mut *conn)
                .await
                .map_err(|e| map_db_error(e, Some(("call", call_id.0.to_string()))))?;
            }
            rows
        });
        rows.into_iter().map(Ticket::try_from).collect()
    }
}

/// Whose tickets a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignee {
    /// Assigned to this user.
    User(UserId),
    /// Assigned to nobody in particular (the group).
    Group,
}

/// Filters of a ticket list; `None` is "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketQuery {
    /// Open or closed.
    pub status: Option<TicketStatus>,
    /// Call or callback.
    pub kind: Option<TicketKind>,
    /// Whose.
    pub assignee: Option<Assignee>,
    /// About this customer.
    pub customer_id: Option<CustomerId>,
    /// Text in the subject, the number or the customer's name.
    pub q: Option<String>,
    /// Only open tickets whose due time is before this instant.
    pub overdue_at: Option<DateTime<Utc>>,
    /// Page size (capped at [`MAX_PAGE`]); 0 means the default of 50.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u32,
}

/// Largest page a list returns.
pub const MAX_PAGE: u32 = 500;

/// Changes to a ticket; `None` leaves a field alone. For nullable fields,
/// `Some(None)` clears them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketPatch {
    /// Open or closed.
    pub status: Option<TicketStatus>,
    /// Reason picked by the agent.
    pub reason: Option<Option<String>>,
    /// Higher is more urgent.
    pub priority: Option<i32>,
    /// When it should be done.
    pub due_at: Option<Option<DateTime<Utc>>>,
    /// Assigned agent.
    pub assignee_user_id: Option<Option<UserId>>,
    /// Short title.
    pub subject: Option<String>,
}

impl TicketQuery {
    fn page(&self) -> (i64, i64) {
        let limit = match self.limit {
            0 => 50,
            n => n.min(MAX_PAGE),
        };
        (i64::from(limit), i64::from(self.offset))
    }
}

/// One filter value bound to a `?` of a built query.
enum Param {
    Text(String),
    Int(i64),
    Time(DateTime<Utc>),
}

impl Store {
    /// Tickets matching `query`, and how many match in all. Open callbacks come
    /// first by due time (so overdue first), then the rest newest first.
    pub async fn list_tickets(&self, query: &TicketQuery) -> Result<(u64, Vec<Ticket>)> {
        let mut conditions: Vec<&str> = Vec::new();
        let mut params: Vec<Param> = Vec::new();
        if let Some(status) = query.status {
            conditions.push("status = ?");
            params.push(Param::Text(status.as_str().to_owned()));
        }
        if let Some(kind) = query.kind {
            conditions.push("kind = ?");
            params.push(Param::Text(kind.as_str().to_owned()));
        }
        match query.assignee {
            Some(Assignee::User(id)) => {
                conditions.push("assignee_user_id = ?");
                params.push(Param::Int(id.0));
            }
            Some(Assignee::Group) => conditions.push("assignee_user_id IS NULL"),
            None => {}
        }
        if let Some(customer) = query.customer_id {
            conditions.push("customer_id = ?");
            params.push(Param::Int(customer.0));
        }
        if let Some(at) = query.overdue_at {
            conditions.push("status = 'open' AND due_at IS NOT NULL AND due_at < ?");
            params.push(Param::Time(stored_time(at)));
        }
        let like = match self.backend_name() {
            "postgres" => "ILIKE",
            _ => "LIKE",
        };
        let q_condition;
        if let Some(q) = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            check_short("q", q)?;
            let pattern = crate::sql::contains_pattern(q);
            q_condition = format!(
                "(subject {like} ? ESCAPE '\\' OR phone_e164 {like} ? ESCAPE '\\' OR EXISTS \
                 (SELECT 1 FROM customers c WHERE c.id = tickets.customer_id \
                 AND c.name {like} ? ESCAPE '\\'))"
            );
            conditions.push(&q_condition);
            for _ in 0..3 {
                params.push(Param::Text(pattern.clone()));
            }
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let (limit, offset) = query.page();
        macro_rules! bind_all {
            ($query:expr) => {{
                let mut built = $query;
                for param in &params {
                    built = match param {
                        Param::Text(text) => built.bind(text.clone()),
                        Param::Int(n) => built.bind(*n),
                        Param::Time(t) => built.bind(*t),
                    };
                }
                built
            }};
        }
        let (total, rows): (i64, Vec<TicketRow>) = dispatch!(self, |pool, dialect| {
            let count_sql = dialect.sql_owned(format!("SELECT COUNT(*) FROM tickets{filter}"));
            let total: i64 = bind_all!(sqlx::query_scalar(&count_sql))
                .fetch_one(pool)
                .await?;
            let list_sql = dialect.sql_owned(format!(
                "SELECT {TICKET_COLUMNS} FROM tickets{filter} ORDER BY \
                 CASE WHEN kind = 'callback' AND status = 'open' THEN 0 ELSE 1 END, \
                 CASE WHEN kind = 'callback' AND status = 'open' THEN due_at END, \
                 created_at DESC, id DESC LIMIT ? OFFSET ?"
            ));
            let rows = bind_all!(sqlx::query_as(&list_sql))
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
            (total, rows)
        });
        let tickets = rows
            .into_iter()
            .map(Ticket::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok((u64::try_from(total).unwrap_or(0), tickets))
    }

    /// Applies `patch` to ticket `id`; a status change is recorded as a "status"
    /// event by `author`.
    pub async fn update_ticket(
        &self,
        id: TicketId,
        patch: &TicketPatch,
        author: Option<UserId>,
    ) -> Result<Ticket> {
        let mut tx = self.begin_tickets().await?;
        let ticket = tx.update_ticket(id, patch, author).await?;
        tx.commit().await?;
        Ok(ticket)
    }

    /// Dates ticket `id` and its events back to `at` (created, updated, and
    /// closed when it is closed). A ticket is otherwise dated when written:
    /// this is for history written after the fact (`fiche demo`'s company).
    pub async fn backdate_ticket(&self, id: TicketId, at: DateTime<Utc>) -> Result<()> {
        let at = stored_time(at);
        let found = dispatch!(self, |pool, dialect| {
            let mut tx = crate::begin_write!(pool, dialect);
            let found = sqlx::query(&dialect.sql(
                "UPDATE tickets SET created_at = ?, updated_at = ?, \
                 closed_at = CASE WHEN closed_at IS NULL THEN NULL ELSE ? END WHERE id = ?",
            ))
            .bind(at)
            .bind(at)
            .bind(at)
            .bind(id.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(&dialect.sql("UPDATE ticket_events SET at = ? WHERE ticket_id = ?"))
                .bind(at)
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            found
        });
        if found == 0 {
            return Err(StoreError::NotFound {
                entity: "ticket",
                id: id.0.to_string(),
            });
        }
        Ok(())
    }

    /// The ticket a call created or was linked to (merged attempt, reached callback),
    /// if any: how the ticket writer stays idempotent across replays.
    pub async fn ticket_for_call(&self, call_id: CallId) -> Result<Option<Ticket>> {
        let row: Option<TicketRow> = dispatch!(self, |pool, dialect| {
            sqlx::query_as(&dialect.sql_owned(one_ticket_sql(TICKET_FOR_CALL)))
                .bind(DbUuid(call_id.0))
                .bind(DbUuid(call_id.0))
                .fetch_optional(pool)
                .await?
        });
        row.map(Ticket::try_from).transpose()
    }

    /// The oldest open callback for `phone_e164`, where repeated missed calls merge.
    pub async fn open_callback_for_phone(&self, phone_e164: &str) -> Result<Option<Ticket>> {
        let row: Option<TicketRow> = dispatch!(self, |pool, dialect| {
            sqlx::query_as(&dialect.sql_owned(one_ticket_sql(OPEN_CALLBACK_FOR_PHONE)))
                .bind(phone_e164)
                .fetch_optional(pool)
                .await?
        });
        row.map(Ticket::try_from).transpose()
    }

    /// The customer's most recent open ticket of any kind.
    pub async fn open_ticket_for_customer(&self, customer: CustomerId) -> Result<Option<Ticket>> {
        let row: Option<TicketRow> = dispatch!(self, |pool, dialect| {
            sqlx::query_as(&dialect.sql_owned(one_ticket_sql(OPEN_TICKET_FOR_CUSTOMER)))
                .bind(customer.0)
                .fetch_optional(pool)
                .await?
        });
        row.map(Ticket::try_from).transpose()
    }

    /// The customer's open tickets, most urgent first.
    pub async fn open_tickets_for_customer(&self, customer: CustomerId) -> Result<Vec<Ticket>> {
        let rows: Vec<TicketRow> = dispatch!(self, |pool, dialect| {
            let sql = dialect.sql_owned(format!(
                "SELECT {TICKET_COLUMNS} FROM tickets WHERE customer_id = ? AND status = 'open' \
                 ORDER BY priority DESC, id DESC LIMIT 20"
            ));
            sqlx::query_as(&sql)
                .bind(customer.0)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(Ticket::try_from).collect()
    }

    /// Links `call_id` to ticket `id` with an event of `kind` ("attempt" also counts
    /// one more attempt). Linking the same call twice changes nothing: returns
    /// `None` then, else the updated ticket.
    pub async fn link_call(
        &self,
        id: TicketId,
        call_id: CallId,
        kind: &str,
        body: serde_json::Value,
    ) -> Result<Option<Ticket>> {
        let mut tx = self.begin_tickets().await?;
        let ticket = tx.link_call(id, call_id, kind, body).await?;
        tx.commit().await?;
        Ok(ticket)
    }

    /// Closes every open callback for `phone_e164`: the customer was reached by
    /// `call_id`, which is linked to each with a "reached" event. Returns the
    /// tickets closed.
    pub async fn close_callbacks_reached(
        &self,
        phone_e164: &str,
        call_id: CallId,
    ) -> Result<Vec<Ticket>> {
        let mut tx = self.begin_tickets().await?;
        let closed = tx.close_callbacks_reached(phone_e164, call_id).await?;
        tx.commit().await?;
        Ok(closed)
    }

    /// Number of open callbacks assigned to each user.
    pub async fn open_callbacks_per_user(&self) -> Result<Vec<(UserId, u32)>> {
        let rows: Vec<(i64, i64)> = dispatch!(self, |pool, dialect| {
            sqlx::query_as(&dialect.sql(
                "SELECT assignee_user_id, COUNT(*) FROM tickets WHERE kind = 'callback' \
                 AND status = 'open' AND assignee_user_id IS NOT NULL GROUP BY assignee_user_id",
            ))
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(user, n)| (UserId(user), u32::try_from(n).unwrap_or(u32::MAX)))
            .collect())
    }

    /// Ids of the calls a ticket holds: the one that created it, then those linked.
    pub async fn ticket_call_ids(&self, id: TicketId) -> Result<Vec<CallId>> {
        let ids: Vec<DbUuid> = dispatch!(self, |pool, dialect| {
            sqlx::query_scalar(&dialect.sql(
                "SELECT call_id FROM tickets WHERE id = ? AND call_id IS NOT NULL \
                 UNION ALL SELECT call_id FROM ticket_events WHERE ticket_id = ? \
                 AND call_id IS NOT NULL",
            ))
            .bind(id.0)
            .bind(id.0)
            .fetch_all(pool)
            .await?
        });
        let mut out: Vec<CallId> = Vec::new();
        for id in ids {
            if !out.contains(&CallId(id.0)) {
                out.push(CallId(id.0));
            }
        }
        Ok(out)
    }
}
