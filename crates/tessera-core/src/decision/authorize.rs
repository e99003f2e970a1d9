//! The authorization endpoint's decision (RFC 6749 §4.1.1, OIDC Core §3.1.2, RFC 7636,
//! RFC 9700 §2.1): which client, where its answer may go, what it asks for, and whether
//! the person's session lets a code be issued now.
//!
//! Until the client and its `redirect_uri` are verified the refusal is an error page
//! (RFC 6749 §4.1.2.1: never redirect to an unverified URI); after, every refusal goes
//! back to the client. A missing, stale or foreign session is not a refusal: the person
//! logs in and comes back (`prompt=none` turns it into `login_required`).

use std::sync::Arc;

use crate::interactive::is_pkce_value;
use crate::model::{GrantType, Timestamp, User};
use crate::reason::Reason;
use crate::text::{clip, rfc3339};
use crate::trace::{Check, Denial, Trace};

use super::ClientFacts;
use super::client::check_enabled;
use super::person::{Asker, check_human_state};
use super::scope::check_scopes;

/// The longest `state` and `nonce` accepted, in bytes: they travel in the redirect, and
/// the nonce is stored with the code. With a redirect URI of at most 2000 bytes, the
/// whole request fits the login's `return_to` ([`crate::session::MAX_RETURN_TO`]).
pub const MAX_STATE: usize = 1024;
/// See [`MAX_STATE`].
pub const MAX_NONCE: usize = 512;

/// The authorization request's parameters, in the order they came, empty values
/// dropped (RFC 6749 §3.1).
#[derive(Debug, Clone, Default)]
pub struct AuthorizeParams(Vec<(String, String)>);

impl AuthorizeParams {
    /// Parses a query string.
    pub fn parse(query: &str) -> Self {
        Self(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .filter(|(_, v)| !v.is_empty())
                .collect(),
        )
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn count(&self, name: &str) -> usize {
        self.0.iter().filter(|(k, _)| k == name).count()
    }

    /// The client the request names (the facts to load).
    pub fn client_id(&self) -> Option<&str> {
        self.get("client_id")
    }

    /// The same request as a query string, without the parameters `drop` names: where
    /// the person comes back to after logging in.
    pub fn to_query(&self, drop: &[&str]) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.0 {
            if !drop.contains(&k.as_str()) {
                out.append_pair(k, v);
            }
        }
        out.finish()
    }
}

/// What the authorization decision reads besides the request.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeFacts {
    /// The client the request names, if it exists.
    pub client: Option<Arc<ClientFacts>>,
    /// The browser's live session, if any (of any org).
    pub session: Option<SessionFacts>,
}

/// A person's live browser session.
#[derive(Debug, Clone)]
pub struct SessionFacts {
    pub org_id: i64,
    pub user: User,
    /// When they logged in: the session's start.
    pub auth_time: Timestamp,
    /// The session's id for OIDC (`sid`).
    pub sid: String,
    /// How they logged in: `saml` or `password`.
    pub method: String,
    /// The org lists them as exempt from SSO enforcement.
    pub break_glass: bool,
}

/// A code the decision lets the endpoint issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeToIssue {
    pub user_id: String,
    /// How the session began: `saml` or `password`.
    pub auth_method: String,
    pub scopes: Vec<String>,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub auth_time: Timestamp,
    pub sid: String,
}

/// Where the authorization request goes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeOutcome {
    /// An error page: there is no verified redirect URI to send the refusal to.
    ErrorPage(Denial),
    /// The refusal goes back to the client's redirect URI.
    ErrorRedirect(Denial),
    /// The person logs in first, through the org's IdP when `sso`, and comes back.
    Login { sso: bool },
    /// A code for the person, sent to the redirect URI.
    Code(CodeToIssue),
}

/// An authorization decision with its trace and what the audit trail records.
#[derive(Debug, Clone)]
pub struct AuthorizeDecision {
    pub outcome: AuthorizeOutcome,
    pub trace: Trace,
    pub client_id: Option<String>,
    pub org_id: Option<i64>,
    pub org_slug: Option<String>,
    /// The person, when a session names one.
    pub subject: Option<String>,
    /// The verified redirect URI (set once it is).
    pub redirect_uri: Option<String>,
    /// The client's `state`, to send back as it came.
    pub state: Option<String>,
    pub scopes: Vec<String>,
}

impl AuthorizeDecision {
    /// The reason of a refusal (not of a login on the way).
    pub fn reason(&self) -> Option<Reason> {
        match &self.outcome {
            AuthorizeOutcome::ErrorPage(d) | AuthorizeOutcome::ErrorRedirect(d) => Some(d.reason),
            _ => None,
        }
    }
}

/// Decides an authorization request over the client's facts and the browser's session.
pub fn decide_authorize(
    params: &AuthorizeParams,
    facts: &AuthorizeFacts,
    now: Timestamp,
) -> AuthorizeDecision {
    let mut d = AuthorizeDecision {
        outcome: AuthorizeOutcome::Login { sso: false },
        trace: Trace::default(),
        client_id: params.client_id().map(clip),
        org_id: None,
        org_slug: None,
        subject: None,
        redirect_uri: None,
        state: None,
        scopes: Vec::new(),
    };
    let mut trace = Trace::default();
    d.outcome = match page_checks(params, facts, &mut trace, &mut d) {
        Err(denial) => AuthorizeOutcome::ErrorPage(denial),
        Ok(cf) => match redirect_checks(params, facts, cf, now, &mut trace, &mut d) {
            Ok(outcome) => outcome,
            Err(denial) => AuthorizeOutcome::ErrorRedirect(denial),
        },
    };
    d.trace = trace;
    d
}

/// The checks before any answer may go to the client: the client and its redirect URI.
fn page_checks<'f>(
    params: &AuthorizeParams,
    facts: &'f AuthorizeFacts,
    trace: &mut Trace,
    d: &mut AuthorizeDecision,
) -> Result<&'f ClientFacts, Denial> {
    for name in ["client_id", "redirect_uri"] {
        if params.count(name) > 1 {
            return Err(trace.fail(
                Check::Parameters,
                Reason::ParameterDuplicated,
                format!("parameter '{name}' appears more than once (RFC 6749 §3.1)"),
            ));
        }
    }
    let Some(client_id) = params.client_id() else {
        return Err(trace.fail(
            Check::Parameters,
            Reason::ParameterMissing,
            "the 'client_id' parameter is missing: the application that sent you here built a wrong link",
        ));
    };
    let Some(cf) = facts.client.as_deref() else {
        return Err(trace.fail(
            Check::Client,
            Reason::ClientUnknown,
            format!(
                "no client has client_id '{}': the application that sent you here is not registered on this server",
                clip(client_id)
            ),
        ));
    };
    d.org_id = Some(cf.org.id);
    d.org_slug = Some(cf.org.slug.to_string());
    trace.pass(
        Check::Client,
        format!(
            "client '{}' ('{}') in org '{}'",
            cf.client.client_id,
            clip(&cf.client.name),
            cf.org.slug
        ),
    );
    let registered = &cf.client.redirect_uris;
    let uri = match params.get("redirect_uri") {
        Some(u) if registered.iter().any(|r| r == u) => u.to_string(),
        Some(u) => {
            // The person at the page learns that the link is wrong, not what the client
            // has registered; the trace (its admins) has the list.
            return Err(trace.fail_quietly(
                Check::RedirectUri,
                Reason::RedirectUriMismatch,
                format!(
                    "redirect_uri '{}' is not registered on client '{}' (an exact match is required, RFC 9700 §4.1.3); registered: {}",
                    clip(u),
                    cf.client.client_id,
                    if registered.is_empty() {
                        "none".to_string()
                    } else {
                        registered.join(", ")
                    }
                ),
                format!(
                    "the redirect_uri of this link is not registered on the application '{}' (an exact match is required); its admin can register it",
                    cf.client.client_id
                ),
            ));
        }
        // RFC 6749 §3.1.2.3: optional when exactly one is registered.
        None if registered.len() == 1 => registered[0].clone(),
        None => {
            return Err(trace.fail(
                Check::RedirectUri,
                Reason::ParameterMissing,
                format!(
                    "the 'redirect_uri' parameter is missing, and client '{}' has {} registered, so none can be assumed",
                    cf.client.client_id,
                    registered.len()
                ),
            ));
        }
    };
    trace.pass(
        Check::RedirectUri,
        format!("'{}' is registered on the client", clip(&uri)),
    );
    d.redirect_uri = Some(uri);
    Ok(cf)
}

/// The checks whose refusals go back to the client, then the session.
fn redirect_checks(
    params: &AuthorizeParams,
    facts: &AuthorizeFacts,
    cf: &ClientFacts,
    now: Timestamp,
    trace: &mut Trace,
    d: &mut AuthorizeDecision,
) -> Result<AuthorizeOutcome, Denial> {
    if let Some(s) = params.get("state") {
        if s.len() > MAX_STATE {
            return Err(trace.fail(
                Check::Parameters,
                Reason::ParameterInvalid,
                format!(
                    "'state' is {} bytes long; at most {MAX_STATE} are accepted",
                    s.len()
                ),
            ));
        }
        d.state = Some(s.to_string());
    }
    let mut seen: Vec<&str> = Vec::new();
    for (k, _) in &params.0 {
        if seen.contains(&k.as_str()) {
            return Err(trace.fail(
                Check::Parameters,
                Reason::ParameterDuplicated,
                format!(
                    "parameter '{}' appears more than once (RFC 6749 §3.1)",
                    clip(k)
                ),
            ));
        }
        seen.push(k);
    }
    let nonce = params.get("nonce");
    if let Some(n) = nonce
        && n.len() > MAX_NONCE
    {
        return Err(trace.fail(
            Check::Parameters,
            Reason::ParameterInvalid,
            format!(
                "'nonce' is {} bytes long; at most {MAX_NONCE} are accepted",
                n.len()
            ),
        ));
    }
    trace.pass(Check::Parameters, "no parameter is repeated");

    match params.get("response_type") {
        Some("code") => trace.pass(Check::ResponseType, "code"),
        Some(other) => {
            return Err(trace.fail(
                Check::ResponseType,
                Reason::ResponseTypeUnsupported,
                format!(
                    "response_type '{}' is not supported: this server offers the authorization code flow only (response_type=code; RFC 9700 §2.1.2 retires the implicit flow)",
                    clip(other)
                ),
            ));
        }
        None => {
            return Err(trace.fail(
                Check::ResponseType,
                Reason::ParameterMissing,
                "the 'response_type' parameter is missing; use response_type=code",
            ));
        }
    }

    let c = &cf.client;
    check_enabled(cf, trace)?;
    if !c.grant_types.contains(&GrantType::AuthorizationCode) {
        return Err(trace.fail(
            Check::GrantTypeAllowed,
            Reason::GrantTypeNotAllowed,
            format!(
                "client '{}' may not use the authorization code flow; an org admin can add 'authorization_code' to its grant_types",
                c.client_id
            ),
        ));
    }
    trace.pass(
        Check::GrantTypeAllowed,
        "'authorization_code' is enabled on the client",
    );

    let asked: Option<Vec<String>> = params.get("scope").map(|s| {
        s.split(' ')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    });
    let scopes = check_scopes(asked.as_deref(), cf, true, trace)?;
    d.scopes = scopes.clone();

    let challenge = params.get("code_challenge");
    let method = params.get("code_challenge_method");
    let code_challenge = match (challenge, method) {
        (Some(ch), Some("S256")) => {
            if !is_pkce_value(ch) {
                return Err(trace.fail(
                    Check::Pkce,
                    Reason::ParameterInvalid,
                    "code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636 §4.2: base64url of the verifier's SHA-256 is 43)",
                ));
            }
            trace.pass(Check::Pkce, "S256 code_challenge");
            Some(ch.to_string())
        }
        (Some(_), other) => {
            return Err(trace.fail(
                Check::Pkce,
                Reason::PkceMethodUnsupported,
                format!(
                    "code_challenge_method '{}' is refused: only S256 is accepted (RFC 9700 §2.1.1)",
                    other.map(clip).unwrap_or_else(|| "plain (the default when absent)".into())
                ),
            ));
        }
        (None, Some(_)) => {
            return Err(trace.fail(
                Check::Pkce,
                Reason::PkceRequired,
                "code_challenge_method came without a code_challenge",
            ));
        }
        (None, None) if c.is_public() || c.interactive.pkce_required => {
            return Err(trace.fail(
                Check::Pkce,
                Reason::PkceRequired,
                format!(
                    "client '{}' must send a PKCE code_challenge with code_challenge_method=S256 (RFC 7636){}",
                    c.client_id,
                    if c.is_public() {
                        ": it is a public client"
                    } else {
                        "; an org admin can turn pkce_required off for a confidential client"
                    }
                ),
            ));
        }
        (None, None) => {
            trace.skip(
                Check::Pkce,
                "no PKCE: the client is confidential and an admin turned pkce_required off",
            );
            None
        }
    };

    // prompt (OIDC Core §3.1.2.1) and max_age.
    let mut none = false;
    let mut login = false;
    if let Some(p) = params.get("prompt") {
        for v in p.split(' ').filter(|v| !v.is_empty()) {
            match v {
                "none" => none = true,
                "login" => login = true,
                // First-party clients need no consent; an account picker has no use with
                // one session per browser.
                "consent" | "select_account" => {}
                other => {
                    return Err(trace.fail(
                        Check::Prompt,
                        Reason::PromptUnsupported,
                        format!(
                            "prompt value '{}' is not supported; use none, login, consent or select_account",
                            clip(other)
                        ),
                    ));
                }
            }
        }
        if none && p.split(' ').filter(|v| !v.is_empty()).count() > 1 {
            return Err(trace.fail(
                Check::Prompt,
                Reason::PromptUnsupported,
                "prompt=none cannot be combined with other values (OIDC Core §3.1.2.1)",
            ));
        }
    }
    let max_age = match params.get("max_age") {
        None => None,
        Some(m) => match m.parse::<u32>() {
            Ok(v) => Some(i64::from(v)),
            Err(_) => {
                return Err(trace.fail(
                    Check::Prompt,
                    Reason::ParameterInvalid,
                    format!("max_age '{}' is not a number of seconds", clip(m)),
                ));
            }
        },
    };
    trace.pass(
        Check::Prompt,
        format!(
            "prompt {}, max_age {}",
            params
                .get("prompt")
                .map(clip)
                .unwrap_or_else(|| "absent".into()),
            max_age
                .map(|m| format!("{m} s"))
                .unwrap_or_else(|| "absent".into())
        ),
    );

    // The session: a live one in this org, recent enough, by a method the org allows.
    let sso_enforced = cf.org.sso_enforced;
    let needs_login = |trace: &mut Trace, why: String| -> Result<AuthorizeOutcome, Denial> {
        if none {
            return Err(trace.fail(
                Check::Session,
                Reason::LoginRequired,
                format!("{why}, and prompt=none forbids asking the person to log in"),
            ));
        }
        trace.skip(Check::Session, format!("{why}: the person logs in first"));
        Ok(AuthorizeOutcome::Login { sso: sso_enforced })
    };
    let Some(s) = facts.session.as_ref().filter(|s| s.org_id == cf.org.id) else {
        let why = if facts.session.is_some() {
            format!(
                "the browser's session is in another org, not '{}'",
                cf.org.slug
            )
        } else {
            "no session in this browser".to_string()
        };
        return needs_login(trace, why);
    };
    d.subject = Some(s.user.id.clone());
    if login {
        return needs_login(trace, "prompt=login asks for a fresh login".into());
    }
    if let Some(m) = max_age
        && now - s.auth_time > m
    {
        return needs_login(
            trace,
            format!(
                "the login at {} is older than max_age {m} s",
                rfc3339(s.auth_time)
            ),
        );
    }
    if sso_enforced && s.method != "saml" && !s.break_glass {
        let why = format!(
            "org '{}' enforces SAML SSO and the session began with a password",
            cf.org.slug
        );
        if none {
            return Err(trace.fail(
                Check::SsoPolicy,
                Reason::LoginRequired,
                format!("{why}, and prompt=none forbids asking the person to log in"),
            ));
        }
        trace.skip(
            Check::SsoPolicy,
            format!("{why}: the person logs in through SSO"),
        );
        return Ok(AuthorizeOutcome::Login { sso: true });
    }
    trace.pass(
        Check::Session,
        format!(
            "user '{}' ({}) logged in by {} at {}",
            s.user.username,
            s.user.id,
            s.method,
            rfc3339(s.auth_time)
        ),
    );
    check_human_state(&s.user, now, Asker::Stranger, trace)?;
    Ok(AuthorizeOutcome::Code(CodeToIssue {
        user_id: s.user.id.clone(),
        auth_method: s.method.clone(),
        scopes,
        code_challenge,
        nonce: nonce.map(str::to_string),
        auth_time: s.auth_time,
        sid: s.sid.clone(),
    }))
}
