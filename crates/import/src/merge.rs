//! Duplicates inside one file: the same customer on several rows is merged
//! into the first, by external reference, then e-mail, then phone.
//!
//! Whether two rows are the same person is `fiche_model::Identity`'s rule, the
//! one the store applies against the file already held: never two different
//! references; for a phone match, no different e-mails, names or companies
//! either, so a shared switchboard number does not make two contacts one.
//! Values of the merged row that differ from the kept one are not dropped:
//! they are appended to the notes, naming the row they came from.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::HashMap;
use std::hash::BuildHasher;

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
///
/// The key tables hold the hash of each key, not the key: a million-row file
/// would otherwise cost millions of small allocations (and as many frees at
/// the end), which was most of the reading time. A hash only points at
/// candidate records; each is checked against the record's own value, so a
/// collision can never merge two rows.
#[derive(Debug, Default)]
pub struct Merger {
    records: Vec<ImportedCustomer>,
    merges: Vec<Merge>,
    /// Folded reference → the record that has it (the first one).
    by_ref: HashMap<u64, Bucket>,
    /// Folded e-mail → the record that has it (the first one).
    by_email: HashMap<u64, Bucket>,
    /// E.164 number → the records that have it, in order.
    by_phone: HashMap<u64, Bucket>,
    /// Keyed hashing (SipHash): the file's keys must not be able to make the
    /// tables degenerate.
    hasher: RandomState,
    /// Reused to fold a key before hashing it.
    scratch: String,
}

/// Record indexes under one hash: almost always one, kept inline then.
#[derive(Debug, Clone)]
enum Bucket {
    One(usize),
    Many(Vec<usize>),
}

impl Bucket {
    fn as_slice(&self) -> &[usize] {
        match self {
            Bucket::One(index) => std::slice::from_ref(index),
            Bucket::Many(indexes) => indexes,
        }
    }

    fn push(&mut self, index: usize) {
        match self {
            Bucket::One(first) => *self = Bucket::Many(vec![*first, index]),
            Bucket::Many(indexes) => indexes.push(index),
        }
    }
}

fn fold_chars(value: &str) -> impl Iterator<Item = char> + '_ {
    value.trim().chars().flat_map(char::to_lowercase)
}

/// Whether `a` and `b` are the same once trimmed and lower-cased.
fn same_folded(a: &str, b: &str) -> bool {
    a == b || fold_chars(a).eq(fold_chars(b))
}

/// Which key table, and how a record's value is compared with a key.
#[derive(Clone, Copy)]
enum Table {
    Ref,
    Email,
    Phone,
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

    fn hash_folded(&mut self, value: &str) -> u64 {
        self.scratch.clear();
        self.scratch.extend(fold_chars(value));
        self.hasher.hash_one(self.scratch.as_str())
    }

    fn hash_of(&mut self, table: Table, value: &str) -> u64 {
        match table {
            Table::Ref | Table::Email => self.hash_folded(value),
            Table::Phone => self.hasher.hash_one(value),
        }
    }

    /// Whether record `index` holds `value` in `table`.
    fn holds(&self, table: Table, index: usize, value: &str) -> bool {
        let Some(record) = self.records.get(index) else {
            return false;
        };
        match table {
            Table::Ref => record
                .external_ref
                .as_deref()
                .is_some_and(|r| same_folded(r, value)),
            Table::Email => record
                .email
                .as_deref()
                .is_some_and(|e| same_folded(e, value)),
            Table::Phone => record.phones.iter().any(|p| p.e164 == value),
        }
    }

    fn map(&self, table: Table) -> &HashMap<u64, Bucket> {
        match table {
            Table::Ref => &self.by_ref,
            Table::Email => &self.by_email,
            Table::Phone => &self.by_phone,
        }
    }

    /// The records holding `value` in `table`, in the order they got it.
    fn candidates(&self, table: Table, hash: u64, value: &str) -> Vec<usize> {
        self.map(table)
            .get(&hash)
            .map_or(&[][..], Bucket::as_slice)
            .iter()
            .copied()
            .filter(|&index| self.holds(table, index, value))
            .collect()
    }

    /// The first record holding `value` in `table` (no allocation: the common
    /// lookup).
    fn first_holder(&self, table: Table, hash: u64, value: &str) -> Option<usize> {
        self.map(table)
            .get(&hash)?
            .as_slice()
            .iter()
            .copied()
            .find(|&index| self.holds(table, index, value))
    }

    fn find(&mut self, record: &ImportedCustomer) -> Option<(usize, MergeKey)> {
        if let Some(reference) = &record.external_ref {
            let hash = self.hash_of(Table::Ref, reference);
            if let Some(index) = self.first_holder(Table::Ref, hash, reference) {
                return Some((index, MergeKey::ExternalRef(reference.clone())));
            }
        }
        let who = record.identity();
        if let Some(email) = &record.email {
            let hash = self.hash_of(Table::Email, email);
            if let Some(index) = self.first_holder(Table::Email, hash, email) {
                if who.same_by_email(&self.records[index].identity()) {
                    return Some((index, MergeKey::Email(email.clone())));
                }
            }
        }
        for phone in &record.phones {
            let hash = self.hash_of(Table::Phone, &phone.e164);
            let holders = match self.map(Table::Phone).get(&hash) {
                None => continue,
                Some(Bucket::One(index)) if self.holds(Table::Phone, *index, &phone.e164) => {
                    vec![*index]
                }
                Some(_) => self.candidates(Table::Phone, hash, &phone.e164),
            };
            for index in holders {
                if who.same_by_phone(&self.records[index].identity()) {
                    return Some((index, MergeKey::Phone(phone.e164.clone())));
                }
            }
        }
        None
    }

    fn remember(&mut self, index: usize) {
        let Some(record) = self.records.get(index) else {
            return;
        };
        // The keys are copied out (a few short strings) so that the tables can
        // be updated while the record is borrowed no more.
        let reference = record.external_ref.clone();
        let email = record.email.clone();
        let phones: Vec<String> = record.phones.iter().map(|p| p.e164.clone()).collect();
        if let Some(reference) = reference {
            self.add(Table::Ref, &reference, index, true);
        }
        if let Some(email) = email {
            self.add(Table::Email, &email, index, true);
        }
        for phone in phones {
            self.add(Table::Phone, &phone, index, false);
        }
    }

    /// Files record `index` under `value`. With `first_only`, only when no
    /// earlier record holds `value` (the first holder stays the target).
    fn add(&mut self, table: Table, value: &str, index: usize, first_only: bool) {
        let hash = self.hash_of(table, value);
        let known = self.map(table).get(&hash).is_some_and(|bucket| {
            bucket
                .as_slice()
                .iter()
                .any(|&i| i == index || (first_only && self.holds(table, i, value)))
        });
        if known {
            return;
        }
        let map = match table {
            Table::Ref => &mut self.by_ref,
            Table::Email => &mut self.by_email,
            Table::Phone => &mut self.by_phone,
        };
        match map.entry(hash) {
            Entry::Occupied(mut slot) => slot.get_mut().push(index),
            Entry::Vacant(slot) => {
                slot.insert(Bucket::One(index));
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
                Some(current) if same_folded(current, &value) => {}
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
