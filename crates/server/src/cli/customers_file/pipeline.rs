//! The import without the printing: read the file, check every record as the
//! store would, then plan (dry run) or write in batches. The benchmark runs
//! this same function.

use std::collections::HashSet;

use fiche_import::progress::BarReporter;
use fiche_import::{
    ColumnOverride, ImportError, ImportedCustomer, Merge, Options, Progress, ProgressUnit, RowError,
};
use fiche_matcher::NumberPolicy;
use fiche_store::{
    CheckedCustomer, CustomerId, MatchedBy, NewCustomer, NewPhone, Store, StoreError, UpsertAction,
    MAX_BATCH_ROWS,
};

use super::ImportCustomersArgs;

/// Updates and in-store merges listed one by one in a dry run; the rest are counted.
pub const EXAMPLES: usize = 20;

/// Why an import did not run.
#[derive(Debug, thiserror::Error)]
pub enum ImportFailure {
    /// The file or the options cannot be used; nothing was written.
    #[error(transparent)]
    Unusable(#[from] Unusable),
    /// The database refused a batch. Earlier batches are written (each batch is one
    /// transaction; importing the file again updates them instead of duplicating).
    #[error("database error after {written_records} records written: {source}")]
    Database {
        written_records: usize,
        #[source]
        source: StoreError,
    },
}

/// Input that cannot be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// The file (reading, header, `--map`, `--sheet`).
    #[error(transparent)]
    File(#[from] ImportError),
    /// `--delimiter` is not one character.
    #[error("--delimiter {0:?}: expected one character such as ; , | or tab")]
    Delimiter(String),
    /// The reading thread died (a bug in the reader); nothing was written.
    #[error("reading the file stopped unexpectedly: {0}")]
    Reader(String),
}

/// A row that is not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRow {
    /// Refused while reading (no name, bad number, bad e-mail…).
    Row(RowError),
    /// Read fine but refused by the store's checks (too long, too many numbers…).
    Refused {
        line: usize,
        /// Rows merged into this one inside the file, also left out.
        merged_lines: Vec<usize>,
        field: &'static str,
        /// The store's reason, in English.
        reason: String,
    },
}

impl BadRow {
    /// The row's line (Excel numbering, the header is line 1).
    pub fn line(&self) -> usize {
        match self {
            BadRow::Row(error) => error.line,
            BadRow::Refused { line, .. } => *line,
        }
    }
}

/// What an import did, or would do in a dry run.
#[derive(Debug, Clone, Default)]
pub struct ImportOutcome {
    pub dry_run: bool,
    pub skip_bad: bool,
    /// Data rows read, good and bad.
    pub rows: usize,
    /// Customer records left after merging the file's duplicates.
    pub records: usize,
    /// Bad rows, by line.
    pub bad: Vec<BadRow>,
    /// Rows of the file folded into an earlier row (same reference, e-mail or number).
    pub file_merges: Vec<Merge>,
    /// Records the store folded into an earlier record of the same batch:
    /// (line, line of the record kept, key).
    pub store_merges: Vec<(usize, usize, MatchedBy)>,
    /// Customers created (or that would be).
    pub inserted: usize,
    /// Existing customers changed (or that would be).
    pub updated: usize,
    /// Records merged into an existing customer, by matching key.
    pub updated_by_ref: usize,
    pub updated_by_email: usize,
    pub updated_by_phone: usize,
    /// The first [`EXAMPLES`] updates: (line, customer, key).
    pub update_examples: Vec<(usize, CustomerId, MatchedBy)>,
    /// Columns of the file that are not imported.
    pub ignored_columns: Vec<String>,
    /// Whether anything was written.
    pub written: bool,
}

impl ImportOutcome {
    /// Bad rows stopped the import (no `--skip-bad`).
    pub fn blocked(&self) -> bool {
        !self.bad.is_empty() && !self.skip_bad
    }

    /// Distinct bad lines.
    pub fn bad_lines(&self) -> usize {
        self.bad
            .iter()
            .map(BadRow::line)
            .collect::<HashSet<_>>()
            .len()
    }

    /// Rows merged into another inside the file, by the reader or the store.
    pub fn merged_in_file(&self) -> usize {
        self.file_merges.len() + self.store_merges.len()
    }

    fn tally(&mut self, actions: &[UpsertAction], lines: &[usize]) {
        for (index, action) in actions.iter().enumerate() {
            let line = lines.get(index).copied().unwrap_or(0);
            match action {
                UpsertAction::Insert => {}
                UpsertAction::Update { id, matched_by } => {
                    match matched_by {
                        MatchedBy::ExternalRef => self.updated_by_ref += 1,
                        MatchedBy::Email => self.updated_by_email += 1,
                        MatchedBy::Phone => self.updated_by_phone += 1,
                    }
                    if self.update_examples.len() < EXAMPLES {
                        self.update_examples.push((line, *id, *matched_by));
                    }
                }
                UpsertAction::MergeIntoRow { row, matched_by } => {
                    let kept = lines.get(*row).copied().unwrap_or(0);
                    self.store_merges.push((line, kept, *matched_by));
                }
            }
        }
    }
}

/// The reading options for `args`.
pub fn options(policy: &NumberPolicy, args: &ImportCustomersArgs) -> Result<Options, Unusable> {
    let overrides = args
        .map
        .iter()
        .map(|spec| spec.parse::<ColumnOverride>())
        .collect::<Result<Vec<_>, _>>()?;
    let delimiter = match args.delimiter.as_deref() {
        None => None,
        Some(text) => Some(parse_delimiter(text)?),
    };
    Ok(Options {
        sheet: args.sheet.clone(),
        overrides,
        policy: policy.clone(),
        delimiter,
    })
}

fn parse_delimiter(text: &str) -> Result<u8, Unusable> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ => match text.as_bytes() {
            [byte] if byte.is_ascii_punctuation() => Ok(*byte),
            _ => Err(Unusable::Delimiter(text.to_owned())),
        },
    }
}

/// The store's form of an imported record.
pub fn to_new_customer(record: &ImportedCustomer) -> NewCustomer {
    into_new_customer(record.clone())
}

/// [`to_new_customer`] without copying the texts.
pub fn into_new_customer(record: ImportedCustomer) -> NewCustomer {
    NewCustomer {
        name: record.name,
        company: record.company,
        email: record.email,
        address: record.address,
        notes: record.notes,
        tags: record.tags,
        external_ref: record.external_ref,
        phones: record
            .phones
            .into_iter()
            .map(|phone| NewPhone {
                e164: Some(phone.e164),
                raw: phone.raw,
                label: Some(phone.label),
            })
            .collect(),
    }
}

/// Runs `fiche import customers` without printing: see the module header.
/// `show_progress` allows progress bars (they also need stderr to be a terminal).
pub async fn run(
    store: &Store,
    policy: &NumberPolicy,
    args: &ImportCustomersArgs,
    show_progress: bool,
) -> Result<ImportOutcome, ImportFailure> {
    let options = options(policy, args)?;
    let path = args.file.clone();
    // Reading is CPU-bound (decoding, number parsing): off the async workers.
    let batch = tokio::task::spawn_blocking(move || {
        let mut bar = BarReporter::new();
        let result = fiche_import::read_path(&path, &options, &mut |progress| {
            if show_progress {
                bar.report(progress);
            }
        });
        bar.finish();
        result
    })
    .await
    .map_err(|e| Unusable::Reader(e.to_string()))?
    .map_err(Unusable::File)?;

    let mut outcome = ImportOutcome {
        dry_run: args.dry_run,
        skip_bad: args.skip_bad,
        rows: batch.rows,
        records: batch.records.len(),
        file_merges: batch.merges,
        ignored_columns: batch.ignored_columns,
        bad: batch.errors.into_iter().map(BadRow::Row).collect(),
        ..ImportOutcome::default()
    };

    // Check every record before writing anything, so that all bad rows are reported
    // and none is found halfway through the writes.
    // Checked once, here: the store takes the checked rows as they are.
    let mut rows: Vec<CheckedCustomer> = Vec::with_capacity(batch.records.len());
    let mut lines: Vec<usize> = Vec::with_capacity(batch.records.len());
    for mut record in batch.records {
        let line = record.line;
        let merged_lines = std::mem::take(&mut record.merged_lines);
        match into_new_customer(record).check() {
            Ok(customer) => {
                rows.push(customer);
                lines.push(line);
            }
            Err(error) => {
                let (field, reason) = match error {
                    StoreError::Invalid { field, reason } => (field, reason),
                    other => ("", other.to_string()),
                };
                outcome.bad.push(BadRow::Refused {
                    line,
                    merged_lines,
                    field,
                    reason,
                });
            }
        }
    }
    // Stable: a row's several problems stay in column order.
    outcome.bad.sort_by_key(BadRow::line);

    if args.dry_run {
        if !rows.is_empty() {
            // One plan over the whole file (the store looks keys up in chunks), so that
            // rows matching rows of another batch are seen as such.
            let actions = store.plan_checked_batch(&rows).await.map_err(|source| {
                ImportFailure::Database {
                    written_records: 0,
                    source,
                }
            })?;
            outcome.inserted = actions
                .iter()
                .filter(|a| matches!(a, UpsertAction::Insert))
                .count();
            outcome.updated = actions
                .iter()
                .filter_map(|a| match a {
                    UpsertAction::Update { id, .. } => Some(*id),
                    _ => None,
                })
                .collect::<HashSet<_>>()
                .len();
            outcome.tally(&actions, &lines);
        }
        return Ok(outcome);
    }
    if outcome.blocked() {
        return Ok(outcome);
    }

    let bar =
        show_progress.then(|| fiche_import::progress::bar(rows.len() as u64, ProgressUnit::Rows));
    let mut written_records = 0;
    for (chunk, chunk_lines) in rows
        .chunks(MAX_BATCH_ROWS)
        .zip(lines.chunks(MAX_BATCH_ROWS))
    {
        let result =
            store
                .upsert_checked_batch(chunk)
                .await
                .map_err(|source| ImportFailure::Database {
                    written_records,
                    source,
                })?;
        outcome.written = true;
        outcome.inserted += result.inserted;
        outcome.updated += result.updated;
        outcome.tally(&result.actions, chunk_lines);
        written_records += chunk.len();
        if let Some(bar) = &bar {
            fiche_import::progress::update(
                bar,
                Progress {
                    done: written_records as u64,
                    total: rows.len() as u64,
                    unit: ProgressUnit::Rows,
                },
            );
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(outcome)
}
