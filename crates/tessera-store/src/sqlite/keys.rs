//! Signing keys and the SAML SP key on SQLite.

use super::*;

impl KeyStore for SqliteStore {
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
                    certificate: get(r, "certificate")?,
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
                "INSERT INTO signing_keys (kid, alg, sealed, created_at, retired_at, remove_after, purpose, certificate)
                 VALUES (?, ?, ?, ?, NULL, NULL, ?, ?)",
            )
            .bind(&k.kid)
            .bind(&k.alg)
            .bind(&k.sealed_private_key)
            .bind(k.created_at)
            .bind(&k.purpose)
            .bind(&k.certificate)
            .execute(&mut *tx)
            .await
            .map_err(be)?;
            // Every node reloads its keys when it reads this.
            self.changed(&mut tx, &[Change::Keys]).await?;
            tx.commit().await.map_err(be)
        })
    }
}
