//! Queries. Each takes an executor, so it runs inside or outside a transaction; the
//! statement bodies are macros run against either backend (see `dispatch`).

use super::*;

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
pub(super) fn assemble(rows: Vec<CustomerRow>, phones: Vec<PhoneRow>) -> Result<Vec<Customer>> {
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
pub(super) fn clock_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
        Dialect::Postgres => "(floor(extract(epoch FROM clock_timestamp()) * 1000000))::bigint",
    }
}

/// Sorted, distinct `ids` as contiguous runs `(first, last)`: an import batch of
/// new customers is one run.
pub(super) fn id_runs(ids: &mut Vec<i64>) -> Vec<(i64, i64)> {
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
