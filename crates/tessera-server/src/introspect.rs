//! `POST /oauth/introspect` (RFC 7662) and `POST /oauth/revoke` (RFC 7009): a client
//! authenticates as at the token endpoint (same parsing, same throttle budget, refusals
//! in the same shape and audited), then asks about a token, or gives one up.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tessera_core::Reason;
use tessera_core::audit::{AuditEvent, AuditKind};
use tessera_core::request::RawTokenRequest;
use tessera_core::trace::{Check, Denial, Trace};

use crate::error::{oauth_error, oauth_unavailable};
use crate::state::Shared;
use crate::token_service::{self, TokenState};
use crate::{clock, request_id};

fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn missing_token() -> Denial {
    Denial {
        reason: Reason::ParameterMissing,
        description: "the 'token' parameter is missing: send the token to look at".into(),
        retry_after: None,
    }
}

/// The request's pieces, as the token endpoint reads them.
fn raw<'a>(
    headers: &'a HeaderMap,
    body: &'a Result<Bytes, BytesRejection>,
    peer: SocketAddr,
) -> RawTokenRequest<'a> {
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let (bytes, too_large): (&[u8], bool) = match body {
        Ok(b) => (b, false),
        Err(r) => (&[], r.status() == StatusCode::PAYLOAD_TOO_LARGE),
    };
    RawTokenRequest {
        content_type: text(header::CONTENT_TYPE),
        body: bytes,
        body_too_large: too_large,
        authorization: text(header::AUTHORIZATION),
        source_ip: peer.ip(),
    }
}

/// `POST /oauth/introspect`: `{"active": false}` for anything that is not a live token
/// of this server in the client's org.
pub async fn introspect(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let raw = raw(&headers, &body, peer);
    let source = peer.ip().to_string();
    let (cf, req) =
        match token_service::authenticate_client(&st, &raw, &source, false, AuditKind::Introspect)
            .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(denial)) => return oauth_error(&denial, &st.issuer),
            Err(e) => {
                tracing::error!(error = %e, "introspection not decided");
                return oauth_unavailable();
            }
        };
    let Some(token) = req.get("token") else {
        return oauth_error(&missing_token(), &st.issuer);
    };
    let answer = match token_service::token_state(&st, &cf, token).await {
        Ok(TokenState::Inactive) => json!({ "active": false }),
        Ok(TokenState::Access(c)) => json!({
            "active": true,
            "token_type": "Bearer",
            "scope": c.scope,
            "client_id": c.client_id,
            "sub": c.sub,
            "aud": c.aud,
            "iss": c.iss,
            "exp": c.exp,
            "iat": c.iat,
            "jti": c.jti,
            "org": c.org,
        }),
        Ok(TokenState::Refresh(b)) => {
            let (t, g) = *b;
            json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": g.scopes.join(" "),
                "client_id": g.client_id,
                "sub": g.user_id,
                "iss": st.issuer,
                "exp": t.idle_expires_at.min(g.expires_at),
                "iat": t.created_at,
                "org": cf.org.slug.to_string(),
            })
        }
        Err(e) => {
            tracing::error!(error = %e, "introspection lookup failed");
            return oauth_unavailable();
        }
    };
    no_store(Json(answer).into_response())
}

/// `POST /oauth/revoke`: `200` for any token (RFC 7009 §2.2: an unknown or foreign one
/// is no error); what it belonged to is revoked if it is the client's.
pub async fn revoke(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let raw = raw(&headers, &body, peer);
    let source = peer.ip().to_string();
    let (cf, req) =
        match token_service::authenticate_client(&st, &raw, &source, true, AuditKind::Revoke).await
        {
            Ok(Ok(c)) => c,
            Ok(Err(denial)) => return oauth_error(&denial, &st.issuer),
            Err(e) => {
                tracing::error!(error = %e, "revocation not decided");
                return oauth_unavailable();
            }
        };
    let Some(token) = req.get("token") else {
        return oauth_error(&missing_token(), &st.issuer);
    };
    let (outcome, revoked) = match token_service::revoke(&st, &cf, token).await {
        Ok(Ok(g)) => (Ok(()), g),
        Ok(Err(denial)) => (Err(denial), None),
        Err(e) => {
            tracing::error!(error = %e, "revocation failed");
            return oauth_unavailable();
        }
    };
    // The audit trail holds each revocation with what it ended.
    let mut trace = Trace::default();
    match (&outcome, &revoked) {
        (Err(d), _) => {
            trace.fail(Check::RefreshToken, d.reason, d.description.clone());
        }
        (Ok(()), Some(g)) => trace.pass(Check::RefreshToken, format!("revoked grant {g}")),
        (Ok(()), None) => trace.skip(
            Check::RefreshToken,
            "not a live token of this client: nothing to revoke (RFC 7009 §2.2 answers 200)",
        ),
    }
    let event = AuditEvent {
        request_id: request_id::current(),
        time_ms: clock::now_ms(),
        org_id: Some(cf.org.id),
        kind: AuditKind::Revoke,
        actor: None,
        client_id: Some(cf.client.client_id.to_string()),
        subject: None,
        source_ip: Some(source),
        outcome: if outcome.is_ok() { "ok" } else { "denied" }.into(),
        reason: outcome.as_ref().err().map(|d| d.reason.code().to_string()),
        description: outcome.as_ref().err().map(|d| d.description.clone()),
        grant_type: None,
        scope: None,
        secret_id: None,
        secret_hint: None,
        trace,
        change: revoked.map(|g| json!({ "op": "revoke_grant", "grant_id": g })),
    };
    if st.audit.record(event).await.is_err() {
        return oauth_unavailable();
    }
    match outcome {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(denial) => oauth_error(&denial, &st.issuer),
    }
}
