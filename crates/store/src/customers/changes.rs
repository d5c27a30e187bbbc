//! The change log, for the servers' in-memory index (see
//! migrations/*/0002_customer_changes.sql).

use super::*;

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
