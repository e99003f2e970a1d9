//! The local password login page for humans: `GET /login/{org}` shows the form,
//! `POST /login/{org}` decides through the token service with the same person checks as
//! the password grant (`decision::decide_login`: the username's throttle, argon2id password, then account
//! state and SSO enforcement with break-glass), throttled per source address and per
//! username, audited, and starts a session. Strangers get one answer for every account
//! until the password is verified.
//! A double-submit token (cookie + form field) protects against login CSRF.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tessera_core::Reason;
use tessera_core::model::Org;
use tessera_core::request::ResourceOwnerCredentials;
use tessera_core::secret::{SecretString, hash_client_secret, hashes_equal, random_bytes};
use tessera_core::text::clip;
use tessera_core::trace::{Check, Trace};

use crate::html::{esc, page, unavailable};
use crate::session::{DEFAULT_RETURN, check_return_to};
use crate::state::{AppState, Shared};
use crate::{clock, session, token_service};

const CSRF_COOKIE: &str = "tessera_login_csrf";

#[derive(serde::Deserialize)]
pub struct FormQuery {
    return_to: Option<String>,
    /// OIDC `login_hint`, passed on by the authorization endpoint: prefills the username.
    login_hint: Option<String>,
}

/// The form, with a fresh CSRF token in a cookie and a hidden field, and an optional
/// message from the previous attempt.
fn form(
    org: &Org,
    return_to: &str,
    username: &str,
    status: StatusCode,
    message: Option<(&str, &str)>,
) -> Response {
    let mut raw = [0u8; 16];
    random_bytes(&mut raw);
    let csrf = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw);
    let msg = message
        .map(|(code, text)| {
            format!(
                "<p role=\"alert\">{} (<a href=\"/docs/errors#{code}\"><code>{code}</code></a>)</p>",
                esc(text)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Log in to {org}</title></head><body>\
<h1>Log in to {org}</h1>{msg}\
<form method=\"post\" action=\"/login/{org}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"return_to\" value=\"{rt}\">\
<p><label>Username <input name=\"username\" autocomplete=\"username\" value=\"{user}\" required></label></p>\
<p><label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label></p>\
<p><button type=\"submit\">Log in</button></p></form>\
<p>Single sign-on: <a href=\"/saml/{org}/login?return_to={rt_q}\">log in through your identity provider</a></p>\
</body></html>",
        org = org.slug,
        rt = esc(return_to),
        rt_q = esc(&form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>()),
        user = esc(username),
    );
    let mut res = (status, Html(body)).into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{CSRF_COOKIE}={csrf}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600"
    )) {
        h.insert(header::SET_COOKIE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

async fn org(st: &AppState, slug: &str) -> Result<Org, Response> {
    match st.store.org_by_slug(slug).await {
        Ok(Some(o)) => Ok(o),
        Ok(None) => Err(page(
            StatusCode::NOT_FOUND,
            "Unknown organisation",
            &format!("There is no organisation '{}' here.", clip(slug)),
            None,
        )),
        Err(e) => Err(unavailable(e)),
    }
}

/// `GET /login/{org}`.
pub async fn show(
    State(st): State<Shared>,
    Path(slug): Path<String>,
    Query(q): Query<FormQuery>,
) -> Response {
    let org = match org(&st, &slug).await {
        Ok(o) => o,
        Err(p) => return p,
    };
    let return_to = match check_return_to(&st, q.return_to.as_deref().unwrap_or(DEFAULT_RETURN)) {
        Ok(r) => r,
        Err(why) => return page(StatusCode::BAD_REQUEST, "Bad return address", &why, None),
    };
    let hint = q.login_hint.as_deref().unwrap_or("");
    let hint = if hint.chars().count() <= 256 {
        hint
    } else {
        ""
    };
    form(&org, &return_to, hint, StatusCode::OK, None)
}

/// `POST /login/{org}`.
pub async fn submit(
    State(st): State<Shared>,
    Path(slug): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let org = match org(&st, &slug).await {
        Ok(o) => o,
        Err(p) => return p,
    };
    let fields: BTreeMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
    let return_to =
        check_return_to(&st, field("return_to")).unwrap_or_else(|_| DEFAULT_RETURN.into());

    let source = peer.ip().to_string();
    // Login CSRF: the form's token must equal the cookie's (double submit). A refusal is
    // audited (a burst of them from one address is a forged-form attack) with which half
    // was missing, never with the tokens themselves.
    let cookie_token = session::cookie_named(&headers, CSRF_COOKIE).unwrap_or_default();
    if cookie_token.is_empty()
        || !hashes_equal(
            &hash_client_secret(&cookie_token),
            &hash_client_secret(field("csrf")),
        )
    {
        let detail = if cookie_token.is_empty() {
            "no tessera_login_csrf cookie came with the form (cookies blocked, the form open for over an hour, or a post from another site)"
        } else if field("csrf").is_empty() {
            "the form carried no csrf field (a post not made from the login page)"
        } else {
            "the form's csrf field does not match the tessera_login_csrf cookie (a stale tab, or a post from another site)"
        };
        let mut trace = Trace::default();
        let denial = trace.fail(Check::LoginForm, Reason::LoginCsrfInvalid, detail);
        let result = session::LoginResult::Denied(denial.reason, denial.description);
        if session::audit_login(&st, &org, None, result, trace, Some(&source))
            .await
            .is_err()
        {
            return unavailable("audit");
        }
        return form(
            &org,
            &return_to,
            "",
            StatusCode::FORBIDDEN,
            Some((
                Reason::LoginCsrfInvalid.code(),
                "The form expired or was not sent from this page; please try again.",
            )),
        );
    }
    if field("username").is_empty() || field("password").is_empty() {
        return form(
            &org,
            &return_to,
            "",
            StatusCode::BAD_REQUEST,
            Some(("parameter_missing", "Enter your username and password.")),
        );
    }
    let creds = ResourceOwnerCredentials {
        username: field("username").to_string(),
        password: SecretString::new(field("password")),
    };
    let d = match token_service::password_login(&st, &org, creds, peer.ip()).await {
        Ok(d) => d,
        Err(e) => return unavailable(e),
    };
    let user = match &d.outcome {
        Ok(id) => match st.store.get_user(org.id, id).await {
            Ok(Some(u)) => u,
            Ok(None) => return unavailable("user vanished"),
            Err(e) => return unavailable(e),
        },
        Err(denial) => {
            let detail = d
                .trace
                .failed()
                .map(|s| s.detail.to_string())
                .unwrap_or_default();
            let result = session::LoginResult::Denied(denial.reason, detail);
            let subject = d.subject.clone();
            if session::audit_login(&st, &org, subject, result, d.trace.clone(), Some(&source))
                .await
                .is_err()
            {
                return unavailable("audit");
            }
            let shown = d.shown_reason().unwrap_or(denial.reason);
            let status = match shown {
                Reason::LoginThrottled | Reason::UserThrottled => StatusCode::TOO_MANY_REQUESTS,
                Reason::PasswordCheckBusy => StatusCode::SERVICE_UNAVAILABLE,
                Reason::SsoRequired | Reason::UserDisabled | Reason::UserLocked => {
                    StatusCode::FORBIDDEN
                }
                _ => StatusCode::UNAUTHORIZED,
            };
            // The same page for every refused account: nothing of the attempt is echoed.
            let mut res = form(
                &org,
                &return_to,
                "",
                status,
                Some((shown.code(), &denial.description)),
            );
            if let Some(wait) = denial.retry_after
                && let Ok(v) = HeaderValue::from_str(&wait.to_string())
            {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return res;
        }
    };
    let cookie = match session::start(&st, &headers, &org, &user, "password", clock::now()).await {
        Ok(c) => c,
        Err(e) => return unavailable(e),
    };
    let result = session::LoginResult::Granted(d.grant_reason);
    if session::audit_login(
        &st,
        &org,
        Some(user.id.clone()),
        result,
        d.trace,
        Some(&source),
    )
    .await
    .is_err()
    {
        return unavailable("audit");
    }
    session::landing(&return_to, &cookie)
}
