//! Errors of the HTTP layer, mapped to responses in exactly one place.
//!
//! [`ApiError`] is what admin API handlers return; [`oauth_error`] renders a token
//! endpoint refusal in RFC 6749 §5.2's shape with Tessera's `reason`, `request_id` and
//! `error_uri`. Store failures keep their detail in the log and tell the caller only that
//! the service is unavailable.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tessera_api::ApiErrorBody;
use tessera_core::store::StoreError;
use tessera_core::trace::Denial;
use tessera_core::{OAuthError, Reason};

use crate::request_id;

/// An admin API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field holds a value that can never be accepted (422).
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
    /// The body is not the JSON expected (400).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// No usable bearer token (401).
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token without the admin scope (403).
    #[error("{0}")]
    Forbidden(String),
    /// The database failed (503); the detail goes to the log only.
    #[error("storage unavailable: {0}")]
    Store(String),
}

impl ApiError {
    /// Shorthand for [`ApiError::InvalidField`].
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::NotFound(m) => ApiError::NotFound(m),
            StoreError::Backend(m) => ApiError::Store(m),
        }
    }
}

impl From<crate::token_service::ServiceError> for ApiError {
    fn from(e: crate::token_service::ServiceError) -> Self {
        match e {
            crate::token_service::ServiceError::Store(e) => e.into(),
            other => ApiError::Store(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::InvalidField { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "insufficient_scope"),
            ApiError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        let message = match &self {
            ApiError::Store(detail) => {
                tracing::error!(error = %detail, "storage failure in the admin API");
                "the database is unavailable; try again shortly".to_string()
            }
            ApiError::InvalidField { message, .. } => message.clone(),
            other => other.to_string(),
        };
        let field = match &self {
            ApiError::InvalidField { field, .. } => Some(field.clone()),
            _ => None,
        };
        let body = ApiErrorBody {
            error: code.into(),
            message,
            field,
            request_id: request_id::current(),
        };
        let mut res = (status, Json(body)).into_response();
        let challenge = match &self {
            ApiError::Unauthorized(_) => Some("Bearer realm=\"tessera\", error=\"invalid_token\""),
            ApiError::Forbidden(_) => Some(
                "Bearer realm=\"tessera\", error=\"insufficient_scope\", scope=\"tessera:admin\"",
            ),
            _ => None,
        };
        if let Some(c) = challenge {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        res
    }
}

/// The HTTP status of a token endpoint refusal.
fn oauth_status(reason: Reason) -> StatusCode {
    match reason {
        Reason::ClientThrottled | Reason::UserThrottled => StatusCode::TOO_MANY_REQUESTS,
        Reason::PasswordCheckBusy => StatusCode::SERVICE_UNAVAILABLE,
        Reason::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        r if r.oauth_error() == OAuthError::InvalidClient => StatusCode::UNAUTHORIZED,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Renders a token endpoint refusal (RFC 6749 §5.2 plus `reason`, `request_id`, `error_uri`).
pub fn oauth_error(denial: &Denial, issuer: &str) -> Response {
    let status = oauth_status(denial.reason);
    let body = json!({
        "error": denial.reason.oauth_error().as_str(),
        "error_description": denial.description,
        "reason": denial.reason.code(),
        "request_id": request_id::current(),
        "error_uri": format!("{issuer}/docs/errors#{}", denial.reason.code()),
    });
    let mut res = (status, Json(body)).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED || denial.reason == Reason::ClientThrottled {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"tessera\", charset=\"UTF-8\""),
        );
    }
    if let Some(s) = denial.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s.max(1)));
    }
    res
}

/// The token endpoint's answer when it cannot decide or record a decision (503).
pub fn oauth_unavailable() -> Response {
    let body = json!({
        "error": "temporarily_unavailable",
        "error_description": "the authorization server cannot reach its database to decide or record this request; retry shortly",
        "reason": Reason::DatabaseUnavailable.code(),
        "request_id": request_id::current(),
    });
    let mut res = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(1u32));
    res
}
