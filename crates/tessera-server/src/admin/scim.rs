//! `/api/v2/scim/tokens`: long-lived SCIM tokens, for IdPs that hold one static bearer
//! token instead of fetching access tokens. Each is bound to a provisioning client of
//! the org and works only while that client is entitled; shown once, stored as its
//! SHA-256, revocable at once.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use serde_json::json;
use tessera_api::{CreateScimToken, SCIM_SCOPE, ScimTokenCreated, ScimTokenList, ScimTokenView};
use tessera_core::model::ScimToken;
use tessera_core::secret::{generate_scim_token, random_id};
use tessera_core::text::{clip, rfc3339};

use super::{Admin, ApiJson, printable};
use crate::clock;
use crate::error::ApiError;

const DEFAULT_DAYS: i64 = 365;
const MAX_DAYS: i64 = 730;

fn view(t: &ScimToken, now: i64) -> ScimTokenView {
    ScimTokenView {
        id: t.id.clone(),
        client_id: t.client_id.clone(),
        hint: t.hint.clone(),
        description: t.description.clone(),
        active: t.revoked_at.is_none() && t.expires_at > now,
        created_at: rfc3339(t.created_at),
        expires_at: rfc3339(t.expires_at),
        revoked_at: t.revoked_at.map(rfc3339),
        last_used_at: t.last_used_at.map(rfc3339),
    }
}

/// `GET /api/v2/scim/tokens`.
#[utoipa::path(get, path = "/api/v2/scim/tokens", operation_id = "listScimTokens", tag = "scim", responses((status = 200, body = tessera_api::ScimTokenList), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn list(admin: Admin) -> Result<Json<ScimTokenList>, ApiError> {
    let now = clock::now();
    let items = admin
        .st
        .store
        .list_scim_tokens(admin.org.id)
        .await?
        .iter()
        .map(|t| view(t, now))
        .collect();
    Ok(Json(ScimTokenList { items }))
}

/// `POST /api/v2/scim/tokens`: the token is in the answer, once.
#[utoipa::path(post, path = "/api/v2/scim/tokens", operation_id = "createScimToken", tag = "scim", request_body = tessera_api::CreateScimToken, responses((status = 201, body = tessera_api::ScimTokenCreated), (status = 404, description = "no such client in the org", body = tessera_api::ApiErrorBody), (status = 400, description = "not JSON", body = tessera_api::ApiErrorBody), (status = 422, description = "a field is invalid (`field` names it): the client does not hold tessera:scim, or the lifetime is out of range", body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn create(
    admin: Admin,
    ApiJson(body): ApiJson<CreateScimToken>,
) -> Result<(StatusCode, Json<ScimTokenCreated>), ApiError> {
    let client = admin
        .st
        .store
        .get_client(admin.org.id, &body.client_id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no client '{}' in org '{}'",
                clip(&body.client_id),
                admin.org.slug
            ))
        })?;
    if !client.scopes.iter().any(|s| s.as_str() == SCIM_SCOPE) {
        return Err(ApiError::field(
            "client_id",
            format!(
                "client '{}' does not hold {SCIM_SCOPE}: add it to the client's scopes first",
                client.client_id
            ),
        ));
    }
    let days = body.expires_in_days.unwrap_or(DEFAULT_DAYS);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ApiError::field(
            "expires_in_days",
            format!("1 to {MAX_DAYS} days"),
        ));
    }
    if let Some(d) = &body.description {
        if d.chars().count() > 200 {
            return Err(ApiError::field("description", "at most 200 characters"));
        }
        printable("description", d)?;
    }
    let now = clock::now();
    let generated = generate_scim_token();
    let t = ScimToken {
        id: random_id("sct_"),
        org_id: admin.org.id,
        client_id: client.client_id.to_string(),
        hash: generated.hash.to_vec(),
        hint: generated.hint.clone(),
        description: body.description,
        created_at: now,
        expires_at: now + days * 86_400,
        revoked_at: None,
        last_used_at: None,
    };
    admin.st.store.create_scim_token(&t).await?;
    admin
        .audit(
            "create_scim_token",
            json!({"scim_token_id": t.id, "client_id": t.client_id, "hint": t.hint, "expires_at": rfc3339(t.expires_at)}),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ScimTokenCreated {
            token: generated.value.expose().to_string(),
            scim_base_url: format!("{}/scim/v2/{}", admin.st.issuer, admin.org.slug),
            view: view(&t, now),
        }),
    ))
}

/// `DELETE /api/v2/scim/tokens/{id}`: revokes at once.
#[utoipa::path(delete, path = "/api/v2/scim/tokens/{id}", operation_id = "revokeScimToken", tag = "scim", params(("id" = String, Path)), responses((status = 204, description = "revoked (or already was)"), (status = 404, body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn revoke(admin: Admin, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if !admin
        .st
        .store
        .revoke_scim_token(admin.org.id, &id, clock::now())
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "no SCIM token {} in org '{}'",
            clip(&id),
            admin.org.slug
        )));
    }
    admin
        .audit("revoke_scim_token", json!({"scim_token_id": id}))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
