//! The SQLite implementation of [`Store`] (WAL mode): a pool of connections that read,
//! one connection that writes, and one for the audit trail, owned by the audit writer's
//! thread; the two writers take turns at the [`WriteGate`].

use std::borrow::Cow;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Row, Sqlite, SqliteConnection, SqlitePool};
use tessera_core::audit::{AuditEvent, AuditFilter, AuditKind};
use tessera_core::decision::{ClientFacts, Facts, LoginUpdate};
use tessera_core::model::{
    Client, ClientId, IpAllowList, Org, OrgSlug, Scope, ScopeName, StoredSecret, Timestamp, User,
    UserState, UserType,
};
use tessera_core::session::Session;
use tessera_core::sso::{SamlPending, SsoConfig};
use tessera_core::store::{
    AuditAppender, AuditStore, BoxFuture, ClientStore, KeyStore, OrgStore, SamlLogin,
    SamlLoginWritten, SealedSpKey, SsoStore, Store, StoreError, StoreResult, StoredKey,
    ThrottleStore, UserFields, UserStore, UserWrite,
};
use tessera_core::throttle::{AttemptOutcome, Reservation, ThrottlePolicy, ThrottleState};
use tessera_core::trace::Trace;

use crate::Durability;
use crate::hot::{FactsCache, OrgFacts, Persist, ThrottleMirror};
use crate::migrate;

mod audit;
mod clients;
mod cols;
mod grants;
mod keys;
mod orgs;
mod sso;
mod throttle;
mod users;

/// Tessera's store on an SQLite file.
pub struct SqliteStore {
    /// Reads, and in memory writes too.
    pool: SqlitePool,
    /// Whose turn it is to write, and the connection to write with: see [`WriteGate`].
    gate: Arc<WriteGate>,
    /// How to open a connection, to replace a failed write connection.
    opts: SqliteConnectOptions,
    /// The database file (`None` in memory), for the audit trail's own connection.
    file: Option<PathBuf>,
    durability: Durability,
    facts_cache: FactsCache,
    throttles: ThrottleMirror,
    /// The database's cache version when this node last looked.
    seen_version: AtomicI64,
    /// When `sync` last merged throttle records (seconds).
    last_sync: AtomicI64,
}

/// The write gate: one turn at a time for this process's writers, and on a database file
/// the connection they write with. SQLite lets one connection write at a time and makes
/// the others retry in its busy handler, which sleeps 1, 2, 5 … 100 ms between tries:
/// under a stream of SAML logins the audit thread's commits waited up to 100 ms. Waiting
/// here instead is first come, first served, and wakes the next writer as soon as the
/// last one commits. The audit thread takes its turn here too, with a connection of its
/// own. Writers on a file have a connection of their own (`Some`), so a writer's turn
/// never waits behind the pool's readers; in memory (`None`) they write through the
/// pool's one connection. Other processes on the same file still meet the busy handler.
type WriteGate = tokio::sync::Mutex<Option<SqliteConnection>>;

/// The write turn and the connection to write with; it derefs to the connection.
struct Writer<'a> {
    turn: tokio::sync::MutexGuard<'a, Option<SqliteConnection>>,
    /// The pool's connection, for an in-memory database.
    pooled: Option<PoolConnection<Sqlite>>,
}

impl std::ops::Deref for Writer<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        match (&self.pooled, &*self.turn) {
            (Some(c), _) => c,
            (None, Some(c)) => c,
            (None, None) => unreachable!("a writer always has a connection"),
        }
    }
}

impl std::ops::DerefMut for Writer<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match (&mut self.pooled, &mut *self.turn) {
            (Some(c), _) => c,
            (None, Some(c)) => c,
            (None, None) => unreachable!("a writer always has a connection"),
        }
    }
}

fn be(e: sqlx::Error) -> StoreError {
    if let Some(db) = e.as_database_error()
        && db.is_unique_violation()
    {
        return StoreError::Conflict(db.message().to_string());
    }
    if matches!(e, sqlx::Error::WorkerCrashed | sqlx::Error::Io(_)) {
        // Perhaps the write connection: the next writer checks it (see `writer`).
        CHECK_WRITE_CONNECTION.store(true, Ordering::Release);
    }
    StoreError::Backend(e.to_string())
}

/// Set when a query failed in a way that can leave a connection unusable. The pool
/// replaces its own connections; the write connection is checked, and replaced, by the
/// next writer.
static CHECK_WRITE_CONNECTION: AtomicBool = AtomicBool::new(false);

/// Maps a uniqueness violation to a conflict that names the thing; other errors as usual.
fn conflict_as(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match be(e) {
        StoreError::Conflict(_) => StoreError::Conflict(what()),
        other => other,
    }
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("domain values serialise to JSON")
}

fn from_json<T: DeserializeOwned>(s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Backend(format!("stored JSON is corrupt: {e}")))
}

fn get<'r, T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(
    row: &'r SqliteRow,
    col: &str,
) -> StoreResult<T> {
    row.try_get(col).map_err(be)
}

impl SqliteStore {
    /// Opens the SQLite database at `url` (creating the file) and migrates it.
    pub async fn open(url: &str, durability: Durability) -> StoreResult<Self> {
        let url = if url.starts_with("sqlite:") {
            url.to_string()
        } else {
            format!("sqlite://{url}")
        };
        let opts = SqliteConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Backend(format!("bad SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            // SQLite's defaults otherwise: a WAL checkpoint every 1000 pages (see
            // FileAppender), 2 MB of page cache per connection (a larger one bought no
            // speed and cost RSS with many clients).
            .busy_timeout(Duration::from_secs(10));
        let in_memory = url.contains(":memory:");
        let file = (!in_memory).then(|| opts.get_filename().to_path_buf());
        // An in-memory database exists per connection: keep exactly one. Otherwise four:
        // the token path reads only on a cache miss, and each connection's page cache
        // holds up to 2 MB (eight connections cost 9 MB of RSS with 10,000 clients and
        // bought no throughput). Connections live as long as the store, and a local file
        // needs no liveness ping before each use (a round trip to the connection's worker
        // thread per query, seen in profiles).
        let pool = SqlitePoolOptions::new()
            .max_connections(if in_memory { 1 } else { 4 })
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(opts.clone())
            .await
            .map_err(|e| StoreError::Backend(format!("cannot open {url}: {e}")))?;
        migrate::run(&pool, migrate::SQLITE).await?;
        let writer = if in_memory {
            None
        } else {
            Some(
                SqliteConnection::connect_with(&opts)
                    .await
                    .map_err(|e| StoreError::Backend(format!("cannot open {url}: {e}")))?,
            )
        };
        let store = Self {
            pool,
            gate: Arc::new(tokio::sync::Mutex::new(writer)),
            opts,
            file,
            durability,
            facts_cache: FactsCache::default(),
            throttles: ThrottleMirror::default(),
            seen_version: AtomicI64::new(0),
            last_sync: AtomicI64::new(0),
        };
        store.sync_now(i64::MAX / 2).await?;
        Ok(store)
    }

    /// The connection to write with, once it is this task's turn. Never called while the
    /// task holds a pool connection or a `Writer` (the gate is not re-entrant).
    async fn writer(&self) -> StoreResult<Writer<'_>> {
        let mut turn = self.gate.lock().await;
        if let Some(conn) = turn.as_mut()
            && CHECK_WRITE_CONNECTION.swap(false, Ordering::AcqRel)
            && conn.ping().await.is_err()
        {
            tracing::warn!("the SQLite write connection failed; opening a new one");
            match SqliteConnection::connect_with(&self.opts).await {
                Ok(fresh) => *turn = Some(fresh),
                Err(e) => {
                    CHECK_WRITE_CONNECTION.store(true, Ordering::Release);
                    return Err(StoreError::Backend(format!(
                        "cannot reopen the write connection: {e}"
                    )));
                }
            }
        }
        let pooled = match *turn {
            Some(_) => None,
            None => Some(self.pool.acquire().await.map_err(be)?),
        };
        Ok(Writer { turn, pooled })
    }

    /// Records that cached data changed: bumps the version other nodes poll, and clears
    /// this node's cache. Called in the same write turn as the change, so no other write
    /// comes between them and no second wait for the gate can be cut short.
    async fn changed(&self, w: &mut SqliteConnection) -> StoreResult<()> {
        self.facts_cache.invalidate();
        let v: i64 = sqlx::query_scalar(
            "UPDATE tessera_meta SET value = value + 1 WHERE key = 'cache_version' RETURNING value",
        )
        .fetch_one(w)
        .await
        .map_err(be)?;
        self.seen_version.store(v, Ordering::Release);
        Ok(())
    }

    /// Passes a write's result through, recording the change when it succeeded, on the
    /// write's own connection and turn.
    async fn committed<T>(&self, w: &mut SqliteConnection, out: StoreResult<T>) -> StoreResult<T> {
        if out.is_ok() {
            self.changed(w).await?;
        }
        out
    }

    async fn sync_now(&self, window: i64) -> StoreResult<()> {
        let v: i64 =
            sqlx::query_scalar("SELECT value FROM tessera_meta WHERE key = 'cache_version'")
                .fetch_one(&self.pool)
                .await
                .map_err(be)?;
        if self.seen_version.swap(v, Ordering::AcqRel) != v {
            self.facts_cache.invalidate();
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let since = self
            .last_sync
            .swap(now, Ordering::AcqRel)
            .max(now.saturating_sub(window))
            - 1;
        let rows = sqlx::query(
            "SELECT client_id, source_ip, failures, last_failure, blocked_until FROM auth_failures
             WHERE last_failure >= ? OR blocked_until > ?",
        )
        .bind(since)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(be)?
        .iter()
        .map(|r| {
            Ok((
                get::<String>(r, "client_id")?,
                get::<String>(r, "source_ip")?,
                ThrottleState {
                    failures: get::<i64>(r, "failures")? as u32,
                    last_failure: get(r, "last_failure")?,
                    blocked_until: get(r, "blocked_until")?,
                },
            ))
        })
        .collect::<StoreResult<Vec<_>>>()?;
        self.throttles
            .merge(rows, now.saturating_sub(window.min(now)), now);
        Ok(())
    }
}

impl Store for SqliteStore {
    fn sync(&self, window: i64) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.sync_now(window))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The deletes each login and the prune task run find expired rows by index, never
    /// by reading the whole table (which holds a day of logins).
    #[tokio::test]
    async fn expiry_deletes_use_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.db");
        let s = SqliteStore::open(path.to_str().unwrap(), Durability::Normal)
            .await
            .unwrap();
        for sql in [
            "DELETE FROM saml_replay WHERE expires_at <= 1",
            "DELETE FROM saml_pending WHERE expires_at <= 1",
            "DELETE FROM sessions WHERE last_seen_at <= 1 OR created_at <= 1",
            "DELETE FROM sessions WHERE user_id = 'usr_x'",
        ] {
            let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(&s.pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>("detail"))
                .collect();
            assert!(
                plan.iter().all(|d| !d.starts_with("SCAN"))
                    && plan.iter().any(|d| d.contains("INDEX")),
                "{sql}: {plan:?}"
            );
        }
    }

    /// The named column lists (`cols.rs`) are each table's columns after every
    /// migration, so no row mapper misses one.
    #[tokio::test]
    async fn named_columns_are_the_tables_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cols.db");
        let s = SqliteStore::open(path.to_str().unwrap(), Durability::Normal)
            .await
            .unwrap();
        for (table, named) in [
            ("clients", cols::clients_cols!()),
            ("users", cols::users_cols!()),
            ("orgs", cols::orgs_cols!()),
            ("signing_keys", cols::signing_keys_cols!()),
            ("sessions", cols::sessions_cols!()),
            ("login_grants", cols::login_grants_cols!()),
            ("auth_codes", cols::auth_codes_cols!()),
            ("client_secrets", cols::client_secrets_cols!()),
            ("scopes", cols::scopes_cols!()),
            ("audit_events", cols::audit_events_cols!()),
        ] {
            let columns: Vec<String> = sqlx::query(&format!("PRAGMA table_info({table})"))
                .fetch_all(&s.pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>("name"))
                .collect();
            assert_eq!(named, columns.join(", "), "{table}");
        }
    }
}
