//! The fence around every request Tessera makes to an address someone else chose: a
//! client's `jwks_uri` (`jwks_fetch.rs`) and an org's IdP metadata URL
//! (`saml_metadata.rs`). An org admin or a client must not be able to make the server
//! reach its own network.
//!
//! - Where: `https` only, to a host that resolves to public addresses only (no loopback,
//!   private, link-local, shared, documentation or multicast range), checked on the
//!   addresses the connection then uses (a resolver of our own, so a name cannot
//!   resolve to a public address for the check and a private one for the connection),
//!   and on addresses written in the URL in any notation; no redirects, no proxy from
//!   the environment. An operator may trust hosts by name (`trusted_hosts` of the
//!   feature's section): those may be anywhere and may use `http`.
//! - How much: a time bound for the whole fetch and a size bound on the body.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Longest URL kept.
pub const MAX_URI_LEN: usize = 2048;

/// One feature's fence: its configuration section (named in messages), the hosts the
/// operator trusts, and the bounds of a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The configuration section, e.g. `jwks_fetch`.
    pub section: &'static str,
    pub trusted_hosts: Vec<String>,
    pub timeout_ms: u64,
    pub max_bytes: usize,
}

impl Fence {
    /// True when the operator trusts `host` (as written in the URL; IPv6 with or
    /// without brackets, names case-insensitively).
    pub fn is_trusted(&self, host: &str) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        self.trusted_hosts.iter().any(|t| {
            t.trim_start_matches('[')
                .trim_end_matches(']')
                .eq_ignore_ascii_case(bare)
        })
    }

    fn trust_hint(&self) -> String {
        format!(
            "an operator can trust the host ([{}] trusted_hosts)",
            self.section
        )
    }

    /// Whether a URL may be registered under this fence: absolute `https` (or `http` to
    /// a trusted host) with a host, no user info and no fragment. Where the host
    /// resolves is checked at each fetch, not here: DNS can change.
    pub fn check_url(&self, uri: &str) -> Result<(), String> {
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
            "http" if self.is_trusted(host) => Ok(()),
            "http" => Err(format!(
                "must be https; plain http is allowed only to hosts the operator trusts ([{}] trusted_hosts), and '{host}' is not one",
                self.section
            )),
            s => Err(format!("the scheme must be https, not '{s}'")),
        }
    }

    /// A client that fetches only through this fence (`what` names the feature in the
    /// User-Agent).
    pub fn client(&self, what: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                fence: Arc::new(self.clone()),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_millis(self.timeout_ms))
            .connect_timeout(Duration::from_millis(self.timeout_ms))
            .user_agent(format!("Tessera/{} ({what})", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a TLS client with the built-in roots")
    }

    /// GETs `uri` with `http` (made by [`Fence::client`]): the body, at most `max_bytes`.
    /// Errors are one line, for an admin to read (never an internal address).
    pub async fn get(
        &self,
        http: &reqwest::Client,
        uri: &str,
        accept: &str,
    ) -> Result<Vec<u8>, String> {
        self.check_url(uri)?;
        let url = url::Url::parse(uri).map_err(|e| e.to_string())?;
        // An address written in the URL is not resolved: check it here.
        if let Some(host) = url.host_str()
            && !self.is_trusted(host)
        {
            let literal = match url.host() {
                Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
                Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
                _ => None,
            };
            if let Some(ip) = literal.filter(|ip| !is_public(*ip)) {
                return Err(format!(
                    "{ip} is not public (loopback, private, link-local or reserved); {}",
                    self.trust_hint()
                ));
            }
        }
        let mut res = http
            .get(url)
            .header("accept", accept)
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
        let max = self.max_bytes;
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(describe)? {
            if body.len() + chunk.len() > max {
                return Err(format!("its answer is larger than {max} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
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

/// Resolves names for a fenced client, refusing any that resolves to a non-public
/// address unless the operator trusts it.
struct GuardedResolver {
    fence: Arc<Fence>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let trusted = self.fence.is_trusted(&host);
        let hint = self.fence.trust_hint();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // The address itself is left out of the message: org admins read it in
            // traces, and the internal DNS is not theirs to map.
            if !trusted && addrs.iter().any(|a| !is_public(a.ip())) {
                return Err(format!(
                    "'{host}' resolves to an address that is not public (loopback, private, link-local or reserved); {hint}"
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
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
        let p = Fence {
            section: "jwks_fetch",
            trusted_hosts: vec!["keys.internal".into()],
            timeout_ms: 1000,
            max_bytes: 1000,
        };
        assert!(p.check_url("https://rp.example/jwks.json").is_ok());
        assert!(p.check_url("http://keys.internal:8080/jwks").is_ok());
        for (uri, why) in [
            ("http://rp.example/jwks", "must be https"),
            ("ftp://rp.example/jwks", "scheme"),
            ("https://user:pw@rp.example/jwks", "user name"),
            ("https://rp.example/jwks#k", "fragment"),
            ("/jwks", "absolute"),
        ] {
            let e = p.check_url(uri).unwrap_err();
            assert!(e.contains(why), "{uri}: {e}");
        }
        let long = format!("https://rp.example/{}", "a".repeat(MAX_URI_LEN));
        assert!(p.check_url(&long).is_err());
    }
}
