//! Clients' JWK Sets fetched from their `jwks_uri` (OIDC Core §10.1, RFC 7523): the
//! only request Tessera makes to an address someone else chose, so it is fenced.
//!
//! - Where: `https` only, to a host that resolves to public addresses only (no loopback,
//!   private, link-local, shared, documentation or multicast range), checked on the
//!   addresses the connection then uses (a resolver of our own, so a name cannot
//!   resolve to a public address for the check and a private one for the connection),
//!   no redirects, no proxy from the environment. An operator may trust hosts by name
//!   (`[jwks_fetch] trusted_hosts`): those may be anywhere and may use `http`.
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
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::config::JwksFetch;

/// Longest `jwks_uri` kept.
pub const MAX_URI_LEN: usize = 2048;

/// Whether a `jwks_uri` may be registered under this policy: an absolute `https` URL
/// (or `http` to a trusted host) with a host, no user info and no fragment. Where the
/// host resolves is checked at each fetch, not here: DNS can change.
pub fn check_uri(policy: &JwksFetch, uri: &str) -> Result<(), String> {
    if uri.len() > MAX_URI_LEN {
        return Err(format!("at most {MAX_URI_LEN} characters"));
    }
    let url = url::Url::parse(uri).map_err(|e| format!("not an absolute URL: {e}"))?;
    let host = url.host_str().ok_or("the URL has no host")?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL may not carry a user name or password".into());
    }
    if url.fragment().is_some() {
        return Err("the URL may not have a fragment".into());
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if policy.is_trusted(host) => Ok(()),
        "http" => Err(format!(
            "must be https; plain http is allowed only to hosts the operator trusts ([jwks_fetch] trusted_hosts), and '{host}' is not one"
        )),
        s => Err(format!("the scheme must be https, not '{s}'")),
    }
}

/// Whether an address is one the public internet routes to. By hand: the standard
/// library's `is_global` is not stable.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || o[0] == 0
                // Shared address space (RFC 6598), IETF protocol assignments, benchmarking
                // (RFC 2544), reserved (240/4).
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                // Unique local fc00::/7, link-local fe80::/10, site-local fec0::/10,
                // documentation 2001:db8::/32, discard-only 100::/64; and the prefixes that
                // carry an IPv4 address, which may be a private one: NAT64 64:ff9b::/32
                // (well-known and local), IPv4-compatible ::/96, IPv4-translated
                // ::ffff:0:0/96, 6to4 2002::/16, Teredo 2001::/32.
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])
                || (s[0] == 0x0064 && s[1] == 0xff9b)
                || s[..6] == [0, 0, 0, 0, 0, 0]
                || (s[..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0)
                || s[0] == 0x2002
                || (s[0] == 0x2001 && s[1] == 0))
        }
    }
}

/// Resolves names for the fetcher, refusing any that resolves to a non-public address
/// unless the operator trusts it.
struct GuardedResolver {
    policy: Arc<JwksFetch>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let trusted = self.policy.is_trusted(&host);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // The address itself is left out of the message: org admins read it in
            // traces, and the internal DNS is not theirs to map.
            if !trusted && addrs.iter().any(|a| !is_public(a.ip())) {
                return Err(format!(
                    "'{host}' resolves to an address that is not public (loopback, private, link-local or reserved); an operator can trust the host ([jwks_fetch] trusted_hosts)"
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
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
    http: reqwest::Client,
    /// Each URL's entry and when it was last asked for.
    entries: Mutex<HashMap<String, (Arc<Entry>, Instant)>>,
    in_flight: Semaphore,
}

impl JwksCache {
    /// The policy the cache fetches under.
    pub fn policy(&self) -> &JwksFetch {
        &self.inner.policy
    }

    pub fn new(policy: JwksFetch) -> Self {
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: Arc::new(policy.clone()),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_millis(policy.timeout_ms))
            .connect_timeout(Duration::from_millis(policy.timeout_ms))
            .user_agent(concat!(
                "Tessera/",
                env!("CARGO_PKG_VERSION"),
                " (jwks_uri)"
            ))
            .build()
            .expect("a TLS client with the built-in roots");
        Self {
            inner: Arc::new(Inner {
                in_flight: Semaphore::new(policy.max_concurrent_fetches.max(1)),
                policy,
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
        check_uri(&self.policy, uri)?;
        let url = url::Url::parse(uri).map_err(|e| e.to_string())?;
        // An address written in the URL is not resolved: check it here.
        if let Some(host) = url.host_str()
            && !self.policy.is_trusted(host)
        {
            let literal = match url.host() {
                Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
                Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
                _ => None,
            };
            if let Some(ip) = literal.filter(|ip| !is_public(*ip)) {
                return Err(format!(
                    "{ip} is not public (loopback, private, link-local or reserved); an operator can trust the host ([jwks_fetch] trusted_hosts)"
                ));
            }
        }
        // The wait for a slot counts against the same deadline as the fetch.
        let deadline = Duration::from_millis(self.policy.timeout_ms);
        let _permit = tokio::time::timeout(deadline, self.in_flight.acquire())
            .await
            .map_err(|_| "too many fetches of clients' keys are in flight; try again".to_string())?
            .map_err(|_| "the server is shutting down".to_string())?;
        let mut res = self
            .http
            .get(url)
            .header("accept", "application/jwk-set+json, application/json;q=0.9")
            .send()
            .await
            .map_err(describe)?;
        let status = res.status();
        if !status.is_success() {
            return Err(format!(
                "it answered {status}{}",
                if status.is_redirection() {
                    " (redirects are not followed)"
                } else {
                    ""
                }
            ));
        }
        let max = self.policy.max_bytes;
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(describe)? {
            if body.len() + chunk.len() > max {
                return Err(format!("its answer is larger than {max} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let set: Value =
            serde_json::from_slice(&body).map_err(|e| format!("its answer is not JSON: {e}"))?;
        tessera_core::client_keys::ClientKey::parse_set(&set)
            .map_err(|e| format!("its answer is not a usable JWK Set: {e}"))?;
        Ok(set)
    }
}

/// A reqwest error with its causes (the resolver's refusal is a cause), one line.
fn describe(e: reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "it did not answer in time".to_string()
    } else if e.is_connect() {
        "no connection".to_string()
    } else {
        "the request failed".to_string()
    };
    let mut source = std::error::Error::source(&e);
    let mut last = String::new();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    if !last.is_empty() {
        out.push_str(": ");
        out.push_str(&last);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "::10.0.0.1",
            "fec0::1",
            "2002:a00:1::1",
            "64:ff9b:1::a00:1",
            "::ffff:0:a00:1",
            "100::1",
            "2001:0:4136:e378::1",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a} is not public");
        }
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(a.parse().unwrap()), "{a} is public");
        }
    }

    #[test]
    fn registered_uris_are_https_without_credentials() {
        let p = JwksFetch {
            trusted_hosts: vec!["keys.internal".into()],
            ..JwksFetch::default()
        };
        assert!(check_uri(&p, "https://rp.example/jwks.json").is_ok());
        assert!(check_uri(&p, "http://keys.internal:8080/jwks").is_ok());
        for (uri, why) in [
            ("http://rp.example/jwks", "must be https"),
            ("ftp://rp.example/jwks", "scheme"),
            ("https://user:pw@rp.example/jwks", "user name"),
            ("https://rp.example/jwks#k", "fragment"),
            ("/jwks", "absolute"),
        ] {
            let e = check_uri(&p, uri).unwrap_err();
            assert!(e.contains(why), "{uri}: {e}");
        }
        let long = format!("https://rp.example/{}", "a".repeat(MAX_URI_LEN));
        assert!(check_uri(&p, &long).is_err());
    }
}
