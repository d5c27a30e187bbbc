//! The customer file's operations on [`Store`]: create, read, update, delete, phones,
//! search, the batch upsert, and every number for the matcher's index.

use super::*;

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
pub(super) const PHONES_PER_JSON_CHUNK: i64 = 20_000;

/// On SQLite, reading a million rows one by one through sqlx costs seconds (every row
/// crosses a channel from the database thread); SQLite builds one JSON array per
/// range of phone ids instead, which is parsed here.
pub(super) async fn all_phone_numbers_sqlite(pool: &SqlitePool) -> Result<Vec<PhoneEntry>> {
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
