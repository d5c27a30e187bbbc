//! Duplicates inside one file: the same customer on several rows is merged
//! into the first, by external reference, then e-mail, then phone.
//!
//! Two rows are never merged when they contradict each other on a stronger
//! key (two different references; for a phone match, two different e-mails
//! or names): a shared switchboard number does not make two contacts one.
//! Values of the merged row that differ from the kept one are not dropped:
//! they are appended to the notes, naming the row they came from.

use std::collections::HashMap;

use crate::record::ImportedCustomer;

/// What a row was merged on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeKey {
    ExternalRef(String),
    Email(String),
    /// The E.164 number.
    Phone(String),
}

/// One row folded into an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    pub kept_line: usize,
    pub merged_line: usize,
    pub key: MergeKey,
}

/// Accumulates records, merging duplicates as they arrive.
#[derive(Debug, Default)]
pub struct Merger {
    records: Vec<ImportedCustomer>,
    merges: Vec<Merge>,
    by_ref: HashMap<String, usize>,
    by_email: HashMap<String, usize>,
    by_phone: HashMap<String, Vec<usize>>,
}

fn fold(value: &str) -> String {
    value.trim().to_lowercase()
}

fn conflict(a: Option<&str>, b: Option<&str>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if fold(a) != fold(b))
}

impl Merger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a record, or folds it into an earlier duplicate.
    pub fn push(&mut self, record: ImportedCustomer) {
        match self.find(&record) {
            Some((index, key)) => {
                self.merges.push(Merge {
                    kept_line: self.records[index].line,
                    merged_line: record.line,
                    key,
                });
                merge_into(&mut self.records[index], record);
                self.remember(index);
            }
            None => {
                self.records.push(record);
                self.remember(self.records.len() - 1);
            }
        }
    }

    /// The records in file order and the merges made.
    pub fn finish(self) -> (Vec<ImportedCustomer>, Vec<Merge>) {
        (self.records, self.merges)
    }

    fn find(&self, record: &ImportedCustomer) -> Option<(usize, MergeKey)> {
        if let Some(reference) = &record.external_ref {
            if let Some(&index) = self.by_ref.get(&fold(reference)) {
                return Some((index, MergeKey::ExternalRef(reference.clone())));
            }
        }
        let compatible_ref = |other: &ImportedCustomer| {
            !conflict(
                other.external_ref.as_deref(),
                record.external_ref.as_deref(),
            )
        };
        if let Some(email) = &record.email {
            if let Some(&index) = self.by_email.get(&fold(email)) {
                if compatible_ref(&self.records[index]) {
                    return Some((index, MergeKey::Email(email.clone())));
                }
            }
        }
        for phone in &record.phones {
            for &index in self
                .by_phone
                .get(&phone.e164)
                .map_or(&[][..], Vec::as_slice)
            {
                let other = &self.records[index];
                let same_person = compatible_ref(other)
                    && !conflict(other.email.as_deref(), record.email.as_deref())
                    && !conflict(non_empty(&other.name), non_empty(&record.name))
                    && !conflict(other.company.as_deref(), record.company.as_deref());
                if same_person {
                    return Some((index, MergeKey::Phone(phone.e164.clone())));
                }
            }
        }
        None
    }

    fn remember(&mut self, index: usize) {
        let record = &self.records[index];
        if let Some(reference) = &record.external_ref {
            self.by_ref.entry(fold(reference)).or_insert(index);
        }
        if let Some(email) = &record.email {
            self.by_email.entry(fold(email)).or_insert(index);
        }
        for phone in &record.phones {
            let list = self.by_phone.entry(phone.e164.clone()).or_default();
            if !list.contains(&index) {
                list.push(index);
            }
        }
    }
}

fn non_empty(text: &str) -> Option<&str> {
    (!text.trim().is_empty()).then_some(text)
}

fn merge_into(kept: &mut ImportedCustomer, other: ImportedCustomer) {
    let line = other.line;
    let mut notes: Vec<String> = kept.notes.take().into_iter().collect();
    let mut keep = |slot: &mut Option<String>, value: Option<String>, what: &str| {
        if let Some(value) = value {
            match slot {
                None => *slot = Some(value),
                Some(current) if fold(current) == fold(&value) => {}
                Some(_) => notes.push(format!("ligne {line}, {what} : {value}")),
            }
        }
    };
    keep(&mut kept.external_ref, other.external_ref, "référence");
    keep(&mut kept.company, other.company, "société");
    keep(&mut kept.email, other.email, "e-mail");
    keep(&mut kept.address, other.address, "adresse");
    let mut name = non_empty(&kept.name).map(str::to_owned);
    keep(&mut name, non_empty(&other.name).map(str::to_owned), "nom");
    kept.name = name.unwrap_or_default();
    if let Some(text) = other.notes {
        if !notes.contains(&text) {
            notes.push(text);
        }
    }
    kept.notes = (!notes.is_empty()).then(|| notes.join("\n"));
    for tag in other.tags {
        if !kept.tags.contains(&tag) {
            kept.tags.push(tag);
        }
    }
    for phone in other.phones {
        if !kept.phones.iter().any(|p| p.e164 == phone.e164) {
            kept.phones.push(phone);
        }
    }
    kept.merged_lines.push(line);
    kept.merged_lines.extend(other.merged_lines);
}
