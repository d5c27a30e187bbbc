//! What the Odoo connector keeps in the database: its poll cursor and the
//! Fiche-id → Odoo-id links that make deliveries idempotent
//! (`migrations/*/0008_odoo.sql`).

use crate::error::Result;
use crate::sql::now;
use crate::{dispatch, Store};

impl Store {
    /// The connector's value `name`, if set.
    pub async fn odoo_state(&self, name: &str) -> Result<Option<String>> {
        dispatch!(self, |pool, dialect| {
            let row: Option<(String,)> =
                sqlx::query_as(&dialect.sql("SELECT value FROM odoo_state WHERE name = ?"))
                    .bind(name)
                    .fetch_optional(pool)
                    .await?;
            Ok(row.map(|(v,)| v))
        })
    }

    /// Sets the connector's value `name`.
    pub async fn set_odoo_state(&self, name: &str, value: &str) -> Result<()> {
        dispatch!(self, |pool, dialect| {
            sqlx::query(&dialect.sql(
                "INSERT INTO odoo_state (name, value, updated_at) VALUES (?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
                 updated_at = excluded.updated_at",
            ))
            .bind(name)
            .bind(value)
            .bind(now())
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The Odoo id the Fiche object (`kind`, `fiche_id`) became, if it did.
    pub async fn odoo_link(&self, kind: &str, fiche_id: &str) -> Result<Option<i64>> {
        dispatch!(self, |pool, dialect| {
            let row: Option<(i64,)> = sqlx::query_as(
                &dialect.sql("SELECT odoo_id FROM odoo_links WHERE kind = ? AND fiche_id = ?"),
            )
            .bind(kind)
            .bind(fiche_id)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|(v,)| v))
        })
    }

    /// Records that (`kind`, `fiche_id`) became Odoo's `odoo_id`; the first link wins.
    pub async fn set_odoo_link(&self, kind: &str, fiche_id: &str, odoo_id: i64) -> Result<()> {
        dispatch!(self, |pool, dialect| {
            sqlx::query(&dialect.sql(
                "INSERT INTO odoo_links (kind, fiche_id, odoo_id, created_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (kind, fiche_id) DO NOTHING",
            ))
            .bind(kind)
            .bind(fiche_id)
            .bind(odoo_id)
            .bind(now())
            .execute(pool)
            .await?;
            Ok(())
        })
    }
}
