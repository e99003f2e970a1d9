//! The domain: orgs, users (humans and service accounts), OAuth clients, secrets, scopes.
//!
//! Values that come from outside (client ids, scope names, CIDRs, grant types) are parsed
//! into the types here once, at the edge; everything past the edge can trust them.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch. The whole domain uses this one clock unit.
pub type Timestamp = i64;

/// Why a value from outside was refused by a `parse` constructor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~')
}

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Accepts 1 to
            #[doc = stringify!($max)]
            /// characters of `A-Z a-z 0-9 - _ . ~`.
            pub fn parse(s: &str) -> Result<Self, ParseError> {
                if s.is_empty() || s.len() > $max {
                    return Err(ParseError(format!(
                        concat!($what, " must be 1 to {} characters long"), $max
                    )));
                }
                if !s.chars().all(is_id_char) {
                    return Err(ParseError(concat!(
                        $what, " may contain only letters, digits, '-', '_', '.' and '~'"
                    ).to_string()));
                }
                Ok(Self(s.to_string()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_newtype!(
    /// An OAuth client identifier (RFC 6749 §2.2), unique across all orgs.
    ClientId,
    "client_id",
    128
);
id_newtype!(
    /// An org's slug, e.g. `acme`.
    OrgSlug,
    "org slug",
    63
);

/// A scope name (RFC 6749 §3.3 `scope-token`: printable ASCII but space, `"` and `\`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ScopeName(String);

impl ScopeName {
    /// Accepts 1 to 128 characters of RFC 6749's `scope-token` alphabet.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() || s.len() > 128 {
            return Err(ParseError(
                "a scope name must be 1 to 128 characters long".into(),
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !matches!(*c as u32, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
        {
            return Err(ParseError(format!(
                "a scope name may not contain {c:?} (RFC 6749 §3.3 scope-token)"
            )));
        }
        Ok(Self(s.to_string()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScopeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ScopeName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ScopeName::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The OAuth grant types Tessera knows of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    ClientCredentials,
    AuthorizationCode,
    RefreshToken,
    Password,
    /// RFC 7522: a signed assertion from the org's IdP, for the person it names.
    SamlBearer,
}

impl GrantType {
    /// Every grant type.
    pub const ALL: [GrantType; 5] = [
        GrantType::ClientCredentials,
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::Password,
        GrantType::SamlBearer,
    ];

    /// The wire spelling, e.g. `client_credentials`.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => "client_credentials",
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::Password => "password",
            GrantType::SamlBearer => "urn:ietf:params:oauth:grant-type:saml2-bearer",
        }
    }

    /// The grant types the token endpoint implements today.
    pub fn is_implemented(self) -> bool {
        true
    }

    /// Grants a person takes part in through a browser: a public client may use only
    /// these.
    pub fn is_interactive(self) -> bool {
        matches!(self, GrantType::AuthorizationCode | GrantType::RefreshToken)
    }
}

impl FromStr for GrantType {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        GrantType::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| ParseError(format!("unknown grant type '{}'", crate::text::clip(s))))
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a client authenticates at the token endpoint (RFC 7591 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// A public client (a SPA, a native app): no credential at all, PKCE mandatory,
    /// only the interactive grants.
    None,
    /// A JWT signed with one of the client's registered keys (RFC 7523 §2.2).
    PrivateKeyJwt,
}

impl AuthMethod {
    /// Every method, in the order they are documented.
    pub const ALL: [AuthMethod; 4] = [
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
        AuthMethod::PrivateKeyJwt,
        AuthMethod::None,
    ];

    /// The wire spelling, e.g. `client_secret_basic`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::None => "none",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }

    /// Whether the method authenticates with a client secret.
    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
        )
    }
}

impl FromStr for AuthMethod {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        AuthMethod::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                ParseError(format!(
                    "'{}' is not supported; use client_secret_basic, client_secret_post, private_key_jwt or none",
                    crate::text::clip(s)
                ))
            })
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A client's IP allow-list: empty means every address is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IpAllowList(Vec<IpNet>);

impl IpAllowList {
    /// Parses CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or bare addresses (a /32 or /128).
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, ParseError> {
        let mut nets = Vec::with_capacity(items.len());
        for item in items {
            let s = item.as_ref().trim();
            let net = match s.parse::<IpNet>() {
                Ok(n) => n.trunc(),
                Err(_) => match s.parse::<IpAddr>() {
                    Ok(a) => IpNet::from(a),
                    Err(_) => {
                        return Err(ParseError(format!(
                            "'{}' is neither a CIDR (10.0.0.0/8, 2001:db8::/32) nor an IP address",
                            crate::text::clip(s)
                        )));
                    }
                },
            };
            nets.push(net);
        }
        Ok(Self(nets))
    }

    /// True when the list is empty or one of its networks contains `ip`.
    /// An IPv4-mapped IPv6 source (`::ffff:10.1.2.3`) is matched as IPv4.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let ip = Self::canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// `ip` as the list matches it: an IPv4-mapped IPv6 address (`::ffff:10.1.2.3`) as
    /// the IPv4 address it carries.
    pub fn canonical(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        }
    }

    /// True when no restriction applies.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The networks, as text.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|n| n.to_string()).collect()
    }
}

/// An org: a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    pub id: i64,
    pub slug: OrgSlug,
    pub enabled: bool,
    /// Whether the org enforces SAML SSO for humans. Never affects `client_credentials`.
    pub sso_enforced: bool,
    pub created_at: Timestamp,
}

/// A human or a service account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserType {
    Human,
    Service,
}

/// A user's state. `Disabled` and `Locked` carry who did it and when in [`User`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserState {
    Active,
    Disabled,
    Locked,
}

impl UserState {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UserState::Active => "active",
            UserState::Disabled => "disabled",
            UserState::Locked => "locked",
        }
    }
}

/// Who changed an account's state: an admin, the provisioning sync, the lockout policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// An admin acting through the admin API, named by their client id.
    Admin { client_id: String },
    /// An org admin (a person with the `org_admin` role) acting in the console.
    OrgAdmin { user_id: String, username: String },
    /// The SCIM provisioning sync.
    Provisioning { source: String },
    /// The lockout policy after repeated failures (earlier versions; wrong passwords now
    /// throttle and never lock).
    LockoutPolicy,
    /// Tessera itself (bootstrap, migrations).
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Admin { client_id } => write!(f, "admin client '{client_id}'"),
            Actor::OrgAdmin { user_id, username } => {
                write!(f, "org admin '{username}' ({user_id}) in the console")
            }
            Actor::Provisioning { source } => write!(f, "the provisioning sync ({source})"),
            Actor::LockoutPolicy => f.write_str("the lockout policy"),
            Actor::System => f.write_str("Tessera"),
        }
    }
}

/// The longest display name kept, in characters: what an admin may set, and where a name
/// from an IdP is cut.
pub const DISPLAY_NAME_MAX_CHARS: usize = 256;

/// A user: a human or a service account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub org_id: i64,
    pub user_type: UserType,
    pub username: String,
    pub email: Option<String>,
    /// The person's name, from the IdP's display-name attribute or set by an admin.
    #[serde(default)]
    pub display_name: Option<String>,
    pub roles: Vec<String>,
    pub state: UserState,
    /// Who disabled or locked the account (None while active).
    pub state_changed_by: Option<Actor>,
    /// When the account was disabled or locked.
    pub state_changed_at: Option<Timestamp>,
    /// For a locked account: when the lock lifts by itself (None: until an admin unlocks).
    pub locked_until: Option<Timestamp>,
    /// argon2id PHC string; humans only.
    pub password_hash: Option<String>,
    pub created_at: Timestamp,
    /// The NameID of the user's SAML identity link, once they logged in through SSO.
    #[serde(default)]
    pub saml_name_id: Option<String>,
    /// Failed password attempts since the last success (shown to admins; throttling, not
    /// this count, slows guessing down).
    #[serde(default)]
    pub failed_logins: u32,
    /// The last successful password login or password grant.
    #[serde(default)]
    pub last_password_login_at: Option<Timestamp>,
    /// The human's link to the org's SCIM provisioning, once a provisioning client
    /// created or matched them (never on a service account).
    #[serde(default)]
    pub scim: Option<ScimLink>,
}

/// A human's link to SCIM provisioning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScimLink {
    /// The IdP's id for the person (`externalId`), unique in the org.
    pub external_id: Option<String>,
    /// The provisioning client that created or matched them.
    pub provisioned_by: String,
    pub provisioned_at: Timestamp,
    /// When SCIM deleted them: they stay, disabled, and SCIM no longer sees them.
    pub deleted_at: Option<Timestamp>,
}

/// A SCIM group: a name the org's IdP pushes, with the humans in it. Its name (or its
/// `externalId`) is looked up in the org's group mapping, the one SAML logins use, to
/// give its members roles. Only humans are ever members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScimGroup {
    pub id: String,
    pub org_id: i64,
    pub display_name: String,
    pub external_id: Option<String>,
    /// The members' user ids, sorted.
    pub members: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a change to a SCIM group writes, in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScimGroupChange {
    pub display_name: Option<String>,
    /// `Some(None)` removes the `externalId`.
    pub external_id: Option<Option<String>>,
    /// The members, all replaced (applied before `add` and `remove`).
    pub replace_members: Option<Vec<String>>,
    pub add_members: Vec<String>,
    pub remove_members: Vec<String>,
}

/// A long-lived SCIM bearer token, for IdPs that hold one static token (Okta's "HTTP
/// Header", Entra ID's "Secret Token"): bound to a provisioning client, which must still
/// hold `tessera:scim` when the token is used; stored as its SHA-256 only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScimToken {
    pub id: String,
    pub org_id: i64,
    pub client_id: String,
    /// SHA-256 of the token.
    #[serde(skip)]
    pub hash: Vec<u8>,
    /// The token's last four characters, to recognise it.
    pub hint: String,
    pub description: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

impl User {
    /// A new, active human with nothing but a name: what SAML just-in-time provisioning
    /// starts from before the IdP's attributes fill it in.
    pub fn new_human(id: String, org_id: i64, username: String, now: Timestamp) -> Self {
        User {
            id,
            org_id,
            user_type: UserType::Human,
            username,
            email: None,
            display_name: None,
            roles: vec![],
            state: UserState::Active,
            state_changed_by: None,
            state_changed_at: None,
            locked_until: None,
            password_hash: None,
            created_at: now,
            saml_name_id: None,
            failed_logins: 0,
            last_password_login_at: None,
            scim: None,
        }
    }

    /// The effective state at `now`: a lock whose time has passed reads as active.
    pub fn effective_state(&self, now: Timestamp) -> UserState {
        match (self.state, self.locked_until) {
            (UserState::Locked, Some(until)) if until <= now => UserState::Active,
            (s, _) => s,
        }
    }

    /// `enabled` as the API shows it: not disabled.
    pub fn enabled(&self) -> bool {
        self.state != UserState::Disabled
    }
}

/// An OAuth client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    pub client_id: ClientId,
    pub org_id: i64,
    pub name: String,
    pub enabled: bool,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<ScopeName>,
    pub redirect_uris: Vec<String>,
    pub auth_methods: Vec<AuthMethod>,
    pub ip_allowlist: IpAllowList,
    /// The service account the client acts as; tokens name it as `sub`.
    pub service_account_id: Option<String>,
    /// Access-token lifetime in seconds.
    pub token_ttl: i64,
    /// How the client's interactive logins (the code flow and refresh) behave.
    #[serde(default)]
    pub interactive: InteractiveSettings,
    /// The client's public keys, a JWK Set, for `private_key_jwt`.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// Where the client publishes its JWK Set instead (an `https` URL the server
    /// fetches and caches); at most one of `jwks` and `jwks_uri` is set.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    pub created_at: Timestamp,
}

impl Client {
    /// A public client: it authenticates with nothing (`none`) and holds no secret.
    pub fn is_public(&self) -> bool {
        self.auth_methods == [AuthMethod::None]
    }
}

/// A client's settings for the authorization code flow and its refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractiveSettings {
    /// PKCE (S256) on every authorization request. Always on for a public client; an
    /// admin may turn it off for a confidential one.
    pub pkce_required: bool,
    /// A refresh token family ends this long after the login, however used (seconds).
    pub refresh_token_ttl: i64,
    /// A refresh token ends when unused this long (seconds).
    pub refresh_idle_ttl: i64,
    /// Where RP-initiated logout may send the browser afterwards (exact match).
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
}

impl Default for InteractiveSettings {
    fn default() -> Self {
        Self {
            pkce_required: true,
            refresh_token_ttl: 30 * 86_400,
            refresh_idle_ttl: 7 * 86_400,
            post_logout_redirect_uris: Vec::new(),
        }
    }
}

/// A stored client secret: only its hash and a non-secret hint are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecret {
    pub id: String,
    pub client_id: ClientId,
    /// SHA-256 of the secret.
    #[serde(skip)]
    pub hash: [u8; 32],
    /// The secret's last 4 characters.
    pub hint: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub last_used_from: Option<String>,
}

impl StoredSecret {
    /// Usable at `now`: neither revoked nor past its expiry.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

/// An entry in an org's scope catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub org_id: i64,
    pub name: ScopeName,
    pub description: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_parse() {
        assert!(ClientId::parse("ci-terraform").is_ok());
        assert!(ClientId::parse("").is_err());
        assert!(ClientId::parse("a:b").is_err());
        assert!(ClientId::parse("a b").is_err());
        assert!(ClientId::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn scope_parse() {
        assert!(ScopeName::parse("admin:api").is_ok());
        assert!(ScopeName::parse("urn:genesys:cloud:admin").is_ok());
        assert!(ScopeName::parse("a b").is_err());
        assert!(ScopeName::parse("a\"b").is_err());
        assert!(ScopeName::parse("a\\b").is_err());
        assert!(ScopeName::parse("é").is_err());
    }

    #[test]
    fn allowlist_v4_v6_and_mapped() {
        let l = IpAllowList::parse(&["10.0.0.0/8", "2001:db8::/32", "192.168.1.7"]).unwrap();
        assert!(l.allows("10.1.2.3".parse().unwrap()));
        assert!(l.allows("::ffff:10.1.2.3".parse().unwrap()));
        assert!(l.allows("2001:db8::1".parse().unwrap()));
        assert!(l.allows("192.168.1.7".parse().unwrap()));
        assert!(!l.allows("192.168.1.8".parse().unwrap()));
        assert!(!l.allows("11.0.0.1".parse().unwrap()));
        assert!(IpAllowList::default().allows("1.2.3.4".parse().unwrap()));
        assert!(IpAllowList::parse(&["10.0.0.0/33"]).is_err());
        assert!(IpAllowList::parse(&["nope"]).is_err());
        // Host bits are dropped: 10.1.2.3/8 means 10.0.0.0/8.
        let l = IpAllowList::parse(&["10.1.2.3/8"]).unwrap();
        assert_eq!(l.to_strings(), vec!["10.0.0.0/8"]);
    }

    #[test]
    fn grant_type_round_trip() {
        for g in GrantType::ALL {
            assert_eq!(g.as_str().parse::<GrantType>().unwrap(), g);
        }
        assert!("implicit".parse::<GrantType>().is_err());
    }

    #[test]
    fn lock_lifts_by_itself() {
        let u = User {
            id: "u".into(),
            org_id: 1,
            user_type: UserType::Service,
            username: "svc".into(),
            email: None,
            display_name: None,
            roles: vec![],
            state: UserState::Locked,
            state_changed_by: Some(Actor::LockoutPolicy),
            state_changed_at: Some(100),
            locked_until: Some(200),
            password_hash: None,
            created_at: 0,
            saml_name_id: None,
            failed_logins: 0,
            last_password_login_at: None,
            scim: None,
        };
        assert_eq!(u.effective_state(199), UserState::Locked);
        assert_eq!(u.effective_state(200), UserState::Active);
    }
}
