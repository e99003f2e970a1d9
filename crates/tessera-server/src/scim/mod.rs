//! SCIM 2.0 provisioning (RFC 7643/7644) at `/scim/v2/{org}/`: an IdP (Okta, Entra ID)
//! creates, updates, deactivates and deletes the org's people. SCIM manages humans only:
//! service accounts are invisible to it (not listed, not found by a filter, 404 by id),
//! so no sync can ever disable one. Changes go through `users.rs`, the code the admin API
//! uses, and every change (or refusal) is an audit event of kind `scim` with the
//! provisioning client and a trace.
//!
//! Auth: a client_credentials bearer token of a client of that org holding
//! `tessera:scim`, checked on every request against the client as it is now (disable
//! the client, or take the scope away, and its tokens stop working).

use axum::Json;
use axum::body::Bytes;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tessera_api::SCIM_SCOPE;
use tessera_core::Reason;
use tessera_core::audit::{AuditEvent, AuditKind};
use tessera_core::model::{Actor, Org};
use tessera_core::scim as filter;
use tessera_core::secret::{SCIM_TOKEN_PREFIX, hash_client_secret};
use tessera_core::store::StoreError;
use tessera_core::text::{clip, rfc3339};
use tessera_core::throttle::AttemptOutcome;
use tessera_core::trace::{Check, Trace};

use crate::attempts::Attempt;
use crate::error::ApiError;
use crate::state::Shared;
use crate::{clock, request_id};

mod discovery;
mod groups;
mod users;

pub use discovery::{resource_type, resource_types, schema, schemas, service_provider_config};
pub use groups::{create_group, delete_group, get_group, list_groups, patch_group, replace_group};
pub use users::{create_user, delete_user, get_user, list_users, patch_user, replace_user};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The most resources one page holds.
const MAX_PAGE: usize = 200;
/// The largest SCIM request body (a User with everything an IdP sends is a few KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// A SCIM refusal: the HTTP status, the `scimType`, the reason code for the audit trail,
/// and a detail.
#[derive(Debug)]
pub struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    reason: Option<Reason>,
    detail: String,
}

impl ScimError {
    fn new(
        status: StatusCode,
        scim_type: Option<&'static str>,
        reason: Option<Reason>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            scim_type,
            reason,
            detail: detail.into(),
        }
    }

    fn invalid(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
            Some(Reason::ScimInvalidValue),
            detail,
        )
    }

    /// Nothing at this SCIM path: a SCIM error, not the server's JSON 404.
    fn absent(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            None,
            Some(Reason::ScimNotFound),
            detail,
        )
    }

    /// The reason code the audit trail records: the one given, else the one its status
    /// means (a refusal with no code of its own is never labelled a bad value).
    fn audit_reason(&self) -> Reason {
        self.reason.unwrap_or(match self.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Reason::ScimTokenRefused,
            StatusCode::NOT_FOUND => Reason::ScimNotFound,
            StatusCode::CONFLICT => Reason::ScimUniqueness,
            s if s.is_server_error() => Reason::DatabaseUnavailable,
            _ => Reason::ScimInvalidValue,
        })
    }

    fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            None,
            Some(Reason::ScimNotFound),
            format!("no user {} here", clip(id)),
        )
    }
}

impl From<ApiError> for ScimError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::InvalidField { field, message } => {
                Self::invalid(format!("{}: {message}", scim_field(&field)))
            }
            ApiError::BadRequest(m) => Self::new(
                StatusCode::BAD_REQUEST,
                Some("invalidSyntax"),
                Some(Reason::ScimInvalidValue),
                m,
            ),
            ApiError::NotFound(m) => {
                Self::new(StatusCode::NOT_FOUND, None, Some(Reason::ScimNotFound), m)
            }
            ApiError::Conflict(m) => Self::new(
                StatusCode::CONFLICT,
                Some("uniqueness"),
                Some(Reason::ScimUniqueness),
                m,
            ),
            ApiError::Unauthorized(m) => Self::new(StatusCode::UNAUTHORIZED, None, None, m),
            ApiError::Forbidden(m) => Self::new(StatusCode::FORBIDDEN, None, None, m),
            ApiError::Store(m) => {
                tracing::error!(error = %m, "SCIM: storage unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    Some(Reason::DatabaseUnavailable),
                    "the database is unavailable; retry",
                )
            }
        }
    }
}

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

/// The admin API's field names as SCIM names them.
fn scim_field(f: &str) -> &str {
    match f {
        "username" => "userName",
        "display_name" => "displayName",
        "email" => "emails",
        other => other,
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        scim_json(self.status, body)
    }
}

/// A resource with its version in `meta.version`: a weak ETag over its content (RFC 7644
/// §3.14), so it changes exactly when what SCIM shows of the resource does.
fn versioned(mut r: Value) -> Value {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        &serde_json::to_vec(&r).unwrap_or_default(),
    );
    let tag = format!("W/\"{}\"", URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]));
    r["meta"]["version"] = json!(tag);
    r
}

/// Answers with a resource (made by [`versioned`]) and its `ETag`.
fn scim_resource(status: StatusCode, r: Value) -> Response {
    let tag = r["meta"]["version"].as_str().map(HeaderValue::from_str);
    let mut res = scim_json(status, r);
    if let Some(Ok(tag)) = tag {
        res.headers_mut().insert(header::ETAG, tag);
    }
    res
}

/// `If-Match` on a change (RFC 7644 §3.14, RFC 9110 §13.1.1): a version other than the
/// resource's current one means the client's copy is stale; nothing is changed.
fn precondition(headers: &HeaderMap, current: &Value) -> Result<(), ScimError> {
    let Some(wanted) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let now = current["meta"]["version"].as_str().unwrap_or_default();
    let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
    if wanted.trim() == "*" || wanted.split(',').any(|t| weak(t) == weak(now)) {
        return Ok(());
    }
    Err(ScimError::new(
        StatusCode::PRECONDITION_FAILED,
        None,
        Some(Reason::ScimVersionMismatch),
        format!("the resource changed: it is at version {now} now; read it again"),
    ))
}

/// `If-None-Match` on a read: the client's copy is current, so nothing is sent.
fn not_modified(headers: &HeaderMap, current: &Value) -> Option<Response> {
    let have = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())?;
    let now = current["meta"]["version"].as_str()?;
    let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
    have.split(',').any(|t| weak(t) == weak(now)).then(|| {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(tag) = HeaderValue::from_str(now) {
            res.headers_mut().insert(header::ETAG, tag);
        }
        res
    })
}

fn scim_json(status: StatusCode, body: Value) -> Response {
    let mut res = (status, Json(body)).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    res
}

/// A list request's query (RFC 7644 §3.4.2), and a resource request's projection.
#[derive(serde::Deserialize, Default)]
pub struct ListQuery {
    filter: Option<String>,
    #[serde(rename = "startIndex")]
    start_index: Option<usize>,
    count: Option<usize>,
    attributes: Option<String>,
    #[serde(rename = "excludedAttributes")]
    excluded_attributes: Option<String>,
}

impl ListQuery {
    /// The filter, parsed (none for an absent or blank one).
    fn filter(&self) -> Result<Option<filter::Filter>, ScimError> {
        match self.filter.as_deref().filter(|f| !f.trim().is_empty()) {
            Some(f) => filter::parse_filter(f).map(Some).map_err(|e| {
                ScimError::new(
                    StatusCode::BAD_REQUEST,
                    Some("invalidFilter"),
                    Some(Reason::ScimInvalidFilter),
                    e.0,
                )
            }),
            None => Ok(None),
        }
    }

    /// A page of `found` (each shown by `show`) as a ListResponse.
    fn page<T>(&self, found: &[T], show: impl Fn(&T) -> Value) -> Response {
        let start = self.start_index.unwrap_or(1).max(1);
        let count = self.count.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        let page: Vec<Value> = found
            .iter()
            .skip(start - 1)
            .take(count)
            .map(|r| self.project(show(r)))
            .collect();
        scim_json(
            StatusCode::OK,
            json!({
                "schemas": [LIST_SCHEMA],
                "totalResults": found.len(),
                "startIndex": start,
                "itemsPerPage": page.len(),
                "Resources": page,
            }),
        )
    }

    /// `attributes` / `excludedAttributes` applied to a resource (top-level names, any
    /// case; `id`, `schemas` and `meta` always stay, RFC 7643 §7 "returned: always").
    fn project(&self, mut r: Value) -> Value {
        let names = |s: &Option<String>| -> Option<Vec<String>> {
            s.as_deref().map(|s| {
                s.split(',')
                    .map(|a| {
                        let a = a.trim();
                        // A full URN path keeps its last part (core schema attributes).
                        let a = a.rsplit_once(':').map_or(a, |(_, n)| n);
                        a.split('.').next().unwrap_or(a).to_ascii_lowercase()
                    })
                    .filter(|a| !a.is_empty())
                    .collect()
            })
        };
        let always = |k: &str| matches!(k, "id" | "schemas" | "meta");
        if let Some(obj) = r.as_object_mut() {
            if let Some(keep) = names(&self.attributes) {
                obj.retain(|k, _| always(k) || keep.contains(&k.to_ascii_lowercase()));
            } else if let Some(drop) = names(&self.excluded_attributes) {
                obj.retain(|k, _| always(k) || !drop.contains(&k.to_ascii_lowercase()));
            }
        }
        r
    }
}

/// The `Operations` of a PATCH body, each as (lower-case op, path, value); Entra ID
/// writes `Replace`, so op names are taken in any case.
fn patch_ops(v: &Value) -> Result<Vec<(String, Option<String>, Value)>, ScimError> {
    let ops = v
        .get("Operations")
        .or_else(|| v.get("operations"))
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ScimError::new(
                StatusCode::BAD_REQUEST,
                Some("invalidSyntax"),
                Some(Reason::ScimInvalidValue),
                format!("a PATCH body is a {PATCH_SCHEMA} message with an Operations array"),
            )
        })?;
    ops.iter()
        .enumerate()
        .map(|(i, op)| {
            let name = op
                .get("op")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_ascii_lowercase();
            if !matches!(name.as_str(), "add" | "replace" | "remove") {
                return Err(ScimError::invalid(format!(
                    "operation {i}: '{}' is not a PATCH operation (add, replace, remove)",
                    clip(&name)
                )));
            }
            let path = op.get("path").and_then(Value::as_str).map(str::to_string);
            if name == "remove" && path.is_none() {
                return Err(ScimError::new(
                    StatusCode::BAD_REQUEST,
                    Some("noTarget"),
                    Some(Reason::ScimInvalidValue),
                    format!("operation {i}: remove needs a path"),
                ));
            }
            Ok((name, path, op.get("value").cloned().unwrap_or(Value::Null)))
        })
        .collect()
}

/// A PATCH path, parsed.
fn path_of(path: &str) -> Result<filter::AttrPath, ScimError> {
    filter::parse_path(path).map_err(|e| {
        ScimError::new(
            StatusCode::BAD_REQUEST,
            Some("invalidPath"),
            Some(Reason::ScimInvalidValue),
            e.0,
        )
    })
}

/// A SCIM change that was made: what the handler answers with, whom it touched (the
/// audit event's subject), and what changed.
struct Done<T> {
    value: T,
    subject: String,
    change: Value,
}

fn body(bytes: &Bytes) -> Result<Value, ScimError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ScimError::new(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            Some(Reason::ScimInvalidValue),
            format!("the body is not JSON: {e}"),
        )
    })
}

/// A boolean as IdPs send it: `false`, or Entra ID's `"False"`.
fn boolean(v: &Value, field: &str) -> Result<bool, ScimError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::invalid(format!("{field} must be true or false"))),
    }
}

fn text(v: &Value, field: &str) -> Result<String, ScimError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| ScimError::invalid(format!("{field} must be a string")))
}

/// Any other path under `/scim/v2/{org}/`: a SCIM 404 naming what is here.
pub async fn no_such_endpoint(
    axum::extract::Path((_, rest)): axum::extract::Path<(String, String)>,
) -> ScimError {
    ScimError::absent(format!(
        "nothing at '/{}': the endpoints are Users, Groups, ServiceProviderConfig, ResourceTypes and Schemas",
        clip(&rest)
    ))
}

/// `POST /.search` and `/Bulk`: not offered (ServiceProviderConfig says so); a SCIM 501.
pub async fn not_offered() -> ScimError {
    ScimError::new(
        StatusCode::NOT_IMPLEMENTED,
        None,
        None,
        "not supported here: search with GET and a filter, one request per change",
    )
}

/// An `externalId`: the IdP's id for a person or group, stored and shown to admins, so
/// bounded and free of control and bidirectional characters.
fn external_id(v: &Value) -> Result<String, ScimError> {
    let ext = text(v, "externalId")?;
    if ext.is_empty() || ext.chars().count() > 256 {
        return Err(ScimError::invalid("externalId is 1 to 256 characters"));
    }
    crate::admin::printable("externalId", &ext)?;
    Ok(ext)
}

/// The provisioning client of a request, and its org (the one in the path).
pub struct Provisioner {
    org: Org,
    client_id: String,
    /// The peer address, for the audit trail.
    source: Option<IpAddr>,
    st: Shared,
}

/// The provisioning client of a SCIM request, checked before the handler runs: only a
/// handler that has one can touch the org's people, and the org is the one in the path.
/// A refusal is audited in that org (when it exists) with the source address.
impl FromRequestParts<Shared> for Provisioner {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, st: &Shared) -> Result<Self, ScimError> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, st)
            .await
            .map_err(|e| ScimError::absent(e.body_text()))?;
        let slug = params.get("org").map(String::as_str).unwrap_or_default();
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let checked = provisioner(st, &parts.headers, slug, source).await;
        if let Err(e) = &checked
            && e.status != StatusCode::SERVICE_UNAVAILABLE
            && let Ok(Some(org)) = st.store.org_by_slug(slug).await
        {
            audit_refusal(st, &org, source, e).await;
        }
        checked
    }
}

/// Records a refused SCIM credential in `org`'s audit trail.
async fn audit_refusal(st: &Shared, org: &Org, source: Option<IpAddr>, e: &ScimError) {
    let reason = e.audit_reason();
    let mut trace = Trace::default();
    trace.fail(Check::ScimCredential, reason, e.detail.clone());
    let event = AuditEvent {
        request_id: request_id::current(),
        time_ms: clock::now_ms(),
        org_id: Some(org.id),
        kind: AuditKind::Scim,
        actor: None,
        client_id: None,
        subject: None,
        source_ip: source.map(|ip| ip.to_string()),
        outcome: "denied".into(),
        reason: Some(reason.code().to_string()),
        description: Some(e.detail.clone()),
        grant_type: None,
        scope: None,
        secret_id: None,
        secret_hint: None,
        trace,
        change: None,
    };
    if let Err(err) = st.audit.record(event).await {
        tracing::error!(error = %err, "SCIM refusal not audited");
    }
}

/// An auth refusal from the admin API's checks, as SCIM answers it.
fn refused(e: ApiError) -> ScimError {
    let mut e = ScimError::from(e);
    if matches!(e.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        e.reason = Some(Reason::ScimTokenRefused);
    }
    e
}

async fn provisioner(
    st: &Shared,
    headers: &HeaderMap,
    slug: &str,
    source: Option<IpAddr>,
) -> Result<Provisioner, ScimError> {
    let api = "SCIM provisioning";
    let token = crate::admin::bearer_token(headers, SCIM_SCOPE, api).map_err(refused)?;
    let (org, client_id) = if token.starts_with(SCIM_TOKEN_PREFIX) {
        // An org that does not exist answers as one whose tokens this is not, throttle
        // included: a stranger learns nothing about which orgs exist.
        let org = st.store.org_by_slug(slug).await?;
        let client_id = scim_token_rights(st, token, slug, org.as_ref(), source).await?;
        let org = org.ok_or_else(|| not_of_org(slug))?;
        (org, client_id)
    } else {
        let (org, claims) = crate::admin::bearer_rights(st, headers, SCIM_SCOPE, api)
            .await
            .map_err(refused)?;
        (org, claims.client_id)
    };
    if org.slug.as_str() != slug {
        return Err(ScimError::new(
            StatusCode::FORBIDDEN,
            None,
            Some(Reason::ScimTokenRefused),
            format!(
                "this token provisions org '{}', not '{}'",
                org.slug,
                clip(slug)
            ),
        ));
    }
    Ok(Provisioner {
        org,
        client_id,
        source,
        st: st.clone(),
    })
}

/// The provisioning client of a long-lived SCIM token presented at `org`: known by its
/// hash, of that org, not revoked, not expired, used from an address its client's
/// allow-list admits, and its client still entitled as an access token's would be.
/// Each check takes a place in the throttle budget of (org, source address) first, like
/// a client secret's: wrong tokens from one address are refused with 429 once the
/// budget is spent, however many arrive at once, and only a token of this org clears it.
///
/// While the address is blocked, a live token of this org still passes: the IdP often
/// shares its egress addresses (a cloud NAT) with others, and a stranger's wrong tokens
/// must not stop its provisioning. That lookup is by the token's SHA-256 through an
/// index (the throttle's own read costs as much), a 256-bit token cannot be guessed,
/// and every other token gets the same 429, uncounted, whatever made it wrong.
async fn scim_token_rights(
    st: &Shared,
    token: &str,
    slug: &str,
    org: Option<&Org>,
    source: Option<IpAddr>,
) -> Result<String, ScimError> {
    let from = source.map(|ip| ip.to_string()).unwrap_or_default();
    let key = format!("scim:{}", clip(slug));
    let mut attempt = Attempt::take(&st.store, &key, &from, st.throttle).await;
    if attempt.blocked() {
        if let Some(org) = org
            && let Ok(client_id) = check_scim_token(st, token, org, source).await
        {
            return Ok(client_id);
        }
        let wait = st
            .throttle
            .retry_after(&attempt.state, clock::now())
            .unwrap_or(1);
        return Err(ScimError::new(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            Some(Reason::ScimThrottled),
            format!("too many wrong SCIM tokens from this address; retry in {wait} s"),
        ));
    }
    attempt.count_if_abandoned();
    let checked = match org {
        Some(org) => check_scim_token(st, token, org, source).await,
        None => Err(not_of_org(slug)),
    };
    let outcome = match &checked {
        Ok(_) => Some(AttemptOutcome::Succeeded),
        // The database, not the token, failed: nothing was judged.
        Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => None,
        Err(_) => Some(AttemptOutcome::Failed),
    };
    if let Err(e) = attempt.settle(outcome).await {
        tracing::warn!(error = %e, "SCIM token attempt not recorded");
    }
    checked
}

/// The refusal of a token that is not one of org `slug`'s (or of a slug no org has).
fn not_of_org(slug: &str) -> ScimError {
    ScimError::new(
        StatusCode::UNAUTHORIZED,
        None,
        Some(Reason::ScimTokenRefused),
        format!("this SCIM token is not one of org '{}'", clip(slug)),
    )
}

async fn check_scim_token(
    st: &Shared,
    token: &str,
    org: &Org,
    source: Option<IpAddr>,
) -> Result<String, ScimError> {
    let unusable = |why: String| {
        ScimError::new(
            StatusCode::UNAUTHORIZED,
            None,
            Some(Reason::ScimTokenRefused),
            why,
        )
    };
    // Found by its SHA-256 through an index: the lookup compares hashes, never the token,
    // and a 256-bit token leaves nothing to learn from how long a miss takes. A token of
    // another org is as unknown here as a made-up one.
    let hash = hash_client_secret(token);
    let t = st
        .store
        .scim_token_by_hash(&hash)
        .await?
        .filter(|t| t.org_id == org.id)
        .ok_or_else(|| not_of_org(org.slug.as_str()))?;
    let now = clock::now();
    if let Some(at) = t.revoked_at {
        return Err(unusable(format!(
            "this SCIM token (…{}) was revoked at {}",
            t.hint,
            rfc3339(at)
        )));
    }
    if t.expires_at <= now {
        return Err(unusable(format!(
            "this SCIM token (…{}) expired at {}; make a new one with `tessera admin scim token`",
            t.hint,
            rfc3339(t.expires_at)
        )));
    }
    let cf = crate::admin::client_rights(st, &t.client_id, org.slug.as_str(), SCIM_SCOPE)
        .await
        .map_err(refused)?;
    // A static token is used where its client would have fetched an access token: the
    // client's allow-list applies to it as it would at the token endpoint.
    if !cf.client.ip_allowlist.is_empty()
        && !source.is_some_and(|ip| cf.client.ip_allowlist.allows(ip))
    {
        return Err(ScimError::new(
            StatusCode::FORBIDDEN,
            None,
            Some(Reason::ScimTokenRefused),
            format!(
                "client '{}' of this SCIM token takes requests only from its IP allow-list, which does not hold {}",
                t.client_id,
                source
                    .map(|ip| ip.to_string())
                    .unwrap_or_else(|| "this address".into())
            ),
        ));
    }
    if t.last_used_at.is_none_or(|at| now - at >= 60) {
        // Best effort: a failed write must not fail provisioning.
        if let Err(e) = st.store.touch_scim_token(&t.id, now).await {
            tracing::warn!(error = %e, "SCIM token use not recorded");
        }
    }
    Ok(t.client_id)
}

impl Provisioner {
    /// Audits a SCIM change's outcome (a refusal with the trace's failing check) and
    /// gives back what it made.
    async fn settle<T>(
        &self,
        op: &str,
        subject: Option<&str>,
        result: Result<Done<T>, ScimError>,
        mut trace: Trace,
    ) -> Result<T, ScimError> {
        match result {
            Ok(done) => {
                self.audit(op, Some(&done.subject), Ok(done.change), trace)
                    .await;
                Ok(done.value)
            }
            Err(e) => {
                trace.fail(Check::ScimChange, e.audit_reason(), e.detail.clone());
                self.audit(op, subject, Err(&e), trace).await;
                Err(e)
            }
        }
    }

    fn actor(&self) -> Actor {
        Actor::Provisioning {
            source: self.client_id.clone(),
        }
    }

    fn base(&self) -> String {
        format!("{}/scim/v2/{}", self.st.issuer, self.org.slug)
    }

    /// Records a SCIM request's outcome (best effort after a change is written: the
    /// change stands, and the failure is logged).
    async fn audit(
        &self,
        op: &str,
        subject: Option<&str>,
        outcome: Result<Value, &ScimError>,
        trace: Trace,
    ) {
        let (outcome, reason, description, change) = match outcome {
            Ok(change) => ("ok", None, Some(op.to_string()), Some(change)),
            Err(e) => (
                "denied",
                Some(e.audit_reason().code().to_string()),
                Some(e.detail.clone()),
                None,
            ),
        };
        let event = AuditEvent {
            request_id: request_id::current(),
            time_ms: clock::now_ms(),
            org_id: Some(self.org.id),
            kind: AuditKind::Scim,
            actor: Some(self.client_id.clone()),
            client_id: Some(self.client_id.clone()),
            subject: subject.map(str::to_string),
            source_ip: self.source.map(|ip| ip.to_string()),
            outcome: outcome.into(),
            reason,
            description,
            grant_type: None,
            scope: None,
            secret_id: None,
            secret_hint: None,
            trace,
            change: change.map(|mut c| {
                c["op"] = json!(op);
                c
            }),
        };
        if let Err(e) = self.st.audit.record(event).await {
            tracing::error!(error = %e, "SCIM change not audited");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_without_a_code_is_audited_by_what_its_status_means() {
        let coded = |e: ScimError| e.audit_reason();
        let bare = |status| ScimError::new(status, None, None, "x");
        assert_eq!(coded(bare(StatusCode::FORBIDDEN)), Reason::ScimTokenRefused);
        assert_eq!(
            coded(bare(StatusCode::UNAUTHORIZED)),
            Reason::ScimTokenRefused
        );
        assert_eq!(coded(bare(StatusCode::NOT_FOUND)), Reason::ScimNotFound);
        assert_eq!(coded(bare(StatusCode::CONFLICT)), Reason::ScimUniqueness);
        assert_eq!(
            coded(bare(StatusCode::BAD_GATEWAY)),
            Reason::DatabaseUnavailable
        );
        assert_eq!(
            coded(bare(StatusCode::BAD_REQUEST)),
            Reason::ScimInvalidValue
        );
        // The database failing is never a bad value, and a given code wins.
        let down = ScimError::from(ApiError::Store("down".into()));
        assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(coded(down), Reason::DatabaseUnavailable);
        assert_eq!(coded(ScimError::not_found("u1")), Reason::ScimNotFound);
        assert_eq!(coded(ScimError::absent("no route")), Reason::ScimNotFound);
    }
}
