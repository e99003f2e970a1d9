//! The caller's address behind reverse proxies: `X-Forwarded-For` believed only as far
//! as the proxies the operator trusts.
//!
//! Each proxy appends the address it received the request from, so the list is read
//! from the right: the TCP peer must be a trusted proxy for the header to count at all,
//! and each entry that is itself a trusted proxy passes the question one hop further
//! left. The first address that is not a trusted proxy is the caller; what a caller
//! wrote to the left of it is never believed. Written by hand: this is a few lines over
//! the allow-list type the server already has, where a crate would bring a framework.

use std::net::{IpAddr, SocketAddr};

use crate::model::IpAllowList;

/// The most `X-Forwarded-For` entries looked at (bounded work for any header).
pub const MAX_HOPS: usize = 32;

/// The caller's address: `peer` itself unless it is one of `trusted` (empty: none is),
/// else the rightmost `X-Forwarded-For` address that is not a trusted proxy (the
/// leftmost one when all are). `headers` are the header's lines in the order received.
/// An entry that is not an address ends the walk at the last proxy that vouched for it.
pub fn caller<'a>(
    peer: IpAddr,
    headers: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted: &IpAllowList,
) -> IpAddr {
    let is_proxy = |ip: IpAddr| !trusted.is_empty() && trusted.allows(ip);
    if !is_proxy(peer) {
        return peer;
    }
    let mut current = peer;
    let entries = headers
        .rev()
        .flat_map(|line| line.rsplit(|b| *b == b','))
        .take(MAX_HOPS);
    for entry in entries {
        let Some(ip) = address(entry) else {
            return current;
        };
        current = ip;
        if !is_proxy(ip) {
            break;
        }
    }
    current
}

/// One entry: an IPv4 or IPv6 address, optionally with a port (`1.2.3.4:5`,
/// `[2001:db8::1]:5`), with surrounding spaces.
fn address(entry: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(entry).ok()?.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(IpAllowList::canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn caller_of(peer: &str, lines: &[&str], trusted: &[&str]) -> IpAddr {
        let trusted = IpAllowList::parse(trusted).unwrap();
        caller(ip(peer), lines.iter().map(|l| l.as_bytes()), &trusted)
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_caller() {
        assert_eq!(caller_of("10.0.0.2", &["203.0.113.7"], &[]), ip("10.0.0.2"));
    }

    #[test]
    fn a_peer_that_is_not_a_trusted_proxy_cannot_name_another_caller() {
        let t = &["10.0.0.0/8"];
        assert_eq!(
            caller_of("198.51.100.9", &["203.0.113.7"], t),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_caller_is_the_address_it_appended() {
        let t = &["10.0.0.0/8"];
        assert_eq!(
            caller_of("10.0.0.2", &["203.0.113.7"], t),
            ip("203.0.113.7")
        );
        // What the caller wrote to the left is not believed.
        assert_eq!(
            caller_of("10.0.0.2", &["1.1.1.1, 203.0.113.7"], t),
            ip("203.0.113.7")
        );
        // Several lines are one list, in order.
        assert_eq!(
            caller_of("10.0.0.2", &["1.1.1.1", "203.0.113.7"], t),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn trusted_proxies_in_the_chain_pass_the_question_left() {
        let t = &["10.0.0.0/8", "192.0.2.1"];
        assert_eq!(
            caller_of(
                "10.0.0.2",
                &["9.9.9.9, 203.0.113.7, 192.0.2.1, 10.1.1.1"],
                t
            ),
            ip("203.0.113.7")
        );
        // All trusted: the leftmost.
        assert_eq!(
            caller_of("10.0.0.2", &["10.9.9.9, 10.1.1.1"], t),
            ip("10.9.9.9")
        );
        // No header: the proxy itself.
        assert_eq!(caller_of("10.0.0.2", &[], t), ip("10.0.0.2"));
    }

    #[test]
    fn ports_brackets_spaces_and_mapped_addresses_are_understood() {
        let t = &["10.0.0.0/8"];
        assert_eq!(
            caller_of("10.0.0.2", &[" 203.0.113.7:4711 "], t),
            ip("203.0.113.7")
        );
        assert_eq!(
            caller_of("10.0.0.2", &["[2001:db8::17]:4711"], t),
            ip("2001:db8::17")
        );
        assert_eq!(
            caller_of("10.0.0.2", &["2001:db8::17"], t),
            ip("2001:db8::17")
        );
        assert_eq!(
            caller_of("10.0.0.2", &["::ffff:203.0.113.7"], t),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn garbage_stops_at_the_last_proxy_that_vouched() {
        let t = &["10.0.0.0/8"];
        assert_eq!(caller_of("10.0.0.2", &["unknown"], t), ip("10.0.0.2"));
        assert_eq!(
            caller_of("10.0.0.2", &["203.0.113.7, not-an-ip, 10.1.1.1"], t),
            ip("10.1.1.1")
        );
        assert_eq!(caller_of("10.0.0.2", &[""], t), ip("10.0.0.2"));
    }

    #[test]
    fn a_long_header_is_read_only_so_far() {
        let t = &["10.0.0.0/8"];
        let chain = vec!["10.0.0.1"; 1000].join(",");
        let line = format!("203.0.113.7,{chain}");
        // Past MAX_HOPS trusted entries the walk ends at the last one read.
        assert_eq!(caller_of("10.0.0.2", &[&line], t), ip("10.0.0.1"));
    }
}
