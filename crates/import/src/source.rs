//! Reading rows of text cells out of CSV and spreadsheet files.
//!
//! CSV is streamed record by record. Its encoding is decided per cell:
//! valid UTF-8 is taken as UTF-8, anything else is Windows-1252, which is
//! what French Excel writes for "CSV (séparateur : point-virgule)". A
//! Windows-1252 accented letter is essentially never valid UTF-8, so the
//! two cannot be confused on real files, and no whole-file pass is needed.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use calamine::{Data, Reader};

use crate::error::ImportError;

/// Bytes looked at to find the header line's delimiter.
const SNIFF_BYTES: usize = 64 * 1024;

/// Where reading is, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    pub unit: ProgressUnit,
}

/// What [`Progress`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressUnit {
    /// CSV: bytes of the file (the row count is unknown until the end).
    Bytes,
    /// Spreadsheets: rows.
    Rows,
}

/// How often (in rows) progress is reported.
/// A power of two, so that a mask can test it.
pub(crate) const PROGRESS_EVERY: usize = 1024;

/// Calls `on_row(line, cells)` for the header then every row, in order.
pub(crate) fn read_csv<R: Read>(
    input: R,
    total_bytes: u64,
    delimiter: Option<u8>,
    on_progress: &mut dyn FnMut(Progress),
    on_row: &mut dyn FnMut(usize, Vec<String>) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    let mut input = BufReader::with_capacity(SNIFF_BYTES, input);
    let head = input.fill_buf().map_err(|source| ImportError::Io {
        path: "<input>".into(),
        source,
    })?;
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return Err(ImportError::Utf16);
    }
    let bom = if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        3
    } else {
        0
    };
    let delimiter = delimiter.unwrap_or_else(|| sniff_delimiter(&head[bom..]));
    input.consume(bom);

    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(input);
    let mut record = csv::ByteRecord::new();
    // Excel's row number is the record's ordinal: line breaks inside quoted
    // cells stay in one row. (The csv crate's own line numbers are not
    // usable: they drift with CRLF and quoted line breaks.) A completely
    // empty line, which Excel never writes (it writes ";;;"), is skipped by
    // the csv crate and therefore not counted.
    let mut count = 0usize;
    let mut next_report = PROGRESS_EVERY;
    loop {
        let more = reader
            .read_byte_record(&mut record)
            .map_err(|source| ImportError::Csv {
                line: source.position().map_or(0, |p| p.line()),
                source,
            })?;
        if !more {
            break;
        }
        let excel_row = count + 1;
        let cells = record.iter().map(decode).collect();
        on_row(excel_row, cells)?;
        count += 1;
        if count >= next_report {
            next_report += PROGRESS_EVERY;
            on_progress(Progress {
                done: reader.position().byte(),
                total: total_bytes,
                unit: ProgressUnit::Bytes,
            });
        }
    }
    on_progress(Progress {
        done: total_bytes,
        total: total_bytes,
        unit: ProgressUnit::Bytes,
    });
    Ok(())
}

fn decode(field: &[u8]) -> String {
    match std::str::from_utf8(field) {
        Ok(text) => text.to_owned(),
        Err(_) => encoding_rs::WINDOWS_1252
            .decode_without_bom_handling(field)
            .0
            .into_owned(),
    }
}

/// The most frequent of `;`, `,` and tab outside quotes on the first line;
/// `;` on a tie, as French Excel uses it.
fn sniff_delimiter(head: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in head {
        match b {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            b';' if !quoted => counts[0] += 1,
            b',' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let candidates = [b';', b',', b'\t'];
    let mut best = 0;
    for i in 1..3 {
        if counts[i] > counts[best] {
            best = i;
        }
    }
    candidates[best]
}

/// Calls `on_row(line, cells)` for every row of the chosen sheet (the first
/// if `sheet` is `None`); the first row is the header.
pub(crate) fn read_spreadsheet(
    path: &Path,
    sheet: Option<&str>,
    on_progress: &mut dyn FnMut(Progress),
    on_row: &mut dyn FnMut(usize, Vec<String>) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    let spreadsheet_error = |source| ImportError::Spreadsheet {
        path: path.to_owned(),
        source,
    };
    let mut workbook = calamine::open_workbook_auto(path).map_err(spreadsheet_error)?;
    let names = workbook.sheet_names();
    let range = match sheet {
        Some(wanted) => {
            let Some(name) = names
                .iter()
                .find(|n| n.as_str() == wanted)
                .or_else(|| names.iter().find(|n| n.eq_ignore_ascii_case(wanted)))
            else {
                return Err(ImportError::SheetNotFound {
                    name: wanted.to_owned(),
                    available: names,
                });
            };
            let name = name.clone();
            workbook.worksheet_range(&name).map_err(spreadsheet_error)?
        }
        None => match workbook.worksheet_range_at(0) {
            Some(range) => range.map_err(spreadsheet_error)?,
            None => return Err(ImportError::NoHeader),
        },
    };
    let first_row = range.start().map_or(0, |(row, _)| row as usize);
    let first_col = range.start().map_or(0, |(_, col)| col as usize);
    let total = range.height() as u64;
    for (i, row) in range.rows().enumerate() {
        // Cells left of the used range are empty; keep columns aligned with
        // what the user sees only matters for messages, which name headers.
        let mut cells = Vec::with_capacity(first_col + row.len());
        cells.resize(first_col, String::new());
        cells.extend(row.iter().map(cell_text));
        on_row(first_row + i + 1, cells)?;
        if (i + 1) & (PROGRESS_EVERY - 1) == 0 {
            on_progress(Progress {
                done: i as u64 + 1,
                total,
                unit: ProgressUnit::Rows,
            });
        }
    }
    on_progress(Progress {
        done: total,
        total,
        unit: ProgressUnit::Rows,
    });
    Ok(())
}

/// A cell as text. Whole numbers are written without a decimal part, so a
/// phone number Excel stored as the number 612345678 reads "612345678"
/// (its lost leading 0 is restored by the French number rules).
fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(text) => text.clone(),
        Data::Int(n) => n.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e17 => format!("{}", *f as i64),
        other => other.to_string(),
    }
}

/// Opens a CSV file for [`read_csv`], with its size for progress.
pub(crate) fn open_csv(path: &Path) -> Result<(File, u64), ImportError> {
    let io_error = |source| ImportError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    let size = file.metadata().map_err(io_error)?.len();
    Ok((file, size))
}
