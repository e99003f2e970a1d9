//! Each table's columns, named: a `SELECT *` prepared on a connection keeps the column
//! list it was prepared with, so a column added later (a migration) would not match
//! the rows it then returns. Macros, so queries stay string literals (`concat!`).

macro_rules! clients_cols {
    () => {
        "client_id, org_id, name, enabled, grant_types, scopes, redirect_uris, auth_methods, ip_allowlist, service_account_id, token_ttl, created_at, interactive, jwks, jwks_uri"
    };
}
pub(crate) use clients_cols;

macro_rules! users_cols {
    () => {
        "id, org_id, user_type, username, email, roles, state, state_changed_by, state_changed_at, locked_until, password_hash, created_at, saml_name_id, failed_logins, last_password_login_at, display_name, scim_external_id, scim_provisioned_by, scim_provisioned_at, scim_deleted_at"
    };
}
pub(crate) use users_cols;

macro_rules! orgs_cols {
    () => {
        "id, slug, enabled, sso_enforced, created_at"
    };
}
pub(crate) use orgs_cols;

macro_rules! signing_keys_cols {
    () => {
        "kid, alg, sealed, created_at, retired_at, remove_after, purpose, certificate"
    };
}
pub(crate) use signing_keys_cols;

macro_rules! sessions_cols {
    () => {
        "id_hash, org_id, user_id, method, created_at, last_seen_at"
    };
}
pub(crate) use sessions_cols;

macro_rules! login_grants_cols {
    () => {
        "id, org_id, client_id, user_id, scopes, nonce, auth_time, sid, created_at, expires_at, revoked_at, revoked_reason, auth_method"
    };
}
pub(crate) use login_grants_cols;

macro_rules! auth_codes_cols {
    () => {
        "code_hash, grant_id, org_id, client_id, user_id, redirect_uri, scopes, code_challenge, nonce, auth_time, sid, created_at, expires_at, used_at, auth_method"
    };
}
pub(crate) use auth_codes_cols;

macro_rules! client_secrets_cols {
    () => {
        "id, client_id, hash, hint, created_at, expires_at, revoked_at, last_used_at, last_used_from"
    };
}
pub(crate) use client_secrets_cols;

macro_rules! scopes_cols {
    () => {
        "org_id, name, description"
    };
}
pub(crate) use scopes_cols;

macro_rules! audit_events_cols {
    () => {
        "seq, request_id, time_ms, org_id, kind, actor, client_id, subject, source_ip, outcome, reason, description, grant_type, scope, secret_id, secret_hint, trace, change"
    };
}
pub(crate) use audit_events_cols;

macro_rules! scim_groups_cols {
    () => {
        "id, org_id, display_name, external_id, created_at, updated_at"
    };
}
pub(crate) use scim_groups_cols;

macro_rules! scim_tokens_cols {
    () => {
        "id, org_id, client_id, hash, hint, description, created_at, expires_at, revoked_at, last_used_at"
    };
}
pub(crate) use scim_tokens_cols;
