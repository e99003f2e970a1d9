//! Row mapping shared by the backends: a stored row becomes a domain value the same way
//! on SQLite and on PostgreSQL. Only the SQL differs between backends; what a column
//! holds (JSON text, Unix seconds, a hash's bytes) is the same.

use std::borrow::Cow;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Postgres, Row, Sqlite};
use tessera_core::audit::{AuditEvent, AuditKind};
use tessera_core::interactive::{AuthCode, LoginGrant};
use tessera_core::model::{
    Client, ClientId, IpAllowList, Org, OrgSlug, ScimGroup, ScimLink, ScimToken, StoredSecret, User,
};
use tessera_core::session::Session;
use tessera_core::store::{StoreError, StoreResult};
use tessera_core::trace::Trace;

/// A column value both drivers decode.
pub(crate) trait Value:
    for<'r> sqlx::Decode<'r, Sqlite>
    + sqlx::Type<Sqlite>
    + for<'r> sqlx::Decode<'r, Postgres>
    + sqlx::Type<Postgres>
{
}

impl<T> Value for T where
    T: for<'r> sqlx::Decode<'r, Sqlite>
        + sqlx::Type<Sqlite>
        + for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Postgres>
{
}

/// A row of either driver, read by column name.
pub(crate) trait Fields {
    fn field<T: Value>(&self, col: &str) -> Result<T, sqlx::Error>;
}

impl Fields for SqliteRow {
    fn field<T: Value>(&self, col: &str) -> Result<T, sqlx::Error> {
        self.try_get(col)
    }
}

impl Fields for PgRow {
    fn field<T: Value>(&self, col: &str) -> Result<T, sqlx::Error> {
        self.try_get(col)
    }
}

/// A column's value.
pub(crate) fn get<T: Value>(row: &impl Fields, col: &str) -> StoreResult<T> {
    row.field(col)
        .map_err(|e| StoreError::Backend(format!("column {col}: {e}")))
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("domain values serialise to JSON")
}

pub(crate) fn from_json<T: DeserializeOwned>(s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Backend(format!("stored JSON is corrupt: {e}")))
}

pub(crate) fn org_from(row: &impl Fields) -> StoreResult<Org> {
    Ok(Org {
        id: get(row, "id")?,
        slug: OrgSlug::parse(&get::<String>(row, "slug")?).map_err(|e| StoreError::Backend(e.0))?,
        enabled: get(row, "enabled")?,
        sso_enforced: get(row, "sso_enforced")?,
        created_at: get(row, "created_at")?,
    })
}

pub(crate) fn user_from(row: &impl Fields) -> StoreResult<User> {
    let user_type: String = get(row, "user_type")?;
    let state: String = get(row, "state")?;
    let by: Option<String> = get(row, "state_changed_by")?;
    Ok(User {
        id: get(row, "id")?,
        org_id: get(row, "org_id")?,
        user_type: from_json(&format!("\"{user_type}\""))?,
        username: get(row, "username")?,
        email: get(row, "email")?,
        display_name: get(row, "display_name")?,
        roles: from_json(&get::<String>(row, "roles")?)?,
        state: from_json(&format!("\"{state}\""))?,
        state_changed_by: by.map(|b| from_json(&b)).transpose()?,
        state_changed_at: get(row, "state_changed_at")?,
        locked_until: get(row, "locked_until")?,
        password_hash: get(row, "password_hash")?,
        created_at: get(row, "created_at")?,
        saml_name_id: get(row, "saml_name_id")?,
        failed_logins: get::<i64>(row, "failed_logins")?.clamp(0, u32::MAX as i64) as u32,
        last_password_login_at: get(row, "last_password_login_at")?,
        scim: get::<Option<String>>(row, "scim_provisioned_by")?
            .map(|provisioned_by| -> StoreResult<ScimLink> {
                Ok(ScimLink {
                    external_id: get(row, "scim_external_id")?,
                    provisioned_by,
                    provisioned_at: get(row, "scim_provisioned_at")?,
                    deleted_at: get(row, "scim_deleted_at")?,
                })
            })
            .transpose()?,
    })
}

pub(crate) fn client_from(row: &impl Fields) -> StoreResult<Client> {
    Ok(Client {
        client_id: ClientId::parse(&get::<String>(row, "client_id")?)
            .map_err(|e| StoreError::Backend(e.0))?,
        org_id: get(row, "org_id")?,
        name: get(row, "name")?,
        enabled: get(row, "enabled")?,
        grant_types: from_json(&get::<String>(row, "grant_types")?)?,
        scopes: from_json(&get::<String>(row, "scopes")?)?,
        redirect_uris: from_json(&get::<String>(row, "redirect_uris")?)?,
        auth_methods: from_json(&get::<String>(row, "auth_methods")?)?,
        ip_allowlist: from_json::<IpAllowList>(&get::<String>(row, "ip_allowlist")?)?,
        service_account_id: get(row, "service_account_id")?,
        token_ttl: get(row, "token_ttl")?,
        interactive: from_json(&get::<String>(row, "interactive")?)?,
        jwks: get::<Option<String>>(row, "jwks")?
            .map(|j| from_json(&j))
            .transpose()?,
        jwks_uri: get(row, "jwks_uri")?,
        created_at: get(row, "created_at")?,
    })
}

pub(crate) fn secret_from(row: &impl Fields) -> StoreResult<StoredSecret> {
    let hash: Vec<u8> = get(row, "hash")?;
    Ok(StoredSecret {
        id: get(row, "id")?,
        client_id: ClientId::parse(&get::<String>(row, "client_id")?)
            .map_err(|e| StoreError::Backend(e.0))?,
        hash: hash
            .try_into()
            .map_err(|_| StoreError::Backend("a stored secret hash is not 32 bytes".into()))?,
        hint: get(row, "hint")?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
        revoked_at: get(row, "revoked_at")?,
        last_used_at: get(row, "last_used_at")?,
        last_used_from: get(row, "last_used_from")?,
    })
}

/// A SCIM group without its members (read from their own table).
pub(crate) fn scim_group_from(row: &impl Fields) -> StoreResult<ScimGroup> {
    Ok(ScimGroup {
        id: get(row, "id")?,
        org_id: get(row, "org_id")?,
        display_name: get(row, "display_name")?,
        external_id: get(row, "external_id")?,
        members: Vec::new(),
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

/// Puts each (group, user) pair in its group's member list.
pub(crate) fn attach_members(groups: &mut [ScimGroup], members: Vec<(String, String)>) {
    let index: std::collections::HashMap<String, usize> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.id.clone(), i))
        .collect();
    for (group_id, user_id) in members {
        if let Some(&i) = index.get(&group_id) {
            groups[i].members.push(user_id);
        }
    }
}

pub(crate) fn scim_token_from(row: &impl Fields) -> StoreResult<ScimToken> {
    Ok(ScimToken {
        id: get(row, "id")?,
        org_id: get(row, "org_id")?,
        client_id: get(row, "client_id")?,
        hash: get(row, "hash")?,
        hint: get(row, "hint")?,
        description: get(row, "description")?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
        revoked_at: get(row, "revoked_at")?,
        last_used_at: get(row, "last_used_at")?,
    })
}

pub(crate) fn audit_from(row: &impl Fields) -> StoreResult<AuditEvent> {
    let kind: String = get(row, "kind")?;
    let change: Option<String> = get(row, "change")?;
    Ok(AuditEvent {
        request_id: get(row, "request_id")?,
        time_ms: get(row, "time_ms")?,
        org_id: get(row, "org_id")?,
        kind: from_json::<AuditKind>(&format!("\"{kind}\""))?,
        actor: get(row, "actor")?,
        client_id: get(row, "client_id")?,
        subject: get(row, "subject")?,
        source_ip: get(row, "source_ip")?,
        outcome: get(row, "outcome")?,
        reason: get(row, "reason")?,
        description: get(row, "description")?,
        grant_type: get(row, "grant_type")?,
        scope: get(row, "scope")?,
        secret_id: get(row, "secret_id")?,
        secret_hint: get(row, "secret_hint")?,
        trace: Trace::from_stored(&get::<String>(row, "trace")?)
            .ok_or_else(|| StoreError::Backend("a stored trace is corrupt".into()))?,
        change: change.map(|c| from_json(&c)).transpose()?,
    })
}

pub(crate) fn code_from(r: &impl Fields) -> StoreResult<AuthCode> {
    Ok(AuthCode {
        hash: get(r, "code_hash")?,
        grant_id: get(r, "grant_id")?,
        org_id: get(r, "org_id")?,
        client_id: get(r, "client_id")?,
        user_id: get(r, "user_id")?,
        redirect_uri: get(r, "redirect_uri")?,
        scopes: from_json(&get::<String>(r, "scopes")?)?,
        code_challenge: get(r, "code_challenge")?,
        nonce: get(r, "nonce")?,
        auth_time: get(r, "auth_time")?,
        sid: get(r, "sid")?,
        auth_method: get(r, "auth_method")?,
        created_at: get(r, "created_at")?,
        expires_at: get(r, "expires_at")?,
        used_at: get(r, "used_at")?,
    })
}

pub(crate) fn session_from(r: &impl Fields) -> StoreResult<Session> {
    Ok(Session {
        id_hash: get(r, "id_hash")?,
        org_id: get(r, "org_id")?,
        user_id: get(r, "user_id")?,
        method: get(r, "method")?,
        created_at: get(r, "created_at")?,
        last_seen_at: get(r, "last_seen_at")?,
    })
}

pub(crate) fn grant_from(r: &impl Fields) -> StoreResult<LoginGrant> {
    Ok(LoginGrant {
        id: get(r, "id")?,
        org_id: get(r, "org_id")?,
        client_id: get(r, "client_id")?,
        user_id: get(r, "user_id")?,
        scopes: from_json(&get::<String>(r, "scopes")?)?,
        nonce: get(r, "nonce")?,
        auth_time: get(r, "auth_time")?,
        sid: get(r, "sid")?,
        auth_method: get(r, "auth_method")?,
        created_at: get(r, "created_at")?,
        expires_at: get(r, "expires_at")?,
        revoked_at: get(r, "revoked_at")?,
        revoked_reason: get(r, "revoked_reason")?,
    })
}

/// One audit column's value, for either driver.
pub(crate) enum Cell<'a> {
    Int(Option<i64>),
    Text(Option<Cow<'a, str>>),
}

/// The last use of each client secret a batch of audit events names: (secret id, time
/// in seconds, source address) from its latest token event (the later event when two
/// share a second), one per secret, sorted by id. Written with the batch, in its
/// transaction: under load most events of a batch name the same secret, so this is one
/// row update where a per-event trigger made one per event. The order is the same
/// everywhere, so two batches (or a batch and a rotation) lock secrets' rows in the same
/// order and cannot deadlock. A sort, not a search per event: a batch may hold
/// thousands of events with as many secrets.
pub(crate) fn secret_last_uses(events: &[AuditEvent]) -> Vec<(&str, i64, Option<&str>)> {
    // Newest event first, so after the stable sort the first of each secret's run is its
    // latest use, and a tie goes to the later event.
    let mut uses: Vec<(&str, i64, Option<&str>)> = events
        .iter()
        .rev()
        .filter(|e| e.kind == AuditKind::Token)
        .filter_map(|e| {
            Some((
                e.secret_id.as_deref()?,
                e.time_ms / 1000,
                e.source_ip.as_deref(),
            ))
        })
        .collect();
    uses.sort_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(&a.1)));
    uses.dedup_by(|later, first| later.0 == first.0);
    uses
}

/// An event's values in [`audit_insert_sql`]'s column order: the one place that order is
/// written for both appenders.
pub(crate) fn audit_row(ev: &AuditEvent) -> [Cell<'_>; 17] {
    use Cell::{Int, Text};
    fn text(s: &str) -> Cell<'_> {
        Text(Some(Cow::Borrowed(s)))
    }
    fn opt(s: &Option<String>) -> Cell<'_> {
        Text(s.as_deref().map(Cow::Borrowed))
    }
    [
        text(&ev.request_id),
        Int(Some(ev.time_ms)),
        Int(ev.org_id),
        Text(Some(Cow::Borrowed(ev.kind.as_str()))),
        opt(&ev.actor),
        opt(&ev.client_id),
        opt(&ev.subject),
        opt(&ev.source_ip),
        text(&ev.outcome),
        opt(&ev.reason),
        opt(&ev.description),
        opt(&ev.grant_type),
        opt(&ev.scope),
        opt(&ev.secret_id),
        opt(&ev.secret_hint),
        Text(Some(Cow::Owned(ev.trace.to_compact()))),
        Text(ev.change.as_ref().map(|c| Cow::Owned(to_json(c)))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::trace::Trace;

    fn event(kind: AuditKind, secret: Option<&str>, time_ms: i64, ip: &str) -> AuditEvent {
        AuditEvent {
            request_id: format!("r{time_ms}{ip}"),
            time_ms,
            org_id: Some(1),
            kind,
            actor: None,
            client_id: Some("c".into()),
            subject: None,
            source_ip: Some(ip.into()),
            outcome: "granted".into(),
            reason: None,
            description: None,
            grant_type: None,
            scope: None,
            secret_id: secret.map(str::to_string),
            secret_hint: None,
            trace: Trace::default(),
            change: None,
        }
    }

    #[test]
    fn a_batch_gives_each_secret_its_latest_use_once_in_id_order() {
        let t = AuditKind::Token;
        let events = [
            event(t, Some("s2"), 5_000, "10.0.0.1"),
            event(t, Some("s1"), 7_000, "10.0.0.2"),
            event(t, None, 9_000, "10.0.0.3"),
            // An event committed late with an older time does not move the use back.
            event(t, Some("s1"), 6_000, "10.0.0.4"),
            // The same second: the later event's address wins.
            event(t, Some("s2"), 5_500, "10.0.0.5"),
            // Only token events count.
            event(AuditKind::Admin, Some("s3"), 9_000, "10.0.0.6"),
        ];
        assert_eq!(
            secret_last_uses(&events),
            vec![("s1", 7, Some("10.0.0.2")), ("s2", 5, Some("10.0.0.5")),]
        );
        assert!(secret_last_uses(&[]).is_empty());
    }
}
