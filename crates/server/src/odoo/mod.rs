//! The Odoo connector inside the server (only with an `[odoo]` table): the poll
//! of changed partners, and the `fiche odoo` commands (`cli`).
//!
//! Odoo being down, slow or refusing the key never stops Fiche: pops come from
//! the in-memory index, and the poller keeps trying with a growing wait, saying
//! once per outage what is wrong.

pub mod cli;
pub mod delivery;

use std::time::Duration;

use fiche_matcher::NumberPolicy;
use fiche_odoo::sync::Poller;
use fiche_odoo::{OdooClient, OdooConfig, OdooError};
use fiche_store::Store;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Longest wait between two attempts to reach Odoo after a failure.
const MAX_RETRY: Duration = Duration::from_secs(300);
/// Unreadable numbers logged per poll (the rest as a count): `fiche odoo sync`
/// lists them all.
const BAD_NUMBERS_LOGGED: usize = 20;

/// What a sysadmin is told when Odoo refuses the key, in the log and by the CLI.
pub fn access_denied_hint(config: &OdooConfig) -> String {
    format!(
        "Odoo refuse la connexion de « {} » sur la base « {} » : clé API fausse, expirée \
         (3 mois au plus) ou d'un autre utilisateur. Créez une clé (Préférences → Sécurité du \
         compte → Nouvelle clé API), mettez-la dans FICHE_ODOO_API_KEY, puis vérifiez avec \
         `fiche odoo check`. Fiche continue sans Odoo et réessaie.",
        config.login, config.database
    )
}

/// `/web#id=<id>&model=<model>&view_type=form`: the form URL Odoo 16 and 17
/// open and 18+ still redirect to its `/odoo/...` routes.
fn form_url(base: &str, model: &str, id: i64) -> String {
    format!("{base}/web#id={id}&model={model}&view_type=form")
}

/// The card's "Ouvrir dans Odoo" links: the partner, when the customer came from
/// Odoo, and each open ticket already in Odoo. URLs are built from the
/// configuration and integer ids only.
pub async fn card_links(
    store: &Store,
    base: &str,
    customer: &fiche_store::Customer,
    open: &[fiche_store::Ticket],
) -> fiche_store::Result<Vec<fiche_hub::CardLink>> {
    let mut links = Vec::new();
    if let Some(partner) = customer
        .external_ref
        .as_deref()
        .and_then(fiche_odoo::partners::partner_id)
    {
        links.push(fiche_hub::CardLink {
            kind: "odoo_partner".to_owned(),
            url: form_url(base, "res.partner", partner),
            ticket_id: None,
        });
    }
    for ticket in open {
        if let Some(odoo_id) = store.odoo_link("ticket", &ticket.id.0.to_string()).await? {
            links.push(fiche_hub::CardLink {
                kind: "odoo_ticket".to_owned(),
                url: form_url(base, "helpdesk.ticket", odoo_id),
                ticket_id: Some(ticket.id.0),
            });
        }
    }
    Ok(links)
}

/// Polls Odoo's changed partners every `poll_interval_secs` until `shutdown`.
pub async fn run_poller(
    config: OdooConfig,
    store: Store,
    policy: NumberPolicy,
    shutdown: CancellationToken,
) {
    let Some(interval) = config.poll_interval() else {
        return;
    };
    let mut connected: Option<(OdooClient, Poller)> = None;
    let mut retry = Duration::from_secs(1);
    let mut failing = false;
    loop {
        let result = match connected.as_mut() {
            Some((client, poller)) => poller.poll(client, &store).await.map(Some),
            None => match OdooClient::connect(&config).await {
                Ok(client) => match Poller::new(&client, &store, policy.clone()).await {
                    Ok(poller) => {
                        connected = Some((client, poller));
                        Ok(None)
                    }
                    Err(error) => Err(error),
                },
                Err(error) => Err(error),
            },
        };
        let wait = match result {
            Ok(report) => {
                if failing {
                    info!("Odoo answers again; partners follow");
                    failing = false;
                }
                retry = Duration::from_secs(1);
                if let Some(report) = report {
                    log_report(&report);
                    interval
                } else {
                    // Just connected: poll at once.
                    Duration::ZERO
                }
            }
            Err(error) => {
                if !failing {
                    match &error {
                        OdooError::AccessDenied { .. } => error!("{}", access_denied_hint(&config)),
                        other => warn!(error = %other, "Odoo partner poll failed; retrying"),
                    }
                }
                failing = true;
                // A refused key or a lost session needs a new login.
                if !error.is_transient() {
                    connected = None;
                }
                let wait = retry.min(interval.max(Duration::from_secs(1)));
                retry = (retry * 2).min(MAX_RETRY);
                wait
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

fn log_report(report: &fiche_odoo::sync::SyncReport) {
    let written = report.written;
    if written.inserted + written.updated > 0 || report.removed > 0 {
        info!(
            read = report.read,
            created = written.inserted,
            updated = written.updated,
            removed = report.removed,
            "Odoo partners applied"
        );
    } else {
        debug!(read = report.read, "Odoo partners: nothing new");
    }
    for bad in report.bad_numbers.iter().take(BAD_NUMBERS_LOGGED) {
        warn!(
            partner = bad.partner_id,
            field = bad.field,
            number = ?bad.raw,
            "Odoo partner number not understood (kept as typed)"
        );
    }
    if report.bad_numbers.len() > BAD_NUMBERS_LOGGED {
        warn!(
            more = report.bad_numbers.len() - BAD_NUMBERS_LOGGED,
            "more Odoo partner numbers not understood (`fiche odoo sync` lists them)"
        );
    }
    for (partner, reason) in &report.rejected {
        warn!(partner, reason = ?reason, "Odoo partner not imported");
    }
}
