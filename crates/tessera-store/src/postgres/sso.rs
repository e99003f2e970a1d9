//! SSO configurations, SAML logins in flight, the replay cache and browser sessions on
//! PostgreSQL.

use super::*;

impl PgStore {
    pub(super) async fn insert_session(conn: &mut PgConnection, s: &Session) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, org_id, user_id, method, created_at, last_seen_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
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
    pub(super) async fn insert_replay_keys(
        conn: &mut PgConnection,
        org_id: i64,
        keys: &[(String, Timestamp)],
        now: Timestamp,
    ) -> StoreResult<bool> {
        sqlx::query("DELETE FROM saml_replay WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(be)?;
        for (key, expires_at) in keys {
            // Kept at least a day: a response's own expiry can be short or absent.
            let keep = (*expires_at).max(now + 24 * 3600);
            let r = sqlx::query(
                "INSERT INTO saml_replay (org_id, key, expires_at) VALUES ($1, $2, $3)
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
}

impl SsoStore for PgStore {
    fn sso_config(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Option<SsoConfig>>> {
        Box::pin(async move {
            let row: Option<String> =
                sqlx::query_scalar("SELECT config FROM sso_configs WHERE org_id = $1")
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
                "INSERT INTO sso_configs (org_id, config, updated_at) VALUES ($1, $2, $3)
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

    fn replace_sso_config<'a>(
        &'a self,
        org_id: i64,
        expected: &'a SsoConfig,
        config: &'a SsoConfig,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let r = sqlx::query("UPDATE sso_configs SET config = $1, updated_at = $2 WHERE org_id = $3 AND config = $4")
                .bind(to_json(config))
                .bind(now)
                .bind(org_id)
                .bind(to_json(expected))
                .execute(&mut *w)
                .await
                .map_err(be)?;
            Ok(r.rows_affected() == 1)
        })
    }

    fn set_sso_enforced(&self, org_id: i64, enforced: bool) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let mut w = self.pool.begin().await.map_err(be)?;
            let out = sqlx::query("UPDATE orgs SET sso_enforced = $1 WHERE id = $2")
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
            self.committed(w, out, &[Change::Org(org_id)]).await
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
            sqlx::query("DELETE FROM saml_pending WHERE expires_at <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(be)?;
            // Counted under a lock of the org's row, held to the commit: concurrent
            // starts of one org, on any node, cannot overshoot. (NO KEY UPDATE: rows that
            // reference the org are not held up.)
            // And under a lock of the source address, taken first (one order everywhere):
            // starts from one address against several orgs cannot overshoot its bound.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tessera:saml_pending:' || $1))")
                .bind(source)
                .execute(&mut *tx)
                .await
                .map_err(be)?;
            sqlx::query("SELECT id FROM orgs WHERE id = $1 FOR NO KEY UPDATE")
                .bind(p.org_id)
                .execute(&mut *tx)
                .await
                .map_err(be)?;
            let (mine, org): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM saml_pending WHERE source_ip = $1),
                        (SELECT COUNT(*) FROM saml_pending WHERE org_id = $2)",
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
                 VALUES ($1, $2, $3, $4, $5, $6)",
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
            let row = sqlx::query("DELETE FROM saml_pending WHERE handle = $1 RETURNING *")
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
        // name service accounts): nothing goes to the change feed.
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
            // The user's row is locked from this read to the commit: it stays as read,
            // whatever another node does meanwhile.
            if let Some(planned) = login.planned_from {
                let now = sqlx::query(concat!(
                    "SELECT ",
                    cols::users_cols!(),
                    " FROM users WHERE org_id = $1 AND id = $2 FOR NO KEY UPDATE"
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
                sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
                    .bind(old)
                    .execute(&mut *tx)
                    .await
                    .map_err(be)?;
            }
            if let Some(session) = login.session {
                Self::insert_session(&mut tx, session).await?;
            }
            tx.commit().await.map_err(be)?;
            Ok(SamlLoginWritten::Done)
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
                " FROM sessions WHERE id_hash = $1"
            ))
            .bind(id_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(be)?;
            row.map(|r| session_from(&r)).transpose()
        })
    }

    fn touch_session<'a>(
        &'a self,
        id_hash: &'a [u8],
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2")
                .bind(now)
                .bind(id_hash)
                .execute(&mut *w)
                .await
                .map_err(be)?;
            Ok(())
        })
    }

    fn end_saml_sessions<'a>(
        &'a self,
        org_id: i64,
        user_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<Session>>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            sqlx::query(concat!(
                "DELETE FROM sessions WHERE org_id = $1 AND user_id = $2 AND method = 'saml' RETURNING ",
                cols::sessions_cols!()
            ))
            .bind(org_id)
            .bind(user_id)
            .fetch_all(&mut *w)
            .await
            .map_err(be)?
            .iter()
            .map(session_from)
            .collect()
        })
    }

    fn delete_session<'a>(&'a self, id_hash: &'a [u8]) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
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
            let r =
                sqlx::query("DELETE FROM sessions WHERE last_seen_at <= $1 OR created_at <= $2")
                    .bind(idle_before)
                    .bind(created_before)
                    .execute(&mut *w)
                    .await
                    .map_err(be)?;
            Ok(r.rows_affected())
        })
    }
}
