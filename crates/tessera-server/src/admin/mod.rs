//! The admin REST API under `/api/v2`: org-scoped operations for an org's admins.
//!
//! Every handler takes an [`Admin`], which exists only once the bearer token has been
//! verified and carries the admin scope: an operation cannot be reached without that
//! check. The org comes from the token, never from the request.

mod audit;
pub(crate) mod clients;
pub(crate) mod diagnose;
pub mod openapi;
mod scim;
mod scopes;
pub(crate) mod sso;
mod users;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use tessera_api::ADMIN_SCOPE;
use tessera_core::audit::{AuditEvent, AuditKind};
use tessera_core::jwt::{self, Alg};
use tessera_core::model::Org;
use tessera_core::text;
use tessera_core::trace::Trace;

use crate::error::ApiError;
use crate::state::Shared;
use crate::{clock, request_id};

/// The admin API routes.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/scopes", get(scopes::list).post(scopes::create))
        .route("/users", get(users::list).post(users::create))
        .route("/users/{id}", get(users::show).patch(users::update))
        .route("/users/{id}/grants", get(users::grants))
        .route(
            "/users/{id}/grants/{grant_id}",
            axum::routing::delete(users::revoke_grant),
        )
        .route(
            "/users/{id}/sessions",
            axum::routing::delete(users::end_sessions),
        )
        .route("/oauth/clients", get(clients::list).post(clients::create))
        .route(
            "/oauth/clients/{client_id}",
            get(clients::show)
                .patch(clients::update)
                .delete(clients::delete),
        )
        .route(
            "/oauth/clients/{client_id}/secrets",
            get(clients::list_secrets).post(clients::rotate_secret),
        )
        .route(
            "/oauth/clients/{client_id}/secrets/{secret_id}",
            axum::routing::delete(clients::revoke_secret),
        )
        .route("/oauth/diagnose", post(diagnose::diagnose))
        .route("/audit/events", get(audit::list))
        .route("/audit/events/{request_id}", get(audit::show))
        .route(
            "/oauth/diagnose/authorize",
            post(diagnose::diagnose_authorize),
        )
        .route("/signing-keys/rotate", post(rotate_signing_key))
        .route("/sso/saml", get(sso::show).put(sso::put).patch(sso::patch))
        .route("/sso/saml/metadata/refresh", post(sso::refresh_metadata))
        .route("/saml/encryption-keys", get(sso::encryption_keys))
        .route(
            "/saml/encryption-keys/rotate",
            post(sso::rotate_encryption_key),
        )
        .route("/sso/saml/enforcement-impact", get(sso::enforcement_impact))
        .route("/scim/tokens", get(scim::list).post(scim::create))
        .route("/scim/tokens/{id}", axum::routing::delete(scim::revoke))
        .route("/openapi.json", get(openapi::serve))
}

/// Proof that the caller holds a valid admin token for `org`.
pub struct Admin {
    pub org: Org,
    /// The admin's client id.
    pub client_id: String,
    /// The id of the secret the admin's token was issued for.
    pub secret_id: Option<String>,
    pub st: Shared,
}

impl FromRequestParts<Shared> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Shared) -> Result<Self, ApiError> {
        let (org, claims) = bearer_rights(st, &parts.headers, ADMIN_SCOPE, "the admin API").await?;
        Ok(Admin {
            org,
            client_id: claims.client_id,
            secret_id: claims.cred,
            st: st.clone(),
        })
    }
}

/// A request's bearer token, or why there is none (for `api`, which takes tokens
/// holding `scope`).
pub(crate) fn bearer_token<'h>(
    headers: &'h axum::http::HeaderMap,
    scope: &str,
    api: &str,
) -> Result<&'h str, ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::Unauthorized(format!(
                "{api} needs 'Authorization: Bearer <access token>'; get one from POST /oauth/token with a client holding the {scope} scope"
            ))
        })?;
    Ok(header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header must use the Bearer scheme".into())
        })?
        .trim())
}

/// The org and claims of a request's bearer token, which must be this server's, hold
/// `scope`, and still be backed by its client as it is now ([`current_rights`]). `api`
/// names the API in refusals.
pub(crate) async fn bearer_rights(
    st: &Shared,
    headers: &axum::http::HeaderMap,
    scope: &str,
    api: &str,
) -> Result<(Org, jwt::AccessClaims), ApiError> {
    let token = bearer_token(headers, scope, api)?;
    let keys = st.keys.get();
    let claims = jwt::verify(token, &keys.verifiers, clock::now())
        .map_err(|e| ApiError::Unauthorized(format!("the access token is not usable: {e}")))?;
    if claims.iss != st.issuer {
        return Err(ApiError::Unauthorized(format!(
            "the access token was issued by '{}', not by this server ('{}')",
            claims.iss, st.issuer
        )));
    }
    if !claims.scope.split(' ').any(|s| s == scope) {
        return Err(ApiError::Forbidden(format!(
            "the access token lacks the '{scope}' scope (it has: '{}')",
            claims.scope
        )));
    }
    let org = current_rights(st, &claims, scope).await?;
    Ok((org, claims))
}

/// A token outlives nothing it was issued for: on every request the client's current
/// record, from the same caches the token endpoint reads (so a change on another node
/// applies within the cache-sync bound), must still be the one the token was issued to
/// (same org, and the secret it authenticated with still one of its own and not
/// revoked: a client deleted and created again under the same id has other secrets),
/// and [`client_rights`] must hold. Returns the org.
async fn current_rights(
    st: &Shared,
    claims: &jwt::AccessClaims,
    scope: &str,
) -> Result<Org, ApiError> {
    let id = &claims.client_id;
    let cf = client_rights(st, id, &claims.org, scope).await?;
    let issued_to_this_client = claims.cred.as_ref().is_some_and(|cred| {
        cf.secrets
            .iter()
            .any(|s| &s.id == cred && s.revoked_at.is_none())
    });
    if !issued_to_this_client {
        return Err(ApiError::Unauthorized(format!(
            "this token was not issued to client '{id}' as it is now (the client was deleted and created again, the secret it was issued for was revoked, or the token predates this check): get a new token"
        )));
    }
    // The admin and SCIM APIs are for machines: the token's subject must be the client
    // itself or the service account it runs as now (not a person through the password
    // grant, not a service account the client ran as before).
    let subject = cf
        .client
        .service_account_id
        .as_deref()
        .unwrap_or(cf.client.client_id.as_str());
    if claims.sub != subject {
        return Err(ApiError::Forbidden(format!(
            "this token's subject '{}' is not client '{id}' or the service account it runs as: only client_credentials tokens are taken here",
            tessera_core::text::clip(&claims.sub)
        )));
    }
    Ok((*cf.org).clone())
}

/// What a machine credential (an access token, a long-lived SCIM token) rests on, as
/// it is now: client `id` exists in org `org_slug`, is enabled, in an enabled org,
/// holds `scope`, and runs as an active service account if it runs as one.
pub(crate) async fn client_rights(
    st: &Shared,
    id: &str,
    org_slug: &str,
    scope: &str,
) -> Result<std::sync::Arc<tessera_core::decision::ClientFacts>, ApiError> {
    let gone = || {
        ApiError::Unauthorized(format!(
            "client '{id}' that holds this token no longer exists"
        ))
    };
    let facts = st.store.token_facts(id, "").await?;
    let cf = facts.client.ok_or_else(gone)?;
    if cf.org.slug.as_str() != org_slug {
        return Err(gone());
    }
    if !cf.client.enabled {
        return Err(ApiError::Unauthorized(format!(
            "client '{id}' that holds this token is disabled"
        )));
    }
    if !cf.org.enabled {
        return Err(ApiError::Unauthorized(format!(
            "org '{}' is disabled",
            cf.org.slug
        )));
    }
    if !cf.client.scopes.iter().any(|s| s.as_str() == scope) {
        return Err(ApiError::Forbidden(format!(
            "client '{id}' no longer holds the '{scope}' scope; tokens issued before it was removed no longer work"
        )));
    }
    if let Some(sa_id) = &cf.client.service_account_id {
        let active = cf.service_account.as_ref().is_some_and(|sa| {
            sa.effective_state(clock::now()) == tessera_core::model::UserState::Active
        });
        if !active {
            return Err(ApiError::Unauthorized(format!(
                "client '{id}' runs as service account {sa_id}, which is no longer active"
            )));
        }
    }
    Ok(cf)
}

impl Admin {
    /// Records an admin change in the audit trail (waits for the commit).
    pub async fn audit(&self, op: &str, change: serde_json::Value) -> Result<(), ApiError> {
        let event = admin_event(self.org.id, &self.client_id, op, change);
        self.st
            .audit
            .record(event)
            .await
            .map_err(|e| ApiError::Store(e.to_string()))
    }
}

/// An admin-kind audit event: a change to `org_id` by `actor` (an admin client, or a
/// background job such as `metadata_refresh`), with what changed.
pub fn admin_event(
    org_id: i64,
    actor: &str,
    op: &str,
    mut change: serde_json::Value,
) -> AuditEvent {
    change["op"] = serde_json::Value::String(op.to_string());
    AuditEvent {
        request_id: request_id::current(),
        time_ms: clock::now_ms(),
        org_id: Some(org_id),
        kind: AuditKind::Admin,
        actor: Some(actor.to_string()),
        client_id: None,
        subject: None,
        source_ip: None,
        outcome: "ok".into(),
        reason: None,
        description: Some(op.to_string()),
        grant_type: None,
        scope: None,
        secret_id: None,
        secret_hint: None,
        trace: Trace::default(),
        change: Some(change),
    }
}

/// The org an admin operation works in, and the server: what the admin API's `Admin`
/// and the console's `OrgAdmin` both have.
pub(crate) struct OrgCtx<'a> {
    pub st: &'a crate::state::AppState,
    pub org: &'a tessera_core::model::Org,
}

impl Admin {
    pub(crate) fn ctx(&self) -> OrgCtx<'_> {
        OrgCtx {
            st: &self.st,
            org: &self.org,
        }
    }
}

/// Refuses a stored name-like value (a client name, scope description, username, email,
/// display name, role, SSO setting) that holds a character able to rewrite what a
/// terminal or log viewer shows, by the one rule of [`text::is_unsafe_char`]: such text
/// would later reach `tessera admin` output, audit trails and logs. 422 naming `field`;
/// the message gives the code point, never the character itself.
pub(crate) fn printable(field: impl Into<String>, value: &str) -> Result<(), ApiError> {
    match text::first_unsafe_char(value) {
        None => Ok(()),
        Some((at, c)) => Err(ApiError::field(
            field,
            format!(
                "character {} is U+{:04X}: control characters, line and paragraph separators and bidirectional overrides are not allowed",
                at + 1,
                c as u32
            ),
        )),
    }
}

/// The largest admin request body, in bytes (1 MiB); `lib.rs` applies it to `/api/v2`.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Why [`ApiJson`] or [`OptionalJson`] refused a body: an [`ApiError`] (400 or 422), or a
/// body over [`BODY_LIMIT`], which is 413 with the usual JSON error body.
pub enum BodyRejection {
    Api(ApiError),
    TooLarge,
}

impl From<ApiError> for BodyRejection {
    fn from(e: ApiError) -> Self {
        BodyRejection::Api(e)
    }
}

impl IntoResponse for BodyRejection {
    fn into_response(self) -> Response {
        match self {
            BodyRejection::Api(e) => e.into_response(),
            BodyRejection::TooLarge => {
                let body = tessera_api::ApiErrorBody {
                    error: "body_too_large".into(),
                    message: format!(
                        "the body is over the admin API's limit of {} KiB",
                        BODY_LIMIT / 1024
                    ),
                    field: None,
                    request_id: request_id::current(),
                };
                (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response()
            }
        }
    }
}

/// A JSON body whose errors name the offending field (422) or say why it is not JSON
/// (400); over [`BODY_LIMIT`] it is 413.
pub struct ApiJson<T>(pub T);

/// Like [`ApiJson`], but an empty body is `None`.
pub struct OptionalJson<T>(pub Option<T>);

fn parse_json<T: DeserializeOwned>(ct: &str, bytes: &[u8]) -> Result<T, ApiError> {
    if !ct.starts_with("application/json") {
        return Err(ApiError::BadRequest(
            "send the body as JSON with 'Content-Type: application/json'".into(),
        ));
    }
    // serde accepts a struct as a JSON array too; the API takes objects only.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let field = if path == "." {
                "(body)".to_string()
            } else {
                path
            };
            ApiError::field(field, inner.to_string())
        } else {
            ApiError::BadRequest(format!("the body is not valid JSON: {inner}"))
        }
    })
}

async fn body_parts<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<(String, Bytes), BodyRejection> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            BodyRejection::TooLarge
        } else {
            ApiError::BadRequest(format!("the body cannot be read: {e}")).into()
        }
    })?;
    Ok((ct, bytes))
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = BodyRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, BodyRejection> {
        let (ct, bytes) = body_parts(req, state).await?;
        Ok(parse_json(&ct, &bytes).map(ApiJson)?)
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = BodyRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, BodyRejection> {
        let (ct, bytes) = body_parts(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        Ok(parse_json(&ct, &bytes).map(|v| OptionalJson(Some(v)))?)
    }
}

/// `POST /api/v2/signing-keys/rotate`: a new signing key (of the body's `alg`, or the
/// configured one); the old one stays published for the configured overlap. Signing keys
/// are shared by every org on this server, so only the operator org's admins may rotate
/// them.
#[utoipa::path(post, path = "/api/v2/signing-keys/rotate", operation_id = "rotateSigningKey", tag = "signing keys", request_body(content = Option<tessera_api::RotateSigningKey>, description = "optional; default alg: the server's signing_alg"), responses((status = 200, body = tessera_api::RotatedSigningKey), (status = 400, description = "not JSON", body = tessera_api::ApiErrorBody), (status = 422, description = "unknown algorithm; `field` is `alg`", body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin, or its org is not the operator org", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn rotate_signing_key(
    admin: Admin,
    OptionalJson(body): OptionalJson<tessera_api::RotateSigningKey>,
) -> Result<axum::Json<tessera_api::RotatedSigningKey>, ApiError> {
    let st = &admin.st;
    if admin.org.slug.as_str() != st.operator_org {
        return Err(ApiError::Forbidden(format!(
            "signing keys are shared by every org on this server; only admins of the operator org '{}' may rotate them",
            st.operator_org
        )));
    }
    let alg = match body.and_then(|b| b.alg) {
        None => st.signing_alg,
        Some(name) => Alg::parse(&name).map_err(|e| ApiError::field("alg", e.to_string()))?,
    };
    let kid = st
        .keys
        .rotate(st.store.as_ref(), st.key_overlap_seconds, alg)
        .await
        .map_err(|e| ApiError::Store(e.to_string()))?;
    admin
        .audit(
            "rotate_signing_key",
            serde_json::json!({ "kid": kid, "alg": alg.as_str() }),
        )
        .await?;
    Ok(axum::Json(tessera_api::RotatedSigningKey {
        kid,
        alg: alg.as_str().into(),
        previous_key_published_for_seconds: st.key_overlap_seconds,
    }))
}

/// Formats an optional timestamp for the API.
pub fn time_opt(t: Option<i64>) -> Option<String> {
    t.map(tessera_core::text::rfc3339)
}
