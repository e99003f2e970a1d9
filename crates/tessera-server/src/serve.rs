//! The accept loop: HTTP/1.1 connections served by hyper with the bounds that keep slow
//! or idle clients from holding the server (docs/operations.md, "Limits").
//!
//! Written here rather than through `axum::serve`, which offers no header-read timeout
//! and no bound on connections: a client sending its header at one byte a second, or
//! thousands of idle connections, would otherwise hold file descriptors until the token
//! endpoint stops answering.
//!
//! - At most `max_connections` at once; past that a new connection is closed at once
//!   (counted in `/metrics`), so the listen queue never fills behind it.
//! - hyper's header-read timeout: a request head must arrive whole within
//!   `header_read_timeout` of the connection opening, or of the previous response on a
//!   kept-alive connection (so it is also the idle keep-alive timeout).
//! - A request timeout on every request (see [`request_timeout`]), body included.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::metrics::Metrics;

/// The connection bounds.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// How long in-flight requests may take to finish at shutdown.
    pub shutdown_grace: Duration,
}

/// Serves `router` on `listener` until `shutdown` completes, then lets open connections
/// finish their requests (at most `shutdown_grace`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connection_refused();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                let res: Result<Response, Infallible> =
                    router.oneshot(req.map(axum::body::Body::new)).await;
                res
            }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

/// Ends a request that takes longer than `limit` (reading a slow body included) with
/// 408 and a JSON body, so a client that trickles its body cannot hold a handler.
pub async fn request_timeout(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            axum::Json(serde_json::json!({
                "error": "request_timeout",
                "error_description": format!("the request took longer than {} s (request_timeout_seconds)", limit.as_secs()),
                "request_id": crate::request_id::current(),
            })),
        )
            .into_response(),
    }
}

/// Warns when the process may open fewer files than `max_connections` needs (each
/// connection is a file descriptor, and the database and logs need some too).
pub fn check_descriptor_limit(max_connections: usize) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(soft) = soft
        && soft < max_connections + 64
    {
        tracing::warn!(
            open_files = soft,
            max_connections,
            "the open-file limit is below max_connections + 64: raise it (ulimit -n, LimitNOFILE) or lower [limits] max_connections, or the server runs out of descriptors before it refuses connections"
        );
    }
}
