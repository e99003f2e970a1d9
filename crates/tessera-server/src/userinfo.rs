//! `GET`/`POST /oauth/userinfo` (OIDC Core §5.3): the person an access token of a login
//! names, with the claims its scopes allow. The bearer token comes in the
//! `Authorization` header or, on `POST`, in a form body (RFC 6750 §2.1, §2.2); a refusal
//! is `401` or `403` with `WWW-Authenticate: Bearer error=...` (RFC 6750 §3).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tessera_core::jwt;
use tessera_core::model::UserState;

use crate::state::Shared;
use crate::token_service::{EmailClaims, ProfileClaims};
use crate::{clock, request_id};

/// A refusal in RFC 6750 §3's shape.
fn refuse(status: StatusCode, error: &str, description: &str) -> Response {
    let mut res = (
        status,
        Json(json!({
            "error": error,
            "error_description": description,
            "request_id": request_id::current(),
        })),
    )
        .into_response();
    let challenge = format!(
        "Bearer realm=\"tessera\", error=\"{error}\", error_description=\"{}\"",
        description.replace(['"', '\\'], "'")
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn invalid(description: &str) -> Response {
    refuse(StatusCode::UNAUTHORIZED, "invalid_token", description)
}

/// The bearer token of the request: from the header, or a `POST` form body's
/// `access_token`; never both.
fn bearer(method: &Method, headers: &HeaderMap, body: &[u8]) -> Result<String, Box<Response>> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let form = *method == Method::POST
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let from_body = form
        .then(|| {
            form_urlencoded::parse(body)
                .find(|(k, _)| k == "access_token")
                .map(|(_, v)| v.into_owned())
        })
        .flatten();
    match (from_header, from_body) {
        (Some(_), Some(_)) => Err(Box::new(refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the access token came both in the Authorization header and in the body; send it once (RFC 6750 §2)",
        ))),
        (Some(h), None) => {
            let (scheme, token) = h.split_once(' ').unwrap_or((h, ""));
            if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
                return Err(Box::new(invalid(
                    "the Authorization header must be 'Bearer <access token>'",
                )));
            }
            Ok(token.trim().to_string())
        }
        (None, Some(t)) => Ok(t),
        (None, None) => Err(Box::new(refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            "no access token: send 'Authorization: Bearer <access token>'",
        ))),
    }
}

/// `GET` and `POST /oauth/userinfo`.
pub async fn userinfo(
    State(st): State<Shared>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = match bearer(&method, &headers, &body) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let now = clock::now();
    let claims = match jwt::verify(&token, &st.keys.get().verifiers, now) {
        Ok(c) => c,
        Err(e) => return invalid(&format!("the access token is not usable: {e}")),
    };
    if claims.iss != st.issuer {
        return invalid("the access token was not issued by this server");
    }
    let scopes: Vec<&str> = claims.scope.split(' ').collect();
    if !scopes.contains(&"openid") {
        return refuse(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "the access token lacks the 'openid' scope: userinfo answers for a person's login",
        );
    }
    let Some(gid) = &claims.gid else {
        return invalid("the access token is not one of a person's login");
    };
    let grant = match st.store.login_grant(gid).await {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(error = %e, "userinfo: store unavailable");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "retry shortly",
            );
        }
    };
    let Some(grant) = grant.filter(|g| g.is_live(now)) else {
        return invalid("the login this access token belongs to was revoked or has ended");
    };
    let user = match st.store.get_user(grant.org_id, &grant.user_id).await {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "userinfo: store unavailable");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "retry shortly",
            );
        }
    };
    let Some(user) = user.filter(|u| u.effective_state(now) == UserState::Active) else {
        return invalid("the person this access token names is no longer active");
    };
    let mut out = serde_json::Map::new();
    out.insert("sub".into(), json!(user.id));
    let mut add = |v: serde_json::Value| {
        if let serde_json::Value::Object(m) = v {
            out.extend(m);
        }
    };
    if scopes.contains(&"profile") {
        add(serde_json::to_value(ProfileClaims::of(&user)).unwrap_or_default());
    }
    if scopes.contains(&"email") {
        add(serde_json::to_value(EmailClaims::of(&user)).unwrap_or_default());
    }
    let mut res = Json(out).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
