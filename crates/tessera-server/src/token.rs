//! `POST /oauth/token`: turns the HTTP request into plain values, asks the core's
//! decision function, applies its side effects (throttle record, audit event, token) and
//! answers.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_core::Reason;
use tessera_core::audit::{AuditEvent, AuditKind};
use tessera_core::decision::{self, Decision, Facts, Grant, Parsed, ResourceOwnerFacts};
use tessera_core::jwt::AccessClaims;
use tessera_core::model::{Org, UserType};
use tessera_core::request::RawTokenRequest;
use tessera_core::store::StoreError;
use tessera_core::text::clip;

use crate::attempts::{Attempt, PersonAttempts, outcome_of, settle_all, with_hash_slot};
use crate::error::{oauth_error, oauth_unavailable};
use crate::state::{AppState, Shared};
use crate::{clock, request_id};

/// The token endpoint.
pub async fn token(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let (body, body_too_large) = match body {
        Ok(b) => (b, false),
        Err(rejection) => (
            Bytes::new(),
            rejection.status() == StatusCode::PAYLOAD_TOO_LARGE,
        ),
    };
    let raw = RawTokenRequest {
        content_type: text(header::CONTENT_TYPE),
        body: &body,
        body_too_large,
        authorization: text(header::AUTHORIZATION),
        source_ip: peer.ip(),
    };
    let source = peer.ip().to_string();
    let decision = match evaluate(&st, &raw, &source).await {
        Ok(d) => d,
        Err(()) => return oauth_unavailable(),
    };
    if let Some(update) = &decision.login_update {
        let client = decision.outcome.as_ref().ok().map(|g| g.client_id.as_str());
        if let Err(e) = st.store.record_login(update, client, clock::now()).await {
            tracing::error!(error = %e, "login attempt not recorded");
            return oauth_unavailable();
        }
    }
    let now_ms = clock::now_ms();
    let request_id = request_id::current();
    let reason = decision.reason();
    // The answer is built first; it goes out only once its audit event is committed.
    let response = match &decision.outcome {
        Ok(grant) => {
            let cred = decision.secret_used.as_ref().map(|s| s.id.as_str());
            granted(grant, &issue(&st, grant, cred, &request_id, now_ms / 1000))
        }
        Err(denial) => oauth_error(denial, &st.issuer),
    };
    let event = audit_event(decision, AuditKind::Token, request_id, now_ms, &source);
    if st.audit.record(event).await.is_err() {
        return oauth_unavailable();
    }
    st.metrics.token(reason);
    response
}

/// The RFC 6749 §5.1 answer.
fn granted(grant: &Grant, token: &str) -> Response {
    #[derive(serde::Serialize)]
    struct TokenResponse<'a> {
        access_token: &'a str,
        token_type: &'static str,
        expires_in: i64,
        scope: String,
    }
    let mut res = Json(TokenResponse {
        access_token: token,
        token_type: "Bearer",
        expires_in: grant.ttl,
        scope: grant.scopes.join(" "),
    })
    .into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// Runs the decision function over a raw request: parse, load facts, reserve the
/// attempt's places in its throttle budgets, decide, and settle them.
async fn evaluate(st: &AppState, raw: &RawTokenRequest<'_>, source: &str) -> Result<Decision, ()> {
    let parsed = decision::parse(raw);
    let mut facts = load_facts(st, &parsed, source).await.map_err(|e| {
        tracing::error!(error = %e, "token facts not loaded");
    })?;
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
    let needs_hash =
        req.resource_owner.is_some() && facts.client.is_some() && !client.blocked() && {
            let probe = Facts {
                hashing_busy: true,
                ..facts.clone()
            };
            decision::decide(parsed.clone(), &probe, now, opts).reason()
                == Some(Reason::PasswordCheckBusy)
        };
    let mut person = None;
    if needs_hash && let (Some(creds), Some(cf)) = (&req.resource_owner, &facts.client) {
        let p = PersonAttempts::take(st, cf.org.slug.as_str(), &creds.username, source).await;
        facts.person_throttle = p.throttle();
        person = Some(p);
    }
    // Taking places may have waited: the decision is made at the time it is made.
    let now = clock::now();
    let d = match &mut person {
        Some(p) if !p.blocked() => with_hash_slot(
            st,
            || {
                client.count_if_abandoned();
                p.count_if_abandoned();
            },
            move |busy| {
                facts.hashing_busy = busy;
                decision::decide(parsed, &facts, now, opts)
            },
        )
        .await
        .map_err(|e| tracing::error!(error = %e, "password decision failed"))?,
        _ => decision::decide(parsed, &facts, now, opts),
    };
    let settled = settle_all(
        client,
        outcome_of(d.throttle_update),
        person,
        d.person_attempt,
    )
    .await;
    settled.map_err(|e| tracing::error!(error = %e, "throttle record not saved"))?;
    Ok(d)
}

/// The stored facts a parsed request needs (none when it names no client). Shared by
/// the token endpoint and the dry run.
pub async fn load_facts(st: &AppState, parsed: &Parsed, source: &str) -> Result<Facts, StoreError> {
    let mut facts = match decision::facts_key(parsed) {
        Some(client_id) => st.store.token_facts(client_id, source).await?,
        None => return Ok(Facts::default()),
    };
    if let (Ok(req), Some(cf)) = (&parsed.request, &facts.client)
        && let Some(creds) = &req.resource_owner
    {
        facts.resource_owner = resource_owner(st, &cf.org, &creds.username).await?;
    }
    Ok(facts)
}

/// The user a username names in `org`, with the clients that run as them (for a service
/// account) and their SSO exemption: for the password grant and the login page.
pub async fn resource_owner(
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

fn issue(st: &AppState, g: &Grant, cred: Option<&str>, jti: &str, now: i64) -> String {
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
pub fn audit_event(
    d: Decision,
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
        trace: d.trace,
        change: None,
    }
}
