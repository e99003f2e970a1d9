//! `POST /api/v2/oauth/diagnose`: a dry run of a token request. It goes through the same
//! decision function as the token endpoint and returns the same decision and trace,
//! without issuing a token or touching throttling; only the dry run itself is audited.

use std::net::IpAddr;

use axum::Json;
use base64::Engine;
use tessera_api::{DiagnoseRequest, DiagnoseResponse};
use tessera_core::audit::AuditKind;
use tessera_core::decision::{self, DecideOptions, Facts};
use tessera_core::request::RawTokenRequest;

use super::{Admin, ApiJson, audit::trace_view};
use crate::error::ApiError;
use crate::token::{audit_event, load_facts};
use crate::{clock, request_id};

fn form(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

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
    // A stand-in when no secret is given; the parsed request then carries none, so the
    // decision skips the secret check and its trace says so.
    let secret = req.client_secret.clone().unwrap_or_else(|| "-".into());
    let mut body = format!("grant_type={}", form(&req.grant_type));
    let header;
    let authorization = match req.auth_method.as_deref().unwrap_or("client_secret_basic") {
        "client_secret_basic" => {
            header = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    form(&req.client_id),
                    form(&secret)
                ))
            );
            Some(header.as_str())
        }
        "client_secret_post" => {
            body.push_str(&format!(
                "&client_id={}&client_secret={}",
                form(&req.client_id),
                form(&secret)
            ));
            None
        }
        _ => {
            return Err(ApiError::field(
                "auth_method",
                "client_secret_basic or client_secret_post",
            ));
        }
    };
    if let Some(s) = &req.scope {
        body.push_str(&format!("&scope={}", form(s)));
    }
    let raw = RawTokenRequest {
        content_type: Some("application/x-www-form-urlencoded"),
        body: body.as_bytes(),
        body_too_large: false,
        authorization,
        source_ip: source,
    };
    let mut parsed = decision::parse(&raw);
    if req.client_secret.is_none()
        && let Ok(r) = &mut parsed.request
    {
        r.client.secret = None;
    }
    let st = &admin.st;
    let facts = load_facts(st, &parsed, &source.to_string()).await?;
    // Another org's client is, to this admin, no client at all.
    let facts = match &facts.client {
        Some(cf) if cf.org.id != admin.org.id => Facts {
            throttle: facts.throttle,
            ..Facts::default()
        },
        _ => facts,
    };
    let opts = DecideOptions {
        dry_run: true,
        ..st.decide_options()
    };
    let d = decision::decide(parsed, &facts, clock::now(), opts);
    let request_id = request_id::current();
    let response = DiagnoseResponse {
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
        request_id: request_id.clone(),
    };
    let mut event = audit_event(
        d,
        AuditKind::Diagnose,
        request_id,
        clock::now_ms(),
        &source.to_string(),
    );
    event.org_id = Some(admin.org.id);
    event.actor = Some(admin.client_id.clone());
    st.audit
        .record(event)
        .await
        .map_err(|e| ApiError::Store(e.to_string()))?;
    Ok(Json(response))
}
