//! The audit trail on SQLite: its appenders (a connection of its own, group commits)
//! and its queries.

use super::*;

/// The most events in one INSERT statement (17 parameters each, under SQLite's limit of
/// 32,766); larger batches take several statements in one transaction.
pub(super) const AUDIT_CHUNK: usize = 64;

/// The multi-row INSERT for `rows` audit events.
pub(super) fn audit_insert_sql(rows: usize) -> String {
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

/// A secret's last use, once per secret per batch ([`crate::rows::secret_last_uses`]);
/// never moved back by a batch that commits after a later one.
const SECRET_LAST_USE: &str = "UPDATE client_secrets SET last_used_at = ?1, last_used_from = ?2
     WHERE id = ?3 AND (last_used_at IS NULL OR last_used_at <= ?1)";

/// The audit trail's connection on a database file, owned by the audit writer's thread:
/// each batch is a few direct calls into SQLite. With full durability the connection
/// runs `synchronous=FULL`, so a commit returns once the WAL is on disk.
pub(super) struct FileAppender {
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
            let cells = chunk.iter().flat_map(crate::rows::audit_row);
            for (i, cell) in cells.enumerate() {
                match cell {
                    crate::rows::Cell::Int(v) => stmt.raw_bind_parameter(i + 1, v),
                    crate::rows::Cell::Text(v) => stmt.raw_bind_parameter(i + 1, v.as_deref()),
                }
                .map_err(e)?;
            }
            stmt.raw_execute().map_err(e)?;
        }
        for (id, at, source) in crate::rows::secret_last_uses(events) {
            tx.prepare_cached(SECRET_LAST_USE)
                .and_then(|mut stmt| stmt.execute(rusqlite::params![at, source, id]))
                .map_err(e)?;
        }
        tx.commit().map_err(e)
    }
}

/// The audit trail of an in-memory database, which exists only inside the pool's one
/// connection: the writer's thread waits for the pool.
pub(super) struct PoolAppender {
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
                for cell in chunk.iter().flat_map(crate::rows::audit_row) {
                    q = match cell {
                        crate::rows::Cell::Int(v) => q.bind(v),
                        crate::rows::Cell::Text(v) => q.bind(v.map(Cow::into_owned)),
                    };
                }
                q.execute(&mut *tx).await.map_err(be)?;
            }
            for (id, at, source) in crate::rows::secret_last_uses(events) {
                sqlx::query(SECRET_LAST_USE)
                    .bind(at)
                    .bind(source)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(be)?;
            }
            tx.commit().await.map_err(be)
        })
    }
}

impl SqliteStore {
    pub(super) async fn audit_list(
        &self,
        org_id: i64,
        f: &AuditFilter,
    ) -> StoreResult<Vec<AuditEvent>> {
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

impl AuditStore for SqliteStore {
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
}
