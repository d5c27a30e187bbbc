//! `fiche demo`: Fiche as a new user first sees it. The real server, on a
//! throwaway database filled with a French demo company ([`seed`]), fed by a
//! built-in simulated phone system ([`phone`]) that sends real SIP, wrapped
//! in HEP v3, to Fiche's own HEP listener: the same listener, tracker,
//! pipeline, pops and tickets as in production. The demo listens on loopback
//! only, whatever the configuration says, and never reaches out: no AMI
//! source, no outbound webhook.

pub mod phone;
pub mod scenario;
pub mod seed;
pub mod sip;

#[cfg(test)]
mod tests;

use crate::auth::CurrentUser;
use crate::config::Config;
use crate::http::error::ApiError;
use crate::http::AppState;
use anyhow::{bail, Context};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// `fiche demo`'s options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DemoArgs {
    /// HTTP address, on loopback only (default: the configured port on 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Database to fill and keep (`sqlite://demo.db`, `postgres://…`): empty, or
    /// kept from an earlier demo. Default: a temporary SQLite file, deleted at exit.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

/// The HTTP address the demo listens on: `asked` (`--http`) must be on
/// loopback; the configured address (file or `FICHE_HTTP_ADDR`, meant for
/// production) is moved to 127.0.0.1, keeping its port, with a warning.
pub fn http_addr(
    configured: SocketAddr,
    asked: Option<SocketAddr>,
) -> anyhow::Result<(SocketAddr, Option<String>)> {
    match asked {
        Some(addr) if addr.ip().is_loopback() => Ok((addr, None)),
        Some(addr) => bail!(
            "--http {addr} : la démonstration n’écoute que sur la boucle locale \
             (127.0.0.1 ou [::1]) / the demo listens on loopback only"
        ),
        None if configured.ip().is_loopback() => Ok((configured, None)),
        None => {
            let moved = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), configured.port());
            Ok((
                moved,
                Some(format!(
                    "the configured HTTP address {configured} is not loopback: the demo listens on {moved}"
                )),
            ))
        }
    }
}

/// The configuration the demo runs with: `config` on loopback, on
/// `database_url`, without the production integrations (AMI sources,
/// outbound webhooks, Odoo), HEP over UDP on a port of its own.
pub fn demo_config(
    mut config: Config,
    args: &DemoArgs,
    database_url: String,
) -> anyhow::Result<Config> {
    let (http, warning) = http_addr(config.http_addr, args.http)?;
    if let Some(warning) = warning {
        warn!("{warning}");
    }
    config.http_addr = http;
    config.database_url = database_url;
    // The simulated phone system is the only PBX: a port of its own on
    // loopback, so that a production Fiche on 9060 is neither disturbed nor
    // in the way, and nothing from the network gets in.
    config.hep.addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    config.hep.udp = true;
    config.hep.tcp = false;
    config.hep.allow = vec!["127.0.0.0/8".parse()?, "::1/128".parse()?];
    config.ami.clear();
    config.webhooks.clear();
    // The demo company must never reach a real Odoo, nor its contacts the demo.
    config.odoo = None;
    // One throwaway node on SQLite: never part of a cluster.
    config.cluster = None;
    Ok(config)
}

/// Runs `fiche demo` until `shutdown`.
pub async fn run(
    config: Config,
    args: DemoArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Held until the end: the temporary database is deleted with it.
    let (database_url, temporary) = match &args.database {
        Some(url) => (url.clone(), None),
        None => {
            let dir = tempfile::Builder::new()
                .prefix("fiche-demo-")
                .tempdir()
                .context("creating a temporary folder for the demo database")?;
            let url = format!("sqlite://{}", dir.path().join("demo.db").display());
            (url, Some(dir))
        }
    };
    let config = demo_config(config, &args, database_url)?;
    let store = crate::cli::open_store(&config).await?;
    let logins = if seed::is_empty(&store).await? {
        seed::fill(&store, &config.numbers.policy())
            .await
            .context("filling the demo database")?
    } else if seed::is_demo(&store).await? {
        seed::reset_passwords(&store).await?
    } else {
        bail!(
            "{} : cette base contient déjà des comptes qui ne sont pas ceux de la démonstration ; \
             fiche demo ne remplit qu’une base vide / this database already holds accounts: \
             the demo fills an empty database only",
            fiche_store::redacted_url(&config.database_url)
        );
    };
    let listeners = crate::serve::Listeners::bind(&config)
        .await
        .with_context(|| {
            format!(
                "la démonstration n’a pas pu ouvrir {} (port pris ? essayez --http 127.0.0.1:8081)",
                config.http_addr
            )
        })?;
    let http = listeners.http_addr()?;
    let hep = listeners
        .hep_addr()
        .context("the demo's HEP listener is not bound")?;
    let phone = phone::PhoneSystem::new(hep, config.hep.auth_key.clone());
    print_banner(http, temporary.is_some(), &logins);
    let result = crate::serve::run_with(config, listeners, store, shutdown, Some(phone)).await;
    drop(temporary);
    result
}

fn print_banner(http: SocketAddr, temporary: bool, logins: &[seed::Login]) {
    let mut text = String::new();
    text.push_str("\nFiche — démonstration : Dupuis Chauffage, Lyon\n\n");
    text.push_str(&format!("  Ouvrez http://{http}/ et connectez-vous :\n\n"));
    for login in logins {
        text.push_str(&format!(
            "    {:<10} {:<14} {}\n",
            login.login, login.password, login.what
        ));
    }
    text.push_str(
        "\n  Un standard simulé place un appel toutes les 15 à 30 s (le premier dans quelques\n  \
         secondes, et un tout de suite pour l’agente qui ouvre sa page) : clients connus,\n  \
         inconnus, numéro masqué, groupe 600 (Claire et Nadia), appels manqués à rappeler,\n  \
         transfert. La démonstration n’écoute que sur cette machine.\n",
    );
    if temporary {
        text.push_str("  Base de données temporaire, effacée à l’arrêt (Ctrl+C).\n");
    }
    text.push_str("  Production : fiche serve (voir README.md).\n");
    println!("{text}");
}

/// The demo's HTTP route: `POST /api/demo/calls`.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/demo/calls", post(simulate_call))
}

/// Places a simulated call now (admins, demo mode only).
async fn simulate_call(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<(StatusCode, Json<phone::PlacedCall>), ApiError> {
    let Some(demo) = &state.demo else {
        return Err(ApiError::NotFound(
            "simulated calls exist only in demo mode (fiche demo)".into(),
        ));
    };
    crate::authz::may_simulate_calls(&user)?;
    match demo.place_call().await {
        Ok(placed) => Ok((StatusCode::ACCEPTED, Json(placed))),
        Err(error) => Err(ApiError::Busy(error.to_string())),
    }
}
