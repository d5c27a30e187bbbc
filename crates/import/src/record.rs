//! One row of cells → one customer record, or the reasons it is refused.

use fiche_matcher::{normalise, NumberKind, NumberPolicy};

use crate::error::{RowError, RowIssue};
use crate::mapping::{ColumnMap, Field};

/// Cells longer than this are cut (with a mark) rather than stored whole: no
/// customer field is legitimately that long, and the store should not be
/// handed megabytes in a name.
pub const MAX_CELL_CHARS: usize = 10_000;

/// A customer as read from the file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportedCustomer {
    /// The row it came from (Excel numbering, header = 1).
    pub line: usize,
    /// Rows merged into this one as duplicates.
    pub merged_lines: Vec<usize>,
    pub external_ref: Option<String>,
    /// "First Last" when both columns exist; may be empty if `company` is not.
    pub name: String,
    pub company: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub notes: Option<String>,
    pub tags: Vec<String>,
    pub phones: Vec<ImportedPhone>,
}

impl ImportedCustomer {
    /// What the record says about who it is, for the same-person rule.
    pub fn identity(&self) -> fiche_model::Identity<'_> {
        fiche_model::Identity {
            name: &self.name,
            company: self.company.as_deref(),
            email: self.email.as_deref(),
            external_ref: self.external_ref.as_deref(),
        }
    }
}

/// A phone number of a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedPhone {
    /// As typed in the cell (or its part, when a cell held several numbers).
    pub raw: String,
    /// "+33612345678".
    pub e164: String,
    /// "portable", "fixe", "téléphone"…
    pub label: String,
}

/// Cell texts meaning "no number".
const EMPTY_MARKERS: &[&str] = &[
    "-", "--", "/", "?", "n/a", "na", "nc", "n.c.", "néant", "neant", "aucun", "none", "x",
];

/// Turns one row into a customer. `Ok(None)` for a blank row.
pub(crate) fn map_row(
    line: usize,
    cells: &[String],
    map: &ColumnMap,
    policy: &NumberPolicy,
) -> Result<Option<ImportedCustomer>, Vec<RowError>> {
    if cells.iter().all(|c| clean_cell(c).is_empty()) {
        return Ok(None);
    }
    let mut errors = Vec::new();
    let mut customer = ImportedCustomer {
        line,
        ..ImportedCustomer::default()
    };
    let extra = cells
        .iter()
        .skip(map.fields.len())
        .filter(|c| !clean_cell(c).is_empty())
        .count();
    if extra > 0 {
        errors.push(RowError {
            line,
            column: None,
            issue: RowIssue::ExtraCells(extra),
        });
    }

    let mut last_name = Vec::new();
    let mut first_name = Vec::new();
    let mut street = Vec::new();
    let mut postal_code = Vec::new();
    let mut city = Vec::new();
    let mut country = Vec::new();
    let mut notes = Vec::new();

    for ((cell, field), header) in cells.iter().zip(&map.fields).zip(&map.headers) {
        let value = clean_cell(cell);
        if value.is_empty() {
            continue;
        }
        match field {
            Field::Ignore => {}
            Field::Name => last_name.push(value),
            Field::FirstName => first_name.push(value),
            Field::Company => match &customer.company {
                None => customer.company = Some(value),
                Some(_) => spill(header, &value, &mut notes),
            },
            Field::ExternalRef => match &customer.external_ref {
                None => customer.external_ref = Some(value),
                Some(_) => spill(header, &value, &mut notes),
            },
            Field::Email => {
                if !is_email(&value) {
                    errors.push(RowError {
                        line,
                        column: Some(header.clone()),
                        issue: RowIssue::InvalidEmail(value),
                    });
                } else if customer.email.is_none() {
                    customer.email = Some(value);
                } else {
                    spill(header, &value, &mut notes);
                }
            }
            Field::Phone { label } => match parse_phone_cell(&value, label, policy) {
                Ok(phones) => {
                    for phone in phones {
                        if !customer.phones.iter().any(|p| p.e164 == phone.e164) {
                            customer.phones.push(phone);
                        }
                    }
                }
                Err(issue) => errors.push(RowError {
                    line,
                    column: Some(header.clone()),
                    issue,
                }),
            },
            Field::Address => street.push(value),
            Field::PostalCode => postal_code.push(value),
            Field::City => city.push(value),
            Field::Country => country.push(value),
            Field::Notes => notes.push(value),
            Field::Tags => {
                for tag in split_tags(&value) {
                    if !customer.tags.contains(&tag) {
                        customer.tags.push(tag);
                    }
                }
            }
        }
    }

    first_name.extend(last_name);
    customer.name = first_name.join(" ");
    let locality = [postal_code.join(" "), city.join(" ")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let address: Vec<String> = street
        .into_iter()
        .chain([locality, country.join(" ")])
        .filter(|s| !s.is_empty())
        .collect();
    customer.address = (!address.is_empty()).then(|| address.join(", "));
    customer.notes = (!notes.is_empty()).then(|| notes.join("\n"));

    if customer.name.is_empty() && customer.company.is_none() {
        errors.push(RowError {
            line,
            column: None,
            issue: RowIssue::MissingName,
        });
    }
    if errors.is_empty() {
        Ok(Some(customer))
    } else {
        Err(errors)
    }
}

/// Second values of one-value fields go to the notes rather than away.
fn spill(header: &str, value: &str, notes: &mut Vec<String>) {
    notes.push(format!("{header} : {value}"));
}

/// Trims, drops the apostrophe that protects a cell from being read as a
/// formula (see `export`), and bounds the length.
pub(crate) fn clean_cell(cell: &str) -> String {
    let mut value = cell.trim();
    if let Some(rest) = value.strip_prefix('\'') {
        value = rest.trim_start();
    }
    match value.char_indices().nth(MAX_CELL_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

fn split_tags(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split([',', ';', '|'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// A deliberately loose check: one `@`, something before it, a dotted
/// domain after it, no spaces. Stricter rules reject real addresses.
fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == ',' || c == ';')
        && value.len() <= 254
}

/// One phone cell → its numbers. A cell may hold several numbers
/// ("06 12 34 56 78 / 01 42 68 53 00", "… ou …"): it is split only when the
/// whole text is not one number.
fn parse_phone_cell(
    value: &str,
    label: &str,
    policy: &NumberPolicy,
) -> Result<Vec<ImportedPhone>, RowIssue> {
    if EMPTY_MARKERS.contains(&value.to_lowercase().as_str()) {
        return Ok(Vec::new());
    }
    let one = |raw: &str| -> Result<Option<ImportedPhone>, RowIssue> {
        match normalise(raw, policy) {
            NumberKind::E164(e164) => Ok(Some(ImportedPhone {
                raw: raw.to_owned(),
                e164,
                label: label.to_owned(),
            })),
            NumberKind::Withheld => Ok(None),
            NumberKind::Extension(_) => Err(RowIssue::ShortPhone(raw.to_owned())),
            NumberKind::Invalid(_) => Err(RowIssue::InvalidPhone(raw.to_owned())),
        }
    };
    match one(value) {
        Ok(phone) => Ok(phone.into_iter().collect()),
        Err(whole) => {
            let lower = value.to_lowercase();
            let parts: Vec<&str> = if lower.contains(" ou ") || lower.contains(" or ") {
                split_words(value)
            } else {
                value
                    .split(['/', ',', ';', '|', '\n', '&'])
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .collect()
            };
            if parts.len() < 2 {
                return Err(whole);
            }
            let mut phones = Vec::new();
            for part in parts {
                phones.extend(one(part)?);
            }
            Ok(phones)
        }
    }
}

/// Splits "A ou B" / "A or B" (any case) into its parts.
fn split_words(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let lower = value.to_ascii_lowercase();
    let mut i = 0;
    while i + 4 <= lower.len() {
        let window = &lower.as_bytes()[i..i + 4];
        if window == b" ou " || window == b" or " {
            parts.push(value[start..i].trim());
            start = i + 4;
            i += 4;
        } else {
            i += 1;
        }
    }
    parts.push(value[start..].trim());
    parts.retain(|p| !p.is_empty());
    parts
}
