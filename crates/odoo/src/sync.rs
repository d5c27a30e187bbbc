//! Odoo partners into Fiche's customer file: the first full import
//! ([`full_sync`], `fiche odoo sync`) and the server's poll ([`Poller`]).
//!
//! Both write through [`fiche_store::Store::mirror_customers`], which logs every
//! change in the customer change log: each Fiche node's in-memory index follows
//! (`customers_sync`), exactly as for `fiche import`.
//!
//! **Poll.** Odoo stamps `write_date` with the time its transaction began, so a
//! record can commit after records stamped later were already read. Each poll
//! therefore re-reads from the last change seen minus `poll_overlap_secs`, in
//! `(write_date, id)` order with the id breaking ties (pages never skip nor repeat
//! records sharing one second), archived partners included (`active_test: false`).
//! Re-reading costs nothing in Fiche: a partner identical to what is stored is
//! not written. Deleted partners leave no trace to poll, so every
//! `deletion_sweep_every` polls (and at the first) the ids of all active partners
//! are compared with the references Fiche holds.

use std::collections::{HashMap, HashSet};

use chrono::{Duration as ChronoDuration, NaiveDateTime};
use fiche_matcher::NumberPolicy;
use fiche_store::{CheckedCustomer, MirrorOutcome, Store};
use indicatif::ProgressBar;
use serde_json::{json, Value};

use crate::client::OdooClient;
use crate::error::{OdooError, Result};
use crate::partners::{self, BadNumber, Partner, PARTNER_FIELDS, REF_PREFIX};
use crate::wire::Call;

/// Name of the poll cursor in the store's `odoo_state`.
pub const CURSOR_STATE: &str = "partners_cursor";
/// Odoo's datetime format in JSON (UTC, no zone).
const ODOO_DATETIME: &str = "%Y-%m-%d %H:%M:%S";

/// Reads partners with the fields this database has.
pub struct PartnerReader {
    fields: Vec<String>,
    has_mobile: bool,
    tags: HashMap<i64, String>,
    policy: NumberPolicy,
    page_size: u32,
}

impl PartnerReader {
    /// Discovers `res.partner`'s fields (`fields_get`) and reads the tag names.
    pub async fn new(client: &OdooClient, policy: NumberPolicy) -> Result<Self> {
        let available = client.fields("res.partner").await?;
        let mut fields = Vec::new();
        for field in PARTNER_FIELDS {
            if available.contains_key(*field) {
                fields.push((*field).to_owned());
            } else if matches!(*field, "name" | "write_date" | "active") {
                return Err(OdooError::UnknownField {
                    model: "res.partner".to_owned(),
                    field: (*field).to_owned(),
                });
            }
        }
        let has_mobile = available.contains_key("mobile");
        if has_mobile {
            fields.push("mobile".to_owned());
        }
        let mut tags = HashMap::new();
        if available.contains_key("category_id") {
            let found = client
                .call(
                    &Call::new("res.partner.category", "search_read")
                        .kw("domain", json!([]))
                        .kw("fields", json!(["name"]))
                        .context("active_test", json!(false)),
                )
                .await?;
            for tag in found.as_array().into_iter().flatten() {
                if let (Some(id), Some(name)) = (
                    tag.get("id").and_then(Value::as_i64),
                    tag.get("name").and_then(Value::as_str),
                ) {
                    tags.insert(id, name.to_owned());
                }
            }
        }
        Ok(PartnerReader {
            fields,
            has_mobile,
            tags,
            policy,
            page_size: client.config().page_size,
        })
    }

    /// Whether this database's partners have a `mobile` field (not on Odoo 19).
    pub fn has_mobile(&self) -> bool {
        self.has_mobile
    }

    async fn page(
        &self,
        client: &OdooClient,
        domain: Value,
        order: &str,
        with_archived: bool,
    ) -> Result<Vec<Partner>> {
        let mut call = Call::new("res.partner", "search_read")
            .kw("domain", domain)
            .kw("fields", json!(self.fields))
            .kw("order", json!(order))
            .kw("limit", json!(self.page_size));
        if with_archived {
            call = call.context("active_test", json!(false));
        }
        let records = client.call(&call).await?;
        let records = records.as_array().ok_or_else(|| {
            OdooError::protocol("res.partner.search_read", "expected a list of records")
        })?;
        records
            .iter()
            .map(|r| partners::read_partner(r, &self.tags, &self.policy))
            .collect()
    }
}

/// What a sync or a poll did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Partners read from Odoo.
    pub read: usize,
    /// What the store did with them.
    pub written: MirrorOutcome,
    /// Customers removed: archived or deleted in Odoo.
    pub removed: u64,
    /// Numbers kept as typed but not understood, by partner.
    pub bad_numbers: Vec<BadNumber>,
    /// Partners not imported, with the reason (a field too long, …).
    pub rejected: Vec<(i64, String)>,
}

impl SyncReport {
    fn add(&mut self, outcome: MirrorOutcome) {
        self.written.inserted += outcome.inserted;
        self.written.updated += outcome.updated;
        self.written.unchanged += outcome.unchanged;
    }
}

/// The poll cursor: the last change applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Its `write_date`.
    pub write_date: String,
    /// Its id.
    pub id: i64,
}

impl Cursor {
    fn encode(&self) -> String {
        format!("{}|{}", self.write_date, self.id)
    }

    fn decode(text: &str) -> Option<Self> {
        let (write_date, id) = text.rsplit_once('|')?;
        Some(Cursor {
            write_date: write_date.to_owned(),
            id: id.parse().ok()?,
        })
    }

    fn advance(&mut self, partner: &Partner) {
        if (partner.write_date.as_str(), partner.id) > (self.write_date.as_str(), self.id) {
            self.write_date.clone_from(&partner.write_date);
            self.id = partner.id;
        }
    }
}

/// Checks and writes one page: active partners mirrored, archived ones removed.
async fn apply(store: &Store, partners: Vec<Partner>, report: &mut SyncReport) -> Result<()> {
    report.read += partners.len();
    let mut rows: Vec<CheckedCustomer> = Vec::with_capacity(partners.len());
    let mut archived: Vec<String> = Vec::new();
    for partner in partners {
        report.bad_numbers.extend(partner.bad_numbers);
        if !partner.active {
            archived.push(partners::external_ref(partner.id));
            continue;
        }
        match partner.customer.check() {
            Ok(row) => rows.push(row),
            Err(error) => report.rejected.push((partner.id, error.to_string())),
        }
    }
    if !rows.is_empty() {
        let outcome = store.mirror_customers(&rows).await?;
        report.add(outcome);
    }
    report.removed += store.delete_customers_by_external_refs(&archived).await?;
    Ok(())
}

/// Removes the customers of partners that are no longer active in Odoo.
async fn sweep(store: &Store, active: &HashSet<i64>) -> Result<u64> {
    let gone: Vec<String> = store
        .external_refs_with_prefix(REF_PREFIX)
        .await?
        .into_iter()
        .filter(|r| partners::partner_id(r).is_some_and(|id| !active.contains(&id)))
        .collect();
    Ok(store.delete_customers_by_external_refs(&gone).await?)
}

/// The first import: every active partner, page by page in id order; customers of
/// partners no longer active are removed; the poll cursor is set to the latest
/// change read. `bar` gets the count and the progress.
pub async fn full_sync(
    client: &OdooClient,
    store: &Store,
    reader: &PartnerReader,
    bar: &ProgressBar,
) -> Result<SyncReport> {
    let total = client
        .call(&Call::new("res.partner", "search_count").kw("domain", json!([])))
        .await?
        .as_u64()
        .unwrap_or(0);
    bar.set_length(total);
    let mut report = SyncReport::default();
    let mut seen: HashSet<i64> = HashSet::new();
    let mut cursor = Cursor {
        write_date: String::new(),
        id: 0,
    };
    let mut last_id = 0;
    loop {
        let page = reader
            .page(client, json!([["id", ">", last_id]]), "id", false)
            .await?;
        let Some(last) = page.last() else { break };
        last_id = last.id;
        let count = page.len();
        for partner in &page {
            seen.insert(partner.id);
            cursor.advance(partner);
        }
        apply(store, page, &mut report).await?;
        bar.inc(count as u64);
        if count < reader.page_size as usize {
            break;
        }
    }
    report.removed += sweep(store, &seen).await?;
    if cursor.id > 0 {
        store.set_odoo_state(CURSOR_STATE, &cursor.encode()).await?;
    }
    Ok(report)
}

/// The server's poll of changed partners; see the module's header.
pub struct Poller {
    reader: PartnerReader,
    cursor: Cursor,
    overlap: ChronoDuration,
    sweep_every: u32,
    polls: u32,
}

impl Poller {
    /// A poller starting from the cursor stored by the last sync or poll (from
    /// the beginning when there is none: the first poll then imports everything).
    pub async fn new(client: &OdooClient, store: &Store, policy: NumberPolicy) -> Result<Self> {
        let reader = PartnerReader::new(client, policy).await?;
        let cursor = store
            .odoo_state(CURSOR_STATE)
            .await?
            .as_deref()
            .and_then(Cursor::decode)
            .unwrap_or(Cursor {
                write_date: String::new(),
                id: 0,
            });
        let config = client.config();
        Ok(Poller {
            reader,
            cursor,
            overlap: ChronoDuration::seconds(
                i64::try_from(config.poll_overlap_secs).unwrap_or(i64::MAX / 2_000),
            ),
            sweep_every: config.deletion_sweep_every.max(1),
            polls: 0,
        })
    }

    /// Where the poll stands.
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// Reads what changed since the cursor (minus the overlap) and applies it.
    /// On an error nothing moves: the next poll reads the same window again.
    pub async fn poll(&mut self, client: &OdooClient, store: &Store) -> Result<SyncReport> {
        let since = NaiveDateTime::parse_from_str(&self.cursor.write_date, ODOO_DATETIME)
            .map(|at| (at - self.overlap).format(ODOO_DATETIME).to_string())
            .unwrap_or_else(|_| "1970-01-01 00:00:00".to_owned());
        let mut report = SyncReport::default();
        let mut cursor = self.cursor.clone();
        let (mut at, mut id) = (since, 0i64);
        loop {
            let domain = json!([
                "|",
                ["write_date", ">", at],
                "&",
                ["write_date", "=", at],
                ["id", ">", id]
            ]);
            let page = self
                .reader
                .page(client, domain, "write_date, id", true)
                .await?;
            let Some(last) = page.last() else { break };
            (at, id) = (last.write_date.clone(), last.id);
            let count = page.len();
            for partner in &page {
                cursor.advance(partner);
            }
            apply(store, page, &mut report).await?;
            if count < self.reader.page_size as usize {
                break;
            }
        }
        if self.polls.is_multiple_of(self.sweep_every) {
            let ids = client
                .call(&Call::new("res.partner", "search").kw("domain", json!([])))
                .await?;
            let active: HashSet<i64> = ids
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_i64)
                .collect();
            report.removed += sweep(store, &active).await?;
        }
        self.polls = self.polls.wrapping_add(1);
        if cursor != self.cursor {
            store.set_odoo_state(CURSOR_STATE, &cursor.encode()).await?;
            self.cursor = cursor;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partner(id: i64, write_date: &str) -> Partner {
        Partner {
            id,
            write_date: write_date.to_owned(),
            active: true,
            customer: fiche_store::NewCustomer::default(),
            bad_numbers: Vec::new(),
        }
    }

    #[test]
    fn the_cursor_moves_by_write_date_then_id_and_survives_a_restart() {
        let mut cursor = Cursor {
            write_date: "2026-12-06 09:00:00".to_owned(),
            id: 7,
        };
        cursor.advance(&partner(3, "2026-12-06 09:00:00"));
        assert_eq!(cursor.id, 7, "same second, lower id: already seen");
        cursor.advance(&partner(9, "2026-12-06 09:00:00"));
        assert_eq!(cursor.id, 9);
        cursor.advance(&partner(1, "2026-12-06 09:00:01"));
        assert_eq!(
            (cursor.write_date.as_str(), cursor.id),
            ("2026-12-06 09:00:01", 1)
        );
        cursor.advance(&partner(50, "2026-12-06 08:59:59"));
        assert_eq!(cursor.id, 1, "an older change never moves it back");
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("garbage"), None);
    }
}
