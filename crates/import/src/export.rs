//! Customer records back to a CSV file that French Excel opens as is and
//! that this importer reads back to the same records: UTF-8 with a byte
//! order mark (without it Excel assumes Windows-1252), `;` separators, CRLF
//! line ends, one column per phone label ("Portable", "Portable 2", …).
//!
//! Cells starting with `=`, `+`, `-`, `@` (or a tab, a carriage return or an
//! apostrophe) get a leading apostrophe so that Excel never evaluates a
//! customer-supplied value as a formula; the importer strips it again. Excel
//! shows that apostrophe, e.g. on "'+33 6 12 34 56 78".

use std::io::Write;

use crate::mapping::{
    LABEL_FAX, LABEL_HOME, LABEL_LANDLINE, LABEL_MOBILE, LABEL_OFFICE, LABEL_PHONE,
    LABEL_SWITCHBOARD,
};
use crate::record::ImportedCustomer;

/// Writing the export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error("cannot write the CSV export: {0}")]
    Csv(#[from] csv::Error),
    #[error("cannot write the CSV export: {0}")]
    Io(#[from] std::io::Error),
}

const FIXED_HEADERS: [&str; 7] = [
    "Référence",
    "Nom",
    "Société",
    "E-mail",
    "Adresse",
    "Notes",
    "Étiquettes",
];

/// Phone labels in the order their columns appear; others follow sorted.
const LABEL_ORDER: [&str; 7] = [
    LABEL_PHONE,
    LABEL_MOBILE,
    LABEL_LANDLINE,
    LABEL_OFFICE,
    LABEL_HOME,
    LABEL_SWITCHBOARD,
    LABEL_FAX,
];

fn label_header(label: &str) -> String {
    match label {
        LABEL_PHONE => "Téléphone".to_owned(),
        LABEL_MOBILE => "Portable".to_owned(),
        LABEL_LANDLINE => "Fixe".to_owned(),
        LABEL_FAX => "Fax".to_owned(),
        other => format!("Tél. {other}"),
    }
}

/// Writes `records` as CSV (see the module header for the format).
pub fn write_csv<W: Write>(records: &[ImportedCustomer], mut out: W) -> Result<(), ExportError> {
    out.write_all(b"\xEF\xBB\xBF")?;
    // Columns per label: as many as the customer with most numbers of it.
    let mut columns: Vec<(String, usize)> = Vec::new();
    for record in records {
        for phone in &record.phones {
            let count = record
                .phones
                .iter()
                .filter(|p| p.label == phone.label)
                .count();
            match columns.iter_mut().find(|(label, _)| *label == phone.label) {
                Some((_, max)) => *max = (*max).max(count),
                None => columns.push((phone.label.clone(), count)),
            }
        }
    }
    columns.sort_by(|(a, _), (b, _)| {
        let rank = |l: &str| {
            LABEL_ORDER
                .iter()
                .position(|k| *k == l)
                .unwrap_or(usize::MAX)
        };
        rank(a).cmp(&rank(b)).then_with(|| a.cmp(b))
    });

    let mut writer = csv::WriterBuilder::new()
        .delimiter(b';')
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    let mut header: Vec<String> = FIXED_HEADERS.iter().map(|h| (*h).to_owned()).collect();
    for (label, count) in &columns {
        let base = label_header(label);
        header.push(base.clone());
        for n in 2..=*count {
            header.push(format!("{base} {n}"));
        }
    }
    writer.write_record(&header)?;

    for record in records {
        let mut row: Vec<String> = vec![
            record.external_ref.clone().unwrap_or_default(),
            record.name.clone(),
            record.company.clone().unwrap_or_default(),
            record.email.clone().unwrap_or_default(),
            record.address.clone().unwrap_or_default(),
            record.notes.clone().unwrap_or_default(),
            record.tags.join(", "),
        ];
        for (label, count) in &columns {
            let mut numbers = record.phones.iter().filter(|p| p.label == *label).map(|p| {
                if p.raw.trim().is_empty() {
                    p.e164.clone()
                } else {
                    p.raw.clone()
                }
            });
            for _ in 0..*count {
                row.push(numbers.next().unwrap_or_default());
            }
        }
        writer.write_record(row.iter().map(|cell| protect(cell).into_owned()))?;
    }
    writer.flush()?;
    Ok(())
}

/// Neutralises spreadsheet formulas (CSV injection).
fn protect(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r' | '\'') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}
