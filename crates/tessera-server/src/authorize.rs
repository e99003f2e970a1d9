//! `GET` (and `POST`) `/oauth/authorize`: turns the request into plain values (the query, the client's
//! facts, the browser's session), asks the core's `decide_authorize`, issues the code it
//! allows, audits the decision with its trace and answers: an error page, a redirect back
//! to the client (code or error, with `state` and RFC 9207 `iss`), or a redirect to the
//! org's login, which comes back here.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_core::audit::{AuditEvent, AuditKind};
use tessera_core::decision::{
    AuthorizeDecision, AuthorizeFacts, AuthorizeOutcome, AuthorizeParams, CodeToIssue,
    SessionFacts, decide_authorize,
};
use tessera_core::interactive::{self, AuthCode, CODE_SECONDS};
use tessera_core::store::StoreError;
use tessera_core::trace::Denial;

use crate::html::{page, unavailable};
use crate::state::{AppState, Shared};
use crate::{clock, request_id, session};

/// `GET /oauth/authorize`.
pub async fn authorize(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = AuthorizeParams::parse(query.as_deref().unwrap_or(""));
    decide_and_answer(st, peer, params, headers).await
}

/// `POST /oauth/authorize`: the same request, form-encoded in the body (OIDC Core
/// §3.1.2.1 asks for both methods). After a login on the way, the browser comes back
/// by `GET` with the same parameters.
pub async fn authorize_post(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let Ok(text) = std::str::from_utf8(&body) else {
        return page(
            StatusCode::BAD_REQUEST,
            "This sign-in link does not work",
            "The authorization request's body is not UTF-8 text.",
            Some(tessera_core::Reason::BodyMalformed),
        );
    };
    if !form {
        return page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "This sign-in link does not work",
            "An authorization request sent by POST is form-encoded (Content-Type: application/x-www-form-urlencoded).",
            Some(tessera_core::Reason::ContentTypeUnsupported),
        );
    }
    let mut res = decide_and_answer(st, peer, AuthorizeParams::parse(text), headers).await;
    // After a POST, redirect with 303 so the browser follows with a GET, never
    // re-posting the body (RFC 9700 §4.12).
    if res.status() == StatusCode::FOUND {
        *res.status_mut() = StatusCode::SEE_OTHER;
    }
    res
}

async fn decide_and_answer(
    st: Shared,
    peer: SocketAddr,
    params: AuthorizeParams,
    headers: HeaderMap,
) -> Response {
    let source = peer.ip().to_string();
    let facts = match load_facts(&st, &params, &headers, &source).await {
        Ok(f) => f,
        Err(e) => return unavailable(e),
    };
    let now = clock::now();
    let d = decide_authorize(&params, &facts, now);
    let response = match &d.outcome {
        AuthorizeOutcome::ErrorPage(denial) => error_page(denial),
        AuthorizeOutcome::ErrorRedirect(denial) => error_redirect(&st, &d, denial),
        AuthorizeOutcome::Login { sso } => to_login(&d, &params, *sso),
        AuthorizeOutcome::Code(c) => match issue_code(&st, &d, c, now).await {
            Ok(code) => code_redirect(&st, &d, &code),
            Err(e) => return unavailable(e),
        },
    };
    if audit(&st, d, &source).await.is_err() {
        return unavailable("audit");
    }
    response
}

/// The client the request names and the browser's live session, with the person.
async fn load_facts(
    st: &AppState,
    params: &AuthorizeParams,
    headers: &HeaderMap,
    source: &str,
) -> Result<AuthorizeFacts, StoreError> {
    let client = match params.client_id() {
        Some(id) => st.store.token_facts(id, source).await?.client,
        None => None,
    };
    let mut session_facts = None;
    if let Some(s) = session::current(st, headers).await
        && let Some(user) = st.store.get_user(s.org_id, &s.user_id).await?
    {
        let break_glass = st
            .store
            .sso_config(s.org_id)
            .await?
            .is_some_and(|c| c.is_break_glass(&user.id));
        session_facts = Some(SessionFacts {
            org_id: s.org_id,
            auth_time: s.created_at,
            sid: s.sid(),
            method: s.method.clone(),
            break_glass,
            user,
        });
    }
    Ok(AuthorizeFacts {
        client,
        session: session_facts,
    })
}

/// Stores a fresh code for the decision's grant; returns the code.
async fn issue_code(
    st: &AppState,
    d: &AuthorizeDecision,
    c: &CodeToIssue,
    now: i64,
) -> Result<String, StoreError> {
    let (code, hash) = interactive::new_token(interactive::CODE_PREFIX);
    let record = AuthCode {
        hash,
        grant_id: interactive::new_grant_id(),
        org_id: d.org_id.unwrap_or_default(),
        client_id: d.client_id.clone().unwrap_or_default(),
        user_id: c.user_id.clone(),
        redirect_uri: d.redirect_uri.clone().unwrap_or_default(),
        scopes: c.scopes.clone(),
        code_challenge: c.code_challenge.clone(),
        nonce: c.nonce.clone(),
        auth_time: c.auth_time,
        sid: c.sid.clone(),
        auth_method: c.auth_method.clone(),
        created_at: now,
        expires_at: now + CODE_SECONDS,
        used_at: None,
    };
    st.store.create_auth_code(&record).await?;
    Ok(code)
}

/// A refusal before the redirect URI is verified: a page, never a redirect.
fn error_page(denial: &Denial) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "This sign-in link does not work",
        &format!(
            "The link that brought you here is wrong: {}. Tell the application's owner; there is nothing to fix on your side.",
            denial.description
        ),
        Some(denial.reason),
    )
}

/// `redirect_uri` with `params` added to its query.
fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        q.append_pair(k, v);
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{}", q.finish())
}

fn found(location: &str) -> Response {
    let mut res = StatusCode::FOUND.into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A refusal back to the client (RFC 6749 §4.1.2.1, RFC 9207), with Tessera's `reason`
/// and `request_id`.
fn error_redirect(st: &AppState, d: &AuthorizeDecision, denial: &Denial) -> Response {
    let rid = request_id::current();
    let error = denial.reason.oauth_error().at_authorization_endpoint();
    let mut p = vec![
        ("error", error.as_str()),
        ("error_description", denial.description.as_str()),
        ("reason", denial.reason.code()),
        ("request_id", rid.as_str()),
        ("iss", st.issuer.as_str()),
    ];
    if let Some(s) = &d.state {
        p.push(("state", s));
    }
    found(&with_query(d.redirect_uri.as_deref().unwrap_or("/"), &p))
}

/// The code back to the client.
fn code_redirect(st: &AppState, d: &AuthorizeDecision, code: &str) -> Response {
    let mut p = vec![("code", code), ("iss", st.issuer.as_str())];
    if let Some(s) = &d.state {
        p.push(("state", s));
    }
    found(&with_query(d.redirect_uri.as_deref().unwrap_or("/"), &p))
}

/// To the org's login (its IdP when SSO is enforced), coming back here afterwards.
/// `prompt` is dropped from the way back: the login it asks for is the one on the way.
fn to_login(d: &AuthorizeDecision, params: &AuthorizeParams, sso: bool) -> Response {
    let org = d.org_slug.as_deref().unwrap_or_default();
    let back = format!("/oauth/authorize?{}", params.to_query(&["prompt"]));
    let mut p = vec![("return_to", back.as_str())];
    if !sso && let Some(h) = params.get("login_hint") {
        p.push(("login_hint", h));
    }
    // A fresh login asked for: the IdP too must authenticate afresh (ForceAuthn).
    let fresh = params
        .get("prompt")
        .is_some_and(|p| p.split(' ').any(|v| v == "login"))
        || params.get("max_age").is_some();
    if sso && fresh {
        p.push(("force_authn", "1"));
    }
    let path = if sso {
        format!("/saml/{org}/login")
    } else {
        format!("/login/{org}")
    };
    found(&with_query(&path, &p))
}

/// The decision's audit event, in the client's org when the client is known.
async fn audit(st: &AppState, d: AuthorizeDecision, source: &str) -> Result<(), ()> {
    let (outcome, reason, description) = match &d.outcome {
        AuthorizeOutcome::ErrorPage(den) | AuthorizeOutcome::ErrorRedirect(den) => (
            "denied",
            Some(den.reason.code().to_string()),
            Some(den.description.clone()),
        ),
        AuthorizeOutcome::Login { .. } => ("login", None, None),
        AuthorizeOutcome::Code(_) => ("granted", None, None),
    };
    let scope = matches!(d.outcome, AuthorizeOutcome::Code(_)).then(|| d.scopes.join(" "));
    let event = AuditEvent {
        request_id: request_id::current(),
        time_ms: clock::now_ms(),
        org_id: d.org_id,
        kind: AuditKind::Authorize,
        actor: None,
        client_id: d.client_id,
        subject: d.subject,
        source_ip: Some(source.to_string()),
        outcome: outcome.into(),
        reason,
        description,
        grant_type: Some("authorization_code".into()),
        scope,
        secret_id: None,
        secret_hint: None,
        trace: d.trace,
        change: None,
    };
    st.audit.record(event).await.map_err(|_| ())
}
