//! `/api/tickets`: list with filters, read with history and calls, change,
//! notes; `POST /api/calls/{id}/ticket`, the card's save, which works from the
//! first ring (held as a draft until the call has its ticket); and
//! `POST /api/customers/{id}/phones`, the pop card's "attach this number to an
//! existing customer".

use super::error::ApiError;
use super::{ApiPath, AppState};
use crate::auth::CurrentUser;
use crate::authz::{
    live_call_concerns, logged_call_concerns, may_assign, may_change_ticket, sees_everything,
};
use crate::tickets::summary;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use fiche_hub::Priority;
use fiche_matcher::{format_display, normalise, NumberKind};
use fiche_pbx::{CallId, Direction, Outcome, Transfer};
use fiche_store::{
    Assignee, Call, Customer, CustomerId, DraftSaved, NewPhone, NewTicketEvent, Ticket,
    TicketDraft, TicketEvent, TicketId, TicketKind, TicketPatch, TicketQuery, TicketStatus, UserId,
    MAX_NOTE_CHARS,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The ticket routes and the attach-number route, with their full paths.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/tickets", get(list))
        .route("/api/tickets/{id}", get(read).patch(change))
        .route("/api/tickets/{id}/notes", post(add_note))
        .route("/api/calls/{id}/ticket", post(save_for_call))
        .route("/api/customers/{id}/phones", post(attach_phone))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    status: Option<TicketStatus>,
    kind: Option<TicketKind>,
    /// `me`, `group` or a user id.
    assignee: Option<String>,
    customer_id: Option<i64>,
    q: Option<String>,
    #[serde(default)]
    overdue: bool,
    #[serde(default)]
    limit: u32,
    #[serde(default)]
    offset: u32,
}

/// The call a ticket last saw.
#[derive(Debug, Serialize)]
struct LastCall {
    direction: Direction,
    outcome: Option<Outcome>,
    agent_extension: Option<String>,
    /// Every phone that rang, in order.
    rang: Vec<String>,
    /// The first phone that answered.
    answered_by: Option<String>,
    /// Each transfer: kind, who transferred, who was sent on, to whom.
    transfers: Vec<Transfer>,
    started_at: DateTime<Utc>,
    duration_secs: Option<i64>,
    wait_secs: Option<i64>,
}

/// A ticket as the API shows it.
#[derive(Debug, Serialize)]
struct ApiTicket {
    id: i64,
    kind: TicketKind,
    status: TicketStatus,
    subject: String,
    reason: Option<String>,
    priority: Priority,
    call_id: Option<CallId>,
    customer_id: Option<i64>,
    customer_name: Option<String>,
    phone_e164: Option<String>,
    phone_display: Option<String>,
    assignee_user_id: Option<i64>,
    assignee_name: Option<String>,
    assignee_group: Option<String>,
    /// The queue or line the call came through, as the phone system names it.
    queue: Option<String>,
    due_at: Option<DateTime<Utc>>,
    attempts: i32,
    attempt_times: Vec<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
    last_call: Option<LastCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<TicketEvent>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    calls: Option<Vec<Call>>,
}

#[derive(Debug, Serialize)]
struct TicketPage {
    total: u64,
    items: Vec<ApiTicket>,
}

fn last_call(call: &Call) -> LastCall {
    LastCall {
        direction: call.direction,
        outcome: call.outcome,
        agent_extension: call.agent_extension.clone(),
        rang: call.rang.clone(),
        answered_by: call.answered_by.clone(),
        transfers: call.transfers.clone(),
        started_at: call.started_at,
        duration_secs: match (call.answered_at, call.ended_at) {
            (Some(a), Some(e)) => Some((e - a).num_seconds().max(0)),
            _ => None,
        },
        wait_secs: call
            .answered_at
            .map(|a| (a - call.started_at).num_seconds().max(0)),
    }
}

/// Names of customers and users the tickets mention, read once per answer.
struct Names {
    customers: HashMap<i64, String>,
    users: HashMap<i64, String>,
}

async fn names(state: &AppState, tickets: &[Ticket]) -> Result<Names, ApiError> {
    let mut ids: Vec<CustomerId> = tickets.iter().filter_map(|t| t.customer_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let customers = state
        .store
        .get_customers(&ids)
        .await?
        .into_iter()
        .map(|c| (c.id.0, c.name))
        .collect();
    let users = if tickets.iter().any(|t| t.assignee_user_id.is_some()) {
        state
            .store
            .list_users()
            .await?
            .into_iter()
            .map(|u| (u.id.0, u.display_name))
            .collect()
    } else {
        HashMap::new()
    };
    Ok(Names { customers, users })
}

async fn to_api(
    state: &AppState,
    ticket: Ticket,
    names: &Names,
    full: bool,
) -> Result<ApiTicket, ApiError> {
    let events = state.store.ticket_events(ticket.id).await?;
    let mut attempt_times = Vec::new();
    let call_ids = state.store.ticket_call_ids(ticket.id).await?;
    let calls = state.store.calls_by_ids(&call_ids).await?;
    if ticket.kind == TicketKind::Callback {
        if let Some(first) = ticket
            .call_id
            .and_then(|id| calls.iter().find(|c| c.id == id))
        {
            attempt_times.push(first.started_at);
        }
        for event in events.iter().filter(|e| e.kind == "attempt") {
            let at = event
                .call_id
                .and_then(|id| calls.iter().find(|c| c.id == id))
                .map_or(event.at, |c| c.started_at);
            attempt_times.push(at);
        }
    }
    let last = calls.iter().max_by_key(|c| c.started_at).map(last_call);
    let phone_display = ticket
        .phone_e164
        .as_deref()
        .map(|e| format_display(e, &state.policy));
    Ok(ApiTicket {
        id: ticket.id.0,
        kind: ticket.kind,
        status: ticket.status,
        subject: ticket.subject,
        reason: ticket.reason,
        priority: Priority::from_level(ticket.priority),
        call_id: ticket.call_id,
        customer_id: ticket.customer_id.map(|c| c.0),
        customer_name: ticket
            .customer_id
            .and_then(|c| names.customers.get(&c.0).cloned()),
        phone_e164: ticket.phone_e164,
        phone_display,
        assignee_user_id: ticket.assignee_user_id.map(|u| u.0),
        assignee_name: ticket
            .assignee_user_id
            .and_then(|u| names.users.get(&u.0).cloned()),
        assignee_group: ticket.assignee_group,
        queue: ticket.queue,
        due_at: ticket.due_at,
        attempts: ticket.attempts,
        attempt_times,
        created_at: ticket.created_at,
        updated_at: ticket.updated_at,
        closed_at: ticket.closed_at,
        last_call: last,
        events: full.then_some(events),
        calls: full.then_some(calls),
    })
}

async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<TicketPage>, ApiError> {
    let Query(params) = params?;
    let assignee = match params.assignee.as_deref() {
        None | Some("") => None,
        Some("me") => Some(Assignee::User(UserId(user.id))),
        Some("group") => Some(Assignee::Group),
        Some(other) => Some(Assignee::User(UserId(other.parse().map_err(|_| {
            ApiError::Invalid {
                field: "assignee".into(),
                message: "me, group or a user id".into(),
            }
        })?))),
    };
    let query = TicketQuery {
        status: params.status,
        kind: params.kind,
        assignee,
        customer_id: params.customer_id.map(CustomerId),
        q: params.q,
        overdue_at: params.overdue.then(Utc::now),
        limit: super::page_limit(params.limit)?,
        offset: params.offset,
    };
    let (total, tickets) = state.store.list_tickets(&query).await?;
    let names = names(&state, &tickets).await?;
    let mut items = Vec::with_capacity(tickets.len());
    for ticket in tickets {
        items.push(to_api(&state, ticket, &names, false).await?);
    }
    Ok(Json(TicketPage { total, items }))
}

async fn read(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ApiTicket>, ApiError> {
    let ticket = state.store.get_ticket(TicketId(id)).await?;
    let names = names(&state, std::slice::from_ref(&ticket)).await?;
    Ok(Json(to_api(&state, ticket, &names, true).await?))
}

/// `null` in JSON clears a field; absent leaves it alone.
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchInput {
    status: Option<TicketStatus>,
    #[serde(default, deserialize_with = "nullable")]
    reason: Option<Option<String>>,
    priority: Option<Priority>,
    #[serde(default, deserialize_with = "nullable")]
    due_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "nullable")]
    assignee_user_id: Option<Option<i64>>,
    subject: Option<String>,
}

async fn change(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    input: Result<Json<PatchInput>, JsonRejection>,
) -> Result<Json<ApiTicket>, ApiError> {
    let Json(input) = input?;
    // Checked on the ticket as read now, outside the update's transaction: a
    // supervisor's reassignment landing in between lets this one change through.
    let current = state.store.get_ticket(TicketId(id)).await?;
    may_change_ticket(&user, current.assignee_user_id)?;
    if let Some(to) = input.assignee_user_id {
        may_assign(&user, to.map(UserId))?;
    }
    let patch = TicketPatch {
        status: input.status,
        reason: input.reason,
        priority: input.priority.map(Priority::level),
        due_at: input.due_at,
        assignee_user_id: input.assignee_user_id.map(|a| a.map(UserId)),
        subject: input.subject,
    };
    let ticket = state
        .store
        .update_ticket(TicketId(id), &patch, Some(UserId(user.id)))
        .await?;
    let names = names(&state, std::slice::from_ref(&ticket)).await?;
    published(&state, &ticket, &names).await;
    Ok(Json(to_api(&state, ticket, &names, true).await?))
}

/// Publishes a ticket changed through the API to the hub and the feed, and the
/// assignee's open-callback count when a callback changed.
async fn published(state: &AppState, ticket: &Ticket, names: &Names) {
    let changed = summary(
        ticket,
        ticket
            .customer_id
            .and_then(|c| names.customers.get(&c.0).cloned()),
    );
    state.hub.publish_ticket(&changed);
    state.tickets_feed.send(changed).await;
    if ticket.kind == TicketKind::Callback {
        if let Some(user) = ticket.assignee_user_id {
            push_open_callbacks(state, user).await;
        }
    }
}

/// Tells a user how many callbacks they have open.
async fn push_open_callbacks(state: &AppState, user: UserId) {
    if let Ok(counts) = state.store.open_callbacks_per_user().await {
        let n = counts
            .iter()
            .find(|(u, _)| *u == user)
            .map_or(0, |(_, n)| *n);
        state.hub.set_open_callbacks(user.0, n);
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteInput {
    body: String,
}

async fn add_note(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    input: Result<Json<NoteInput>, JsonRejection>,
) -> Result<(StatusCode, Json<TicketEvent>), ApiError> {
    let Json(input) = input?;
    let ticket = state.store.get_ticket(TicketId(id)).await?;
    may_change_ticket(&user, ticket.assignee_user_id)?;
    let body = input.body.trim();
    if body.is_empty() || body.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::Invalid {
            field: "body".into(),
            message: format!("1 to {MAX_NOTE_CHARS} characters"),
        });
    }
    let event = state
        .store
        .add_ticket_event(&NewTicketEvent {
            ticket_id: TicketId(id),
            author_user_id: Some(UserId(user.id)),
            kind: "note".into(),
            call_id: None,
            body: serde_json::json!({ "text": body }),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(event)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallTicketInput {
    note: Option<String>,
    reason: Option<String>,
    priority: Option<Priority>,
    due_at: Option<DateTime<Utc>>,
    status: Option<TicketStatus>,
}

/// What became of a save on a call's card.
#[derive(Debug, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum CallTicketSaved {
    /// Applied to the call's ticket, shown as it now is.
    Applied { ticket: Box<ApiTicket> },
    /// The call has no ticket yet: kept, and put on its ticket when it has one.
    Held { call_id: CallId },
}

/// The card's save: a note, reason, priority, follow-up or status for the ticket
/// of call `id`, from the first ring on. Before the ticket exists (the phone
/// still rings) it is held and lands on the ticket the call makes (its call
/// ticket, or the callback a missed call makes or joins); afterwards it changes
/// that ticket directly. Either way it lands exactly once.
async fn save_for_call(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(call_id): ApiPath<CallId>,
    input: Result<Json<CallTicketInput>, JsonRejection>,
) -> Result<(StatusCode, Json<CallTicketSaved>), ApiError> {
    let Json(input) = input?;
    let note = input
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS) {
        return Err(ApiError::Invalid {
            field: "note".into(),
            message: format!("at most {MAX_NOTE_CHARS} characters"),
        });
    }
    let draft = TicketDraft {
        note: note.map(str::to_owned),
        reason: input.reason.filter(|r| !r.trim().is_empty()),
        priority: input.priority.map(Priority::level),
        due_at: input.due_at,
        status: input.status,
    };
    if draft == TicketDraft::default() {
        return Err(ApiError::Invalid {
            field: "note".into(),
            message: "nothing to save: give a note, reason, priority, due_at or status".into(),
        });
    }
    // Only calls that exist (ringing now, or stored), and, for an agent, only
    // the calls that concern her: a save on a colleague's ringing call would
    // otherwise land on the colleague's ticket, or pre-close its callback.
    let live = state.hub.call(&call_id);
    let logged = match live {
        Some(_) => None,
        None => Some(
            state
                .store
                .get_call(call_id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("call {} not found", call_id.0)))?,
        ),
    };
    if !sees_everything(&user) {
        let concerns = match (&live, &logged) {
            (Some(call), _) => live_call_concerns(&user.extensions, call),
            (None, Some(call)) => logged_call_concerns(&user.extensions, call),
            (None, None) => false,
        };
        if !concerns {
            // What the save would change, the call's ticket, may still be hers.
            let Some(ticket) = state.store.ticket_for_call(call_id).await? else {
                return Err(ApiError::Forbidden(
                    "this call does not concern you: it rings at, or was handled by, a colleague"
                        .into(),
                ));
            };
            may_change_ticket(&user, ticket.assignee_user_id)?;
        }
    }
    match state
        .store
        .save_call_draft(call_id, &draft, Some(UserId(user.id)))
        .await?
    {
        DraftSaved::Applied(ticket) => {
            let ticket = *ticket;
            let names = names(&state, std::slice::from_ref(&ticket)).await?;
            published(&state, &ticket, &names).await;
            let ticket = Box::new(to_api(&state, ticket, &names, true).await?);
            Ok((StatusCode::OK, Json(CallTicketSaved::Applied { ticket })))
        }
        DraftSaved::Held => Ok((
            StatusCode::ACCEPTED,
            Json(CallTicketSaved::Held { call_id }),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhoneInput {
    number: String,
    label: Option<String>,
}

async fn attach_phone(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    input: Result<Json<PhoneInput>, JsonRejection>,
) -> Result<Json<Customer>, ApiError> {
    let Json(input) = input?;
    let e164 = match normalise(&input.number, &state.policy) {
        NumberKind::E164(e164) => e164,
        NumberKind::Extension(_) => {
            return Err(ApiError::Invalid {
                field: "number".into(),
                message: "an internal extension, not a customer's number".into(),
            })
        }
        NumberKind::Withheld | NumberKind::Invalid(_) => {
            return Err(ApiError::Invalid {
                field: "number".into(),
                message: format!("not a phone number: {:?}", input.number),
            })
        }
    };
    let customer_id = CustomerId(id);
    state
        .store
        .add_phone(
            customer_id,
            &NewPhone {
                e164: Some(e164),
                raw: input.number,
                label: input.label,
            },
        )
        .await?;
    let customer = state.store.get_customer(customer_id).await?;
    state.index_customer(&customer);
    Ok(Json(customer))
}
