//! The SQLite implementation of [`Store`] (WAL mode): a pool of connections that read,
//! one connection that writes, and one for the audit trail, owned by the audit writer's
//! thread; the two writers take turns at the [`WriteGate`].

use std::borrow::Cow;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Sqlite, SqliteConnection, SqlitePool};
use tessera_core::audit::{AuditEvent, AuditFilter};
use tessera_core::decision::LoginUpdate;
use tessera_core::model::{
    Client, Org, OrgSlug, ScimLink, Scope, ScopeName, StoredSecret, Timestamp, User, UserState,
    UserType,
};
use tessera_core::session::Session;
use tessera_core::sso::{SamlPending, SsoConfig};
use tessera_core::store::{
    AuditAppender, AuditStore, BoxFuture, ClientStore, KeyStore, OrgStore, SamlLogin,
    SamlLoginWritten, SealedSpKey, SsoStore, StoreError, StoreResult, StoredKey, ThrottleStore,
    UserFields, UserStore, UserWrite,
};
use tessera_core::throttle::{ThrottlePolicy, ThrottleState};

use crate::Durability;
use crate::backend::{Backend, Change, ClientParts, Feed, OrgParts, ThrottleRecord};
use crate::cols;
use crate::migrate;
use crate::rows::{
    audit_from, client_from, code_from, from_json, get, grant_from, org_from, secret_from,
    session_from, to_json, user_from,
};
use crate::unix_now;

mod audit;
mod clients;
mod grants;
mod keys;
mod orgs;
mod scim;
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

/// Opens a connection (or pool), retrying a few times while the file is locked: a
/// connection's first statements (the journal mode among them) can meet another
/// process's or node's lock on the same file before the busy timeout applies, seen as
/// "database is locked" when two nodes start together on a loaded machine.
async fn with_open_retries<T, F, Fut>(url: &str, open: F) -> StoreResult<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let mut attempt = 0;
    loop {
        match open().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 20 && e.to_string().contains("database is locked") => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(StoreError::Backend(format!("cannot open {url}: {e}"))),
        }
    }
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
        let pool = with_open_retries(&url, || {
            SqlitePoolOptions::new()
                .max_connections(if in_memory { 1 } else { 4 })
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .test_before_acquire(false)
                .connect_with(opts.clone())
        })
        .await?;
        migrate::run(&pool, migrate::SQLITE).await?;
        let writer = if in_memory {
            None
        } else {
            Some(with_open_retries(&url, || SqliteConnection::connect_with(&opts)).await?)
        };
        let store = Self {
            pool,
            gate: Arc::new(tokio::sync::Mutex::new(writer)),
            opts,
            file,
            durability,
        };
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

    /// Records what a write changed in the change feed, in the write's own transaction
    /// and turn (so the feed's order is the writes' order), and forgets entries older
    /// than [`FEED_KEPT_SECONDS`].
    async fn changed(&self, w: &mut SqliteConnection, changes: &[Change]) -> StoreResult<()> {
        let now = unix_now();
        for c in changes {
            let (kind, key) = c.to_row();
            sqlx::query("INSERT INTO tessera_changes (kind, key, at) VALUES (?, ?, ?)")
                .bind(kind)
                .bind(key)
                .bind(now)
                .execute(&mut *w)
                .await
                .map_err(be)?;
        }
        sqlx::query("DELETE FROM tessera_changes WHERE at < ?")
            .bind(now - FEED_KEPT_SECONDS)
            .execute(&mut *w)
            .await
            .map_err(be)?;
        Ok(())
    }

    /// Ends a write's transaction: on success, records what it changed in the change
    /// feed in the same transaction, then commits (the data and its feed entry commit
    /// together, or neither does); on failure, rolls back.
    async fn committed<T>(
        &self,
        mut tx: sqlx::Transaction<'_, Sqlite>,
        out: StoreResult<T>,
        changes: &[Change],
    ) -> StoreResult<T> {
        match out {
            Ok(v) => {
                self.changed(&mut tx, changes).await?;
                tx.commit().await.map_err(be)?;
                Ok(v)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }
}

impl Backend for SqliteStore {
    fn client_parts<'a>(
        &'a self,
        client_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<ClientParts>>> {
        Box::pin(self.load_client_parts(client_id))
    }

    fn org_parts(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Option<OrgParts>>> {
        Box::pin(self.load_org_parts(org_id))
    }

    fn changes_after(&self, after: i64) -> BoxFuture<'_, StoreResult<Feed>> {
        Box::pin(async move {
            let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM tessera_changes")
                .fetch_one(&self.pool)
                .await
                .map_err(be)?;
            if after >= head {
                return Ok(Feed {
                    head,
                    ..Feed::default()
                });
            }
            let rows = sqlx::query(
                "SELECT seq, kind, key FROM tessera_changes WHERE seq > ? AND seq <= ? ORDER BY seq",
            )
            .bind(after)
            .bind(head)
            .fetch_all(&self.pool)
            .await
            .map_err(be)?;
            // Positions are dense (one writer, AUTOINCREMENT): a first row past after + 1
            // means older ones were forgotten.
            let first = rows.first().map(|r| get::<i64>(r, "seq")).transpose()?;
            let mut feed = Feed {
                head,
                gap: first != Some(after + 1),
                changes: Vec::with_capacity(rows.len()),
            };
            for r in &rows {
                match Change::from_row(&get::<String>(r, "kind")?, get(r, "key")?) {
                    Some(c) => feed.changes.push((get(r, "seq")?, c)),
                    None => feed.gap = true,
                }
            }
            Ok(feed)
        })
    }

    fn throttle_records(
        &self,
        since: Timestamp,
        now: Timestamp,
    ) -> BoxFuture<'_, StoreResult<Vec<ThrottleRecord>>> {
        Box::pin(self.load_throttle_records(since, now))
    }

    fn count_failure<'a>(
        &'a self,
        key: &'a str,
        source: &'a str,
        policy: ThrottlePolicy,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<ThrottleState>> {
        Box::pin(self.increment_failures(key, source, policy, now))
    }

    fn clear_failures<'a>(
        &'a self,
        key: &'a str,
        source: &'a str,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.delete_failures(key, source))
    }
}

/// How long the change feed keeps an entry, in seconds: a node that has not read the
/// feed for longer forgets all its cached facts.
const FEED_KEPT_SECONDS: i64 = 3_600;

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

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
            ("scim_groups", cols::scim_groups_cols!()),
            ("scim_tokens", cols::scim_tokens_cols!()),
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

    /// A database made by an older version (through migration 13, before `jwks_uri`
    /// and the change feed) opens with every row it had: the newer migrations run on
    /// it, and its clients and secrets read as before.
    #[tokio::test]
    async fn an_older_database_migrates_without_losing_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
                .unwrap()
                .create_if_missing(true);
            let pool = SqlitePool::connect_with(opts).await.unwrap();
            migrate::run(&pool, &migrate::SQLITE[..13]).await.unwrap();
            sqlx::raw_sql(
                "INSERT INTO orgs (id, slug, enabled, sso_enforced, created_at) VALUES (7, 'old', 1, 0, 5);
                 INSERT INTO clients (client_id, org_id, name, enabled, grant_types, scopes, redirect_uris,
                     auth_methods, ip_allowlist, service_account_id, token_ttl, created_at)
                 VALUES ('legacy', 7, 'from 0.1', 1, '[\"client_credentials\"]', '[]', '[]',
                     '[\"client_secret_basic\"]', '[]', NULL, 600, 5);
                 INSERT INTO client_secrets (id, client_id, hash, hint, created_at)
                 VALUES ('sec_1', 'legacy', zeroblob(32), 'abcd', 5);",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let s = SqliteStore::open(path.to_str().unwrap(), Durability::Normal)
            .await
            .unwrap();
        let c = s
            .get_client(7, "legacy")
            .await
            .unwrap()
            .expect("the client survived");
        assert_eq!(
            (c.name.as_str(), c.token_ttl, c.jwks_uri),
            ("from 0.1", 600, None)
        );
        assert_eq!(s.list_secrets("legacy").await.unwrap().len(), 1);
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM tessera_migrations ORDER BY version")
                .fetch_all(&s.pool)
                .await
                .unwrap();
        assert_eq!(
            versions,
            (1..=migrate::SQLITE.len() as i64).collect::<Vec<_>>()
        );
        // The change feed works on it.
        assert_eq!(s.changes_after(0).await.unwrap().changes.len(), 0);
    }
}
