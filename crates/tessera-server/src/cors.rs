//! CORS for the endpoints a browser application calls itself (a SPA, a public client):
//! the token, userinfo, revocation and introspection endpoints, the JWKS and discovery.
//! `Access-Control-Allow-Origin: *` without credentials: none of these reads a cookie,
//! each authenticates its caller from the request itself, so any origin may read the
//! answer it was given. Every other path (the admin API, the login pages) gets no CORS
//! header, so browsers keep other origins out.

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// True for a path a browser application may call across origins.
pub fn open_to_browsers(path: &str) -> bool {
    matches!(
        path,
        "/oauth/token"
            | "/oauth/userinfo"
            | "/oauth/revoke"
            | "/oauth/introspect"
            | "/oauth/jwks"
            | "/.well-known/openid-configuration"
            | "/.well-known/oauth-authorization-server"
    )
}

/// The answer to a preflight (`OPTIONS` with `Access-Control-Request-Method`).
pub fn preflight() -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    allow(&mut res);
    res
}

/// Adds the origin header (and lets scripts read the request id).
pub fn allow(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-request-id, retry-after, www-authenticate"),
    );
}

/// Whether a request is a CORS preflight.
pub fn is_preflight(method: &Method, headers: &axum::http::HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}
