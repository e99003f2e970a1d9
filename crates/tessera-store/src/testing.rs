//! Fresh PostgreSQL databases for tests: the store contract suite and the HTTP suites
//! run once more on PostgreSQL when `TESSERA_TEST_POSTGRES_URL` names a server.

use sqlx::{Connection, Executor, PgConnection};

/// The PostgreSQL server tests may create databases on, from `TESSERA_TEST_POSTGRES_URL`
/// (a URL to any database of it, e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
/// `None`, with a note, when it is not set; a panic instead when `TESSERA_REQUIRE_ALL=1`.
pub fn postgres_server() -> Option<String> {
    match std::env::var("TESSERA_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let msg = "TESSERA_TEST_POSTGRES_URL is not set, so the PostgreSQL run is skipped: point it at a server where the user may create databases, e.g. postgres://postgres@127.0.0.1:5432/postgres (.ci/run does)";
            assert!(
                std::env::var("TESSERA_REQUIRE_ALL").as_deref() != Ok("1"),
                "{msg}; TESSERA_REQUIRE_ALL=1 makes this a failure"
            );
            eprintln!("{msg}");
            None
        }
    }
}

/// A database made for one test, dropped with it.
pub struct PgTestDb {
    server: String,
    name: String,
}

impl PgTestDb {
    /// Creates a database with a name of its own on `server`.
    pub async fn create(server: &str) -> PgTestDb {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() % 1_000_000_000_000)
            .unwrap_or(0);
        let name = format!(
            "tessera_t_{}_{t}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = PgConnection::connect(server)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL server: {e}"));
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
        PgTestDb {
            server: server.to_string(),
            name,
        }
    }

    /// The URL of the test's database.
    pub fn url(&self) -> String {
        let (base, _) = self
            .server
            .split_once('?')
            .map_or((self.server.as_str(), ""), |(b, q)| (b, q));
        let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
        format!("{base}/{}", self.name)
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // On a thread and runtime of its own: the test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&server).await {
                    let _ = admin
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                }
            });
        })
        .join();
    }
}
