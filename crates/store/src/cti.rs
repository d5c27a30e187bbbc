//! CTI webhook tokens: one per phone system posting to `/api/v1/cti/{token}`.
//!
//! Only a hash of each token is stored (the caller hashes: the store never sees
//! the token itself). A revoked token stays listed, with its revocation time, so
//! an admin can tell "revoked" from "never existed".

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;

use crate::error::{conflict, Result, StoreError};
use crate::sql::now;
use crate::{dispatch, Store};

/// Longest token name, in characters.
const MAX_NAME_CHARS: usize = 64;

/// A stored CTI token (its hash, never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct CtiToken {
    /// Its id.
    pub id: i64,
    /// The name given at creation, e.g. the PBX's name; part of every call key.
    pub name: String,
    /// Hex SHA-256 of the token.
    #[serde(skip)]
    pub token_hash: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last time the token was seen, when recorded.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked; a revoked token is refused.
    pub revoked_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, name, token_hash, created_at, last_used_at, revoked_at";

fn clean_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(StoreError::invalid("name", "must not be empty"));
    }
    let fits = name.chars().count() <= MAX_NAME_CHARS;
    if !fits
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(StoreError::invalid(
            "name",
            format!("at most {MAX_NAME_CHARS} characters among A-Z a-z 0-9 - _ ."),
        ));
    }
    Ok(name.to_owned())
}

impl Store {
    /// Stores a new token under `name` (unique, also among revoked ones).
    pub async fn add_cti_token(&self, name: &str, token_hash: &str) -> Result<CtiToken> {
        let name = clean_name(name)?;
        let at = now();
        dispatch!(self, |pool, dialect| {
            let token: CtiToken = sqlx::query_as(&dialect.sql(
                "INSERT INTO cti_tokens (name, token_hash, created_at) VALUES (?, ?, ?) \
                 RETURNING id, name, token_hash, created_at, last_used_at, revoked_at",
            ))
            .bind(&name)
            .bind(token_hash)
            .bind(at)
            .fetch_one(pool)
            .await
            .map_err(conflict)?;
            Ok(token)
        })
    }

    /// Every token, revoked ones included, by name.
    pub async fn list_cti_tokens(&self) -> Result<Vec<CtiToken>> {
        dispatch!(self, |pool, dialect| {
            let sql = dialect.sql_owned(format!("SELECT {COLUMNS} FROM cti_tokens ORDER BY name"));
            Ok(sqlx::query_as::<_, CtiToken>(&sql).fetch_all(pool).await?)
        })
    }

    /// Revokes the token `name`. Not found when no such token; revoking twice
    /// keeps the first revocation time.
    pub async fn revoke_cti_token(&self, name: &str) -> Result<CtiToken> {
        let name = name.trim();
        let at = now();
        dispatch!(self, |pool, dialect| {
            sqlx::query(
                &dialect.sql(
                    "UPDATE cti_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                ),
            )
            .bind(at)
            .bind(name)
            .execute(pool)
            .await?;
            let sql = dialect.sql_owned(format!("SELECT {COLUMNS} FROM cti_tokens WHERE name = ?"));
            sqlx::query_as::<_, CtiToken>(&sql)
                .bind(name)
                .fetch_optional(pool)
                .await?
                .ok_or_else(|| StoreError::not_found("cti_token", name))
        })
    }

    /// Records that the token `name` was used at `at`.
    pub async fn touch_cti_token(&self, name: &str, at: DateTime<Utc>) -> Result<()> {
        dispatch!(self, |pool, dialect| {
            sqlx::query(&dialect.sql("UPDATE cti_tokens SET last_used_at = ? WHERE name = ?"))
                .bind(crate::sql::stored_time(at))
                .bind(name)
                .execute(pool)
                .await?;
            Ok(())
        })
    }
}
