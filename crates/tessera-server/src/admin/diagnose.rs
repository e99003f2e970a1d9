//! `POST /api/v2/oauth/diagnose`: a dry run of a token request. It goes through the same
//! decision function as the token endpoint and returns the same decision and trace,
//! without issuing a token or touching throttling; only the dry run itself is audited.

use std::net::IpAddr;

use axum::Json;
use tessera_api::{
    DiagnoseAuthorizeRequest, DiagnoseAuthorizeResponse, DiagnoseRequest, DiagnoseResponse,
};
use tessera_core::audit::{AuditEvent, AuditKind};
use tessera_core::decision;
use tessera_core::decision::{
    AuthorizeFacts, AuthorizeOutcome, AuthorizeParams, SessionFacts, decide_authorize,
};
use tessera_core::model::AuthMethod;
use tessera_core::request::PresentedClient;
use tessera_core::secret::SecretString;
use tessera_core::text::clip;

use super::{Admin, ApiJson, audit::trace_view};
use crate::error::ApiError;
use crate::token_service;
use crate::{clock, request_id};

/// `POST /api/v2/oauth/diagnose`.
#[utoipa::path(post, path = "/api/v2/oauth/diagnose", tag = "diagnose", request_body = tessera_api::DiagnoseRequest, responses((status = 200, body = tessera_api::DiagnoseResponse), (status = 400, description = "not JSON", body = tessera_api::ApiErrorBody), (status = 422, description = "a field is invalid; `field` names it", body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn diagnose(
    admin: Admin,
    ApiJson(req): ApiJson<DiagnoseRequest>,
) -> Result<Json<DiagnoseResponse>, ApiError> {
    Ok(Json(
        dry_run(&admin.st, admin.org.id, &admin.client_id, &req).await?,
    ))
}

/// A dry run of the token request `req` describes, in org `org_id`, as `actor` asked
/// it (the admin API's client, or a person in the console): the decision and trace the
/// token endpoint would give, nothing issued, no throttling budget used; audited as
/// `diagnose`.
pub(crate) async fn dry_run(
    st: &crate::state::AppState,
    org_id: i64,
    actor: &str,
    req: &DiagnoseRequest,
) -> Result<DiagnoseResponse, ApiError> {
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
    let (d, request_id) = token_service::dry_run(st, parsed, source, org_id, actor).await?;
    Ok(DiagnoseResponse {
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
    })
}

/// `POST /api/v2/oauth/diagnose/authorize`.
#[utoipa::path(post, path = "/api/v2/oauth/diagnose/authorize", operation_id = "diagnoseAuthorize", tag = "diagnose", request_body = tessera_api::DiagnoseAuthorizeRequest, responses((status = 200, body = tessera_api::DiagnoseAuthorizeResponse), (status = 400, description = "not JSON", body = tessera_api::ApiErrorBody), (status = 404, description = "no such user_id in the org", body = tessera_api::ApiErrorBody), (status = 422, description = "a field is invalid; `field` names it", body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn diagnose_authorize(
    admin: Admin,
    ApiJson(req): ApiJson<DiagnoseAuthorizeRequest>,
) -> Result<Json<DiagnoseAuthorizeResponse>, ApiError> {
    if req.url.is_empty() || req.url.len() > 8192 {
        return Err(ApiError::field("url", "1 to 8192 bytes"));
    }
    let query = match req.url.split_once('?') {
        Some((_, q)) => q,
        None if req.url.contains('=') => req.url.as_str(),
        None => {
            return Err(ApiError::field(
                "url",
                "an authorization URL with its query (https://.../oauth/authorize?client_id=...) or the query alone",
            ));
        }
    };
    let method = match req.session_method.as_deref() {
        None | Some("saml") => "saml",
        Some("password") => "password",
        Some(_) => return Err(ApiError::field("session_method", "saml or password")),
    };
    let st = &admin.st;
    let params = AuthorizeParams::parse(query);
    let now = clock::now();
    // Another org's client is, to this admin, no client at all.
    let client = match params.client_id() {
        Some(id) => st
            .store
            .token_facts(id, "127.0.0.1")
            .await?
            .client
            .filter(|c| c.org.id == admin.org.id),
        None => None,
    };
    let session = match &req.user_id {
        None => None,
        Some(id) => {
            let user = st.store.get_user(admin.org.id, id).await?.ok_or_else(|| {
                ApiError::NotFound(format!("no user {} in org '{}'", clip(id), admin.org.slug))
            })?;
            let break_glass = st
                .store
                .sso_config(admin.org.id)
                .await?
                .is_some_and(|c| c.is_break_glass(&user.id));
            Some(SessionFacts {
                org_id: admin.org.id,
                auth_time: now,
                sid: "dry-run".into(),
                method: method.into(),
                break_glass,
                user,
            })
        }
    };
    let d = decide_authorize(&params, &AuthorizeFacts { client, session }, now);
    let denial = match &d.outcome {
        AuthorizeOutcome::ErrorPage(x) | AuthorizeOutcome::ErrorRedirect(x) => Some(x),
        _ => None,
    };
    let request_id = request_id::current();
    let response = DiagnoseAuthorizeResponse {
        outcome: match &d.outcome {
            AuthorizeOutcome::ErrorPage(_) => "error_page",
            AuthorizeOutcome::ErrorRedirect(_) => "error_redirect",
            AuthorizeOutcome::Login { .. } => "login",
            AuthorizeOutcome::Code(_) => "code",
        }
        .into(),
        reason: denial.map(|x| x.reason.code().to_string()),
        error: denial.map(|x| {
            x.reason
                .oauth_error()
                .at_authorization_endpoint()
                .as_str()
                .to_string()
        }),
        error_description: denial.map(|x| x.description.clone()),
        redirect_uri: d.redirect_uri.clone(),
        login: match d.outcome {
            AuthorizeOutcome::Login { sso: true } => Some("sso".into()),
            AuthorizeOutcome::Login { sso: false } => Some("password".into()),
            _ => None,
        },
        scope: matches!(d.outcome, AuthorizeOutcome::Code(_)).then(|| d.scopes.join(" ")),
        trace: trace_view(&d.trace),
        request_id: request_id.clone(),
    };
    let event = AuditEvent {
        request_id,
        time_ms: clock::now_ms(),
        org_id: Some(admin.org.id),
        kind: AuditKind::Diagnose,
        actor: Some(admin.client_id.clone()),
        client_id: d.client_id.clone(),
        subject: d.subject.clone(),
        source_ip: None,
        outcome: match &d.outcome {
            AuthorizeOutcome::Code(_) => "granted",
            AuthorizeOutcome::Login { .. } => "login",
            _ => "denied",
        }
        .into(),
        reason: response.reason.clone(),
        description: response.error_description.clone(),
        grant_type: Some("authorization_code".into()),
        scope: response.scope.clone(),
        secret_id: None,
        secret_hint: None,
        trace: d.trace,
        change: None,
    };
    st.audit
        .record(event)
        .await
        .map_err(|e| ApiError::Store(e.to_string()))?;
    Ok(Json(response))
}
