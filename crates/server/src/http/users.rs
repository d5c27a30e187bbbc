//! `/api/users`: admins list, create and change accounts (role, extensions,
//! disabled, password). Changes reach the hub at once: pops follow a moved
//! extension, and a disabled user's sessions and sockets end. The last enabled
//! admin cannot be demoted or disabled (nobody could manage users any more).

use super::error::ApiError;
use super::{ApiPath, AppState};
use crate::auth::CurrentUser;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch};
use axum::{Json, Router};
use fiche_hub::{AgentInfo, Hub};
use fiche_store::{
    NewUser, PasswordHash, Role, Store, StoreError, User, UserId, UserUpdate, UsersStamp,
};
use serde::Deserialize;
use tracing::info;

/// Shortest password an admin may set.
const MIN_PASSWORD_CHARS: usize = 8;

/// The users routes, under `/api`.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(list).post(create))
        .route("/users/{id}", patch(update))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    login: String,
    display_name: Option<String>,
    role: Role,
    #[serde(default)]
    extensions: Vec<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChanges {
    display_name: Option<String>,
    role: Option<Role>,
    extensions: Option<Vec<String>>,
    disabled: Option<bool>,
    password: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<User>>, ApiError> {
    user.require_admin()?;
    Ok(Json(state.store.list_users().await?))
}

async fn hash(password: String) -> Result<PasswordHash, ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::Invalid {
            field: "password".into(),
            message: format!("at least {MIN_PASSWORD_CHARS} characters"),
        });
    }
    Ok(crate::auth::hasher::hasher().hash(password).await?)
}

async fn create(
    State(state): State<AppState>,
    admin: CurrentUser,
    body: Result<Json<NewUserBody>, JsonRejection>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    admin.require_admin()?;
    let Json(body) = body?;
    let password = match body.password {
        Some(password) => Some(hash(password).await?),
        None => None,
    };
    let user = state
        .store
        .add_user(&NewUser {
            display_name: body.display_name.unwrap_or_else(|| body.login.clone()),
            login: body.login,
            role: body.role,
            password,
        })
        .await?;
    if !body.extensions.is_empty() {
        if let Err(error) = state.store.set_extensions(user.id, &body.extensions).await {
            // Do not leave a half-made account behind: it would block the login.
            drop(state.store.set_disabled(user.id, true).await);
            return Err(error.into());
        }
    }
    info!(admin = ?admin.login, login = ?user.login, "user created");
    let user = state.store.get_user(user.id).await?;
    join_directory(&state.store, &state.hub, &user).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

async fn update(
    State(state): State<AppState>,
    admin: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    body: Result<Json<UserChanges>, JsonRejection>,
) -> Result<Json<User>, ApiError> {
    admin.require_admin()?;
    let Json(changes) = body?;
    let id = UserId(id);
    let before = state.store.get_user(id).await?;
    let password = match changes.password {
        Some(password) => Some(hash(password).await?),
        None => None,
    };
    // One transaction: a refusal (the last enabled admin, an extension taken
    // by a colleague) leaves the user exactly as she was.
    state
        .store
        .update_user(
            id,
            &UserUpdate {
                role: changes.role,
                disabled: changes.disabled,
                display_name: changes.display_name.as_deref(),
                extensions: changes.extensions.as_deref(),
                password: password.as_ref(),
            },
        )
        .await?;
    state.auth.forget_user(id.0);
    let disabled = changes.disabled == Some(true) && !before.disabled;
    if disabled || password.is_some() {
        state.store.delete_user_sessions(id).await?;
    }
    let role_changed = changes.role.is_some_and(|role| role != before.role);
    if disabled || role_changed {
        state.auth.disconnect_user(&state.hub, id.0);
    }
    info!(admin = ?admin.login, login = ?before.login, "user changed");
    push_agents(&state.store, &state.hub).await?;
    Ok(Json(state.store.get_user(id).await?))
}

/// Gives the hub the agent directory: every enabled user who is an agent or owns
/// an extension, with their extensions.
pub async fn push_agents(store: &Store, hub: &Hub) -> Result<(), StoreError> {
    let agents = store
        .list_users()
        .await?
        .into_iter()
        .filter_map(directory_entry)
        .collect();
    hub.set_agents(agents);
    Ok(())
}

/// How often the users are checked for changes made outside this server's API.
const DIRECTORY_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps the hub's agent directory in step with accounts changed outside this
/// server's API (`fiche user` while it runs, another node): every
/// [`DIRECTORY_CHECK`] it reads [`Store::users_stamp`], and rebuilds the
/// directory when the stamp moved. A login or a new account through the API
/// updates the directory at once ([`join_directory`]); this catches the rest.
/// `seen` is the stamp of the directory already loaded, if known.
pub async fn watch_directory(
    store: Store,
    hub: Hub,
    mut seen: Option<UsersStamp>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut every = tokio::time::interval(DIRECTORY_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.cancelled() => return,
        }
        // Read before the users, so that a change in between moves the next stamp.
        let stamp = match store.users_stamp().await {
            Ok(stamp) => stamp,
            Err(error) => {
                tracing::warn!(%error, "checking the users for changes");
                continue;
            }
        };
        if seen == Some(stamp) {
            continue;
        }
        match push_agents(&store, &hub).await {
            Ok(()) => seen = Some(stamp),
            Err(error) => tracing::warn!(%error, "refreshing the agent directory"),
        }
    }
}

/// Puts one user in the hub's agent directory (or updates their entry) when
/// they belong there, without reading every user: a login, a new account.
/// Falls back to [`push_agents`] when one of their extensions is another
/// agent's in the hub's directory (it moved while the server ran).
pub async fn join_directory(store: &Store, hub: &Hub, user: &User) -> Result<(), StoreError> {
    let Some(entry) = directory_entry(user.clone()) else {
        return Ok(());
    };
    if hub.upsert_agent(entry) {
        return Ok(());
    }
    push_agents(store, hub).await
}

/// The directory entry of an enabled user who is an agent or owns an extension.
fn directory_entry(user: User) -> Option<AgentInfo> {
    if user.disabled || (user.role != Role::Agent && user.extensions.is_empty()) {
        return None;
    }
    Some(AgentInfo {
        user_id: user.id.0,
        name: user.display_name,
        extensions: user.extensions,
    })
}
