//! Users (agents, supervisors, admins), their password hashes and their extensions.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use crate::error::{conflict, Result, StoreError};
use crate::password::PasswordHash;
use crate::sql::{now, placeholders};
use crate::{begin_write, dispatch, Store};

/// Longest login, display name or extension, in characters.
const MAX_SHORT_CHARS: usize = 128;
/// Most extensions one user owns.
const MAX_EXTENSIONS: usize = 64;

/// Id of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

pub use fiche_model::Role;

/// Changes to one user, applied together by [`Store::update_user`]; `None`
/// leaves a field as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserUpdate<'a> {
    /// A new role.
    pub role: Option<Role>,
    /// Disable (or enable) the user.
    pub disabled: Option<bool>,
    /// A new display name.
    pub display_name: Option<&'a str>,
    /// The extensions the user owns from now on (replacing the old ones).
    pub extensions: Option<&'a [String]>,
    /// A new password hash.
    pub password: Option<&'a PasswordHash>,
}

/// Extensions as stored: each cleaned, duplicates dropped, at most [`MAX_EXTENSIONS`].
fn clean_extensions(extensions: &[String]) -> Result<Vec<String>> {
    let mut wanted: Vec<String> = Vec::with_capacity(extensions.len());
    for extension in extensions {
        let extension = clean_short("extension", extension)?;
        if !wanted.contains(&extension) {
            wanted.push(extension);
        }
    }
    if wanted.len() > MAX_EXTENSIONS {
        return Err(StoreError::invalid(
            "extensions",
            format!("more than {MAX_EXTENSIONS}"),
        ));
    }
    Ok(wanted)
}

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Login name, unique whatever its case.
    pub login: String,
    /// Name shown to colleagues.
    pub display_name: String,
    /// What the user may do.
    pub role: Role,
    /// `None` for a user who cannot log in yet.
    pub password: Option<PasswordHash>,
}

/// The users' count and latest change (see [`Store::users_stamp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsersStamp {
    /// How many users there are.
    pub count: i64,
    /// The latest `updated_at` of any user; `None` when there is none.
    pub last_change: Option<DateTime<Utc>>,
}

/// A stored user. The password hash is not part of it: see [`Store::user_password`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// Login name.
    pub login: String,
    /// Name shown to colleagues.
    pub display_name: String,
    /// What the user may do.
    pub role: Role,
    /// A disabled user cannot log in.
    pub disabled: bool,
    /// Whether a password is set.
    pub has_password: bool,
    /// The extensions the user owns, sorted.
    pub extensions: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct UserRow {
    id: i64,
    login: String,
    display_name: String,
    role: String,
    password_hash: Option<String>,
    disabled: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const USER_COLUMNS: &str =
    "id, login, display_name, role, password_hash, disabled, created_at, updated_at";

impl UserRow {
    fn into_user(self, extensions: Vec<String>) -> Result<User> {
        let role = Role::from_str(&self.role).map_err(|_| StoreError::Corrupt {
            entity: "user",
            field: "role",
            value: self.role.clone(),
        })?;
        Ok(User {
            id: UserId(self.id),
            login: self.login,
            display_name: self.display_name,
            role,
            disabled: self.disabled,
            has_password: self.password_hash.is_some(),
            extensions,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

fn clean_short(field: &'static str, value: &str) -> Result<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(StoreError::invalid(field, "must not be empty"));
    }
    if value.chars().count() > MAX_SHORT_CHARS || value.chars().any(char::is_control) {
        return Err(StoreError::invalid(
            field,
            format!("at most {MAX_SHORT_CHARS} printable characters"),
        ));
    }
    Ok(value.to_owned())
}

fn clean_login(login: &str) -> Result<String> {
    let login = clean_short("login", login)?;
    if login.chars().any(char::is_whitespace) {
        return Err(StoreError::invalid("login", "must not contain spaces"));
    }
    Ok(login)
}

impl Store {
    /// Creates a user. A login already taken (in any case) is a
    /// [`StoreError::Conflict`] on `login`.
    pub async fn add_user(&self, user: &NewUser) -> Result<User> {
        let login = clean_login(&user.login)?;
        let display_name = clean_short("display_name", &user.display_name)?;
        let at = now();
        let id: i64 = dispatch!(self, |pool, dialect| {
            let (id,): (i64,) = sqlx::query_as(&dialect.sql(
                "INSERT INTO users (login, display_name, role, password_hash, disabled, \
                 created_at, updated_at) VALUES (?, ?, ?, ?, FALSE, ?, ?) RETURNING id",
            ))
            .bind(&login)
            .bind(&display_name)
            .bind(user.role.as_str())
            .bind(user.password.as_ref().map(PasswordHash::as_str))
            .bind(at)
            .bind(at)
            .fetch_one(pool)
            .await
            .map_err(conflict)?;
            id
        });
        self.get_user(UserId(id)).await
    }

    /// The user `id`.
    pub async fn get_user(&self, id: UserId) -> Result<User> {
        self.users_where("id = ?", Some(id.0.to_string()), Some(id.0))
            .await?
            .pop()
            .ok_or_else(|| StoreError::not_found("user", id))
    }

    /// The user with this login (case-insensitive), if any.
    pub async fn get_user_by_login(&self, login: &str) -> Result<Option<User>> {
        Ok(self
            .users_where(
                "lower(login) = lower(?)",
                Some(login.trim().to_owned()),
                None,
            )
            .await?
            .pop())
    }

    /// What moves whenever a user is added or changed, by any process: a
    /// server compares it with the last one it saw to know when to reread the
    /// users (an account changed with `fiche user` while it runs).
    pub async fn users_stamp(&self) -> Result<UsersStamp> {
        let (count, last_change): (i64, Option<DateTime<Utc>>) =
            dispatch!(self, |pool, dialect| {
                let count: i64 = sqlx::query_scalar(&dialect.sql("SELECT COUNT(*) FROM users"))
                    .fetch_one(pool)
                    .await?;
                let last: Option<DateTime<Utc>> = sqlx::query_scalar(
                    &dialect.sql("SELECT updated_at FROM users ORDER BY updated_at DESC LIMIT 1"),
                )
                .fetch_optional(pool)
                .await?;
                (count, last)
            });
        Ok(UsersStamp { count, last_change })
    }

    /// Every user, by login.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        self.users_where("1 = 1", None, None).await
    }

    /// The user owning `extension`, if any (to route a ringing call to its agent).
    pub async fn user_for_extension(&self, extension: &str) -> Result<Option<User>> {
        Ok(self
            .users_where(
                "id IN (SELECT user_id FROM user_extensions WHERE extension = ?)",
                Some(extension.trim().to_owned()),
                None,
            )
            .await?
            .pop())
    }

    /// Users matching `condition`, which has at most one placeholder bound to `text` or
    /// `number`, with their extensions.
    async fn users_where(
        &self,
        condition: &str,
        text: Option<String>,
        number: Option<i64>,
    ) -> Result<Vec<User>> {
        dispatch!(self, |pool, dialect| {
            let mut conn = pool.acquire().await?;
            let sql = dialect.sql_owned(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE {condition} ORDER BY lower(login)"
            ));
            let mut query = sqlx::query_as::<_, UserRow>(&sql);
            if let Some(number) = number {
                query = query.bind(number);
            } else if let Some(text) = text {
                query = query.bind(text);
            }
            let rows = query.fetch_all(&mut *conn).await?;
            let mut extensions: HashMap<i64, Vec<String>> = HashMap::new();
            if !rows.is_empty() {
                let sql = dialect.sql_owned(format!(
                    "SELECT user_id, extension FROM user_extensions WHERE user_id IN ({}) \
                     ORDER BY extension",
                    placeholders(rows.len())
                ));
                let mut query = sqlx::query_as::<_, (i64, String)>(&sql);
                for row in &rows {
                    query = query.bind(row.id);
                }
                for (user_id, extension) in query.fetch_all(&mut *conn).await? {
                    extensions.entry(user_id).or_default().push(extension);
                }
            }
            rows.into_iter()
                .map(|row| {
                    let own = extensions.remove(&row.id).unwrap_or_default();
                    row.into_user(own)
                })
                .collect()
        })
    }

    /// The user and their password hash, for checking a login. `None` when the login
    /// is unknown or has no password. A disabled user is returned too (with
    /// `disabled: true`): refusing them is the caller's decision.
    pub async fn user_password(&self, login: &str) -> Result<Option<(User, PasswordHash)>> {
        let hash: Option<(i64, Option<String>)> = dispatch!(self, |pool, dialect| {
            sqlx::query_as(
                &dialect.sql("SELECT id, password_hash FROM users WHERE lower(login) = lower(?)"),
            )
            .bind(login.trim())
            .fetch_optional(pool)
            .await?
        });
        let Some((id, Some(phc))) = hash else {
            return Ok(None);
        };
        let hash = PasswordHash::from_phc(&phc).map_err(|_| StoreError::Corrupt {
            entity: "user",
            field: "password_hash",
            value: "(not an argon2 hash)".to_owned(),
        })?;
        Ok(Some((self.get_user(UserId(id)).await?, hash)))
    }

    /// Sets (or replaces) a user's password.
    pub async fn set_password(&self, id: UserId, password: &PasswordHash) -> Result<()> {
        self.update_user(
            id,
            &UserUpdate {
                password: Some(password),
                ..UserUpdate::default()
            },
        )
        .await
    }

    /// Changes a user's role. Taking the admin role from the last enabled admin is
    /// [`StoreError::Invalid`] on `role`, and nothing changes.
    pub async fn set_role(&self, id: UserId, role: Role) -> Result<()> {
        self.update_user(
            id,
            &UserUpdate {
                role: Some(role),
                ..UserUpdate::default()
            },
        )
        .await
    }

    /// Changes a user's display name.
    pub async fn set_display_name(&self, id: UserId, display_name: &str) -> Result<()> {
        self.update_user(
            id,
            &UserUpdate {
                display_name: Some(display_name),
                ..UserUpdate::default()
            },
        )
        .await
    }

    /// Disables (or re-enables) a user; their extensions stay assigned. Disabling
    /// the last enabled admin is [`StoreError::Invalid`] on `disabled`, and nothing
    /// changes.
    pub async fn set_disabled(&self, id: UserId, disabled: bool) -> Result<()> {
        self.update_user(
            id,
            &UserUpdate {
                disabled: Some(disabled),
                ..UserUpdate::default()
            },
        )
        .await
    }

    /// Replaces the extensions a user owns. An extension owned by another user is a
    /// [`StoreError::Conflict`] on `extension`, and nothing changes.
    pub async fn set_extensions(&self, id: UserId, extensions: &[String]) -> Result<()> {
        self.update_user(
            id,
            &UserUpdate {
                extensions: Some(extensions),
                ..UserUpdate::default()
            },
        )
        .await
    }

    /// Applies every change of `changes` to user `id` in one transaction: all
    /// of them or none. Refused, with nothing changed: leaving no enabled admin
    /// ([`StoreError::Invalid`] on `role` or `disabled`), an extension owned by
    /// another user ([`StoreError::Conflict`] on `extension`), a bad name or
    /// extension ([`StoreError::Invalid`]), an unknown user.
    ///
    /// Two admins demoting each other at the same moment must not both succeed:
    /// the enabled admins are read and the change written in one transaction,
    /// with their rows locked on PostgreSQL (`FOR UPDATE`, so the second
    /// transaction waits and then sees the first one's change); SQLite's
    /// `BEGIN IMMEDIATE` already lets one writer in at a time.
    pub async fn update_user(&self, id: UserId, changes: &UserUpdate<'_>) -> Result<()> {
        let display_name = changes
            .display_name
            .map(|name| clean_short("display_name", name))
            .transpose()?;
        let extensions = changes.extensions.map(clean_extensions).transpose()?;
        let (role, disabled) = (changes.role, changes.disabled);
        let password = changes.password.map(|p| p.as_str().to_owned());
        dispatch!(self, |pool, dialect| {
            let mut tx = begin_write!(pool, dialect);
            if role.is_some() || disabled.is_some() {
                let field = if role.is_some() { "role" } else { "disabled" };
                let lock = match dialect {
                    crate::sql::Dialect::Postgres => " FOR UPDATE",
                    crate::sql::Dialect::Sqlite => "",
                };
                let admins: Vec<(i64,)> = sqlx::query_as(&dialect.sql_owned(format!(
                    "SELECT id FROM users WHERE role = 'admin' AND NOT disabled ORDER BY id{lock}"
                )))
                .fetch_all(&mut *tx)
                .await?;
                let current: Option<(String, bool)> =
                    sqlx::query_as(&dialect.sql("SELECT role, disabled FROM users WHERE id = ?"))
                        .bind(id.0)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some((current_role, current_disabled)) = current else {
                    return Err(StoreError::not_found("user", id));
                };
                let stays_admin = role.map_or(current_role == Role::Admin.as_str(), |role| {
                    role == Role::Admin
                }) && !disabled.unwrap_or(current_disabled);
                let is_enabled_admin = admins.iter().any(|(admin,)| *admin == id.0);
                if is_enabled_admin && !stays_admin && admins.len() == 1 {
                    let change = if role.is_some_and(|role| role != Role::Admin) {
                        "lose the admin role"
                    } else {
                        "be disabled"
                    };
                    return Err(StoreError::invalid(
                        field,
                        format!(
                            "the last enabled admin cannot {change}: make another user admin first"
                        ),
                    ));
                }
            }
            let done = sqlx::query(&dialect.sql(
                "UPDATE users SET role = COALESCE(?, role), disabled = COALESCE(?, disabled), \
                 display_name = COALESCE(?, display_name), \
                 password_hash = COALESCE(?, password_hash), updated_at = ? WHERE id = ?",
            ))
            .bind(role.map(Role::as_str))
            .bind(disabled)
            .bind(display_name)
            .bind(password)
            .bind(now())
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::not_found("user", id));
            }
            if let Some(wanted) = &extensions {
                sqlx::query(&dialect.sql("DELETE FROM user_extensions WHERE user_id = ?"))
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await?;
                for extension in wanted {
                    sqlx::query(
                        &dialect
                            .sql("INSERT INTO user_extensions (extension, user_id) VALUES (?, ?)"),
                    )
                    .bind(extension)
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(conflict)?;
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
