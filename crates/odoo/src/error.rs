//! Odoo's errors, typed: each names the model and, when Odoo tells it, the field.

use thiserror::Error;

/// What went wrong talking to Odoo.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OdooError {
    /// The login or the API key was refused (`odoo.exceptions.AccessDenied`,
    /// `authenticate` answering `false`, or JSON-2's 401).
    #[error(
        "Odoo refused the login {login:?} with this API key on database {database:?}: {message}"
    )]
    AccessDenied {
        /// The configured login.
        login: String,
        /// The configured database.
        database: String,
        /// What Odoo said.
        message: String,
    },
    /// The user may not do this on this model (`odoo.exceptions.AccessError`, 403).
    #[error("Odoo: the user may not {operation} on {model}: {message}")]
    AccessError {
        /// The model.
        model: String,
        /// The method called.
        operation: String,
        /// What Odoo said.
        message: String,
    },
    /// A field that this database's model does not have (Odoo 19 has no
    /// `res.partner.mobile`, for instance).
    #[error("Odoo: the model {model} has no field {field:?}")]
    UnknownField {
        /// The model.
        model: String,
        /// The field.
        field: String,
    },
    /// A required field was not given (Odoo's "a mandatory field is not set").
    #[error("Odoo: {model}.{field} is required and was not set")]
    MissingField {
        /// The model.
        model: String,
        /// The field.
        field: String,
    },
    /// Odoo refused the values (`odoo.exceptions.ValidationError` or `UserError`, 422).
    #[error("Odoo refused the values for {model}{}: {message}", field.as_deref().map(|f| format!(".{f}")).unwrap_or_default())]
    Validation {
        /// The model.
        model: String,
        /// The field, when the message names one.
        field: Option<String>,
        /// What Odoo said.
        message: String,
    },
    /// The record is gone (`odoo.exceptions.MissingError`).
    #[error("Odoo: a record of {model} no longer exists: {message}")]
    MissingRecord {
        /// The model.
        model: String,
        /// What Odoo said.
        message: String,
    },
    /// The model or method does not exist on this database (module not installed).
    #[error("Odoo has no {model}.{method} (is the module installed?): {message}")]
    NotFound {
        /// The model.
        model: String,
        /// The method.
        method: String,
        /// What Odoo said.
        message: String,
    },
    /// Any other error Odoo reported, with its Python exception name.
    #[error("Odoo error on {model}.{method} ({name}): {message}")]
    Server {
        /// The model (or `common` for the common service).
        model: String,
        /// The method.
        method: String,
        /// Fully qualified exception name, e.g. `builtins.ValueError`.
        name: String,
        /// What Odoo said.
        message: String,
    },
    /// Odoo could not be reached, or did not answer in time.
    #[error("Odoo at {url} cannot be reached: {message}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// The transport's reason.
        message: String,
    },
    /// The answer is not what the API documents (a proxy's error page, a
    /// truncated body, a field of the wrong type).
    #[error("unexpected answer from Odoo to {what}: {message}")]
    Protocol {
        /// The request or the field read.
        what: String,
        /// What was wrong.
        message: String,
    },
    /// The customer file could not be written.
    #[error(transparent)]
    Store(#[from] fiche_store::StoreError),
}

impl OdooError {
    /// True when trying again later may succeed (Odoo down, slow, or a 5xx).
    pub fn is_transient(&self) -> bool {
        matches!(self, OdooError::Unreachable { .. })
    }

    pub(crate) fn protocol(what: impl Into<String>, message: impl Into<String>) -> Self {
        OdooError::Protocol {
            what: what.into(),
            message: message.into(),
        }
    }
}

/// This crate's results.
pub type Result<T, E = OdooError> = std::result::Result<T, E>;
