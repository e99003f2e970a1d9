//! Orgs and their scope catalogues on PostgreSQL.

use super::*;

impl PgStore {
    pub(super) async fn org(&self, id: i64) -> StoreResult<Option<Org>> {
        sqlx::query(concat!(
            "SELECT ",
            cols::orgs_cols!(),
            " FROM orgs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(be)?
        .as_ref()
        .map(org_from)
        .transpose()
    }
}

impl OrgStore for PgStore {
    fn is_empty(&self) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async move {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orgs")
                .fetch_one(&self.pool)
                .await
                .map_err(be)?;
            Ok(n == 0)
        })
    }

    fn create_org<'a>(
        &'a self,
        slug: &'a OrgSlug,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<Org>> {
        Box::pin(async move {
            let mut w = self.pool.begin().await.map_err(be)?;
            let out = async {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO orgs (slug, enabled, sso_enforced, created_at) VALUES ($1, TRUE, FALSE, $2) RETURNING id",
            )
            .bind(slug.as_str())
            .bind(now)
            .fetch_one(&mut *w)
            .await
            .map_err(|e| conflict_as(e, || format!("org '{slug}' already exists")))?;
            Ok(Org {
                id,
                slug: slug.clone(),
                enabled: true,
                sso_enforced: false,
                created_at: now,
            })
        }
            .await;
            self.committed(w, out, &[]).await
        })
    }

    fn org_by_slug<'a>(&'a self, slug: &'a str) -> BoxFuture<'a, StoreResult<Option<Org>>> {
        Box::pin(async move {
            sqlx::query(concat!(
                "SELECT ",
                cols::orgs_cols!(),
                " FROM orgs WHERE slug = $1"
            ))
            .bind(slug)
            .fetch_optional(&self.pool)
            .await
            .map_err(be)?
            .as_ref()
            .map(org_from)
            .transpose()
        })
    }

    fn org_by_id(&self, id: i64) -> BoxFuture<'_, StoreResult<Option<Org>>> {
        Box::pin(self.org(id))
    }

    fn list_orgs(&self) -> BoxFuture<'_, StoreResult<Vec<Org>>> {
        Box::pin(async move {
            sqlx::query(concat!(
                "SELECT ",
                cols::orgs_cols!(),
                " FROM orgs ORDER BY id"
            ))
            .fetch_all(&self.pool)
            .await
            .map_err(be)?
            .iter()
            .map(org_from)
            .collect()
        })
    }

    fn create_scope<'a>(&'a self, s: &'a Scope) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut w = self.pool.begin().await.map_err(be)?;
            let out = async {
                sqlx::query("INSERT INTO scopes (org_id, name, description) VALUES ($1, $2, $3)")
                    .bind(s.org_id)
                    .bind(s.name.as_str())
                    .bind(&s.description)
                    .execute(&mut *w)
                    .await
                    .map_err(|e| conflict_as(e, || format!("scope '{}' already exists", s.name)))?;
                Ok(())
            }
            .await;
            self.committed(w, out, &[Change::Org(s.org_id)]).await
        })
    }

    fn list_scopes(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Vec<Scope>>> {
        Box::pin(async move {
            sqlx::query(concat!(
                "SELECT ",
                cols::scopes_cols!(),
                " FROM scopes WHERE org_id = $1 ORDER BY name"
            ))
            .bind(org_id)
            .fetch_all(&self.pool)
            .await
            .map_err(be)?
            .iter()
            .map(|r| {
                Ok(Scope {
                    org_id: get(r, "org_id")?,
                    name: ScopeName::parse(&get::<String>(r, "name")?)
                        .map_err(|e| StoreError::Backend(e.0))?,
                    description: get(r, "description")?,
                })
            })
            .collect()
        })
    }
}
