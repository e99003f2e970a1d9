//! The one decision function for token requests.
//!
//! [`decide`] is deterministic over (request, stored facts, clock): the token endpoint,
//! the audit trail, the admin "explain" view and the dry-run diagnosis all call it, so the
//! trace an admin reads is the decision that was made. The caller loads [`Facts`] for the
//! presented client id first ([`facts_key`] says which), and applies the side effects the
//! [`Decision`] asks for (throttle update, audit event, token issuance).

use std::sync::Arc;

use crate::model::{Client, GrantType, Org, ScopeName, StoredSecret, Timestamp, User, UserType};
use crate::reason::Reason;
use crate::request::{
    ClientHint, RawTokenRequest, ResourceOwnerCredentials, TokenRequest, parse_token_request,
};
use crate::secret::{SecretString, dummy_password_hash, hash_client_secret, hashes_equal};
use crate::text::{clip, quoted_list, rfc3339};
use crate::throttle::{AttemptOutcome, PersonThrottle, ThrottlePolicy, ThrottleState};
use crate::trace::{Check, Denial, Trace};

/// Everything stored that a decision about one client needs.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The client and what hangs off it; `None` when no client has the presented id.
    /// Shared: the store may hand out the same cached facts to many requests.
    pub client: Option<std::sync::Arc<ClientFacts>>,
    /// The failure record of (presented client id, source address).
    pub throttle: ThrottleState,
    /// For a password grant: the user the `username` names in the client's org, if any.
    pub resource_owner: Option<ResourceOwnerFacts>,
    /// For a password grant: the throttle records of the username.
    pub person_throttle: PersonThrottle,
    /// For a password grant: the server runs as many password hashes as it allows at
    /// once, so this one would have to wait too long.
    pub hashing_busy: bool,
}

/// The user a password grant names, with what the decision needs to know about them.
#[derive(Debug, Clone)]
pub struct ResourceOwnerFacts {
    pub user: User,
    /// For a service account: the clients that run as it, as (client id, name).
    pub clients: Vec<(String, String)>,
    /// The org's SSO configuration lists this user as exempt from enforcement.
    pub break_glass: bool,
    /// Where humans of this org log in through SSO (named in `sso_required`).
    pub sso_login_url: String,
}

/// What a password attempt changes on the user's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginUpdate {
    /// A wrong password: count it (the count is for admins to see; throttling, not a
    /// lock, is what slows guessing down: see [`crate::throttle`]).
    Failed { user_id: String },
    /// A right password and a login: reset the count and record the login time.
    Succeeded { user_id: String },
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
}

impl Decision {
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
    let mut d = Decision {
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
    };
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
            d.grant_type = Some(req.grant_type);
            decide_grant(&req, facts, now, opts, &mut trace, &mut d)
        }
    };
    d.trace = trace;
    d
}

fn decide_grant(
    req: &TokenRequest,
    facts: &Facts,
    now: Timestamp,
    opts: DecideOptions,
    trace: &mut Trace,
    d: &mut Decision,
) -> Result<Grant, Denial> {
    let presented_id = clip(&req.client.client_id);

    // Throttle before anything touches the secret.
    if opts.dry_run {
        trace.skip(
            Check::Throttle,
            format!(
                "dry run: throttling not applied ({} recent failure(s) from {})",
                facts.throttle.failures, req.source_ip
            ),
        );
    } else if let Some(wait) = opts.throttle.retry_after(&facts.throttle, now) {
        let mut denial = trace.fail(
            Check::Throttle,
            Reason::ClientThrottled,
            format!(
                "too many failed authentications for client '{presented_id}' from {}; retry after {wait} s",
                req.source_ip
            ),
        );
        denial.retry_after = Some(wait);
        return Err(denial);
    } else {
        trace.pass(
            Check::Throttle,
            format!(
                "{} recent failure(s) from {}",
                facts.throttle.failures, req.source_ip
            ),
        );
    }

    let fail_auth = |trace: &mut Trace, d: &mut Decision, check, reason, detail: String| {
        if !opts.dry_run {
            d.throttle_update = Some(opts.throttle.after_failure(&facts.throttle, now));
        }
        Err(trace.fail(check, reason, detail))
    };

    let Some(cf) = &facts.client else {
        return fail_auth(
            trace,
            d,
            Check::Client,
            Reason::ClientUnknown,
            format!(
                "no client has client_id '{presented_id}'; check the client id and that you are calling the right server (issuer)"
            ),
        );
    };
    let client = &cf.client;
    trace.pass(
        Check::Client,
        format!(
            "client '{presented_id}' ('{}') in org '{}'",
            clip(&client.name),
            cf.org.slug
        ),
    );

    // The secret: compare against every stored secret, each in constant time.
    match &req.client.secret {
        None => trace.skip(
            Check::ClientSecret,
            "dry run without a secret: assumed to match an active secret",
        ),
        Some(secret) => {
            let presented = hash_client_secret(secret.expose());
            let mut matched: Option<&StoredSecret> = None;
            for s in &cf.secrets {
                if hashes_equal(&presented, &s.hash) && matched.is_none() {
                    matched = Some(s);
                }
            }
            let active = cf.secrets.iter().filter(|s| s.is_active(now)).count();
            match matched {
                None => {
                    return fail_auth(
                        trace,
                        d,
                        Check::ClientSecret,
                        Reason::ClientSecretMismatch,
                        format!(
                            "the client_secret does not match any of the {active} active secret(s) of client '{presented_id}'"
                        ),
                    );
                }
                Some(s) if s.revoked_at.is_some() => {
                    let at = rfc3339(s.revoked_at.unwrap_or_default());
                    return fail_auth(
                        trace,
                        d,
                        Check::ClientSecret,
                        Reason::ClientSecretRevoked,
                        format!(
                            "the client_secret is secret {} (…{}) of client '{presented_id}', revoked at {at}; use a current secret",
                            s.id, s.hint
                        ),
                    );
                }
                Some(s) if !s.is_active(now) => {
                    let at = rfc3339(s.expires_at.unwrap_or_default());
                    return fail_auth(
                        trace,
                        d,
                        Check::ClientSecret,
                        Reason::ClientSecretExpired,
                        format!(
                            "the client_secret is secret {} (…{}) of client '{presented_id}', whose grace period ended at {at} after a rotation; use the newer secret",
                            s.id, s.hint
                        ),
                    );
                }
                Some(s) => {
                    d.secret_used = Some(SecretUse {
                        id: s.id.clone(),
                        hint: s.hint.clone(),
                    });
                    let expiry = match s.expires_at {
                        Some(e) => format!(", expires at {} (rotation grace)", rfc3339(e)),
                        None => String::new(),
                    };
                    trace.pass(
                        Check::ClientSecret,
                        format!("matches secret {} (…{}){expiry}", s.id, s.hint),
                    );
                    if !opts.dry_run && facts.throttle.failures > 0 {
                        d.throttle_update = Some(ThrottleState::default());
                    }
                }
            }
        }
    }

    // Authenticated from here on: descriptions may be precise about policy.
    if !client.auth_methods.contains(&req.client.method) {
        return Err(trace.fail(
            Check::ClientAuthMethod,
            Reason::ClientAuthMethodNotAllowed,
            format!(
                "client '{presented_id}' may not authenticate with {}; allowed: {}",
                req.client.method,
                quoted_list(client.auth_methods.iter().map(|m| m.as_str()))
            ),
        ));
    }
    trace.pass(Check::ClientAuthMethod, req.client.method.as_str());

    if !client.enabled {
        return Err(trace.fail(
            Check::ClientEnabled,
            Reason::ClientDisabled,
            format!("client '{presented_id}' is disabled; an org admin can enable it"),
        ));
    }
    trace.pass(Check::ClientEnabled, "enabled");

    if !cf.org.enabled {
        return Err(trace.fail(
            Check::Org,
            Reason::OrgDisabled,
            format!("org '{}' is disabled", cf.org.slug),
        ));
    }
    trace.pass(Check::Org, format!("org '{}' is enabled", cf.org.slug));

    if client.ip_allowlist.is_empty() {
        trace.pass(
            Check::SourceIp,
            format!("{} (client has no IP allow-list)", req.source_ip),
        );
    } else if client.ip_allowlist.allows(req.source_ip) {
        trace.pass(
            Check::SourceIp,
            format!(
                "{} is inside the allow-list {}",
                req.source_ip,
                client.ip_allowlist.to_strings().join(", ")
            ),
        );
    } else {
        return Err(trace.fail(
            Check::SourceIp,
            Reason::ClientIpNotAllowed,
            format!(
                "source address {} is outside client '{presented_id}''s IP allow-list ({})",
                req.source_ip,
                client.ip_allowlist.to_strings().join(", ")
            ),
        ));
    }

    if !client.grant_types.contains(&req.grant_type) {
        let allowed = if client.grant_types.is_empty() {
            "none".to_string()
        } else {
            client
                .grant_types
                .iter()
                .map(|g| g.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(trace.fail(
            Check::GrantTypeAllowed,
            Reason::GrantTypeNotAllowed,
            format!(
                "client '{presented_id}' may not use grant type '{}'; allowed: {allowed}",
                req.grant_type
            ),
        ));
    }
    trace.pass(
        Check::GrantTypeAllowed,
        format!("'{}' is enabled on the client", req.grant_type),
    );

    if req.grant_type == GrantType::Password {
        return decide_password(req, facts, cf, now, opts, trace, d);
    }

    let subject = match (&client.service_account_id, &cf.service_account) {
        (None, _) => {
            trace.skip(
                Check::ServiceAccount,
                "the client runs as itself (no service account); sub is the client id",
            );
            client.client_id.to_string()
        }
        (Some(id), None) => {
            return Err(trace.fail(
                Check::ServiceAccount,
                Reason::ServiceAccountMissing,
                format!(
                    "client '{presented_id}' runs as service account {id}, which no longer exists"
                ),
            ));
        }
        (Some(_), Some(sa)) => {
            d.subject = Some(sa.id.clone());
            check_service_account(sa, now, trace)?;
            sa.id.clone()
        }
    };

    let scopes = check_scopes(req, cf, trace)?;

    // SSO enforcement governs humans; the trace says so on every machine grant.
    if cf.org.sso_enforced {
        trace.pass(
            Check::SsoPolicy,
            "this org enforces SAML SSO for humans; client_credentials is never subject to SSO enforcement",
        );
    } else {
        trace.skip(
            Check::SsoPolicy,
            "this org does not enforce SSO; client_credentials is never subject to it anyway",
        );
    }

    d.subject = Some(subject.clone());
    Ok(Grant {
        client_id: client.client_id.to_string(),
        org: cf.org.slug.to_string(),
        subject,
        scopes,
        ttl: client.token_ttl,
    })
}

/// What authenticating a person produced besides the verdict.
#[derive(Debug, Clone, Default)]
struct PersonOutcome {
    subject: Option<String>,
    login_update: Option<LoginUpdate>,
    grant_reason: Option<Reason>,
    /// A wrong user or password: counts against the throttle like a wrong secret.
    credential_failure: bool,
    /// The password was checked and right.
    password_verified: bool,
}

impl PersonOutcome {
    /// How the attempt ends for the person's throttle records.
    fn attempt(&self) -> Option<AttemptOutcome> {
        if self.credential_failure {
            Some(AttemptOutcome::Failed)
        } else if self.password_verified {
            Some(AttemptOutcome::Succeeded)
        } else {
            None
        }
    }
}

/// Who is asking about a person's password, which decides how much they are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asker {
    /// An authenticated client (the password grant): precise descriptions, in the order
    /// the checks run (account state and SSO before the password).
    Client,
    /// Anybody at the login page: one answer for every account it will not let in, and
    /// precise help about the account only once its password has been verified. The
    /// trace (audit trail, admins) is precise either way.
    Stranger,
}

/// What a person's checks read besides the credentials.
struct PersonFacts<'a> {
    resource_owner: Option<&'a ResourceOwnerFacts>,
    throttle: &'a PersonThrottle,
    hashing_busy: bool,
    source_ip: std::net::IpAddr,
}

const WRONG: &str = "the username or password is incorrect";

/// A person's username and password, for the password grant and the login page alike:
/// the username's throttle records, who the user is, whether SSO enforcement lets them
/// use a password, and the password itself. Returns the user's id.
#[allow(clippy::too_many_arguments)]
fn authenticate_person(
    creds: &ResourceOwnerCredentials,
    facts: &PersonFacts<'_>,
    org_facts: &Org,
    now: Timestamp,
    opts: DecideOptions,
    asker: Asker,
    trace: &mut Trace,
    p: &mut PersonOutcome,
) -> Result<String, Denial> {
    let username = clip(&creds.username);
    let org = &org_facts.slug;
    let ip = facts.source_ip;
    let quiet = asker == Asker::Stranger;

    // The username's budgets, before any hash runs.
    let t = facts.throttle;
    if opts.dry_run {
        trace.skip(
            Check::UserThrottle,
            format!(
                "dry run: throttling not applied ({} recent failure(s) for '{username}' from {ip}, {} from all addresses)",
                t.source.failures, t.account.failures
            ),
        );
    } else {
        let blocked = opts
            .throttle
            .retry_after(&t.source, now)
            .map(|w| (w, format!("from {ip}")))
            .or_else(|| {
                opts.account_throttle
                    .retry_after(&t.account, now)
                    .map(|w| (w, "from all addresses together".to_string()))
            });
        if let Some((wait, from)) = blocked {
            let detail = format!(
                "too many failed passwords for username '{username}' in org '{org}' {from}; retry after {wait} s"
            );
            let mut denial = if quiet {
                trace.fail_quietly(
                    Check::UserThrottle,
                    Reason::UserThrottled,
                    detail,
                    format!("too many failed logins; retry after {wait} s"),
                )
            } else {
                trace.fail(Check::UserThrottle, Reason::UserThrottled, detail)
            };
            denial.retry_after = Some(wait);
            return Err(denial);
        }
        trace.pass(
            Check::UserThrottle,
            format!(
                "{} recent failure(s) for '{username}' from {ip}, {} from all addresses",
                t.source.failures, t.account.failures
            ),
        );
    }
    // Every password hash needs a slot: without one the attempt is refused as busy,
    // before the hash and without counting against anybody.
    let busy = |trace: &mut Trace| -> Option<Denial> {
        facts.hashing_busy.then(|| {
            let mut denial = trace.fail(
                Check::PasswordCapacity,
                Reason::PasswordCheckBusy,
                "every password check slot is busy and the queue is full; retry in a moment",
            );
            denial.retry_after = Some(1);
            denial
        })
    };

    // A refusal before the password has been verified: the stranger hears only that the
    // username or password is wrong, after as much work as a wrong password.
    let refuse = |trace: &mut Trace, p: &mut PersonOutcome, check, reason, detail: String| {
        if let Some(denial) = busy(trace) {
            return denial;
        }
        let _ = (opts.verify_password)(&creds.password, dummy_password_hash());
        p.credential_failure = true;
        trace.fail_quietly(check, reason, detail, WRONG)
    };

    let Some(ro) = facts.resource_owner else {
        return Err(refuse(
            trace,
            p,
            Check::ResourceOwner,
            Reason::UserCredentialsInvalid,
            format!("no user has username '{username}' in org '{org}'"),
        ));
    };
    let user = &ro.user;
    p.subject = Some(user.id.clone());
    if user.user_type == UserType::Service {
        let detail = service_account_password_detail(&username, ro);
        if quiet {
            return Err(refuse(
                trace,
                p,
                Check::ResourceOwner,
                Reason::ServiceAccountNoPassword,
                detail,
            ));
        }
        return Err(trace.fail(
            Check::ResourceOwner,
            Reason::ServiceAccountNoPassword,
            detail,
        ));
    }
    if !quiet {
        check_human_state(user, now, asker, trace)?;
        check_sso_policy(ro, org_facts, &username, trace, p)?;
    }

    let Some(hash) = &user.password_hash else {
        return Err(refuse(
            trace,
            p,
            Check::UserPassword,
            Reason::UserCredentialsInvalid,
            format!(
                "'{username}' has no local password (an admin can set one, or they log in through SSO at {})",
                ro.sso_login_url
            ),
        ));
    };
    if let Some(denial) = busy(trace) {
        return Err(denial);
    }
    if !(opts.verify_password)(&creds.password, hash) {
        let failures = user.failed_logins.saturating_add(1);
        p.credential_failure = true;
        if !opts.dry_run {
            p.login_update = Some(LoginUpdate::Failed {
                user_id: user.id.clone(),
            });
        }
        return Err(trace.fail_quietly(
            Check::UserPassword,
            Reason::UserCredentialsInvalid,
            format!("wrong password for '{username}' ({failures} in a row)"),
            WRONG,
        ));
    }
    trace.pass(Check::UserPassword, "matches the user's password");
    p.password_verified = true;
    if quiet {
        // Verified: the person may now learn why their own account cannot log in.
        check_human_state(user, now, asker, trace)?;
        check_sso_policy(ro, org_facts, &username, trace, p)?;
    }

    if !opts.dry_run {
        p.login_update = Some(LoginUpdate::Succeeded {
            user_id: user.id.clone(),
        });
    }
    Ok(user.id.clone())
}

/// Why a service account cannot use a password, naming the clients that run as it (for
/// the trace; a stranger never sees it).
fn service_account_password_detail(username: &str, ro: &ResourceOwnerFacts) -> String {
    let clients = if ro.clients.is_empty() {
        format!(
            "no client runs as it yet: create one with POST /api/v2/oauth/clients and \"service_account_id\": \"{}\"",
            ro.user.id
        )
    } else {
        let names: Vec<String> = ro
            .clients
            .iter()
            .map(|(id, name)| format!("'{id}' ({})", clip(name)))
            .collect();
        format!(
            "its client{}: {}",
            if names.len() > 1 { "s" } else { "" },
            names.join(", ")
        )
    };
    format!(
        "'{username}' is a service account: service accounts have no password and never use the password grant; they authenticate with the id and secret of a client that runs as them (grant_type=client_credentials); {clients}"
    )
}

/// SSO enforcement for a human's password: break-glass users pass (audited as such).
fn check_sso_policy(
    ro: &ResourceOwnerFacts,
    org_facts: &Org,
    username: &str,
    trace: &mut Trace,
    p: &mut PersonOutcome,
) -> Result<(), Denial> {
    let org = &org_facts.slug;
    if !org_facts.sso_enforced {
        trace.skip(
            Check::SsoPolicy,
            format!("org '{org}' does not enforce SSO; humans may use local passwords"),
        );
        return Ok(());
    }
    if ro.break_glass {
        trace.pass(
            Check::SsoPolicy,
            format!(
                "org '{org}' enforces SAML SSO for humans; '{username}' is a break-glass user, exempt from enforcement (audited as sso_break_glass)"
            ),
        );
        p.grant_reason = Some(Reason::SsoBreakGlass);
        return Ok(());
    }
    Err(trace.fail(
        Check::SsoPolicy,
        Reason::SsoRequired,
        format!(
            "org '{org}' enforces SAML SSO: '{username}' is a human and must log in through SSO at {}; passwords are refused for humans in this org. Scripts and services should use grant_type=client_credentials with a client of their own, which SSO enforcement never affects",
            ro.sso_login_url
        ),
    ))
}

/// The password grant (RFC 6749 §4.3) once the client has authenticated: the person's
/// checks ([`authenticate_person`]), then the client's scopes.
fn decide_password(
    req: &TokenRequest,
    facts: &Facts,
    cf: &ClientFacts,
    now: Timestamp,
    opts: DecideOptions,
    trace: &mut Trace,
    d: &mut Decision,
) -> Result<Grant, Denial> {
    let Some(creds) = &req.resource_owner else {
        return Err(trace.fail(
            Check::Parameters,
            Reason::ParameterMissing,
            "grant_type=password needs the 'username' and 'password' parameters (RFC 6749 §4.3.2)",
        ));
    };
    let mut p = PersonOutcome::default();
    let person_facts = PersonFacts {
        resource_owner: facts.resource_owner.as_ref(),
        throttle: &facts.person_throttle,
        hashing_busy: facts.hashing_busy,
        source_ip: req.source_ip,
    };
    let person = authenticate_person(
        creds,
        &person_facts,
        &cf.org,
        now,
        opts,
        Asker::Client,
        trace,
        &mut p,
    );
    d.subject = p.subject.clone();
    d.grant_reason = p.grant_reason;
    if !opts.dry_run {
        d.person_attempt = p.attempt();
    }
    if p.credential_failure && !opts.dry_run {
        d.throttle_update = Some(opts.throttle.after_failure(&facts.throttle, now));
    }
    let user_id = match person {
        Ok(id) => id,
        Err(denial) => {
            d.login_update = p.login_update;
            return Err(denial);
        }
    };
    let scopes = check_scopes(req, cf, trace)?;
    d.login_update = p.login_update;
    Ok(Grant {
        client_id: cf.client.client_id.to_string(),
        org: cf.org.slug.to_string(),
        subject: user_id,
        scopes,
        ttl: cf.client.token_ttl,
    })
}

/// What a login-page attempt is decided over besides the credentials and the org.
#[derive(Debug, Clone, Default)]
pub struct LoginFacts {
    /// The throttle record of (org login page, source address).
    pub throttle: ThrottleState,
    /// The throttle records of the username.
    pub person_throttle: PersonThrottle,
    /// The user the username names in the org, if any.
    pub resource_owner: Option<ResourceOwnerFacts>,
    /// No room for another password hash now (see [`Facts::hashing_busy`]).
    pub hashing_busy: bool,
}

/// A login at the login page: a person's username and password, without a client.
#[derive(Debug, Clone)]
pub struct LoginDecision {
    /// The user's id, or the refusal.
    pub outcome: Result<String, Denial>,
    pub trace: Trace,
    /// The user the username named, when known.
    pub subject: Option<String>,
    pub login_update: Option<LoginUpdate>,
    /// A grant the audit trail records with a reason of its own (a break-glass login).
    pub grant_reason: Option<Reason>,
    /// The throttle record of (org login page, source address) to store, if any.
    pub throttle_update: Option<ThrottleState>,
    /// How the attempt ended for the username's throttle records (`None`: not reached).
    pub person_attempt: Option<AttemptOutcome>,
}

impl LoginDecision {
    /// The reason code the person at the page is shown: the same one for every account
    /// refused before its password was verified (the audit trail keeps the precise one).
    pub fn shown_reason(&self) -> Option<Reason> {
        self.outcome.as_ref().err().map(|d| {
            if d.description == WRONG {
                Reason::UserCredentialsInvalid
            } else {
                d.reason
            }
        })
    }
}

/// Decides a login-page attempt in `org` with the same person checks as the password
/// grant (SSO enforcement, break-glass, account state, password), throttled per source
/// address and per username. The person at the page has not authenticated: every account
/// it will not let in gets the same answer until the password has been verified, and
/// every refusal past the page's own throttle counts against it.
pub fn decide_login(
    creds: &ResourceOwnerCredentials,
    org: &Org,
    facts: &LoginFacts,
    source_ip: std::net::IpAddr,
    now: Timestamp,
    opts: DecideOptions,
) -> LoginDecision {
    let mut trace = Trace::default();
    let mut p = PersonOutcome::default();
    let gate = login_gate(org, &facts.throttle, source_ip, now, opts, &mut trace);
    let outcome = gate.clone().and_then(|()| {
        let person_facts = PersonFacts {
            resource_owner: facts.resource_owner.as_ref(),
            throttle: &facts.person_throttle,
            hashing_busy: facts.hashing_busy,
            source_ip,
        };
        authenticate_person(
            creds,
            &person_facts,
            org,
            now,
            opts,
            Asker::Stranger,
            &mut trace,
            &mut p,
        )
    });
    let busy = matches!(&outcome, Err(d) if d.reason == Reason::PasswordCheckBusy);
    let throttle_update = if gate.is_err() || busy {
        None
    } else if outcome.is_err() {
        Some(opts.throttle.after_failure(&facts.throttle, now))
    } else if facts.throttle.failures > 0 {
        Some(ThrottleState::default())
    } else {
        None
    };
    LoginDecision {
        outcome,
        trace,
        subject: p.subject.clone(),
        login_update: p.login_update.clone(),
        grant_reason: p.grant_reason,
        throttle_update,
        person_attempt: p.attempt(),
    }
}

/// The login page's checks before any person is looked at: the throttle of this
/// address, then the org.
fn login_gate(
    org: &Org,
    throttle: &ThrottleState,
    source_ip: std::net::IpAddr,
    now: Timestamp,
    opts: DecideOptions,
    trace: &mut Trace,
) -> Result<(), Denial> {
    if let Some(wait) = opts.throttle.retry_after(throttle, now) {
        let mut denial = trace.fail(
            Check::Throttle,
            Reason::LoginThrottled,
            format!(
                "too many failed logins to org '{}' from {source_ip}; retry after {wait} s",
                org.slug
            ),
        );
        denial.retry_after = Some(wait);
        return Err(denial);
    }
    trace.pass(
        Check::Throttle,
        format!("{} recent failure(s) from {source_ip}", throttle.failures),
    );
    if !org.enabled {
        return Err(trace.fail(
            Check::Org,
            Reason::OrgDisabled,
            format!("org '{}' is disabled", org.slug),
        ));
    }
    trace.pass(Check::Org, format!("org '{}' is enabled", org.slug));
    Ok(())
}

/// Who last disabled or locked `user`, and when, for descriptions.
fn state_change(user: &User) -> (String, String) {
    let by = user
        .state_changed_by
        .as_ref()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "an unknown actor".into());
    let at = user
        .state_changed_at
        .map(rfc3339)
        .unwrap_or_else(|| "an unknown time".into());
    (by, at)
}

/// A human's account state: disabled and locked accounts get no token. A stranger (who
/// has just proved the password) learns the state of their own account, never who changed
/// it: that names another account.
fn check_human_state(
    user: &User,
    now: Timestamp,
    asker: Asker,
    trace: &mut Trace,
) -> Result<(), Denial> {
    use crate::model::UserState;
    let (by, at) = state_change(user);
    let denial = match user.effective_state(now) {
        UserState::Active => {
            trace.pass(
                Check::ResourceOwner,
                format!("human '{}' ({}) is active", user.username, user.id),
            );
            return Ok(());
        }
        UserState::Disabled => trace.fail(
            Check::ResourceOwner,
            Reason::UserDisabled,
            format!(
                "user '{}' was disabled by {by} at {at}; an org admin can re-enable them",
                user.username
            ),
        ),
        UserState::Locked => {
            let until = user
                .locked_until
                .map(|u| format!("until {}", rfc3339(u)))
                .unwrap_or_else(|| "until an admin unlocks it".into());
            trace.fail(
                Check::ResourceOwner,
                Reason::UserLocked,
                format!(
                    "user '{}' was locked by {by} at {at}, {until}; an org admin can unlock it now (tessera admin users unlock {})",
                    user.username, user.id
                ),
            )
        }
    };
    Err(match (asker, denial.reason) {
        (Asker::Client, _) => denial,
        (Asker::Stranger, Reason::UserDisabled) => Denial {
            description: "this account is disabled; an org admin can re-enable it".into(),
            ..denial
        },
        (Asker::Stranger, _) => Denial {
            description: "this account is locked; an org admin can unlock it".into(),
            ..denial
        },
    })
}

fn check_service_account(sa: &User, now: Timestamp, trace: &mut Trace) -> Result<(), Denial> {
    use crate::model::UserState;
    let (by, at) = state_change(sa);
    match sa.effective_state(now) {
        UserState::Active => {
            trace.pass(
                Check::ServiceAccount,
                format!("service account '{}' ({}) is active", sa.username, sa.id),
            );
            Ok(())
        }
        UserState::Disabled => Err(trace.fail(
            Check::ServiceAccount,
            Reason::ServiceAccountDisabled,
            format!(
                "service account '{}' ({}) was disabled by {by} at {at}; an org admin can re-enable it (PATCH /api/v2/users/{} {{\"enabled\": true}})",
                sa.username, sa.id, sa.id
            ),
        )),
        UserState::Locked => {
            let until = sa
                .locked_until
                .map(|u| format!("until {}", rfc3339(u)))
                .unwrap_or_else(|| "until an admin unlocks it".into());
            Err(trace.fail(
                Check::ServiceAccount,
                Reason::ServiceAccountLocked,
                format!(
                    "service account '{}' ({}) was locked by {by} at {at}, {until}",
                    sa.username, sa.id
                ),
            ))
        }
    }
}

fn check_scopes(
    req: &TokenRequest,
    cf: &ClientFacts,
    trace: &mut Trace,
) -> Result<Vec<String>, Denial> {
    let allowed: Vec<&str> = cf.client.scopes.iter().map(ScopeName::as_str).collect();
    let Some(asked) = &req.scope else {
        trace.pass(
            Check::Scope,
            format!(
                "no scope requested: granted every scope the client may have ({})",
                if allowed.is_empty() {
                    "none".into()
                } else {
                    allowed.join(" ")
                }
            ),
        );
        return Ok(allowed.iter().map(|s| s.to_string()).collect());
    };
    let mut malformed = vec![];
    let mut unknown = vec![];
    let mut refused = vec![];
    let mut granted: Vec<String> = vec![];
    for s in asked {
        if ScopeName::parse(s).is_err() {
            malformed.push(clip(s));
        } else if !cf.known_scopes.iter().any(|k| k.as_str() == s) {
            unknown.push(clip(s));
        } else if !allowed.contains(&s.as_str()) {
            refused.push(s.clone());
        } else if !granted.contains(s) {
            granted.push(s.clone());
        }
    }
    if !malformed.is_empty() {
        return Err(trace.fail(
            Check::Scope,
            Reason::ScopeMalformed,
            format!("malformed scope(s): {}", quoted_list(&malformed)),
        ));
    }
    if !unknown.is_empty() {
        return Err(trace.fail(
            Check::Scope,
            Reason::ScopeUnknown,
            format!(
                "unknown scope(s) {} in org '{}'; the client may have: {}",
                quoted_list(&unknown),
                cf.org.slug,
                if allowed.is_empty() {
                    "none".into()
                } else {
                    allowed.join(" ")
                }
            ),
        ));
    }
    if !refused.is_empty() {
        return Err(trace.fail(
            Check::Scope,
            Reason::ScopeNotAllowed,
            format!(
                "client '{}' may not have scope(s) {}; it may have: {}",
                cf.client.client_id,
                quoted_list(&refused),
                if allowed.is_empty() {
                    "none".into()
                } else {
                    allowed.join(" ")
                }
            ),
        ));
    }
    trace.pass(Check::Scope, format!("granted: {}", granted.join(" ")));
    Ok(granted)
}
