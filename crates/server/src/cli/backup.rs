//! `fiche backup FILE`: a consistent copy of the SQLite database, taken while
//! the server runs (see `fiche_store::Store::backup_into`). PostgreSQL
//! installs use `pg_dump`; this says so rather than copying nothing.

use anyhow::{bail, Context};
use fiche_store::{redacted_url, Store};
use std::path::{Path, PathBuf};

/// `fiche backup` arguments.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Where to write the copy: a new file (see `--force`).
    pub file: PathBuf,
    /// Replace FILE when it exists: the copy is written beside it first, then
    /// renamed over it, so FILE is never left half written.
    #[arg(long)]
    pub force: bool,
}

/// Writes the copy, checks it, and prints where it is.
pub async fn run(database_url: &str, args: &BackupArgs) -> anyhow::Result<()> {
    let url = redacted_url(database_url);
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        bail!(
            "fiche backup copies a SQLite database, and {url} is PostgreSQL: back it up with \
             pg_dump instead (e.g. `pg_dump --format=custom --file=fiche.dump DATABASE`)"
        );
    }
    if database_url.contains(":memory:") || database_url.contains("mode=memory") {
        bail!("{url} is an in-memory database: another process cannot copy it");
    }
    if args.file.exists() && !args.force {
        bail!(
            "{} already exists; choose a new file, or pass --force to replace it",
            args.file.display()
        );
    }
    let store = Store::connect_existing(database_url)
        .await
        .with_context(|| format!("opening the database {url} (does it exist?)"))?;
    let written = if args.force {
        beside(&args.file)?
    } else {
        args.file.clone()
    };
    if args.force && written.exists() {
        // Left by an interrupted earlier run: ours to replace.
        std::fs::remove_file(&written)
            .with_context(|| format!("removing {}", written.display()))?;
    }
    let result = store.backup_into(&written).await;
    store.close().await;
    if let Err(error) = result {
        if args.force {
            drop(std::fs::remove_file(&written));
        }
        return Err(error).with_context(|| format!("backing {url} up to {}", written.display()));
    }
    if written != args.file {
        std::fs::rename(&written, &args.file).with_context(|| {
            format!("renaming {} to {}", written.display(), args.file.display())
        })?;
    }
    let bytes = std::fs::metadata(&args.file).map(|m| m.len()).unwrap_or(0);
    println!(
        "sauvegarde écrite / backup written: {} ({} KiB)",
        args.file.display(),
        bytes.div_ceil(1024)
    );
    Ok(())
}

/// A temporary name in FILE's folder (a rename never crosses file systems).
fn beside(file: &Path) -> anyhow::Result<PathBuf> {
    let name = file
        .file_name()
        .with_context(|| format!("{}: not a file name", file.display()))?;
    let mut temporary = std::ffi::OsString::from(".");
    temporary.push(name);
    temporary.push(format!(".fiche-backup-{}", std::process::id()));
    Ok(file.with_file_name(temporary))
}
