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

/// Records handed to a mapping thread at once.
const CHUNK_RECORDS: usize = 2048;
/// Chunks waiting between the parsing, mapping and merging threads: bounds the
/// memory a fast stage can run ahead with.
const CHUNKS_IN_FLIGHT: usize = 4;
/// Most threads mapping rows (decoding, number parsing).
const MAX_MAPPERS: usize = 4;

/// One parsed CSV record with its Excel row number.
pub(crate) struct RawRow {
    pub(crate) line: usize,
    pub(crate) record: csv::ByteRecord,
}

/// A piece of the file for the mapping threads, in file order (`seq`).
struct Chunk {
    seq: usize,
    rows: Vec<RawRow>,
    /// Bytes of the file read up to the end of this chunk, for progress.
    position: u64,
    /// A parse error after the last row of this chunk ends the file.
    error: Option<ImportError>,
}

/// The output of one chunk.
struct Mapped<T> {
    seq: usize,
    items: Vec<T>,
    position: u64,
    error: Option<ImportError>,
}

/// The delivering side's receiver; dropping it tells the parser to stop.
struct StopOnDrop<'a, T> {
    rx: std::sync::mpsc::Receiver<T>,
    stop: &'a std::sync::atomic::AtomicBool,
}

impl<T> Drop for StopOnDrop<'_, T> {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A CSV reader over `input`: byte order mark skipped, delimiter given or
/// sniffed from the first line, UTF-16 refused.
fn open_reader<R: Read>(
    input: R,
    delimiter: Option<u8>,
) -> Result<csv::Reader<BufReader<R>>, ImportError> {
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
    Ok(csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(input))
}

fn csv_error(source: csv::Error) -> ImportError {
    ImportError::Csv {
        line: source.position().map_or(0, |p| p.line()),
        source,
    }
}

/// Reads a CSV file in three stages running at once: this thread's caller
/// gets `on_item` calls in file order, while one thread parses the CSV and
/// others turn rows into items with `map`.
///
/// `header` is called on each record until it returns `Some` (the first
/// non-blank row, whose cells name the columns): `map` then receives that
/// value with every later row. Excel's row number is the record's ordinal:
/// line breaks inside quoted cells stay in one row (the csv crate's own line
/// numbers drift with CRLF and quoted line breaks). A completely empty line,
/// which Excel never writes (it writes ";;;"), is skipped by the csv crate
/// and therefore not counted. Returns the header's value, `None` when the
/// file has no non-blank row.
pub(crate) fn read_csv_parallel<R, H, T, M>(
    input: R,
    total_bytes: u64,
    delimiter: Option<u8>,
    on_progress: &mut dyn FnMut(Progress),
    header: &mut dyn FnMut(Vec<String>) -> Result<Option<H>, ImportError>,
    map: M,
    on_item: &mut dyn FnMut(T),
) -> Result<Option<H>, ImportError>
where
    R: Read + Send,
    H: Sync,
    T: Send,
    M: Fn(&H, RawRow) -> Option<T> + Sync,
{
    let mut reader = open_reader(input, delimiter)?;
    let mut count = 0usize;
    let mut record = csv::ByteRecord::new();
    let found = loop {
        if !reader.read_byte_record(&mut record).map_err(csv_error)? {
            break None;
        }
        count += 1;
        if let Some(found) = header(record.iter().map(decode).collect())? {
            break Some(found);
        }
    };
    let Some(found) = found else {
        on_progress(Progress {
            done: total_bytes,
            total: total_bytes,
            unit: ProgressUnit::Bytes,
        });
        return Ok(None);
    };

    let mappers = std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .clamp(1, MAX_MAPPERS);
    let (chunks_tx, chunks_rx) = std::sync::mpsc::sync_channel::<Chunk>(CHUNKS_IN_FLIGHT);
    let (mapped_tx, mapped_rx) = std::sync::mpsc::sync_channel::<Mapped<T>>(CHUNKS_IN_FLIGHT);
    let chunks_rx = std::sync::Mutex::new(chunks_rx);
    let found_ref = &found;
    let map = &map;
    // Set when the delivering side stops early (an error, a panic in
    // `on_item`): the parser then stops and the mappers drain what is queued,
    // so that no thread stays blocked on a full channel.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let stop = &stop;
    let outcome = std::thread::scope(|scope| -> Result<(), ImportError> {
        // Parsing: the CSV state machine only, in file order.
        scope.spawn(move || {
            let mut seq = 0;
            loop {
                let mut rows = Vec::with_capacity(CHUNK_RECORDS);
                let mut error = None;
                while rows.len() < CHUNK_RECORDS {
                    let mut record = csv::ByteRecord::new();
                    match reader.read_byte_record(&mut record) {
                        Ok(true) => {
                            count += 1;
                            rows.push(RawRow {
                                line: count,
                                record,
                            });
                        }
                        Ok(false) => break,
                        Err(source) => {
                            error = Some(csv_error(source));
                            break;
                        }
                    }
                }
                let last = rows.len() < CHUNK_RECORDS || error.is_some();
                let chunk = Chunk {
                    seq,
                    rows,
                    position: reader.position().byte(),
                    error,
                };
                let stopped = stop.load(std::sync::atomic::Ordering::Relaxed);
                // A closed channel means the reading stopped: nothing to do.
                if stopped || chunks_tx.send(chunk).is_err() || last {
                    break;
                }
                seq += 1;
            }
        });

        // Mapping: decoding cells, normalising numbers; any order.
        for _ in 0..mappers {
            let mapped_tx = mapped_tx.clone();
            let chunks_rx = &chunks_rx;
            let found = found_ref;
            scope.spawn(move || loop {
                let next = match chunks_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => break,
                };
                let Ok(chunk) = next else { break };
                let items = chunk
                    .rows
                    .into_iter()
                    .filter_map(|row| map(found, row))
                    .collect();
                let mapped = Mapped {
                    seq: chunk.seq,
                    items,
                    position: chunk.position,
                    error: chunk.error,
                };
                if mapped_tx.send(mapped).is_err() {
                    // Nobody delivers any more: let the parser finish.
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    while let Ok(Ok(_)) = chunks_rx.lock().map(|rx| rx.recv()) {}
                    break;
                }
            });
        }
        drop(mapped_tx);

        // Delivering, in file order.
        let mut waiting: std::collections::BTreeMap<usize, Mapped<T>> = Default::default();
        let mut next = 0;
        let mut rows_seen = 0usize;
        let mut next_report = PROGRESS_EVERY;
        // Dropped on return (or unwinding), so that the other threads stop
        // when this one does.
        let mapped_rx = StopOnDrop {
            rx: mapped_rx,
            stop,
        };
        for mapped in mapped_rx.rx.iter() {
            waiting.insert(mapped.seq, mapped);
            while let Some(mapped) = waiting.remove(&next) {
                next += 1;
                let rows = mapped.items.len();
                for item in mapped.items {
                    on_item(item);
                }
                rows_seen += rows;
                if let Some(error) = mapped.error {
                    return Err(error);
                }
                if rows_seen >= next_report {
                    next_report = rows_seen + PROGRESS_EVERY;
                    on_progress(Progress {
                        done: mapped.position,
                        total: total_bytes,
                        unit: ProgressUnit::Bytes,
                    });
                }
            }
        }
        Ok(())
    });
    outcome?;
    on_progress(Progress {
        done: total_bytes,
        total: total_bytes,
        unit: ProgressUnit::Bytes,
    });
    Ok(Some(found))
}

pub(crate) fn decode(field: &[u8]) -> String {
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
