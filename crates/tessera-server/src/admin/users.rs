//! `/api/v2/users`: humans and service accounts.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use serde_json::json;
use tessera_api::{
    ActorView, CreateUser, LoggedOut, LoginGrantList, LoginGrantView, PatchUser, UserList, UserView,
};
use tessera_core::model::{Actor, Org, User, UserState, UserType};
use tessera_core::secret::SecretString;
use tessera_core::text::{parse_rfc3339, rfc3339};

use super::{Admin, ApiJson, time_opt};
use crate::clock;
use crate::error::ApiError;
use crate::users::{self, Change, NewUser};

fn actor_view(a: &Actor) -> ActorView {
    let (kind, client_id) = match a {
        Actor::Admin { client_id } => ("admin", Some(client_id.clone())),
        Actor::OrgAdmin { .. } => ("org_admin", None),
        Actor::Provisioning { .. } => ("provisioning", None),
        Actor::LockoutPolicy => ("lockout_policy", None),
        Actor::System => ("system", None),
    };
    ActorView {
        kind: kind.into(),
        client_id,
        description: a.to_string(),
    }
}

/// The API view of a user.
pub fn view(u: &User, org: &Org) -> UserView {
    let now = clock::now();
    let state = u.effective_state(now);
    let by = u.state_changed_by.as_ref().map(actor_view);
    let (disabled_by, disabled_at) = if state == UserState::Disabled {
        (by.clone(), time_opt(u.state_changed_at))
    } else {
        (None, None)
    };
    let (locked_by, locked_at, locked_until) = if state == UserState::Locked {
        (by, time_opt(u.state_changed_at), time_opt(u.locked_until))
    } else {
        (None, None, None)
    };
    UserView {
        id: u.id.clone(),
        org: org.slug.to_string(),
        user_type: match u.user_type {
            UserType::Human => "human",
            UserType::Service => "service",
        }
        .into(),
        username: u.username.clone(),
        email: u.email.clone(),
        display_name: u.display_name.clone(),
        saml_name_id: u.saml_name_id.clone(),
        enabled: u.enabled(),
        roles: u.roles.clone(),
        state: state.as_str().into(),
        disabled_by,
        disabled_at,
        locked_by,
        locked_at,
        locked_until,
        has_password: u.password_hash.is_some(),
        created_at: rfc3339(u.created_at),
        source: source(u).into(),
        provisioning: u.scim.as_ref().map(|l| tessera_api::ProvisioningView {
            client_id: l.provisioned_by.clone(),
            since: rfc3339(l.provisioned_at),
            external_id: l.external_id.clone(),
            deleted_at: time_opt(l.deleted_at),
        }),
    }
}

/// Where an account comes from: provisioned by SCIM, linked at an SSO login, or local.
fn source(u: &User) -> &'static str {
    if u.scim.is_some() {
        "scim"
    } else if u.saml_name_id.is_some() {
        "saml"
    } else {
        "local"
    }
}

async fn find(admin: &Admin, id: &str) -> Result<User, ApiError> {
    admin
        .st
        .store
        .get_user(admin.org.id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user {id} in org '{}'", admin.org.slug)))
}

/// `GET /api/v2/users`.
#[utoipa::path(get, path = "/api/v2/users", operation_id = "listUsers", tag = "users", params(tessera_api::UserListQuery), responses((status = 200, body = tessera_api::UserList), (status = 422, description = "source is not local, saml or scim (`field` is `source`), or the query string cannot be read (`field` is `(query)`)", body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn list(
    admin: Admin,
    query: Result<
        axum::extract::Query<tessera_api::UserListQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Json<UserList>, ApiError> {
    // A query string that cannot be read (a repeated parameter) is a 422 naming it, as
    // on the audit list.
    let axum::extract::Query(q) = query.map_err(|e| ApiError::field("(query)", e.body_text()))?;
    if let Some(s) = q.source.as_deref()
        && !["local", "saml", "scim"].contains(&s)
    {
        return Err(ApiError::field("source", "one of local, saml, scim"));
    }
    let users = admin.st.store.list_users(admin.org.id).await?;
    Ok(Json(UserList {
        items: users
            .iter()
            .filter(|u| q.source.as_deref().is_none_or(|s| source(u) == s))
            .map(|u| view(u, &admin.org))
            .collect(),
    }))
}

/// `GET /api/v2/users/{id}`.
#[utoipa::path(get, path = "/api/v2/users/{id}", operation_id = "getUser", tag = "users", params(("id" = String, Path, description = "user id")), responses((status = 200, body = tessera_api::UserView), (status = 404, body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn show(admin: Admin, Path(id): Path<String>) -> Result<Json<UserView>, ApiError> {
    let u = find(&admin, &id).await?;
    Ok(Json(view(&u, &admin.org)))
}

/// `POST /api/v2/users`.
#[utoipa::path(post, path = "/api/v2/users", operation_id = "createUser", tag = "users", request_body = tessera_api::CreateUser, responses((status = 201, body = tessera_api::UserView), (status = 409, body = tessera_api::ApiErrorBody), (status = 400, description = "not JSON", body = tessera_api::ApiErrorBody), (status = 422, description = "a field is invalid; `field` names it", body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn create(
    admin: Admin,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let user_type = match body.user_type.as_str() {
        "human" => UserType::Human,
        "service" => UserType::Service,
        other => {
            return Err(ApiError::field(
                "type",
                format!(
                    "'{}' is not a user type; use 'human' or 'service'",
                    tessera_core::text::clip(other)
                ),
            ));
        }
    };
    let user = users::create(
        &admin.st,
        &admin.org,
        NewUser {
            user_type,
            username: body.username,
            email: body.email,
            display_name: body.display_name,
            roles: body.roles,
            password: body.password.map(SecretString::new),
            scim: None,
        },
    )
    .await?;
    admin
        .audit(
            "create_user",
            json!({ "user_id": user.id, "type": body.user_type, "username": user.username }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view(&user, &admin.org))))
}

/// `PATCH /api/v2/users/{id}`.
#[utoipa::path(patch, path = "/api/v2/users/{id}", operation_id = "updateUser", tag = "users", params(("id" = String, Path, description = "user id")), request_body = tessera_api::PatchUser, responses((status = 200, body = tessera_api::UserView), (status = 404, body = tessera_api::ApiErrorBody), (status = 409, body = tessera_api::ApiErrorBody), (status = 400, description = "not JSON", body = tessera_api::ApiErrorBody), (status = 422, description = "a field is invalid; `field` names it", body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn update(
    admin: Admin,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<PatchUser>,
) -> Result<Json<UserView>, ApiError> {
    let u = find(&admin, &id).await?;
    let now = clock::now();
    let target = match (patch.enabled, patch.state.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                "state",
                "send either 'enabled' or 'state', not both",
            ));
        }
        (Some(true), None) | (None, Some("active")) => Some(UserState::Active),
        (Some(false), None) | (None, Some("disabled")) => Some(UserState::Disabled),
        (None, Some("locked")) => Some(UserState::Locked),
        (None, Some(other)) => {
            return Err(ApiError::field(
                "state",
                format!(
                    "'{}' is not a state; use 'active', 'disabled' or 'locked'",
                    tessera_core::text::clip(other)
                ),
            ));
        }
        (None, None) => None,
    };
    let locked_until = match &patch.locked_until {
        Some(t) => {
            if target != Some(UserState::Locked) {
                return Err(ApiError::field(
                    "locked_until",
                    "only with \"state\": \"locked\"",
                ));
            }
            let at = parse_rfc3339(t)
                .ok_or_else(|| ApiError::field("locked_until", "not an RFC 3339 date-time"))?;
            if at <= now {
                return Err(ApiError::field("locked_until", "must be in the future"));
            }
            Some(at)
        }
        None => None,
    };
    if let Some(state) = target
        && state != UserState::Active
    {
        let own = admin
            .st
            .store
            .get_client(admin.org.id, &admin.client_id)
            .await?;
        if own.and_then(|c| c.service_account_id).as_deref() == Some(u.id.as_str()) {
            return Err(ApiError::Conflict(format!(
                "user {} is the service account of client '{}', which makes this request; disabling or locking it would lock you out",
                u.id, admin.client_id
            )));
        }
    }
    let actor = Actor::Admin {
        client_id: admin.client_id.clone(),
    };
    let u = users::change(
        &admin.st,
        &admin.org,
        u,
        Change {
            state: target.map(|s| (s, locked_until)),
            roles: patch.roles.clone(),
            email: patch.email.clone().map(Some),
            display_name: patch.display_name.clone().map(Some),
            username: None,
        },
        &actor,
    )
    .await?;
    admin
        .audit(
            "update_user",
            json!({ "user_id": u.id, "patch": serde_json::to_value(&patch).unwrap_or_default() }),
        )
        .await?;
    // The user as stored: fields this request did not touch may have changed meanwhile.
    Ok(Json(view(&u, &admin.org)))
}

fn grant_view(g: &tessera_core::interactive::LoginGrant, now: i64) -> LoginGrantView {
    LoginGrantView {
        id: g.id.clone(),
        client_id: g.client_id.clone(),
        scopes: g.scopes.clone(),
        auth_time: rfc3339(g.auth_time),
        created_at: rfc3339(g.created_at),
        expires_at: rfc3339(g.expires_at),
        active: g.is_live(now),
        revoked_at: time_opt(g.revoked_at),
        revoked_reason: g.revoked_reason.clone(),
        sid: g.sid.clone(),
    }
}

/// `GET /api/v2/users/{id}/grants`: what the person's logins gave clients (refresh
/// token families), newest first.
#[utoipa::path(get, path = "/api/v2/users/{id}/grants", operation_id = "listUserGrants", tag = "users", params(("id" = String, Path, description = "user id")), responses((status = 200, body = tessera_api::LoginGrantList), (status = 404, body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn grants(
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<LoginGrantList>, ApiError> {
    let u = find(&admin, &id).await?;
    let now = clock::now();
    let items = admin
        .st
        .store
        .user_grants(admin.org.id, &u.id)
        .await?
        .iter()
        .map(|g| grant_view(g, now))
        .collect();
    Ok(Json(LoginGrantList { items }))
}

/// `DELETE /api/v2/users/{id}/grants/{grant_id}`: revokes one grant (its refresh tokens
/// stop working, its access tokens turn inactive at introspection and userinfo).
#[utoipa::path(delete, path = "/api/v2/users/{id}/grants/{grant_id}", operation_id = "revokeUserGrant", tag = "users", params(("id" = String, Path, description = "user id"), ("grant_id" = String, Path)), responses((status = 200, body = tessera_api::LoginGrantView), (status = 404, body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn revoke_grant(
    admin: Admin,
    Path((id, grant_id)): Path<(String, String)>,
) -> Result<Json<LoginGrantView>, ApiError> {
    let u = find(&admin, &id).await?;
    let g = users::revoke_grant(&admin.st, &admin.org, &u, &grant_id).await?;
    admin
        .audit(
            "revoke_grant",
            json!({ "user_id": u.id, "grant_id": g.id, "client_id": g.client_id }),
        )
        .await?;
    Ok(Json(grant_view(&g, clock::now())))
}

/// `DELETE /api/v2/users/{id}/sessions`: logs the person out everywhere: every browser
/// session ends and every grant is revoked.
#[utoipa::path(delete, path = "/api/v2/users/{id}/sessions", operation_id = "endUserSessions", tag = "users", params(("id" = String, Path, description = "user id")), responses((status = 200, body = tessera_api::LoggedOut), (status = 404, body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn end_sessions(
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<LoggedOut>, ApiError> {
    let u = find(&admin, &id).await?;
    let n = users::log_out_everywhere(&admin.st, &admin.org, &u).await?;
    admin
        .audit(
            "end_sessions",
            json!({ "user_id": u.id, "grants_revoked": n }),
        )
        .await?;
    Ok(Json(LoggedOut { grants_revoked: n }))
}
