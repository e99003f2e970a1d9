//! `GET`/`POST /oauth/logout`: OpenID Connect RP-Initiated Logout 1.0. An application
//! sends the browser here to end the person's session at Tessera; the session ends and
//! the grants of its logins are revoked, then the browser goes back to a
//! `post_logout_redirect_uri` registered on the client (exact match), with `state`.
//!
//! Logout CSRF: a request that carries a valid `id_token_hint` of the session (or comes
//! by POST from this server's own confirmation page) ends the session at once; any other
//! is asked to confirm on a page (RP-Initiated Logout §2, §6).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tessera_core::Reason;
use tessera_core::audit::{AuditEvent, AuditKind};
use tessera_core::jwt;
use tessera_core::text::clip;
use tessera_core::trace::{Check, Trace};

use crate::html::{esc, page, unavailable};
use crate::session;
use crate::state::Shared;
use crate::{clock, request_id};

/// Why a logout link is refused: the failing check and its detail for the trace, and
/// what the page tells the person.
struct Refusal {
    check: Check,
    reason: Reason,
    detail: String,
    text: &'static str,
}

/// Records a refused logout request with its trace, in the org of the client it names
/// (`who`: the client id and its org, when known), and shows the person why, with the
/// reason and the request id an admin can look up.
async fn refused(
    st: &Shared,
    mut trace: Trace,
    who: (Option<&str>, Option<i64>),
    r: Refusal,
) -> Response {
    trace.fail(r.check, r.reason, r.detail);
    let event = AuditEvent {
        request_id: request_id::current(),
        time_ms: clock::now_ms(),
        org_id: who.1,
        kind: AuditKind::Login,
        actor: None,
        client_id: who.0.map(clip),
        subject: None,
        source_ip: None,
        outcome: "denied".into(),
        reason: Some(r.reason.code().to_string()),
        description: Some("logout refused".into()),
        grant_type: None,
        scope: None,
        secret_id: None,
        secret_hint: None,
        trace,
        change: Some(serde_json::json!({ "op": "logout" })),
    };
    if st.audit.record(event).await.is_err() {
        return unavailable("audit");
    }
    page(
        StatusCode::BAD_REQUEST,
        "This logout link does not work",
        r.text,
        Some(r.reason),
    )
}

/// `GET` and `POST /oauth/logout`.
pub async fn end_session(
    State(st): State<Shared>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let raw: &[u8] = if method == Method::POST {
        if let Some(refused) = session::foreign_origin(&st, &headers, "POST /oauth/logout") {
            return refused;
        }
        &body
    } else {
        query.as_deref().unwrap_or("").as_bytes()
    };
    let p: BTreeMap<String, String> = form_urlencoded::parse(raw)
        .into_owned()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let get = |k: &str| p.get(k).map(String::as_str);
    let mut trace = Trace::default();

    // The hint: signed by this server, naming its client.
    let hint = match get("id_token_hint") {
        None => None,
        Some(h) => match jwt::verify_id_token_hint(h, &st.keys.get().id_verifiers) {
            Ok(c) if c.iss == st.issuer => Some(c),
            _ => {
                let refusal = Refusal {
                    check: Check::Parameters,
                    reason: Reason::ParameterInvalid,
                    detail: "the id_token_hint is not an ID token this server issued (signature, or issuer)".into(),
                    text: "The id_token_hint is not an ID token this server issued. The application built a wrong link.",
                };
                return refused(&st, trace, (get("client_id"), None), refusal).await;
            }
        },
    };
    let client_id = match (get("client_id"), &hint) {
        (Some(c), Some(h)) if c != h.aud => {
            let refusal = Refusal {
                check: Check::Parameters,
                reason: Reason::ParameterInvalid,
                detail: format!(
                    "client_id '{}' is not the audience of the id_token_hint ('{}')",
                    clip(c),
                    clip(&h.aud)
                ),
                text: "The client_id does not match the audience of the id_token_hint.",
            };
            return refused(&st, trace, (Some(c), None), refusal).await;
        }
        (Some(c), _) => Some(c.to_string()),
        (None, Some(h)) => Some(h.aud.clone()),
        (None, None) => None,
    };
    let client = match &client_id {
        Some(id) => match st.store.token_facts(id, "logout").await {
            Ok(f) => f.client,
            Err(e) => return unavailable(e),
        },
        None => None,
    };
    let who = (client_id.as_deref(), client.as_ref().map(|c| c.org.id));
    // Where to go afterwards: only a URI registered on the client.
    let back = match get("post_logout_redirect_uri") {
        None => None,
        Some(u) => {
            let registered = client.as_ref().is_some_and(|c| {
                c.client
                    .interactive
                    .post_logout_redirect_uris
                    .iter()
                    .any(|r| r == u)
            });
            if !registered {
                let refusal = Refusal {
                    check: Check::RedirectUri,
                    reason: Reason::RedirectUriMismatch,
                    detail: format!(
                        "post_logout_redirect_uri '{}' is not registered on client '{}'",
                        clip(u),
                        clip(client_id.as_deref().unwrap_or("(none named)"))
                    ),
                    text: "The post_logout_redirect_uri of this link is not registered on the application (an exact match is required); its admin can register it.",
                };
                return refused(&st, trace, who, refusal).await;
            }
            Some(u.to_string())
        }
    };
    let state = get("state").map(str::to_string);
    if state.as_ref().is_some_and(|s| s.len() > 2048) {
        let refusal = Refusal {
            check: Check::Parameters,
            reason: Reason::ParameterInvalid,
            detail: "state is longer than 2048 bytes".into(),
            text: "The state of this link is longer than 2048 bytes.",
        };
        return refused(&st, trace, who, refusal).await;
    }

    let current = session::current(&st, &headers).await;
    let confirmed = method == Method::POST && get("confirm") == Some("yes");
    let hinted = match (&hint, &current) {
        (Some(h), Some(s)) => h.sid.as_deref() == Some(s.sid().as_str()) || h.sub == s.user_id,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if current.is_some() && !hinted && !confirmed {
        return confirm_page(&p);
    }
    let ended = match session::end_current(&st, &headers).await {
        Ok(s) => s,
        Err(e) => return unavailable(e),
    };
    if let Some(s) = &ended {
        trace.pass(
            Check::Session,
            format!(
                "ended the session of user {} (logged in by {}), revoked the grants of its logins",
                s.user_id, s.method
            ),
        );
        let event = AuditEvent {
            request_id: request_id::current(),
            time_ms: clock::now_ms(),
            org_id: Some(s.org_id),
            kind: AuditKind::Login,
            actor: None,
            client_id: client_id.as_deref().map(clip),
            subject: Some(s.user_id.clone()),
            source_ip: None,
            outcome: "ok".into(),
            reason: None,
            description: Some("logout".into()),
            grant_type: None,
            scope: None,
            secret_id: None,
            secret_hint: None,
            trace,
            change: Some(serde_json::json!({ "op": "logout" })),
        };
        if st.audit.record(event).await.is_err() {
            return unavailable("audit");
        }
    }
    let mut res = match back {
        Some(uri) => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            if let Some(s) = &state {
                q.append_pair("state", s);
            }
            let query = q.finish();
            let location = if query.is_empty() {
                uri
            } else {
                format!("{uri}{}{query}", if uri.contains('?') { '&' } else { '?' })
            };
            if method == Method::POST {
                // After the confirmation form: a page that moves on by itself, since
                // browsers hold the redirects that follow a form post to the page's CSP
                // form-action 'self' (see session::landing).
                let url = esc(&location);
                let body = format!(
                    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url={url}\"><title>Logged out</title></head><body><h1>You are logged out</h1><p><a href=\"{url}\">Back to the application</a></p></body></html>"
                );
                (StatusCode::OK, Html(body)).into_response()
            } else {
                let mut r = StatusCode::FOUND.into_response();
                if let Ok(v) = HeaderValue::from_str(&location) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            }
        }
        None => page(
            StatusCode::OK,
            "You are logged out",
            "Your session here has ended, and the applications you signed in to through it can no longer refresh their access.",
            None,
        ),
    };
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&st, "", 0)) {
        h.insert(header::SET_COOKIE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Asks the person to confirm: the request could come from any page.
fn confirm_page(p: &BTreeMap<String, String>) -> Response {
    let hidden: String = ["client_id", "post_logout_redirect_uri", "state"]
        .iter()
        .filter_map(|k| {
            p.get(*k)
                .map(|v| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(v)))
        })
        .collect();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Log out?</title></head><body>\
<h1>Log out?</h1><p>An application asks to end your session here.</p>\
<form method=\"post\" action=\"/oauth/logout\">{hidden}<input type=\"hidden\" name=\"confirm\" value=\"yes\">\
<p><button type=\"submit\">Log out</button></p></form></body></html>"
    );
    let mut res = (StatusCode::OK, Html(body)).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
