//! First start with no user at all: an `admin` account, so someone can log in.

use anyhow::Context;
use fiche_store::{NewUser, Role, Store};
use rand::distributions::Alphanumeric;
use rand::Rng;
use tracing::info;

/// Creates `admin` when the store has no user. The password is `password` (from
/// `FICHE_ADMIN_PASSWORD`) or a random one, printed once to stdout and the log.
/// Returns the generated password, if one was generated.
pub async fn ensure_first_admin(
    store: &Store,
    password: Option<String>,
) -> anyhow::Result<Option<String>> {
    if !store
        .list_users()
        .await
        .context("listing users")?
        .is_empty()
    {
        return Ok(None);
    }
    let (password, generated) = match password.filter(|p| !p.is_empty()) {
        Some(password) => (password, false),
        None => {
            let password: String = rand::thread_rng()
                .sample_iter(&Alphanumeric)
                .take(20)
                .map(char::from)
                .collect();
            (password, true)
        }
    };
    let hash = super::hasher::hasher()
        .hash(password.clone())
        .await
        .context("hashing the admin password")?;
    store
        .add_user(&NewUser {
            login: "admin".into(),
            display_name: "Administrateur".into(),
            role: Role::Admin,
            password: Some(hash),
        })
        .await
        .context("creating the first admin")?;
    if generated {
        let message = format!(
            "Premier démarrage : compte admin créé, mot de passe : {password} / \
             First run: admin account created, password: {password}"
        );
        println!("{message}");
        info!("{message}");
        Ok(Some(password))
    } else {
        info!("Premier démarrage : compte admin créé (FICHE_ADMIN_PASSWORD) / First run: admin account created");
        Ok(None)
    }
}
