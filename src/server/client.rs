//! Who the client is on the network: the socket's peer, or, when that peer is a trusted proxy,
//! the address the proxy says it forwarded for, in the one header `forwarded_header` names
//! (`X-Forwarded-For` by default, or RFC 7239's `Forwarded: for=`). Throttling and pacing count
//! per client address, so a header a client can set itself is believed only from
//! `trusted_proxies`, and only the hops those proxies added. [`address_key`] groups an IPv6
//! host's addresses.

use std::net::IpAddr;

use hyper::header::HeaderName;
use hyper::HeaderMap;
use ipnet::IpNet;

pub use crate::config::ForwardedHeader;

const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Whether `address` lies in one of `networks`.
pub fn is_trusted(address: IpAddr, networks: &[IpNet]) -> bool {
    let address = canonical(address);
    networks.iter().any(|network| network.contains(&address))
}

/// The client of a request that arrived from `peer`: the peer itself unless it is trusted;
/// then, walking the `header` chain from the nearest hop back, the first address that is not a
/// trusted proxy (the nearest ones were added by proxies we trust; anything further left may be
/// made up by the client). The walk stops at an entry that does not parse, naming the last
/// trusted hop before it: what lies beyond it is the client's to write.
pub fn client_address(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    header: ForwardedHeader,
) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut client = peer;
    for hop in forwarded_chain(headers, header).into_iter().rev() {
        let Some(hop) = hop else { break };
        client = hop;
        if !is_trusted(hop, trusted) {
            break;
        }
    }
    client
}

/// The addresses `header` lists over all its lines, nearest last; `None` for an entry that is
/// not an address. Only the one header the proxies are configured to set is read: a proxy that
/// sets `X-Forwarded-For` passes a client's own `Forwarded` through untouched, and the other
/// way round.
fn forwarded_chain(headers: &HeaderMap, header: ForwardedHeader) -> Vec<Option<IpAddr>> {
    let name = match header {
        ForwardedHeader::XForwardedFor => X_FORWARDED_FOR,
        ForwardedHeader::Forwarded => FORWARDED,
    };
    let values = headers.get_all(name).iter().map(|value| value.to_str().ok());
    let mut chain = Vec::new();
    for value in values {
        let Some(value) = value else {
            chain.push(None);
            continue;
        };
        for element in value.split(',') {
            let node = match header {
                ForwardedHeader::XForwardedFor => Some(element),
                ForwardedHeader::Forwarded => element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                    .map(|(_, node)| node),
            };
            chain.push(node.and_then(parse_node));
        }
    }
    chain
}

/// One node: `192.0.2.1`, `"[2001:db8::1]:4711"`, `192.0.2.1:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok().map(canonical);
    }
    if let Ok(address) = node.parse::<IpAddr>() {
        return Some(canonical(address));
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok().map(canonical)
}

/// The address a client is counted by (connection slots, pacing): IPv4 as it is, IPv6 by its
/// /64, the block one host or one customer line usually gets, so that rotating through it does
/// not make a new client of each address.
pub fn address_key(address: IpAddr) -> IpAddr {
    match canonical(address) {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

/// IPv4 addresses seen through an IPv6 socket (`::ffff:192.0.2.1`) as plain IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        map
    }

    const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let spoofed = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(client_address(ip("198.51.100.7"), &spoofed, &trusted, XFF), ip("198.51.100.7"));
        assert_eq!(client_address(ip("10.1.2.3"), &spoofed, &trusted, XFF), ip("203.0.113.9"));
        assert_eq!(client_address(ip("10.1.2.3"), &headers(&[]), &trusted, XFF), ip("10.1.2.3"));
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // The client made up 1.1.1.1; 203.0.113.9 connected to our proxy 10.0.0.2.
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.2")]);
        assert_eq!(client_address(ip("10.0.0.1"), &chain, &trusted, XFF), ip("203.0.113.9"));
        let forwarded = headers(&[("forwarded", "for=1.1.1.1, for=\"[2001:db8::7]:4711\";proto=https")]);
        let rfc = ForwardedHeader::Forwarded;
        assert_eq!(client_address(ip("10.0.0.1"), &forwarded, &trusted, rfc), ip("2001:db8::7"));
        let garbage = headers(&[("x-forwarded-for", "not an address")]);
        assert_eq!(client_address(ip("10.0.0.1"), &garbage, &trusted, XFF), ip("10.0.0.1"));
        let mapped = ip("::ffff:192.0.2.1");
        assert_eq!(client_address(mapped, &headers(&[]), &[], XFF), ip("192.0.2.1"));
    }

    /// Behind a proxy that sets X-Forwarded-For, a client's own `Forwarded` header names
    /// nobody; and garbage the client put further left does not hide the hop the proxy added.
    #[test]
    fn only_the_configured_header_counts_and_garbage_on_the_left_does_not_reset_the_chain() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let both = headers(&[("forwarded", "for=192.0.2.66"), ("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(client_address(ip("10.0.0.1"), &both, &trusted, XFF), ip("203.0.113.9"));
        let dirty = headers(&[("x-forwarded-for", "not-an-address, 203.0.113.9")]);
        assert_eq!(client_address(ip("10.0.0.1"), &dirty, &trusted, XFF), ip("203.0.113.9"));
        let unreadable = headers(&[("x-forwarded-for", "203.0.113.9, garbage")]);
        assert_eq!(client_address(ip("10.0.0.1"), &unreadable, &trusted, XFF), ip("10.0.0.1"));
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64() {
        assert_eq!(address_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")), ip("2001:db8:1:2::"));
        assert_eq!(address_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(address_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }
}
