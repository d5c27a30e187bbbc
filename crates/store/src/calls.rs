//! The call log: one row per call, written idempotently as a call progresses.

use chrono::{DateTime, Utc};
use fiche_model::{CallId, Direction, Outcome, Source, Transfer};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use crate::customers::{check_e164, CustomerId};
use crate::error::{map_db_error, Result, StoreError};
use crate::sql::{now, stored_time, DbUuid};
use crate::work::{on_tx, TicketTx};
use crate::{dispatch, Store};

/// Longest text field of a call (numbers, names, causes), in characters; longer values
/// (an attacker-chosen display name) are cut, not refused, so a call is never lost.
const MAX_FIELD_CHARS: usize = 256;

/// A call as stored, and what [`Store::upsert_call`] writes.
///
/// On upsert, `None` fields leave the stored value alone, so each source can write what
/// it learnt at each step (start, answer, end) without reading first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Must be `CallId::from_source_key(source, source_key)`.
    pub id: CallId,
    /// Where it was observed.
    pub source: Source,
    /// SIP Call-ID, AMI Linkedid or CTI callId.
    pub source_key: String,
    /// Inbound, outbound or internal.
    pub direction: Direction,
    /// Caller's number as signalled.
    pub caller_number: Option<String>,
    /// Caller's display name as signalled: untrusted text, stored as is.
    pub caller_name: Option<String>,
    /// The caller withheld their number.
    pub caller_withheld: bool,
    /// Dialled number or extension.
    pub callee_number: Option<String>,
    /// The outside party normalised (caller of an inbound call, callee of an outbound one).
    pub remote_e164: Option<String>,
    /// The agent extension that answered, or that placed the call.
    pub agent_extension: Option<String>,
    /// Every extension that rang, in order (empty on upsert: left alone).
    #[serde(default)]
    pub rang: Vec<String>,
    /// The first phone that answered, whatever transfers came after.
    pub answered_by: Option<String>,
    /// Each transfer, in order (empty on upsert: left alone).
    #[serde(default)]
    pub transfers: Vec<Transfer>,
    /// Queue or ring group, when the source tells.
    pub queue: Option<String>,
    /// The matched customer.
    pub customer_id: Option<CustomerId>,
    /// When the call started; kept from the first write.
    pub started_at: DateTime<Utc>,
    /// When it was answered.
    pub answered_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// How it ended.
    pub outcome: Option<Outcome>,
    /// Human-readable cause.
    pub cause: Option<String>,
}

/// Whether [`Store::upsert_call`] created the call or updated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallUpsert {
    /// First time this (source, source_key) was written.
    Inserted,
    /// The call existed; its row was completed.
    Updated,
}

pub(crate) fn direction_str(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
        Direction::Internal => "internal",
    }
}

fn corrupt(field: &'static str, value: &str) -> StoreError {
    StoreError::Corrupt {
        entity: "call",
        field,
        value: value.to_owned(),
    }
}

/// A stored direction, or `Corrupt` naming the value.
pub(crate) fn parse_direction(text: &str) -> Result<Direction> {
    match text {
        "inbound" => Ok(Direction::Inbound),
        "outbound" => Ok(Direction::Outbound),
        "internal" => Ok(Direction::Internal),
        other => Err(corrupt("direction", other)),
    }
}

/// A stored outcome (absent while the call goes on), or `Corrupt` naming the value.
pub(crate) fn parse_outcome(text: Option<&str>) -> Result<Option<Outcome>> {
    Ok(match text {
        None => None,
        Some("answered") => Some(Outcome::Answered),
        Some("missed") => Some(Outcome::Missed),
        Some("busy") => Some(Outcome::Busy),
        Some("rejected") => Some(Outcome::Rejected),
        Some("failed") => Some(Outcome::Failed),
        Some("voicemail") => Some(Outcome::Voicemail),
        Some("forwarded") => Some(Outcome::Forwarded),
        Some(other) => return Err(corrupt("outcome", other)),
    })
}

#[derive(FromRow)]
pub(crate) struct CallRow {
    id: DbUuid,
    source: String,
    source_key: String,
    direction: String,
    caller_number: Option<String>,
    caller_name: Option<String>,
    caller_withheld: bool,
    callee_number: Option<String>,
    remote_e164: Option<String>,
    agent_extension: Option<String>,
    rang: Option<String>,
    answered_by: Option<String>,
    transfers: Option<String>,
    queue: Option<String>,
    customer_id: Option<i64>,
    started_at: DateTime<Utc>,
    answered_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    outcome: Option<String>,
    cause: Option<String>,
}

impl TryFrom<CallRow> for Call {
    type Error = StoreError;

    fn try_from(row: CallRow) -> Result<Call> {
        let source = match row.source.as_str() {
            "hep" => Source::Hep,
            "ami" => Source::Ami,
            "cti" => Source::Cti,
            other => return Err(corrupt("source", other)),
        };
        let direction = parse_direction(&row.direction)?;
        let outcome = parse_outcome(row.outcome.as_deref())?;
        let rang = match row.rang.as_deref() {
            None => Vec::new(),
            Some(text) => serde_json::from_str(text).map_err(|_| corrupt("rang", text))?,
        };
        let transfers = match row.transfers.as_deref() {
            None => Vec::new(),
            Some(text) => serde_json::from_str(text).map_err(|_| corrupt("transfers", text))?,
        };
        Ok(Call {
            id: CallId(row.id.0),
            source,
            source_key: row.source_key,
            direction,
            caller_number: row.caller_number,
            caller_name: row.caller_name,
            caller_withheld: row.caller_withheld,
            callee_number: row.callee_number,
            remote_e164: row.remote_e164,
            agent_extension: row.agent_extension,
            rang,
            answered_by: row.answered_by,
            transfers,
            queue: row.queue,
            customer_id: row.customer_id.map(CustomerId),
            started_at: row.started_at,
            answered_at: row.answered_at,
            ended_at: row.ended_at,
            outcome,
            cause: row.cause,
        })
    }
}

pub(crate) const CALL_COLUMNS: &str = "id, source, source_key, direction, caller_number, \
     caller_name, caller_withheld, callee_number, remote_e164, agent_extension, rang, answered_by, \
     transfers, queue, customer_id, started_at, answered_at, ended_at, outcome, cause";

/// Most phones or transfers kept per call: a call that rings a hundred
/// phones is a broadcast, and the log keeps the first ones.
const MAX_PARTIES: usize = 64;

/// `rang` as stored: a JSON array of bounded extensions, NULL when empty.
fn rang_json(rang: &[String]) -> Option<String> {
    if rang.is_empty() {
        return None;
    }
    let bounded: Vec<Option<String>> = rang
        .iter()
        .take(MAX_PARTIES)
        .map(|e| bounded(&Some(e.clone())))
        .collect();
    serde_json::to_string(&bounded).ok()
}

/// `transfers` as stored: a JSON array, NULL when empty.
fn transfers_json(transfers: &[Transfer]) -> Option<String> {
    if transfers.is_empty() {
        return None;
    }
    serde_json::to_string(&transfers[..transfers.len().min(MAX_PARTIES)]).ok()
}

/// `text` cut to [`MAX_FIELD_CHARS`] characters, NULs removed (PostgreSQL refuses them).
fn bounded(text: &Option<String>) -> Option<String> {
    text.as_ref().map(|t| {
        t.chars()
            .filter(|c| *c != '\0')
            .take(MAX_FIELD_CHARS)
            .collect()
    })
}

impl Store {
    /// Writes a call: inserts it the first time its (source, source_key) is seen,
    /// otherwise fills in the fields given (`None` keeps what is stored; `started_at`
    /// never changes). Replaying the same events therefore never duplicates a call.
    /// When the call has a customer, that customer's last contact time moves forward.
    pub async fn upsert_call(&self, call: &Call) -> Result<CallUpsert> {
        let mut tx = self.begin_tickets().await?;
        let done = tx.upsert_call(call).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// The call `id`, if stored.
    pub async fn get_call(&self, id: CallId) -> Result<Option<Call>> {
        let row: Option<CallRow> = dispatch!(self, |pool, dialect| {
            sqlx::query_as(&dialect.sql_owned(one_call_sql()))
                .bind(DbUuid(id.0))
                .fetch_optional(pool)
                .await?
        });
        row.map(Call::try_from).transpose()
    }
}

impl TicketTx {
    /// See [`Store::upsert_call`].
    pub async fn upsert_call(&mut self, call: &Call) -> Result<CallUpsert> {
        if call.source_key.is_empty() || call.source_key.chars().count() > 1024 {
            return Err(StoreError::invalid(
                "source_key",
                "must be 1 to 1024 characters",
            ));
        }
        if call.id != CallId::from_source_key(call.source, &call.source_key) {
            return Err(StoreError::invalid(
                "id",
                "is not the id derived from source and source_key",
            ));
        }
        if let Some(e164) = &call.remote_e164 {
            check_e164("remote_e164", e164)?;
        }
        let id = DbUuid(call.id.0);
        let at = now();
        let customer = call.customer_id.map(|c| ("customer", c.to_string()));
        let map = |e| map_db_error(e, customer.clone());
        on_tx!(self, |tx, dialect| {
            let inserted = sqlx::query(&dialect.sql(
                "INSERT INTO calls (id, source, source_key, direction, caller_number, caller_name, \
                 caller_withheld, callee_number, remote_e164, agent_extension, rang, answered_by, \
                 transfers, queue, customer_id, started_at, answered_at, ended_at, outcome, cause, \
                 updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (source, source_key) DO NOTHING",
            ))
            .bind(id)
            .bind(call.source.as_str())
            .bind(&call.source_key)
            .bind(direction_str(call.direction))
            .bind(bounded(&call.caller_number))
            .bind(bounded(&call.caller_name))
            .bind(call.caller_withheld)
            .bind(bounded(&call.callee_number))
            .bind(&call.remote_e164)
            .bind(bounded(&call.agent_extension))
            .bind(rang_json(&call.rang))
            .bind(bounded(&call.answered_by))
            .bind(transfers_json(&call.transfers))
            .bind(bounded(&call.queue))
            .bind(call.customer_id.map(|c| c.0))
            .bind(stored_time(call.started_at))
            .bind(call.answered_at.map(stored_time))
            .bind(call.ended_at.map(stored_time))
            .bind(call.outcome.map(Outcome::as_str))
            .bind(bounded(&call.cause))
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(map)?
            .rows_affected()
                == 1;
            if !inserted {
                sqlx::query(&dialect.sql(
                    "UPDATE calls SET direction = ?, \
                     caller_number = COALESCE(?, caller_number), \
                     caller_name = COALESCE(?, caller_name), \
                     caller_withheld = ?, \
                     callee_number = COALESCE(?, callee_number), \
                     remote_e164 = COALESCE(?, remote_e164), \
                     agent_extension = COALESCE(?, agent_extension), \
                     rang = COALESCE(?, rang), \
                     answered_by = COALESCE(?, answered_by), \
                     transfers = COALESCE(?, transfers), \
                     queue = COALESCE(?, queue), \
                     customer_id = COALESCE(?, customer_id), \
                     answered_at = COALESCE(?, answered_at), \
                     ended_at = COALESCE(?, ended_at), \
                     outcome = COALESCE(?, outcome), \
                     cause = COALESCE(?, cause), \
                     updated_at = ? \
                     WHERE source = ? AND source_key = ?",
                ))
                .bind(direction_str(call.direction))
                .bind(bounded(&call.caller_number))
                .bind(bounded(&call.caller_name))
                .bind(call.caller_withheld)
                .bind(bounded(&call.callee_number))
                .bind(&call.remote_e164)
                .bind(bounded(&call.agent_extension))
                .bind(rang_json(&call.rang))
                .bind(bounded(&call.answered_by))
                .bind(transfers_json(&call.transfers))
                .bind(bounded(&call.queue))
                .bind(call.customer_id.map(|c| c.0))
                .bind(call.answered_at.map(stored_time))
                .bind(call.ended_at.map(stored_time))
                .bind(call.outcome.map(Outcome::as_str))
                .bind(bounded(&call.cause))
                .bind(at)
                .bind(call.source.as_str())
                .bind(&call.source_key)
                .execute(&mut *tx)
                .await
                .map_err(map)?;
            }
            // The customer's last contact is the stored start of the call (kept from
            // the first write), for whichever customer the row now names.
            let (started_at, customer_id): (DateTime<Utc>, Option<i64>) =
                sqlx::query_as(&dialect.sql(
                    "SELECT started_at, customer_id FROM calls WHERE source = ? AND source_key = ?",
                ))
                .bind(call.source.as_str())
                .bind(&call.source_key)
                .fetch_one(&mut *tx)
                .await?;
            if let Some(customer_id) = customer_id {
                sqlx::query(&dialect.sql(
                    "UPDATE customers SET last_contact_at = ? \
                     WHERE id = ? AND (last_contact_at IS NULL OR last_contact_at < ?)",
                ))
                .bind(started_at)
                .bind(customer_id)
                .bind(started_at)
                .execute(&mut *tx)
                .await?;
            }
            Ok(if inserted {
                CallUpsert::Inserted
            } else {
                CallUpsert::Updated
            })
        })
    }

    /// See [`Store::get_call`].
    pub async fn get_call(&mut self, id: CallId) -> Result<Option<Call>> {
        let row: Option<CallRow> = on_tx!(self, |conn, dialect| {
            sqlx::query_as(&dialect.sql_owned(one_call_sql()))
                .bind(DbUuid(id.0))
                .fetch_optional(&mut *conn)
                .await?
        });
        row.map(Call::try_from).transpose()
    }
}

fn one_call_sql() -> String {
    format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = ?")
}
