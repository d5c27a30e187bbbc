//! The customer file: customers, their phone numbers, search, and the batch upsert
//! used by the importer.
//!
//! Phone numbers arrive already normalised: `e164` is the matcher's job (it knows the
//! region and the PBX prefixes); this module only checks its shape and keeps `raw`
//! exactly as typed.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use crate::error::{conflict, map_db_error, Result, StoreError};
use crate::sql::{contains_pattern, now, placeholders, value_rows, Dialect};
use crate::{begin_write, dispatch, Backend, Store};
use fiche_model::Identity;
use sqlx::SqlitePool;

/// Most rows [`Store::upsert_customers_batch`] takes at once (one transaction each).
pub const MAX_BATCH_ROWS: usize = 10_000;
/// Customers per multi-row INSERT statement (10 values each, well under SQLite's
/// 32,766 and PostgreSQL's 65,535 bound values).
const CUSTOMER_ROWS_PER_INSERT: usize = 500;
/// Phones per multi-row INSERT statement (4 values each).
const PHONE_ROWS_PER_INSERT: usize = 1000;
/// Values per `IN (...)` list in merge lookups.
const KEYS_PER_LOOKUP: usize = 1000;
/// Largest page a search returns.
const MAX_PAGE: u32 = 500;
/// Change-log rows per multi-row INSERT (2 values each).
const CHANGE_ROWS_PER_INSERT: usize = 1000;
/// Most change-log rows [`Store::customer_changes_since`] returns at once.
pub const MAX_CHANGES_PAGE: u32 = 10_000;
/// Widest id range [`Store::customers_between`] reads at once.
pub const MAX_CUSTOMER_RANGE: i64 = 10_000;
/// Longest text field accepted (notes), in characters.
const MAX_TEXT_CHARS: usize = 65_536;
/// Longest short field (name, company, email, label, tag, external_ref), in characters.
const MAX_SHORT_CHARS: usize = 512;
/// Most tags per customer and phone numbers per customer.
const MAX_TAGS: usize = 64;
const MAX_PHONES: usize = 64;

/// Id of a customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomerId(pub i64);

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Id of a stored phone number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PhoneId(pub i64);

impl fmt::Display for PhoneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A phone number to store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPhone {
    /// Normalised `+<country><number>`, `None` when it could not be normalised.
    pub e164: Option<String>,
    /// As typed by a person or found in the imported file.
    pub raw: String,
    /// "mobile", "bureau", ...
    pub label: Option<String>,
}

/// A stored phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phone {
    /// Its id.
    pub id: PhoneId,
    /// Its customer.
    pub customer_id: CustomerId,
    /// Normalised form, `None` when it could not be normalised.
    pub e164: Option<String>,
    /// As typed.
    pub raw: String,
    /// "mobile", "bureau", ...
    pub label: Option<String>,
}

/// A customer to create, or the new content of one (update, import).
///
/// Text is trimmed; empty text counts as absent. A customer needs a name or a company.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCustomer {
    /// Person's name (may be empty when `company` is set).
    pub name: String,
    /// Company.
    pub company: Option<String>,
    /// Email address.
    pub email: Option<String>,
    /// Postal address, free text.
    pub address: Option<String>,
    /// Free notes.
    pub notes: Option<String>,
    /// Labels such as "VIP"; duplicates are dropped.
    pub tags: Vec<String>,
    /// Id in the system the customer came from; unique when set.
    pub external_ref: Option<String>,
    /// Phone numbers.
    pub phones: Vec<NewPhone>,
}

/// A stored customer with its phone numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// Its id.
    pub id: CustomerId,
    /// Person's name (empty when only the company is known).
    pub name: String,
    /// Company.
    pub company: Option<String>,
    /// Email address.
    pub email: Option<String>,
    /// Postal address.
    pub address: Option<String>,
    /// Free notes.
    pub notes: Option<String>,
    /// Labels.
    pub tags: Vec<String>,
    /// Id in the system the customer came from.
    pub external_ref: Option<String>,
    /// Time of the latest call with this customer.
    pub last_contact_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Phone numbers, in the order they were added.
    pub phones: Vec<Phone>,
}

/// A customer search.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerQuery {
    /// Words found in the name, company or email (case-insensitive), or a piece of a
    /// phone number in any format: as typed (`06 12 34`) or as digits of the E.164 form.
    pub text: Option<String>,
    /// Only customers having this exact normalised number.
    pub e164: Option<String>,
    /// Page size, at most 500; 0 means 50.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u32,
}

/// One page of search results, ordered by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerPage {
    /// How many customers match in all.
    pub total: u64,
    /// This page.
    pub items: Vec<Customer>,
}

/// A number for the matcher's index: every stored phone number with its customer.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct PhoneEntry {
    /// The customer.
    #[sqlx(try_from = "i64")]
    pub customer_id: CustomerId,
    /// Normalised form, `None` when the stored number could not be normalised.
    pub e164: Option<String>,
    /// As typed (the matcher falls back on its digits).
    pub raw: String,
    /// Latest call with that customer, to rank customers sharing a number.
    pub last_contact_at: Option<DateTime<Utc>>,
}

impl From<i64> for CustomerId {
    fn from(id: i64) -> Self {
        CustomerId(id)
    }
}

/// Keys to look up existing customers by, for merging imported rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeKeys {
    /// External references.
    pub external_refs: Vec<String>,
    /// Emails (compared case-insensitively).
    pub emails: Vec<String>,
    /// Normalised numbers.
    pub e164s: Vec<String>,
}

/// Existing customers found for [`MergeKeys`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeMatches {
    /// External reference → its customer.
    pub by_external_ref: HashMap<String, CustomerId>,
    /// Lower-cased email → customers having it, lowest id first.
    pub by_email: HashMap<String, Vec<CustomerId>>,
    /// E.164 number → customers having it, lowest id first.
    pub by_e164: HashMap<String, Vec<CustomerId>>,
}

/// Which key made an imported row merge into an existing customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    /// Same external reference.
    ExternalRef,
    /// Same email (case-insensitive), and no different external reference.
    Email,
    /// Same number, held by exactly one customer whose name agrees.
    Phone,
}

/// What the batch upsert does (or would do) with one input row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum UpsertAction {
    /// A new customer.
    Insert,
    /// Merged into an existing customer.
    Update {
        /// The customer.
        id: CustomerId,
        /// Why.
        matched_by: MatchedBy,
    },
    /// Merged into an earlier row of the same batch (a duplicate inside the file).
    MergeIntoRow {
        /// Index of that row in the batch.
        row: usize,
        /// Why.
        matched_by: MatchedBy,
    },
}

/// Result of [`Store::upsert_customers_batch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOutcome {
    /// Customers created.
    pub inserted: usize,
    /// Existing customers changed.
    pub updated: usize,
    /// Per input row: what was done.
    pub actions: Vec<UpsertAction>,
    /// Per input row: the customer it ended up in.
    pub ids: Vec<CustomerId>,
}

#[derive(FromRow)]
struct CustomerRow {
    id: i64,
    name: String,
    company: Option<String>,
    email: Option<String>,
    address: Option<String>,
    notes: Option<String>,
    tags: String,
    external_ref: Option<String>,
    last_contact_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct PhoneRow {
    id: i64,
    customer_id: i64,
    e164: Option<String>,
    raw: String,
    label: Option<String>,
}

impl From<PhoneRow> for Phone {
    fn from(row: PhoneRow) -> Phone {
        Phone {
            id: PhoneId(row.id),
            customer_id: CustomerId(row.customer_id),
            e164: row.e164,
            raw: row.raw,
            label: row.label,
        }
    }
}

impl CustomerRow {
    fn into_customer(self, phones: Vec<Phone>) -> Result<Customer> {
        let tags: Vec<String> =
            serde_json::from_str(&self.tags).map_err(|_| StoreError::Corrupt {
                entity: "customer",
                field: "tags",
                value: self.tags.clone(),
            })?;
        Ok(Customer {
            id: CustomerId(self.id),
            name: self.name,
            company: self.company,
            email: self.email,
            address: self.address,
            notes: self.notes,
            tags,
            external_ref: self.external_ref,
            last_contact_at: self.last_contact_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            phones,
        })
    }
}

const CUSTOMER_COLUMNS: &str = "id, name, company, email, address, notes, tags, external_ref, \
     last_contact_at, created_at, updated_at";

#[macro_use]
mod queries;
mod changes;
mod mirror;
mod operations;
mod plan;
mod validate;

pub use changes::CustomerChange;
pub use mirror::MirrorOutcome;
use plan::*;
use queries::*;
pub(crate) use validate::check_e164;
pub use validate::CheckedCustomer;
use validate::*;
