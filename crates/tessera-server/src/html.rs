//! Small HTML pages for people (SSO and login errors): a sentence, a reason code and the
//! request id, never internal details.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tessera_core::Reason;

use crate::request_id;

/// Escapes text for HTML content and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A small HTML page that leaks nothing: a sentence, the reason code, the request id.
pub fn page(status: StatusCode, title: &str, text: &str, reason: Option<Reason>) -> Response {
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

/// The HTTP-POST binding's page: a form that carries a SAML message to `action`,
/// submitted by `/assets/saml-post.js` (no inline script), with a button for browsers
/// without JavaScript. Its Content-Security-Policy allows that script and a form posting
/// to `action`'s origin, nothing else.
pub fn post_form(action: &str, fields: &[(String, String)]) -> Response {
    let origin = match url::Url::parse(action) {
        Ok(u) if matches!(u.scheme(), "https" | "http") => u.origin().ascii_serialization(),
        _ => {
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Single sign-on is misconfigured",
                "The identity provider's SSO URL is not usable.",
                Some(Reason::SamlNotConfigured),
            );
        }
    };
    let inputs: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(k),
                esc(v)
            )
        })
        .collect();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Signing you in</title>\
         <link rel=\"stylesheet\" href=\"/assets/tessera.css\"><script src=\"/assets/saml-post.js\" defer></script></head>\
         <body><h1>Signing you in</h1><form id=\"saml-post\" method=\"post\" action=\"{a}\">{inputs}\
         <p>Your identity provider asks for this request by form.</p>\
         <button type=\"submit\">Continue to your identity provider</button></form></body></html>",
        a = esc(action),
    );
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action {origin}; frame-ancestors 'none'; base-uri 'none'"
    );
    let mut res = (StatusCode::OK, Html(body)).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}

/// The page for a store failure (logged, not shown).
pub fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "sign-in endpoint: store or audit unavailable");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "Sign-in is unavailable right now; try again in a moment.",
        None,
    )
}

/// The Content-Security-Policy of every HTML page: nothing but this origin's stylesheet
/// and forms posting back here; no script, no inline style, no framing.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Security headers on every answer: `nosniff` everywhere; on HTML pages the CSP, no
/// framing and no referrer (return addresses stay on this site).
pub fn add_security_headers(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let html = h
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if html {
        // A page with its own policy (the SAML POST form) keeps it; it is stricter than
        // or equal to this one except where it names what it needs.
        h.entry(header::CONTENT_SECURITY_POLICY)
            .or_insert(HeaderValue::from_static(CSP));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        // A page that names its own policy keeps it (the console's `same-origin`: with
        // `no-referrer` browsers send `Origin: null` on form posts, and the console
        // checks that its forms come from its own pages).
        h.entry(header::REFERRER_POLICY)
            .or_insert(HeaderValue::from_static("no-referrer"));
    }
}

/// `Cache-Control: no-store` on answers that do not say otherwise: every admin API
/// answer may carry a secret (a new client's, a rotated one) or an org's records.
pub async fn no_store(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut res = next.run(req).await;
    res.headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}
