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
    AuditAppender, BoxFuture, SamlLogin, SamlLoginWritten, SealedSpKey, Store, StoreError,
    StoreResult, StoredKey, UserFields, UserWrite,
};
use tessera_core::throttle::{AttemptOutcome, Reservation, ThrottlePolicy, ThrottleState};
use tessera_core::trace::Trace;

use crate::Durability;
use crate::hot::{FactsCache, OrgFacts, Persist, ThrottleMirror};
use crate::migrate;

mod cols;
mod grants;

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

/// The most events in one INSERT statement (17 parameters each, under SQLite's limit of
/// 32,766); larger batches take several statements in one transaction.
const AUDIT_CHUNK: usize = 64;

/// The multi-row INSERT for `rows` audit events.
fn audit_insert_sql(rows: usize) -> String {
    const COLS: &str = "(request_id, time_ms, org_id, kind, actor, client_id, subject, source_ip,
        outcome, reason, description, grant_type, scope, secret_id, secret_hint, trace, change)";
    const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    let mut sql = format!("INSERT INTO audit_events {COLS} VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(ROW);
    }
    sql
}

/// One audit column's value, for either driver.
enum Cell<'a> {
    Int(Option<i64>),
    Text(Option<Cow<'a, str>>),
}

/// An event's values in [`audit_insert_sql`]'s column order: the one place that order is
/// written for both appenders.
fn audit_row(ev: &AuditEvent) -> [Cell<'_>; 17] {
    use Cell::{Int, Text};
    fn text(s: &str) -> Cell<'_> {
        Text(Some(Cow::Borrowed(s)))
    }
    fn opt(s: &Option<String>) -> Cell<'_> {
        Text(s.as_deref().map(Cow::Borrowed))
    }
    [
        text(&ev.request_id),
        Int(Some(ev.time_ms)),
        Int(ev.org_id),
        Text(Some(Cow::Borrowed(ev.kind.as_str()))),
        opt(&ev.actor),
        opt(&ev.client_id),
        opt(&ev.subject),
        opt(&ev.source_ip),
        text(&ev.outcome),
        opt(&ev.reason),
        opt(&ev.description),
        opt(&ev.grant_type),
        opt(&ev.scope),
        opt(&ev.secret_id),
        opt(&ev.secret_hint),
        Text(Some(Cow::Owned(ev.trace.to_compact()))),
        Text(ev.change.as_ref().map(|c| Cow::Owned(to_json(c)))),
    ]
}

/// The audit trail's connection on a database file, owned by the audit writer's thread:
/// each batch is a few direct calls into SQLite. With full durability the connection
/// runs `synchronous=FULL`, so a commit returns once the WAL is on disk.
struct FileAppender {
    conn: rusqlite::Connection,
    gate: Arc<WriteGate>,
    /// [`audit_insert_sql`] for 1 to [`AUDIT_CHUNK`] rows, built once.
    sql: Vec<String>,
}

impl FileAppender {
    fn open(
        path: &std::path::Path,
        durability: Durability,
        gate: Arc<WriteGate>,
    ) -> StoreResult<Self> {
        use rusqlite::OpenFlags;
        let e = |e: rusqlite::Error| {
            StoreError::Backend(format!("cannot open the audit connection: {e}"))
        };
        let conn = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(e)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(e)?;
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync).map_err(e)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(e)?;
        // The commit that fills the WAL to 1000 pages (SQLite's default) copies them into
        // the database and fsyncs it, holding up every request waiting on its batch. At
        // 4000 pages those stalls were four times longer: p99 5.6 ms against 3.9 ms at
        // 1000, for the same throughput within noise (performance.md).
        conn.pragma_update(None, "wal_autocheckpoint", 1000)
            .map_err(e)?;
        conn.set_prepared_statement_cache_capacity(AUDIT_CHUNK + 4);
        Ok(Self {
            conn,
            gate,
            sql: (0..=AUDIT_CHUNK).map(audit_insert_sql).collect(),
        })
    }
}

impl AuditAppender for FileAppender {
    fn append(&mut self, events: &[AuditEvent]) -> StoreResult<()> {
        let e = |e: rusqlite::Error| StoreError::Backend(format!("audit append: {e}"));
        // This thread is outside the async runtime: it may block for its turn.
        let _turn = self.gate.blocking_lock();
        let tx = self.conn.transaction().map_err(e)?;
        for chunk in events.chunks(AUDIT_CHUNK) {
            let mut stmt = tx.prepare_cached(&self.sql[chunk.len()]).map_err(e)?;
            let cells = chunk.iter().flat_map(audit_row);
            for (i, cell) in cells.enumerate() {
                match cell {
                    Cell::Int(v) => stmt.raw_bind_parameter(i + 1, v),
                    Cell::Text(v) => stmt.raw_bind_parameter(i + 1, v.as_deref()),
                }
                .map_err(e)?;
            }
            stmt.raw_execute().map_err(e)?;
        }
        tx.commit().map_err(e)
    }
}

/// The audit trail of an in-memory database, which exists only inside the pool's one
/// connection: the writer's thread waits for the pool.
struct PoolAppender {
    pool: SqlitePool,
    gate: Arc<WriteGate>,
    runtime: tokio::runtime::Handle,
}

impl AuditAppender for PoolAppender {
    fn append(&mut self, events: &[AuditEvent]) -> StoreResult<()> {
        self.runtime.block_on(async {
            let _turn = self.gate.lock().await;
            let mut tx = self.pool.begin().await.map_err(be)?;
            for chunk in events.chunks(AUDIT_CHUNK) {
                let sql = audit_insert_sql(chunk.len());
                let mut q = sqlx::query(&sql);
                for cell in chunk.iter().flat_map(audit_row) {
                    q = match cell {
                        Cell::Int(v) => q.bind(v),
                        Cell::Text(v) => q.bind(v.map(Cow::into_owned)),
                    };
                }
                q.execute(&mut *tx).await.map_err(be)?;
            }
            tx.commit().await.map_err(be)
        })
    }
}

/// The result of an UPDATE of one user: not found when no row matched.
fn user_updated(rows: u64, id: &str) -> StoreResult<()> {
    if rows == 0 {
        return Err(StoreError::NotFound(format!("no user {id}")));
    }
    Ok(())
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

fn org_from(row: &SqliteRow) -> StoreResult<Org> {
    Ok(Org {
        id: get(row, "id")?,
        slug: OrgSlug::parse(&get::<String>(row, "slug")?).map_err(|e| StoreError::Backend(e.0))?,
        enabled: get(row, "enabled")?,
        sso_enforced: get(row, "sso_enforced")?,
        created_at: get(row, "created_at")?,
    })
}

fn user_from(row: &SqliteRow) -> StoreResult<User> {
    let user_type: String = get(row, "user_type")?;
    let state: String = get(row, "state")?;
    let by: Option<String> = get(row, "state_changed_by")?;
    Ok(User {
        id: get(row, "id")?,
        org_id: get(row, "org_id")?,
        user_type: from_json(&format!("\"{user_type}\""))?,
        username: get(row, "username")?,
        email: get(row, "email")?,
        display_name: get(row, "display_name")?,
        roles: from_json(&get::<String>(row, "roles")?)?,
        state: from_json(&format!("\"{state}\""))?,
        state_changed_by: by.map(|b| from_json(&b)).transpose()?,
        state_changed_at: get(row, "state_changed_at")?,
        locked_until: get(row, "locked_until")?,
        password_hash: get(row, "password_hash")?,
        created_at: get(row, "created_at")?,
        saml_name_id: get(row, "saml_name_id")?,
        failed_logins: get::<i64>(row, "failed_logins")?.clamp(0, u32::MAX as i64) as u32,
        last_password_login_at: get(row, "last_password_login_at")?,
    })
}

fn client_from(row: &SqliteRow) -> StoreResult<Client> {
    Ok(Client {
        client_id: ClientId::parse(&get::<String>(row, "client_id")?)
            .map_err(|e| StoreError::Backend(e.0))?,
        org_id: get(row, "org_id")?,
        name: get(row, "name")?,
        enabled: get(row, "enabled")?,
        grant_types: from_json(&get::<String>(row, "grant_types")?)?,
        scopes: from_json(&get::<String>(row, "scopes")?)?,
        redirect_uris: from_json(&get::<String>(row, "redirect_uris")?)?,
        auth_methods: from_json(&get::<String>(row, "auth_methods")?)?,
        ip_allowlist: from_json::<IpAllowList>(&get::<String>(row, "ip_allowlist")?)?,
        service_account_id: get(row, "service_account_id")?,
        token_ttl: get(row, "token_ttl")?,
        interactive: from_json(&get::<String>(row, "interactive")?)?,
        jwks: get::<Option<String>>(row, "jwks")?
            .map(|j| from_json(&j))
            .transpose()?,
        jwks_uri: get(row, "jwks_uri")?,
        created_at: get(row, "created_at")?,
    })
}

fn secret_from(row: &SqliteRow) -> StoreResult<StoredSecret> {
    let hash: Vec<u8> = get(row, "hash")?;
    Ok(StoredSecret {
        id: get(row, "id")?,
        client_id: ClientId::parse(&get::<String>(row, "client_id")?)
            .map_err(|e| StoreError::Backend(e.0))?,
        hash: hash
            .try_into()
            .map_err(|_| StoreError::Backend("a stored secret hash is not 32 bytes".into()))?,
        hint: get(row, "hint")?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
        revoked_at: get(row, "revoked_at")?,
        last_used_at: get(row, "last_used_at")?,
        last_used_from: get(row, "last_used_from")?,
    })
}

fn audit_from(row: &SqliteRow) -> StoreResult<AuditEvent> {
    let kind: String = get(row, "kind")?;
    let change: Option<String> = get(row, "change")?;
    Ok(AuditEvent {
        request_id: get(row, "request_id")?,
        time_ms: get(row, "time_ms")?,
        org_id: get(row, "org_id")?,
        kind: from_json::<AuditKind>(&format!("\"{kind}\""))?,
        actor: get(row, "actor")?,
        client_id: get(row, "client_id")?,
        subject: get(row, "subject")?,
        source_ip: get(row, "source_ip")?,
        outcome: get(row, "outcome")?,
        reason: get(row, "reason")?,
        description: get(row, "description")?,
        grant_type: get(row, "grant_type")?,
        scope: get(row, "scope")?,
        secret_id: get(row, "secret_id")?,
        secret_hint: get(row, "secret_hint")?,
        trace: Trace::from_stored(&get::<String>(row, "trace")?)
            .ok_or_else(|| StoreError::Backend("a stored trace is corrupt".into()))?,
        change: change.map(|c| from_json(&c)).transpose()?,
    })
}

fn type_str(t: UserType) -> &'static str {
    match t {
        UserType::Human => "human",
        UserType::Service => "service",
    }
}

fn state_str(s: UserState) -> &'static str {
    s.as_str()
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

    async fn facts(&self, client_id: &str, source_ip: &str) -> StoreResult<Facts> {
        let throttle = self.throttles.get(client_id, source_ip);
        let client = match self.facts_cache.get(client_id) {
            Some(f) => Some(f),
            None => {
                let generation = self.facts_cache.generation();
                let loaded = self.load_client_facts(client_id).await?.map(Arc::new);
                if let Some(f) = &loaded {
                    self.facts_cache.insert(client_id, f.clone(), generation);
                }
                loaded
            }
        };
        Ok(Facts {
            client,
            throttle,
            ..Facts::default()
        })
    }

    async fn load_client_facts(&self, client_id: &str) -> StoreResult<Option<ClientFacts>> {
        let Some(row) = sqlx::query(concat!(
            "SELECT ",
            cols::clients_cols!(),
            " FROM clients WHERE client_id = ?"
        ))
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(be)?
        else {
            return Ok(None);
        };
        let client = client_from(&row)?;
        let secrets = self.secrets(client_id).await?;
        let (org, known_scopes) = self.org_facts(client.org_id).await?;
        let service_account = match &client.service_account_id {
            Some(id) => self.user(client.org_id, id).await?,
            None => None,
        };
        Ok(Some(ClientFacts {
            client,
            secrets,
            org,
            service_account,
            known_scopes,
        }))
    }

    /// An org with its scope catalogue, from the cache when it has them: a cold start
    /// over many clients of one org then reads the org once, not once per client.
    async fn org_facts(&self, org_id: i64) -> StoreResult<OrgFacts> {
        if let Some(f) = self.facts_cache.get_org(org_id) {
            return Ok(f);
        }
        let generation = self.facts_cache.generation();
        let org = self
            .org(org_id)
            .await?
            .ok_or_else(|| StoreError::Backend("client without org".into()))?;
        let known_scopes =
            sqlx::query_scalar::<_, String>("SELECT name FROM scopes WHERE org_id = ?")
                .bind(org_id)
                .fetch_all(&self.pool)
                .await
                .map_err(be)?
                .into_iter()
                .filter_map(|n| ScopeName::parse(&n).ok())
                .collect();
        let facts: OrgFacts = (Arc::new(org), known_scopes);
        self.facts_cache
            .insert_org(org_id, facts.clone(), generation);
        Ok(facts)
    }

    async fn secrets(&self, client_id: &str) -> StoreResult<Vec<StoredSecret>> {
        sqlx::query(concat!(
            "SELECT ",
            cols::client_secrets_cols!(),
            " FROM client_secrets WHERE client_id = ? ORDER BY created_at, rowid"
        ))
        .bind(client_id)
        .fetch_all(&self.pool)
        .await
        .map_err(be)?
        .iter()
        .map(secret_from)
        .collect()
    }

    async fn org(&self, id: i64) -> StoreResult<Option<Org>> {
        sqlx::query(concat!(
            "SELECT ",
            cols::orgs_cols!(),
            " FROM orgs WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(be)?
        .as_ref()
        .map(org_from)
        .transpose()
    }

    async fn user(&self, org_id: i64, id: &str) -> StoreResult<Option<User>> {
        self.user_by(org_id, "id", id).await
    }

    /// The org's user whose `column` (`id` or `username`, both unique) is `value`.
    async fn user_by(
        &self,
        org_id: i64,
        column: &'static str,
        value: &str,
    ) -> StoreResult<Option<User>> {
        sqlx::query(&format!(
            concat!(
                "SELECT ",
                cols::users_cols!(),
                " FROM users WHERE org_id = ? AND {column} = ?"
            ),
            column = column
        ))
        .bind(org_id)
        .bind(value)
        .fetch_optional(&self.pool)
        .await
        .map_err(be)?
        .as_ref()
        .map(user_from)
        .transpose()
    }

    async fn insert_user(conn: &mut SqliteConnection, u: &User) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (id, org_id, user_type, username, email, roles, state, state_changed_by,
                state_changed_at, locked_until, password_hash, created_at, saml_name_id,
                failed_logins, last_password_login_at, display_name)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&u.id)
        .bind(u.org_id)
        .bind(type_str(u.user_type))
        .bind(&u.username)
        .bind(&u.email)
        .bind(to_json(&u.roles))
        .bind(state_str(u.state))
        .bind(u.state_changed_by.as_ref().map(to_json))
        .bind(u.state_changed_at)
        .bind(u.locked_until)
        .bind(&u.password_hash)
        .bind(u.created_at)
        .bind(&u.saml_name_id)
        .bind(i64::from(u.failed_logins))
        .bind(u.last_password_login_at)
        .bind(&u.display_name)
        .execute(conn)
        .await
        .map_err(|e| conflict_as(e, || format!("a user named '{}' already exists", u.username)))?;
        Ok(())
    }

    /// Writes what the IdP manages (email, display name, roles, SAML link) and nothing
    /// else, so a login never undoes a concurrent change of state, lock or password.
    async fn write_idp_fields(conn: &mut SqliteConnection, u: &User) -> StoreResult<()> {
        let r = sqlx::query(
            "UPDATE users SET email = ?, display_name = ?, roles = ?, saml_name_id = ?
                 WHERE org_id = ? AND id = ? AND user_type = 'human'",
        )
        .bind(&u.email)
        .bind(&u.display_name)
        .bind(to_json(&u.roles))
        .bind(&u.saml_name_id)
        .bind(u.org_id)
        .bind(&u.id)
        .execute(conn)
        .await
        .map_err(be)?;
        user_updated(r.rows_affected(), &u.id)
    }

    async fn insert_session(conn: &mut SqliteConnection, s: &Session) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, org_id, user_id, method, created_at, last_seen_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.id_hash)
        .bind(s.org_id)
        .bind(&s.user_id)
        .bind(&s.method)
        .bind(s.created_at)
        .bind(s.last_seen_at)
        .execute(conn)
        .await
        .map_err(be)?;
        Ok(())
    }

    /// Inserts a SAML response's identifiers (forgetting expired ones first); false when
    /// one was seen before, and the caller must roll back.
    async fn insert_replay_keys(
        conn: &mut SqliteConnection,
        org_id: i64,
        keys: &[(String, Timestamp)],
        now: Timestamp,
    ) -> StoreResult<bool> {
        sqlx::query("DELETE FROM saml_replay WHERE expires_at <= ?")
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(be)?;
        for (key, expires_at) in keys {
            // Kept at least a day: a response's own expiry can be short or absent.
            let keep = (*expires_at).max(now + 24 * 3600);
            let r = sqlx::query(
                "INSERT INTO saml_replay (org_id, key, expires_at) VALUES (?, ?, ?)
                 ON CONFLICT (org_id, key) DO NOTHING",
            )
            .bind(org_id)
            .bind(key)
            .bind(keep)
            .execute(&mut *conn)
            .await
            .map_err(be)?;
            if r.rows_affected() == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn insert_client(conn: &mut sqlx::SqliteConnection, c: &Client) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO clients (client_id, org_id, name, enabled, grant_types, scopes, redirect_uris,
                auth_methods, ip_allowlist, service_account_id, token_ttl, interactive, jwks, jwks_uri,
                created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(c.client_id.as_str())
        .bind(c.org_id)
        .bind(&c.name)
        .bind(c.enabled)
        .bind(to_json(&c.grant_types))
        .bind(to_json(&c.scopes))
        .bind(to_json(&c.redirect_uris))
        .bind(to_json(&c.auth_methods))
        .bind(to_json(&c.ip_allowlist))
        .bind(&c.service_account_id)
        .bind(c.token_ttl)
        .bind(to_json(&c.interactive))
        .bind(c.jwks.as_ref().map(to_json))
        .bind(&c.jwks_uri)
        .bind(c.created_at)
        .execute(&mut *conn)
        .await
        .map_err(be)?;
        Ok(())
    }

    async fn insert_secret(conn: &mut sqlx::SqliteConnection, s: &StoredSecret) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO client_secrets (id, client_id, hash, hint, created_at, expires_at, revoked_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.id)
        .bind(s.client_id.as_str())
        .bind(&s.hash[..])
        .bind(&s.hint)
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(s.revoked_at)
        .execute(&mut *conn)
        .await
        .map_err(be)?;
        Ok(())
    }

    async fn audit_list(&self, org_id: i64, f: &AuditFilter) -> StoreResult<Vec<AuditEvent>> {
        let mut sql = String::from(concat!(
            "SELECT ",
            cols::audit_events_cols!(),
            " FROM audit_events WHERE org_id = ?"
        ));
        let mut binds: Vec<String> = vec![];
        let mut ints: Vec<(&str, i64)> = vec![];
        if let Some(v) = f.since_ms {
            ints.push(("time_ms >= ?", v));
        }
        if let Some(v) = f.until_ms {
            ints.push(("time_ms < ?", v));
        }
        for (clause, _) in &ints {
            sql.push_str(" AND ");
            sql.push_str(clause);
        }
        for (col, val) in [
            ("client_id", &f.client_id),
            ("subject", &f.subject),
            ("outcome", &f.outcome),
            ("reason", &f.reason),
        ] {
            if let Some(v) = val {
                sql.push_str(&format!(" AND {col} = ?"));
                binds.push(v.clone());
            }
        }
        if let Some(k) = f.kind {
            sql.push_str(" AND kind = ?");
            binds.push(k.as_str().to_string());
        }
        if let Some(b) = &f.before {
            sql.push_str(" AND seq < (SELECT seq FROM audit_events WHERE request_id = ?)");
            binds.push(b.clone());
        }
        sql.push_str(" ORDER BY seq DESC LIMIT ?");
        let mut q = sqlx::query(&sql).bind(org_id);
        for (_, v) in &ints {
            q = q.bind(*v);
        }
        for b in &binds {
            q = q.bind(b);
        }
        q = q.bind(i64::from(f.limit.clamp(1, 1000)));
        q.fetch_all(&self.pool)
            .await
            .map_err(be)?
            .iter()
            .map(audit_from)
            .collect()
    }
}

impl Store for SqliteStore {
    fn is_empty(&self) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async move {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orgs")
                .fetch_one(&self.pool)
                .await
                .map_err(be)?;
            Ok(n == 0)
        })
    }

    fn create_org<'a>(
        &'a self,
        slug: &'a OrgSlug,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<Org>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let out = async {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO orgs (slug, enabled, sso_enforced, created_at) VALUES (?, 1, 0, ?) RETURNING id",
            )
            .bind(slug.as_str())
            .bind(now)
            .fetch_one(&mut *w)
            .await
            .map_err(|e| conflict_as(e, || format!("org '{slug}' already exists")))?;
            Ok(Org {
                id,
                slug: slug.clone(),
                enabled: true,
                sso_enforced: false,
                created_at: now,
            })
        }
            .await;
            self.committed(&mut w, out).await
        })
    }

    fn org_by_slug<'a>(&'a self, slug: &'a str) -> BoxFuture<'a, StoreResult<Option<Org>>> {
        Box::pin(async move {
            sqlx::query(concat!(
                "SELECT ",
                cols::orgs_cols!(),
                " FROM orgs WHERE slug = ?"
            ))
            .bind(slug)
            .fetch_optional(&self.pool)
            .await
            .map_err(be)?
            .as_ref()
            .map(org_from)
            .transpose()
        })
    }

    fn org_by_id(&self, id: i64) -> BoxFuture<'_, StoreResult<Option<Org>>> {
        Box::pin(self.org(id))
    }

    fn create_scope<'a>(&'a self, s: &'a Scope) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let out = async {
                sqlx::query("INSERT INTO scopes (org_id, name, description) VALUES (?, ?, ?)")
                    .bind(s.org_id)
                    .bind(s.name.as_str())
                    .bind(&s.description)
                    .execute(&mut *w)
                    .await
                    .map_err(|e| conflict_as(e, || format!("scope '{}' already exists", s.name)))?;
                Ok(())
            }
            .await;
            self.committed(&mut w, out).await
        })
    }

    fn list_scopes(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Vec<Scope>>> {
        Box::pin(async move {
            sqlx::query(concat!(
                "SELECT ",
                cols::scopes_cols!(),
                " FROM scopes WHERE org_id = ? ORDER BY name"
            ))
            .bind(org_id)
            .fetch_all(&self.pool)
            .await
            .map_err(be)?
            .iter()
            .map(|r| {
                Ok(Scope {
                    org_id: get(r, "org_id")?,
                    name: ScopeName::parse(&get::<String>(r, "name")?)
                        .map_err(|e| StoreError::Backend(e.0))?,
                    description: get(r, "description")?,
                })
            })
            .collect()
        })
    }

    fn create_user<'a>(&'a self, u: &'a User) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let out = Self::insert_user(&mut w, u).await;
            self.committed(&mut w, out).await
        })
    }

    fn get_user<'a>(
        &'a self,
        org_id: i64,
        id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        Box::pin(self.user(org_id, id))
    }

    fn list_users(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Vec<User>>> {
        Box::pin(async move {
            sqlx::query(concat!(
                "SELECT ",
                cols::users_cols!(),
                " FROM users WHERE org_id = ? ORDER BY created_at, rowid"
            ))
            .bind(org_id)
            .fetch_all(&self.pool)
            .await
            .map_err(be)?
            .iter()
            .map(user_from)
            .collect()
        })
    }

    fn update_user<'a>(
        &'a self,
        u: &'a User,
        f: UserFields,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let out = async {
                // One statement for every combination: each column keeps its stored value
                // unless its flag is set. The state is compared with the stored row's
                // (`User::effective_state`: a lock that has ended counts as active), so an
                // unlock racing a lock-out still unlocks.
                const STATE: &str = "(?7 AND (?8 = 'locked' OR ?8 != CASE
                    WHEN state = 'locked' AND locked_until IS NOT NULL AND locked_until <= ?14
                    THEN 'active' ELSE state END))";
                let sql = format!(
                    "UPDATE users SET
                        email = CASE WHEN ?1 THEN ?2 ELSE email END,
                        display_name = CASE WHEN ?3 THEN ?4 ELSE display_name END,
                        roles = CASE WHEN ?5 THEN ?6 ELSE roles END,
                        state = CASE WHEN {STATE} THEN ?8 ELSE state END,
                        state_changed_by = CASE WHEN {STATE} THEN ?9 ELSE state_changed_by END,
                        state_changed_at = CASE WHEN {STATE} THEN ?10 ELSE state_changed_at END,
                        locked_until = CASE WHEN {STATE} THEN ?11 ELSE locked_until END,
                        failed_logins = CASE WHEN {STATE} AND ?8 = 'active' THEN 0 ELSE failed_logins END
                     WHERE org_id = ?12 AND id = ?13"
                );
                let r = sqlx::query(&sql)
                .bind(f.email)
                .bind(&u.email)
                .bind(f.display_name)
                .bind(&u.display_name)
                .bind(f.roles)
                .bind(to_json(&u.roles))
                .bind(f.state)
                .bind(state_str(u.state))
                .bind(u.state_changed_by.as_ref().map(to_json))
                .bind(u.state_changed_at)
                .bind(u.locked_until)
                .bind(u.org_id)
                .bind(&u.id)
                .bind(now)
                .execute(&mut *w)
                .await
                .map_err(be)?;
                user_updated(r.rows_affected(), &u.id)
            }
            .await;
            self.committed(&mut w, out).await
        })
    }

    fn user_by_username<'a>(
        &'a self,
        org_id: i64,
        username: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        Box::pin(self.user_by(org_id, "username", username))
    }

    fn record_login<'a>(
        &'a self,
        update: &'a LoginUpdate,
        client_id: Option<&'a str>,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            match update {
                LoginUpdate::Failed { user_id } => {
                    // Counted in SQL, so concurrent failures are never lost.
                    let mut w = self.writer().await?;
                    sqlx::query("UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ?")
                        .bind(user_id)
                        .execute(&mut *w)
                        .await
                        .map_err(be)?;
                }
                LoginUpdate::Succeeded { user_id } => {
                    let mut w = self.writer().await?;
                    let mut tx = w.begin().await.map_err(be)?;
                    sqlx::query(
                        "UPDATE users SET failed_logins = 0, last_password_login_at = ? WHERE id = ?",
                    )
                    .bind(now)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(be)?;
                    if let Some(client_id) = client_id {
                        sqlx::query(
                            "INSERT INTO password_grant_uses (client_id, org_id, last_used_at)
                             SELECT client_id, org_id, ? FROM clients WHERE client_id = ?
                             ON CONFLICT (client_id) DO UPDATE SET last_used_at = excluded.last_used_at",
                        )
                        .bind(now)
                        .bind(client_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(be)?;
                    }
                    tx.commit().await.map_err(be)?;
                }
            }
            Ok(())
        })
    }

    fn password_grant_uses(
        &self,
        org_id: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<(String, Timestamp)>>> {
        Box::pin(async move {
            sqlx::query("SELECT client_id, last_used_at FROM password_grant_uses WHERE org_id = ?")
                .bind(org_id)
                .fetch_all(&self.pool)
                .await
                .map_err(be)?
                .iter()
                .map(|r| Ok((get(r, "client_id")?, get(r, "last_used_at")?)))
                .collect()
        })
    }

    fn sso_config(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Option<SsoConfig>>> {
        Box::pin(async move {
            let row: Option<String> =
                sqlx::query_scalar("SELECT config FROM sso_configs WHERE org_id = ?")
                    .bind(org_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(be)?;
            row.map(|c| from_json(&c)).transpose()
        })
    }

    fn put_sso_config<'a>(
        &'a self,
        org_id: i64,
        config: &'a SsoConfig,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            sqlx::query(
                "INSERT INTO sso_configs (org_id, config, updated_at) VALUES (?, ?, ?)
                 ON CONFLICT (org_id) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
            )
            .bind(org_id)
            .bind(to_json(config))
            .bind(now)
            .execute(&mut *w)
            .await
            .map_err(be)?;
            Ok(())
        })
    }

    fn set_sso_enforced(&self, org_id: i64, enforced: bool) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let out = sqlx::query("UPDATE orgs SET sso_enforced = ? WHERE id = ?")
                .bind(enforced)
                .bind(org_id)
                .execute(&mut *w)
                .await
                .map_err(be)
                .and_then(|r| {
                    if r.rows_affected() == 0 {
                        Err(StoreError::NotFound(format!("no org {org_id}")))
                    } else {
                        Ok(())
                    }
                });
            self.committed(&mut w, out).await
        })
    }

    fn put_saml_pending<'a>(
        &'a self,
        p: &'a SamlPending,
        source: &'a str,
        per_source: u32,
        per_org: u32,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let mut tx = w.begin().await.map_err(be)?;
            // Expired logins are forgotten as new ones start.
            let now = p.expires_at - tessera_core::sso::PENDING_SECONDS;
            sqlx::query("DELETE FROM saml_pending WHERE expires_at <= ?")
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(be)?;
            // Counted inside the write transaction: concurrent starts cannot overshoot.
            let (mine, org): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM saml_pending WHERE source_ip = ?),
                        (SELECT COUNT(*) FROM saml_pending WHERE org_id = ?)",
            )
            .bind(source)
            .bind(p.org_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(be)?;
            if mine >= i64::from(per_source) || org >= i64::from(per_org) {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO saml_pending (handle, org_id, request_id, return_to, expires_at, source_ip)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&p.handle)
            .bind(p.org_id)
            .bind(&p.request_id)
            .bind(&p.return_to)
            .bind(p.expires_at)
            .bind(source)
            .execute(&mut *tx)
            .await
            .map_err(be)?;
            tx.commit().await.map_err(be)?;
            Ok(true)
        })
    }

    fn take_saml_pending<'a>(
        &'a self,
        handle: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<Option<SamlPending>>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            // DELETE ... RETURNING: of two concurrent uses, only one gets the row.
            let row = sqlx::query("DELETE FROM saml_pending WHERE handle = ? RETURNING *")
                .bind(handle)
                .fetch_optional(&mut *w)
                .await
                .map_err(be)?;
            let Some(r) = row else { return Ok(None) };
            let p = SamlPending {
                handle: get(&r, "handle")?,
                org_id: get(&r, "org_id")?,
                request_id: get(&r, "request_id")?,
                return_to: get(&r, "return_to")?,
                expires_at: get(&r, "expires_at")?,
            };
            Ok((p.expires_at > now).then_some(p))
        })
    }

    fn remember_saml_ids<'a>(
        &'a self,
        org_id: i64,
        keys: &'a [(String, Timestamp)],
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let mut tx = w.begin().await.map_err(be)?;
            if !Self::insert_replay_keys(&mut tx, org_id, keys, now).await? {
                // Rolled back before the gate opens for the next writer.
                tx.rollback().await.map_err(be)?;
                return Ok(false);
            }
            tx.commit().await.map_err(be)?;
            Ok(true)
        })
    }

    fn finish_saml_login<'a>(
        &'a self,
        login: &'a SamlLogin<'a>,
    ) -> BoxFuture<'a, StoreResult<SamlLoginWritten>> {
        // Only humans log in through an IdP, and no cached fact names a human (client facts
        // name service accounts): the token path's cache stays, and no version bump (one
        // more synced write per login) is needed.
        Box::pin(async move {
            let u = login.user;
            if u.user_type != UserType::Human {
                return Err(StoreError::Conflict(format!(
                    "user {} is a service account: the IdP manages humans only",
                    u.id
                )));
            }
            let mut w = self.writer().await?;
            let mut tx = w.begin().await.map_err(be)?;
            if !Self::insert_replay_keys(&mut tx, u.org_id, login.replay_keys, login.now).await? {
                tx.rollback().await.map_err(be)?;
                return Ok(SamlLoginWritten::Replayed);
            }
            // The write lock is held from the first statement: the user read here stays
            // as it is until the commit, on this node and every other.
            if let Some(planned) = login.planned_from {
                let now = sqlx::query(concat!(
                    "SELECT ",
                    cols::users_cols!(),
                    " FROM users WHERE org_id = ? AND id = ?"
                ))
                .bind(planned.org_id)
                .bind(&planned.id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(be)?
                .as_ref()
                .map(user_from)
                .transpose()?;
                if now.as_ref() != Some(planned) {
                    tx.rollback().await.map_err(be)?;
                    return Ok(SamlLoginWritten::Stale);
                }
            }
            match login.user_write {
                UserWrite::Unchanged => {}
                UserWrite::FromIdp => Self::write_idp_fields(&mut tx, u).await?,
                UserWrite::Create => Self::insert_user(&mut tx, u).await?,
            }
            if let Some(old) = login.old_session {
                sqlx::query("DELETE FROM sessions WHERE id_hash = ?")
                    .bind(old)
                    .execute(&mut *tx)
                    .await
                    .map_err(be)?;
            }
            Self::insert_session(&mut tx, login.session).await?;
            tx.commit().await.map_err(be)?;
            Ok(SamlLoginWritten::Done)
        })
    }

    fn user_by_saml_link<'a>(
        &'a self,
        org_id: i64,
        name_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        Box::pin(self.user_by(org_id, "saml_name_id", name_id))
    }

    fn user_by_email<'a>(
        &'a self,
        org_id: i64,
        email: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        Box::pin(async move {
            self.user_by(org_id, "lower(email)", &email.to_lowercase())
                .await
        })
    }

    fn create_session<'a>(&'a self, s: &'a Session) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            Self::insert_session(&mut w, s).await
        })
    }

    fn session<'a>(&'a self, id_hash: &'a [u8]) -> BoxFuture<'a, StoreResult<Option<Session>>> {
        Box::pin(async move {
            let row = sqlx::query(concat!(
                "SELECT ",
                cols::sessions_cols!(),
                " FROM sessions WHERE id_hash = ?"
            ))
            .bind(id_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(be)?;
            row.map(|r| {
                Ok(Session {
                    id_hash: get(&r, "id_hash")?,
                    org_id: get(&r, "org_id")?,
                    user_id: get(&r, "user_id")?,
                    method: get(&r, "method")?,
                    created_at: get(&r, "created_at")?,
                    last_seen_at: get(&r, "last_seen_at")?,
                })
            })
            .transpose()
        })
    }

    fn touch_session<'a>(
        &'a self,
        id_hash: &'a [u8],
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            sqlx::query("UPDATE sessions SET last_seen_at = ? WHERE id_hash = ?")
                .bind(now)
                .bind(id_hash)
                .execute(&mut *w)
                .await
                .map_err(be)?;
            Ok(())
        })
    }

    fn delete_session<'a>(&'a self, id_hash: &'a [u8]) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            sqlx::query("DELETE FROM sessions WHERE id_hash = ?")
                .bind(id_hash)
                .execute(&mut *w)
                .await
                .map_err(be)?;
            Ok(())
        })
    }

    fn prune_sessions(
        &self,
        idle_before: Timestamp,
        created_before: Timestamp,
    ) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let r = sqlx::query("DELETE FROM sessions WHERE last_seen_at <= ? OR created_at <= ?")
                .bind(idle_before)
                .bind(created_before)
                .execute(&mut *w)
                .await
                .map_err(be)?;
            Ok(r.rows_affected())
        })
    }

    fn create_client<'a>(
        &'a self,
        c: &'a Client,
        s: Option<&'a StoredSecret>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let out = async {
                let mut tx = w.begin().await.map_err(be)?;
                Self::insert_client(&mut tx, c).await.map_err(|e| match e {
                    StoreError::Conflict(_) => StoreError::Conflict(format!(
                        "a client with client_id '{}' already exists",
                        c.client_id
                    )),
                    other => other,
                })?;
                if let Some(s) = s {
                    Self::insert_secret(&mut tx, s).await?;
                }
                tx.commit().await.map_err(be)
            }
            .await;
            self.committed(&mut w, out).await
        })
    }

    fn get_client<'a>(
        &'a self,
        org_id: i64,
        client_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<Client>>> {
        Box::pin(async move {
            sqlx::query(concat!(
                "SELECT ",
                cols::clients_cols!(),
                " FROM clients WHERE org_id = ? AND client_id = ?"
            ))
            .bind(org_id)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(be)?
            .as_ref()
            .map(client_from)
            .transpose()
        })
    }

    fn list_clients(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Vec<Client>>> {
        Box::pin(async move {
            sqlx::query(concat!(
                "SELECT ",
                cols::clients_cols!(),
                " FROM clients WHERE org_id = ? ORDER BY created_at, rowid"
            ))
            .bind(org_id)
            .fetch_all(&self.pool)
            .await
            .map_err(be)?
            .iter()
            .map(client_from)
            .collect()
        })
    }

    fn update_client<'a>(&'a self, c: &'a Client) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let out = async {
            let r = sqlx::query(
                "UPDATE clients SET name = ?, enabled = ?, grant_types = ?, scopes = ?, redirect_uris = ?,
                    auth_methods = ?, ip_allowlist = ?, service_account_id = ?, token_ttl = ?,
                    interactive = ?, jwks = ?, jwks_uri = ?
                 WHERE org_id = ? AND client_id = ?",
            )
            .bind(&c.name)
            .bind(c.enabled)
            .bind(to_json(&c.grant_types))
            .bind(to_json(&c.scopes))
            .bind(to_json(&c.redirect_uris))
            .bind(to_json(&c.auth_methods))
            .bind(to_json(&c.ip_allowlist))
            .bind(&c.service_account_id)
            .bind(c.token_ttl)
            .bind(to_json(&c.interactive))
            .bind(c.jwks.as_ref().map(to_json))
            .bind(&c.jwks_uri)
            .bind(c.org_id)
            .bind(c.client_id.as_str())
            .execute(&mut *w)
            .await
            .map_err(be)?;
            if r.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("no client '{}'", c.client_id)));
            }
            Ok(())
        }
            .await;
            self.committed(&mut w, out).await
        })
    }

    fn delete_client<'a>(
        &'a self,
        org_id: i64,
        client_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let out = async {
                let mut tx = w.begin().await.map_err(be)?;
                let r = sqlx::query("DELETE FROM clients WHERE org_id = ? AND client_id = ?")
                    .bind(org_id)
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(be)?;
                if r.rows_affected() > 0 {
                    sqlx::query("DELETE FROM auth_failures WHERE client_id = ?")
                        .bind(client_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(be)?;
                }
                tx.commit().await.map_err(be)?;
                self.throttles.forget_client(client_id);
                Ok(r.rows_affected() > 0)
            }
            .await;
            self.committed(&mut w, out).await
        })
    }

    fn list_secrets<'a>(
        &'a self,
        client_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredSecret>>> {
        Box::pin(self.secrets(client_id))
    }

    fn rotate_secret<'a>(
        &'a self,
        new: &'a StoredSecret,
        old_expire_at: Timestamp,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let out = async {
            let mut tx = w.begin().await.map_err(be)?;
            // Take the write lock first, so two rotations cannot interleave.
            sqlx::query("UPDATE clients SET client_id = client_id WHERE client_id = ?")
                .bind(new.client_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(be)?;
            let active: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM client_secrets WHERE client_id = ? AND revoked_at IS NULL
                   AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at",
            )
            .bind(new.client_id.as_str())
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(be)?;
            if active.len() >= 2 {
                return Err(StoreError::Conflict(format!(
                    "client '{}' already has two active secrets ({}); revoke one or wait for its grace period to end",
                    new.client_id,
                    active.join(", ")
                )));
            }
            sqlx::query(
                "UPDATE client_secrets SET expires_at = ? WHERE client_id = ? AND revoked_at IS NULL
                   AND (expires_at IS NULL OR expires_at > ?)",
            )
            .bind(old_expire_at)
            .bind(new.client_id.as_str())
            .bind(old_expire_at)
            .execute(&mut *tx)
            .await
            .map_err(be)?;
            Self::insert_secret(&mut tx, new).await?;
            tx.commit().await.map_err(be)
        }
            .await;
            self.committed(&mut w, out).await
        })
    }

    fn revoke_secret<'a>(
        &'a self,
        client_id: &'a str,
        secret_id: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let out = async {
            let r = sqlx::query(
                "UPDATE client_secrets SET revoked_at = ? WHERE client_id = ? AND id = ? AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(client_id)
            .bind(secret_id)
            .execute(&mut *w)
            .await
            .map_err(be)?;
            Ok(r.rows_affected() > 0)
        }
            .await;
            self.committed(&mut w, out).await
        })
    }

    fn token_facts<'a>(
        &'a self,
        client_id: &'a str,
        source_ip: &'a str,
    ) -> BoxFuture<'a, StoreResult<Facts>> {
        Box::pin(self.facts(client_id, source_ip))
    }

    fn reserve_attempt(
        &self,
        key: &str,
        source: &str,
        policy: &ThrottlePolicy,
        now: Timestamp,
    ) -> Reservation {
        self.throttles.reserve(key, source, policy, now)
    }

    fn settle_attempt<'a>(
        &'a self,
        key: &'a str,
        source: &'a str,
        outcome: AttemptOutcome,
        policy: &ThrottlePolicy,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        // The node-local part now, before the future is polled (see the trait).
        let persist = self
            .throttles
            .settle(key, source, Some(outcome), policy, now);
        let policy = *policy;
        Box::pin(async move {
            match persist {
                Persist::Nothing => Ok(()),
                Persist::Clear => {
                    let mut w = self.writer().await?;
                    sqlx::query("DELETE FROM auth_failures WHERE client_id = ? AND source_ip = ?")
                        .bind(key)
                        .bind(source)
                        .execute(&mut *w)
                        .await
                        .map_err(be)?;
                    Ok(())
                }
                Persist::Failure => {
                    // One statement counts the failure against the stored row, so
                    // failures recorded by several nodes add up instead of overwriting
                    // each other; the block is the policy's, computed in SQL from the
                    // new count (see `ThrottlePolicy::after_failure`).
                    let first = policy.after_failure(&ThrottleState::default(), now);
                    let mut w = self.writer().await?;
                    let row = sqlx::query(
                        "INSERT INTO auth_failures (client_id, source_ip, failures, last_failure, blocked_until)
                         VALUES (?1, ?2, 1, ?3, ?4)
                         ON CONFLICT (client_id, source_ip) DO UPDATE SET
                           failures = CASE WHEN ?3 - last_failure > ?5 THEN 1 ELSE failures + 1 END,
                           last_failure = ?3,
                           blocked_until = CASE
                             WHEN (CASE WHEN ?3 - last_failure > ?5 THEN 1 ELSE failures + 1 END) > ?6
                             THEN ?3 + MIN(?7 << MIN((CASE WHEN ?3 - last_failure > ?5 THEN 1 ELSE failures + 1 END) - ?6 - 1, 30), ?8)
                             ELSE NULL END
                         RETURNING failures, last_failure, blocked_until",
                    )
                    .bind(key)
                    .bind(source)
                    .bind(now)
                    .bind(first.blocked_until)
                    .bind(policy.window)
                    .bind(i64::from(policy.free_failures))
                    .bind(policy.base_delay)
                    .bind(policy.max_delay)
                    .fetch_one(&mut *w)
                    .await
                    .map_err(be)?;
                    self.throttles.learn(
                        key,
                        source,
                        ThrottleState {
                            failures: get::<i64>(&row, "failures")? as u32,
                            last_failure: get(&row, "last_failure")?,
                            blocked_until: get(&row, "blocked_until")?,
                        },
                    );
                    Ok(())
                }
            }
        })
    }

    fn release_attempt(&self, key: &str, source: &str) {
        self.throttles.release(key, source);
    }

    fn sync(&self, window: i64) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.sync_now(window))
    }

    fn prune_throttle(&self, before: Timestamp, now: Timestamp) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let r = sqlx::query(
                "DELETE FROM auth_failures WHERE last_failure < ? AND (blocked_until IS NULL OR blocked_until <= ?)",
            )
            .bind(before)
            .bind(now)
            .execute(&mut *w)
            .await
            .map_err(be)?;
            Ok(r.rows_affected())
        })
    }

    fn audit_appender(&self) -> StoreResult<Box<dyn AuditAppender>> {
        match &self.file {
            Some(path) => Ok(Box::new(FileAppender::open(
                path,
                self.durability,
                self.gate.clone(),
            )?)),
            None => Ok(Box::new(PoolAppender {
                pool: self.pool.clone(),
                gate: self.gate.clone(),
                runtime: tokio::runtime::Handle::try_current().map_err(|e| {
                    StoreError::Backend(format!("an in-memory store needs a runtime: {e}"))
                })?,
            })),
        }
    }

    fn saml_sp_key(&self) -> BoxFuture<'_, StoreResult<Option<SealedSpKey>>> {
        Box::pin(async move {
            sqlx::query_as("SELECT sealed, certificate FROM saml_sp_key WHERE id = 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(be)
        })
    }

    fn init_saml_sp_key<'a>(
        &'a self,
        sealed: &'a [u8],
        certificate: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<SealedSpKey>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            sqlx::query(
                "INSERT INTO saml_sp_key (id, sealed, certificate, created_at) VALUES (1, ?, ?, ?)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(sealed)
            .bind(certificate)
            .bind(now)
            .execute(&mut *w)
            .await
            .map_err(be)?;
            drop(w);
            self.saml_sp_key()
                .await?
                .ok_or_else(|| StoreError::Backend("the SAML SP key vanished".into()))
        })
    }

    fn get_audit_event<'a>(
        &'a self,
        org_id: i64,
        request_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<AuditEvent>>> {
        Box::pin(async move {
            sqlx::query(concat!(
                "SELECT ",
                cols::audit_events_cols!(),
                " FROM audit_events WHERE org_id = ? AND request_id = ?"
            ))
            .bind(org_id)
            .bind(request_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(be)?
            .as_ref()
            .map(audit_from)
            .transpose()
        })
    }

    fn list_audit_events<'a>(
        &'a self,
        org_id: i64,
        filter: &'a AuditFilter,
    ) -> BoxFuture<'a, StoreResult<Vec<AuditEvent>>> {
        Box::pin(self.audit_list(org_id, filter))
    }

    fn signing_keys(&self) -> BoxFuture<'_, StoreResult<Vec<StoredKey>>> {
        Box::pin(async move {
            sqlx::query(concat!(
                "SELECT ",
                cols::signing_keys_cols!(),
                " FROM signing_keys ORDER BY created_at, rowid"
            ))
            .fetch_all(&self.pool)
            .await
            .map_err(be)?
            .iter()
            .map(|r| {
                Ok(StoredKey {
                    kid: get(r, "kid")?,
                    alg: get(r, "alg")?,
                    sealed_private_key: get(r, "sealed")?,
                    created_at: get(r, "created_at")?,
                    retired_at: get(r, "retired_at")?,
                    remove_after: get(r, "remove_after")?,
                    purpose: get(r, "purpose")?,
                })
            })
            .collect()
        })
    }

    fn add_signing_key<'a>(
        &'a self,
        k: &'a StoredKey,
        old_remove_after: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let mut tx = w.begin().await.map_err(be)?;
            sqlx::query(
                "UPDATE signing_keys SET retired_at = ?, remove_after = ?
                 WHERE retired_at IS NULL AND purpose = ?",
            )
            .bind(k.created_at)
            .bind(old_remove_after)
            .bind(&k.purpose)
            .execute(&mut *tx)
            .await
            .map_err(be)?;
            sqlx::query(
                "INSERT INTO signing_keys (kid, alg, sealed, created_at, retired_at, remove_after, purpose)
                 VALUES (?, ?, ?, ?, NULL, NULL, ?)",
            )
            .bind(&k.kid)
            .bind(&k.alg)
            .bind(&k.sealed_private_key)
            .bind(k.created_at)
            .bind(&k.purpose)
            .execute(&mut *tx)
            .await
            .map_err(be)?;
            tx.commit().await.map_err(be)
        })
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
