//! The accept loop: HTTP/1.1 connections served by hyper with the bounds that keep slow
//! or idle clients from holding the server (docs/operations.md, "Limits").
//!
//! Written here rather than through `axum::serve`, which offers no header-read timeout
//! and no bound on connections: a client sending its header at one byte a second, or
//! thousands of idle connections, would otherwise hold file descriptors until the token
//! endpoint stops answering.
//!
//! - At most `max_connections` at once, and `max_connections_per_source` from one host
//!   (an IPv4 address or an IPv6 /64); past that a new connection is closed at once
//!   (counted in `/metrics`), so the listen queue never fills behind it.
//! - hyper's header-read timeout: a request head must arrive whole within
//!   `header_read_timeout` of the connection opening, or of the previous response on a
//!   kept-alive connection (so it is also the idle keep-alive timeout).
//! - A request timeout on every request (see [`edge`]), body included.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
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

use tessera_core::forwarded;
use tessera_core::model::IpAllowList;

use crate::metrics::Metrics;

/// The connection bounds.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    pub header_read_timeout: Duration,
    /// How long in-flight requests may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// Proxies whose `X-Forwarded-For` names the caller: handlers see that caller as the
    /// request's `ConnectInfo` (the connection limits still count the TCP peer).
    pub trusted_proxies: Arc<IpAllowList>,
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
    let per_source = Arc::new(PerSource::new(limits.max_connections_per_source));
    let mut connections = tokio::task::JoinSet::new();
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
        // Finished connection tasks leave the set as new ones come.
        while connections.try_join_next().is_some() {}
        let Some(own) = per_source.take(peer.ip()) else {
            metrics.connection_refused();
            drop(stream);
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connection_refused();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let trusted = limits.trusted_proxies.clone();
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            let caller = if trusted.is_empty() {
                peer
            } else {
                let lines = req.headers().get_all("x-forwarded-for");
                let ip = forwarded::caller(peer.ip(), lines.iter().map(|v| v.as_bytes()), &trusted);
                SocketAddr::new(ip, peer.port())
            };
            req.extensions_mut().insert(ConnectInfo(caller));
            let router = router.clone();
            async move {
                let res: Result<Response, Infallible> =
                    router.oneshot(req.map(axum::body::Body::new)).await;
                res
            }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended");
            }
            drop((slot, own));
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
    // Whatever is left (a client that never reads its response) is closed now, so
    // nothing keeps the application state, and the audit writer, from shutting down.
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// The address that stands for one host in per-source bounds: an IPv4 address as it is,
/// an IPv6 address by its /64 (one host can hold a whole /64).
pub fn host_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

/// The bound on connections from one source (IPv4 address, or IPv6 /64: one host's
/// addresses), so one host cannot take every connection slot.
struct PerSource {
    max: usize,
    open: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
}

/// One connection's place in its source's count; given back on drop.
struct SourcePlace {
    table: Arc<PerSource>,
    key: IpAddr,
}

impl PerSource {
    fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            open: Default::default(),
        }
    }

    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<SourcePlace> {
        let key = host_key(ip);
        let mut open = self.open.lock().expect("per-source table");
        let n = open.entry(key).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(SourcePlace {
            table: self.clone(),
            key,
        })
    }
}

impl Drop for SourcePlace {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().expect("per-source table");
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The one middleware at the edge of every request (one layer: each layer costs a boxed
/// future and its copies on the token path). It ends a request that takes longer than
/// `limit` (reading a slow body included) with 408 and a JSON body, so a client that
/// trickles its body cannot hold a handler, and adds the security headers
/// ([`crate::html::add_security_headers`]).
pub async fn edge(limit: Duration, req: Request, next: Next) -> Response {
    let cors = crate::cors::open_to_browsers(req.uri().path());
    if cors && crate::cors::is_preflight(req.method(), req.headers()) {
        let mut res = crate::cors::preflight();
        crate::html::add_security_headers(&mut res);
        return res;
    }
    let mut res = match tokio::time::timeout(limit, next.run(req)).await {
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
    };
    crate::html::add_security_headers(&mut res);
    if cors {
        crate::cors::allow(&mut res);
    }
    res
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_host_gets_its_share_and_gives_it_back() {
        let t = Arc::new(PerSource::new(2));
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let first = t.take(a).unwrap();
        let _second = t.take(b).unwrap();
        assert!(t.take(a).is_none(), "one /64 is one host");
        assert!(t.take("10.0.0.1".parse().unwrap()).is_some());
        drop(first);
        assert!(t.take(a).is_some());
    }
}
