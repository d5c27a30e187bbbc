//! The HTTP API's error: JSON `{"error": {"code", "field", "message"}}` with the
//! right status. Internal errors are logged and never leaked to the client.

use crate::auth::hasher::HashError;
use crate::auth::AuthError;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fiche_store::StoreError;
use serde::Serialize;
use tracing::error;

/// What a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A field's value is not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault, as named in the request.
        field: String,
        /// Why.
        message: String,
    },
    /// A unique value is already taken.
    #[error("{field} is already used")]
    Conflict {
        /// The field whose value collided.
        field: String,
    },
    /// The body or query string could not be read.
    #[error("{0}")]
    BadRequest(String),
    /// No session, or a bad login (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Logged in, but the role does not allow it (403).
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed attempts (429).
    #[error("{0}")]
    TooManyRequests(String),
    /// The server is saturated for a moment; retry shortly (503).
    #[error("{0}")]
    Busy(String),
    /// Anything else: logged, answered with a generic message.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<HashError> for ApiError {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy => ApiError::Busy(error.to_string()),
            HashError::Stopped => ApiError::Internal(error.into()),
            HashError::Store(error) => error.into(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::BadCredentials | AuthError::Disabled => {
                ApiError::Unauthorized(error.to_string())
            }
            AuthError::Blocked(_) => ApiError::TooManyRequests(error.to_string()),
            AuthError::Forbidden(why) => ApiError::Forbidden(why.into()),
            AuthError::Hash(error) => error.into(),
            AuthError::Store(error) => error.into(),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = match &self {
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::Invalid { field, .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                Some(field.as_str()),
            ),
            ApiError::Conflict { field } => {
                (StatusCode::CONFLICT, "conflict", Some(field.as_str()))
            }
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", None),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::TooManyRequests(_) => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_requests", None)
            }
            ApiError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy", None),
            ApiError::Internal(cause) => {
                error!(error = %format!("{cause:#}"), "internal error answering an API request");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", None)
            }
        };
        let body = Body {
            error: Detail {
                code,
                field,
                message: self.to_string(),
            },
        };
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { entity, id } => {
                ApiError::NotFound(format!("{entity} {id} not found"))
            }
            StoreError::Invalid { field, reason } => ApiError::Invalid {
                field: field.to_owned(),
                message: reason,
            },
            StoreError::Conflict { field, .. } => ApiError::Conflict {
                field: field.to_owned(),
            },
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        // serde's message names the field and position ("missing field `name` at line 1 column 2").
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}
