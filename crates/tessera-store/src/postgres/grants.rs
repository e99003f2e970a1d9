//! [`GrantStore`] on PostgreSQL: authorization codes, grants, refresh tokens and used
//! client assertion ids. None of it is cached: each is read once or twice in its life,
//! and a use must see every other node's.

use sqlx::{Connection, Row};
use tessera_core::interactive::{AuthCode, LoginGrant, RefreshToken};
use tessera_core::model::Timestamp;
use tessera_core::store::{BoxFuture, GrantStore, Rotation, StoreResult};

use super::{PgStore, be, code_from, cols, get, grant_from, to_json};

/// Inserts a grant (a login's refresh token family).
async fn insert_grant(conn: &mut sqlx::PgConnection, g: &LoginGrant) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO login_grants (id, org_id, client_id, user_id, scopes, nonce, auth_time,
            sid, created_at, expires_at, revoked_at, revoked_reason, auth_method)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&g.id)
    .bind(g.org_id)
    .bind(&g.client_id)
    .bind(&g.user_id)
    .bind(to_json(&g.scopes))
    .bind(&g.nonce)
    .bind(g.auth_time)
    .bind(&g.sid)
    .bind(g.created_at)
    .bind(g.expires_at)
    .bind(g.revoked_at)
    .bind(&g.revoked_reason)
    .bind(&g.auth_method)
    .execute(conn)
    .await
    .map_err(be)?;
    Ok(())
}

async fn insert_refresh(conn: &mut sqlx::PgConnection, t: &RefreshToken) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, grant_id, created_at, idle_expires_at, used_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&t.hash)
    .bind(&t.grant_id)
    .bind(t.created_at)
    .bind(t.idle_expires_at)
    .bind(t.used_at)
    .execute(&mut *conn)
    .await
    .map_err(be)?;
    Ok(())
}

impl PgStore {
    /// Revokes the live grants a `WHERE` clause picks (`$1`: now, `$2`: reason, then its
    /// own parameters as `$3`, `$4`).
    async fn revoke_where(
        &self,
        clause: &str,
        a: &str,
        b: Option<i64>,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<u64> {
        let mut w = self.writer().await?;
        let sql = format!(
            "UPDATE login_grants SET revoked_at = $1, revoked_reason = $2
             WHERE revoked_at IS NULL AND {clause}"
        );
        let mut q = sqlx::query(&sql).bind(now).bind(reason).bind(a);
        if let Some(b) = b {
            q = q.bind(b);
        }
        let r = q.execute(&mut *w).await.map_err(be)?;
        Ok(r.rows_affected())
    }
}

impl GrantStore for PgStore {
    fn create_auth_code<'a>(&'a self, c: &'a AuthCode) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            sqlx::query(
                "INSERT INTO auth_codes (code_hash, grant_id, org_id, client_id, user_id, redirect_uri,
                    scopes, code_challenge, nonce, auth_time, sid, created_at, expires_at, used_at,
                    auth_method)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(&c.hash)
            .bind(&c.grant_id)
            .bind(c.org_id)
            .bind(&c.client_id)
            .bind(&c.user_id)
            .bind(&c.redirect_uri)
            .bind(to_json(&c.scopes))
            .bind(&c.code_challenge)
            .bind(&c.nonce)
            .bind(c.auth_time)
            .bind(&c.sid)
            .bind(c.created_at)
            .bind(c.expires_at)
            .bind(c.used_at)
            .bind(&c.auth_method)
            .execute(&mut *w)
            .await
            .map_err(be)?;
            Ok(())
        })
    }

    fn auth_code<'a>(&'a self, hash: &'a [u8]) -> BoxFuture<'a, StoreResult<Option<AuthCode>>> {
        Box::pin(async move {
            let row = sqlx::query(concat!(
                "SELECT ",
                cols::auth_codes_cols!(),
                " FROM auth_codes WHERE code_hash = $1"
            ))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(be)?;
            row.as_ref().map(code_from).transpose()
        })
    }

    fn redeem_auth_code<'a>(
        &'a self,
        hash: &'a [u8],
        g: &'a LoginGrant,
        refresh: Option<&'a RefreshToken>,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let mut tx = w.begin().await.map_err(be)?;
            // Compare and set: of two exchanges of one code, only one marks it.
            let r = sqlx::query(
                "UPDATE auth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL",
            )
            .bind(now)
            .bind(hash)
            .execute(&mut *tx)
            .await
            .map_err(be)?;
            if r.rows_affected() == 0 {
                tx.rollback().await.map_err(be)?;
                return Ok(false);
            }
            insert_grant(&mut tx, g).await?;
            if let Some(t) = refresh {
                insert_refresh(&mut tx, t).await?;
            }
            tx.commit().await.map_err(be)?;
            Ok(true)
        })
    }

    fn start_login_grant<'a>(
        &'a self,
        g: &'a LoginGrant,
        refresh: Option<&'a RefreshToken>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let mut tx = w.begin().await.map_err(be)?;
            insert_grant(&mut tx, g).await?;
            if let Some(t) = refresh {
                insert_refresh(&mut tx, t).await?;
            }
            tx.commit().await.map_err(be)
        })
    }

    fn burn_auth_code<'a>(
        &'a self,
        hash: &'a [u8],
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            sqlx::query(
                "UPDATE auth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL",
            )
            .bind(now)
            .bind(hash)
            .execute(&mut *w)
            .await
            .map_err(be)?;
            Ok(())
        })
    }

    fn login_grant<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<LoginGrant>>> {
        Box::pin(async move {
            let row = sqlx::query(concat!(
                "SELECT ",
                cols::login_grants_cols!(),
                " FROM login_grants WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(be)?;
            row.as_ref().map(grant_from).transpose()
        })
    }

    fn refresh_token<'a>(
        &'a self,
        hash: &'a [u8],
    ) -> BoxFuture<'a, StoreResult<Option<(RefreshToken, LoginGrant)>>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT r.token_hash, r.grant_id, r.created_at AS r_created_at, r.idle_expires_at,
                        r.used_at, g.id, g.org_id, g.client_id, g.user_id, g.scopes, g.nonce, g.auth_time, g.sid, g.created_at, g.expires_at, g.revoked_at, g.revoked_reason, g.auth_method
                 FROM refresh_tokens r JOIN login_grants g ON g.id = r.grant_id
                 WHERE r.token_hash = $1",
            )
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(be)?;
            let Some(r) = row else { return Ok(None) };
            let token = RefreshToken {
                hash: get(&r, "token_hash")?,
                grant_id: get(&r, "grant_id")?,
                created_at: get(&r, "r_created_at")?,
                idle_expires_at: get(&r, "idle_expires_at")?,
                used_at: r.try_get("used_at").map_err(be)?,
            };
            Ok(Some((token, grant_from(&r)?)))
        })
    }

    fn rotate_refresh_token<'a>(
        &'a self,
        old: &'a [u8],
        next: &'a RefreshToken,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<Rotation>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let mut tx = w.begin().await.map_err(be)?;
            let r = sqlx::query(
                "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
            )
            .bind(now)
            .bind(old)
            .execute(&mut *tx)
            .await
            .map_err(be)?;
            if r.rows_affected() == 0 {
                tx.rollback().await.map_err(be)?;
                return Ok(Rotation::AlreadyUsed);
            }
            insert_refresh(&mut tx, next).await?;
            tx.commit().await.map_err(be)?;
            Ok(Rotation::Rotated)
        })
    }

    fn revoke_login_grant<'a>(
        &'a self,
        id: &'a str,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move { Ok(self.revoke_where("id = $3", id, None, reason, now).await? > 0) })
    }

    fn revoke_user_grants<'a>(
        &'a self,
        org_id: i64,
        user_id: &'a str,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(async move {
            let n = self
                .revoke_where(
                    "user_id = $3 AND org_id = $4",
                    user_id,
                    Some(org_id),
                    reason,
                    now,
                )
                .await?;
            let mut w = self.writer().await?;
            sqlx::query("DELETE FROM sessions WHERE org_id = $1 AND user_id = $2")
                .bind(org_id)
                .bind(user_id)
                .execute(&mut *w)
                .await
                .map_err(be)?;
            Ok(n)
        })
    }

    fn revoke_client_grants<'a>(
        &'a self,
        client_id: &'a str,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(async move {
            self.revoke_where("client_id = $3", client_id, None, reason, now)
                .await
        })
    }

    fn revoke_session_grants<'a>(
        &'a self,
        sid: &'a str,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(async move { self.revoke_where("sid = $3", sid, None, reason, now).await })
    }

    fn user_grants<'a>(
        &'a self,
        org_id: i64,
        user_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<LoginGrant>>> {
        Box::pin(async move {
            let rows = sqlx::query(concat!(
                "SELECT ",
                cols::login_grants_cols!(),
                " FROM login_grants WHERE org_id = $1 AND user_id = $2
                 ORDER BY created_at DESC, id LIMIT 1000"
            ))
            .bind(org_id)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
            .map_err(be)?;
            rows.iter().map(grant_from).collect()
        })
    }

    fn remember_assertion_id<'a>(
        &'a self,
        client_id: &'a str,
        jti: &'a str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            // An id whose assertion has expired may be forgotten: that assertion can no
            // longer be accepted anyway.
            let r = sqlx::query(
                "INSERT INTO client_assertion_ids (client_id, jti, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (client_id, jti) DO UPDATE SET expires_at = excluded.expires_at
                 WHERE client_assertion_ids.expires_at <= $4",
            )
            .bind(client_id)
            .bind(jti)
            .bind(expires_at)
            .bind(now)
            .execute(&mut *w)
            .await
            .map_err(be)?;
            Ok(r.rows_affected() > 0)
        })
    }

    fn prune_grants(&self, before: Timestamp) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            let mut w = self.writer().await?;
            let mut n = 0;
            for sql in [
                "DELETE FROM auth_codes WHERE expires_at < $1",
                "DELETE FROM client_assertion_ids WHERE expires_at < $1",
                "DELETE FROM login_grants WHERE expires_at < $1",
            ] {
                n += sqlx::query(sql)
                    .bind(before)
                    .execute(&mut *w)
                    .await
                    .map_err(be)?
                    .rows_affected();
            }
            Ok(n)
        })
    }
}
