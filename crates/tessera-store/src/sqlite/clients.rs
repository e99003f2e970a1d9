//! Clients, their secrets and the token path's cached facts on SQLite.

use super::*;

impl SqliteStore {
    pub(super) async fn load_client_parts(
        &self,
        client_id: &str,
    ) -> StoreResult<Option<ClientParts>> {
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
        let service_account = match &client.service_account_id {
            Some(id) => self.user(client.org_id, id).await?,
            None => None,
        };
        Ok(Some(ClientParts {
            client,
            secrets,
            service_account,
        }))
    }

    /// An org with the names in its scope catalogue.
    pub(super) async fn load_org_parts(&self, org_id: i64) -> StoreResult<Option<OrgParts>> {
        let Some(org) = self.org(org_id).await? else {
            return Ok(None);
        };
        let known_scopes =
            sqlx::query_scalar::<_, String>("SELECT name FROM scopes WHERE org_id = ?")
                .bind(org_id)
                .fetch_all(&self.pool)
                .await
                .map_err(be)?
                .into_iter()
                .filter_map(|n| ScopeName::parse(&n).ok())
                .collect();
        Ok(Some((org, known_scopes)))
    }

    pub(super) async fn secrets(&self, client_id: &str) -> StoreResult<Vec<StoredSecret>> {
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

    pub(super) async fn insert_client(
        conn: &mut sqlx::SqliteConnection,
        c: &Client,
    ) -> StoreResult<()> {
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

    pub(super) async fn insert_secret(
        conn: &mut sqlx::SqliteConnection,
        s: &StoredSecret,
    ) -> StoreResult<()> {
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
}

impl ClientStore for SqliteStore {
    fn create_client<'a>(
        &'a self,
        c: &'a Client,
        s: Option<&'a StoredSecret>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut gate = self.writer().await?;
            let mut w = gate.begin().await.map_err(be)?;
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
            self.committed(w, out, &[Change::Client(c.client_id.to_string())])
                .await
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
            let mut gate = self.writer().await?;
            let mut w = gate.begin().await.map_err(be)?;
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
            self.committed(w, out, &[Change::Client(c.client_id.to_string())])
                .await
        })
    }

    fn delete_client<'a>(
        &'a self,
        org_id: i64,
        client_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let mut gate = self.writer().await?;
            let mut w = gate.begin().await.map_err(be)?;
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
                Ok(r.rows_affected() > 0)
            }
            .await;
            self.committed(w, out, &[Change::Client(client_id.to_string())])
                .await
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
            let mut gate = self.writer().await?;
            let mut w = gate.begin().await.map_err(be)?;
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
            self.committed(w, out, &[Change::Client(new.client_id.to_string())])
                .await
        })
    }

    fn revoke_secret<'a>(
        &'a self,
        client_id: &'a str,
        secret_id: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let mut gate = self.writer().await?;
            let mut w = gate.begin().await.map_err(be)?;
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
            self.committed(w, out, &[Change::Client(client_id.to_string())])
                .await
        })
    }
}
