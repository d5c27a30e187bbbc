//! `fiche odoo check` and `fiche odoo sync`.

use std::io::IsTerminal;

use anyhow::{bail, Context};
use clap::Subcommand;
use fiche_matcher::NumberPolicy;
use fiche_odoo::sync::{full_sync, PartnerReader};
use fiche_odoo::{OdooClient, OdooConfig, OdooError};
use fiche_store::Store;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `fiche odoo …`
#[derive(Debug, Subcommand)]
pub enum OdooCommand {
    /// Print Odoo's version, the models and fields found, and what is missing or refused.
    Check,
    /// Import every Odoo contact now (the first time; the server then follows changes).
    Sync,
}

/// The `[odoo]` table, or a message saying how to add one.
pub fn configured(config: &crate::config::Config) -> anyhow::Result<&OdooConfig> {
    config
        .odoo
        .as_ref()
        .context("no [odoo] table in the configuration (see config.example.toml)")
}

/// `fiche odoo check`: prints the report; fails when something needed is missing.
pub async fn check(config: &OdooConfig) -> anyhow::Result<()> {
    let report = fiche_odoo::check::check(config).await;
    print!("{}", report.render());
    if !report.ok() {
        bail!("Odoo check failed");
    }
    Ok(())
}

/// `fiche odoo sync`: the full import, with a progress bar on a terminal.
pub async fn sync(config: &OdooConfig, store: &Store, policy: NumberPolicy) -> anyhow::Result<()> {
    let client = match OdooClient::connect(config).await {
        Ok(client) => client,
        Err(OdooError::AccessDenied { .. }) => bail!("{}", super::access_denied_hint(config)),
        Err(error) => return Err(error).context("connecting to Odoo"),
    };
    let reader = PartnerReader::new(&client, policy)
        .await
        .context("reading res.partner's fields")?;
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} contacts ({eta})") {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
    };
    let started = std::time::Instant::now();
    let report = full_sync(&client, store, &reader, &bar)
        .await
        .context("importing Odoo contacts")?;
    bar.finish_and_clear();
    for bad in &report.bad_numbers {
        println!(
            "contact Odoo {} : numéro {} {:?} non reconnu (gardé tel quel)",
            bad.partner_id, bad.field, bad.raw
        );
    }
    for (partner, reason) in &report.rejected {
        println!("contact Odoo {partner} non importé : {reason}");
    }
    println!(
        "{} contacts lus en {:.1} s : {} créés, {} modifiés, {} inchangés, {} retirés (archivés ou supprimés dans Odoo){}",
        report.read,
        started.elapsed().as_secs_f64(),
        report.written.inserted,
        report.written.updated,
        report.written.unchanged,
        report.removed,
        if reader.has_mobile() { "" } else { " ; pas de champ mobile sur cette version d'Odoo" }
    );
    Ok(())
}
