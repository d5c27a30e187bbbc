//! Mirroring another system's customers (Odoo): that system is the source of truth
//! for the customers carrying its external references.

use super::*;

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
pub(super) fn same_content(current: &Customer, row: &NewCustomer) -> bool {
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
