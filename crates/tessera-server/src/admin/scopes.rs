//! `/api/v2/scopes`: the org's scope catalogue.

use axum::Json;
use axum::http::StatusCode;
use tessera_api::{CreateScope, ScopeList, ScopeView};
use tessera_core::model::{Scope, ScopeName};

use super::{Admin, ApiJson, printable};
use crate::error::ApiError;

fn view(s: Scope) -> ScopeView {
    ScopeView {
        name: s.name.to_string(),
        description: s.description,
        builtin: false,
    }
}

/// The OpenID Connect scopes in every org's catalogue, with what each gives.
fn builtins() -> impl Iterator<Item = ScopeView> {
    [
        (
            "openid",
            "OpenID Connect: an ID token and userinfo for a person's login",
        ),
        (
            "profile",
            "OpenID Connect: the person's name and username in the ID token and userinfo",
        ),
        (
            "email",
            "OpenID Connect: the person's email address in the ID token and userinfo",
        ),
        (
            "offline_access",
            "OpenID Connect: a refresh token for a person's login",
        ),
    ]
    .into_iter()
    .map(|(name, description)| ScopeView {
        name: name.into(),
        description: description.into(),
        builtin: true,
    })
}

/// `GET /api/v2/scopes`.
#[utoipa::path(get, path = "/api/v2/scopes", operation_id = "listScopes", tag = "scopes", responses((status = 200, body = tessera_api::ScopeList), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn list(admin: Admin) -> Result<Json<ScopeList>, ApiError> {
    let own: Vec<ScopeView> = admin
        .st
        .store
        .list_scopes(admin.org.id)
        .await?
        .into_iter()
        .map(view)
        .collect();
    // An org that made a scope of a built-in name before they were built in keeps it.
    let builtins: Vec<ScopeView> = builtins()
        .filter(|b| !own.iter().any(|o| o.name == b.name))
        .collect();
    Ok(Json(ScopeList {
        items: builtins.into_iter().chain(own).collect(),
    }))
}

/// `POST /api/v2/scopes`.
#[utoipa::path(post, path = "/api/v2/scopes", operation_id = "createScope", tag = "scopes", request_body = tessera_api::CreateScope, responses((status = 201, body = tessera_api::ScopeView), (status = 409, body = tessera_api::ApiErrorBody), (status = 400, description = "not JSON", body = tessera_api::ApiErrorBody), (status = 422, description = "a field is invalid; `field` names it", body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn create(
    admin: Admin,
    ApiJson(body): ApiJson<CreateScope>,
) -> Result<(StatusCode, Json<ScopeView>), ApiError> {
    let name = ScopeName::parse(&body.name).map_err(|e| ApiError::field("name", e.0))?;
    if tessera_core::interactive::is_oidc_scope(name.as_str()) {
        return Err(ApiError::Conflict(format!(
            "scope '{name}' is built in: every org has the OpenID Connect scopes"
        )));
    }
    if body.description.chars().count() > 1000 {
        return Err(ApiError::field("description", "at most 1000 characters"));
    }
    printable("description", &body.description)?;
    let scope = Scope {
        org_id: admin.org.id,
        name,
        description: body.description,
    };
    admin.st.store.create_scope(&scope).await?;
    admin
        .audit("create_scope", serde_json::json!({ "name": scope.name }))
        .await?;
    Ok((StatusCode::CREATED, Json(view(scope))))
}
