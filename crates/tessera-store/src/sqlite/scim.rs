//! SCIM groups and long-lived SCIM tokens on SQLite.

use tessera_core::model::{ScimGroup, ScimGroupChange, ScimToken};
use tessera_core::store::ScimStore;

use super::*;
use crate::rows::{attach_members, scim_group_from, scim_token_from};

impl SqliteStore {
    /// The groups of `org_id` (one of them with `only`), with their members.
    async fn groups(&self, org_id: i64, only: Option<&str>) -> StoreResult<Vec<ScimGroup>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            cols::scim_groups_cols!(),
            " FROM scim_groups WHERE org_id = ? AND (? IS NULL OR id = ?) ORDER BY display_name"
        ))
        .bind(org_id)
        .bind(only)
        .bind(only)
        .fetch_all(&self.pool)
        .await
        .map_err(be)?;
        let mut groups = rows
            .iter()
            .map(scim_group_from)
            .collect::<StoreResult<Vec<_>>>()?;
        let members: Vec<(String, String)> = sqlx::query_as(
            "SELECT m.group_id, m.user_id FROM scim_group_members m JOIN scim_groups g ON g.id = m.group_id \
             WHERE g.org_id = ? AND (? IS NULL OR g.id = ?) ORDER BY m.user_id",
        )
        .bind(org_id)
        .bind(only)
        .bind(only)
        .fetch_all(&self.pool)
        .await
        .map_err(be)?;
        attach_members(&mut groups, members);
        Ok(groups)
    }
}

/// Adds members that are humans of the org (anything else is left out).
async fn add_members(
    w: &mut SqliteConnection,
    org_id: i64,
    group_id: &str,
    users: &[String],
) -> StoreResult<()> {
    for u in users {
        sqlx::query(
            "INSERT INTO scim_group_members (group_id, user_id) SELECT ?, id FROM users \
             WHERE org_id = ? AND id = ? AND user_type = 'human' ON CONFLICT DO NOTHING",
        )
        .bind(group_id)
        .bind(org_id)
        .bind(u)
        .execute(&mut *w)
        .await
        .map_err(be)?;
    }
    Ok(())
}

const NAME_TAKEN: &str = "the org has a group of that displayName";

impl ScimStore for SqliteStore {
    fn create_scim_group<'a>(&'a self, group: &'a ScimGroup) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut gate = self.writer().await?;
            let mut w = gate.begin().await.map_err(be)?;
            let out = async {
                sqlx::query("INSERT INTO scim_groups (id, org_id, display_name, external_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)")
                    .bind(&group.id)
                    .bind(group.org_id)
                    .bind(&group.display_name)
                    .bind(&group.external_id)
                    .bind(group.created_at)
                    .bind(group.updated_at)
                    .execute(&mut *w)
                    .await
                    .map_err(|e| conflict_as(e, || NAME_TAKEN.to_string()))?;
                add_members(&mut w, group.org_id, &group.id, &group.members).await
            }
            .await;
            self.committed(w, out, &[]).await
        })
    }

    fn scim_group<'a>(
        &'a self,
        org_id: i64,
        id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<ScimGroup>>> {
        Box::pin(async move { Ok(self.groups(org_id, Some(id)).await?.pop()) })
    }

    fn list_scim_groups(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Vec<ScimGroup>>> {
        Box::pin(self.groups(org_id, None))
    }

    fn change_scim_group<'a>(
        &'a self,
        org_id: i64,
        id: &'a str,
        change: &'a ScimGroupChange,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let mut gate = self.writer().await?;
            let mut w = gate.begin().await.map_err(be)?;
            let out = async {
                let (external_id_set, external_id) = match &change.external_id {
                    Some(e) => (true, e.as_deref()),
                    None => (false, None),
                };
                let r = sqlx::query(
                    "UPDATE scim_groups SET display_name = COALESCE(?, display_name), \
                     external_id = CASE WHEN ? THEN ? ELSE external_id END, updated_at = ? \
                     WHERE org_id = ? AND id = ?",
                )
                .bind(change.display_name.as_deref())
                .bind(external_id_set)
                .bind(external_id)
                .bind(now)
                .bind(org_id)
                .bind(id)
                .execute(&mut *w)
                .await
                .map_err(|e| conflict_as(e, || NAME_TAKEN.to_string()))?;
                if r.rows_affected() == 0 {
                    return Ok(false);
                }
                if let Some(all) = &change.replace_members {
                    sqlx::query("DELETE FROM scim_group_members WHERE group_id = ?")
                        .bind(id)
                        .execute(&mut *w)
                        .await
                        .map_err(be)?;
                    add_members(&mut w, org_id, id, all).await?;
                }
                add_members(&mut w, org_id, id, &change.add_members).await?;
                for u in &change.remove_members {
                    sqlx::query(
                        "DELETE FROM scim_group_members WHERE group_id = ? AND user_id = ?",
                    )
                    .bind(id)
                    .bind(u)
                    .execute(&mut *w)
                    .await
                    .map_err(be)?;
                }
                Ok(true)
            }
            .await;
            self.committed(w, out, &[]).await
        })
    }

    fn delete_scim_group<'a>(
        &'a self,
        org_id: i64,
        id: &'a str,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let mut gate = self.writer().await?;
            let mut w = gate.begin().await.map_err(be)?;
            let out = async {
                let r = sqlx::query("DELETE FROM scim_groups WHERE org_id = ? AND id = ?")
                    .bind(org_id)
                    .bind(id)
                    .execute(&mut *w)
                    .await
                    .map_err(be)?;
                Ok(r.rows_affected() > 0)
            }
            .await;
            self.committed(w, out, &[]).await
        })
    }

    fn scim_groups_of<'a>(
        &'a self,
        org_id: i64,
        user_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<ScimGroup>>> {
        Box::pin(async move {
            let rows = sqlx::query(concat!(
                "SELECT ",
                cols::scim_groups_cols!(),
                " FROM scim_groups WHERE org_id = ? AND id IN (SELECT group_id FROM scim_group_members WHERE user_id = ?) ORDER BY display_name"
            ))
            .bind(org_id)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
            .map_err(be)?;
            rows.iter().map(scim_group_from).collect()
        })
    }

    fn create_scim_token<'a>(&'a self, t: &'a ScimToken) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut gate = self.writer().await?;
            let mut w = gate.begin().await.map_err(be)?;
            let out = async {
                sqlx::query(concat!(
                    "INSERT INTO scim_tokens (",
                    cols::scim_tokens_cols!(),
                    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ))
                .bind(&t.id)
                .bind(t.org_id)
                .bind(&t.client_id)
                .bind(&t.hash)
                .bind(&t.hint)
                .bind(&t.description)
                .bind(t.created_at)
                .bind(t.expires_at)
                .bind(t.revoked_at)
                .bind(t.last_used_at)
                .execute(&mut *w)
                .await
                .map_err(be)?;
                Ok(())
            }
            .await;
            self.committed(w, out, &[]).await
        })
    }

    fn scim_token_by_hash<'a>(
        &'a self,
        hash: &'a [u8],
    ) -> BoxFuture<'a, StoreResult<Option<ScimToken>>> {
        Box::pin(async move {
            sqlx::query(concat!(
                "SELECT ",
                cols::scim_tokens_cols!(),
                " FROM scim_tokens WHERE hash = ?"
            ))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(be)?
            .as_ref()
            .map(scim_token_from)
            .transpose()
        })
    }

    fn list_scim_tokens(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Vec<ScimToken>>> {
        Box::pin(async move {
            let rows = sqlx::query(concat!(
                "SELECT ",
                cols::scim_tokens_cols!(),
                " FROM scim_tokens WHERE org_id = ? ORDER BY created_at, id"
            ))
            .bind(org_id)
            .fetch_all(&self.pool)
            .await
            .map_err(be)?;
            rows.iter().map(scim_token_from).collect()
        })
    }

    fn revoke_scim_token<'a>(
        &'a self,
        org_id: i64,
        id: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let mut gate = self.writer().await?;
            let mut w = gate.begin().await.map_err(be)?;
            let out = async {
                let r = sqlx::query("UPDATE scim_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE org_id = ? AND id = ?")
                    .bind(now)
                    .bind(org_id)
                    .bind(id)
                    .execute(&mut *w)
                    .await
                    .map_err(be)?;
                Ok(r.rows_affected() > 0)
            }
            .await;
            self.committed(w, out, &[]).await
        })
    }

    fn touch_scim_token<'a>(
        &'a self,
        id: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut gate = self.writer().await?;
            let mut w = gate.begin().await.map_err(be)?;
            let out = async {
                sqlx::query("UPDATE scim_tokens SET last_used_at = ? WHERE id = ?")
                    .bind(now)
                    .bind(id)
                    .execute(&mut *w)
                    .await
                    .map_err(be)?;
                Ok(())
            }
            .await;
            self.committed(w, out, &[]).await
        })
    }
}
