//! The one decision function for token requests.
//!
//! [`decide`] is deterministic over (request, stored facts, clock): the token endpoint,
//! the audit trail, the admin "explain" view and the dry-run diagnosis all call it, so the
//! trace an admin reads is the decision that was made. The caller loads [`Facts`] for the
//! presented client id first ([`facts_key`] says which), and applies the side effects the
//! [`Decision`] asks for (throttle update, audit event, token issuance).
//!
//! Client authentication ([`client`]) is shared by every grant; then one module per grant
//! decides what only that grant checks, with the person checks ([`person`]) and the scope
//! check ([`scope`]) shared where a grant needs them. The login page's decision
//! ([`login`]) runs the same person checks without a client.

mod authorization_code;
mod authorize;
mod client;
mod client_credentials;
mod login;
mod password;
mod person;
mod refresh_token;
mod saml_bearer;
mod scope;

use std::sync::Arc;

use crate::interactive::{AuthCode, LoginGrant, RefreshToken};
use crate::model::{Client, GrantType, Org, ScopeName, StoredSecret, Timestamp, User};
use crate::reason::Reason;
use crate::request::{
    ClientHint, ClientRequest, GrantRequest, PresentedClient, RawTokenRequest, TokenRequest,
    parse_token_request, request_from_fields,
};
use crate::secret::SecretString;
use crate::throttle::{AttemptOutcome, ThrottlePolicy, ThrottleState};
use crate::trace::{Denial, Trace};

pub use authorize::{
    AuthorizeDecision, AuthorizeFacts, AuthorizeOutcome, AuthorizeParams, CodeToIssue,
    SessionFacts, decide_authorize,
};
pub use login::{LoginDecision, LoginFacts, decide_login};
pub use person::{LoginUpdate, PersonFacts, ResourceOwnerFacts};
pub use saml_bearer::{BearerAssertion, SamlBearerFacts, SamlBearerWrite};

/// Everything stored that a decision about one client needs.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The client and what hangs off it; `None` when no client has the presented id.
    /// Shared: the store may hand out the same cached facts to many requests.
    pub client: Option<Arc<ClientFacts>>,
    /// The failure record of (presented client id, source address).
    pub throttle: ThrottleState,
    /// What the request's grant reads besides the client.
    pub grant: GrantFacts,
    /// The `jti` of the request's client assertion was already used by this client.
    pub assertion_seen: bool,
    /// The JWK Set at the client's `jwks_uri`, as the server last fetched it, or why
    /// it could not be fetched; `None` when nothing was fetched for this request.
    pub remote_jwks: Option<Result<Arc<serde_json::Value>, String>>,
}

/// What a grant's checks read besides the client, one variant per grant that needs
/// anything ([`GrantFacts::None`] for `client_credentials`).
#[derive(Debug, Clone, Default)]
pub enum GrantFacts {
    #[default]
    None,
    /// The password grant: the person the username names.
    Password(Box<PersonFacts>),
    /// The code exchange: the code, and the user it names as they are now.
    Code(Box<CodeFacts>),
    /// A refresh: the token with its grant, and the user as they are now.
    Refresh(Box<RefreshFacts>),
    /// The SAML bearer grant: the assertion's verdict and the users it may name.
    SamlBearer(Box<SamlBearerFacts>),
}

/// What an authorization code exchange reads.
#[derive(Debug, Clone, Default)]
pub struct CodeFacts {
    /// The code with the presented code's hash, if any is stored.
    pub code: Option<AuthCode>,
    /// The user the code names.
    pub user: Option<User>,
}

/// What a refresh reads.
#[derive(Debug, Clone, Default)]
pub struct RefreshFacts {
    /// The presented token and its grant, if the token is known.
    pub token: Option<(RefreshToken, LoginGrant)>,
    /// The grant's user.
    pub user: Option<User>,
    /// The org's SSO configuration lists the user as exempt from enforcement.
    pub break_glass: bool,
}

impl Facts {
    /// The person facts of a password grant, to fill in once they are known.
    pub fn person_mut(&mut self) -> Option<&mut PersonFacts> {
        match &mut self.grant {
            GrantFacts::Password(p) => Some(p),
            _ => None,
        }
    }
}

/// A client with its secrets, org, service account and the org's scope catalogue.
#[derive(Debug, Clone)]
pub struct ClientFacts {
    pub client: Client,
    pub secrets: Vec<StoredSecret>,
    /// Shared: a store may hand the same org to the facts of all its clients.
    pub org: Arc<Org>,
    pub service_account: Option<User>,
    /// The org's scope catalogue, to tell unknown scopes from ones not granted (shared
    /// like the org).
    pub known_scopes: Arc<[ScopeName]>,
}

/// What a granted request receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub client_id: String,
    pub org: String,
    /// The token's subject: the service account's id, or the client id.
    pub subject: String,
    pub scopes: Vec<String>,
    pub ttl: i64,
    /// For a person's login through a client (the code flow and refresh): what comes
    /// with the access token.
    pub login: Option<Box<LoginIssue>>,
}

/// What a token of a person's login carries besides the access token: the grant it
/// belongs to, the refresh token to issue, the ID token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginIssue {
    /// The grant (refresh token family) the tokens belong to.
    pub grant_id: String,
    /// The browser session of the login (`sid`).
    pub sid: String,
    pub auth_time: Timestamp,
    /// The authorization request's `nonce`, for the ID token of a code exchange.
    pub nonce: Option<String>,
    /// Issue an ID token (`openid` was granted).
    pub id_token: bool,
    /// Issue a refresh token that ends when unused until then (the client may use the
    /// `refresh_token` grant); `None`: no refresh token.
    pub refresh_idle_until: Option<Timestamp>,
    /// The person, for the ID token's claims.
    pub user: User,
}

/// What the decision asks the caller to do to stored grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantEffect {
    /// Mark the code used (only if nobody did first) and start its grant.
    Redeem {
        code_hash: Vec<u8>,
        grant: Box<LoginGrant>,
    },
    /// Mark the refresh token used (only if nobody did first) and store the next one.
    Rotate { old_hash: Vec<u8> },
    /// Start a grant that no code carried (the SAML bearer grant) with its first refresh
    /// token.
    Start { grant: Box<LoginGrant> },
    /// Revoke a grant: what a reused code or refresh token had issued.
    Revoke { grant_id: String, reason: Reason },
}

/// The secret a request authenticated with (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretUse {
    pub id: String,
    pub hint: String,
}

/// A decision and its trace, with the context the audit trail records.
#[derive(Debug, Clone)]
pub struct Decision {
    pub outcome: Result<Grant, Denial>,
    pub trace: Trace,
    /// The client id as presented, once known.
    pub client_id: Option<String>,
    /// The client's org, once the client is known.
    pub org_id: Option<i64>,
    pub org_slug: Option<String>,
    /// The subject (service account) when known.
    pub subject: Option<String>,
    pub grant_type: Option<GrantType>,
    /// The secret that matched, if any.
    pub secret_used: Option<SecretUse>,
    /// The throttle record to store after this decision (a failure or a reset), if any.
    pub throttle_update: Option<ThrottleState>,
    /// What a password attempt changes on the user's record, if anything.
    pub login_update: Option<LoginUpdate>,
    /// How the person's attempt ended for their throttle records (`None`: the password
    /// check was not reached).
    pub person_attempt: Option<AttemptOutcome>,
    /// A grant the audit trail records with a reason of its own (a break-glass login).
    pub grant_reason: Option<Reason>,
    /// What to do to stored grants (code and refresh token use, replay revocation).
    pub grant_effect: Option<GrantEffect>,
    /// A client assertion's `jti` to remember (single use), once it passed.
    pub assertion_use: Option<AssertionUse>,
    /// What a granted SAML bearer assertion writes (its single use, the person).
    /// Boxed: it is large and rare, and a decision is moved several times per request.
    pub saml_bearer_write: Option<Box<SamlBearerWrite>>,
}

/// A verified client assertion's id and end: remembered so it works once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionUse {
    pub jti: String,
    pub expires_at: Timestamp,
}

impl Decision {
    /// A decision not made yet: refused with an empty description until it is.
    fn new() -> Self {
        Decision {
            outcome: Err(Denial {
                reason: Reason::BodyMalformed,
                description: String::new(),
                retry_after: None,
            }),
            trace: Trace::default(),
            client_id: None,
            org_id: None,
            org_slug: None,
            subject: None,
            grant_type: None,
            secret_used: None,
            throttle_update: None,
            login_update: None,
            person_attempt: None,
            grant_reason: None,
            grant_effect: None,
            assertion_use: None,
            saml_bearer_write: None,
        }
    }

    /// The reason of a refusal.
    pub fn reason(&self) -> Option<Reason> {
        self.outcome.as_ref().err().map(|d| d.reason)
    }
}

/// Options of a decision that are not stored facts.
#[derive(Debug, Clone, Copy)]
pub struct DecideOptions {
    pub throttle: ThrottlePolicy,
    /// The account-wide ceiling of a person's failed passwords from all addresses.
    pub account_throttle: ThrottlePolicy,
    /// A dry run (diagnosis): never changes the throttle record.
    pub dry_run: bool,
    /// This server's issuer URL: client assertions must name it (or an endpoint of it).
    pub issuer: &'static str,
    /// Checks a human password against its stored hash (argon2id; tests use a cheap one).
    /// The token endpoint runs password grants off the async runtime because of it.
    pub verify_password: fn(&SecretString, &str) -> bool,
}

impl Default for DecideOptions {
    fn default() -> Self {
        Self {
            throttle: ThrottlePolicy::default(),
            account_throttle: ThrottlePolicy::account_ceiling(),
            dry_run: false,
            issuer: "",
            verify_password: crate::secret::verify_password,
        }
    }
}

/// A parsed request: the first half of a decision.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub request: Result<TokenRequest, Denial>,
    pub trace: Trace,
    /// The client the request names, even when parsing failed after learning it.
    pub hint: Option<ClientHint>,
}

/// Parses the raw request: the first half of a decision.
pub fn parse(raw: &RawTokenRequest<'_>) -> Parsed {
    let mut trace = Trace::default();
    let mut hint = None;
    let request = parse_token_request(raw, &mut trace, &mut hint);
    Parsed {
        request,
        trace,
        hint,
    }
}

/// A request given field by field (the dry run), parsed like [`parse`] parses an
/// encoded one.
pub fn parse_fields(
    grant_type: &str,
    client: PresentedClient,
    scope: Option<&str>,
    params: &[(&str, &str)],
    source_ip: std::net::IpAddr,
) -> Parsed {
    let mut trace = Trace::default();
    let hint = Some(ClientHint {
        client_id: client.client_id.clone(),
        basic_without_colon: false,
    });
    let request = request_from_fields(grant_type, client, scope, params, source_ip, &mut trace);
    Parsed {
        request,
        trace,
        hint,
    }
}

/// The client id whose [`Facts`] the decision needs, if the request names one.
pub fn facts_key(parsed: &Parsed) -> Option<&str> {
    match &parsed.request {
        Ok(r) => Some(r.client.client_id.as_str()),
        Err(_) => parsed.hint.as_ref().map(|h| h.client_id.as_str()),
    }
}

/// Decides a parsed token request over the stored facts at `now`.
pub fn decide(parsed: Parsed, facts: &Facts, now: Timestamp, opts: DecideOptions) -> Decision {
    let Parsed {
        request,
        mut trace,
        hint,
    } = parsed;
    let mut d = Decision::new();
    if let Some(cf) = &facts.client {
        // The request names a client that exists: its org sees this decision.
        d.org_id = Some(cf.org.id);
        d.org_slug = Some(cf.org.slug.to_string());
        d.client_id = Some(cf.client.client_id.to_string());
    }
    d.outcome = match request {
        Err(mut denial) => {
            if let (Some(h), Some(cf)) = (&hint, &facts.client)
                && h.basic_without_colon
                && let Some(detail) = trace.amend_failure(&format!(
                    "; it decodes to the client id '{}' alone: encode '{}:<client_secret>'",
                    cf.client.client_id, cf.client.client_id
                ))
            {
                denial.description = detail;
            }
            Err(denial)
        }
        Ok(req) => {
            d.client_id = Some(req.client.client_id.clone());
            d.grant_type = Some(req.grant_type());
            decide_grant(&req, facts, now, opts, &mut trace, &mut d)
        }
    };
    d.trace = trace;
    d
}

/// The checks every grant shares (the client's), then the grant's own: one match over
/// what the request asks for.
fn decide_grant(
    req: &TokenRequest,
    facts: &Facts,
    now: Timestamp,
    opts: DecideOptions,
    trace: &mut Trace,
    d: &mut Decision,
) -> Result<Grant, Denial> {
    let cf = client::authenticate(&req.client, req.source_ip, facts, now, opts, trace, d)?;
    client::check_grant_allowed(cf, req.grant_type(), trace)?;
    match &req.grant {
        GrantRequest::ClientCredentials => client_credentials::decide(req, cf, now, trace, d),
        GrantRequest::Password(creds) => {
            password::decide(req, creds, facts, cf, now, opts, trace, d)
        }
        GrantRequest::AuthorizationCode(exchange) => {
            authorization_code::decide(exchange, facts, cf, now, opts, trace, d)
        }
        GrantRequest::RefreshToken(_) => refresh_token::decide(req, facts, cf, now, opts, trace, d),
        GrantRequest::SamlBearer(_) => {
            saml_bearer::decide(req, facts, cf, now, opts.dry_run, trace, d)
        }
    }
}

/// A parsed request to an endpoint that authenticates a client without a grant
/// (introspection, revocation).
#[derive(Debug, Clone)]
pub struct ParsedClient {
    pub request: Result<ClientRequest, Denial>,
    pub trace: Trace,
    pub hint: Option<ClientHint>,
}

impl ParsedClient {
    /// The client id whose facts the decision needs.
    pub fn facts_key(&self) -> Option<&str> {
        match &self.request {
            Ok(r) => Some(r.client.client_id.as_str()),
            Err(_) => self.hint.as_ref().map(|h| h.client_id.as_str()),
        }
    }
}

/// Parses such a request (see [`crate::request::parse_client_request`]).
pub fn parse_client(raw: &RawTokenRequest<'_>, public_ok: bool) -> ParsedClient {
    let mut trace = Trace::default();
    let mut hint = None;
    let request = crate::request::parse_client_request(raw, public_ok, &mut trace, &mut hint);
    ParsedClient {
        request,
        trace,
        hint,
    }
}

/// A decision about a client alone: its authentication and the checks every request of
/// the client passes (enabled, org, IP allow-list), with the effects of a token
/// decision's client part.
#[derive(Debug, Clone)]
pub struct ClientDecision {
    /// The authenticated client and what it asked, or the refusal.
    pub outcome: Result<(Arc<ClientFacts>, ClientRequest), Denial>,
    pub trace: Trace,
    pub client_id: Option<String>,
    pub org_id: Option<i64>,
    pub secret_used: Option<SecretUse>,
    /// The throttle record to store after this decision, if any.
    pub throttle_update: Option<ThrottleState>,
    /// A client assertion's `jti` to remember, once it passed.
    pub assertion_use: Option<AssertionUse>,
}

/// Decides a client-only request over the client's facts at `now`.
pub fn decide_client(
    parsed: ParsedClient,
    facts: &Facts,
    now: Timestamp,
    opts: DecideOptions,
) -> ClientDecision {
    let ParsedClient {
        request,
        mut trace,
        hint: _,
    } = parsed;
    let mut d = Decision::new();
    d.client_id = facts
        .client
        .as_ref()
        .map(|c| c.client.client_id.to_string());
    d.org_id = facts.client.as_ref().map(|c| c.org.id);
    let outcome = request.and_then(|req| {
        d.client_id = Some(req.client.client_id.clone());
        let cf = client::authenticate(
            &req.client,
            req.source_ip,
            facts,
            now,
            opts,
            &mut trace,
            &mut d,
        )?;
        // `authenticate` returns the facts' own client: share it.
        let shared = facts.client.clone().unwrap_or_else(|| Arc::new(cf.clone()));
        Ok((shared, req))
    });
    ClientDecision {
        outcome,
        trace,
        client_id: d.client_id,
        org_id: d.org_id,
        secret_used: d.secret_used,
        throttle_update: d.throttle_update,
        assertion_use: d.assertion_use,
    }
}

#[cfg(test)]
mod tests {
    /// A decision is returned and moved by value a few times per token request, each
    /// move a copy of the whole value: large and rare parts are boxed to keep it small
    /// (performance.md, "Speed, round two"). A guard, with room, against a new inline
    /// field that brings the copies back.
    #[test]
    fn a_decision_stays_small_to_move() {
        assert!(
            std::mem::size_of::<super::Decision>() <= 512,
            "Decision is {} bytes: box the large, rare fields",
            std::mem::size_of::<super::Decision>()
        );
    }
}
