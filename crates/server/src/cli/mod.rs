//! The administrative commands of the `fiche` binary (everything but `serve`).

pub mod backup;
pub mod customers_file;
pub mod user;

use crate::config::Config;
use anyhow::Context;
use fiche_store::{redacted_url, Store};

/// Connects to the configured database and applies pending migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let url = redacted_url(&config.database_url);
    let store = Store::connect(&config.database_url)
        .await
        .with_context(|| format!("connecting to the database {url}"))?;
    store
        .migrate()
        .await
        .with_context(|| format!("migrating the database {url}"))?;
    Ok(store)
}
