//! Customer files to customer records for Fiche: the customer history lives
//! in Excel today, and this crate reads it.
//!
//! CSV (`;`, `,` or tab, detected; UTF-8 with or without BOM or
//! Windows-1252) and spreadsheets (XLSX, XLS, ODS through calamine) become
//! [`ImportedCustomer`] records with E.164 phone numbers (through
//! `fiche-matcher`), bad rows become [`RowError`]s naming their line and
//! column, and duplicates inside the file are merged ([`Merge`]). Nothing
//! here touches the database: the caller decides what to write, so a dry run
//! is just not writing. [`write_csv`] exports records back.

pub mod error;
pub mod export;
pub mod mapping;
pub mod merge;
pub mod progress;
pub mod record;
pub mod source;

use std::path::Path;

use fiche_matcher::NumberPolicy;

pub use error::{ImportError, RowError, RowIssue};
pub use export::{write_csv, ExportError};
pub use mapping::{ColumnMap, ColumnOverride, Field};
pub use merge::{Merge, MergeKey, Merger};
pub use record::{ImportedCustomer, ImportedPhone};
pub use source::{Progress, ProgressUnit};

/// How to read a file.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Spreadsheet sheet to read; the first one when `None`.
    pub sheet: Option<String>,
    /// `--map COLUMN=FIELD` overrides, applied after the header defaults.
    pub overrides: Vec<ColumnOverride>,
    /// How phone numbers are read (default region FR).
    pub policy: NumberPolicy,
    /// CSV delimiter; detected from the header line when `None`.
    pub delimiter: Option<u8>,
}

/// Everything read from one file.
#[derive(Debug, Clone, Default)]
pub struct ImportBatch {
    /// Good rows, duplicates merged, in file order.
    pub records: Vec<ImportedCustomer>,
    /// Bad rows, in file order (a row may have several problems).
    pub errors: Vec<RowError>,
    pub merges: Vec<Merge>,
    /// Headers of columns that are not imported (reported once).
    pub ignored_columns: Vec<String>,
    /// Non-blank data rows read (good and bad).
    pub rows: usize,
}

impl ImportBatch {
    /// Lines that have at least one error.
    pub fn bad_lines(&self) -> usize {
        let mut lines: Vec<usize> = self.errors.iter().map(|e| e.line).collect();
        lines.dedup();
        lines.len()
    }
}

/// One data row's outcome, for [`read_rows`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    Customer(ImportedCustomer),
    Rejected(Vec<RowError>),
}

/// Reads a whole file (the kind chosen by its extension) and merges
/// duplicates. `on_progress` is called every thousand rows or so.
pub fn read_path(
    path: &Path,
    options: &Options,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<ImportBatch, ImportError> {
    let mut merger = Merger::new();
    let mut batch = ImportBatch::default();
    let map = read_rows(path, options, on_progress, &mut |outcome| {
        batch.rows += 1;
        match outcome {
            RowOutcome::Customer(record) => merger.push(record),
            RowOutcome::Rejected(errors) => batch.errors.extend(errors),
        }
    })?;
    batch.ignored_columns = map.ignored;
    (batch.records, batch.merges) = merger.finish();
    Ok(batch)
}

/// [`read_path`] for CSV already in memory or on any reader.
pub fn read_csv<R: std::io::Read + Send>(
    input: R,
    options: &Options,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<ImportBatch, ImportError> {
    let mut merger = Merger::new();
    let mut batch = ImportBatch::default();
    let map = read_csv_rows(input, 0, options, on_progress, &mut |outcome| {
        batch.rows += 1;
        match outcome {
            RowOutcome::Customer(record) => merger.push(record),
            RowOutcome::Rejected(errors) => batch.errors.extend(errors),
        }
    })?;
    batch.ignored_columns = map.ignored;
    (batch.records, batch.merges) = merger.finish();
    Ok(batch)
}

/// The streaming form: calls `on_row` for each non-blank data row as it is
/// read, without merging duplicates, and returns the column mapping used.
pub fn read_rows(
    path: &Path,
    options: &Options,
    on_progress: &mut dyn FnMut(Progress),
    on_row: &mut dyn FnMut(RowOutcome),
) -> Result<ColumnMap, ImportError> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match extension.as_str() {
        "csv" | "txt" | "tsv" => {
            let (file, size) = source::open_csv(path)?;
            read_csv_rows(file, size, options, on_progress, on_row)
        }
        "xlsx" | "xlsm" | "xlsb" | "xls" | "ods" => {
            let mut mapper = RowMapper::new(options);
            source::read_spreadsheet(
                path,
                options.sheet.as_deref(),
                on_progress,
                &mut |line, cells| mapper.row(line, cells, on_row),
            )?;
            mapper.finish()
        }
        _ => Err(ImportError::UnsupportedFile {
            path: path.to_owned(),
        }),
    }
}

fn read_csv_rows<R: std::io::Read + Send>(
    input: R,
    size: u64,
    options: &Options,
    on_progress: &mut dyn FnMut(Progress),
    on_row: &mut dyn FnMut(RowOutcome),
) -> Result<ColumnMap, ImportError> {
    // Rows are decoded and mapped on other threads (the costly part: text
    // decoding and number parsing); they still arrive here in file order.
    let map = source::read_csv_parallel(
        input,
        size,
        options.delimiter,
        on_progress,
        &mut |cells| header_map(cells, options),
        |map: &ColumnMap, row: source::RawRow| {
            let cells: Vec<String> = row.record.iter().map(source::decode).collect();
            match record::map_row(row.line, &cells, map, &options.policy) {
                Ok(Some(customer)) => Some(RowOutcome::Customer(customer)),
                Ok(None) => None,
                Err(errors) => Some(RowOutcome::Rejected(errors)),
            }
        },
        on_row,
    )?;
    map.ok_or(ImportError::NoHeader)
}

/// The column map, when `cells` is the header (the first non-blank row).
fn header_map(cells: Vec<String>, options: &Options) -> Result<Option<ColumnMap>, ImportError> {
    if !cells.iter().any(|c| !c.trim().is_empty()) {
        return Ok(None);
    }
    let headers = cells.into_iter().map(|c| c.trim().to_owned()).collect();
    ColumnMap::new(headers, &options.overrides).map(Some)
}

/// Takes the first non-blank row as the header, then maps each row.
struct RowMapper<'a> {
    options: &'a Options,
    map: Option<ColumnMap>,
}

impl<'a> RowMapper<'a> {
    fn new(options: &'a Options) -> Self {
        Self { options, map: None }
    }

    fn row(
        &mut self,
        line: usize,
        cells: Vec<String>,
        on_row: &mut dyn FnMut(RowOutcome),
    ) -> Result<(), ImportError> {
        let Some(map) = &self.map else {
            self.map = header_map(cells, self.options)?;
            return Ok(());
        };
        match record::map_row(line, &cells, map, &self.options.policy) {
            Ok(Some(customer)) => on_row(RowOutcome::Customer(customer)),
            Ok(None) => {}
            Err(errors) => on_row(RowOutcome::Rejected(errors)),
        }
        Ok(())
    }

    fn finish(self) -> Result<ColumnMap, ImportError> {
        self.map.ok_or(ImportError::NoHeader)
    }
}
