//! Throttle records on SQLite: the node's mirror in front, an atomic upsert behind.

use super::*;

impl ThrottleStore for SqliteStore {
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
}
