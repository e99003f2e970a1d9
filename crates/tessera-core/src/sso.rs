//! An org's SAML SSO configuration, and what switching enforcement on would change.
//!
//! Pure data and functions: the admin API stores the configuration and shows the
//! preview; the decision function reads [`crate::model::Org::sso_enforced`] and the
//! break-glass list. Enforcement governs how *humans* authenticate; service accounts and
//! `client_credentials` are never subject to it, and the preview says so with a count.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::model::{Client, GrantType, Timestamp, User, UserType};

/// How far back "recently" looks in the enforcement-impact preview: 90 days.
pub const RECENT_SECONDS: i64 = 90 * 24 * 3600;

/// The default allowance for clock differences between the IdP and Tessera, in seconds.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u32 = 60;

/// An org's SAML SSO configuration (the IdP, the mapping, and the enforcement
/// exemptions). Whether enforcement is on is [`crate::model::Org::sso_enforced`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SsoConfig {
    /// The IdP's entity id: the Issuer of its responses.
    pub idp_entity_id: Option<String>,
    /// Where AuthnRequests go (HTTP-Redirect binding).
    pub idp_sso_url: Option<String>,
    /// The IdP's signing certificates, PEM; more than one while the IdP rotates.
    pub idp_certificates: Vec<String>,
    /// The NameID format asked for, e.g. `urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress`.
    pub name_id_format: Option<String>,
    /// The attribute holding the email (absent: the NameID when it is an email).
    pub attribute_email: Option<String>,
    pub attribute_display_name: Option<String>,
    pub attribute_groups: Option<String>,
    /// IdP group → Tessera roles.
    pub group_roles: BTreeMap<String, Vec<String>>,
    /// Create unknown users at their first SSO login.
    pub jit_provisioning: bool,
    /// Accept RSA-SHA1 / SHA-1 digests (legacy IdPs only).
    pub allow_sha1: bool,
    pub clock_skew_seconds: u32,
    /// Accept responses no AuthnRequest of ours asked for.
    pub allow_idp_initiated: bool,
    /// Users exempt from enforcement (by id), so an IdP outage never locks everyone out.
    pub break_glass_user_ids: Vec<String>,
}

impl Default for SsoConfig {
    fn default() -> Self {
        Self {
            idp_entity_id: None,
            idp_sso_url: None,
            idp_certificates: Vec::new(),
            name_id_format: None,
            attribute_email: None,
            attribute_display_name: None,
            attribute_groups: None,
            group_roles: BTreeMap::new(),
            jit_provisioning: false,
            allow_sha1: false,
            clock_skew_seconds: DEFAULT_CLOCK_SKEW_SECONDS,
            allow_idp_initiated: false,
            break_glass_user_ids: Vec::new(),
        }
    }
}

impl SsoConfig {
    /// True when `user_id` is exempt from enforcement.
    pub fn is_break_glass(&self, user_id: &str) -> bool {
        self.break_glass_user_ids.iter().any(|id| id == user_id)
    }

    /// True when an IdP is configured well enough to log anyone in.
    pub fn has_idp(&self) -> bool {
        self.idp_entity_id.is_some()
            && self.idp_sso_url.is_some()
            && !self.idp_certificates.is_empty()
    }
}

/// A human whom enforcement would stop from using a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AffectedHuman {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub last_password_login_at: Option<Timestamp>,
}

/// A client whose password grants enforcement would refuse for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PasswordGrantClient {
    pub client_id: String,
    pub name: String,
    /// The password grant is enabled on the client now.
    pub password_grant_enabled: bool,
    /// The last password grant it obtained, if any.
    pub last_password_grant_at: Option<Timestamp>,
}

/// A break-glass user: exempt from enforcement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakGlassUser {
    pub id: String,
    pub username: String,
}

/// What switching enforcement on would change now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnforcementImpact {
    /// A digest of the lists below: acknowledging it proves the caller saw this preview;
    /// it changes as soon as the affected accounts do.
    pub preview_id: String,
    /// Humans without a SAML link who used a password in the last 90 days.
    pub humans_affected: Vec<AffectedHuman>,
    /// Clients with the password grant enabled or used in the last 90 days.
    pub password_grant_clients: Vec<PasswordGrantClient>,
    pub break_glass_users: Vec<BreakGlassUser>,
    /// Clients with `client_credentials`: enforcement never affects them.
    pub client_credentials_clients_unaffected: usize,
    /// Service accounts: enforcement never affects them either.
    pub service_accounts_unaffected: usize,
}

/// The enforcement-impact preview over the org's users and clients. `password_uses`
/// holds each client's last password grant.
pub fn enforcement_impact(
    config: &SsoConfig,
    users: &[User],
    clients: &[Client],
    password_uses: &[(String, Timestamp)],
    now: Timestamp,
) -> EnforcementImpact {
    let since = now - RECENT_SECONDS;
    let humans_affected: Vec<AffectedHuman> = users
        .iter()
        .filter(|u| {
            u.user_type == UserType::Human
                && u.saml_name_id.is_none()
                && !config.is_break_glass(&u.id)
                && u.last_password_login_at.is_some_and(|t| t >= since)
        })
        .map(|u| AffectedHuman {
            id: u.id.clone(),
            username: u.username.clone(),
            email: u.email.clone(),
            last_password_login_at: u.last_password_login_at,
        })
        .collect();
    let last_use = |id: &str| {
        password_uses
            .iter()
            .filter(|(c, _)| c == id)
            .map(|(_, t)| *t)
            .max()
    };
    let password_grant_clients: Vec<PasswordGrantClient> = clients
        .iter()
        .filter_map(|c| {
            let enabled = c.grant_types.contains(&GrantType::Password);
            let last = last_use(c.client_id.as_str()).filter(|t| *t >= since);
            (enabled || last.is_some()).then(|| PasswordGrantClient {
                client_id: c.client_id.to_string(),
                name: c.name.clone(),
                password_grant_enabled: enabled,
                last_password_grant_at: last,
            })
        })
        .collect();
    let break_glass_users: Vec<BreakGlassUser> = users
        .iter()
        .filter(|u| config.is_break_glass(&u.id))
        .map(|u| BreakGlassUser {
            id: u.id.clone(),
            username: u.username.clone(),
        })
        .collect();
    let client_credentials_clients_unaffected = clients
        .iter()
        .filter(|c| c.grant_types.contains(&GrantType::ClientCredentials))
        .count();
    let service_accounts_unaffected = users
        .iter()
        .filter(|u| u.user_type == UserType::Service)
        .count();

    // The id covers who is affected, not when they last logged in: a preview stays
    // valid while the same accounts are on it.
    let mut canon = String::new();
    for h in &humans_affected {
        canon.push_str("h:");
        canon.push_str(&h.id);
        canon.push('\n');
    }
    for c in &password_grant_clients {
        canon.push_str("c:");
        canon.push_str(&c.client_id);
        canon.push('\n');
    }
    for b in &break_glass_users {
        canon.push_str("b:");
        canon.push_str(&b.id);
        canon.push('\n');
    }
    canon.push_str(&format!("n:{client_credentials_clients_unaffected}"));
    let digest = ring::digest::digest(&ring::digest::SHA256, canon.as_bytes());
    let preview_id = format!("imp_{}", URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]));

    EnforcementImpact {
        preview_id,
        humans_affected,
        password_grant_clients,
        break_glass_users,
        client_credentials_clients_unaffected,
        service_accounts_unaffected,
    }
}
