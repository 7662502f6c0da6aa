//! One database per test, cloned from a migrated template.
//!
//! PostgreSQL comes from `STEWARD_TEST_DATABASE_URL`, else a server on
//! localhost:5432, else a private throwaway cluster started with the
//! machine's initdb/pg_ctl under `target/`. The template's name carries a
//! digest of every migration, so a changed migration gets a fresh template.

use std::path::PathBuf;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use sha2::{Digest, Sha256};
use steward_kit::devdb;
use tokio::sync::OnceCell;

static SERVER: OnceCell<String> = OnceCell::const_new();
static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// Port of the private cluster the tests start when no server is found.
const PRIVATE_PORT: u16 = 54330;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The admin URL of the server tests use.
pub async fn server() -> &'static str {
    SERVER
        .get_or_init(|| async {
            if let Ok(url) = std::env::var("STEWARD_TEST_DATABASE_URL") {
                return url;
            }
            if std::env::var("STEWARD_TEST_PRIVATE_PG").is_err()
                && let Some(url) = devdb::local_server().await
            {
                return url;
            }
            let dir = workspace().join("target").join("test-postgres");
            let cluster = devdb::start_private_cluster(&dir, PRIVATE_PORT)
                .await
                .unwrap_or_else(|e| panic!("cannot provide PostgreSQL for tests: {e}"));
            let url = cluster.url.clone();
            // Test processes end without running statics' destructors; the
            // throwaway cluster stays up for the next test binary and is
            // stopped by `.ci/run` (or reused by the next run).
            std::mem::forget(cluster);
            url
        })
        .await
}

fn migrations_digest() -> String {
    let mut files = Vec::new();
    for service in [
        "services/kit/migrations",
        "services/accounts/migrations",
        "services/audit/migrations",
        "services/billing/migrations",
    ] {
        collect(&workspace().join(service), &mut files);
    }
    files.sort();
    let mut digest = Sha256::new();
    for file in files {
        digest.update(file.to_string_lossy().as_bytes());
        digest.update(std::fs::read(&file).expect("read migration"));
    }
    hex::encode(&digest.finalize()[..6])
}

fn collect(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("migrations dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}

async fn admin() -> AsyncPgConnection {
    AsyncPgConnection::establish(server().await)
        .await
        .expect("connect to test PostgreSQL")
}

/// Creates the migrated template once (per digest, across processes: an
/// advisory lock serialises builders).
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("steward_tpl_{}", migrations_digest());
            let mut conn = admin().await;
            conn.batch_execute("SELECT pg_advisory_lock(7315001)")
                .await
                .unwrap();
            let exists = database_exists(&mut conn, &name).await;
            if !exists {
                let building = format!("{name}_building");
                conn.batch_execute(&format!("DROP DATABASE IF EXISTS {building}"))
                    .await
                    .unwrap();
                conn.batch_execute(&format!("CREATE DATABASE {building}"))
                    .await
                    .unwrap();
                let url = devdb::with_database(server().await, &building);
                for (schema, migrations) in [
                    (steward_accounts::SCHEMA, steward_accounts::MIGRATIONS),
                    (steward_audit::SCHEMA, steward_audit::MIGRATIONS),
                    (steward_billing::SCHEMA, steward_billing::MIGRATIONS),
                ] {
                    steward_kit::db::migrate(&url, schema, migrations)
                        .await
                        .unwrap_or_else(|e| panic!("migrate {schema} in the template: {e}"));
                }
                conn.batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}"))
                    .await
                    .unwrap();
            }
            conn.batch_execute("SELECT pg_advisory_unlock(7315001)")
                .await
                .unwrap();
            name
        })
        .await
}

async fn database_exists(conn: &mut AsyncPgConnection, name: &str) -> bool {
    use diesel::{dsl::sql, sql_types::Bool};
    use diesel_async::RunQueryDsl;
    diesel::select(sql::<Bool>(&format!(
        "EXISTS (SELECT 1 FROM pg_database WHERE datname = '{name}')"
    )))
    .get_result(conn)
    .await
    .unwrap()
}

/// A database of its own for one test; dropped with the value.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> Self {
        let template = template().await;
        let name = format!("steward_t_{}", uuid::Uuid::new_v4().simple());
        admin()
            .await
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .await
            .expect("clone template");
        let url = devdb::with_database(server().await, &name);
        Self { name, url }
    }

    /// A connection in the accounts schema, for checks the API cannot make
    /// (outbox contents) and for moving time (destroyed_at).
    pub async fn accounts(&self) -> AsyncPgConnection {
        steward_kit::db::connect(&self.url, steward_accounts::SCHEMA)
            .await
            .expect("connect to test database")
    }
}

impl TestDb {
    /// A connection in the audit schema.
    pub async fn audit(&self) -> AsyncPgConnection {
        steward_kit::db::connect(&self.url, steward_audit::SCHEMA)
            .await
            .expect("connect to test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let Some(server) = SERVER.get().cloned() else {
            return;
        };
        // Drop runs outside async; use a short-lived runtime on a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = AsyncPgConnection::establish(&server).await {
                    let _ = conn
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}
