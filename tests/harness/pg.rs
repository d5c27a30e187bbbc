//! A PostgreSQL schema of its own for one end-to-end test (test support):
//! created on the local server (`FICHE_TEST_POSTGRES_URL`, else
//! `postgres://postgres@127.0.0.1:5432/test`), dropped at the end, so tests
//! running side by side never see each other's rows.

/// The local PostgreSQL server of every machine of this kind.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A schema of its own; `url` points a connection (or `fiche`) at it.
#[derive(Debug)]
pub struct PgSchema {
    server: String,
    schema: String,
    /// The database URL with this schema as the search path.
    pub url: String,
}

impl PgSchema {
    /// Creates `e2e_<prefix>_<pid>_<nanos>`; panics when PostgreSQL is not there,
    /// since the suites that use it require it.
    pub async fn create(prefix: &str) -> PgSchema {
        let server = std::env::var("FICHE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let schema = format!(
            "e2e_{prefix}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default()
        );
        let admin = sqlx::PgPool::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is required ({server}): {e}"));
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .unwrap_or_else(|e| panic!("creating schema {schema}: {e}"));
        admin.close().await;
        let separator = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{separator}options[search_path]={schema}");
        PgSchema {
            server,
            schema,
            url,
        }
    }

    /// Drops the schema and everything in it.
    pub async fn drop_schema(self) {
        if let Ok(admin) = sqlx::PgPool::connect(&self.server).await {
            let _ = sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
                .execute(&admin)
                .await;
            admin.close().await;
        }
    }
}
