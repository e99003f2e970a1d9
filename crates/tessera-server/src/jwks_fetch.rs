//! Clients' JWK Sets fetched from their `jwks_uri` (OIDC Core §10.1, RFC 7523): the
//! only request Tessera makes to an address someone else chose, so it is fenced.
//!
//! - Where: the fence of `fence.rs` (`https` to public addresses only, unless the
//!   operator trusts the host in `[jwks_fetch] trusted_hosts`).
//! - How much: a time bound for the whole fetch (the wait for a slot included), a size
//!   bound on the body, a bound on fetches at once, one fetch per URL at a time
//!   (requests for the same URL wait for it), and a bounded number of cached URLs (the
//!   one asked for least recently gives way).
//! - How often: a fetched set is kept `cache_seconds`; a failure is kept
//!   `failure_cache_seconds`, so unauthenticated requests naming a client cannot make
//!   the server fetch in a loop; an assertion naming a `kid` the cached set lacks
//!   fetches again (the client rotated its keys), at most once per `refetch_seconds`,
//!   and a failed refetch keeps the good set. A fetch runs in a task of its own, so a
//!   caller that hangs up cannot cancel it before its result is kept.
//!
//! Nodes cache apart: a key a client adds reaches every node at the next fetch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Semaphore;

use crate::config::JwksFetch;

use crate::fence::Fence;

/// The fence of `jwks_uri` fetches under this policy.
pub fn fence(p: &JwksFetch) -> Fence {
    Fence {
        section: "jwks_fetch",
        trusted_hosts: p.trusted_hosts.clone(),
        timeout_ms: p.timeout_ms,
        max_bytes: p.max_bytes,
    }
}

/// What this node knows of one URL: the last good set, the last failure, and when it
/// last tried. Behind an async lock: requests for the same URL share one fetch.
#[derive(Default)]
struct Known {
    good: Option<(Instant, Arc<Value>)>,
    failure: Option<(Instant, String)>,
    last_try: Option<Instant>,
}

/// What the cache answers without fetching, or that it must fetch.
enum Cached {
    Answer(Result<Arc<Value>, String>),
    Fetch,
}

impl Known {
    fn lookup(&self, p: &JwksFetch, kid: Option<&str>) -> Cached {
        let within = |at: Instant, secs: u64| at.elapsed() < Duration::from_secs(secs);
        if let Some((at, set)) = &self.good
            && within(*at, p.cache_seconds)
        {
            let has_kid = kid.is_none_or(|k| tessera_core::client_keys::set_has_kid(set, k));
            // A kid the set lacks: the client may have rotated; look again, but not more
            // often than refetch_seconds, whoever asks.
            let tried_lately = self.last_try.is_some_and(|t| within(t, p.refetch_seconds));
            if has_kid || tried_lately {
                return Cached::Answer(Ok(set.clone()));
            }
            return Cached::Fetch;
        }
        match &self.failure {
            Some((at, e)) if within(*at, p.failure_cache_seconds) => Cached::Answer(Err(e.clone())),
            _ => Cached::Fetch,
        }
    }

    /// Records a fetch's result and answers with what the cache now holds: a failed
    /// fetch keeps a good set still within its time (a brief outage of the client's key
    /// server, or a stranger's made-up kid, does not lock the client out).
    fn record(
        &mut self,
        p: &JwksFetch,
        result: Result<Value, String>,
    ) -> Result<Arc<Value>, String> {
        let now = Instant::now();
        match result {
            Ok(set) => {
                let set = Arc::new(set);
                self.good = Some((now, set.clone()));
                self.failure = None;
                Ok(set)
            }
            Err(e) => {
                self.failure = Some((now, e.clone()));
                match &self.good {
                    Some((at, set)) if at.elapsed() < Duration::from_secs(p.cache_seconds) => {
                        Ok(set.clone())
                    }
                    _ => Err(e),
                }
            }
        }
    }
}

#[derive(Default)]
struct Entry {
    known: tokio::sync::Mutex<Known>,
}

/// The fetcher and its cache, one per server.
pub struct JwksCache {
    inner: Arc<Inner>,
}

struct Inner {
    policy: JwksFetch,
    fence: Fence,
    http: reqwest::Client,
    /// Each URL's entry and when it was last asked for.
    entries: Mutex<HashMap<String, (Arc<Entry>, Instant)>>,
    in_flight: Semaphore,
}

impl JwksCache {
    /// The fence the cache fetches through.
    pub fn fence(&self) -> &Fence {
        &self.inner.fence
    }

    pub fn new(policy: JwksFetch) -> Self {
        let fence = fence(&policy);
        let http = fence.client("jwks_uri");
        Self {
            inner: Arc::new(Inner {
                in_flight: Semaphore::new(policy.max_concurrent_fetches.max(1)),
                policy,
                fence,
                http,
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The client's JWK Set at `uri`, from the cache while it is fresh; fetched again
    /// when `kid` names a key the cached set lacks and the last try is old enough.
    ///
    /// A fetch runs in a task of its own: a caller that goes away (or times out) does
    /// not cancel it, so its result is kept for everyone, a failure included.
    pub async fn get(&self, uri: &str, kid: Option<&str>) -> Result<Arc<Value>, String> {
        let entry = self.inner.entry(uri);
        if let Cached::Answer(a) = entry.known.lock().await.lookup(&self.inner.policy, kid) {
            return a;
        }
        let (inner, uri, kid) = (self.inner.clone(), uri.to_string(), kid.map(str::to_string));
        tokio::spawn(async move {
            let mut known = entry.known.lock().await;
            // Another task may have fetched while this one waited.
            if let Cached::Answer(a) = known.lookup(&inner.policy, kid.as_deref()) {
                return a;
            }
            known.last_try = Some(Instant::now());
            let fetched = inner.fetch(&uri).await;
            if let Err(e) = &fetched {
                tracing::warn!(jwks_uri = %tessera_core::text::shown(&uri), error = %e, "a client's jwks_uri could not be fetched");
            }
            known.record(&inner.policy, fetched)
        })
        .await
        .unwrap_or_else(|e| Err(format!("the fetch failed: {e}")))
    }
}

impl Inner {
    /// The entry of `uri`. At most `max_cached_uris` are kept: past it the entry asked
    /// for least recently and not in use gives way.
    fn entry(&self, uri: &str) -> Arc<Entry> {
        let mut map = self.entries.lock().expect("jwks cache");
        let now = Instant::now();
        if let Some((e, used)) = map.get_mut(uri) {
            *used = now;
            return e.clone();
        }
        if map.len() >= self.policy.max_cached_uris {
            let idle = map
                .iter()
                .filter(|(_, (e, _))| Arc::strong_count(e) == 1)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(k) = idle {
                map.remove(&k);
            }
        }
        let e = Arc::new(Entry::default());
        map.insert(uri.to_string(), (e.clone(), now));
        e
    }

    async fn fetch(&self, uri: &str) -> Result<Value, String> {
        self.fence.check_url(uri)?;
        // The wait for a slot counts against the same deadline as the fetch.
        let deadline = Duration::from_millis(self.policy.timeout_ms);
        let _permit = tokio::time::timeout(deadline, self.in_flight.acquire())
            .await
            .map_err(|_| "too many fetches of clients' keys are in flight; try again".to_string())?
            .map_err(|_| "the server is shutting down".to_string())?;
        let body = self
            .fence
            .get(
                &self.http,
                uri,
                "application/jwk-set+json, application/json;q=0.9",
            )
            .await?;
        let set: Value =
            serde_json::from_slice(&body).map_err(|e| format!("its answer is not JSON: {e}"))?;
        tessera_core::client_keys::ClientKey::parse_set(&set)
            .map_err(|e| format!("its answer is not a usable JWK Set: {e}"))?;
        Ok(set)
    }
}
