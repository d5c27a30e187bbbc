//! A consistent copy of a SQLite database, taken while Fiche runs.
//!
//! `VACUUM INTO` reads the whole database in one read transaction: the copy
//! holds exactly what was committed when it began, whatever is written
//! meanwhile (WAL lets writers go on; the copy never waits for them, nor they
//! for it beyond SQLite's usual single-writer rule). The copy is compact,
//! self-contained (no `-wal` file to carry along) and checked before the call
//! returns. PostgreSQL has its own tool for this: `pg_dump`.

use std::path::Path;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::error::{Result, StoreError};
use crate::{Backend, Store};

/// What [`Store::backup_into`] refuses on PostgreSQL.
const USE_PG_DUMP: &str = "this database is PostgreSQL: back it up with pg_dump \
     (e.g. `pg_dump --format=custom --file=fiche.dump DATABASE`), not with fiche backup";

impl Store {
    /// Writes a consistent copy of the SQLite database to `dest`, a file that
    /// must not exist yet (SQLite refuses to overwrite), then checks the copy
    /// (`PRAGMA quick_check`). On PostgreSQL: [`StoreError::Unsupported`].
    pub async fn backup_into(&self, dest: &Path) -> Result<()> {
        let pool = match &self.backend {
            Backend::Sqlite(pool) => pool,
            Backend::Postgres(_) => return Err(StoreError::Unsupported(USE_PG_DUMP)),
        };
        let path = dest
            .to_str()
            .ok_or_else(|| StoreError::invalid("backup file", "the path is not valid UTF-8"))?;
        sqlx::query("VACUUM INTO ?")
            .bind(path)
            .execute(pool)
            .await?;
        let mut copy = SqliteConnectOptions::new()
            .filename(dest)
            .read_only(true)
            .connect()
            .await?;
        let (verdict,): (String,) = sqlx::query_as("PRAGMA quick_check")
            .fetch_one(&mut copy)
            .await?;
        copy.close().await?;
        if verdict != "ok" {
            return Err(StoreError::Corrupt {
                entity: "backup",
                field: "quick_check",
                value: verdict,
            });
        }
        Ok(())
    }
}
