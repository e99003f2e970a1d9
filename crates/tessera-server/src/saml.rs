//! The SAML service provider for each org: `GET /saml/{org}/metadata`,
//! `GET /saml/{org}/login?return_to=...` (SP-initiated, HTTP-Redirect) and
//! `POST /saml/{org}/acs` (HTTP-POST); plus the browser session a login starts
//! (`GET /session`, `POST /logout`).
//!
//! The ACS validates with the same function as `tessera saml check`, keeps RelayState
//! handles and the replay cache in the database (shared by every node), maps the verified
//! identity to a user (link, email once, or just-in-time), and audits every attempt with
//! its trace. A refusal shows the person a page with the reason code and request id only.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tessera_core::Reason;
use tessera_core::audit::{AuditEvent, AuditKind};
use tessera_core::model::{Org, User, UserState, UserType};
use tessera_core::session::{self, Session};
use tessera_core::sso::{self, LoginPlan, SamlPending, SsoConfig};
use tessera_core::text::{clip, rfc3339};
use tessera_core::trace::{Check, Trace};
use tessera_saml::sp::{SpSite, sp_metadata, start_login};
use tessera_saml::{Expectation, IdpTrust, Policy, RequestCheck};

use crate::state::{AppState, Shared};
use crate::{clock, request_id};

/// The session cookie's name.
pub const COOKIE: &str = "tessera_session";

/// Where a login lands when it names no `return_to`.
const DEFAULT_RETURN: &str = "/session";

fn site(st: &AppState, org: &Org) -> SpSite {
    let base = format!("{}/saml/{}", st.issuer, org.slug);
    SpSite {
        entity_id: format!("{base}/metadata"),
        acs_url: format!("{base}/acs"),
    }
}

fn policy(c: &SsoConfig) -> Policy {
    Policy {
        allow_sha1: c.allow_sha1,
        skew_seconds: c.clock_skew_seconds,
        require_signed_assertion: false,
        require_signed_response: false,
        check_cert_validity: false,
    }
}

fn trust(c: &SsoConfig) -> IdpTrust {
    IdpTrust {
        entity_id: c.idp_entity_id.clone().unwrap_or_default(),
        certificates: c.idp_certificates.clone(),
        sso_url: c.idp_sso_url.clone(),
    }
}

/// The org and its SSO configuration, or the page saying why there is none.
async fn org_sso(st: &AppState, slug: &str) -> Result<(Org, SsoConfig), Response> {
    let org = match st.store.org_by_slug(slug).await {
        Ok(Some(o)) => o,
        Ok(None) => {
            return Err(page(
                StatusCode::NOT_FOUND,
                "Unknown organisation",
                &format!("There is no organisation '{}' here.", clip(slug)),
                None,
            ));
        }
        Err(e) => return Err(unavailable(e)),
    };
    match st.store.sso_config(org.id).await {
        Ok(Some(c)) if c.has_idp() => Ok((org, c)),
        Ok(_) => Err(page(
            StatusCode::NOT_FOUND,
            "Single sign-on is not set up",
            &format!(
                "Organisation '{}' has no identity provider configured. An admin sets it with PUT /api/v2/sso/saml.",
                org.slug
            ),
            Some(Reason::SamlNotConfigured),
        )),
        Err(e) => Err(unavailable(e)),
    }
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "SAML endpoint: store unavailable");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "Sign-in is unavailable right now; try again in a moment.",
        None,
    )
}

/// `GET /saml/{org}/metadata`: what to give the IdP.
pub async fn metadata(State(st): State<Shared>, Path(slug): Path<String>) -> Response {
    let org = match st.store.org_by_slug(&slug).await {
        Ok(Some(o)) => o,
        Ok(None) => return StatusCode::NOT_FOUND.into_response(),
        Err(e) => return unavailable(e),
    };
    let config = st
        .store
        .sso_config(org.id)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    match sp_metadata(&site(&st, &org), &policy(&config)) {
        Ok(xml) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/samlmetadata+xml"),
            )],
            xml,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "SP metadata");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
}

/// `return_to` must stay on this server: a path, or a URL under the issuer. Anything
/// else would make the login an open redirect.
fn check_return_to(st: &AppState, r: &str) -> Result<String, String> {
    let ok_path = |p: &str| {
        p.starts_with('/')
            && !p.starts_with("//")
            && !p.starts_with("/\\")
            && !p.chars().any(|c| c.is_control() || c == '\\')
    };
    if ok_path(r) {
        return Ok(r.to_string());
    }
    if let Some(rest) = r.strip_prefix(&st.issuer)
        && (rest.is_empty() || ok_path(rest))
    {
        return Ok(if rest.is_empty() {
            "/".into()
        } else {
            rest.into()
        });
    }
    Err(format!(
        "return_to must be a path on this server (such as /app) or a URL under {}",
        st.issuer
    ))
}

/// `GET /saml/{org}/login`: sends the browser to the IdP with an AuthnRequest.
pub async fn login(
    State(st): State<Shared>,
    Path(slug): Path<String>,
    Query(q): Query<LoginQuery>,
) -> Response {
    let (org, config) = match org_sso(&st, &slug).await {
        Ok(x) => x,
        Err(p) => return p,
    };
    let return_to = match check_return_to(&st, q.return_to.as_deref().unwrap_or(DEFAULT_RETURN)) {
        Ok(r) => r,
        Err(why) => return page(StatusCode::BAD_REQUEST, "Bad return address", &why, None),
    };
    let mut raw = [0u8; 16];
    tessera_core::secret::random_bytes(&mut raw);
    let handle = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw);
    let start = match start_login(&site(&st, &org), &trust(&config), &handle, &policy(&config)) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, org = %org.slug, "AuthnRequest not built");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Single sign-on is misconfigured",
                "The identity provider configuration cannot be used; an admin should check it (GET /api/v2/sso/saml).",
                Some(e.reason),
            );
        }
    };
    let pending = SamlPending {
        handle,
        org_id: org.id,
        request_id: start.request_id,
        return_to,
        expires_at: clock::now() + sso::PENDING_SECONDS,
    };
    if let Err(e) = st.store.put_saml_pending(&pending).await {
        return unavailable(e);
    }
    let mut res = StatusCode::FOUND.into_response();
    match HeaderValue::from_str(&start.redirect_url) {
        Ok(v) => {
            res.headers_mut().insert(header::LOCATION, v);
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(_) => page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Single sign-on is misconfigured",
            "The identity provider's SSO URL is not usable.",
            Some(Reason::SamlNotConfigured),
        ),
    }
}

/// The largest ACS body read (a SAMLResponse of 256 KiB in base64, plus the form).
pub const ACS_BODY_LIMIT: usize = 300 * 1024;

/// `POST /saml/{org}/acs`: validates the response and starts a session.
pub async fn acs(
    State(st): State<Shared>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (org, config) = match org_sso(&st, &slug).await {
        Ok(x) => x,
        Err(p) => return p,
    };
    let mut trace = Trace::default();
    let now = clock::now();
    let outcome = consume(&st, &org, &config, &headers, body, now, &mut trace).await;
    let (user, return_to) = match outcome {
        Ok(x) => x,
        Err(Failure::Refused(reason)) => {
            let detail = trace
                .failed()
                .map(|s| s.detail.to_string())
                .unwrap_or_default();
            if audit(&st, &org, None, Some((reason, detail)), trace)
                .await
                .is_err()
            {
                return unavailable("audit");
            }
            return refused_page(reason);
        }
        Err(Failure::Unavailable(e)) => return unavailable(e),
    };
    // A new session id at every login; any session this browser had ends.
    if let Some(old) = cookie(&headers)
        && let Err(e) = st.store.delete_session(&session::hash_token(&old)).await
    {
        return unavailable(e);
    }
    let (token, id_hash) = session::new_token();
    let s = Session {
        id_hash,
        org_id: org.id,
        user_id: user.id.clone(),
        method: "saml".into(),
        created_at: now,
        last_seen_at: now,
    };
    if let Err(e) = st.store.create_session(&s).await {
        return unavailable(e);
    }
    if audit(&st, &org, Some(&user), None, trace).await.is_err() {
        return unavailable("audit");
    }
    let mut res = StatusCode::SEE_OTHER.into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&return_to) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&set_cookie(&st, &token, session::ABSOLUTE_SECONDS)) {
        h.insert(header::SET_COOKIE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

enum Failure {
    /// Refused: the failing step is in the trace.
    Refused(Reason),
    Unavailable(String),
}

/// The ACS checks in order, each recorded in `trace`: RelayState, the response, replay,
/// the user. Returns the user (saved) and where to send them.
async fn consume(
    st: &AppState,
    org: &Org,
    config: &SsoConfig,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    now: i64,
    trace: &mut Trace,
) -> Result<(User, String), Failure> {
    let store_err = |e: tessera_core::store::StoreError| Failure::Unavailable(e.to_string());
    let refuse = |trace: &mut Trace, check, reason, detail: String| {
        trace.fail(check, reason, detail);
        Err(Failure::Refused(reason))
    };
    let Ok(body) = body else {
        return refuse(
            trace,
            Check::SamlResponse,
            Reason::SamlBodyTooLarge,
            format!(
                "the posted form is larger than {} KiB",
                ACS_BODY_LIMIT / 1024
            ),
        );
    };
    let form_ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let fields: BTreeMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let Some(response) = fields.get("SAMLResponse").filter(|_| form_ok) else {
        return refuse(
            trace,
            Check::SamlResponse,
            Reason::SamlMalformed,
            "no SAMLResponse field in a form-encoded POST (HTTP-POST binding)".into(),
        );
    };

    // RelayState: the handle of a login this server started.
    let (check, return_to) = match fields.get("RelayState").filter(|r| !r.is_empty()) {
        Some(handle) => match st
            .store
            .take_saml_pending(handle, now)
            .await
            .map_err(store_err)?
        {
            Some(p) if p.org_id == org.id => {
                trace.pass(
                    Check::SamlRelayState,
                    format!(
                        "answers the login started for AuthnRequest {} (returning to {})",
                        p.request_id,
                        clip(&p.return_to)
                    ),
                );
                (RequestCheck::Request(p.request_id), p.return_to)
            }
            _ => {
                return refuse(
                    trace,
                    Check::SamlRelayState,
                    Reason::SamlRelayStateInvalid,
                    "the RelayState names no pending login of this org: unknown, already used, or older than 10 minutes".into(),
                );
            }
        },
        None if config.allow_idp_initiated => {
            trace.pass(
                Check::SamlRelayState,
                "no RelayState: an IdP-initiated login, which this org allows",
            );
            (RequestCheck::Unsolicited, DEFAULT_RETURN.to_string())
        }
        None => {
            return refuse(
                trace,
                Check::SamlRelayState,
                Reason::SamlUnsolicited,
                "no RelayState: an IdP-initiated login, which this org does not allow (allow_idp_initiated is off); start at /saml/{org}/login".into(),
            );
        }
    };

    let expect = Expectation {
        sp_entity_id: site(st, org).entity_id,
        acs_url: site(st, org).acs_url,
        in_response_to: check,
        now: std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(now.max(0) as u64),
        policy: policy(config),
    };
    let accepted = match tessera_saml::validate(response.as_bytes(), &trust(config), &expect) {
        Ok(a) => a,
        Err(r) => return refuse(trace, Check::SamlResponse, r.reason, r.detail),
    };
    trace.pass(
        Check::SamlResponse,
        format!(
            "signed ({}) by '{}'; NameID '{}'",
            accepted.signature_algorithms.join(", "),
            clip(&accepted.issuer),
            clip(&accepted.name_id)
        ),
    );

    if !st
        .store
        .remember_saml_ids(org.id, &accepted.replay_keys, now)
        .await
        .map_err(store_err)?
    {
        return refuse(
            trace,
            Check::SamlReplay,
            Reason::SamlReplay,
            format!(
                "response {} / assertion {} was already used",
                clip(&accepted.response_id),
                clip(&accepted.assertion_id)
            ),
        );
    }
    trace.pass(
        Check::SamlReplay,
        "first use of this response and assertion",
    );

    let identity = config.identity(&accepted.name_id, &accepted.attributes);
    let by_link = st
        .store
        .user_by_saml_link(org.id, &identity.name_id)
        .await
        .map_err(store_err)?;
    let by_email = match (&by_link, &identity.email) {
        (None, Some(e)) => st.store.user_by_email(org.id, e).await.map_err(store_err)?,
        _ => None,
    };
    let new_user = || User {
        id: format!("usr_{}", ulid::Ulid::new().to_string().to_lowercase()),
        org_id: org.id,
        user_type: UserType::Human,
        username: provisioned_username(&identity),
        email: None,
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
    };
    match sso::plan_saml_login(config, &identity, by_link, by_email, new_user, now) {
        LoginPlan::Linked(u) => {
            st.store.update_user(&u).await.map_err(store_err)?;
            trace.pass(
                Check::SamlUser,
                format!("user '{}' ({}), linked to this NameID", u.username, u.id),
            );
            Ok((u, return_to))
        }
        LoginPlan::LinkedByEmail(u) => {
            st.store.update_user(&u).await.map_err(store_err)?;
            trace.pass(
                Check::SamlUser,
                format!(
                    "user '{}' ({}) found by email and linked to this NameID (first SSO login)",
                    u.username, u.id
                ),
            );
            Ok((u, return_to))
        }
        LoginPlan::Provisioned(u) => {
            st.store.create_user(&u).await.map_err(|e| match e {
                tessera_core::store::StoreError::Conflict(m) => Failure::Unavailable(m),
                other => store_err(other),
            })?;
            trace.pass(
                Check::SamlUser,
                format!(
                    "user '{}' ({}) provisioned just in time, roles: {}",
                    u.username,
                    u.id,
                    if u.roles.is_empty() {
                        "none".into()
                    } else {
                        u.roles.join(", ")
                    }
                ),
            );
            Ok((u, return_to))
        }
        LoginPlan::Refused(reason, detail) => refuse(trace, Check::SamlUser, reason, detail),
    }
}

/// A username for a just-in-time user: the email, else the NameID, within the
/// characters usernames allow.
fn provisioned_username(identity: &sso::SamlIdentity) -> String {
    let base = identity.email.as_deref().unwrap_or(&identity.name_id);
    let name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._@+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    if name.is_empty() {
        "saml-user".into()
    } else {
        name
    }
}

async fn audit(
    st: &AppState,
    org: &Org,
    user: Option<&User>,
    refusal: Option<(Reason, String)>,
    trace: Trace,
) -> Result<(), ()> {
    let (outcome, reason, description) = match refusal {
        None => ("granted", None, None),
        Some((r, d)) => ("denied", Some(r.code().to_string()), Some(d)),
    };
    let event = AuditEvent {
        request_id: request_id::current(),
        time_ms: clock::now_ms(),
        org_id: Some(org.id),
        kind: AuditKind::Login,
        actor: None,
        client_id: None,
        subject: user.map(|u| u.id.clone()),
        source_ip: None,
        outcome: outcome.into(),
        reason,
        description,
        grant_type: None,
        scope: None,
        secret_id: None,
        secret_hint: None,
        trace,
        change: None,
    };
    st.audit.record(event).await.map_err(|_| ())
}

fn refused_page(reason: Reason) -> Response {
    let (status, text) = match reason {
        Reason::SamlExpired | Reason::SamlNotYetValid => (
            StatusCode::BAD_REQUEST,
            "The sign-in response arrived outside its validity window. Start again; if it keeps happening, the clocks of the identity provider and this server disagree.",
        ),
        Reason::SamlRelayStateInvalid | Reason::SamlInResponseToMismatch | Reason::SamlReplay => (
            StatusCode::BAD_REQUEST,
            "This sign-in was already used or has expired. Start again from the login page.",
        ),
        Reason::SamlUserUnknown | Reason::UserDisabled | Reason::UserLocked => (
            StatusCode::FORBIDDEN,
            "Your identity was verified, but it gives no access here. Ask an administrator.",
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            "The identity provider's response could not be accepted. An administrator can look it up with the reference below.",
        ),
    };
    page(status, "Sign-in failed", text, Some(reason))
}

/// A small HTML page that leaks nothing: a sentence, the reason code, the request id.
fn page(status: StatusCode, title: &str, text: &str, reason: Option<Reason>) -> Response {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let rid = request_id::current();
    let reason_html = reason
        .map(|r| {
            format!(
                "<p>Reason: <code>{0}</code> (<a href=\"/docs/errors#{0}\">what it means</a>)</p>",
                r.code()
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1><p>{x}</p>{reason_html}<p>Reference: <code>{rid}</code></p></body></html>",
        t = esc(title),
        x = esc(text),
    );
    let mut res = (status, Html(body)).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The session token in the request's cookie, if any.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn set_cookie(st: &AppState, token: &str, max_age: i64) -> String {
    let secure = if st.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// The live session of the request, touched (idle timeout restarts).
async fn current_session(st: &AppState, headers: &HeaderMap) -> Option<Session> {
    let token = cookie(headers)?;
    let hash = session::hash_token(&token);
    let s = st.store.session(&hash).await.ok()??;
    let now = clock::now();
    if !s.is_live(now) {
        let _ = st.store.delete_session(&hash).await;
        return None;
    }
    let _ = st.store.touch_session(&hash, now).await;
    Some(s)
}

/// `GET /session`: who is logged in.
pub async fn whoami(State(st): State<Shared>, headers: HeaderMap) -> Response {
    let Some(s) = current_session(&st, &headers).await else {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({
                "error": "no_session",
                "message": "not logged in: start at /saml/{org}/login",
            })),
        )
            .into_response();
    };
    let user = st.store.get_user(s.org_id, &s.user_id).await.ok().flatten();
    let org = st.store.org_by_id(s.org_id).await.ok().flatten();
    let (Some(user), Some(org)) = (user, org) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    axum::Json(serde_json::json!({
        "user_id": user.id,
        "username": user.username,
        "email": user.email,
        "roles": user.roles,
        "org": org.slug.to_string(),
        "method": s.method,
        "logged_in_at": rfc3339(s.created_at),
        "expires_at": rfc3339(s.expires_at()),
    }))
    .into_response()
}

/// `POST /logout`: ends the session (SameSite=Lax keeps other sites from doing it).
pub async fn logout(State(st): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers)
        && let Err(e) = st.store.delete_session(&session::hash_token(&token)).await
    {
        return unavailable(e);
    }
    let mut res = axum::Json(serde_json::json!({"logged_out": true})).into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie(&st, "", 0)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}
