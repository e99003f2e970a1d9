//! `/api/v2/scopes`: the org's scope catalogue.

use axum::Json;
use axum::http::StatusCode;
use tessera_api::{CreateScope, ScopeList, ScopeView};

use super::{Admin, ApiJson};
use crate::error::ApiError;
use crate::scopes;

/// `GET /api/v2/scopes`.
#[utoipa::path(get, path = "/api/v2/scopes", operation_id = "listScopes", tag = "scopes", responses((status = 200, body = tessera_api::ScopeList), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn list(admin: Admin) -> Result<Json<ScopeList>, ApiError> {
    Ok(Json(ScopeList {
        items: scopes::list(&admin.st, &admin.org).await?,
    }))
}

/// `POST /api/v2/scopes`.
#[utoipa::path(post, path = "/api/v2/scopes", operation_id = "createScope", tag = "scopes", request_body = tessera_api::CreateScope, responses((status = 201, body = tessera_api::ScopeView), (status = 409, body = tessera_api::ApiErrorBody), (status = 400, description = "not JSON", body = tessera_api::ApiErrorBody), (status = 422, description = "a field is invalid; `field` names it", body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn create(
    admin: Admin,
    ApiJson(body): ApiJson<CreateScope>,
) -> Result<(StatusCode, Json<ScopeView>), ApiError> {
    let scope = scopes::create(&admin.st, &admin.org, &body.name, body.description).await?;
    admin
        .audit("create_scope", serde_json::json!({ "name": scope.name }))
        .await?;
    Ok((StatusCode::CREATED, Json(scopes::view(scope))))
}
