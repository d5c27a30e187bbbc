//! `fiche user add|list|passwd|role|disable|enable`: accounts of agents, supervisors and admins.
//!
//! Passwords are read from standard input when it is not a terminal (one line),
//! so scripts can set them; otherwise a random one is generated and printed once.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use fiche_store::{NewUser, PasswordHash, Role, Store, User};
use rand::distributions::Alphanumeric;
use rand::Rng;
use std::io::{BufRead, IsTerminal};

/// What to do with users.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Add(AddArgs),
    /// List users with their role and extensions.
    List,
    /// Set a new password.
    Passwd {
        /// The user's login.
        login: String,
    },
    /// Change a user's role (refused for the last enabled admin).
    Role {
        /// The user's login.
        login: String,
        /// agent, supervisor or admin.
        role: String,
    },
    /// Disable a user: they cannot log in, their sessions end (refused for the last
    /// enabled admin).
    Disable {
        /// The user's login.
        login: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// The user's login.
        login: String,
    },
}

/// `fiche user add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Login name.
    pub login: String,
    /// Name shown to colleagues; the login when absent.
    #[arg(long)]
    pub name: Option<String>,
    /// agent, supervisor or admin.
    #[arg(long, default_value = "agent")]
    pub role: String,
    /// Phone extensions the user answers (comma-separated or repeated).
    #[arg(long = "extension", value_delimiter = ',')]
    pub extensions: Vec<String>,
}

/// Runs a user command.
pub async fn run(store: &Store, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add(args) => add(store, args).await,
        UserCommand::List => list(store).await,
        UserCommand::Passwd { login } => passwd(store, &login).await,
        UserCommand::Role { login, role } => set_role(store, &login, &role).await,
        UserCommand::Disable { login } => set_disabled(store, &login, true).await,
        UserCommand::Enable { login } => set_disabled(store, &login, false).await,
    }
}

fn parse_role(role: &str) -> anyhow::Result<Role> {
    match role.to_ascii_lowercase().as_str() {
        "agent" => Ok(Role::Agent),
        "supervisor" | "superviseur" => Ok(Role::Supervisor),
        "admin" => Ok(Role::Admin),
        other => bail!("--role: {other:?} is not agent, supervisor or admin"),
    }
}

/// The password from standard input, or a generated one (printed).
fn obtain_password(login: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        let password = line.trim_end_matches(['\r', '\n']).to_owned();
        if !password.is_empty() {
            if password.chars().count() < 8 {
                bail!("password: at least 8 characters");
            }
            return Ok(password);
        }
    }
    let password: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(16)
        .map(char::from)
        .collect();
    println!("Mot de passe de {login} / password for {login}: {password}");
    Ok(password)
}

async fn hash(password: String) -> anyhow::Result<PasswordHash> {
    crate::auth::hasher::hasher()
        .hash(password)
        .await
        .context("hashing the password")
}

async fn add(store: &Store, args: AddArgs) -> anyhow::Result<()> {
    let role = parse_role(&args.role)?;
    let password = hash(obtain_password(&args.login)?).await?;
    let user = store
        .add_user(&NewUser {
            login: args.login.clone(),
            display_name: args.name.unwrap_or_else(|| args.login.clone()),
            role,
            password: Some(password),
        })
        .await
        .with_context(|| format!("adding user {:?}", args.login))?;
    if !args.extensions.is_empty() {
        store
            .set_extensions(user.id, &args.extensions)
            .await
            .with_context(|| format!("extensions of {:?}", args.login))?;
    }
    println!("{} ({}) ajouté / added", user.login, role.as_str());
    Ok(())
}

async fn list(store: &Store) -> anyhow::Result<()> {
    for user in store.list_users().await? {
        println!(
            "{}\t{}\t{}\t{}{}",
            user.login,
            user.role.as_str(),
            user.extensions.join(","),
            user.display_name,
            if user.disabled {
                "\t(désactivé / disabled)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

async fn find(store: &Store, login: &str) -> anyhow::Result<User> {
    match store.get_user_by_login(login).await? {
        Some(user) => Ok(user),
        None => bail!("no user with login {login:?}"),
    }
}

async fn set_role(store: &Store, login: &str, role: &str) -> anyhow::Result<()> {
    let role = parse_role(role)?;
    let user = find(store, login).await?;
    // The store refuses to demote the last enabled admin ("invalid role: ...").
    store
        .set_role(user.id, role)
        .await
        .with_context(|| format!("role of {login:?}"))?;
    println!("{login} : rôle {role} / role {role}");
    Ok(())
}

async fn set_disabled(store: &Store, login: &str, disabled: bool) -> anyhow::Result<()> {
    let user = find(store, login).await?;
    store
        .set_disabled(user.id, disabled)
        .await
        .with_context(|| {
            let change = if disabled { "disabling" } else { "enabling" };
            format!("{change} {login:?}")
        })?;
    if disabled {
        // Logged-in browsers and API clients of the user are logged out.
        store.delete_user_sessions(user.id).await?;
        println!("{login} désactivé / disabled");
    } else {
        println!("{login} réactivé / enabled");
    }
    Ok(())
}

async fn passwd(store: &Store, login: &str) -> anyhow::Result<()> {
    let Some(user) = store.get_user_by_login(login).await? else {
        bail!("no user with login {login:?}");
    };
    let password = hash(obtain_password(login)?).await?;
    store.set_password(user.id, &password).await?;
    // A changed password logs out every browser and API client of the user.
    store.delete_user_sessions(user.id).await?;
    println!("mot de passe changé / password changed: {login}");
    Ok(())
}
