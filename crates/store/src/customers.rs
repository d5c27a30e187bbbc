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

// ---------------------------------------------------------------------------------------
// Validation

fn clean_opt(
    field: &'static str,
    value: &Option<String>,
    max_chars: usize,
) -> Result<Option<String>> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => {
            check_len(field, text, max_chars)?;
            Ok(Some(text.to_owned()))
        }
    }
}

fn check_len(field: &'static str, text: &str, max_chars: usize) -> Result<()> {
    if text.chars().count() > max_chars {
        return Err(StoreError::invalid(
            field,
            format!("longer than {max_chars} characters"),
        ));
    }
    if text.contains('\0') {
        return Err(StoreError::invalid(field, "contains a NUL character"));
    }
    Ok(())
}

/// Checks the shape of a normalised number: `+`, then 2 to 15 digits, not starting with 0.
pub(crate) fn check_e164(field: &'static str, e164: &str) -> Result<()> {
    let digits = e164.strip_prefix('+').unwrap_or("");
    let ok = (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(
            field,
            format!("{e164:?} is not an E.164 number (+ and up to 15 digits)"),
        ))
    }
}

fn clean_phone(phone: &NewPhone) -> Result<NewPhone> {
    let raw = phone.raw.trim();
    check_len("raw", raw, MAX_SHORT_CHARS)?;
    let e164 = clean_opt("e164", &phone.e164, 16)?;
    if let Some(e164) = &e164 {
        check_e164("e164", e164)?;
    }
    let raw = if raw.is_empty() {
        match &e164 {
            Some(e164) => e164.clone(),
            None => return Err(StoreError::invalid("raw", "the phone number is empty")),
        }
    } else {
        raw.to_owned()
    };
    Ok(NewPhone {
        e164,
        raw,
        label: clean_opt("label", &phone.label, MAX_SHORT_CHARS)?,
    })
}

/// The number's identity inside one customer: its E.164 form, or its digits.
fn phone_key(phone: &NewPhone) -> String {
    match &phone.e164 {
        Some(e164) => e164.clone(),
        None => phone.raw.chars().filter(char::is_ascii_digit).collect(),
    }
}

/// Trims, drops empty values and duplicates, and checks bounds.
fn clean_customer(customer: &NewCustomer) -> Result<NewCustomer> {
    let name = customer.name.trim().to_owned();
    check_len("name", &name, MAX_SHORT_CHARS)?;
    let company = clean_opt("company", &customer.company, MAX_SHORT_CHARS)?;
    if name.is_empty() && company.is_none() {
        return Err(StoreError::invalid(
            "name",
            "a customer needs a name or a company",
        ));
    }
    let email = clean_opt("email", &customer.email, MAX_SHORT_CHARS)?;
    if let Some(email) = &email {
        if !email.contains('@') || email.chars().any(char::is_whitespace) {
            return Err(StoreError::invalid(
                "email",
                format!("{email:?} is not an email address"),
            ));
        }
    }
    let mut tags: Vec<String> = Vec::with_capacity(customer.tags.len());
    for tag in &customer.tags {
        let tag = tag.trim();
        check_len("tags", tag, MAX_SHORT_CHARS)?;
        if !tag.is_empty() && !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_owned());
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(StoreError::invalid(
            "tags",
            format!("more than {MAX_TAGS} tags"),
        ));
    }
    let mut phones: Vec<NewPhone> = Vec::with_capacity(customer.phones.len());
    let mut keys = HashSet::new();
    for phone in &customer.phones {
        let phone = clean_phone(phone)?;
        // The same number twice on one customer (Téléphone and Portable columns holding
        // the same value) is kept once.
        if keys.insert(phone_key(&phone)) {
            phones.push(phone);
        }
    }
    if phones.len() > MAX_PHONES {
        return Err(StoreError::invalid(
            "phones",
            format!("more than {MAX_PHONES} numbers"),
        ));
    }
    Ok(NewCustomer {
        name,
        company,
        email,
        address: clean_opt("address", &customer.address, MAX_TEXT_CHARS)?,
        notes: clean_opt("notes", &customer.notes, MAX_TEXT_CHARS)?,
        tags,
        external_ref: clean_opt("external_ref", &customer.external_ref, MAX_SHORT_CHARS)?,
        phones,
    })
}

fn tags_json(tags: &[String]) -> String {
    // Serialising a list of strings cannot fail.
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".to_owned())
}

/// Folds `incoming` into `target`: values present in `incoming` win, tags are united,
/// numbers not yet held are added. Nothing present in `target` is ever erased.
fn merge_into(target: &mut NewCustomer, incoming: &NewCustomer) {
    if !incoming.name.is_empty() {
        target.name.clone_from(&incoming.name);
    }
    for (field, value) in [
        (&mut target.company, &incoming.company),
        (&mut target.email, &incoming.email),
        (&mut target.address, &incoming.address),
        (&mut target.notes, &incoming.notes),
    ] {
        if value.is_some() {
            field.clone_from(value);
        }
    }
    if target.external_ref.is_none() {
        target.external_ref.clone_from(&incoming.external_ref);
    }
    for tag in &incoming.tags {
        if !target.tags.contains(tag) {
            target.tags.push(tag.clone());
        }
    }
    let held: HashSet<String> = target.phones.iter().map(phone_key).collect();
    for phone in &incoming.phones {
        if !held.contains(&phone_key(phone)) {
            target.phones.push(phone.clone());
        }
    }
}

impl Customer {
    /// What the customer's file says about who it is, for the same-person rule.
    pub fn identity(&self) -> Identity<'_> {
        identity_of(&self.name, &self.company, &self.email, &self.external_ref)
    }
}

fn identity_of<'a>(
    name: &'a str,
    company: &'a Option<String>,
    email: &'a Option<String>,
    external_ref: &'a Option<String>,
) -> Identity<'a> {
    Identity {
        name,
        company: company.as_deref(),
        email: email.as_deref(),
        external_ref: external_ref.as_deref(),
    }
}

fn customer_to_new(customer: &Customer) -> NewCustomer {
    NewCustomer {
        name: customer.name.clone(),
        company: customer.company.clone(),
        email: customer.email.clone(),
        address: customer.address.clone(),
        notes: customer.notes.clone(),
        tags: customer.tags.clone(),
        external_ref: customer.external_ref.clone(),
        phones: customer
            .phones
            .iter()
            .map(|p| NewPhone {
                e164: p.e164.clone(),
                raw: p.raw.clone(),
                label: p.label.clone(),
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------
// Queries. Each function takes an executor so it runs inside or outside a transaction.

/// Runs one statement body against the given executor type; see [`dispatch`].
macro_rules! fetch_customers {
    ($conn:expr, $dialect:expr, $ids:expr) => {{
        let ids: &[i64] = $ids;
        let mut rows: Vec<CustomerRow> = Vec::with_capacity(ids.len());
        let mut phones: Vec<PhoneRow> = Vec::new();
        for chunk in ids.chunks(KEYS_PER_LOOKUP) {
            let sql = $dialect.sql_owned(format!(
                "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id IN ({})",
                placeholders(chunk.len())
            ));
            let mut query = sqlx::query_as::<_, CustomerRow>(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            rows.extend(query.fetch_all(&mut *$conn).await?);
            let sql = $dialect.sql_owned(format!(
                "SELECT id, customer_id, e164, raw, label FROM customer_phones \
                 WHERE customer_id IN ({}) ORDER BY id",
                placeholders(chunk.len())
            ));
            let mut query = sqlx::query_as::<_, PhoneRow>(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            phones.extend(query.fetch_all(&mut *$conn).await?);
        }
        assemble(rows, phones)
    }};
}

/// Joins customer rows with their phones, keeping the customers' order.
fn assemble(rows: Vec<CustomerRow>, phones: Vec<PhoneRow>) -> Result<Vec<Customer>> {
    let mut by_customer: HashMap<i64, Vec<Phone>> = HashMap::new();
    for phone in phones {
        by_customer
            .entry(phone.customer_id)
            .or_default()
            .push(phone.into());
    }
    rows.into_iter()
        .map(|row| {
            let phones = by_customer.remove(&row.id).unwrap_or_default();
            row.into_customer(phones)
        })
        .collect()
}

/// Inserts phone rows with multi-row INSERTs.
macro_rules! insert_phones {
    ($conn:expr, $dialect:expr, $phones:expr) => {{
        let phones: &[(i64, &NewPhone)] = $phones;
        for chunk in phones.chunks(PHONE_ROWS_PER_INSERT) {
            let sql = $dialect.sql_owned(format!(
                "INSERT INTO customer_phones (customer_id, e164, raw, label) VALUES {}",
                value_rows(chunk.len(), 4)
            ));
            let mut query = sqlx::query(&sql);
            for (customer_id, phone) in chunk {
                query = query
                    .bind(*customer_id)
                    .bind(phone.e164.as_deref())
                    .bind(phone.raw.as_str())
                    .bind(phone.label.as_deref());
            }
            query.execute(&mut *$conn).await.map_err(conflict)?;
        }
    }};
}

/// Allocates `n` new customer ids. Inside a write transaction on SQLite (the writer lock
/// is held, so MAX is stable); from the identity sequence on PostgreSQL.
macro_rules! allocate_customer_ids {
    ($conn:expr, $dialect:expr, $n:expr) => {{
        let n: usize = $n;
        match $dialect {
            Dialect::Sqlite => {
                let (max,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(id), 0) FROM customers")
                    .fetch_one(&mut *$conn)
                    .await?;
                (1..=n as i64).map(|i| max + i).collect::<Vec<i64>>()
            }
            Dialect::Postgres => {
                let ids: Vec<(i64,)> = sqlx::query_as(&$dialect.sql(
                    "SELECT nextval(pg_get_serial_sequence('customers', 'id')) \
                     FROM generate_series(1, ?)",
                ))
                .bind(n as i64)
                .fetch_all(&mut *$conn)
                .await?;
                ids.into_iter().map(|(id,)| id).collect::<Vec<i64>>()
            }
        }
    }};
}

/// Inserts customers with the given ids, and their phones.
macro_rules! insert_customers {
    ($conn:expr, $dialect:expr, $rows:expr) => {{
        let rows: &[(i64, &NewCustomer)] = $rows;
        let at = now();
        for chunk in rows.chunks(CUSTOMER_ROWS_PER_INSERT) {
            let sql = $dialect.sql_owned(format!(
                "INSERT INTO customers (id, name, company, email, address, notes, tags, \
                 external_ref, created_at, updated_at) VALUES {}",
                value_rows(chunk.len(), 10)
            ));
            let mut query = sqlx::query(&sql);
            for (id, customer) in chunk {
                query = query
                    .bind(*id)
                    .bind(customer.name.as_str())
                    .bind(customer.company.as_deref())
                    .bind(customer.email.as_deref())
                    .bind(customer.address.as_deref())
                    .bind(customer.notes.as_deref())
                    .bind(tags_json(&customer.tags))
                    .bind(customer.external_ref.as_deref())
                    .bind(at)
                    .bind(at);
            }
            query.execute(&mut *$conn).await.map_err(conflict)?;
        }
        let phones: Vec<(i64, &NewPhone)> = rows
            .iter()
            .flat_map(|(id, c)| c.phones.iter().map(move |p| (*id, p)))
            .collect();
        insert_phones!($conn, $dialect, &phones);
    }};
}

/// Overwrites a customer's fields (not its phones).
macro_rules! update_customer_fields {
    ($conn:expr, $dialect:expr, $id:expr, $customer:expr) => {{
        let customer: &NewCustomer = $customer;
        let id: i64 = $id;
        let done = sqlx::query(&$dialect.sql(
            "UPDATE customers SET name = ?, company = ?, email = ?, address = ?, notes = ?, \
             tags = ?, external_ref = ?, updated_at = ? WHERE id = ?",
        ))
        .bind(customer.name.as_str())
        .bind(customer.company.as_deref())
        .bind(customer.email.as_deref())
        .bind(customer.address.as_deref())
        .bind(customer.notes.as_deref())
        .bind(tags_json(&customer.tags))
        .bind(customer.external_ref.as_deref())
        .bind(now())
        .bind(id)
        .execute(&mut *$conn)
        .await
        .map_err(conflict)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("customer", id));
        }
    }};
}

/// The database clock in microseconds since 1970, as the change log stores it
/// (`clock_timestamp()` on PostgreSQL: the time of the statement, not of the
/// transaction's start).
fn clock_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
        Dialect::Postgres => "(floor(extract(epoch FROM clock_timestamp()) * 1000000))::bigint",
    }
}

/// Sorted, distinct `ids` as contiguous runs `(first, last)`: an import batch of
/// new customers is one run.
fn id_runs(ids: &mut Vec<i64>) -> Vec<(i64, i64)> {
    ids.sort_unstable();
    ids.dedup();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for &id in ids.iter() {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == id => *last = id,
            _ => runs.push((id, id)),
        }
    }
    runs
}

/// Records in the change log that the customers `ids` changed (created, updated or
/// deleted). Called last in the writing transaction, so that the logged time is
/// close to the commit.
macro_rules! log_customer_changes {
    ($conn:expr, $dialect:expr, $ids:expr) => {{
        let mut ids: Vec<i64> = $ids;
        let runs = id_runs(&mut ids);
        for chunk in runs.chunks(CHANGE_ROWS_PER_INSERT) {
            let sql = $dialect.sql_owned(format!(
                "INSERT INTO customer_changes (first_id, last_id) VALUES {}",
                value_rows(chunk.len(), 2)
            ));
            let mut query = sqlx::query(&sql);
            for (first, last) in chunk {
                query = query.bind(*first).bind(*last);
            }
            query.execute(&mut *$conn).await?;
        }
    }};
}

/// Looks up customers by merge keys.
macro_rules! find_by_keys {
    ($conn:expr, $dialect:expr, $keys:expr) => {{
        let keys: &MergeKeys = $keys;
        let mut found = MergeMatches::default();
        for chunk in keys.external_refs.chunks(KEYS_PER_LOOKUP) {
            let sql = $dialect.sql_owned(format!(
                "SELECT external_ref, id FROM customers \
                 WHERE external_ref IS NOT NULL AND external_ref IN ({})",
                placeholders(chunk.len())
            ));
            let mut query = sqlx::query_as::<_, (String, i64)>(&sql);
            for key in chunk {
                query = query.bind(key.as_str());
            }
            for (key, id) in query.fetch_all(&mut *$conn).await? {
                found.by_external_ref.insert(key, CustomerId(id));
            }
        }
        for chunk in keys.emails.chunks(KEYS_PER_LOOKUP) {
            let sql = $dialect.sql_owned(format!(
                "SELECT lower(email), id FROM customers \
                 WHERE email IS NOT NULL AND lower(email) IN ({}) ORDER BY id",
                placeholders(chunk.len())
            ));
            let mut query = sqlx::query_as::<_, (String, i64)>(&sql);
            for key in chunk {
                query = query.bind(key.to_lowercase());
            }
            for (key, id) in query.fetch_all(&mut *$conn).await? {
                found.by_email.entry(key).or_default().push(CustomerId(id));
            }
        }
        for chunk in keys.e164s.chunks(KEYS_PER_LOOKUP) {
            let sql = $dialect.sql_owned(format!(
                "SELECT e164, customer_id FROM customer_phones \
                 WHERE e164 IN ({}) ORDER BY customer_id",
                placeholders(chunk.len())
            ));
            let mut query = sqlx::query_as::<_, (String, i64)>(&sql);
            for key in chunk {
                query = query.bind(key.as_str());
            }
            for (key, id) in query.fetch_all(&mut *$conn).await? {
                let ids = found.by_e164.entry(key).or_default();
                if ids.last() != Some(&CustomerId(id)) {
                    ids.push(CustomerId(id));
                }
            }
        }
        found
    }};
}

/// Where a batch row goes while planning.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Existing(CustomerId),
    Row(usize),
}

/// The targets holding one number: almost always one, kept inline then.
enum Targets {
    One(Target),
    Many(Vec<Target>),
}

impl Targets {
    fn as_slice(&self) -> &[Target] {
        match self {
            Targets::One(target) => std::slice::from_ref(target),
            Targets::Many(targets) => targets,
        }
    }

    fn add(&mut self, target: Target) {
        if self.as_slice().contains(&target) {
            return;
        }
        match self {
            Targets::One(first) => *self = Targets::Many(vec![*first, target]),
            Targets::Many(targets) => targets.push(target),
        }
    }
}

/// Who `target` currently is.
fn identity<'a>(
    target: Target,
    batch_rows: &[Option<Identity<'a>>],
    existing: &'a HashMap<CustomerId, Customer>,
) -> Option<Identity<'a>> {
    match target {
        Target::Existing(id) => existing.get(&id).map(Customer::identity),
        Target::Row(i) => batch_rows.get(i).copied().flatten(),
    }
}

/// `email` in lower case, borrowed when it already is (the common case).
fn lower(email: &str) -> Cow<'_, str> {
    if email
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase())
    {
        Cow::Borrowed(email)
    } else {
        Cow::Owned(email.to_lowercase())
    }
}

/// Decides, for each cleaned row, whether it is new, a duplicate of an existing customer
/// or of an earlier row. `existing` holds the matched customers' current content.
/// Keys are borrowed from the rows: a batch costs no copy of its texts.
fn plan<'a>(
    rows: &[&'a NewCustomer],
    matches: &MergeMatches,
    existing: &'a HashMap<CustomerId, Customer>,
) -> Vec<UpsertAction> {
    // Keys already claimed by earlier rows of the batch (new customers or merges).
    let mut batch_refs: HashMap<&str, Target> = HashMap::with_capacity(rows.len());
    let mut batch_emails: HashMap<Cow<'_, str>, Target> = HashMap::with_capacity(rows.len());
    let mut batch_phones: HashMap<&str, Targets> = HashMap::with_capacity(rows.len());
    // Who each new row's customer currently is, as the rows merged into it say.
    let mut batch_rows: Vec<Option<Identity<'a>>> = vec![None; rows.len()];
    let mut actions = Vec::with_capacity(rows.len());

    let identity_of = |target: Target, batch_rows: &[Option<Identity<'a>>]| {
        identity(target, batch_rows, existing)
    };

    for (index, row) in rows.iter().copied().enumerate() {
        let who = row.identity();
        let email_key = row.email.as_deref().map(lower);
        let mut decision: Option<(Target, MatchedBy)> = None;
        if let Some(key) = &row.external_ref {
            if let Some(target) = batch_refs.get(key.as_str()) {
                decision = Some((*target, MatchedBy::ExternalRef));
            } else if let Some(id) = matches.by_external_ref.get(key) {
                decision = Some((Target::Existing(*id), MatchedBy::ExternalRef));
            }
        }
        if decision.is_none() {
            if let Some(key) = &email_key {
                let candidate = match batch_emails.get(key.as_ref()) {
                    Some(target) => Some(*target),
                    None => match matches.by_email.get(key.as_ref()).map(Vec::as_slice) {
                        Some([id]) => Some(Target::Existing(*id)),
                        _ => None,
                    },
                };
                if let Some(target) = candidate {
                    if let Some(other) = identity_of(target, &batch_rows) {
                        if who.same_by_email(&other) {
                            decision = Some((target, MatchedBy::Email));
                        }
                    }
                }
            }
        }
        if decision.is_none() {
            'phones: for phone in &row.phones {
                let Some(e164) = &phone.e164 else { continue };
                let mut candidates: Vec<Target> = Vec::new();
                if let Some(ids) = matches.by_e164.get(e164) {
                    candidates.extend(ids.iter().map(|id| Target::Existing(*id)));
                }
                if let Some(targets) = batch_phones.get(e164.as_str()) {
                    for target in targets.as_slice() {
                        if !candidates.contains(target) {
                            candidates.push(*target);
                        }
                    }
                }
                // A number shared by several customers (a switchboard) says nothing about
                // who this row is.
                if let [target] = candidates.as_slice() {
                    if let Some(other) = identity_of(*target, &batch_rows) {
                        if who.same_by_phone(&other) {
                            decision = Some((*target, MatchedBy::Phone));
                            break 'phones;
                        }
                    }
                }
            }
        }

        let target = match decision {
            Some((Target::Existing(id), matched_by)) => {
                actions.push(UpsertAction::Update { id, matched_by });
                Target::Existing(id)
            }
            Some((Target::Row(row_index), matched_by)) => {
                actions.push(UpsertAction::MergeIntoRow {
                    row: row_index,
                    matched_by,
                });
                Target::Row(row_index)
            }
            None => {
                actions.push(UpsertAction::Insert);
                batch_rows[index] = Some(who);
                Target::Row(index)
            }
        };
        // Later rows find this one by any of its keys.
        if let Some(key) = &row.external_ref {
            batch_refs.entry(key.as_str()).or_insert(target);
        }
        if let Some(key) = email_key {
            batch_emails.entry(key).or_insert(target);
        }
        for phone in &row.phones {
            if let Some(e164) = &phone.e164 {
                match batch_phones.entry(e164.as_str()) {
                    std::collections::hash_map::Entry::Occupied(mut slot) => {
                        slot.get_mut().add(target)
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(Targets::One(target));
                    }
                }
            }
        }
        // A row merged into a new one changes it as `merge_into` will.
        if let Target::Row(i) = target {
            if let Some(Some(held)) = batch_rows.get_mut(i) {
                if !who.name.is_empty() {
                    held.name = who.name;
                }
                held.company = who.company.or(held.company);
                held.email = who.email.or(held.email);
                held.external_ref = held.external_ref.or(who.external_ref);
            }
        }
    }
    actions
}

fn merge_keys(rows: &[&NewCustomer]) -> MergeKeys {
    let mut keys = MergeKeys::default();
    let mut refs: HashSet<&str> = HashSet::with_capacity(rows.len());
    let mut emails: HashSet<Cow<'_, str>> = HashSet::with_capacity(rows.len());
    let mut e164s: HashSet<&str> = HashSet::with_capacity(rows.len());
    for row in rows {
        if let Some(key) = &row.external_ref {
            if refs.insert(key.as_str()) {
                keys.external_refs.push(key.clone());
            }
        }
        if let Some(email) = &row.email {
            let key = lower(email);
            if !emails.contains(key.as_ref()) {
                keys.emails.push(key.clone().into_owned());
                emails.insert(key);
            }
        }
        for phone in &row.phones {
            if let Some(e164) = &phone.e164 {
                if e164s.insert(e164.as_str()) {
                    keys.e164s.push(e164.clone());
                }
            }
        }
    }
    keys
}

fn existing_ids(matches: &MergeMatches) -> Vec<i64> {
    let mut ids: Vec<i64> = matches
        .by_external_ref
        .values()
        .chain(matches.by_email.values().flatten())
        .chain(matches.by_e164.values().flatten())
        .map(|id| id.0)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

impl Store {
    /// Creates a customer with its phone numbers.
    pub async fn create_customer(&self, customer: &NewCustomer) -> Result<Customer> {
        let customer = clean_customer(customer)?;
        let id = dispatch!(self, |pool, dialect| {
            let mut tx = begin_write!(pool, dialect);
            let ids = allocate_customer_ids!(tx, dialect, 1);
            let id = ids.first().copied().unwrap_or_default();
            insert_customers!(tx, dialect, &[(id, &customer)]);
            log_customer_changes!(tx, dialect, vec![id]);
            tx.commit().await?;
            id
        });
        self.get_customer(CustomerId(id)).await
    }

    /// The customer `id` with its phones.
    pub async fn get_customer(&self, id: CustomerId) -> Result<Customer> {
        self.get_customers(&[id])
            .await?
            .pop()
            .ok_or_else(|| StoreError::not_found("customer", id))
    }

    /// The customers among `ids` that exist, in id order (for the matcher's results).
    pub async fn get_customers(&self, ids: &[CustomerId]) -> Result<Vec<Customer>> {
        let mut ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
        ids.sort_unstable();
        ids.dedup();
        dispatch!(self, |pool, dialect| {
            let mut conn = pool.acquire().await?;
            let mut customers = fetch_customers!(conn, dialect, &ids)?;
            customers.sort_by_key(|c| c.id);
            Ok(customers)
        })
    }

    /// Replaces the customer's fields and its list of numbers (numbers whose E.164
    /// form, or digits, are unchanged keep their id).
    pub async fn update_customer(
        &self,
        id: CustomerId,
        customer: &NewCustomer,
    ) -> Result<Customer> {
        let customer = clean_customer(customer)?;
        dispatch!(self, |pool, dialect| {
            let mut tx = begin_write!(pool, dialect);
            update_customer_fields!(tx, dialect, id.0, &customer);
            let current: Vec<PhoneRow> = sqlx::query_as(&dialect.sql(
                "SELECT id, customer_id, e164, raw, label FROM customer_phones WHERE customer_id = ?",
            ))
            .bind(id.0)
            .fetch_all(&mut *tx)
            .await?;
            let wanted: HashMap<String, &NewPhone> =
                customer.phones.iter().map(|p| (phone_key(p), p)).collect();
            let mut kept = HashSet::new();
            for row in current {
                let phone: Phone = row.into();
                let key = phone_key(&NewPhone {
                    e164: phone.e164.clone(),
                    raw: phone.raw.clone(),
                    label: None,
                });
                match wanted.get(&key) {
                    Some(new) if kept.insert(key.clone()) => {
                        sqlx::query(&dialect.sql(
                            "UPDATE customer_phones SET e164 = ?, raw = ?, label = ? WHERE id = ?",
                        ))
                        .bind(new.e164.as_deref())
                        .bind(new.raw.as_str())
                        .bind(new.label.as_deref())
                        .bind(phone.id.0)
                        .execute(&mut *tx)
                        .await
                        .map_err(conflict)?;
                    }
                    _ => {
                        sqlx::query(&dialect.sql("DELETE FROM customer_phones WHERE id = ?"))
                            .bind(phone.id.0)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            let added: Vec<(i64, &NewPhone)> = customer
                .phones
                .iter()
                .filter(|p| !kept.contains(&phone_key(p)))
                .map(|p| (id.0, p))
                .collect();
            insert_phones!(tx, dialect, &added);
            log_customer_changes!(tx, dialect, vec![id.0]);
            tx.commit().await?;
            Ok::<(), StoreError>(())
        })?;
        self.get_customer(id).await
    }

    /// Deletes a customer; its phones go with it, its calls and tickets stay (unlinked).
    pub async fn delete_customer(&self, id: CustomerId) -> Result<()> {
        let done = dispatch!(self, |pool, dialect| {
            let mut tx = begin_write!(pool, dialect);
            let done = sqlx::query(&dialect.sql("DELETE FROM customers WHERE id = ?"))
                .bind(id.0)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if done > 0 {
                log_customer_changes!(tx, dialect, vec![id.0]);
            }
            tx.commit().await?;
            done
        });
        if done == 0 {
            return Err(StoreError::not_found("customer", id));
        }
        Ok(())
    }

    /// Adds a number to a customer.
    pub async fn add_phone(&self, customer_id: CustomerId, phone: &NewPhone) -> Result<Phone> {
        let phone = clean_phone(phone)?;
        let row: PhoneRow = dispatch!(self, |pool, dialect| {
            sqlx::query_as(&dialect.sql(
                "INSERT INTO customer_phones (customer_id, e164, raw, label) VALUES (?, ?, ?, ?) \
                 RETURNING id, customer_id, e164, raw, label",
            ))
            .bind(customer_id.0)
            .bind(phone.e164.as_deref())
            .bind(phone.raw.as_str())
            .bind(phone.label.as_deref())
            .fetch_one(pool)
            .await
            .map_err(|e| map_db_error(e, Some(("customer", customer_id.to_string()))))?
        });
        self.touch_customer(customer_id).await?;
        Ok(row.into())
    }

    /// Removes a number from a customer.
    pub async fn remove_phone(&self, customer_id: CustomerId, phone_id: PhoneId) -> Result<()> {
        let done = dispatch!(self, |pool, dialect| {
            sqlx::query(
                &dialect.sql("DELETE FROM customer_phones WHERE id = ? AND customer_id = ?"),
            )
            .bind(phone_id.0)
            .bind(customer_id.0)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::not_found("phone", phone_id));
        }
        self.touch_customer(customer_id).await
    }

    async fn touch_customer(&self, id: CustomerId) -> Result<()> {
        dispatch!(self, |pool, dialect| {
            let mut tx = begin_write!(pool, dialect);
            sqlx::query(&dialect.sql("UPDATE customers SET updated_at = ? WHERE id = ?"))
                .bind(now())
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
            log_customer_changes!(tx, dialect, vec![id.0]);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Searches customers, ordered by name then id.
    pub async fn search_customers(&self, query: &CustomerQuery) -> Result<CustomerPage> {
        let limit = match query.limit {
            0 => 50,
            n => n.min(MAX_PAGE),
        };
        let text = query
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let e164 = clean_opt("e164", &query.e164, 16)?;
        if let Some(e164) = &e164 {
            check_e164("e164", e164)?;
        }
        if let Some(text) = text {
            check_len("text", text, MAX_SHORT_CHARS)?;
        }
        dispatch!(self, |pool, dialect| {
            let mut conditions: Vec<String> = Vec::new();
            let mut binds: Vec<String> = Vec::new();
            if let Some(text) = text {
                let like = dialect.ilike();
                let pattern = contains_pattern(text);
                let mut alternatives = vec![
                    format!("c.name {like} ? ESCAPE '\\'"),
                    format!("c.company {like} ? ESCAPE '\\'"),
                    format!("c.email {like} ? ESCAPE '\\'"),
                    format!("p.raw {like} ? ESCAPE '\\'"),
                ];
                binds.extend(std::iter::repeat_n(pattern, 4));
                // A number typed in another format than stored: compare its significant
                // digits (leading zeros of 06… or 0033… dropped) with the E.164 form.
                let looks_like_number = text
                    .chars()
                    .all(|c| c.is_ascii_digit() || " +-./()".contains(c));
                let digits: String = text.chars().filter(char::is_ascii_digit).collect();
                let significant = digits.trim_start_matches('0');
                if looks_like_number && significant.len() >= 3 {
                    alternatives.push("p.e164 LIKE ?".to_owned());
                    binds.push(format!("%{significant}%"));
                }
                // Phones are scanned once for the whole query (an uncorrelated IN), not
                // once per customer.
                let (customer_alternatives, phone_alternatives) = alternatives.split_at(3);
                conditions.push(format!(
                    "({} OR c.id IN (SELECT p.customer_id FROM customer_phones p WHERE {}))",
                    customer_alternatives.join(" OR "),
                    phone_alternatives.join(" OR ")
                ));
            }
            if let Some(e164) = &e164 {
                // Uses the index on customer_phones.e164.
                conditions.push(
                    "c.id IN (SELECT q.customer_id FROM customer_phones q WHERE q.e164 = ?)"
                        .to_owned(),
                );
                binds.push(e164.clone());
            }
            let filter = if conditions.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", conditions.join(" AND "))
            };
            let count_sql = dialect.sql_owned(format!("SELECT COUNT(*) FROM customers c {filter}"));
            let mut count = sqlx::query_as::<_, (i64,)>(&count_sql);
            for bind in &binds {
                count = count.bind(bind.as_str());
            }
            let mut conn = pool.acquire().await?;
            let (total,) = count.fetch_one(&mut *conn).await?;
            let page_sql = dialect.sql_owned(format!(
                "SELECT c.id FROM customers c {filter} ORDER BY c.name, c.id LIMIT ? OFFSET ?"
            ));
            let mut page = sqlx::query_as::<_, (i64,)>(&page_sql);
            for bind in &binds {
                page = page.bind(bind.as_str());
            }
            let ids: Vec<i64> = page
                .bind(i64::from(limit))
                .bind(i64::from(query.offset))
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(|(id,)| id)
                .collect();
            let mut customers = fetch_customers!(conn, dialect, &ids)?;
            let order: HashMap<i64, usize> =
                ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
            customers.sort_by_key(|c| order.get(&c.id.0).copied().unwrap_or(usize::MAX));
            Ok(CustomerPage {
                total: u64::try_from(total).unwrap_or(0),
                items: customers,
            })
        })
    }

    /// Existing customers having any of `keys` (batch lookups, for import merges).
    pub async fn find_merge_matches(&self, keys: &MergeKeys) -> Result<MergeMatches> {
        dispatch!(self, |pool, dialect| {
            let mut conn = pool.acquire().await?;
            Ok(find_by_keys!(conn, dialect, keys))
        })
    }

    /// What [`Store::upsert_customers_batch`] would do with `rows`, without writing
    /// (for `--dry-run`). Rows are validated the same way; the first invalid row fails
    /// the call with [`StoreError::Invalid`] (check rows one by one beforehand with
    /// [`NewCustomer::validate`] to report them all).
    pub async fn plan_customers_batch(&self, rows: &[NewCustomer]) -> Result<Vec<UpsertAction>> {
        let rows = rows
            .iter()
            .map(clean_customer)
            .collect::<Result<Vec<_>>>()?;
        self.plan_rows(&rows.iter().collect::<Vec<_>>()).await
    }

    /// [`Store::plan_customers_batch`] for rows already checked.
    pub async fn plan_checked_batch(&self, rows: &[CheckedCustomer]) -> Result<Vec<UpsertAction>> {
        self.plan_rows(&rows.iter().map(|row| &row.0).collect::<Vec<_>>())
            .await
    }

    async fn plan_rows(&self, rows: &[&NewCustomer]) -> Result<Vec<UpsertAction>> {
        let matches = self.find_merge_matches(&merge_keys(rows)).await?;
        let existing: HashMap<CustomerId, Customer> = self
            .get_customers(
                &existing_ids(&matches)
                    .into_iter()
                    .map(CustomerId)
                    .collect::<Vec<_>>(),
            )
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        Ok(plan(rows, &matches, &existing))
    }

    /// Imports a batch of customers in one transaction: each row is merged into the
    /// existing customer with the same external reference, else the same email, else
    /// the same number (when exactly one customer has it and the names agree), else
    /// into an earlier row of the batch by the same rules, else inserted. A merge keeps
    /// every stored value that the row leaves empty, unites tags and adds new numbers.
    ///
    /// At most [`MAX_BATCH_ROWS`] rows; any invalid row fails the whole batch and
    /// nothing is written.
    pub async fn upsert_customers_batch(&self, rows: &[NewCustomer]) -> Result<BatchOutcome> {
        check_batch_size(rows.len())?;
        let rows = rows
            .iter()
            .map(clean_customer)
            .collect::<Result<Vec<_>>>()?;
        self.upsert_rows(&rows.iter().collect::<Vec<_>>()).await
    }

    /// [`Store::upsert_customers_batch`] for rows already checked by
    /// [`NewCustomer::check`] (an importer checks every row first to report them all;
    /// they are not checked a second time).
    pub async fn upsert_checked_batch(&self, rows: &[CheckedCustomer]) -> Result<BatchOutcome> {
        check_batch_size(rows.len())?;
        self.upsert_rows(&rows.iter().map(|row| &row.0).collect::<Vec<_>>())
            .await
    }

    async fn upsert_rows(&self, rows: &[&NewCustomer]) -> Result<BatchOutcome> {
        dispatch!(self, |pool, dialect| {
            // SQLite: the write lock is taken first, so that the lookups and the id
            // allocation see what is then written.
            let mut tx = begin_write!(pool, dialect);
            let keys = merge_keys(rows);
            let matches = find_by_keys!(tx, dialect, &keys);
            let existing_ids = existing_ids(&matches);
            let existing: HashMap<CustomerId, Customer> = if existing_ids.is_empty() {
                HashMap::new()
            } else {
                fetch_customers!(tx, dialect, &existing_ids)?
                    .into_iter()
                    .map(|c| (c.id, c))
                    .collect()
            };
            let actions = plan(rows, &matches, &existing);

            // Fold every row into its final content: new rows (with their in-batch
            // duplicates) and existing customers (with every row merged into them).
            // Rows are borrowed, and copied only when another row merges into them.
            let mut new_rows: Vec<(usize, Cow<'_, NewCustomer>)> = Vec::new();
            let mut new_index: HashMap<usize, usize> = HashMap::new();
            let mut updates: HashMap<CustomerId, NewCustomer> = HashMap::new();
            let mut update_order: Vec<CustomerId> = Vec::new();
            for (index, (row, action)) in rows.iter().copied().zip(&actions).enumerate() {
                match action {
                    UpsertAction::Insert => {
                        new_index.insert(index, new_rows.len());
                        new_rows.push((index, Cow::Borrowed(row)));
                    }
                    UpsertAction::MergeIntoRow { row: target, .. } => {
                        if let Some((_, merged)) =
                            new_index.get(target).and_then(|i| new_rows.get_mut(*i))
                        {
                            merge_into(merged.to_mut(), row);
                        }
                    }
                    UpsertAction::Update { id, .. } => {
                        let merged = updates.entry(*id).or_insert_with(|| {
                            update_order.push(*id);
                            existing.get(id).map(customer_to_new).unwrap_or_default()
                        });
                        merge_into(merged, row);
                    }
                }
            }

            let ids = allocate_customer_ids!(tx, dialect, new_rows.len());
            let inserts: Vec<(i64, &NewCustomer)> = ids
                .iter()
                .zip(&new_rows)
                .map(|(id, (_, row))| (*id, &**row))
                .collect();
            insert_customers!(tx, dialect, &inserts);

            for id in &update_order {
                let (Some(merged), Some(current)) = (updates.get(id), existing.get(id)) else {
                    continue;
                };
                update_customer_fields!(tx, dialect, id.0, merged);
                let held: HashSet<String> = current
                    .phones
                    .iter()
                    .map(|p| {
                        phone_key(&NewPhone {
                            e164: p.e164.clone(),
                            raw: p.raw.clone(),
                            label: None,
                        })
                    })
                    .collect();
                let added: Vec<(i64, &NewPhone)> = merged
                    .phones
                    .iter()
                    .filter(|p| !held.contains(&phone_key(p)))
                    .map(|p| (id.0, p))
                    .collect();
                insert_phones!(tx, dialect, &added);
            }
            let changed: Vec<i64> = ids
                .iter()
                .copied()
                .chain(update_order.iter().map(|id| id.0))
                .collect();
            log_customer_changes!(tx, dialect, changed);
            tx.commit().await?;

            let mut row_ids: Vec<CustomerId> = Vec::with_capacity(rows.len());
            for action in &actions {
                let id = match action {
                    UpsertAction::Insert => {
                        let index = row_ids.len();
                        new_index
                            .get(&index)
                            .and_then(|i| ids.get(*i))
                            .map(|id| CustomerId(*id))
                    }
                    UpsertAction::MergeIntoRow { row, .. } => row_ids.get(*row).copied(),
                    UpsertAction::Update { id, .. } => Some(*id),
                };
                row_ids.push(id.unwrap_or(CustomerId(0)));
            }
            Ok(BatchOutcome {
                inserted: new_rows.len(),
                updated: update_order.len(),
                actions,
                ids: row_ids,
            })
        })
    }

    /// Every stored number with its customer and last contact, for the matcher's index.
    pub async fn all_phone_numbers(&self) -> Result<Vec<PhoneEntry>> {
        match &self.backend {
            Backend::Sqlite(pool) => all_phone_numbers_sqlite(pool).await,
            Backend::Postgres(pool) => Ok(sqlx::query_as::<_, PhoneEntry>(
                "SELECT p.customer_id, p.e164, p.raw, c.last_contact_at \
                 FROM customer_phones p JOIN customers c ON c.id = p.customer_id",
            )
            .fetch_all(pool)
            .await?),
        }
    }
}

/// Phones per JSON array in [`all_phone_numbers_sqlite`].
const PHONES_PER_JSON_CHUNK: i64 = 20_000;

/// On SQLite, reading a million rows one by one through sqlx costs seconds (every row
/// crosses a channel from the database thread); SQLite builds one JSON array per
/// range of phone ids instead, which is parsed here.
async fn all_phone_numbers_sqlite(pool: &SqlitePool) -> Result<Vec<PhoneEntry>> {
    let mut conn = pool.acquire().await?;
    // One read transaction: a consistent snapshot across the chunks.
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let (count, max_id): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM customer_phones")
            .fetch_one(&mut *tx)
            .await?;
    let mut entries = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut low = 0i64;
    while low < max_id {
        let high = low.saturating_add(PHONES_PER_JSON_CHUNK);
        let (json,): (Option<String>,) = sqlx::query_as(
            "SELECT json_group_array(json_array(p.customer_id, p.e164, p.raw, c.last_contact_at)) \
             FROM customer_phones p JOIN customers c ON c.id = p.customer_id \
             WHERE p.id > ? AND p.id <= ?",
        )
        .bind(low)
        .bind(high)
        .fetch_one(&mut *tx)
        .await?;
        low = high;
        let Some(json) = json else { continue };
        type Entry = (i64, Option<String>, String, Option<String>);
        let rows: Vec<Entry> = serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
            entity: "phone",
            field: "customer_phones",
            value: e.to_string(),
        })?;
        for (customer_id, e164, raw, last_contact_at) in rows {
            let last_contact_at = match last_contact_at {
                None => None,
                Some(text) => Some(
                    DateTime::parse_from_rfc3339(&text)
                        .map_err(|_| StoreError::Corrupt {
                            entity: "customer",
                            field: "last_contact_at",
                            value: text.clone(),
                        })?
                        .with_timezone(&Utc),
                ),
            };
            entries.push(PhoneEntry {
                customer_id: CustomerId(customer_id),
                e164,
                raw,
                last_contact_at,
            });
        }
    }
    tx.commit().await?;
    Ok(entries)
}

impl NewCustomer {
    /// What the record says about who it is, for the same-person rule.
    pub fn identity(&self) -> Identity<'_> {
        identity_of(&self.name, &self.company, &self.email, &self.external_ref)
    }

    /// Checks the row as the store would (bounds, email shape, E.164 shape, a name or a
    /// company), so an importer can report every bad row before writing anything.
    pub fn validate(&self) -> Result<()> {
        clean_customer(self).map(|_| ())
    }

    /// [`NewCustomer::validate`], keeping the result: the row trimmed, its duplicate
    /// tags and numbers dropped, ready for [`Store::upsert_checked_batch`].
    pub fn check(&self) -> Result<CheckedCustomer> {
        clean_customer(self).map(CheckedCustomer)
    }
}

/// A customer row that passed the store's checks ([`NewCustomer::check`]); only the
/// store can make one, so a batch of them needs no second check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCustomer(NewCustomer);

impl CheckedCustomer {
    /// The checked content.
    pub fn get(&self) -> &NewCustomer {
        &self.0
    }
}

fn check_batch_size(rows: usize) -> Result<()> {
    if rows > MAX_BATCH_ROWS {
        return Err(StoreError::invalid(
            "rows",
            format!("{rows} rows in one batch, at most {MAX_BATCH_ROWS}"),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Change log, for the servers' in-memory index (see migrations/*/0002_customer_changes.sql)

/// One change-log row: the customers `first..=last` were created, changed or deleted.
/// Read the customers of the range to know which (those gone were deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRow)]
pub struct CustomerChange {
    /// The row's id: distinct per change, but not in commit order on PostgreSQL.
    pub id: i64,
    /// First customer id of the range.
    #[sqlx(try_from = "i64")]
    pub first_id: CustomerId,
    /// Last customer id of the range (inclusive).
    #[sqlx(try_from = "i64")]
    pub last_id: CustomerId,
    /// The database's clock when the change was written, microseconds since 1970.
    pub changed_at: i64,
}

impl Store {
    /// The database's clock, in the change log's unit (microseconds since 1970): a
    /// reader's starting point, taken before it reads the customers.
    pub async fn customer_changes_clock(&self) -> Result<i64> {
        dispatch!(self, |pool, dialect| {
            let sql = format!("SELECT {}", clock_sql(dialect));
            let (now,): (i64,) = sqlx::query_as(&sql).fetch_one(pool).await?;
            Ok(now)
        })
    }

    /// Change-log rows after `(changed_at, id)` in `(changed_at, id)` order, at most
    /// `limit` (capped at [`MAX_CHANGES_PAGE`]; 0 means the cap). Pass the last row
    /// returned to read the next page.
    ///
    /// Concurrent transactions can commit their rows out of that order (on PostgreSQL
    /// a later commit may carry an earlier time), so a reader should start each poll a
    /// margin of time back and skip the ids it has already applied.
    pub async fn customer_changes_since(
        &self,
        after: (i64, i64),
        limit: u32,
    ) -> Result<Vec<CustomerChange>> {
        let limit = match limit {
            0 => MAX_CHANGES_PAGE,
            n => n.min(MAX_CHANGES_PAGE),
        };
        let (at, id) = after;
        dispatch!(self, |pool, dialect| {
            Ok(sqlx::query_as::<_, CustomerChange>(&dialect.sql(
                "SELECT id, first_id, last_id, changed_at FROM customer_changes \
                 WHERE changed_at > ? OR (changed_at = ? AND id > ?) \
                 ORDER BY changed_at, id LIMIT ?",
            ))
            .bind(at)
            .bind(at)
            .bind(id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?)
        })
    }

    /// The customers whose id is in `first..=last`, with their phones, in id order. A
    /// range wider than [`MAX_CUSTOMER_RANGE`] is refused.
    pub async fn customers_between(
        &self,
        first: CustomerId,
        last: CustomerId,
    ) -> Result<Vec<Customer>> {
        if last.0 < first.0 {
            return Ok(Vec::new());
        }
        if last.0 - first.0 >= MAX_CUSTOMER_RANGE {
            return Err(StoreError::invalid(
                "last",
                format!("more than {MAX_CUSTOMER_RANGE} ids in one range"),
            ));
        }
        dispatch!(self, |pool, dialect| {
            let mut conn = pool.acquire().await?;
            let rows: Vec<CustomerRow> = sqlx::query_as(&dialect.sql_owned(format!(
                "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id BETWEEN ? AND ? ORDER BY id"
            )))
            .bind(first.0)
            .bind(last.0)
            .fetch_all(&mut *conn)
            .await?;
            let phones: Vec<PhoneRow> = sqlx::query_as(&dialect.sql(
                "SELECT id, customer_id, e164, raw, label FROM customer_phones \
                 WHERE customer_id BETWEEN ? AND ? ORDER BY id",
            ))
            .bind(first.0)
            .bind(last.0)
            .fetch_all(&mut *conn)
            .await?;
            assemble(rows, phones)
        })
    }

    /// Deletes change-log rows written before `before` (the log's unit); returns how
    /// many. Readers further behind than that must reload everything.
    pub async fn prune_customer_changes(&self, before: i64) -> Result<u64> {
        dispatch!(self, |pool, dialect| {
            Ok(
                sqlx::query(&dialect.sql("DELETE FROM customer_changes WHERE changed_at < ?"))
                    .bind(before)
                    .execute(pool)
                    .await?
                    .rows_affected(),
            )
        })
    }
}

// ---------------------------------------------------------------------------------------
// Mirroring another system's customers (Odoo): that system is the source of truth for
// the customers carrying its external references.

/// Result of [`Store::mirror_customers`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorOutcome {
    /// Customers created.
    pub inserted: usize,
    /// Customers whose content changed.
    pub updated: usize,
    /// Rows identical to what is stored (nothing written, nothing logged).
    pub unchanged: usize,
}

impl Store {
    /// Makes the customers with the rows' external references hold exactly the
    /// rows' content: fields replaced (an empty value erases), numbers replaced,
    /// missing customers created. Unlike the import's merge, nothing is kept from
    /// what was stored, and no customer is matched by email or number: the other
    /// system owns these customers. Rows equal to what is stored are not written,
    /// so re-reading the same records changes nothing and logs nothing.
    ///
    /// Every row needs an external reference; at most [`MAX_BATCH_ROWS`] rows, in
    /// one transaction.
    pub async fn mirror_customers(&self, rows: &[CheckedCustomer]) -> Result<MirrorOutcome> {
        check_batch_size(rows.len())?;
        let mut refs: Vec<String> = Vec::with_capacity(rows.len());
        for row in rows {
            match &row.0.external_ref {
                Some(key) => refs.push(key.clone()),
                None => {
                    return Err(StoreError::invalid(
                        "external_ref",
                        "a mirrored customer needs an external reference",
                    ))
                }
            }
        }
        dispatch!(self, |pool, dialect| {
            let mut tx = begin_write!(pool, dialect);
            let keys = MergeKeys {
                external_refs: refs.clone(),
                ..MergeKeys::default()
            };
            let found = find_by_keys!(tx, dialect, &keys).by_external_ref;
            let existing_ids: Vec<i64> = found.values().map(|id| id.0).collect();
            let existing: HashMap<CustomerId, Customer> = if existing_ids.is_empty() {
                HashMap::new()
            } else {
                fetch_customers!(tx, dialect, &existing_ids)?
                    .into_iter()
                    .map(|c| (c.id, c))
                    .collect()
            };
            let mut outcome = MirrorOutcome::default();
            // The last row wins when one reference comes twice in a batch.
            let mut wanted: HashMap<&str, &NewCustomer> = HashMap::new();
            for (key, row) in refs.iter().zip(rows) {
                wanted.insert(key.as_str(), &row.0);
            }
            let mut inserts: Vec<&NewCustomer> = Vec::new();
            let mut changed: Vec<i64> = Vec::new();
            let mut seen: HashSet<&str> = HashSet::new();
            for key in &refs {
                if !seen.insert(key.as_str()) {
                    continue;
                }
                let Some(row) = wanted.get(key.as_str()).copied() else {
                    continue;
                };
                match found.get(key).and_then(|id| existing.get(id)) {
                    None => inserts.push(row),
                    Some(current) if same_content(current, row) => outcome.unchanged += 1,
                    Some(current) => {
                        update_customer_fields!(tx, dialect, current.id.0, row);
                        sqlx::query(
                            &dialect.sql("DELETE FROM customer_phones WHERE customer_id = ?"),
                        )
                        .bind(current.id.0)
                        .execute(&mut *tx)
                        .await?;
                        let phones: Vec<(i64, &NewPhone)> =
                            row.phones.iter().map(|p| (current.id.0, p)).collect();
                        insert_phones!(tx, dialect, &phones);
                        changed.push(current.id.0);
                        outcome.updated += 1;
                    }
                }
            }
            let ids = allocate_customer_ids!(tx, dialect, inserts.len());
            let rows: Vec<(i64, &NewCustomer)> = ids.iter().copied().zip(inserts).collect();
            insert_customers!(tx, dialect, &rows);
            outcome.inserted = rows.len();
            changed.extend(ids);
            if !changed.is_empty() {
                log_customer_changes!(tx, dialect, changed);
            }
            tx.commit().await?;
            Ok(outcome)
        })
    }

    /// Deletes the customers carrying these external references (their calls and
    /// tickets stay, unlinked); returns how many were deleted.
    pub async fn delete_customers_by_external_refs(&self, refs: &[String]) -> Result<u64> {
        if refs.is_empty() {
            return Ok(0);
        }
        dispatch!(self, |pool, dialect| {
            let mut tx = begin_write!(pool, dialect);
            let keys = MergeKeys {
                external_refs: refs.to_vec(),
                ..MergeKeys::default()
            };
            let ids: Vec<i64> = find_by_keys!(tx, dialect, &keys)
                .by_external_ref
                .values()
                .map(|id| id.0)
                .collect();
            for chunk in ids.chunks(KEYS_PER_LOOKUP) {
                let sql = dialect.sql_owned(format!(
                    "DELETE FROM customers WHERE id IN ({})",
                    placeholders(chunk.len())
                ));
                let mut query = sqlx::query(&sql);
                for id in chunk {
                    query = query.bind(*id);
                }
                query.execute(&mut *tx).await?;
            }
            let deleted = ids.len() as u64;
            if !ids.is_empty() {
                log_customer_changes!(tx, dialect, ids);
            }
            tx.commit().await?;
            Ok(deleted)
        })
    }

    /// Every external reference starting with `prefix` (e.g. `odoo:res.partner:`).
    pub async fn external_refs_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let pattern = format!(
            "{}%",
            prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        dispatch!(self, |pool, dialect| {
            let rows: Vec<(String,)> = sqlx::query_as(&dialect.sql(
                "SELECT external_ref FROM customers \
                 WHERE external_ref LIKE ? ESCAPE '\\' ORDER BY id",
            ))
            .bind(pattern)
            .fetch_all(pool)
            .await?;
            Ok(rows.into_iter().map(|(r,)| r).collect())
        })
    }
}

/// Whether the stored customer already holds exactly `row` (checked content).
fn same_content(current: &Customer, row: &NewCustomer) -> bool {
    let stored = customer_to_new(current);
    let key = |p: &NewPhone| (p.e164.clone(), p.raw.clone(), p.label.clone());
    stored.name == row.name
        && stored.company == row.company
        && stored.email == row.email
        && stored.address == row.address
        && stored.notes == row.notes
        && stored.tags == row.tags
        && stored.phones.iter().map(key).collect::<Vec<_>>()
            == row.phones.iter().map(key).collect::<Vec<_>>()
}
