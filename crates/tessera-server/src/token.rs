//! `POST /oauth/token`: turns the HTTP request into plain values, hands them to the
//! token service ([`crate::token_service`]) and turns its answer into RFC 6749's.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_core::request::RawTokenRequest;

use crate::error::{oauth_error, oauth_unavailable};
use crate::state::Shared;
use crate::token_service::{self, Issued};

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
    // The service's future is large (every grant's state machine): boxed once here, the
    // layers around this handler move a pointer instead of copying it (performance.md).
    let source = peer.ip().to_string();
    match Box::pin(token_service::request_token(&st, &raw, &source)).await {
        Ok(Ok(issued)) => granted(&issued),
        Ok(Err(denial)) => oauth_error(&denial, &st.issuer),
        Err(e) => {
            tracing::error!(error = %e, "token request not decided");
            oauth_unavailable()
        }
    }
}

/// The RFC 6749 §5.1 answer (with OIDC Core §3.1.3.3's `id_token`).
fn granted(issued: &Issued) -> Response {
    #[derive(serde::Serialize)]
    struct TokenResponse<'a> {
        access_token: &'a str,
        token_type: &'static str,
        expires_in: i64,
        scope: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        refresh_token: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id_token: Option<&'a str>,
    }
    let grant = &issued.grant;
    let body = TokenResponse {
        access_token: &issued.access_token,
        token_type: "Bearer",
        expires_in: grant.ttl,
        scope: grant.scopes.join(" "),
        refresh_token: issued.refresh_token.as_deref(),
        id_token: issued.id_token.as_deref(),
    };
    // Sized once for the tokens it carries: `Json` starts at 128 bytes and grows by
    // copying, and an answer is 600 bytes or more.
    let tokens = [Some(body.access_token), body.refresh_token, body.id_token];
    let mut buf = Vec::with_capacity(128 + tokens.iter().flatten().map(|t| t.len()).sum::<usize>());
    if serde_json::to_writer(&mut buf, &body).is_err() {
        return oauth_unavailable();
    }
    let mut res = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        buf,
    )
        .into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}
