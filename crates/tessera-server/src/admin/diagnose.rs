//! `POST /api/v2/oauth/diagnose`: a dry run of a token request. It goes through the same
//! decision function as the token endpoint and returns the same decision and trace,
//! without issuing a token or touching throttling; only the dry run itself is audited.

use std::net::IpAddr;

use axum::Json;
use tessera_api::{DiagnoseRequest, DiagnoseResponse};
use tessera_core::decision;
use tessera_core::model::AuthMethod;
use tessera_core::request::PresentedClient;
use tessera_core::secret::SecretString;

use super::{Admin, ApiJson, audit::trace_view};
use crate::error::ApiError;
use crate::token_service;

/// `POST /api/v2/oauth/diagnose`.
#[utoipa::path(post, path = "/api/v2/oauth/diagnose", tag = "diagnose", request_body = tessera_api::DiagnoseRequest, responses((status = 200, body = tessera_api::DiagnoseResponse), (status = 400, description = "not JSON", body = tessera_api::ApiErrorBody), (status = 422, description = "a field is invalid; `field` names it", body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn diagnose(
    admin: Admin,
    ApiJson(req): ApiJson<DiagnoseRequest>,
) -> Result<Json<DiagnoseResponse>, ApiError> {
    let source: IpAddr = match &req.source_ip {
        Some(s) => s
            .parse()
            .map_err(|_| ApiError::field("source_ip", "not an IPv4 or IPv6 address"))?,
        None => IpAddr::from([127, 0, 0, 1]),
    };
    let method = match req.auth_method.as_deref().unwrap_or("client_secret_basic") {
        "client_secret_basic" => AuthMethod::ClientSecretBasic,
        "client_secret_post" => AuthMethod::ClientSecretPost,
        _ => {
            return Err(ApiError::field(
                "auth_method",
                "client_secret_basic or client_secret_post",
            ));
        }
    };
    // Without a secret the decision skips the secret check, and its trace says so.
    let client = PresentedClient {
        method,
        client_id: req.client_id.clone(),
        secret: req.client_secret.as_deref().map(SecretString::new),
    };
    let parsed = decision::parse_fields(&req.grant_type, client, req.scope.as_deref(), &[], source);
    let st = &admin.st;
    let (d, request_id) =
        token_service::dry_run(st, parsed, source, admin.org.id, &admin.client_id).await?;
    Ok(Json(DiagnoseResponse {
        outcome: if d.outcome.is_ok() {
            "granted"
        } else {
            "denied"
        }
        .to_string(),
        reason: d.reason().map(|r| r.code().to_string()),
        error: d.reason().map(|r| r.oauth_error().as_str().to_string()),
        error_description: d.outcome.as_ref().err().map(|e| e.description.clone()),
        scope: d.outcome.as_ref().ok().map(|g| g.scopes.join(" ")),
        trace: trace_view(&d.trace),
        request_id,
    }))
}
