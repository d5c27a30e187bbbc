//! `fiche import customers` and `fiche export customers`: the customer history
//! kept in Excel today, in and out of the store.
//!
//! The import reads the whole file first (fiche-import: mapping, numbers,
//! duplicates inside the file), checks every record as the store would, and
//! only then writes, in batches of at most [`fiche_store::MAX_BATCH_ROWS`]:
//! so by default a file with one bad row writes nothing. The pipeline itself
//! ([`pipeline::run`]) prints nothing; this module turns its outcome into
//! text and exit codes.

pub mod pipeline;
pub mod text;

use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use fiche_import::ImportedCustomer;
use fiche_matcher::NumberPolicy;
use fiche_store::{CustomerQuery, Store};

pub use pipeline::{run, BadRow, ImportFailure, ImportOutcome};
pub use text::Lang;

/// Exit code when bad rows blocked the import (nothing written).
pub const EXIT_BAD_ROWS: i32 = 1;
/// Exit code when the file or the options cannot be used at all.
pub const EXIT_UNUSABLE: i32 = 2;

const IMPORT_HELP: &str = "\
Columns are recognised by their header, in French or English (Nom, Prénom, Société, \
Téléphone, Portable, Fixe, Email, Adresse, Code postal, Ville, Notes, Étiquettes, \
Référence…); --map overrides a column. Rows are merged with existing customers by \
external reference, then e-mail, then phone number (when one customer holds it and the \
names agree); duplicates inside the file are merged the same way.

Every bad row is reported with its line number (the header is line 1, as in Excel). \
Without --skip-bad nothing is written when any row is bad.

Exit codes: 0 imported (or dry run without bad rows); 1 bad rows blocked the import \
(also in a dry run, which then shows what --skip-bad would do), or a database error; \
2 unusable input (unreadable file, unknown --map column, no header).

Messages are in French; --lang en or FICHE_LANG=en for English.";

/// `fiche import customers FILE`.
#[derive(Debug, Clone, Args)]
#[command(after_long_help = IMPORT_HELP)]
pub struct ImportCustomersArgs {
    /// CSV (`;` or `,`, UTF-8 or Windows-1252) or XLSX file.
    pub file: PathBuf,
    /// Column override "COLUMN=FIELD", repeatable; FIELD is one of name, first_name,
    /// company, phone, phone:LABEL, mobile, email, address, postal_code, city, country,
    /// notes, tags, ref, ignore. Example: --map "Tel. bureau=phone:bureau".
    #[arg(long = "map", value_name = "COLUMN=FIELD")]
    pub map: Vec<String>,
    /// Spreadsheet sheet to read (the first one by default).
    #[arg(long)]
    pub sheet: Option<String>,
    /// CSV delimiter: ";", ",", "tab" or "|" (detected from the header by default).
    #[arg(long)]
    pub delimiter: Option<String>,
    /// Show what would change (new, updated and merged customers, bad rows);
    /// write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Import the good rows even if some rows are bad (those are reported and left out).
    #[arg(long)]
    pub skip_bad: bool,
    /// Language of the messages: fr (default) or en.
    #[arg(long, env = "FICHE_LANG")]
    pub lang: Option<String>,
}

/// `fiche export customers`.
#[derive(Debug, Clone, Args)]
pub struct ExportCustomersArgs {
    /// Output file; standard output when absent.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Imports a customer file into the store, printing the report (stdout) and the
/// bad rows and errors (stderr).
///
/// Exits the process with [`EXIT_UNUSABLE`] when the input cannot be used and with
/// [`EXIT_BAD_ROWS`] when bad rows blocked the import (store closed first); returns
/// an error on a database failure.
pub async fn import_customers(
    store: &Store,
    policy: &NumberPolicy,
    args: &ImportCustomersArgs,
) -> anyhow::Result<()> {
    let lang = Lang::from_setting(args.lang.as_deref());
    let show_progress = std::io::stderr().is_terminal();
    let outcome = match pipeline::run(store, policy, args, show_progress).await {
        Ok(outcome) => outcome,
        Err(ImportFailure::Unusable(message)) => {
            eprintln!("{}", text::unusable(lang, &message));
            // main maps every error to exit code 1; unusable input has its own code,
            // so the store is closed here and the process ends.
            store.close().await;
            std::process::exit(EXIT_UNUSABLE);
        }
        Err(ImportFailure::Database {
            written_records,
            source,
        }) => {
            anyhow::bail!("{}", text::database_failure(lang, written_records, &source));
        }
    };

    let stderr = std::io::stderr();
    // A file of bad rows should not cost one write call per line.
    let mut err = BufWriter::new(stderr.lock());
    if !outcome.ignored_columns.is_empty() {
        writeln!(
            err,
            "{}",
            text::ignored_columns(lang, &outcome.ignored_columns)
        )?;
    }
    for bad in &outcome.bad {
        writeln!(err, "{}", bad.message(lang))?;
    }
    err.flush()?;
    drop(err);

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if outcome.dry_run {
        for line in text::dry_run_details(lang, &outcome) {
            writeln!(out, "{line}")?;
        }
    }
    writeln!(out, "{}", text::summary(lang, &outcome))?;
    out.flush()?;
    drop(out);

    if outcome.blocked() {
        eprintln!("{}", text::blocked(lang, outcome.bad_lines()));
        // Not an error of Fiche: the report above says it all, without the
        // "Error:" and backtrace that main would add.
        store.close().await;
        std::process::exit(EXIT_BAD_ROWS);
    }
    Ok(())
}

/// Exports every customer as CSV (UTF-8 with BOM, `;`), readable back by the importer.
pub async fn export_customers(store: &Store, args: &ExportCustomersArgs) -> anyhow::Result<()> {
    let records = all_customers(store).await?;
    match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut out = BufWriter::new(file);
            fiche_import::write_csv(&records, &mut out)
                .with_context(|| format!("writing {}", path.display()))?;
            out.flush()
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("{} clients exportés / customers exported", records.len());
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            fiche_import::write_csv(&records, &mut out).context("writing to standard output")?;
            out.flush().context("writing to standard output")?;
        }
    }
    Ok(())
}

/// Every customer, ordered by name, as export records.
async fn all_customers(store: &Store) -> anyhow::Result<Vec<ImportedCustomer>> {
    const PAGE: u32 = 500;
    let mut records = Vec::new();
    let mut offset: u32 = 0;
    loop {
        let page = store
            .search_customers(&CustomerQuery {
                text: None,
                e164: None,
                limit: PAGE,
                offset,
            })
            .await
            .context("reading the customers")?;
        let count = page.items.len();
        records.extend(page.items.into_iter().map(|customer| {
            ImportedCustomer {
                line: 0,
                merged_lines: Vec::new(),
                external_ref: customer.external_ref,
                name: customer.name,
                company: customer.company,
                email: customer.email,
                address: customer.address,
                notes: customer.notes,
                tags: customer.tags,
                phones: customer
                    .phones
                    .into_iter()
                    .map(|phone| fiche_import::ImportedPhone {
                        e164: phone.e164.unwrap_or_default(),
                        raw: phone.raw,
                        label: phone
                            .label
                            .unwrap_or_else(|| fiche_import::mapping::LABEL_PHONE.to_owned()),
                    })
                    .collect(),
            }
        }));
        if count < PAGE as usize {
            break;
        }
        offset = offset
            .checked_add(PAGE)
            .context("more customers than an export can page through")?;
    }
    Ok(records)
}
