//! Request ids: every response carries `X-Request-Id`, and error bodies name it.
//!
//! The middleware generates a ULID per request and runs the handler inside a task-local
//! scope, so error rendering anywhere below can read it without threading it through.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The current request's id (empty outside a request).
pub fn current() -> String {
    REQUEST_ID.try_with(|id| id.clone()).unwrap_or_default()
}

/// A new request id (a ULID), for work that is not a request (a background job).
pub fn new_id() -> String {
    ulid::Ulid::new().to_string()
}

/// Runs `f` with `id` as the current request id.
pub async fn scope<F: std::future::Future>(id: String, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
}

/// Axum middleware: assigns the id, sets the header.
pub async fn middleware(req: Request, next: Next) -> Response {
    let id = ulid::Ulid::new().to_string();
    let mut res = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}
