//! Store tests. Every test body runs twice: on SQLite in a temporary directory and on
//! PostgreSQL (`FICHE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`)
//! in a schema of its own, created for the test and dropped after it, so tests run in
//! parallel. PostgreSQL being unreachable fails the tests: it is never skipped.

mod backup;
mod calls;
mod cluster;
mod cti_outbox;
mod customer_changes;
mod customers;
mod import;
mod odoo;
mod sessions;
mod ticket_work;
mod tickets;
mod users;

use fiche_store::Store;
use rand::Rng;

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A migrated, empty store, and what to clean up after it.
pub struct TestDb {
    pub store: Store,
    /// SQLite: the directory holding the database file.
    _dir: Option<tempfile::TempDir>,
    /// PostgreSQL: (server URL, schema) to drop.
    schema: Option<(String, String)>,
    /// A URL opening the same database, for tests that reconnect.
    pub url: String,
}

fn postgres_url() -> String {
    std::env::var("FICHE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/fiche.db", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        TestDb {
            store,
            _dir: Some(dir),
            schema: None,
            url,
        }
    }

    pub async fn postgres() -> TestDb {
        let server = postgres_url();
        let schema = format!("test_{:016x}", rand::thread_rng().gen::<u64>());
        let admin = sqlx::PgPool::connect(&server).await.unwrap_or_else(|e| {
            panic!("PostgreSQL is required for the store tests (FICHE_TEST_POSTGRES_URL): {e}")
        });
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let separator = if server.contains('?') { '&' } else { '?' };
        // The application name lets the cleanup find this test's connections.
        let url =
            format!("{server}{separator}options[search_path]={schema}&application_name={schema}");
        let db = TestDb {
            store: Store::connect(&url).await.unwrap(),
            _dir: None,
            schema: Some((server, schema)),
            url,
        };
        db.store.migrate().await.unwrap();
        db
    }

    pub async fn finish(self) {
        self.store.close().await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Also runs when the test panicked; async work needs a runtime of its own here.
        let Some((server, schema)) = self.schema.take() else {
            return;
        };
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(admin) = sqlx::PgPool::connect(&server).await {
                    // After a panic the test's pool may hold a connection inside a
                    // transaction (its rollback needs the runtime this thread blocks):
                    // end those connections so that DROP SCHEMA does not wait forever.
                    let _ = sqlx::query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE application_name = $1 AND pid <> pg_backend_pid()",
                    )
                    .bind(&schema)
                    .execute(&admin)
                    .await;
                    let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                        .execute(&admin)
                        .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// Declares `async fn $name(db: &TestDb)` as two tests, `$name::sqlite` and
/// `$name::postgres`.
#[macro_export]
macro_rules! store_test {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let db = $crate::TestDb::sqlite().await;
                super::$name(&db).await;
                db.finish().await;
            }

            #[tokio::test]
            async fn postgres() {
                let db = $crate::TestDb::postgres().await;
                super::$name(&db).await;
                db.finish().await;
            }
        }
    };
}
