//! The store's error type: what went wrong, naming the entity and field concerned.

use sqlx::error::ErrorKind;

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The row does not exist.
    #[error("{entity} {id} not found")]
    NotFound {
        /// Kind of row: "customer", "user", "phone", "call", "ticket".
        entity: &'static str,
        /// Its id as text.
        id: String,
    },
    /// A unique value is already used by another row.
    #[error("{entity}: {field} is already used by another {entity}")]
    Conflict {
        /// Kind of row.
        entity: &'static str,
        /// The column whose value collided, e.g. "login", "external_ref", "extension".
        field: &'static str,
    },
    /// The input is not acceptable.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending input field.
        field: &'static str,
        /// Why, in English.
        reason: String,
    },
    /// A stored value could not be read back (edited by hand, or a newer schema).
    #[error("stored {entity}.{field} is unreadable: {value:?}")]
    Corrupt {
        /// Kind of row.
        entity: &'static str,
        /// The column.
        field: &'static str,
        /// What was found.
        value: String,
    },
    /// The database URL is not usable.
    #[error("database URL: {0}")]
    Url(String),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Hashing a password failed.
    #[error("password hashing failed: {0}")]
    Password(String),
    /// The operation does not exist on this backend; the text says what to use instead.
    #[error("{0}")]
    Unsupported(&'static str),
    /// Any other database error (connection lost, disk full, ...).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    pub(crate) fn not_found(entity: &'static str, id: impl ToString) -> Self {
        StoreError::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        StoreError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// Unique constraints of the schema, as (SQLite message fragment, PostgreSQL constraint
/// name, entity, field). SQLite names the columns, PostgreSQL the constraint.
const UNIQUE_CONSTRAINTS: &[(&str, &str, &str, &str)] = &[
    (
        "customers.external_ref",
        "customers_external_ref_key",
        "customer",
        "external_ref",
    ),
    (
        "customer_phones.customer_id, customer_phones.e164",
        "customer_phones_customer_id_e164_key",
        "phone",
        "e164",
    ),
    (
        "index 'users_login_key'",
        "users_login_key",
        "user",
        "login",
    ),
    ("users.login", "users_login_key", "user", "login"),
    (
        "user_extensions.extension",
        "user_extensions_pkey",
        "user",
        "extension",
    ),
    (
        "calls.source, calls.source_key",
        "calls_source_source_key_key",
        "call",
        "source_key",
    ),
    ("calls.id", "calls_pkey", "call", "id"),
    (
        "index 'tickets_call_key'",
        "tickets_call_key",
        "ticket",
        "call_id",
    ),
    ("tickets.call_id", "tickets_call_key", "ticket", "call_id"),
    (
        "cti_tokens.name",
        "cti_tokens_name_key",
        "cti_token",
        "name",
    ),
    (
        "cti_tokens.token_hash",
        "cti_tokens_token_hash_key",
        "cti_token",
        "token_hash",
    ),
];

/// Turns a unique violation into [`StoreError::Conflict`] naming the field, a foreign
/// key violation into [`StoreError::NotFound`] of `missing` (the referenced row the
/// caller passed), and anything else into [`StoreError::Database`].
pub(crate) fn map_db_error(
    err: sqlx::Error,
    missing: Option<(&'static str, String)>,
) -> StoreError {
    let sqlx::Error::Database(db) = &err else {
        return StoreError::Database(err);
    };
    match db.kind() {
        ErrorKind::UniqueViolation => {
            let message = db.message();
            let constraint = db.constraint().unwrap_or("");
            for (sqlite, pg, entity, field) in UNIQUE_CONSTRAINTS {
                if constraint == *pg || message.contains(sqlite) {
                    return StoreError::Conflict { entity, field };
                }
            }
            StoreError::Database(err)
        }
        ErrorKind::ForeignKeyViolation => match missing {
            Some((entity, id)) => StoreError::NotFound { entity, id },
            None => StoreError::Database(err),
        },
        _ => StoreError::Database(err),
    }
}

/// Maps errors of statements that may hit a unique constraint, nothing else.
pub(crate) fn conflict(err: sqlx::Error) -> StoreError {
    map_db_error(err, None)
}
