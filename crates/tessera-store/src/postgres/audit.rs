//! The audit trail on PostgreSQL: its appender (group commits of multi-row inserts) and
//! its queries.

use super::*;

/// One batch of audit events in one statement: the events as 17 arrays (`UNNEST`, one
/// statement shape whatever the batch size), and the last use of each client secret the
/// batch names, at most one update per secret per batch (SQLite's trigger updates it per
/// event; under load most events of a batch name the same secret, and each update of a
/// PostgreSQL row writes a new version of it). One statement: atomic, one round trip,
/// one commit.
const APPEND: &str = "WITH events AS (
    INSERT INTO audit_events (request_id, time_ms, org_id, kind, actor, client_id, subject,
        source_ip, outcome, reason, description, grant_type, scope, secret_id, secret_hint,
        trace, change)
    SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
        $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
        $13::text[], $14::text[], $15::text[], $16::text[], $17::text[])
    RETURNING 1)
UPDATE client_secrets s SET last_used_at = u.at, last_used_from = u.source
  FROM UNNEST($18::text[], $19::bigint[], $20::text[]) AS u(id, at, source)
 WHERE s.id = u.id AND (s.last_used_at IS NULL OR s.last_used_at <= u.at)";

/// The audit trail on PostgreSQL, used from the audit writer's thread: each batch is
/// [`APPEND`] on a pooled connection, run on the server's runtime (this thread is outside
/// it and may block). A commit returns once PostgreSQL has it (its `synchronous_commit`
/// decides how durable that is).
pub(super) struct PgAppender {
    pool: PgPool,
    runtime: tokio::runtime::Handle,
}

impl AuditAppender for PgAppender {
    fn append(&mut self, events: &[AuditEvent]) -> StoreResult<()> {
        let mut ints: Vec<Vec<Option<i64>>> =
            (0..17).map(|_| Vec::with_capacity(events.len())).collect();
        let mut texts: Vec<Vec<Option<String>>> =
            (0..17).map(|_| Vec::with_capacity(events.len())).collect();
        for ev in events {
            for (i, cell) in crate::rows::audit_row(ev).into_iter().enumerate() {
                match cell {
                    crate::rows::Cell::Int(v) => ints[i].push(v),
                    crate::rows::Cell::Text(v) => texts[i].push(v.map(Cow::into_owned)),
                }
            }
        }
        let uses = crate::rows::secret_last_uses(events);
        let mut q = sqlx::query(APPEND);
        for i in 0..17 {
            // Columns 1 and 2 (time, org) are numbers; the others text.
            q = if i == 1 || i == 2 {
                q.bind(std::mem::take(&mut ints[i]))
            } else {
                q.bind(std::mem::take(&mut texts[i]))
            };
        }
        q = q
            .bind(uses.iter().map(|u| u.0.to_string()).collect::<Vec<_>>())
            .bind(uses.iter().map(|u| u.1).collect::<Vec<_>>())
            .bind(
                uses.iter()
                    .map(|u| u.2.map(str::to_string))
                    .collect::<Vec<_>>(),
            );
        self.runtime
            .block_on(q.execute(&self.pool))
            .map(|_| ())
            .map_err(be)
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
        }))
    }

    /// `[postgres] audit_batches_in_flight` (one by default).
    fn audit_batches_in_flight(&self) -> usize {
        self.audit_batches_in_flight
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
