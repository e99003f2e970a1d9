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

/// The SAML binding an AuthnRequest travels by (SAML bindings §3.4, §3.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SsoBinding {
    /// HTTP-Redirect: the request in the query, signed over the query string.
    #[default]
    Redirect,
    /// HTTP-POST: the request in an auto-submitted form, with an enveloped signature.
    Post,
}

impl SsoBinding {
    /// The name used in the API and the configuration (`redirect`, `post`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redirect => "redirect",
            Self::Post => "post",
        }
    }

    /// The binding's URI, as metadata names it.
    pub fn uri(self) -> &'static str {
        match self {
            Self::Redirect => "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect",
            Self::Post => "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
        }
    }
}

/// An org's SAML SSO configuration (the IdP, the mapping, and the enforcement
/// exemptions). Whether enforcement is on is [`crate::model::Org::sso_enforced`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SsoConfig {
    /// The IdP's entity id: the Issuer of its responses.
    pub idp_entity_id: Option<String>,
    /// Where AuthnRequests go.
    pub idp_sso_url: Option<String>,
    /// How they go there: HTTP-Redirect (a signed query) or HTTP-POST (an auto-submitted
    /// form carrying an enveloped-signed request), for IdPs that offer only POST.
    pub idp_sso_binding: SsoBinding,
    /// Where the IdP publishes its metadata: fetched when set and refreshed on a
    /// schedule, so certificate rotations reach Tessera without an admin.
    pub idp_metadata_url: Option<String>,
    /// The last refresh of `idp_metadata_url`: when it ran, and why it failed if it did.
    pub metadata_refreshed_at: Option<Timestamp>,
    pub metadata_error: Option<String>,
    /// The IdP's Single Logout service, if it has one: where LogoutRequests and
    /// LogoutResponses go, and by which binding.
    pub idp_slo_url: Option<String>,
    pub idp_slo_binding: SsoBinding,
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
    /// Accept IdP certificates with 1024-bit RSA keys (legacy IdPs only).
    pub allow_rsa_1024: bool,
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
            idp_sso_binding: SsoBinding::Redirect,
            idp_metadata_url: None,
            metadata_refreshed_at: None,
            metadata_error: None,
            idp_slo_url: None,
            idp_slo_binding: SsoBinding::Redirect,
            idp_certificates: Vec::new(),
            name_id_format: None,
            attribute_email: None,
            attribute_display_name: None,
            attribute_groups: None,
            group_roles: BTreeMap::new(),
            jit_provisioning: false,
            allow_sha1: false,
            allow_rsa_1024: false,
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
    /// The provisioning client that manages them, if SCIM does (the IdP knows them).
    pub provisioned_by: Option<String>,
}

/// What one provisioning client did to the org's people: enforcement does not change
/// it, but an admin rolling SSO out sees who the IdP manages and whom it turned off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvisioningSummary {
    pub client_id: String,
    /// Humans it provisioned that are active.
    pub active: usize,
    /// Humans it disabled or deleted, most recent first (at most
    /// [`DEPROVISIONED_SHOWN`]).
    pub deprovisioned: Vec<Deprovisioned>,
    /// How many it disabled or deleted in all.
    pub deprovisioned_total: usize,
}

/// A person provisioning turned off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deprovisioned {
    pub id: String,
    pub username: String,
    /// When it was disabled (or deleted).
    pub at: Option<Timestamp>,
    /// SCIM deleted them (not only deactivated).
    pub deleted: bool,
}

/// How many deprovisioned people a summary lists.
pub const DEPROVISIONED_SHOWN: usize = 20;

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
    /// Per provisioning client, the humans SCIM manages and whom it turned off (service
    /// accounts are never among them: SCIM cannot reach them).
    pub provisioning: Vec<ProvisioningSummary>,
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
            provisioned_by: u
                .scim
                .as_ref()
                .filter(|l| l.deleted_at.is_none())
                .map(|l| l.provisioned_by.clone()),
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
        provisioning: provisioning_summary(users, now),
    }
}

/// Who each provisioning client manages, and whom it (not an admin) turned off.
fn provisioning_summary(users: &[User], now: Timestamp) -> Vec<ProvisioningSummary> {
    use crate::model::{Actor, UserState};
    fn of<'m>(
        by: &'m mut BTreeMap<String, ProvisioningSummary>,
        client: &str,
    ) -> &'m mut ProvisioningSummary {
        by.entry(client.to_string())
            .or_insert_with(|| ProvisioningSummary {
                client_id: client.to_string(),
                active: 0,
                deprovisioned: vec![],
                deprovisioned_total: 0,
            })
    }
    let mut by: BTreeMap<String, ProvisioningSummary> = BTreeMap::new();
    for u in users.iter().filter(|u| u.user_type == UserType::Human) {
        let Some(link) = &u.scim else { continue };
        of(&mut by, &link.provisioned_by);
        let state = u.effective_state(now);
        let turned_off_by = match (&u.state_changed_by, state) {
            (Some(Actor::Provisioning { source }), UserState::Disabled) => Some(source.as_str()),
            _ if link.deleted_at.is_some() => Some(link.provisioned_by.as_str()),
            _ => None,
        };
        match turned_off_by {
            Some(client) => {
                let s = of(&mut by, client);
                s.deprovisioned_total += 1;
                s.deprovisioned.push(Deprovisioned {
                    id: u.id.clone(),
                    username: u.username.clone(),
                    at: link.deleted_at.or(u.state_changed_at),
                    deleted: link.deleted_at.is_some(),
                });
            }
            None if state == UserState::Active => of(&mut by, &link.provisioned_by).active += 1,
            None => {}
        }
    }
    by.into_values()
        .map(|mut s| {
            s.deprovisioned
                .sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.id.cmp(&b.id)));
            s.deprovisioned.truncate(DEPROVISIONED_SHOWN);
            s
        })
        .collect()
}

/// A verified SAML identity, read through the org's attribute mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlIdentity {
    pub name_id: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub groups: Vec<String>,
}

impl SsoConfig {
    /// Reads the mapped attributes of a verified assertion. Without an email attribute,
    /// a NameID that looks like an address is the email.
    pub fn identity(
        &self,
        name_id: &str,
        attributes: &BTreeMap<String, Vec<String>>,
    ) -> SamlIdentity {
        let first = |name: &Option<String>| {
            name.as_ref()
                .and_then(|n| attributes.get(n))
                .and_then(|v| v.first())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let email = first(&self.attribute_email).or_else(|| {
            (name_id.contains('@') && !name_id.contains(char::is_whitespace))
                .then(|| name_id.to_string())
        });
        let groups = self
            .attribute_groups
            .as_ref()
            .and_then(|n| attributes.get(n))
            .cloned()
            .unwrap_or_default();
        SamlIdentity {
            name_id: name_id.to_string(),
            email,
            // What an IdP sends is shown to admins: no control characters, bounded.
            display_name: first(&self.attribute_display_name).map(|n| {
                n.chars()
                    .filter(|c| !c.is_control())
                    .take(crate::model::DISPLAY_NAME_MAX_CHARS)
                    .collect()
            }),
            groups,
        }
    }

    /// Whether a SAML login replaces the user's roles with those its groups map to: only
    /// when the org names the attribute that carries groups and maps some. (An org whose
    /// IdP pushes groups by SCIM instead sends none in assertions; its logins must not
    /// wipe the roles SCIM gave.)
    pub fn roles_from_assertions(&self) -> bool {
        !self.group_roles.is_empty() && self.attribute_groups.is_some()
    }

    /// The roles `groups` map to, sorted and without repeats.
    pub fn roles_for(&self, groups: &[String]) -> Vec<String> {
        let mut roles: Vec<String> = groups
            .iter()
            .filter_map(|g| self.group_roles.get(g))
            .flatten()
            .cloned()
            .collect();
        roles.sort();
        roles.dedup();
        roles
    }
}

/// What a verified SAML login does to the org's users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginPlan {
    /// The user linked to this NameID, updated from the assertion.
    Linked(User),
    /// A human with the same email and no link yet: linked now (once), and updated.
    LinkedByEmail(User),
    /// Nobody yet, and just-in-time provisioning is on: created.
    Provisioned(User),
    /// Refused, with the reason and a detail for the audit trail.
    Refused(crate::Reason, String),
}

/// Decides a verified SAML login: the user linked to the NameID, else a human with the
/// same email (linked once), else a new user when JIT provisioning is on. Disabled and
/// locked accounts are refused; service accounts never log in through SSO.
pub fn plan_saml_login(
    config: &SsoConfig,
    identity: &SamlIdentity,
    by_link: Option<User>,
    by_email: Option<User>,
    new_user: impl FnOnce() -> User,
    now: Timestamp,
) -> LoginPlan {
    use crate::Reason;
    use crate::model::UserState;
    let update = |mut u: User| {
        if let Some(e) = &identity.email {
            u.email = Some(e.clone());
        }
        if let Some(n) = &identity.display_name {
            u.display_name = Some(n.clone());
        }
        if config.roles_from_assertions() {
            u.roles = config.roles_for(&identity.groups);
        }
        u.saml_name_id = Some(identity.name_id.clone());
        u
    };
    let usable = |u: &User| -> Result<(), (Reason, String)> {
        if u.user_type == UserType::Service {
            return Err((
                Reason::SamlUserUnknown,
                format!(
                    "'{}' is a service account: service accounts never log in through SSO",
                    u.username
                ),
            ));
        }
        match u.effective_state(now) {
            UserState::Active => Ok(()),
            UserState::Disabled => Err((
                Reason::UserDisabled,
                format!("user '{}' is disabled", u.username),
            )),
            UserState::Locked => Err((
                Reason::UserLocked,
                format!(
                    "user '{}' is locked{}",
                    u.username,
                    u.locked_until
                        .map(|t| format!(" until {}", crate::text::rfc3339(t)))
                        .unwrap_or_default()
                ),
            )),
        }
    };
    // A concurrent login may have linked this NameID between the caller's two reads: the
    // user found by email is then the linked one, not a conflict.
    let (by_link, by_email) = match (by_link, by_email) {
        (None, Some(u)) if u.saml_name_id.as_deref() == Some(identity.name_id.as_str()) => {
            (Some(u), None)
        }
        other => other,
    };
    if let Some(u) = by_link {
        return match usable(&u) {
            Ok(()) => LoginPlan::Linked(update(u)),
            Err((reason, detail)) => LoginPlan::Refused(reason, detail),
        };
    }
    if let Some(u) = by_email
        && u.user_type == UserType::Human
    {
        if let Some(other) = &u.saml_name_id {
            return LoginPlan::Refused(
                Reason::SamlUserUnknown,
                format!(
                    "the email belongs to user '{}', who is linked to another SAML identity ('{}'); an admin must resolve the conflict",
                    u.username,
                    crate::text::clip(other)
                ),
            );
        }
        return match usable(&u) {
            Ok(()) => LoginPlan::LinkedByEmail(update(u)),
            Err((reason, detail)) => LoginPlan::Refused(reason, detail),
        };
    }
    if !config.jit_provisioning {
        return LoginPlan::Refused(
            Reason::SamlUserUnknown,
            format!(
                "no user is linked to NameID '{}'{} and just-in-time provisioning is off; an admin can create the user (with this email) or turn jit_provisioning on",
                crate::text::clip(&identity.name_id),
                identity
                    .email
                    .as_ref()
                    .map(|e| format!(" or has email '{}'", crate::text::clip(e)))
                    .unwrap_or_default()
            ),
        );
    }
    LoginPlan::Provisioned(update(new_user()))
}

/// An SP-initiated login in progress, kept server-side under the opaque RelayState
/// handle until the response arrives (once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlPending {
    pub handle: String,
    pub org_id: i64,
    /// The AuthnRequest id the response must answer.
    pub request_id: String,
    /// Where the person goes after logging in (checked when the login started).
    pub return_to: String,
    pub expires_at: Timestamp,
}

/// How long a login may take between the redirect to the IdP and the response.
pub const PENDING_SECONDS: i64 = 10 * 60;

/// Pending logins one source (an IPv4 address, an IPv6 /64) may have at once (an office
/// behind one NAT starting its morning logins stays well below it).
pub const PENDING_PER_SOURCE: u32 = 100;

/// Pending logins one org may have at once, from all sources together: with
/// `return_to` at most [`crate::session::MAX_RETURN_TO`] bytes, about 25 MB of database
/// per org at the worst; a flood against one org leaves the others' logins alone.
pub const PENDING_PER_ORG: u32 = 10_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reason;
    use crate::model::UserState;

    fn human(id: &str, email: &str, link: Option<&str>) -> User {
        User {
            id: id.into(),
            org_id: 1,
            user_type: UserType::Human,
            username: id.into(),
            email: Some(email.into()),
            display_name: None,
            roles: vec!["old".into()],
            state: UserState::Active,
            state_changed_by: None,
            state_changed_at: None,
            locked_until: None,
            password_hash: None,
            created_at: 0,
            saml_name_id: link.map(str::to_string),
            failed_logins: 0,
            last_password_login_at: None,
            scim: None,
        }
    }

    fn config(jit: bool) -> SsoConfig {
        SsoConfig {
            attribute_email: Some("mail".into()),
            attribute_groups: Some("groups".into()),
            group_roles: [("eng".to_string(), vec!["developer".to_string()])].into(),
            jit_provisioning: jit,
            ..SsoConfig::default()
        }
    }

    fn identity(c: &SsoConfig) -> SamlIdentity {
        let attrs: BTreeMap<String, Vec<String>> = [
            ("mail".to_string(), vec!["Alice@Example.com".to_string()]),
            ("groups".to_string(), vec!["eng".into(), "other".into()]),
            ("name".to_string(), vec!["Alice\u{7}  Liddell".to_string()]),
        ]
        .into();
        c.identity("nid-1", &attrs)
    }

    #[test]
    fn display_name_is_mapped_cleaned_and_kept_when_absent() {
        let c = SsoConfig {
            attribute_display_name: Some("name".into()),
            ..config(true)
        };
        let id = identity(&c);
        assert_eq!(id.display_name.as_deref(), Some("Alice  Liddell"));
        let mut known = human("a", "a@x", Some("nid-1"));
        known.display_name = Some("Old".into());
        match plan_saml_login(&c, &id, Some(known.clone()), None, || known.clone(), 0) {
            LoginPlan::Linked(u) => assert_eq!(u.display_name.as_deref(), Some("Alice  Liddell")),
            other => panic!("{other:?}"),
        }
        // An assertion without the attribute leaves the stored name alone.
        let without = config(true).identity("nid-1", &BTreeMap::new());
        match plan_saml_login(&c, &without, Some(known.clone()), None, || known.clone(), 0) {
            LoginPlan::Linked(u) => assert_eq!(u.display_name.as_deref(), Some("Old")),
            other => panic!("{other:?}"),
        }
        let long = SsoConfig {
            attribute_display_name: Some("name".into()),
            ..SsoConfig::default()
        }
        .identity("n", &[("name".to_string(), vec!["x".repeat(1000)])].into());
        assert_eq!(long.display_name.map(|n| n.chars().count()), Some(256));
    }

    /// The preview says whom each provisioning client manages and whom it turned off,
    /// apart from what an admin did; service accounts never appear there.
    #[test]
    fn the_preview_shows_what_provisioning_did() {
        use crate::model::{Actor, ScimLink};
        let link = |by: &str, deleted: Option<i64>| {
            Some(ScimLink {
                external_id: None,
                provisioned_by: by.into(),
                provisioned_at: 1,
                deleted_at: deleted,
            })
        };
        let by_scim = |by: &str| Some(Actor::Provisioning { source: by.into() });
        let mut users = vec![];
        // Active, provisioned by okta, who still uses a password: affected, and named.
        let mut a = human("a", "a@x", None);
        a.scim = link("cli_okta", None);
        a.last_password_login_at = Some(900);
        users.push(a);
        // Deactivated by okta at 50; deleted by okta at 70; disabled by an admin.
        let mut b = human("b", "b@x", None);
        (b.scim, b.state, b.state_changed_by, b.state_changed_at) = (
            link("cli_okta", None),
            UserState::Disabled,
            by_scim("cli_okta"),
            Some(50),
        );
        users.push(b);
        let mut c = human("c", "c@x", None);
        (c.scim, c.state, c.state_changed_by, c.state_changed_at) = (
            link("cli_okta", Some(70)),
            UserState::Disabled,
            by_scim("cli_okta"),
            Some(70),
        );
        users.push(c);
        let mut d = human("d", "d@x", None);
        (d.scim, d.state, d.state_changed_by) = (
            link("cli_entra", None),
            UserState::Disabled,
            Some(Actor::Admin {
                client_id: "adm".into(),
            }),
        );
        users.push(d);
        let mut svc = human("svc", "s@x", None);
        svc.user_type = UserType::Service;
        users.push(svc);
        let i = enforcement_impact(&SsoConfig::default(), &users, &[], &[], 1_000);
        assert_eq!(
            i.humans_affected
                .iter()
                .map(|h| (h.id.as_str(), h.provisioned_by.as_deref()))
                .collect::<Vec<_>>(),
            vec![("a", Some("cli_okta"))]
        );
        let okta = &i.provisioning[1];
        assert_eq!((okta.client_id.as_str(), okta.active), ("cli_okta", 1));
        assert_eq!(okta.deprovisioned_total, 2);
        assert_eq!(
            okta.deprovisioned
                .iter()
                .map(|d| (d.id.as_str(), d.at, d.deleted))
                .collect::<Vec<_>>(),
            vec![("c", Some(70), true), ("b", Some(50), false)]
        );
        // Entra ID provisioned d, but an admin disabled d: not provisioning's doing.
        let entra = &i.provisioning[0];
        assert_eq!(
            (
                entra.client_id.as_str(),
                entra.active,
                entra.deprovisioned_total
            ),
            ("cli_entra", 0, 0)
        );
        assert_eq!(i.service_accounts_unaffected, 1);
    }

    /// Without an attribute carrying groups (an org whose IdP pushes groups by SCIM), a
    /// login keeps the roles the user has.
    #[test]
    fn roles_come_from_assertions_only_when_they_carry_groups() {
        let mut c = config(false);
        c.attribute_groups = None;
        assert!(!c.roles_from_assertions());
        let id = identity(&c);
        let mut linked = human("a", "a@x", Some("nid-1"));
        linked.roles = vec!["from-scim".into()];
        match plan_saml_login(&c, &id, Some(linked), None, || human("n", "x@y", None), 0) {
            LoginPlan::Linked(u) => assert_eq!(u.roles, vec!["from-scim"]),
            other => panic!("{other:?}"),
        }
        assert!(config(false).roles_from_assertions());
    }

    #[test]
    fn link_then_email_then_jit() {
        let c = config(false);
        let id = identity(&c);
        assert_eq!(id.email.as_deref(), Some("Alice@Example.com"));
        assert_eq!(c.roles_for(&id.groups), vec!["developer"]);
        let fresh = || human("new", "x@y", None);
        match plan_saml_login(
            &c,
            &id,
            Some(human("a", "a@x", Some("nid-1"))),
            None,
            fresh,
            0,
        ) {
            LoginPlan::Linked(u) => {
                assert_eq!(u.roles, vec!["developer"]);
                assert_eq!(u.email.as_deref(), Some("Alice@Example.com"));
            }
            other => panic!("{other:?}"),
        }
        match plan_saml_login(&c, &id, None, Some(human("a", "a@x", None)), fresh, 0) {
            LoginPlan::LinkedByEmail(u) => assert_eq!(u.saml_name_id.as_deref(), Some("nid-1")),
            other => panic!("{other:?}"),
        }
        // An email already linked to another identity is never re-linked.
        assert!(matches!(
            plan_saml_login(
                &c,
                &id,
                None,
                Some(human("a", "a@x", Some("nid-2"))),
                fresh,
                0
            ),
            LoginPlan::Refused(Reason::SamlUserUnknown, _)
        ));
        // Linked to this very identity by a concurrent login between the two reads: the
        // same user, not a conflict.
        match plan_saml_login(
            &c,
            &id,
            None,
            Some(human("a", "a@x", Some("nid-1"))),
            fresh,
            0,
        ) {
            LoginPlan::Linked(u) => assert_eq!(u.username, "a"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            plan_saml_login(&c, &id, None, None, fresh, 0),
            LoginPlan::Refused(Reason::SamlUserUnknown, _)
        ));
        match plan_saml_login(&config(true), &id, None, None, fresh, 0) {
            LoginPlan::Provisioned(u) => {
                assert_eq!(u.saml_name_id.as_deref(), Some("nid-1"));
                assert_eq!(u.roles, vec!["developer"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn disabled_locked_and_service_accounts_are_refused() {
        let c = config(true);
        let id = identity(&c);
        let fresh = || human("new", "x@y", None);
        let mut d = human("a", "a@x", Some("nid-1"));
        d.state = UserState::Disabled;
        assert!(matches!(
            plan_saml_login(&c, &id, Some(d), None, fresh, 0),
            LoginPlan::Refused(Reason::UserDisabled, _)
        ));
        let mut l = human("a", "a@x", Some("nid-1"));
        l.state = UserState::Locked;
        l.locked_until = Some(100);
        assert!(matches!(
            plan_saml_login(&c, &id, Some(l.clone()), None, fresh, 50),
            LoginPlan::Refused(Reason::UserLocked, _)
        ));
        assert!(matches!(
            plan_saml_login(&c, &id, Some(l), None, fresh, 100),
            LoginPlan::Linked(_)
        ));
        let mut s = human("svc", "a@x", Some("nid-1"));
        s.user_type = UserType::Service;
        assert!(matches!(
            plan_saml_login(&c, &id, Some(s), None, fresh, 0),
            LoginPlan::Refused(Reason::SamlUserUnknown, _)
        ));
    }
}
