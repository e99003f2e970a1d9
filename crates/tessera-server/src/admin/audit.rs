//! `/api/v2/audit/events`: the audit trail, with each decision's trace.

use axum::Json;
use axum::extract::{Path, Query};
use serde::Deserialize;
use tessera_api::{AuditEventList, AuditEventView, TraceStep};
use tessera_core::audit::{AuditEvent, AuditFilter, AuditKind};
use tessera_core::text::parse_rfc3339;

use super::Admin;
use crate::error::ApiError;

fn view(admin: &Admin, e: AuditEvent) -> AuditEventView {
    let secs = e.time_ms.div_euclid(1000);
    let ms = e.time_ms.rem_euclid(1000);
    let base = tessera_core::text::rfc3339(secs);
    let time = format!("{}.{ms:03}Z", base.trim_end_matches('Z'));
    AuditEventView {
        request_id: e.request_id,
        time,
        org: Some(admin.org.slug.to_string()),
        kind: e.kind.as_str().into(),
        actor: e.actor,
        client_id: e.client_id,
        subject: e.subject,
        source_ip: e.source_ip,
        outcome: e.outcome,
        reason: e.reason,
        description: e.description,
        grant_type: e.grant_type,
        scope: e.scope,
        secret_id: e.secret_id,
        secret_hint: e.secret_hint,
        trace: trace_view(&e.trace),
        change: e.change,
    }
}

/// A trace as the API shows it.
pub fn trace_view(trace: &tessera_core::trace::Trace) -> Vec<TraceStep> {
    trace
        .steps()
        .iter()
        .map(|s| TraceStep {
            check: s.check.as_str().into(),
            verdict: match s.verdict {
                tessera_core::trace::Verdict::Pass => "pass",
                tessera_core::trace::Verdict::Fail => "fail",
                tessera_core::trace::Verdict::Skip => "skip",
            }
            .into(),
            detail: s.detail.to_string(),
            reason: s.reason.map(|r| r.code().to_string()),
        })
        .collect()
}

/// Query parameters of `GET /api/v2/audit/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    since: Option<String>,
    until: Option<String>,
    client_id: Option<String>,
    subject: Option<String>,
    outcome: Option<String>,
    reason: Option<String>,
    kind: Option<String>,
    before: Option<String>,
    limit: Option<u32>,
}

fn time_param(name: &str, v: &Option<String>) -> Result<Option<i64>, ApiError> {
    v.as_deref()
        .map(|s| {
            parse_rfc3339(s).map(|t| t * 1000).ok_or_else(|| {
                ApiError::field(
                    name,
                    "not an RFC 3339 date-time (e.g. 2026-11-20T10:00:00Z)",
                )
            })
        })
        .transpose()
}

/// `GET /api/v2/audit/events?since=&until=&client_id=&subject=&outcome=&reason=&kind=&before=&limit=`,
/// newest first.
#[utoipa::path(get, path = "/api/v2/audit/events", operation_id = "listAuditEvents", tag = "audit", params(("since" = Option<String>, Query, format = DateTime, description = "RFC 3339"), ("until" = Option<String>, Query, format = DateTime, description = "RFC 3339"), ("client_id" = Option<String>, Query), ("subject" = Option<String>, Query), ("outcome" = Option<String>, Query, pattern = "^(granted|denied|ok|login)?$", description = "granted, denied, ok, or login (an authorization request sent to log in first)"), ("reason" = Option<String>, Query, pattern = "^[a-z_]*$", description = "a reason code (docs/errors.md)"), ("kind" = Option<String>, Query, pattern = "^(token|diagnose|admin|login|authorize|introspect|revoke|scim)?$", description = "token, diagnose, admin, login, authorize, introspect, revoke or scim"), ("before" = Option<String>, Query, description = "a request id: older events only"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 100")), responses((status = 200, body = tessera_api::AuditEventList), (status = 422, body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn list(
    admin: Admin,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditEventList>, ApiError> {
    let Query(mut q) = query.map_err(|e| ApiError::field("(query)", e.body_text()))?;
    // An empty filter (`?kind=`) means the filter was not given.
    for v in [
        &mut q.client_id,
        &mut q.subject,
        &mut q.outcome,
        &mut q.reason,
        &mut q.kind,
        &mut q.before,
    ] {
        if v.as_deref() == Some("") {
            *v = None;
        }
    }
    let kind = match q.kind.as_deref() {
        None => None,
        Some(k) => Some(AuditKind::parse(k).ok_or_else(|| {
            ApiError::field(
                "kind",
                "one of token, diagnose, admin, login, authorize, introspect, revoke, scim",
            )
        })?),
    };
    if let Some(o) = &q.outcome
        && !["granted", "denied", "ok", "login"].contains(&o.as_str())
    {
        return Err(ApiError::field(
            "outcome",
            "one of granted, denied, ok, login",
        ));
    }
    if let Some(r) = &q.reason
        && tessera_core::Reason::from_code(r).is_none()
    {
        return Err(ApiError::field(
            "reason",
            "not a reason code (see docs/errors.md)",
        ));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "between 1 and 1000"));
    }
    let filter = AuditFilter {
        since_ms: time_param("since", &q.since)?,
        until_ms: time_param("until", &q.until)?,
        client_id: q.client_id,
        subject: q.subject,
        outcome: q.outcome,
        reason: q.reason,
        kind,
        before: q.before,
        limit,
    };
    let events = admin
        .st
        .store
        .list_audit_events(admin.org.id, &filter)
        .await?;
    let next_before = if events.len() == limit as usize {
        events.last().map(|e| e.request_id.clone())
    } else {
        None
    };
    Ok(Json(AuditEventList {
        events: events.into_iter().map(|e| view(&admin, e)).collect(),
        next_before,
    }))
}

/// `GET /api/v2/audit/events/{request_id}`: one event with its full decision trace.
#[utoipa::path(get, path = "/api/v2/audit/events/{request_id}", operation_id = "getAuditEvent", tag = "audit", params(("request_id" = String, Path)), responses((status = 200, description = "the event with its decision trace", body = tessera_api::AuditEventView), (status = 404, body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn show(
    admin: Admin,
    Path(request_id): Path<String>,
) -> Result<Json<AuditEventView>, ApiError> {
    let e = admin
        .st
        .store
        .get_audit_event(admin.org.id, &request_id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no audit event {} in org '{}' (refusals of unknown clients belong to no org)",
                tessera_core::text::clip(&request_id),
                admin.org.slug
            ))
        })?;
    Ok(Json(view(&admin, e)))
}
