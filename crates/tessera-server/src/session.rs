//! Browser sessions: the cookie, starting one at login (a new id each time), reading it,
//! `GET /session` and `POST /logout`; and the audit event of a login.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_core::Reason;
use tessera_core::audit::{AuditEvent, AuditKind};
use tessera_core::model::{Org, User};
use tessera_core::session::{self, Session};
use tessera_core::text::rfc3339;
use tessera_core::trace::Trace;

use crate::html::unavailable;
use crate::state::{AppState, Shared};
use crate::{clock, request_id};

/// Where a login lands when it names no `return_to`.
pub const DEFAULT_RETURN: &str = "/session";

/// `return_to` must stay on this server: a path, or a URL under the issuer. Anything
/// else would make the login an open redirect.
pub fn check_return_to(st: &AppState, r: &str) -> Result<String, String> {
    if r.len() > session::MAX_RETURN_TO {
        return Err(format!(
            "return_to is {} bytes long; at most {} are accepted",
            r.len(),
            session::MAX_RETURN_TO
        ));
    }
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

/// The session cookie's name.
pub const COOKIE: &str = "tessera_session";

/// Starts a session for `user` (any session this browser had ends: a new id at every
/// login). Returns the `Set-Cookie` value.
pub async fn start(
    st: &AppState,
    headers: &HeaderMap,
    org: &Org,
    user: &User,
    method: &str,
    now: i64,
) -> Result<String, String> {
    let next = Next::new(headers, org, user, method, now);
    if let Some(old) = &next.old {
        st.store
            .delete_session(old)
            .await
            .map_err(|e| e.to_string())?;
    }
    st.store
        .create_session(&next.session)
        .await
        .map_err(|e| e.to_string())?;
    Ok(next.cookie(st))
}

/// A session about to start: the one this browser had (its id hash), the new one, and
/// the token its cookie carries.
pub struct Next {
    pub old: Option<Vec<u8>>,
    pub session: Session,
    token: String,
}

impl Next {
    /// A new session of `user`, replacing the one the request's cookie names.
    pub fn new(headers: &HeaderMap, org: &Org, user: &User, method: &str, now: i64) -> Self {
        let (token, id_hash) = session::new_token();
        Self {
            old: cookie(headers).map(|c| session::hash_token(&c)),
            session: Session {
                id_hash,
                org_id: org.id,
                user_id: user.id.clone(),
                method: method.into(),
                created_at: now,
                last_seen_at: now,
            },
            token,
        }
    }

    /// The `Set-Cookie` value, once the session is stored.
    pub fn cookie(&self, st: &AppState) -> String {
        set_cookie(st, &self.token, session::ABSOLUTE_SECONDS)
    }
}

/// The answer to a successful login: 303 to `return_to`, with the session cookie.
///
/// On the way to the authorization endpoint the answer is a page that moves on by
/// itself (`<meta http-equiv="refresh">`, no script) instead: browsers check the login
/// form's CSP `form-action 'self'` against every redirect that follows the form post,
/// and the authorization endpoint's redirect goes to the client, another origin. A new
/// navigation starts a new chain.
pub fn landing(return_to: &str, cookie: &str) -> Response {
    let mut res = if return_to.starts_with("/oauth/authorize") {
        let url = crate::html::esc(return_to);
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url={url}\"><title>Signed in</title></head><body><h1>Signed in</h1><p><a href=\"{url}\">Continue to the application</a></p></body></html>"
        );
        (StatusCode::OK, axum::response::Html(body)).into_response()
    } else {
        let mut r = StatusCode::SEE_OTHER.into_response();
        if let Ok(v) = HeaderValue::from_str(return_to) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    };
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// How a login attempt ended, for its audit event.
pub enum LoginResult {
    /// Granted; with a reason of its own for a break-glass login.
    Granted(Option<Reason>),
    /// Refused, with the reason and the failing step's detail.
    Denied(Reason, String),
}

/// Records a login attempt with its trace. `subject` is the user it was about, when
/// known; `source` the client address, when known.
pub async fn audit_login(
    st: &AppState,
    org: &Org,
    subject: Option<String>,
    result: LoginResult,
    trace: Trace,
    source: Option<&str>,
) -> Result<(), ()> {
    let (outcome, reason, description) = match result {
        LoginResult::Granted(r) => ("granted", r.map(|r| r.code().to_string()), None),
        LoginResult::Denied(r, d) => ("denied", Some(r.code().to_string()), Some(d)),
    };
    let event = AuditEvent {
        request_id: request_id::current(),
        time_ms: clock::now_ms(),
        org_id: Some(org.id),
        kind: AuditKind::Login,
        actor: None,
        client_id: None,
        subject,
        source_ip: source.map(str::to_string),
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

/// The session token in the request's cookie, if any.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    cookie_named(headers, COOKIE)
}

/// The value of cookie `name` in the request, if any.
pub fn cookie_named(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

pub fn set_cookie(st: &AppState, token: &str, max_age: i64) -> String {
    let secure = if st.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// The live session of the request, touched (idle timeout restarts).
pub async fn current(st: &AppState, headers: &HeaderMap) -> Option<Session> {
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
    let Some(s) = current(&st, &headers).await else {
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
    let mut res = axum::Json(serde_json::json!({
        "user_id": user.id,
        "username": user.username,
        "email": user.email,
        "roles": user.roles,
        "org": org.slug.to_string(),
        "method": s.method,
        "logged_in_at": rfc3339(s.created_at),
        "expires_at": rfc3339(s.expires_at()),
    }))
    .into_response();
    // Who is logged in is nobody else's business: no cache keeps it.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `POST /logout`: ends the session (SameSite=Lax keeps other sites from doing it).
pub async fn logout(State(st): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(refused) = foreign_origin(&st, &headers, "POST /logout") {
        return refused;
    }
    if let Err(e) = end_current(&st, &headers).await {
        return unavailable(e);
    }
    let mut res = axum::Json(serde_json::json!({"logged_out": true})).into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie(&st, "", 0)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// A form on another site must not end the session (logout CSRF): a browser names the
/// page's origin on every cross-site POST. The refusal, if the origin is another's.
pub fn foreign_origin(st: &AppState, headers: &HeaderMap, what: &str) -> Option<Response> {
    let origin = headers.get(header::ORIGIN)?;
    if normal_origin(origin.to_str().unwrap_or("")) == normal_origin(issuer_origin(&st.issuer)) {
        return None;
    }
    let mut res = (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({
            "error": "origin_refused",
            "message": format!(
                "{what} is accepted only from this server's own pages ({}), not from '{}'",
                issuer_origin(&st.issuer),
                tessera_core::text::clip(origin.to_str().unwrap_or("?"))
            ),
        })),
    )
        .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(res)
}

/// Ends the request's browser session, if any, and revokes what its logins gave clients
/// (the grants of that session). Returns the session ended.
pub async fn end_current(
    st: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Session>, tessera_core::store::StoreError> {
    let Some(token) = cookie(headers) else {
        return Ok(None);
    };
    let hash = session::hash_token(&token);
    let found = st.store.session(&hash).await?;
    st.store.delete_session(&hash).await?;
    if let Some(s) = &found {
        st.store
            .revoke_session_grants(&s.sid(), "logout", clock::now())
            .await?;
    }
    Ok(found)
}

/// The origin (`scheme://host[:port]`) of the issuer URL, as a browser sends it in
/// `Origin`.
fn issuer_origin(issuer: &str) -> &str {
    let after_scheme = issuer.find("://").map(|i| i + 3).unwrap_or(0);
    match issuer[after_scheme..].find('/') {
        Some(i) => &issuer[..after_scheme + i],
        None => issuer,
    }
}

/// An origin as compared: lower case, without the scheme's default port.
fn normal_origin(origin: &str) -> String {
    let o = origin.trim().to_ascii_lowercase();
    for (scheme, port) in [("https://", ":443"), ("http://", ":80")] {
        if o.starts_with(scheme)
            && let Some(bare) = o.strip_suffix(port)
        {
            return bare.to_string();
        }
    }
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn origins_compare_as_browsers_mean_them() {
        use super::normal_origin;
        assert_eq!(
            normal_origin("https://ID.example:443"),
            normal_origin("https://id.example")
        );
        assert_eq!(normal_origin("http://h:80"), "http://h");
        assert_ne!(
            normal_origin("https://id.example:8443"),
            normal_origin("https://id.example")
        );
        assert_ne!(
            normal_origin("https://evil.example"),
            normal_origin("https://id.example")
        );
    }

    #[test]
    fn issuer_origins() {
        use super::issuer_origin;
        assert_eq!(
            issuer_origin("https://id.example/t/acme"),
            "https://id.example"
        );
        assert_eq!(
            issuer_origin("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080"
        );
    }
}
