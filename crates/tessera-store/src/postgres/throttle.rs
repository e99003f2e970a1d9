//! Throttle records on PostgreSQL: an atomic upsert per failure, so the failures of several
//! nodes add up; the cache layer keeps this node's mirror in front.

use super::*;

impl PgStore {
    /// Counts one failure in one statement against the stored row, so failures recorded
    /// by several nodes add up instead of overwriting each other; the block is the
    /// policy's, computed in SQL from the new count (see `ThrottlePolicy::after_failure`).
    pub(super) async fn increment_failures(
        &self,
        key: &str,
        source: &str,
        policy: ThrottlePolicy,
        now: Timestamp,
    ) -> StoreResult<ThrottleState> {
        let first = policy.after_failure(&ThrottleState::default(), now);
        let mut w = self.writer().await?;
        let row = sqlx::query(
            "INSERT INTO auth_failures AS f (client_id, source_ip, failures, last_failure, blocked_until)
             VALUES ($1, $2, 1, $3, $4)
             ON CONFLICT (client_id, source_ip) DO UPDATE SET
               failures = CASE WHEN $3 - f.last_failure > $5 THEN 1 ELSE f.failures + 1 END,
               last_failure = $3,
               blocked_until = CASE
                 WHEN (CASE WHEN $3 - f.last_failure > $5 THEN 1 ELSE f.failures + 1 END) > $6
                 THEN $3 + LEAST($7::bigint << LEAST((CASE WHEN $3 - f.last_failure > $5 THEN 1 ELSE f.failures + 1 END) - $6 - 1, 30)::int, $8)
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
        Ok(ThrottleState {
            failures: get::<i64>(&row, "failures")? as u32,
            last_failure: get(&row, "last_failure")?,
            blocked_until: get(&row, "blocked_until")?,
        })
    }

    pub(super) async fn delete_failures(&self, key: &str, source: &str) -> StoreResult<()> {
        let mut w = self.writer().await?;
        sqlx::query("DELETE FROM auth_failures WHERE client_id = $1 AND source_ip = $2")
            .bind(key)
            .bind(source)
            .execute(&mut *w)
            .await
            .map_err(be)?;
        Ok(())
    }

    pub(super) async fn load_throttle_records(
        &self,
        since: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<ThrottleRecord>> {
        sqlx::query(
            "SELECT client_id, source_ip, failures, last_failure, blocked_until FROM auth_failures
             WHERE last_failure >= $1 OR blocked_until > $2",
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
        .collect()
    }
}

impl ThrottleStore for PgStore {
    fn prune_throttle(&self, before: Timestamp, now: Timestamp) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let r = sqlx::query(
                "DELETE FROM auth_failures WHERE last_failure < $1 AND (blocked_until IS NULL OR blocked_until <= $2)",
            )
            .bind(before)
            .bind(now)
            .execute(&mut *w)
            .await
            .map_err(be)?;
            Ok(r.rows_affected())
        })
    }
}
