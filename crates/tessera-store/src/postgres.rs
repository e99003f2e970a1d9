//! The PostgreSQL implementation of the aggregates and of [`Backend`]: a bounded pool
//! shared by every request, transactions where SQLite's module has them, and nothing a
//! node keeps for itself (the cache layer in front holds the node-local copies; the
//! change feed tells every node what to forget). One module per aggregate, as on SQLite.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres};
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
use tokio::sync::Notify;

use crate::backend::{Backend, Change, ClientParts, Feed, OrgParts, ThrottleRecord};
use crate::cols;
use crate::migrate;
use crate::rows::{
    audit_from, client_from, code_from, from_json, get, grant_from, org_from, secret_from,
    session_from, to_json, user_from,
};

mod audit;
mod clients;
mod grants;
mod keys;
mod orgs;
mod scim;
mod sso;
mod throttle;
mod users;

/// Tessera's store on a PostgreSQL database.
pub struct PgStore {
    pool: PgPool,
    audit_batches_in_flight: usize,
    /// Woken by a NOTIFY on [`CHANGES_CHANNEL`] (see [`listen`]).
    signal: Arc<Notify>,
}

/// The channel each write that records changes notifies, at its commit.
const CHANGES_CHANNEL: &str = "tessera_changes";

/// Listens on [`CHANGES_CHANNEL`] with a connection of the pool's, waking `signal` on
/// every notification and after every (re)connection (notifications sent while it was
/// away are lost; the feed still has them). Ends once the store is gone.
fn listen(pool: PgPool, signal: Weak<Notify>) {
    tokio::spawn(async move {
        loop {
            if let Ok(mut listener) = PgListener::connect_with(&pool).await
                && listener.listen(CHANGES_CHANNEL).await.is_ok()
            {
                loop {
                    let Some(s) = signal.upgrade() else { return };
                    s.notify_one();
                    drop(s);
                    if listener.recv().await.is_err() {
                        break;
                    }
                }
            }
            if signal.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// How the pool is sized and bounded (docs/operations.md, "Several nodes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgPoolSettings {
    /// Connections this node opens at most.
    pub max_connections: u32,
    /// The longest a request waits for a connection, or for a new one to open, before it
    /// fails (and the caller answers 503): a database that is down fails fast.
    pub acquire_timeout: Duration,
    /// Audit batches committing at once (see `AuditStore::audit_batches_in_flight`).
    /// One by default: on the 2-core machine of bench/, with PostgreSQL on the same
    /// cores, three in flight made batches smaller and cost PostgreSQL twice the CPU per
    /// token (docs/performance.md); with the database on a host of its own, where a
    /// commit's wait is mostly the network's and the disk's, more may pay.
    pub audit_batches_in_flight: usize,
}

impl Default for PgPoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            audit_batches_in_flight: 1,
        }
    }
}

fn be(e: sqlx::Error) -> StoreError {
    if let Some(db) = e.as_database_error()
        && db.is_unique_violation()
    {
        return StoreError::Conflict(db.message().to_string());
    }
    StoreError::Backend(e.to_string())
}

/// Maps a uniqueness violation to a conflict that names the thing; other errors as usual.
fn conflict_as(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match be(e) {
        StoreError::Conflict(_) => StoreError::Conflict(what()),
        other => other,
    }
}

/// `?` placeholders, in order, as PostgreSQL's `$1`, `$2`…: for the statements built at
/// run time (the audit trail's multi-row insert and its filtered list).
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// How far back a read of the change feed looks besides what it has not seen: positions
/// come from a sequence, so a transaction that took a lower one can commit after a read
/// has passed it. Writes that record changes are short; seconds are plenty.
const FEED_LOOKBACK_SECONDS: i64 = 10;

/// How long the change feed keeps an entry, in seconds.
const FEED_KEPT_SECONDS: i64 = 3_600;

impl PgStore {
    /// Connects to the PostgreSQL database at `url` (`postgres://…`; TLS by its
    /// `sslmode`) and migrates it; several nodes may do so at once.
    pub async fn open(url: &str, settings: PgPoolSettings) -> StoreResult<Self> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("bad PostgreSQL URL: {e}")))?
            .application_name("tessera");
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(1)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Backend(format!("cannot connect to PostgreSQL: {e}")))?;
        migrate::run_postgres(&pool, migrate::POSTGRES).await?;
        let signal = Arc::new(Notify::new());
        listen(pool.clone(), Arc::downgrade(&signal));
        Ok(Self {
            pool,
            signal,
            audit_batches_in_flight: settings.audit_batches_in_flight.max(1),
        })
    }

    /// A connection to write with. PostgreSQL takes concurrent writers itself: unlike
    /// SQLite's module there is no write gate, only the pool's bound.
    async fn writer(&self) -> StoreResult<PoolConnection<Postgres>> {
        self.pool.acquire().await.map_err(be)
    }

    /// Records what a write changed in the change feed, and forgets entries older than
    /// [`FEED_KEPT_SECONDS`].
    async fn changed(&self, w: &mut PgConnection, changes: &[Change]) -> StoreResult<()> {
        // Times from the database's clock, as the readers' look back is: the nodes'
        // clocks play no part.
        for c in changes {
            let (kind, key) = c.to_row();
            sqlx::query(
                "INSERT INTO tessera_changes (kind, key, at)
                 VALUES ($1, $2, extract(epoch from clock_timestamp())::bigint)",
            )
            .bind(kind)
            .bind(key)
            .execute(&mut *w)
            .await
            .map_err(be)?;
        }
        if !changes.is_empty() {
            // Delivered at the commit, to every node listening (this one included).
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANGES_CHANNEL)
                .execute(&mut *w)
                .await
                .map_err(be)?;
        }
        sqlx::query(
            "DELETE FROM tessera_changes WHERE at < extract(epoch from clock_timestamp())::bigint - $1",
        )
        .bind(FEED_KEPT_SECONDS)
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
        mut tx: sqlx::Transaction<'static, Postgres>,
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

impl Backend for PgStore {
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
            let (head, first): (i64, Option<i64>) =
                sqlx::query_as("SELECT COALESCE(MAX(seq), 0), MIN(seq) FROM tessera_changes")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(be)?;
            if after == i64::MAX {
                return Ok(Feed {
                    head,
                    ..Feed::default()
                });
            }
            let rows = sqlx::query(
                "SELECT seq, kind, key FROM tessera_changes
                 WHERE seq > $1 OR at >= extract(epoch from clock_timestamp())::bigint - $2
                 ORDER BY seq",
            )
            .bind(after)
            .bind(FEED_LOOKBACK_SECONDS)
            .fetch_all(&self.pool)
            .await
            .map_err(be)?;
            // Entries past `after` were forgotten if the oldest one kept is further on.
            let mut feed = Feed {
                head: head.max(after),
                gap: first.is_some_and(|f| f > after + 1) && after < head,
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

    fn change_signal(&self) -> Option<Arc<Notify>> {
        Some(self.signal.clone())
    }
}
