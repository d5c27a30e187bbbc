//! What can go wrong: the whole file ([`ImportError`], nothing is imported)
//! or one row ([`RowError`], the row is reported and left out).
//!
//! Row messages are product text, shown to the person importing: French by
//! `Display`, English through [`RowError::english`].

use std::fmt;
use std::path::PathBuf;

/// A file that cannot be read at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CSV syntax error near line {line}: {source}")]
    Csv {
        line: u64,
        #[source]
        source: csv::Error,
    },
    #[error("cannot read spreadsheet {path}: {source}")]
    Spreadsheet {
        path: PathBuf,
        #[source]
        source: calamine::Error,
    },
    #[error("sheet {name:?} not found; sheets are {available:?}")]
    SheetNotFound {
        name: String,
        available: Vec<String>,
    },
    #[error("the file has no header line")]
    NoHeader,
    #[error(
        "no column names a customer (name, company or phone); columns are {headers:?}; use --map"
    )]
    NoUsefulColumn { headers: Vec<String> },
    #[error("--map {spec:?}: no column {column:?} in the file; columns are {headers:?}")]
    OverrideColumnNotFound {
        spec: String,
        column: String,
        headers: Vec<String>,
    },
    #[error("--map {spec:?}: expected COLUMN=FIELD with FIELD one of name, first_name, company, phone[:label], email, address, postal_code, city, country, notes, tags, ref, ignore")]
    BadOverride { spec: String },
    #[error("the file is UTF-16 text; save it as \"CSV UTF-8\" or CSV (separator ;) instead")]
    Utf16,
    #[error("unsupported file type {path}: expected .csv, .txt, .xlsx, .xlsm, .xls or .ods")]
    UnsupportedFile { path: PathBuf },
}

/// One bad row. `line` is the row number Excel shows (the header is line 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: usize,
    /// The header of the offending column, when one column is at fault.
    pub column: Option<String>,
    pub issue: RowIssue,
}

/// Why a row was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RowIssue {
    /// Neither a name nor a company: the customer could not be shown.
    MissingName,
    /// A phone cell that is not a usable number (holds the cell text).
    InvalidPhone(String),
    /// A phone cell with too few digits for a customer's number: a
    /// truncated number, an internal extension or a service code.
    ShortPhone(String),
    /// An e-mail cell that is not an address (holds the cell text).
    InvalidEmail(String),
    /// Non-empty cells to the right of the last titled column: their data
    /// would be lost.
    ExtraCells(usize),
}

impl RowError {
    /// The message in English.
    pub fn english(&self) -> String {
        let issue = match &self.issue {
            RowIssue::MissingName => "neither a name nor a company".to_owned(),
            RowIssue::InvalidPhone(raw) => format!("invalid phone number {raw:?}"),
            RowIssue::ShortPhone(raw) => format!("phone number {raw:?} is too short"),
            RowIssue::InvalidEmail(raw) => format!("invalid e-mail address {raw:?}"),
            RowIssue::ExtraCells(n) => format!("{n} non-empty cell(s) beyond the last column"),
        };
        match &self.column {
            Some(column) => format!("line {}, column {column:?}: {issue}", self.line),
            None => format!("line {}: {issue}", self.line),
        }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ligne {}", self.line)?;
        if let Some(column) = &self.column {
            write!(f, ", colonne « {column} »")?;
        }
        match &self.issue {
            RowIssue::MissingName => write!(f, " : ni nom ni société"),
            RowIssue::InvalidPhone(raw) => write!(f, " : numéro de téléphone invalide « {raw} »"),
            RowIssue::ShortPhone(raw) => write!(f, " : numéro de téléphone trop court « {raw} »"),
            RowIssue::InvalidEmail(raw) => write!(f, " : adresse e-mail invalide « {raw} »"),
            RowIssue::ExtraCells(n) => {
                write!(f, " : {n} cellule(s) non vide(s) après la dernière colonne")
            }
        }
    }
}

impl std::error::Error for RowError {}
