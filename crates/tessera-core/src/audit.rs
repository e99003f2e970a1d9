//! Audit events: every token decision and admin change, with its reason and trace.

use serde::{Deserialize, Serialize};

use crate::trace::Trace;

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// A token request at the token endpoint.
    Token,
    /// A dry-run diagnosis (nothing issued).
    Diagnose,
    /// A change made through the admin API.
    Admin,
    /// A person's login: SAML SSO at the ACS, or a local password.
    Login,
    /// An authorization request at the authorization endpoint.
    Authorize,
    /// A refused client authentication at the introspection endpoint.
    Introspect,
    /// A token revocation (RFC 7009), or its refused client authentication.
    Revoke,
    /// A SCIM provisioning request (a change, or its refusal).
    Scim,
}

impl AuditKind {
    /// Every kind, in the order they are documented.
    pub const ALL: [AuditKind; 8] = [
        AuditKind::Token,
        AuditKind::Diagnose,
        AuditKind::Admin,
        AuditKind::Login,
        AuditKind::Authorize,
        AuditKind::Introspect,
        AuditKind::Revoke,
        AuditKind::Scim,
    ];

    /// The kind of a wire spelling.
    pub fn parse(s: &str) -> Option<AuditKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Token => "token",
            AuditKind::Diagnose => "diagnose",
            AuditKind::Admin => "admin",
            AuditKind::Login => "login",
            AuditKind::Authorize => "authorize",
            AuditKind::Introspect => "introspect",
            AuditKind::Revoke => "revoke",
            AuditKind::Scim => "scim",
        }
    }
}

/// One audit event. It holds ids, hints and descriptions, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub request_id: String,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The org, when known (an unknown client has none).
    pub org_id: Option<i64>,
    pub kind: AuditKind,
    /// Who acted: the admin client for admin changes.
    pub actor: Option<String>,
    pub client_id: Option<String>,
    pub subject: Option<String>,
    pub source_ip: Option<String>,
    /// `granted` or `denied` for token requests, `ok` for admin changes.
    pub outcome: String,
    pub reason: Option<String>,
    pub description: Option<String>,
    pub grant_type: Option<String>,
    /// The granted scopes.
    pub scope: Option<String>,
    /// The secret that authenticated the request (id and hint only).
    pub secret_id: Option<String>,
    pub secret_hint: Option<String>,
    /// The decision trace (token events), or the change made (admin events).
    pub trace: Trace,
    /// What an admin change did, e.g. `{"op": "update_user", "enabled": false}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<serde_json::Value>,
}

/// Filters for listing audit events; every field narrows the list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub client_id: Option<String>,
    pub subject: Option<String>,
    pub outcome: Option<String>,
    pub reason: Option<String>,
    pub kind: Option<AuditKind>,
    /// Only events older than this request id (paging backwards).
    pub before: Option<String>,
    pub limit: u32,
}
