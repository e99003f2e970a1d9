//! Discovery, JWKS, health, metrics, the errors page, and help for wrong paths.

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;
use tessera_core::Reason;

use crate::request_id;
use crate::state::Shared;

/// The authorization server metadata (RFC 8414): what is implemented, nothing more.
fn metadata(issuer: &str, algs: &[&str]) -> serde_json::Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256", "EdDSA"],
        "token_endpoint": format!("{issuer}/oauth/token"),
        "jwks_uri": format!("{issuer}/oauth/jwks"),
        "grant_types_supported": ["client_credentials", "password", "authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "scopes_supported": tessera_core::interactive::OIDC_SCOPES,
        "service_documentation": format!("{issuer}/docs/errors"),
        "access_token_signing_alg_values_supported": algs,
    })
}

/// The algorithms of the published signing keys, the current key's first.
fn published_algs(st: &Shared) -> Vec<&'static str> {
    st.keys.get().algs.iter().map(|a| a.as_str()).collect()
}

/// `GET /.well-known/oauth-authorization-server`.
pub async fn oauth_metadata(State(st): State<Shared>) -> Response {
    cached(Json(metadata(&st.issuer, &published_algs(&st))).into_response())
}

/// `GET /.well-known/openid-configuration`: the same document plus the OIDC fields that
/// are true today.
pub async fn openid_configuration(State(st): State<Shared>) -> Response {
    let algs = published_algs(&st);
    let mut m = metadata(&st.issuer, &algs);
    m["subject_types_supported"] = json!(["public"]);
    m["id_token_signing_alg_values_supported"] =
        json!([st.keys.get().id_token_signer().alg().as_str()]);
    m["userinfo_endpoint"] = json!(format!("{}/oauth/userinfo", st.issuer));
    m["end_session_endpoint"] = json!(format!("{}/oauth/logout", st.issuer));
    m["prompt_values_supported"] = json!(["none", "login", "consent", "select_account"]);
    m["claims_supported"] = json!([
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "at_hash",
        "sid",
        "preferred_username",
        "name",
        "email",
        "email_verified"
    ]);
    cached(Json(m).into_response())
}

/// `GET /oauth/jwks`.
pub async fn jwks(State(st): State<Shared>) -> Response {
    let keys = st.keys.get();
    let mut res = keys.jwks.clone().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    cached(res)
}

fn cached(mut res: Response) -> Response {
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: the database answers.
pub async fn readyz(State(st): State<Shared>) -> Response {
    match st.store.is_empty().await {
        Ok(_) => "ready\n".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

/// `GET /metrics` (Prometheus text format).
pub async fn metrics(State(st): State<Shared>) -> Response {
    let mut res = st.metrics.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    res
}

const ERRORS_MD: &str = include_str!("../../../docs/errors.md");

/// `GET /docs/errors`: docs/errors.md as HTML, one anchor per reason code (the
/// `error_uri` of every refusal points here).
pub async fn errors_page() -> Html<String> {
    let mut html = String::from(
        "<!doctype html><meta charset=utf-8><title>Tessera reason codes</title>\
         <link rel=\"stylesheet\" href=\"/assets/tessera.css\">\n",
    );
    for line in ERRORS_MD.lines() {
        let esc = escape(line);
        if let Some(h) = line.strip_prefix("### ") {
            let id = h.trim().trim_matches('`');
            html.push_str(&format!("<h3 id=\"{}\">{}</h3>\n", escape(id), escape(h)));
        } else if let Some(h) = line.strip_prefix("## ") {
            html.push_str(&format!("<h2>{}</h2>\n", escape(h)));
        } else if let Some(h) = line.strip_prefix("# ") {
            html.push_str(&format!("<h1>{}</h1>\n", escape(h)));
        } else if line.trim().is_empty() {
            html.push_str("<p>\n");
        } else {
            html.push_str(&esc);
            html.push('\n');
        }
    }
    Html(html)
}

/// `GET /assets/tessera.css`: the stylesheet of Tessera's pages (a file, not inline, so
/// the Content-Security-Policy can forbid inline styles).
pub async fn stylesheet() -> impl axum::response::IntoResponse {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        "body{font:16px/1.5 system-ui,sans-serif;max-width:50em;margin:2em auto;padding:0 1em}\n\
         code{background:#f3f3f3;padding:0 .2em}\n",
    )
}

/// `GET /assets/saml-post.js`: submits the HTTP-POST binding's form (a file, so the
/// page's Content-Security-Policy allows this script and no inline one).
pub async fn saml_post_script() -> impl axum::response::IntoResponse {
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/javascript; charset=utf-8",
            ),
            (axum::http::header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        "document.getElementById('saml-post').submit();\n",
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Every reason code is documented (checked by a test against [`Reason::ALL`]).
pub fn undocumented_reasons() -> Vec<&'static str> {
    Reason::ALL
        .iter()
        .map(|r| r.code())
        .filter(|c| !ERRORS_MD.contains(&format!("### `{c}`")))
        .collect()
}

/// Paths people try for the token endpoint.
const TOKEN_LOOKALIKES: &[&str] = &[
    "/api/v2/oauth/token",
    "/api/oauth/token",
    "/api/v1/oauth/token",
    "/v1/oauth/token",
    "/v2/oauth/token",
    "/oauth2/token",
    "/oauth/token/",
    "/oauth2/v1/token",
    "/token",
    "/connect/token",
    "/auth/token",
];

/// Fallback for unknown paths: a 404 that points to the right place.
pub async fn not_found(
    State(st): State<Shared>,
    method: Method,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let path = uri.path();
    let issuer = &st.issuer;
    let message = if TOKEN_LOOKALIKES.contains(&path) || path.ends_with("/token") {
        format!(
            "there is no token endpoint at {path}; the token endpoint is POST {issuer}/oauth/token (see {issuer}/.well-known/oauth-authorization-server)"
        )
    } else if path.starts_with("/api/v2/") {
        format!(
            "no admin API resource at {method} {path}; the admin API is documented in {issuer}/api/v2/openapi.json once available, and in docs/"
        )
    } else {
        format!(
            "nothing at {path}; endpoints: POST {issuer}/oauth/token, GET {issuer}/oauth/jwks, GET {issuer}/.well-known/oauth-authorization-server, /api/v2/..."
        )
    };
    (
        StatusCode::NOT_FOUND,
        Json(json!({
            "error": "not_found",
            "error_description": message,
            "token_endpoint": format!("{issuer}/oauth/token"),
            "discovery": format!("{issuer}/.well-known/oauth-authorization-server"),
            "request_id": request_id::current(),
        })),
    )
        .into_response()
}

/// `GET /oauth/token` and other wrong methods on it.
pub async fn token_wrong_method(State(st): State<Shared>, method: Method) -> Response {
    let mut res = (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({
            "error": "invalid_request",
            "error_description": format!("the token endpoint takes POST, not {method} (RFC 6749 §3.2)"),
            "reason": "method_not_allowed",
            "request_id": request_id::current(),
            "error_uri": format!("{}/docs/errors#method_not_allowed", st.issuer),
        })),
    )
        .into_response();
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    res
}
