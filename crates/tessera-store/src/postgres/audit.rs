//! The audit trail on PostgreSQL: its appender (group commits of multi-row inserts) and
//! its queries.

use super::*;

/// The most events in one INSERT statement (17 parameters each, well under
/// PostgreSQL's 65,535); larger batches take several statements in one transaction.
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
    numbered(&sql)
}

/// The audit trail on PostgreSQL, used from the audit writer's thread: each batch is one
/// transaction of multi-row inserts on a pooled connection, run on the server's runtime
/// (this thread is outside it and may block). A commit returns once PostgreSQL has it
/// (its `synchronous_commit` decides how durable that is).
pub(super) struct PgAppender {
    pool: PgPool,
    runtime: tokio::runtime::Handle,
    /// [`audit_insert_sql`] for 1 to [`AUDIT_CHUNK`] rows, built once.
    sql: Vec<String>,
}

impl AuditAppender for PgAppender {
    fn append(&mut self, events: &[AuditEvent]) -> StoreResult<()> {
        self.runtime.block_on(async {
            let mut tx = self.pool.begin().await.map_err(be)?;
            for chunk in events.chunks(AUDIT_CHUNK) {
                let mut q = sqlx::query(&self.sql[chunk.len()]);
                for cell in chunk.iter().flat_map(crate::rows::audit_row) {
                    q = match cell {
                        crate::rows::Cell::Int(v) => q.bind(v),
                        crate::rows::Cell::Text(v) => q.bind(v.map(Cow::into_owned)),
                    };
                }
                q.execute(&mut *tx).await.map_err(be)?;
            }
            tx.commit().await.map_err(be)
        })
    }
}

impl PgStore {
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
        let sql = numbered(&sql);
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

impl AuditStore for PgStore {
    fn audit_appender(&self) -> StoreResult<Box<dyn AuditAppender>> {
        Ok(Box::new(PgAppender {
            pool: self.pool.clone(),
            runtime: tokio::runtime::Handle::try_current().map_err(|e| {
                StoreError::Backend(format!("the PostgreSQL audit trail needs a runtime: {e}"))
            })?,
            sql: (0..=AUDIT_CHUNK).map(audit_insert_sql).collect(),
        }))
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
                " FROM audit_events WHERE org_id = $1 AND request_id = $2"
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
