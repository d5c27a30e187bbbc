//! `/api/calls`: the live-call table, the call log with filters, and
//! click-to-call through AMI.

use super::error::ApiError;
use super::kpis::instant;
use super::AppState;
use crate::auth::CurrentUser;
use crate::authz::{call_log_scope, CallLogScope};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fiche_matcher::normalise;
use fiche_pbx::driver::ami::{AmiCommand, OriginateError};
use fiche_pbx::{Direction, LiveCall, Outcome};
use fiche_store::{Call, CallQuery};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// How long a click-to-call waits for Asterisk's answer.
const ORIGINATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Calls `/api/calls/live` answers when no `limit` is given.
const LIVE_DEFAULT_LIMIT: usize = 1000;
/// Largest `limit` of `/api/calls/live`: one answer stays a few MB at most.
const LIVE_MAX_LIMIT: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LiveParams {
    limit: Option<usize>,
    #[serde(default)]
    offset: usize,
}

/// Live calls and calls ended within the linger time, oldest first, one page
/// at a time (`limit`, `offset`); `X-Total-Count` says how many there are.
/// Agents get what their websocket shows them (the hub decides): the calls
/// ringing at or handled at their extensions.
pub(super) async fn live(
    State(state): State<AppState>,
    user: CurrentUser,
    params: Result<Query<LiveParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    let limit = params.limit.unwrap_or(LIVE_DEFAULT_LIMIT);
    if limit == 0 || limit > LIVE_MAX_LIMIT {
        return Err(ApiError::Invalid {
            field: "limit".into(),
            message: format!("must be between 1 and {LIVE_MAX_LIMIT}"),
        });
    }
    let (total, page): (usize, Vec<LiveCall>) = if crate::authz::sees_everything(&user) {
        state.hub.page_calls(params.offset, limit)
    } else {
        let visible = state.hub.visible_calls(&user.viewer());
        let total = visible.len();
        (
            total,
            visible
                .into_iter()
                .skip(params.offset)
                .take(limit)
                .collect(),
        )
    };
    Ok(([("x-total-count", total.to_string())], Json(page)).into_response())
}

/// The call log and click-to-call, with their full paths.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/calls", get(log))
        .route("/api/calls/originate", post(originate))
        .route("/api/kpis", get(super::kpis::kpis))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogParams {
    from: Option<String>,
    to: Option<String>,
    agent: Option<String>,
    number: Option<String>,
    outcome: Option<Outcome>,
    direction: Option<Direction>,
    #[serde(default)]
    limit: u32,
    #[serde(default)]
    offset: u32,
}

#[derive(Debug, Serialize)]
struct CallPage {
    total: u64,
    items: Vec<Call>,
}

async fn log(
    State(state): State<AppState>,
    user: CurrentUser,
    params: Result<Query<LogParams>, QueryRejection>,
) -> Result<Json<CallPage>, ApiError> {
    let Query(params) = params?;
    // A whole number in any format is searched in its E.164 form too.
    let e164 = params
        .number
        .as_deref()
        .and_then(|n| normalise(n, &state.policy).e164().map(str::to_owned));
    let scope = call_log_scope(&user, e164.is_some(), params.agent.as_deref())?;
    let agent_in = match scope {
        CallLogScope::All | CallLogScope::Number => None,
        CallLogScope::OwnExtensions(extensions) => Some(extensions),
    };
    let number = e164.or(params.number);
    let query = CallQuery {
        from: params
            .from
            .as_deref()
            .map(|t| instant("from", t, false))
            .transpose()?,
        to: params
            .to
            .as_deref()
            .map(|t| instant("to", t, true))
            .transpose()?,
        agent: params.agent,
        agent_in,
        number,
        outcome: params.outcome,
        direction: params.direction,
        limit: super::page_limit(params.limit)?,
        offset: params.offset,
    };
    let (total, items) = state.store.list_calls(&query).await?;
    Ok(Json(CallPage { total, items }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OriginateInput {
    number: String,
}

fn unavailable(code: &str, message: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// Rings the current user's first extension, then dials `number`.
async fn originate(
    State(state): State<AppState>,
    user: CurrentUser,
    input: Result<Json<OriginateInput>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(input) = input?;
    let Some(source) = state.ami.first() else {
        return Ok(unavailable("no_ami", "no AMI source is configured"));
    };
    let Some(extension) = user.extensions.first() else {
        return Err(ApiError::Invalid {
            field: "extensions".into(),
            message: "the current user has no extension to call from".into(),
        });
    };
    let number = input.number.trim().to_owned();
    if number.is_empty() || number.len() > 64 {
        return Err(ApiError::Invalid {
            field: "number".into(),
            message: "1 to 64 characters".into(),
        });
    }
    let (reply, answer) = oneshot::channel();
    let command = AmiCommand::Originate {
        agent_extension: extension.clone(),
        number,
        caller_id: None,
        reply,
    };
    if source.try_send(command).is_err() {
        return Ok(unavailable("ami_busy", "the AMI source is busy or stopped"));
    }
    match tokio::time::timeout(ORIGINATE_TIMEOUT, answer).await {
        Ok(Ok(Ok(call_id))) => Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "call_id": call_id })),
        )
            .into_response()),
        Ok(Ok(Err(OriginateError::Invalid { field, value }))) => Err(ApiError::Invalid {
            field: field.into(),
            message: format!("refused: {value:?}"),
        }),
        Ok(Ok(Err(error))) => Ok(unavailable("ami_refused", &error.to_string())),
        Ok(Err(_)) | Err(_) => Ok(unavailable("ami_timeout", "Asterisk did not answer")),
    }
}
