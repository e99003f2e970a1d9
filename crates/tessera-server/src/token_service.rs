//! The token service: everything between a token request's plain values and its answer,
//! in one place for every caller. Parse, load the facts, take the attempt's places in its
//! throttle budgets, decide (the core's one decision function), apply the decision's
//! effects, sign, audit. The token endpoint, the dry run and the login page call it;
//! they only turn HTTP into plain values and answers back into HTTP.

use std::net::IpAddr;

use std::sync::Arc;
use tessera_core::Reason;
use tessera_core::audit::{AuditEvent, AuditKind};

use tessera_core::decision::{
    self, AssertionUse, BearerAssertion, ClientFacts, CodeFacts, DecideOptions, Decision, Facts,
    Grant, GrantEffect, GrantFacts, LoginDecision, LoginFacts, LoginIssue, Parsed, PersonFacts,
    RefreshFacts, ResourceOwnerFacts, SamlBearerFacts,
};
use tessera_core::interactive::{self, LoginGrant, RefreshToken};
use tessera_core::jwt::AccessClaims;
use tessera_core::model::{AuthMethod, GrantType, Org, User, UserType};
use tessera_core::request::{
    ClientRequest, GrantRequest, PresentedClient, RawTokenRequest, ResourceOwnerCredentials,
};
use tessera_core::store::{Rotation, SamlLogin, SamlLoginWritten, StoreError, UserWrite};
use tessera_core::text::clip;
use tessera_core::trace::{Denial, Trace};

use crate::attempts::{self, Attempt, PersonAttempts, outcome_of, settle_all, with_hash_slot};
use crate::state::AppState;
use crate::{clock, request_id};

/// Why the service could not decide, or not record what it decided. The caller answers
/// `503`; the detail goes to the log only.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("the audit trail is unavailable")]
    Audit,
    #[error("the password check did not finish: {0}")]
    Hash(#[from] tokio::task::JoinError),
}

/// A granted token request: what was granted and the tokens.
pub struct Issued {
    pub grant: Grant,
    pub access_token: String,
    /// For a person's login with a client that may refresh.
    pub refresh_token: Option<String>,
    /// When `openid` was granted.
    pub id_token: Option<String>,
}

/// Decides a token request and, when granted, issues its token; the audit event is
/// committed before this returns. A refusal is the decision's denial, for the caller.
pub async fn request_token(
    st: &AppState,
    raw: &RawTokenRequest<'_>,
    source: &str,
) -> Result<Result<Issued, Denial>, ServiceError> {
    let parsed = decision::parse(raw);
    let (mut decision, refresh_token) = decide_and_apply(st, parsed, source).await?;
    if let Some(update) = &decision.login_update {
        let client = decision.outcome.as_ref().ok().map(|g| g.client_id.as_str());
        st.store.record_login(update, client, clock::now()).await?;
    }
    let now_ms = clock::now_ms();
    let request_id = request_id::current();
    let reason = decision.reason();
    // The trace goes to the audit trail; the answer needs only the outcome.
    let trace = std::mem::take(&mut decision.trace);
    let event = audit_event(
        &decision,
        trace,
        AuditKind::Token,
        request_id.clone(),
        now_ms,
        source,
    );
    st.audit
        .record(event)
        .await
        .map_err(|_| ServiceError::Audit)?;
    st.metrics.token(reason);
    // Committed: the tokens may now exist.
    let cred = decision.secret_used.as_ref().map(|s| s.id.as_str());
    Ok(match decision.outcome {
        Ok(grant) => {
            let now = now_ms / 1000;
            let access_token = sign(st, &grant, cred, &request_id, now);
            let id_token = grant
                .login
                .as_deref()
                .filter(|l| l.id_token)
                .map(|l| sign_id_token(st, &grant, l, &access_token, now));
            Ok(Issued {
                access_token,
                refresh_token,
                id_token,
                grant,
            })
        }
        Err(denial) => Err(denial),
    })
}

/// Decides, then applies what the decision asks of stored grants: a code's redemption
/// or a refresh token's rotation (each only if no other request was first: then the
/// request is decided again on what is stored now, and is the replay), or a replay's
/// revocation. Returns the decision and the new refresh token, if one was stored.
async fn decide_and_apply(
    st: &AppState,
    parsed: Parsed,
    source: &str,
) -> Result<(Decision, Option<String>), ServiceError> {
    let mut d = evaluate(st, parsed.clone(), source).await?;
    for _ in 0..2 {
        let now = clock::now();
        let next = |d: &Decision| {
            let idle = d
                .outcome
                .as_ref()
                .ok()?
                .login
                .as_ref()?
                .refresh_idle_until?;
            let (token, hash) = interactive::new_token(interactive::REFRESH_PREFIX);
            Some((token, hash, idle))
        };
        let won = match d.grant_effect.take() {
            None => return Ok((d, None)),
            Some(GrantEffect::Revoke { grant_id, reason }) => {
                st.store
                    .revoke_login_grant(&grant_id, reason.code(), now)
                    .await?;
                return Ok((d, None));
            }
            Some(GrantEffect::Redeem { code_hash, grant }) => {
                let fresh = next(&d);
                let record = first_refresh(&fresh, &grant.id, now);
                let won = st
                    .store
                    .redeem_auth_code(&code_hash, &grant, record.as_ref(), now)
                    .await?;
                won.then(|| fresh.map(|f| f.0))
            }
            Some(GrantEffect::Start { grant }) => {
                let fresh = next(&d);
                let record = first_refresh(&fresh, &grant.id, now);
                st.store.start_login_grant(&grant, record.as_ref()).await?;
                Some(fresh.map(|f| f.0))
            }
            Some(GrantEffect::Rotate { old_hash }) => {
                let grant_id = d
                    .outcome
                    .as_ref()
                    .ok()
                    .and_then(|g| g.login.as_ref())
                    .map(|l| l.grant_id.clone())
                    .unwrap_or_default();
                let (token, hash, idle) = next(&d).unwrap_or_default();
                let record = RefreshToken {
                    hash,
                    grant_id,
                    created_at: now,
                    idle_expires_at: idle,
                    used_at: None,
                };
                let rotated = st
                    .store
                    .rotate_refresh_token(&old_hash, &record, now)
                    .await?;
                (rotated == Rotation::Rotated).then_some(Some(token))
            }
        };
        match won {
            Some(token) => return Ok((d, token)),
            // Another request used the code or token between our read and our write.
            None => d = evaluate(st, parsed.clone(), source).await?,
        }
    }
    // A third decision cannot race again: the code or token is used by now, so the
    // decision is a replay, whose revocation is applied here.
    if let Some(GrantEffect::Revoke { grant_id, reason }) = d.grant_effect.take() {
        st.store
            .revoke_login_grant(&grant_id, reason.code(), clock::now())
            .await?;
    }
    Ok((d, None))
}

/// The stored record of a grant's first refresh token, when one is issued (`fresh`: the
/// token, its hash and its idle end).
fn first_refresh(
    fresh: &Option<(String, Vec<u8>, i64)>,
    grant_id: &str,
    now: i64,
) -> Option<RefreshToken> {
    fresh.as_ref().map(|(_, hash, idle)| RefreshToken {
        hash: hash.clone(),
        grant_id: grant_id.to_string(),
        created_at: now,
        idle_expires_at: *idle,
        used_at: None,
    })
}

/// A dry run of a parsed request for an admin of `org_id`: the same facts and decision
/// as the token endpoint, without throttling, effects or a token. Another org's client
/// is, to this admin, no client at all. Audited as a diagnosis by `actor`.
pub async fn dry_run(
    st: &AppState,
    parsed: Parsed,
    source: IpAddr,
    org_id: i64,
    actor: &str,
) -> Result<(Decision, String), ServiceError> {
    let source_text = source.to_string();
    let facts = load_facts(st, &parsed, &source_text).await?;
    let facts = match &facts.client {
        Some(cf) if cf.org.id != org_id => Facts {
            throttle: facts.throttle,
            ..Facts::default()
        },
        _ => facts,
    };
    let opts = DecideOptions {
        dry_run: true,
        ..st.decide_options()
    };
    let d = decision::decide(parsed, &facts, clock::now(), opts);
    let request_id = request_id::current();
    let mut event = audit_event(
        &d,
        d.trace.clone(),
        AuditKind::Diagnose,
        request_id.clone(),
        clock::now_ms(),
        &source_text,
    );
    event.org_id = Some(org_id);
    event.actor = Some(actor.to_string());
    st.audit
        .record(event)
        .await
        .map_err(|_| ServiceError::Audit)?;
    Ok((d, request_id))
}

/// A client authenticated for a request without a grant (introspection, revocation),
/// in the same throttle budget as its token requests. A refusal is audited as `kind`.
pub async fn authenticate_client(
    st: &AppState,
    raw: &RawTokenRequest<'_>,
    source: &str,
    public_ok: bool,
    kind: AuditKind,
) -> Result<Result<(Arc<ClientFacts>, ClientRequest), Denial>, ServiceError> {
    let parsed = decision::parse_client(raw, public_ok);
    let mut facts = match parsed.facts_key() {
        Some(id) => st.store.token_facts(id, source).await?,
        None => Facts::default(),
    };
    let opts = st.decide_options();
    let d = match &parsed.request {
        Ok(req) => {
            let attempt =
                Attempt::take(&st.store, &req.client.client_id, source, st.throttle).await;
            facts.throttle = attempt.state;
            if let Some(cf) = &facts.client {
                facts.remote_jwks = remote_jwks(st, &req.client, cf).await;
            }
            let retry = parsed.clone();
            let d = decision::decide_client(parsed, &facts, clock::now(), opts);
            let d = match &d.assertion_use {
                Some(used) if !remember_assertion(st, &d.client_id, used).await? => {
                    facts.assertion_seen = true;
                    decision::decide_client(retry, &facts, clock::now(), opts)
                }
                _ => d,
            };
            attempt.settle(outcome_of(d.throttle_update)).await?;
            d
        }
        Err(_) => decision::decide_client(parsed, &facts, clock::now(), opts),
    };
    if let Err(denial) = &d.outcome {
        let event = AuditEvent {
            request_id: request_id::current(),
            time_ms: clock::now_ms(),
            org_id: d.org_id,
            kind,
            actor: None,
            client_id: d.client_id.as_deref().map(clip),
            subject: None,
            source_ip: Some(source.to_string()),
            outcome: "denied".into(),
            reason: Some(denial.reason.code().to_string()),
            description: Some(denial.description.clone()),
            grant_type: None,
            scope: None,
            secret_id: d.secret_used.as_ref().map(|s| s.id.clone()),
            secret_hint: d.secret_used.as_ref().map(|s| s.hint.clone()),
            trace: d.trace.clone(),
            change: None,
        };
        st.audit
            .record(event)
            .await
            .map_err(|_| ServiceError::Audit)?;
    }
    Ok(d.outcome)
}

/// What a token is, as introspection (RFC 7662) and revocation (RFC 7009) see it.
pub enum TokenState {
    /// Not a token of this server, or one that no longer works, or another org's.
    Inactive,
    /// A live access token.
    Access(Box<AccessClaims>),
    /// A live refresh token of the grant.
    Refresh(Box<(RefreshToken, LoginGrant)>),
}

/// Looks a token up for a client of `cf`'s org: signature, expiry, issuer and org for an
/// access token; for one of a person's login, its grant still live and the person still
/// active (what a JWT alone cannot tell).
pub async fn token_state(
    st: &AppState,
    cf: &ClientFacts,
    token: &str,
) -> Result<TokenState, ServiceError> {
    let now = clock::now();
    if token.starts_with(interactive::REFRESH_PREFIX) {
        let Some((t, g)) = st
            .store
            .refresh_token(&interactive::hash_token(token))
            .await?
        else {
            return Ok(TokenState::Inactive);
        };
        let live = t.used_at.is_none()
            && t.idle_expires_at > now
            && g.is_live(now)
            && g.org_id == cf.org.id
            && person_active(st, g.org_id, &g.user_id, now).await?;
        return Ok(if live {
            TokenState::Refresh(Box::new((t, g)))
        } else {
            TokenState::Inactive
        });
    }
    let Ok(claims) = tessera_core::jwt::verify(token, &st.keys.get().verifiers, now) else {
        return Ok(TokenState::Inactive);
    };
    if claims.iss != st.issuer || claims.org != cf.org.slug.as_str() {
        return Ok(TokenState::Inactive);
    }
    if let Some(gid) = &claims.gid {
        let live = match st.store.login_grant(gid).await? {
            Some(g) => g.is_live(now) && person_active(st, g.org_id, &g.user_id, now).await?,
            None => false,
        };
        if !live {
            return Ok(TokenState::Inactive);
        }
    }
    if !issuer_still_entitled(st, &claims, now).await? {
        return Ok(TokenState::Inactive);
    }
    Ok(TokenState::Access(Box::new(claims)))
}

/// What the token was issued on still holds: its client exists in its org and is
/// enabled, the org is enabled, the secret it authenticated with (`cred`) is not
/// revoked, and the service account it names is active.
async fn issuer_still_entitled(
    st: &AppState,
    claims: &AccessClaims,
    now: i64,
) -> Result<bool, ServiceError> {
    use tessera_core::model::UserState;
    let facts = st
        .store
        .token_facts(&claims.client_id, "introspect")
        .await?;
    let Some(cf) = facts.client else {
        return Ok(false);
    };
    if !cf.client.enabled || !cf.org.enabled || cf.org.slug.as_str() != claims.org {
        return Ok(false);
    }
    if let Some(cred) = &claims.cred
        && !cf
            .secrets
            .iter()
            .any(|s| &s.id == cred && s.revoked_at.is_none())
    {
        return Ok(false);
    }
    if let Some(sa) = &cf.service_account
        && claims.sub == sa.id
        && sa.effective_state(now) != UserState::Active
    {
        return Ok(false);
    }
    Ok(true)
}

async fn person_active(
    st: &AppState,
    org_id: i64,
    user_id: &str,
    now: i64,
) -> Result<bool, ServiceError> {
    Ok(st
        .store
        .get_user(org_id, user_id)
        .await?
        .is_some_and(|u| u.effective_state(now) == tessera_core::model::UserState::Active))
}

/// Revokes what `token` belongs to, if it is `client`'s: a refresh token's grant, or the
/// grant of a login's access token. Returns the grant revoked, if any; `Err(denial)` for
/// a token this server cannot revoke (a `client_credentials` access token).
pub async fn revoke(
    st: &AppState,
    cf: &ClientFacts,
    token: &str,
) -> Result<Result<Option<String>, Denial>, ServiceError> {
    let client_id = cf.client.client_id.as_str();
    let grant_id = match token_state(st, cf, token).await? {
        TokenState::Inactive => None,
        TokenState::Refresh(b) => (b.1.client_id == client_id).then(|| b.1.id.clone()),
        TokenState::Access(c) if c.client_id == client_id => match &c.gid {
            Some(g) => Some(g.clone()),
            None => {
                return Ok(Err(Denial {
                    reason: Reason::RevocationUnsupported,
                    description: format!(
                        "access tokens of client_credentials are not revoked one by one: each ends by itself within the client's access_token_ttl ({} s). To cut a caller off at once, revoke or rotate the client's secret, or disable the client",
                        cf.client.token_ttl
                    ),
                    retry_after: None,
                }));
            }
        },
        TokenState::Access(_) => None,
    };
    if let Some(g) = &grant_id {
        st.store
            .revoke_login_grant(g, "revoked_by_client", clock::now())
            .await?;
    }
    Ok(Ok(grant_id))
}

/// A login at `org`'s login page: the same person checks as the password grant, in the
/// budgets of the page from this address and of the username, with the attempt's
/// effects applied. The caller audits the login with the session it starts.
pub async fn password_login(
    st: &AppState,
    org: &Org,
    creds: ResourceOwnerCredentials,
    ip: IpAddr,
) -> Result<LoginDecision, ServiceError> {
    let source = ip.to_string();
    // The attempt's places in the budgets of this org's login page from this address,
    // and of the username, taken before anything is checked.
    let mut page_attempt = Attempt::take(
        &st.store,
        &format!("login:{}", org.slug),
        &source,
        st.throttle,
    )
    .await;
    let mut person = if page_attempt.blocked() {
        None
    } else {
        Some(PersonAttempts::take(st, org.slug.as_str(), &creds.username, &source).await)
    };
    let checks_password = person.as_ref().is_some_and(|p| !p.blocked());
    let mut facts = LoginFacts {
        throttle: page_attempt.state,
        person: PersonFacts {
            throttle: person.as_ref().map(|p| p.throttle()).unwrap_or_default(),
            ..PersonFacts::default()
        },
    };
    if checks_password {
        facts.person.resource_owner = resource_owner(st, org, &creds.username).await?;
    }
    let opts = st.decide_options();
    let org_for_decision = org.clone();
    // Taking places may have waited: the decision is made at the time it is made.
    let now = clock::now();
    let d = if checks_password {
        let started = || {
            page_attempt.count_if_abandoned();
            if let Some(p) = &mut person {
                p.count_if_abandoned();
            }
        };
        attempts::with_hash_slot(st, started, move |busy| {
            facts.person.hashing_busy = busy;
            decision::decide_login(&creds, &org_for_decision, &facts, ip, now, opts)
        })
        .await?
    } else {
        decision::decide_login(&creds, &org_for_decision, &facts, ip, now, opts)
    };
    settle_all(
        page_attempt,
        outcome_of(d.throttle_update),
        person,
        d.person_attempt,
    )
    .await?;
    if let Some(update) = &d.login_update {
        st.store.record_login(update, None, now).await?;
    }
    Ok(d)
}

/// Runs the decision function over a parsed request: load facts, reserve the attempt's
/// places in its throttle budgets, decide, and settle them.
async fn evaluate(st: &AppState, parsed: Parsed, source: &str) -> Result<Decision, ServiceError> {
    // A SAML bearer assertion costs signature checks: none before the client has
    // authenticated (checked below), so a stranger naming a client cannot make them.
    let mut facts = load_facts_checking(st, &parsed, source, false).await?;
    let now = clock::now();
    let opts = st.decide_options();
    // A request that parsed names its client: its attempt takes a place in the budget of
    // (client id, source) before the secret is checked, and a password grant's in the
    // username's budgets too.
    let Ok(req) = &parsed.request else {
        return Ok(decision::decide(parsed, &facts, now, opts));
    };
    let mut client = Attempt::take(&st.store, &req.client.client_id, source, st.throttle).await;
    facts.throttle = client.state;
    // A password grant takes places in the username's budgets and a hash slot only if
    // its decision reaches a password hash: a probe decision without a slot stops right
    // there (PasswordCheckBusy) and says so. A wrong client secret, a service account, a
    // disabled user hold neither.
    let mut person = None;
    if let (GrantRequest::Password(creds), Some(cf)) = (&req.grant, &facts.client)
        && !client.blocked()
    {
        let mut probe = facts.clone();
        if let Some(p) = probe.person_mut() {
            p.hashing_busy = true;
        }
        let needs_hash = decision::decide(parsed.clone(), &probe, now, opts).reason()
            == Some(Reason::PasswordCheckBusy);
        if needs_hash {
            let p = PersonAttempts::take(st, cf.org.slug.as_str(), &creds.username, source).await;
            if let Some(pf) = facts.person_mut() {
                pf.throttle = p.throttle();
            }
            person = Some(p);
        }
    }
    // The bearer assertion is validated once a probe decision shows the client
    // authenticated and may use the grant.
    if let (GrantRequest::SamlBearer(assertion), Some(cf)) = (&req.grant, &facts.client)
        && !client.blocked()
    {
        let probe = decision::decide(parsed.clone(), &facts, now, opts);
        let client_ok = probe.trace.steps().iter().any(|s| {
            s.check == tessera_core::trace::Check::GrantTypeAllowed
                && s.verdict == tessera_core::trace::Verdict::Pass
        });
        if client_ok {
            facts.grant =
                GrantFacts::SamlBearer(Box::new(bearer_facts(st, cf, assertion.expose()).await?));
        }
    }
    // A client assertion's id is remembered after the decision verified it; if another
    // request remembered it first, this one is decided again as the replay it is.
    let retry =
        (req.client.method == AuthMethod::PrivateKeyJwt).then(|| (parsed.clone(), facts.clone()));
    // A SAML bearer assertion's use and its person are written after the decision; a
    // replay, a user changed meanwhile or a username taken meanwhile is decided again.
    let bearer =
        matches!(req.grant, GrantRequest::SamlBearer(_)).then(|| (parsed.clone(), facts.clone()));
    // Taking places may have waited: the decision is made at the time it is made.
    let now = clock::now();
    let d = match &mut person {
        Some(p) if !p.blocked() => {
            with_hash_slot(
                st,
                || {
                    client.count_if_abandoned();
                    p.count_if_abandoned();
                },
                move |busy| {
                    if let Some(pf) = facts.person_mut() {
                        pf.hashing_busy = busy;
                    }
                    decision::decide(parsed, &facts, now, opts)
                },
            )
            .await?
        }
        _ => decision::decide(parsed, &facts, now, opts),
    };
    let d = match (retry, &d.assertion_use) {
        (Some((parsed, mut facts)), Some(used))
            if !remember_assertion(st, &d.client_id, used).await? =>
        {
            facts.assertion_seen = true;
            decision::decide(parsed, &facts, clock::now(), opts)
        }
        _ => d,
    };
    let d = match bearer {
        Some((parsed, facts)) => write_bearer(st, parsed, facts, d, source).await?,
        None => d,
    };
    settle_all(
        client,
        outcome_of(d.throttle_update),
        person,
        d.person_attempt,
    )
    .await?;
    Ok(d)
}

/// Writes what a granted SAML bearer assertion asks (its single use and its person, in
/// one transaction), deciding again when that write finds the assertion used, the user
/// changed or the new user's username taken meanwhile.
async fn write_bearer(
    st: &AppState,
    parsed: Parsed,
    mut facts: Facts,
    mut d: Decision,
    source: &str,
) -> Result<Decision, ServiceError> {
    let opts = st.decide_options();
    let mut n = 1;
    for _ in 0..MAX_BEARER_TRIES {
        let Some(w) = d.saml_bearer_write.take() else {
            return Ok(d);
        };
        let login = SamlLogin {
            replay_keys: &w.replay_keys,
            user: &w.user,
            user_write: w.write,
            planned_from: w.planned_from.as_ref(),
            old_session: None,
            session: None,
            now: clock::now(),
        };
        match st.store.finish_saml_login(&login).await {
            Ok(SamlLoginWritten::Done) => return Ok(d),
            Ok(SamlLoginWritten::Replayed) => {
                if let GrantFacts::SamlBearer(b) = &mut facts.grant {
                    b.replayed = true;
                }
            }
            Ok(SamlLoginWritten::Stale) => {
                facts.grant = load_facts(st, &parsed, source).await?.grant;
            }
            // The unique index refused the new user: the same person, provisioned meanwhile
            // by another request (found by link once read again), or a username another
            // user holds (the next number).
            Err(StoreError::Conflict(_)) if w.write == UserWrite::Create => {
                n += 1;
                facts.grant = load_facts(st, &parsed, source).await?.grant;
                if let GrantFacts::SamlBearer(b) = &mut facts.grant
                    && let Some(Ok(a)) = &b.verdict
                {
                    let base = crate::saml::provisioned_username(&a.identity);
                    b.new_username = crate::saml::numbered_username(&base, n);
                }
            }
            Err(e) => return Err(e.into()),
        }
        d = decision::decide(parsed.clone(), &facts, clock::now(), opts);
    }
    Err(ServiceError::Store(StoreError::Backend(format!(
        "the SAML bearer grant could not be written after {MAX_BEARER_TRIES} tries"
    ))))
}

/// How many times a bearer grant's write is tried (a just-in-time user tries `name`,
/// `name-2`, …).
const MAX_BEARER_TRIES: usize = 20;

/// Remembers a verified assertion's `jti` for its client until it expires; false when
/// it was already remembered (a replay).
async fn remember_assertion(
    st: &AppState,
    client_id: &Option<String>,
    used: &AssertionUse,
) -> Result<bool, StoreError> {
    st.store
        .remember_assertion_id(
            client_id.as_deref().unwrap_or_default(),
            &used.jti,
            used.expires_at,
            clock::now(),
        )
        .await
}

/// The stored facts a parsed request needs: the client's, and what its grant reads
/// (none when it names no client).
async fn load_facts(st: &AppState, parsed: &Parsed, source: &str) -> Result<Facts, StoreError> {
    load_facts_checking(st, parsed, source, true).await
}

/// [`load_facts`], with a SAML bearer assertion validated (`check_assertion`) or left
/// unchecked until the client has authenticated (the token endpoint's probe).
async fn load_facts_checking(
    st: &AppState,
    parsed: &Parsed,
    source: &str,
    check_assertion: bool,
) -> Result<Facts, StoreError> {
    let mut facts = match decision::facts_key(parsed) {
        Some(client_id) => st.store.token_facts(client_id, source).await?,
        None => return Ok(Facts::default()),
    };
    let (Ok(req), Some(cf)) = (&parsed.request, &facts.client) else {
        return Ok(facts);
    };
    facts.remote_jwks = remote_jwks(st, &req.client, cf).await;
    facts.grant = match &req.grant {
        GrantRequest::ClientCredentials => GrantFacts::None,
        GrantRequest::Password(creds) => GrantFacts::Password(Box::new(PersonFacts {
            resource_owner: resource_owner(st, &cf.org, &creds.username).await?,
            ..PersonFacts::default()
        })),
        GrantRequest::AuthorizationCode(x) => {
            let code = st
                .store
                .auth_code(&interactive::hash_token(x.code.expose()))
                .await?;
            let user = match &code {
                Some(c) => st.store.get_user(c.org_id, &c.user_id).await?,
                None => None,
            };
            GrantFacts::Code(Box::new(CodeFacts { code, user }))
        }
        GrantRequest::SamlBearer(_) if !check_assertion => {
            GrantFacts::SamlBearer(Box::new(SamlBearerFacts {
                unchecked: true,
                ..SamlBearerFacts::default()
            }))
        }
        GrantRequest::SamlBearer(assertion) => {
            GrantFacts::SamlBearer(Box::new(bearer_facts(st, cf, assertion.expose()).await?))
        }
        GrantRequest::RefreshToken(t) => {
            let token = st
                .store
                .refresh_token(&interactive::hash_token(t.expose()))
                .await?;
            let user = match &token {
                Some((_, g)) => st.store.get_user(g.org_id, &g.user_id).await?,
                None => None,
            };
            let break_glass = match &user {
                Some(u) if cf.org.sso_enforced => st
                    .store
                    .sso_config(cf.org.id)
                    .await?
                    .is_some_and(|c| c.is_break_glass(&u.id)),
                _ => false,
            };
            GrantFacts::Refresh(Box::new(RefreshFacts {
                token,
                user,
                break_glass,
            }))
        }
    };
    Ok(facts)
}

/// What the SAML bearer grant reads: the assertion validated against the org's IdP, and
/// the users its NameID and email name. Nothing is validated for a client the decision
/// refuses before the assertion anyway (disabled, or without the grant).
async fn bearer_facts(
    st: &AppState,
    cf: &ClientFacts,
    assertion: &str,
) -> Result<SamlBearerFacts, StoreError> {
    let c = &cf.client;
    if !c.enabled || !cf.org.enabled || !c.grant_types.contains(&GrantType::SamlBearer) {
        return Ok(SamlBearerFacts::default());
    }
    let Some(config) = st
        .store
        .sso_config(cf.org.id)
        .await?
        .filter(|c| c.has_idp())
    else {
        return Ok(SamlBearerFacts::default());
    };
    let trust = crate::saml::trust(&config);
    let policy = crate::saml::policy(&config);
    let token_endpoint = format!("{}/oauth/token", st.issuer);
    let (sp_entity_id, _) = crate::saml::addresses(st, &cf.org);
    let assertion = assertion.to_string();
    let now = std::time::SystemTime::UNIX_EPOCH
        + std::time::Duration::from_secs(clock::now().max(0) as u64);
    // Signature checks are CPU work: off the async workers.
    let verdict = tokio::task::spawn_blocking(move || {
        tessera_saml::validate_bearer(
            &assertion,
            &trust,
            // The org's own SP entity id only: the token endpoint is every org's, and an
            // assertion for one org must not be good in another that trusts the same IdP.
            &[sp_entity_id],
            &token_endpoint,
            now,
            policy,
        )
    })
    .await
    .map_err(|e| StoreError::Backend(e.to_string()))?;
    let accepted = match verdict {
        Ok(a) => a,
        Err(r) => {
            return Ok(SamlBearerFacts {
                verdict: Some(Err((r.reason, r.detail))),
                config,
                ..SamlBearerFacts::default()
            });
        }
    };
    let identity = config.identity(&accepted.name_id, &accepted.attributes);
    let by_link = st
        .store
        .user_by_saml_link(cf.org.id, &identity.name_id)
        .await?;
    let by_email = match (&by_link, &identity.email) {
        (None, Some(e)) => st.store.user_by_email(cf.org.id, e).await?,
        _ => None,
    };
    Ok(SamlBearerFacts {
        new_username: crate::saml::provisioned_username(&identity),
        new_user_id: format!("usr_{}", ulid::Ulid::new().to_string().to_lowercase()),
        new_grant_id: interactive::new_grant_id(),
        verdict: Some(Ok(BearerAssertion {
            identity,
            issuer: accepted.issuer,
            assertion_id: accepted.assertion_id,
            signature_algorithms: accepted.signature_algorithms,
            replay_keys: accepted.replay_keys,
        })),
        config,
        by_link,
        by_email,
        replayed: false,
        unchecked: false,
    })
}

/// For a client assertion of a client that publishes its keys at a URL: its JWK Set as
/// last fetched, or fetched now.
async fn remote_jwks(
    st: &AppState,
    presented: &PresentedClient,
    cf: &ClientFacts,
) -> Option<Result<Arc<serde_json::Value>, String>> {
    let (AuthMethod::PrivateKeyJwt, Some(jwt), None, Some(uri)) = (
        presented.method,
        &presented.secret,
        &cf.client.jwks,
        &cf.client.jwks_uri,
    ) else {
        return None;
    };
    // Nothing to fetch for a client the decision refuses before its keys anyway.
    let c = &cf.client;
    if !c.enabled || !cf.org.enabled || !c.auth_methods.contains(&AuthMethod::PrivateKeyJwt) {
        return None;
    }
    let kid = tessera_core::client_keys::unverified_kid(jwt.expose());
    Some(st.jwks.get(uri, kid.as_deref()).await)
}

/// The user a username names in `org`, with the clients that run as them (for a service
/// account) and their SSO exemption: for the password grant and the login page.
async fn resource_owner(
    st: &AppState,
    org: &Org,
    username: &str,
) -> Result<Option<ResourceOwnerFacts>, StoreError> {
    let Some(user) = st.store.user_by_username(org.id, username).await? else {
        return Ok(None);
    };
    let clients = if user.user_type == UserType::Service {
        st.store
            .list_clients(org.id)
            .await?
            .into_iter()
            .filter(|c| c.service_account_id.as_deref() == Some(user.id.as_str()))
            .map(|c| (c.client_id.to_string(), c.name))
            .collect()
    } else {
        Vec::new()
    };
    let break_glass = st
        .store
        .sso_config(org.id)
        .await?
        .is_some_and(|c| c.is_break_glass(&user.id));
    Ok(Some(ResourceOwnerFacts {
        user,
        clients,
        break_glass,
        sso_login_url: format!("{}/saml/{}/login", st.issuer, org.slug),
    }))
}

/// Signs the access token of a grant (RFC 9068 claims; `cred` names the secret used).
fn sign(st: &AppState, g: &Grant, cred: Option<&str>, jti: &str, now: i64) -> String {
    let claims = AccessClaims {
        iss: st.issuer.clone(),
        sub: g.subject.clone(),
        aud: st.issuer.clone(),
        client_id: g.client_id.clone(),
        org: g.org.clone(),
        scope: g.scopes.join(" "),
        jti: jti.to_string(),
        iat: now,
        exp: now + g.ttl,
        cred: cred.map(str::to_string),
        gid: g.login.as_ref().map(|l| l.grant_id.clone()),
    };
    st.keys.get().signer.sign(&claims)
}

/// The OpenID Connect ID token of a login (OIDC Core §2, §3.1.3.6), signed by the same
/// key as the access token it comes with.
fn sign_id_token(st: &AppState, g: &Grant, l: &LoginIssue, access_token: &str, now: i64) -> String {
    let keys = st.keys.get();
    let has = |s: &str| g.scopes.iter().any(|x| x == s);
    let user = &l.user;
    let claims = IdClaims {
        iss: &st.issuer,
        sub: &g.subject,
        aud: &g.client_id,
        exp: now + g.ttl,
        iat: now,
        auth_time: l.auth_time,
        nonce: l.nonce.as_deref(),
        at_hash: keys.id_token_signer().at_hash(access_token),
        sid: &l.sid,
        profile: has("profile").then(|| ProfileClaims::of(user)),
        email: has("email").then(|| EmailClaims::of(user)).flatten(),
    };
    keys.id_token_signer().sign_id_token(&claims)
}

/// The claims of an ID token.
#[derive(serde::Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    at_hash: String,
    sid: &'a str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    profile: Option<ProfileClaims>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    email: Option<EmailClaims>,
}

/// The `profile` scope's claims (OIDC Core §5.4), as far as Tessera knows them.
#[derive(serde::Serialize)]
pub struct ProfileClaims {
    pub preferred_username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ProfileClaims {
    pub fn of(user: &User) -> Self {
        Self {
            preferred_username: user.username.clone(),
            name: user.display_name.clone(),
        }
    }
}

/// The `email` scope's claims, when the user has an address. It counts as verified when
/// the org's IdP asserted it (the user is linked through SSO).
#[derive(serde::Serialize)]
pub struct EmailClaims {
    pub email: String,
    pub email_verified: bool,
}

impl EmailClaims {
    pub fn of(user: &User) -> Option<Self> {
        Some(Self {
            email: user.email.clone()?,
            email_verified: user.saml_name_id.is_some(),
        })
    }
}

/// The audit event of a decision (token or dry run).
fn audit_event(
    d: &Decision,
    trace: Trace,
    kind: AuditKind,
    request_id: String,
    time_ms: i64,
    source: &str,
) -> AuditEvent {
    let (outcome, reason, description, scope) = match &d.outcome {
        Ok(g) => (
            "granted",
            d.grant_reason.map(|r| r.code().to_string()),
            None,
            Some(g.scopes.join(" ")),
        ),
        Err(den) => (
            "denied",
            Some(den.reason.code().to_string()),
            Some(den.description.clone()),
            None,
        ),
    };
    AuditEvent {
        request_id,
        time_ms,
        org_id: d.org_id,
        kind,
        actor: None,
        client_id: d.client_id.as_deref().map(clip),
        subject: d.subject.clone(),
        source_ip: Some(source.to_string()),
        outcome: outcome.into(),
        reason,
        description,
        grant_type: d.grant_type.map(|g| g.as_str().to_string()),
        scope,
        secret_id: d.secret_used.as_ref().map(|s| s.id.clone()),
        secret_hint: d.secret_used.as_ref().map(|s| s.hint.clone()),
        trace,
        change: None,
    }
}
