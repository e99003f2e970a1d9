//! People and service accounts on SQLite.

use super::*;

/// The result of an UPDATE of one user: not found when no row matched.
pub(super) fn user_updated(rows: u64, id: &str) -> StoreResult<()> {
    if rows == 0 {
        return Err(StoreError::NotFound(format!("no user {id}")));
    }
    Ok(())
}

pub(super) fn type_str(t: UserType) -> &'static str {
    match t {
        UserType::Human => "human",
        UserType::Service => "service",
    }
}

pub(super) fn state_str(s: UserState) -> &'static str {
    s.as_str()
}

impl SqliteStore {
    pub(super) async fn user(&self, org_id: i64, id: &str) -> StoreResult<Option<User>> {
        self.user_by(org_id, "id", id).await
    }

    /// The org's user whose `column` (`id` or `username`, both unique) is `value`.
    pub(super) async fn user_by(
        &self,
        org_id: i64,
        column: &'static str,
        value: &str,
    ) -> StoreResult<Option<User>> {
        sqlx::query(&format!(
            concat!(
                "SELECT ",
                cols::users_cols!(),
                " FROM users WHERE org_id = ? AND {column} = ?"
            ),
            column = column
        ))
        .bind(org_id)
        .bind(value)
        .fetch_optional(&self.pool)
        .await
        .map_err(be)?
        .as_ref()
        .map(user_from)
        .transpose()
    }

    pub(super) async fn insert_user(conn: &mut SqliteConnection, u: &User) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (id, org_id, user_type, username, email, roles, state, state_changed_by,
                state_changed_at, locked_until, password_hash, created_at, saml_name_id,
                failed_logins, last_password_login_at, display_name, scim_external_id,
                scim_provisioned_by, scim_provisioned_at, scim_deleted_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&u.id)
        .bind(u.org_id)
        .bind(type_str(u.user_type))
        .bind(&u.username)
        .bind(&u.email)
        .bind(to_json(&u.roles))
        .bind(state_str(u.state))
        .bind(u.state_changed_by.as_ref().map(to_json))
        .bind(u.state_changed_at)
        .bind(u.locked_until)
        .bind(&u.password_hash)
        .bind(u.created_at)
        .bind(&u.saml_name_id)
        .bind(i64::from(u.failed_logins))
        .bind(u.last_password_login_at)
        .bind(&u.display_name)
        .bind(u.scim.as_ref().and_then(|l| l.external_id.as_deref()))
        .bind(u.scim.as_ref().map(|l| l.provisioned_by.as_str()))
        .bind(u.scim.as_ref().map(|l| l.provisioned_at))
        .bind(u.scim.as_ref().and_then(|l| l.deleted_at))
        .execute(conn)
        .await
        .map_err(|e| conflict_as(e, || format!("a user named '{}' already exists", u.username)))?;
        Ok(())
    }

    /// Writes what the IdP manages (email, display name, roles, SAML link) and nothing
    /// else, so a login never undoes a concurrent change of state, lock or password.
    pub(super) async fn write_idp_fields(conn: &mut SqliteConnection, u: &User) -> StoreResult<()> {
        let r = sqlx::query(
            "UPDATE users SET email = ?, display_name = ?, roles = ?, saml_name_id = ?
                 WHERE org_id = ? AND id = ? AND user_type = 'human'",
        )
        .bind(&u.email)
        .bind(&u.display_name)
        .bind(to_json(&u.roles))
        .bind(&u.saml_name_id)
        .bind(u.org_id)
        .bind(&u.id)
        .execute(conn)
        .await
        .map_err(be)?;
        user_updated(r.rows_affected(), &u.id)
    }
}

impl UserStore for SqliteStore {
    fn create_user<'a>(&'a self, u: &'a User) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut gate = self.writer().await?;
            let mut w = gate.begin().await.map_err(be)?;
            let out = Self::insert_user(&mut w, u).await;
            self.committed(w, out, &[Change::User(u.id.clone())]).await
        })
    }

    fn get_user<'a>(
        &'a self,
        org_id: i64,
        id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        Box::pin(self.user(org_id, id))
    }

    fn list_users(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Vec<User>>> {
        Box::pin(async move {
            sqlx::query(concat!(
                "SELECT ",
                cols::users_cols!(),
                " FROM users WHERE org_id = ? ORDER BY created_at, rowid"
            ))
            .bind(org_id)
            .fetch_all(&self.pool)
            .await
            .map_err(be)?
            .iter()
            .map(user_from)
            .collect()
        })
    }

    fn update_user<'a>(
        &'a self,
        u: &'a User,
        f: UserFields,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut gate = self.writer().await?;
            let mut w = gate.begin().await.map_err(be)?;
            let out = async {
                // One statement for every combination: each column keeps its stored value
                // unless its flag is set. The state is compared with the stored row's
                // (`User::effective_state`: a lock that has ended counts as active), so an
                // unlock racing a lock-out still unlocks.
                const STATE: &str = "(?7 AND (?8 = 'locked' OR ?8 != CASE
                    WHEN state = 'locked' AND locked_until IS NOT NULL AND locked_until <= ?14
                    THEN 'active' ELSE state END))";
                let sql = format!(
                    "UPDATE users SET
                        username = CASE WHEN ?15 THEN ?16 ELSE username END,
                        email = CASE WHEN ?1 THEN ?2 ELSE email END,
                        display_name = CASE WHEN ?3 THEN ?4 ELSE display_name END,
                        roles = CASE WHEN ?5 THEN ?6 ELSE roles END,
                        state = CASE WHEN {STATE} THEN ?8 ELSE state END,
                        state_changed_by = CASE WHEN {STATE} THEN ?9 ELSE state_changed_by END,
                        state_changed_at = CASE WHEN {STATE} THEN ?10 ELSE state_changed_at END,
                        locked_until = CASE WHEN {STATE} THEN ?11 ELSE locked_until END,
                        failed_logins = CASE WHEN {STATE} AND ?8 = 'active' THEN 0 ELSE failed_logins END
                     WHERE org_id = ?12 AND id = ?13"
                );
                let r = sqlx::query(&sql)
                .bind(f.email)
                .bind(&u.email)
                .bind(f.display_name)
                .bind(&u.display_name)
                .bind(f.roles)
                .bind(to_json(&u.roles))
                .bind(f.state)
                .bind(state_str(u.state))
                .bind(u.state_changed_by.as_ref().map(to_json))
                .bind(u.state_changed_at)
                .bind(u.locked_until)
                .bind(u.org_id)
                .bind(&u.id)
                .bind(now)
                .bind(f.username)
                .bind(&u.username)
                .execute(&mut *w)
                .await
                .map_err(|e| {
                    conflict_as(e, || format!("the org has a user named '{}'", u.username))
                })?;
                user_updated(r.rows_affected(), &u.id)
            }
            .await;
            self.committed(w, out, &[Change::User(u.id.clone())]).await
        })
    }

    fn user_by_scim_external_id<'a>(
        &'a self,
        org_id: i64,
        external_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        Box::pin(self.user_by(org_id, "scim_external_id", external_id))
    }

    fn set_scim_link<'a>(
        &'a self,
        org_id: i64,
        user_id: &'a str,
        link: Option<&'a ScimLink>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut gate = self.writer().await?;
            let mut w = gate.begin().await.map_err(be)?;
            let out = async {
                let r = sqlx::query("UPDATE users SET scim_external_id = ?, scim_provisioned_by = ?, scim_provisioned_at = ?, scim_deleted_at = ? WHERE org_id = ? AND id = ? AND user_type = 'human'")
                    .bind(link.and_then(|l| l.external_id.as_deref()))
                    .bind(link.map(|l| l.provisioned_by.as_str()))
                    .bind(link.map(|l| l.provisioned_at))
                    .bind(link.and_then(|l| l.deleted_at))
                    .bind(org_id)
                    .bind(user_id)
                    .execute(&mut *w)
                    .await
                    .map_err(|e| {
                        conflict_as(e, || {
                            "another user of the org has that externalId".to_string()
                        })
                    })?;
                user_updated(r.rows_affected(), user_id)
            }
            .await;
            self.committed(w, out, &[Change::User(user_id.to_string())])
                .await
        })
    }

    fn user_by_username<'a>(
        &'a self,
        org_id: i64,
        username: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        Box::pin(self.user_by(org_id, "username", username))
    }

    fn record_login<'a>(
        &'a self,
        update: &'a LoginUpdate,
        client_id: Option<&'a str>,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            match update {
                LoginUpdate::Failed { user_id } => {
                    // Counted in SQL, so concurrent failures are never lost.
                    let mut w = self.writer().await?;
                    sqlx::query("UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ?")
                        .bind(user_id)
                        .execute(&mut *w)
                        .await
                        .map_err(be)?;
                }
                LoginUpdate::Succeeded { user_id } => {
                    let mut w = self.writer().await?;
                    let mut tx = w.begin().await.map_err(be)?;
                    sqlx::query(
                        "UPDATE users SET failed_logins = 0, last_password_login_at = ? WHERE id = ?",
                    )
                    .bind(now)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(be)?;
                    if let Some(client_id) = client_id {
                        sqlx::query(
                            "INSERT INTO password_grant_uses (client_id, org_id, last_used_at)
                             SELECT client_id, org_id, ? FROM clients WHERE client_id = ?
                             ON CONFLICT (client_id) DO UPDATE SET last_used_at = excluded.last_used_at",
                        )
                        .bind(now)
                        .bind(client_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(be)?;
                    }
                    tx.commit().await.map_err(be)?;
                }
            }
            Ok(())
        })
    }

    fn password_grant_uses(
        &self,
        org_id: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<(String, Timestamp)>>> {
        Box::pin(async move {
            sqlx::query("SELECT client_id, last_used_at FROM password_grant_uses WHERE org_id = ?")
                .bind(org_id)
                .fetch_all(&self.pool)
                .await
                .map_err(be)?
                .iter()
                .map(|r| Ok((get(r, "client_id")?, get(r, "last_used_at")?)))
                .collect()
        })
    }

    fn user_by_saml_link<'a>(
        &'a self,
        org_id: i64,
        name_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        Box::pin(self.user_by(org_id, "saml_name_id", name_id))
    }

    fn user_by_email<'a>(
        &'a self,
        org_id: i64,
        email: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        Box::pin(async move {
            self.user_by(org_id, "lower(email)", &email.to_lowercase())
                .await
        })
    }
}
