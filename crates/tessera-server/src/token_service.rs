//! The token service: everything between a token request's plain values and its answer,
//! in one place for every caller. Parse, load the facts, take the attempt's places in its
//! throttle budgets, decide (the core's one decision function), apply the decision's
//! effects, sign, audit. The token endpoint, the dry run and the login page call it;
//! they only turn HTTP into plain values and answers back into HTTP.

use std::net::IpAddr;

use tessera_core::Reason;
use tessera_core::audit::{AuditEvent, AuditKind};
use tessera_core::decision::{
    self, DecideOptions, Decision, Facts, Grant, GrantFacts, LoginDecision, LoginFacts, Parsed,
    PersonFacts, ResourceOwnerFacts,
};
use tessera_core::jwt::AccessClaims;
use tessera_core::model::{Org, UserType};
use tessera_core::request::{GrantRequest, RawTokenRequest, ResourceOwnerCredentials};
use tessera_core::store::StoreError;
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

/// A granted token request: what was granted and the signed access token.
pub struct Issued {
    pub grant: Grant,
    pub access_token: String,
}

/// Decides a token request and, when granted, issues its token; the audit event is
/// committed before this returns. A refusal is the decision's denial, for the caller.
pub async fn request_token(
    st: &AppState,
    raw: &RawTokenRequest<'_>,
    source: &str,
) -> Result<Result<Issued, Denial>, ServiceError> {
    let parsed = decision::parse(raw);
    let mut decision = evaluate(st, parsed, source).await?;
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
    // Committed: the token may now exist.
    let cred = decision.secret_used.as_ref().map(|s| s.id.as_str());
    Ok(match decision.outcome {
        Ok(grant) => Ok(Issued {
            access_token: sign(st, &grant, cred, &request_id, now_ms / 1000),
            grant,
        }),
        Err(denial) => Err(denial),
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
    let mut facts = load_facts(st, &parsed, source).await?;
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
    settle_all(
        client,
        outcome_of(d.throttle_update),
        person,
        d.person_attempt,
    )
    .await?;
    Ok(d)
}

/// The stored facts a parsed request needs: the client's, and what its grant reads
/// (none when it names no client).
async fn load_facts(st: &AppState, parsed: &Parsed, source: &str) -> Result<Facts, StoreError> {
    let mut facts = match decision::facts_key(parsed) {
        Some(client_id) => st.store.token_facts(client_id, source).await?,
        None => return Ok(Facts::default()),
    };
    let (Ok(req), Some(cf)) = (&parsed.request, &facts.client) else {
        return Ok(facts);
    };
    facts.grant = match &req.grant {
        GrantRequest::ClientCredentials => GrantFacts::None,
        GrantRequest::Password(creds) => GrantFacts::Password(Box::new(PersonFacts {
            resource_owner: resource_owner(st, &cf.org, &creds.username).await?,
            ..PersonFacts::default()
        })),
    };
    Ok(facts)
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
    };
    st.keys.get().signer.sign(&claims)
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
