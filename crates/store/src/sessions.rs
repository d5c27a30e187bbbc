//! Login sessions. The store keeps only a digest of each session token (the caller
//! hashes it), so a copy of the database does not let anyone log in.

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::sql::{now, placeholders, stored_time};
use crate::users::UserId;
use crate::{dispatch, Store};

/// A live session, as looked up by its token digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// Whose session it is.
    pub user_id: UserId,
    /// When it lapses unless used again.
    pub expires_at: DateTime<Utc>,
}

/// Session digests per query of [`Store::live_sessions`] and
/// [`Store::touch_sessions`]: well under SQLite's limit of bound parameters.
const DIGESTS_PER_QUERY: usize = 500;

impl Store {
    /// Records a new session under `digest` (a hash of the token, never the token).
    pub async fn create_session(
        &self,
        digest: &str,
        user_id: UserId,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let at = now();
        dispatch!(self, |pool, dialect| {
            sqlx::query(&dialect.sql(
                "INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at) \
                 VALUES (?, ?, ?, ?, ?)",
            ))
            .bind(digest)
            .bind(user_id.0)
            .bind(at)
            .bind(at)
            .bind(stored_time(expires_at))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The session stored under `digest` if it has not expired at `at`.
    pub async fn session(&self, digest: &str, at: DateTime<Utc>) -> Result<Option<Session>> {
        let row: Option<(i64, DateTime<Utc>)> =
            dispatch!(self, |pool, dialect| {
                sqlx::query_as(&dialect.sql(
                    "SELECT user_id, expires_at FROM sessions WHERE id = ? AND expires_at > ?",
                ))
                .bind(digest)
                .bind(stored_time(at))
                .fetch_optional(pool)
                .await?
            });
        Ok(row.map(|(user_id, expires_at)| Session {
            user_id: UserId(user_id),
            expires_at,
        }))
    }

    /// Moves a session's expiry (sliding sessions) and records when it was last used.
    pub async fn touch_session(&self, digest: &str, expires_at: DateTime<Utc>) -> Result<()> {
        dispatch!(self, |pool, dialect| {
            sqlx::query(
                &dialect.sql("UPDATE sessions SET last_seen_at = ?, expires_at = ? WHERE id = ?"),
            )
            .bind(now())
            .bind(stored_time(expires_at))
            .bind(digest)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Of `digests`, the sessions live at `at`, with their expiry, in no
    /// particular order: one query per 500 digests rather than one each
    /// (the server checks the sessions of every open websocket).
    pub async fn live_sessions(
        &self,
        digests: &[String],
        at: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>)>> {
        let mut live = Vec::with_capacity(digests.len());
        for chunk in digests.chunks(DIGESTS_PER_QUERY) {
            let rows: Vec<(String, DateTime<Utc>)> = dispatch!(self, |pool, dialect| {
                let sql = dialect.sql_owned(format!(
                    "SELECT id, expires_at FROM sessions WHERE expires_at > ? AND id IN ({})",
                    placeholders(chunk.len())
                ));
                let mut query = sqlx::query_as(&sql).bind(stored_time(at));
                for digest in chunk {
                    query = query.bind(digest);
                }
                query.fetch_all(pool).await?
            });
            live.extend(rows);
        }
        Ok(live)
    }

    /// Moves the expiry of several sessions at once (sessions kept in use by
    /// an open page); unknown digests are ignored.
    pub async fn touch_sessions(
        &self,
        digests: &[String],
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let at = now();
        for chunk in digests.chunks(DIGESTS_PER_QUERY) {
            dispatch!(self, |pool, dialect| {
                let sql = dialect.sql_owned(format!(
                    "UPDATE sessions SET last_seen_at = ?, expires_at = ? WHERE id IN ({})",
                    placeholders(chunk.len())
                ));
                let mut query = sqlx::query(&sql).bind(at).bind(stored_time(expires_at));
                for digest in chunk {
                    query = query.bind(digest);
                }
                query.execute(pool).await?;
            });
        }
        Ok(())
    }

    /// Ends one session (logout). Unknown digests are ignored.
    pub async fn delete_session(&self, digest: &str) -> Result<()> {
        dispatch!(self, |pool, dialect| {
            sqlx::query(&dialect.sql("DELETE FROM sessions WHERE id = ?"))
                .bind(digest)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Ends every session of a user (disabled, or password changed).
    pub async fn delete_user_sessions(&self, user_id: UserId) -> Result<u64> {
        let done = dispatch!(self, |pool, dialect| {
            sqlx::query(&dialect.sql("DELETE FROM sessions WHERE user_id = ?"))
                .bind(user_id.0)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done)
    }

    /// Forgets sessions that expired before `at`; returns how many.
    pub async fn delete_expired_sessions(&self, at: DateTime<Utc>) -> Result<u64> {
        let done = dispatch!(self, |pool, dialect| {
            sqlx::query(&dialect.sql("DELETE FROM sessions WHERE expires_at <= ?"))
                .bind(stored_time(at))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewUser, Role};
    use chrono::Duration;

    #[tokio::test]
    async fn a_session_lives_until_expiry_or_logout() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let user = store
            .add_user(&NewUser {
                login: "claire".into(),
                display_name: "Claire".into(),
                role: Role::Agent,
                password: None,
            })
            .await
            .unwrap();
        let t0 = Utc::now();
        store
            .create_session("d1", user.id, t0 + Duration::hours(1))
            .await
            .unwrap();
        let found = store.session("d1", t0).await.unwrap().unwrap();
        assert_eq!(found.user_id, user.id);
        assert!(store.session("other", t0).await.unwrap().is_none());
        assert!(store
            .session("d1", t0 + Duration::hours(2))
            .await
            .unwrap()
            .is_none());
        store
            .touch_session("d1", t0 + Duration::hours(3))
            .await
            .unwrap();
        assert!(store
            .session("d1", t0 + Duration::hours(2))
            .await
            .unwrap()
            .is_some());
        store.delete_session("d1").await.unwrap();
        assert!(store.session("d1", t0).await.unwrap().is_none());

        store
            .create_session("d2", user.id, t0 + Duration::hours(1))
            .await
            .unwrap();
        store
            .create_session("d3", user.id, t0 - Duration::hours(1))
            .await
            .unwrap();
        assert_eq!(store.delete_expired_sessions(t0).await.unwrap(), 1);
        assert_eq!(store.delete_user_sessions(user.id).await.unwrap(), 1);
        assert!(store.session("d2", t0).await.unwrap().is_none());
    }
}
