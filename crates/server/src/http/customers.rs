//! `/api/customers`: the customer file. Search by name, company, email or any
//! number format; create, read, update, delete; and `lookup`, which answers
//! "who is calling from this number" from the in-memory index.

use super::error::ApiError;
use super::{ApiPath, AppState};
use crate::auth::CurrentUser;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use fiche_matcher::{format_display, normalise, Confidence, NumberKind};
use fiche_store::{Customer, CustomerId, CustomerPage, CustomerQuery, NewCustomer, NewPhone};
use serde::{Deserialize, Serialize};

/// The customer routes, to be nested under `/api`.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/customers", get(search).post(create))
        .route("/customers/lookup", get(lookup))
        .route("/customers/{id}", get(read).put(update).delete(remove))
}

/// A customer as sent by a client: phone numbers as typed, Fiche normalises them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerInput {
    #[serde(default)]
    name: String,
    company: Option<String>,
    email: Option<String>,
    address: Option<String>,
    notes: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    external_ref: Option<String>,
    #[serde(default)]
    phones: Vec<PhoneInput>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhoneInput {
    number: String,
    label: Option<String>,
}

impl CustomerInput {
    fn into_new(self, state: &AppState) -> Result<NewCustomer, ApiError> {
        let mut phones = Vec::with_capacity(self.phones.len());
        for (i, phone) in self.phones.into_iter().enumerate() {
            let field = || format!("phones[{i}].number");
            let e164 = match normalise(&phone.number, &state.policy) {
                NumberKind::E164(e164) => e164,
                NumberKind::Extension(_) => {
                    return Err(ApiError::Invalid {
                        field: field(),
                        message: "an internal extension, not a customer's number".into(),
                    })
                }
                NumberKind::Withheld | NumberKind::Invalid(_) => {
                    return Err(ApiError::Invalid {
                        field: field(),
                        message: format!("not a phone number: {:?}", phone.number),
                    })
                }
            };
            phones.push(NewPhone {
                e164: Some(e164),
                raw: phone.number,
                label: phone.label,
            });
        }
        let customer = NewCustomer {
            name: self.name,
            company: self.company,
            email: self.email,
            address: self.address,
            notes: self.notes,
            tags: self.tags,
            external_ref: self.external_ref,
            phones,
        };
        customer.validate()?;
        Ok(customer)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    /// Words of the name, company or email, or a piece of a number in any format.
    q: Option<String>,
    #[serde(default)]
    limit: u32,
    #[serde(default)]
    offset: u32,
}

async fn search(
    State(state): State<AppState>,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<CustomerPage>, ApiError> {
    let Query(params) = params?;
    let limit = super::page_limit(params.limit)?;
    let text = params.q.filter(|q| !q.trim().is_empty());
    // A query that is a whole number in any format also finds its E.164 form.
    let e164 = text
        .as_deref()
        .and_then(|q| normalise(q, &state.policy).e164().map(str::to_owned));
    let query = |text, e164| CustomerQuery {
        text,
        e164,
        limit,
        offset: params.offset,
    };
    if let Some(e164) = e164 {
        let page = state
            .store
            .search_customers(&query(None, Some(e164)))
            .await?;
        if page.total > 0 {
            return Ok(Json(page));
        }
    }
    Ok(Json(
        state.store.search_customers(&query(text, None)).await?,
    ))
}

async fn read(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Customer>, ApiError> {
    Ok(Json(state.store.get_customer(CustomerId(id)).await?))
}

async fn create(
    State(state): State<AppState>,
    input: Result<Json<CustomerInput>, JsonRejection>,
) -> Result<(StatusCode, Json<Customer>), ApiError> {
    let Json(input) = input?;
    let customer = state
        .store
        .create_customer(&input.into_new(&state)?)
        .await?;
    state.index_customer(&customer);
    Ok((StatusCode::CREATED, Json(customer)))
}

async fn update(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    input: Result<Json<CustomerInput>, JsonRejection>,
) -> Result<Json<Customer>, ApiError> {
    let Json(input) = input?;
    let new = input.into_new(&state)?;
    let customer = state.store.update_customer(CustomerId(id), &new).await?;
    state.index_customer(&customer);
    Ok(Json(customer))
}

/// Deletes a customer and their phones: supervisors and admins only, since
/// the file is shared and a deletion cannot be undone.
async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    user.require_supervisor()?;
    state.store.delete_customer(CustomerId(id)).await?;
    state.unindex_customer(CustomerId(id));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupParams {
    number: String,
}

#[derive(Debug, Serialize)]
struct LookupAnswer {
    /// `customer`, `extension`, `withheld` or `invalid`.
    kind: &'static str,
    e164: Option<String>,
    /// The number as an agent reads it ("06 12 34 56 78").
    display: Option<String>,
    matches: Vec<LookupMatch>,
}

#[derive(Debug, Serialize)]
struct LookupMatch {
    /// `exact`, or `last_digits` for a number stored in a form that could not be normalised.
    confidence: &'static str,
    customer: Customer,
}

/// Who is calling from `number`: every customer with that number, exact
/// matches first, most recent contact first.
async fn lookup(
    State(state): State<AppState>,
    params: Result<Query<LookupParams>, QueryRejection>,
) -> Result<Json<LookupAnswer>, ApiError> {
    let Query(params) = params?;
    let number = normalise(&params.number, &state.policy);
    let kind = match &number {
        NumberKind::E164(_) => "customer",
        NumberKind::Extension(_) => "extension",
        NumberKind::Withheld => "withheld",
        NumberKind::Invalid(_) => "invalid",
    };
    let found = state.lookup(&number);
    let ids: Vec<CustomerId> = found.iter().map(|m| CustomerId(m.customer_id.0)).collect();
    let mut customers = state.store.get_customers(&ids).await?;
    let mut matches = Vec::with_capacity(found.len());
    for m in found {
        if let Some(at) = customers.iter().position(|c| c.id.0 == m.customer_id.0) {
            matches.push(LookupMatch {
                confidence: match m.confidence {
                    Confidence::Exact => "exact",
                    Confidence::LastDigits => "last_digits",
                },
                customer: customers.swap_remove(at),
            });
        }
    }
    let e164 = number.e164().map(str::to_owned);
    let display = e164.as_deref().map(|e| format_display(e, &state.policy));
    Ok(Json(LookupAnswer {
        kind,
        e164,
        display,
        matches,
    }))
}
