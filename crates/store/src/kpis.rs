//! Reporting queries: the day's figures for the supervisor board and the KPI API,
//! and the call log with filters.

use chrono::{DateTime, FixedOffset, Timelike, Utc};
use fiche_model::{CallId, Direction, Outcome};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use crate::calls::{direction_str, parse_direction, parse_outcome, Call, CallRow};
use crate::customers::CustomerId;
use crate::error::{Result, StoreError};
use crate::sql::stored_time;
use crate::{dispatch, Store};

/// Largest page of the call log.
pub const MAX_CALL_PAGE: u32 = 500;
/// Most calls a KPI range reads; beyond, figures cover the first ones only.
const MAX_KPI_CALLS: i64 = 200_000;

/// Figures over a time range.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Kpis {
    /// Inbound calls.
    pub calls_in: u32,
    /// Outbound calls.
    pub calls_out: u32,
    /// Answered inbound calls / inbound calls (`None` without inbound calls).
    pub answered_rate: Option<f64>,
    /// Inbound calls not answered.
    pub missed: u32,
    /// Missed inbound calls whose number still has an open callback.
    pub missed_not_called_back: u32,
    /// Open callbacks past their due time (now).
    pub overdue_callbacks: u32,
    /// Due time of the oldest overdue callback.
    pub oldest_overdue_due_at: Option<DateTime<Utc>>,
    /// Mean seconds from start to answer of answered inbound calls.
    pub average_wait_secs: Option<f64>,
    /// Mean talk time of answered calls that ended, in seconds.
    pub average_duration_secs: Option<f64>,
    /// Open tickets of any kind (now).
    pub open_tickets: u32,
    /// Calls started per hour of the day in `offset`'s time, index 0 = 00:00–00:59.
    pub calls_per_hour: [u32; 24],
}

#[derive(FromRow)]
struct KpiRow {
    direction: String,
    started_at: DateTime<Utc>,
    answered_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    outcome: Option<String>,
    remote_e164: Option<String>,
}

/// What [`Store::kpis`] reads: the calls, numbers with an open callback, open
/// tickets, and (count, oldest due time) of overdue callbacks.
type KpiReads = (Vec<KpiRow>, Vec<String>, i64, (i64, Option<DateTime<Utc>>));

/// Filters of the call log; `None` is "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallQuery {
    /// Started at or after.
    pub from: Option<DateTime<Utc>>,
    /// Started before.
    pub to: Option<DateTime<Utc>>,
    /// Agent extension.
    pub agent: Option<String>,
    /// Only calls handled at one of these extensions (an agent's own log);
    /// `Some` of an empty list matches nothing.
    pub agent_in: Option<Vec<String>>,
    /// Remote number (E.164) or a part of caller/callee numbers.
    pub number: Option<String>,
    /// How it ended.
    pub outcome: Option<Outcome>,
    /// Which way.
    pub direction: Option<Direction>,
    /// Page size; 0 is 50.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u32,
}

const LOG_COLUMNS: &str = crate::calls::CALL_COLUMNS;

fn secs(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 1000.0
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

impl Store {
    /// Figures of the calls started in `[from, to)`; callback and open-ticket counts
    /// are as of `now`. Hours are counted in `offset`'s local time.
    pub async fn kpis(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
        offset: FixedOffset,
    ) -> Result<Kpis> {
        let (rows, open_callbacks, open_tickets, overdue): KpiReads =
            dispatch!(self, |pool, dialect| {
                let rows = sqlx::query_as(&dialect.sql(
                    "SELECT direction, started_at, answered_at, ended_at, outcome, remote_e164 \
                 FROM calls WHERE started_at >= ? AND started_at < ? ORDER BY started_at LIMIT ?",
                ))
                .bind(stored_time(from))
                .bind(stored_time(to))
                .bind(MAX_KPI_CALLS)
                .fetch_all(pool)
                .await?;
                let open_callbacks = sqlx::query_scalar(&dialect.sql(
                    "SELECT DISTINCT phone_e164 FROM tickets WHERE kind = 'callback' \
                 AND status = 'open' AND phone_e164 IS NOT NULL",
                ))
                .fetch_all(pool)
                .await?;
                let open_tickets = sqlx::query_scalar(
                    &dialect.sql("SELECT COUNT(*) FROM tickets WHERE status = 'open'"),
                )
                .fetch_one(pool)
                .await?;
                let overdue = sqlx::query_as(&dialect.sql(
                    "SELECT COUNT(*), MIN(due_at) FROM tickets WHERE kind = 'callback' \
                 AND status = 'open' AND due_at IS NOT NULL AND due_at < ?",
                ))
                .bind(stored_time(now))
                .fetch_one(pool)
                .await?;
                (rows, open_callbacks, open_tickets, overdue)
            });
        let mut kpis = Kpis {
            open_tickets: u32::try_from(open_tickets).unwrap_or(u32::MAX),
            overdue_callbacks: u32::try_from(overdue.0).unwrap_or(u32::MAX),
            oldest_overdue_due_at: overdue.1,
            ..Kpis::default()
        };
        let mut answered_in = 0u32;
        let mut waits = Vec::new();
        let mut durations = Vec::new();
        for row in rows {
            let direction = parse_direction(&row.direction)?;
            let outcome = parse_outcome(row.outcome.as_deref())?;
            let hour = row.started_at.with_timezone(&offset).hour() as usize;
            if let Some(slot) = kpis.calls_per_hour.get_mut(hour) {
                *slot += 1;
            }
            match direction {
                Direction::Inbound => {
                    kpis.calls_in += 1;
                    if let Some(answered) = row.answered_at {
                        answered_in += 1;
                        waits.push(secs(row.started_at, answered));
                    } else if outcome == Some(Outcome::Forwarded) {
                        // Forwarded out by the phone system: handled elsewhere,
                        // neither answered here nor missed.
                    } else if row.ended_at.is_some() || outcome.is_some() {
                        kpis.missed += 1;
                        if row
                            .remote_e164
                            .as_ref()
                            .is_some_and(|n| open_callbacks.contains(n))
                        {
                            kpis.missed_not_called_back += 1;
                        }
                    }
                }
                Direction::Outbound => kpis.calls_out += 1,
                Direction::Internal => {}
            }
            if let (Some(answered), Some(ended)) = (row.answered_at, row.ended_at) {
                durations.push(secs(answered, ended));
            }
        }
        // Calls still ringing are neither answered nor missed yet: counting
        // them would lower the rate for as long as a phone rings.
        let settled = answered_in + kpis.missed;
        if settled > 0 {
            kpis.answered_rate = Some(f64::from(answered_in) / f64::from(settled));
        }
        kpis.average_wait_secs = mean(&waits);
        kpis.average_duration_secs = mean(&durations);
        Ok(kpis)
    }

    /// The call log, newest first, and how many calls match in all.
    pub async fn list_calls(&self, query: &CallQuery) -> Result<(u64, Vec<Call>)> {
        // Placeholders only: the extensions themselves are bound with the texts.
        let agent_in = query
            .agent_in
            .as_ref()
            .map(|extensions| match extensions.len() {
                0 => "1 = 0".to_owned(),
                n => format!("agent_extension IN ({})", vec!["?"; n].join(", ")),
            });
        let mut conditions: Vec<&str> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        let mut times: Vec<DateTime<Utc>> = Vec::new();
        // Times are bound first, then texts, so conditions are ordered the same way.
        if let Some(from) = query.from {
            conditions.push("started_at >= ?");
            times.push(stored_time(from));
        }
        if let Some(to) = query.to {
            conditions.push("started_at < ?");
            times.push(stored_time(to));
        }
        if let Some(agent) = &query.agent {
            conditions.push("agent_extension = ?");
            texts.push(agent.clone());
        }
        if let (Some(extensions), Some(condition)) = (&query.agent_in, &agent_in) {
            conditions.push(condition);
            texts.extend(extensions.iter().cloned());
        }
        if let Some(number) = query
            .number
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            if number.chars().count() > 64 {
                return Err(StoreError::invalid("number", "at most 64 characters"));
            }
            conditions.push(
                "(remote_e164 = ? OR caller_number LIKE ? ESCAPE '\\' OR callee_number LIKE ? ESCAPE '\\')",
            );
            let pattern = crate::sql::contains_pattern(number);
            texts.push(number.to_owned());
            texts.push(pattern.clone());
            texts.push(pattern);
        }
        if let Some(outcome) = query.outcome {
            conditions.push("outcome = ?");
            texts.push(outcome.as_str().to_owned());
        }
        if let Some(direction) = query.direction {
            conditions.push("direction = ?");
            texts.push(direction_str(direction).to_owned());
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let limit = i64::from(match query.limit {
            0 => 50,
            n => n.min(MAX_CALL_PAGE),
        });
        let offset = i64::from(query.offset);
        macro_rules! bind_all {
            ($query:expr) => {{
                let mut built = $query;
                for t in &times {
                    built = built.bind(*t);
                }
                for text in &texts {
                    built = built.bind(text.clone());
                }
                built
            }};
        }
        let (total, rows): (i64, Vec<CallRow>) = dispatch!(self, |pool, dialect| {
            let count_sql = dialect.sql_owned(format!("SELECT COUNT(*) FROM calls{filter}"));
            let total: i64 = bind_all!(sqlx::query_scalar(&count_sql))
                .fetch_one(pool)
                .await?;
            let sql = dialect.sql_owned(format!(
                "SELECT {LOG_COLUMNS} FROM calls{filter} ORDER BY started_at DESC, id LIMIT ? OFFSET ?"
            ));
            let rows = bind_all!(sqlx::query_as(&sql))
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
            (total, rows)
        });
        let calls = rows
            .into_iter()
            .map(Call::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok((u64::try_from(total).unwrap_or(0), calls))
    }

    /// Calls by id, in no particular order; unknown ids are skipped.
    pub async fn calls_by_ids(&self, ids: &[CallId]) -> Result<Vec<Call>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(call) = self.get_call(*id).await? {
                out.push(call);
            }
        }
        Ok(out)
    }

    /// The customer's latest calls, newest first.
    pub async fn recent_calls_for_customer(
        &self,
        customer: CustomerId,
        limit: u32,
    ) -> Result<Vec<Call>> {
        let rows: Vec<CallRow> = dispatch!(self, |pool, dialect| {
            let sql = dialect.sql_owned(format!(
                "SELECT {LOG_COLUMNS} FROM calls WHERE customer_id = ? \
                 ORDER BY started_at DESC LIMIT ?"
            ));
            sqlx::query_as(&sql)
                .bind(customer.0)
                .bind(i64::from(limit.min(MAX_CALL_PAGE)))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(Call::try_from).collect()
    }
}
