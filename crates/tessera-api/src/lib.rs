//! Wire types of Tessera's admin REST API (`/api/v2`), shared by the server and the CLI.
//!
//! Field names here are contract (the design's "Field names that outside tests rely on"):
//! fields may be added, never renamed. Times are RFC 3339 strings in UTC.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The scope the admin API requires.
pub const ADMIN_SCOPE: &str = "tessera:admin";

/// The scope SCIM provisioning (`/scim/v2/{org}/`) requires; in every org's catalogue.
pub const SCIM_SCOPE: &str = "tessera:scim";

/// The body of every admin API error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiErrorBody {
    /// A stable code: `invalid_field`, `not_found`, `conflict`, `invalid_token`, ...
    pub error: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The offending field (JSON path), when one is at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub request_id: String,
}

/// `POST /api/v2/scopes`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateScope {
    /// RFC 6749 §3.3 scope-token: printable ASCII without space, `"` or `\`.
    #[schema(min_length = 1, max_length = 128, pattern = r#"^[!#-\[\]-~]+$"#)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub description: String,
}

/// A scope of the org's catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScopeView {
    pub name: String,
    pub description: String,
    /// One of the OpenID Connect scopes every org has (`openid`, `profile`, `email`,
    /// `offline_access`): for people's logins, open to every client, never created or
    /// deleted.
    #[serde(default)]
    pub builtin: bool,
}

/// `POST /api/v2/users`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[serde(rename = "type")]
    #[schema(pattern = "^(human|service)$")]
    pub user_type: String,
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._@+-]+$")]
    pub username: String,
    #[serde(default)]
    pub email: Option<String>,
    /// The person's name, as shown to admins (SSO logins update it from the IdP).
    #[serde(default)]
    #[schema(max_length = 256)]
    pub display_name: Option<String>,
    /// Humans only.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `PATCH /api/v2/users/{id}`: every field optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchUser {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub display_name: Option<String>,
    /// `active` unlocks (and enables); `locked` locks, until `locked_until` if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(active|disabled|locked)$")]
    pub state: Option<String>,
    /// Only with `"state": "locked"`: when the lock lifts (RFC 3339, in the future).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub locked_until: Option<String>,
}

/// Who changed an account's state, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActorView {
    /// `admin` (an admin client), `org_admin` (a person in the console),
    /// `provisioning`, `lockout_policy` or `system`.
    pub kind: String,
    /// The admin's client id, for `admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// A person-readable description, e.g. `admin client 'acme-admin'`.
    pub description: String,
}

/// A user or service account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub org: String,
    #[serde(rename = "type")]
    pub user_type: String,
    pub username: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    /// The NameID of the SAML identity this user logs in with (set at their first SSO
    /// login, by link or email); none for local-only users.
    pub saml_name_id: Option<String>,
    pub enabled: bool,
    pub roles: Vec<String>,
    /// `active`, `disabled` or `locked`.
    pub state: String,
    pub disabled_by: Option<ActorView>,
    pub disabled_at: Option<String>,
    pub locked_by: Option<ActorView>,
    pub locked_at: Option<String>,
    pub locked_until: Option<String>,
    pub has_password: bool,
    pub created_at: String,
    /// Where the account comes from: `local` (created here), `saml` (linked at an SSO
    /// login) or `scim` (provisioned by the org's IdP).
    pub source: String,
    /// For a provisioned person: the provisioning client, since when, the IdP's id, and
    /// when SCIM deleted them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<ProvisioningView>,
}

/// A person's link to SCIM provisioning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProvisioningView {
    pub client_id: String,
    pub since: String,
    pub external_id: Option<String>,
    pub deleted_at: Option<String>,
}

/// `GET /api/v2/users` query: `source` keeps the accounts of one origin.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// `local`, `saml` or `scim`.
    #[serde(default)]
    #[param(pattern = "^(local|saml|scim)$")]
    pub source: Option<String>,
}

/// What one login gave one client: the family of its refresh tokens (a grant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LoginGrantView {
    pub id: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    /// When the person logged in.
    pub auth_time: String,
    pub created_at: String,
    /// The family's absolute end.
    pub expires_at: String,
    /// Neither revoked nor past its end.
    pub active: bool,
    pub revoked_at: Option<String>,
    /// Why it was revoked: a reason code (`code_reused`, `refresh_token_reused`) or an
    /// event (`user_disabled`, `logout`, `revoked_by_admin`, ...).
    pub revoked_reason: Option<String>,
    /// The browser session of the login.
    pub sid: String,
}

/// `GET /api/v2/users/{id}/grants`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginGrantList {
    pub items: Vec<LoginGrantView>,
}

/// What ending a person's logins did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoggedOut {
    /// How many live grants were revoked.
    pub grants_revoked: u64,
}

/// `POST /api/v2/oauth/clients`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    /// Chosen by the caller, or generated.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._~-]+$")]
    pub client_id: Option<String>,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
    #[serde(default)]
    pub service_account_id: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods: Option<Vec<String>>,
    /// Access-token lifetime in seconds (60 to 86400; default 3600).
    #[serde(default)]
    #[schema(minimum = 60, maximum = 86400)]
    pub access_token_ttl: Option<i64>,
    /// PKCE on every authorization request (default true; always true for a public
    /// client).
    #[serde(default)]
    pub pkce_required: Option<bool>,
    /// A refresh token family's absolute lifetime in seconds (300 to 31536000; default
    /// 2592000, 30 days).
    #[serde(default)]
    #[schema(minimum = 300, maximum = 31536000)]
    pub refresh_token_ttl: Option<i64>,
    /// How long a refresh token may stay unused, in seconds (300 to 31536000; default
    /// 604800, 7 days).
    #[serde(default)]
    #[schema(minimum = 300, maximum = 31536000)]
    pub refresh_token_idle_ttl: Option<i64>,
    /// The client's public keys, a JWK Set (`{"keys": [...]}`), for `private_key_jwt`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    /// Or where the client publishes them: an `https` URL the server fetches and caches
    /// (`http` only to a host the operator trusts). At most one of `jwks` and `jwks_uri`.
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub jwks_uri: Option<String>,
    /// Where RP-initiated logout may send the browser afterwards (exact URIs).
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
}

/// `PATCH /api/v2/oauth/clients/{client_id}`: every field optional. A JSON `null`
/// `service_account_id` detaches the service account.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchClient {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_allowlist: Option<Vec<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    #[schema(value_type = Option<String>)]
    pub service_account_id: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uris: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_methods: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_ttl: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkce_required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 300, maximum = 31536000)]
    pub refresh_token_ttl: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 300, maximum = 31536000)]
    pub refresh_token_idle_ttl: Option<i64>,
    /// Replaces the client's JWK Set (and drops its `jwks_uri`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    /// Replaces where the client publishes its keys (and drops its `jwks`); `null`
    /// removes it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    #[schema(value_type = Option<String>, max_length = 2048)]
    pub jwks_uri: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_logout_redirect_uris: Option<Vec<String>>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Ok(Some(Option::deserialize(d)?))
    }

    pub fn serialize<S: Serializer>(v: &Option<Option<String>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }
}

/// A client secret's metadata (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretView {
    pub id: String,
    /// The secret's last 4 characters.
    pub hint: String,
    /// Usable now: not revoked, not past its expiry.
    pub active: bool,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
    pub last_used_from: Option<String>,
}

/// An OAuth client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClientView {
    pub client_id: String,
    pub org: String,
    pub name: String,
    pub enabled: bool,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_methods: Vec<String>,
    pub ip_allowlist: Vec<String>,
    pub service_account_id: Option<String>,
    pub access_token_ttl: i64,
    /// PKCE on every authorization request.
    pub pkce_required: bool,
    pub refresh_token_ttl: i64,
    pub refresh_token_idle_ttl: i64,
    /// The client's public keys for `private_key_jwt`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    /// Where the client publishes its keys, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub created_at: String,
    pub secrets: Vec<SecretView>,
    /// Present once, in the answer to the call that created the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// `POST /api/v2/oauth/clients/{client_id}/secrets`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the previous secret(s) stay valid, in seconds (default 3600; 0 ends them now).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2592000)]
    pub grace_seconds: Option<i64>,
}

/// The answer to a rotation: the new secret, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RotatedSecret {
    pub id: String,
    pub client_secret: String,
    pub hint: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    /// The previous secrets and when they now expire.
    pub previous: Vec<SecretView>,
}

/// One step of a decision trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TraceStep {
    pub check: String,
    /// `pass`, `fail` or `skip`.
    pub verdict: String,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEventView {
    pub request_id: String,
    pub time: String,
    pub org: Option<String>,
    /// `token`, `diagnose`, `admin`, `login`, `authorize`, `introspect`, `revoke` or `scim`.
    pub kind: String,
    pub actor: Option<String>,
    pub client_id: Option<String>,
    pub subject: Option<String>,
    pub source_ip: Option<String>,
    /// `granted` or `denied` (token), `ok` (admin).
    pub outcome: String,
    pub reason: Option<String>,
    pub description: Option<String>,
    pub grant_type: Option<String>,
    pub scope: Option<String>,
    pub secret_id: Option<String>,
    pub secret_hint: Option<String>,
    pub trace: Vec<TraceStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<serde_json::Value>,
}

/// `GET /api/v2/audit/events`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEventList {
    pub events: Vec<AuditEventView>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<String>,
}

macro_rules! list {
    ($(#[$doc:meta])* $name:ident, $item:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
        pub struct $name {
            pub items: Vec<$item>,
        }
    };
}

list!(
    /// `GET /api/v2/users`.
    UserList,
    UserView
);
list!(
    /// `GET /api/v2/oauth/clients`.
    ClientList,
    ClientView
);
list!(
    /// `GET /api/v2/scopes`.
    ScopeList,
    ScopeView
);
list!(
    /// `GET /api/v2/oauth/clients/{client_id}/secrets`.
    SecretList,
    SecretView
);

/// `POST /api/v2/oauth/diagnose`: what a caller would send.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiagnoseRequest {
    pub client_id: String,
    /// Optional: without it the secret check is skipped (and the trace says so).
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default = "default_grant")]
    pub grant_type: String,
    #[serde(default)]
    pub scope: Option<String>,
    /// The caller's address as the token endpoint would see it (default 127.0.0.1).
    #[serde(default)]
    pub source_ip: Option<String>,
    /// `client_secret_basic` (default) or `client_secret_post`.
    #[serde(default)]
    #[schema(pattern = "^(client_secret_basic|client_secret_post)$")]
    pub auth_method: Option<String>,
}

fn default_grant() -> String {
    "client_credentials".into()
}

/// The dry run's answer: the decision the token endpoint would make.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DiagnoseResponse {
    /// `granted` or `denied`.
    pub outcome: String,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// The scopes a token would carry.
    pub scope: Option<String>,
    pub trace: Vec<TraceStep>,
    /// The id of the dry run's own audit event.
    pub request_id: String,
}

/// `POST /api/v2/oauth/diagnose/authorize`: a dry run of an authorization request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiagnoseAuthorizeRequest {
    /// The authorization URL the application sends people to, or just its query string.
    #[schema(min_length = 1, max_length = 8192, pattern = "[?=]")]
    pub url: String,
    /// Decide as if this person's browser had a live session (else: no session).
    #[serde(default)]
    pub user_id: Option<String>,
    /// How that session began: `saml` (default) or `password`.
    #[serde(default)]
    #[schema(pattern = "^(saml|password)$")]
    pub session_method: Option<String>,
}

/// The dry run's answer: what the authorization endpoint would do.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DiagnoseAuthorizeResponse {
    /// `code`, `login` (the person logs in first), `error_redirect` (back to the client)
    /// or `error_page` (shown, never redirected).
    pub outcome: String,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// Where the answer would go, once verified.
    pub redirect_uri: Option<String>,
    /// For `login`: `sso` (the org's IdP) or `password` (the login page).
    pub login: Option<String>,
    /// For `code`: the scopes the code would carry.
    pub scope: Option<String>,
    pub trace: Vec<TraceStep>,
    pub request_id: String,
}

/// `POST /api/v2/signing-keys/rotate` (the body is optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSigningKey {
    /// `ES256`, `RS256` or `EdDSA`; default: the server's `signing_alg` (ES256 unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "EdDSA")]
    pub alg: Option<String>,
}

/// The answer to a signing key rotation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RotatedSigningKey {
    pub kid: String,
    /// The new key's algorithm.
    pub alg: String,
    pub previous_key_published_for_seconds: i64,
}

/// `POST /api/v2/saml/encryption-keys/rotate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSamlEncryptionKey {
    /// How long the previous key still decrypts, in days (1 to 365, default 30): the
    /// time to give every IdP the new certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 365)]
    pub overlap_days: Option<u32>,
}

/// One of the SAML SP's encryption keys.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SamlEncryptionKeyView {
    pub kid: String,
    /// The key published in every org's SP metadata (`use="encryption"`).
    pub current: bool,
    pub created_at: String,
    /// A previous key still decrypts until then.
    pub decrypts_until: Option<String>,
    /// The certificate (PEM) to upload to IdPs that do not read metadata.
    pub certificate: String,
    pub certificate_not_after: Option<String>,
}

/// `GET /api/v2/saml/encryption-keys`: the current key first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SamlEncryptionKeyList {
    pub keys: Vec<SamlEncryptionKeyView>,
}

/// The SAML binding AuthnRequests travel by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SamlBinding {
    /// HTTP-Redirect: the request in the query string, signed over the query.
    #[default]
    Redirect,
    /// HTTP-POST: an auto-submitted form carrying an enveloped-signed request.
    Post,
}

/// `PUT /api/v2/sso/saml`: the org's whole SAML configuration (fields left out take their
/// defaults). `enforced` is switched with `PATCH`, after a look at the impact.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSsoConfig {
    /// The IdP's metadata document: fills the entity id, SSO URL, certificates and NameID
    /// format (fields given explicitly win).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_metadata_xml: Option<String>,
    /// Where the IdP publishes its metadata (https): fetched now, like
    /// `idp_metadata_xml`, then refreshed on a schedule so certificate rotations reach
    /// Tessera by themselves (`[saml_metadata] refresh_seconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_metadata_url: Option<String>,
    /// The IdP's entity id: the Issuer of its responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_entity_id: Option<String>,
    /// The IdP's single sign-on URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_sso_url: Option<String>,
    /// How AuthnRequests reach it: `redirect` (default) or `post`, for IdPs that offer
    /// only HTTP-POST. From the metadata when it is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_sso_binding: Option<SamlBinding>,
    /// The IdP's Single Logout URL (from the metadata when it is given): IdP-initiated
    /// logouts are answered there, and `POST /saml/{org}/logout` sends the person there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_slo_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_slo_binding: Option<SamlBinding>,
    /// The IdP's signing certificates, PEM; several while the IdP rotates.
    #[serde(default)]
    pub idp_certificates: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_id_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute_display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute_groups: Option<String>,
    /// IdP group → Tessera roles.
    #[serde(default)]
    pub group_roles: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub jit_provisioning: bool,
    /// Accept SHA-1 signatures and digests (legacy IdPs only).
    #[serde(default)]
    pub allow_sha1: bool,
    /// Accept IdP certificates with 1024-bit RSA keys (legacy IdPs only; 2048 bits are
    /// required otherwise).
    #[serde(default)]
    pub allow_rsa_1024: bool,
    /// Allowed clock difference with the IdP, 0 to 600 seconds (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 600)]
    pub clock_skew_seconds: Option<u32>,
    #[serde(default)]
    pub allow_idp_initiated: bool,
    /// Humans exempt from enforcement (user ids), so an IdP outage locks nobody out.
    #[serde(default)]
    pub break_glass_user_ids: Vec<String>,
}

/// `PATCH /api/v2/sso/saml`: switch enforcement. Switching it on needs the id of a
/// current impact preview, or `force`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchSsoConfig {
    pub enforced: bool,
    /// From `GET /api/v2/sso/saml/enforcement-impact`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_id: Option<String>,
    /// Switch on without a preview (audited as forced).
    #[serde(default)]
    pub force: bool,
}

/// The org's SAML configuration as stored, with the service provider's own addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SsoConfigView {
    pub org: String,
    /// Humans must log in through the IdP (break-glass users excepted).
    pub enforced: bool,
    /// An IdP is configured (entity id, SSO URL and at least one certificate).
    pub configured: bool,
    pub idp_entity_id: Option<String>,
    pub idp_sso_url: Option<String>,
    pub idp_sso_binding: SamlBinding,
    pub idp_slo_url: Option<String>,
    pub idp_slo_binding: SamlBinding,
    /// The registered metadata URL, and its last refresh: when, and why it failed.
    pub idp_metadata_url: Option<String>,
    pub idp_metadata_refreshed_at: Option<String>,
    pub idp_metadata_error: Option<String>,
    pub idp_certificates: Vec<String>,
    /// What each certificate is, in the same order: check `not_after` before it expires.
    pub idp_certificate_details: Vec<CertificateView>,
    pub name_id_format: Option<String>,
    pub attribute_email: Option<String>,
    pub attribute_display_name: Option<String>,
    pub attribute_groups: Option<String>,
    pub group_roles: std::collections::BTreeMap<String, Vec<String>>,
    pub jit_provisioning: bool,
    pub allow_sha1: bool,
    pub allow_rsa_1024: bool,
    pub clock_skew_seconds: u32,
    pub allow_idp_initiated: bool,
    pub break_glass_user_ids: Vec<String>,
    /// What to give the IdP: Tessera's entity id, ACS URL and metadata for this org.
    pub sp_entity_id: String,
    pub sp_acs_url: String,
    /// Tessera's Single Logout service (HTTP-Redirect and HTTP-POST).
    pub sp_slo_url: String,
    pub sp_metadata_url: String,
    /// Where humans of this org start an SSO login.
    pub sso_login_url: String,
}

/// A human whom enforcement would stop from using a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AffectedHumanView {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub last_password_login_at: Option<String>,
    /// The SCIM provisioning client that manages this person, if one does.
    pub provisioned_by: Option<String>,
}

/// What one SCIM provisioning client did to the org's people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProvisioningSummaryView {
    pub client_id: String,
    /// Humans it provisioned that are active.
    pub active: usize,
    /// Humans it deactivated or deleted, most recent first (at most 20).
    pub deprovisioned: Vec<DeprovisionedView>,
    pub deprovisioned_total: usize,
}

/// A person provisioning turned off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeprovisionedView {
    pub id: String,
    pub username: String,
    pub at: Option<String>,
    /// SCIM deleted them (not only deactivated).
    pub deleted: bool,
}

/// A client whose password grants enforcement would refuse for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PasswordGrantClientView {
    pub client_id: String,
    pub name: String,
    pub password_grant_enabled: bool,
    pub last_password_grant_at: Option<String>,
}

/// A user exempt from enforcement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BreakGlassUserView {
    pub id: String,
    pub username: String,
}

/// `GET /api/v2/sso/saml/enforcement-impact`: what switching enforcement on would
/// change now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnforcementImpactView {
    /// Send it back in `PATCH /api/v2/sso/saml` to switch enforcement on; it changes as
    /// soon as the affected accounts do.
    pub preview_id: String,
    pub enforced: bool,
    /// Humans without a SAML link who used a password in the last 90 days.
    pub humans_affected: Vec<AffectedHumanView>,
    /// Clients with the password grant enabled or used in the last 90 days: their
    /// password grants for humans will be refused with `sso_required`.
    pub password_grant_clients: Vec<PasswordGrantClientView>,
    pub break_glass_users: Vec<BreakGlassUserView>,
    /// Clients with `client_credentials`: never affected by enforcement.
    pub client_credentials_clients_unaffected: usize,
    /// Service accounts: never affected by enforcement.
    pub service_accounts_unaffected: usize,
    /// Per SCIM provisioning client: the humans it manages and whom it turned off.
    /// Enforcement changes none of it; service accounts are never there.
    pub provisioning: Vec<ProvisioningSummaryView>,
    /// The same in one sentence.
    pub summary: String,
}

/// An IdP signing certificate, as parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertificateView {
    pub subject: String,
    pub not_before: String,
    pub not_after: String,
    /// For instance `RSA 2048` or `EC`.
    pub key: String,
    /// Past `not_after`: the IdP should have rotated it.
    pub expired: bool,
    /// Set when the certificate is not strict DER and was read leniently (what is wrong,
    /// and why it does not matter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `POST /api/v2/sso/saml/metadata/refresh`: what fetching the metadata URL now changed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MetadataRefreshView {
    /// Anything changed (certificates, URLs).
    pub changed: bool,
    /// Why the refresh failed (the configuration is then unchanged).
    pub error: Option<String>,
    pub certificates_added: Vec<CertificateView>,
    pub certificates_removed: Vec<CertificateView>,
    /// Certificates the IdP still publishes that are past `not_after`.
    pub certificates_expired: Vec<CertificateView>,
    /// Other changes, as `field: old → new`.
    pub fields_changed: Vec<String>,
    pub config: SsoConfigView,
}

/// `POST /api/v2/scim/tokens`: a long-lived SCIM token for an IdP that holds one static
/// token (Okta's "HTTP Header", Entra ID's "Secret Token").
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateScimToken {
    /// The provisioning client the token acts as: a client of the org holding
    /// `tessera:scim`. The token works only while the client does (enabled, holding the
    /// scope, its service account active).
    #[schema(min_length = 1, max_length = 128)]
    pub client_id: String,
    /// Days until the token expires (default 365).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 730)]
    pub expires_in_days: Option<i64>,
    /// What it is for ("Okta production").
    #[serde(default)]
    #[schema(max_length = 200)]
    pub description: Option<String>,
}

/// A SCIM token's metadata (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScimTokenView {
    pub id: String,
    pub client_id: String,
    /// The token's last 4 characters.
    pub hint: String,
    pub description: Option<String>,
    /// Usable now: not revoked, not expired (its client must still be entitled too).
    pub active: bool,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    /// Recorded at most once a minute.
    pub last_used_at: Option<String>,
}

/// A new SCIM token: the token itself is shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScimTokenCreated {
    /// `tscim_…`: give it to the IdP as its bearer token.
    pub token: String,
    /// The SCIM base URL to give the IdP with it.
    pub scim_base_url: String,
    #[serde(flatten)]
    pub view: ScimTokenView,
}

/// `GET /api/v2/scim/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScimTokenList {
    pub items: Vec<ScimTokenView>,
}
