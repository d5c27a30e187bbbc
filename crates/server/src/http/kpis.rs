//! `GET /api/kpis?from=&to=`: the board's figures for any date range.

use super::error::ApiError;
use super::AppState;
use crate::auth::CurrentUser;
use crate::tickets::figures::figures;
use crate::tickets::local_day;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Local, NaiveDate, Offset, TimeZone, Utc};
use fiche_hub::Figures;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Range {
    from: Option<String>,
    to: Option<String>,
}

/// An RFC 3339 instant, or a local day (its midnight; `end` takes the next midnight).
pub(super) fn instant(field: &str, text: &str, end: bool) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let invalid = || ApiError::Invalid {
        field: field.to_owned(),
        message: "an RFC 3339 time or a date YYYY-MM-DD".into(),
    };
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| invalid())?;
    let day = if end {
        day.succ_opt().ok_or_else(invalid)?
    } else {
        day
    };
    let midnight = day.and_hms_opt(0, 0, 0).ok_or_else(invalid)?;
    Ok(Local
        .from_local_datetime(&midnight)
        .earliest()
        .map_or_else(|| midnight.and_utc(), |t| t.with_timezone(&Utc)))
}

/// Figures of the calls started in the range (default: today, local time);
/// supervisors and admins only.
pub(super) async fn kpis(
    State(state): State<AppState>,
    user: CurrentUser,
    params: Result<Query<Range>, QueryRejection>,
) -> Result<Json<Figures>, ApiError> {
    // The figures are the board's: agents do not get them on the websocket either.
    user.require_supervisor()?;
    let Query(range) = params?;
    let now = Utc::now();
    let (today_from, today_to, today) = local_day(now);
    let from = match &range.from {
        Some(text) => instant("from", text, false)?,
        None => today_from,
    };
    let to = match &range.to {
        Some(text) => instant("to", text, true)?,
        None if range.from.is_some() => now,
        None => today_to,
    };
    if to <= from {
        return Err(ApiError::Invalid {
            field: "to".into(),
            message: "must be after from".into(),
        });
    }
    let offset = Local::now().offset().fix();
    let kpis = state.store.kpis(from, to, now, offset).await?;
    let day = (from == today_from && to == today_to).then_some(today);
    Ok(Json(figures(kpis, day)))
}
