//! The `fiche` command: parses the command line, sets up logging, and hands over
//! to the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use fiche_server::cli::customers_file::{self, ExportCustomersArgs, ImportCustomersArgs};
use fiche_server::cli::open_store;
use fiche_server::cli::user::{self, UserCommand};
use fiche_server::config::Config;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;
use tracing::info;
use tracing_subscriber::EnvFilter;

/// Fiche: the customer's file on the agent's screen before she picks up.
#[derive(Debug, Parser)]
#[command(name = "fiche", version, about)]
struct Cli {
    /// TOML configuration file (see config.example.toml); FICHE_* variables override it.
    #[arg(long, global = true, env = "FICHE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: HEP/AMI listeners, HTTP API, websocket, web pages.
    Serve,
    /// Try Fiche: the server on a throwaway demo database, with a simulated
    /// phone system placing calls; on loopback only.
    Demo(fiche_server::demo::DemoArgs),
    /// Check the configuration and print it (secrets redacted).
    CheckConfig,
    /// Create or upgrade the database schema (also done by `serve` at start).
    Migrate,
    /// Import records from a file.
    Import {
        #[command(subcommand)]
        what: ImportCommand,
    },
    /// Export records to a file.
    Export {
        #[command(subcommand)]
        what: ExportCommand,
    },
    /// Manage users: agents, supervisors, admins.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// CTI webhook tokens (`/api/v1/cti/{token}`), one per phone system.
    Cti {
        #[command(subcommand)]
        command: fiche_server::cti::cli::CtiCommand,
    },
    /// Copy the SQLite database to FILE, consistently, while the server runs
    /// (PostgreSQL: use pg_dump).
    Backup(fiche_server::cli::backup::BackupArgs),
    /// Odoo: check the connection, import the contacts (needs an [odoo] table).
    Odoo {
        #[command(subcommand)]
        command: fiche_server::odoo::cli::OdooCommand,
    },
    /// Several nodes on one PostgreSQL database.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// The nodes, their last heartbeat, and the work each holds.
    Status,
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// Import customers from a CSV or XLSX file (French Excel exports included).
    Customers(ImportCustomersArgs),
}

#[derive(Debug, Subcommand)]
enum ExportCommand {
    /// Export every customer as CSV (UTF-8 with BOM, `;`), re-importable.
    Customers(ExportCustomersArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("FICHE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Config::load(cli.config.as_deref(), |name| std::env::var(name).ok())
        .context("configuration")?;
    if let Command::CheckConfig = cli.command {
        println!("{config:#?}");
        return Ok(());
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve(config).await,
            Command::Demo(args) => demo(config, args).await,
            Command::CheckConfig => Ok(()),
            Command::Migrate => {
                let store = open_store(&config).await?;
                println!(
                    "base de données à jour / database up to date ({})",
                    store.backend_name()
                );
                store.close().await;
                Ok(())
            }
            Command::Import {
                what: ImportCommand::Customers(args),
            } => {
                let store = open_store(&config).await?;
                let result =
                    customers_file::import_customers(&store, &config.numbers.policy(), &args).await;
                store.close().await;
                result
            }
            Command::Export {
                what: ExportCommand::Customers(args),
            } => {
                let store = open_store(&config).await?;
                let result = customers_file::export_customers(&store, &args).await;
                store.close().await;
                result
            }
            Command::User { command } => {
                let store = open_store(&config).await?;
                let result = user::run(&store, command).await;
                store.close().await;
                result
            }
            Command::Cti { command } => {
                let store = open_store(&config).await?;
                let result = fiche_server::cti::cli::run(&store, command).await;
                store.close().await;
                result
            }
            // Never migrates: a backup copies the database as it is.
            Command::Backup(args) => {
                fiche_server::cli::backup::run(&config.database_url, &args).await
            }
            Command::Odoo { command } => odoo(&config, command).await,
            Command::Cluster {
                command: ClusterCommand::Status,
            } => {
                let store = open_store(&config).await?;
                let report = fiche_server::cluster::status::report(&store).await;
                store.close().await;
                print!("{}", report?);
                Ok(())
            }
        }
    })
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        info!("stop requested, draining");
        signals.cancel();
    });
    let listeners = fiche_server::serve::Listeners::bind(&config).await?;
    let store = open_store(&config).await?;
    fiche_server::serve::run(config, listeners, store, shutdown).await
}

async fn demo(config: Config, args: fiche_server::demo::DemoArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        info!("stop requested, draining");
        signals.cancel();
    });
    fiche_server::demo::run(config, args, shutdown).await
}

async fn odoo(
    config: &Config,
    command: fiche_server::odoo::cli::OdooCommand,
) -> anyhow::Result<()> {
    use fiche_server::odoo::cli::{self as odoo_cli, OdooCommand};
    let odoo = odoo_cli::configured(config)?;
    match command {
        OdooCommand::Check => odoo_cli::check(odoo).await,
        OdooCommand::Sync => {
            let store = open_store(config).await?;
            let result = odoo_cli::sync(odoo, &store, config.numbers.policy()).await;
            store.close().await;
            result
        }
    }
}

async fn wait_for_stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => drop(ctrl_c.await),
        }
    }
    #[cfg(not(unix))]
    drop(ctrl_c.await);
}
