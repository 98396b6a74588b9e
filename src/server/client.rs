//! Who the client is on the network: the socket's peer, or, when that peer is a trusted proxy,
//! the address the proxy says it forwarded for (`Forwarded: for=`, RFC 7239, else
//! `X-Forwarded-For`). Throttling counts failures per client address, so a header a client can
//! set itself is believed only from `trusted_proxies`.

use std::net::IpAddr;

use hyper::header::HeaderName;
use hyper::HeaderMap;
use ipnet::IpNet;

const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Whether `address` lies in one of `networks`.
pub fn is_trusted(address: IpAddr, networks: &[IpNet]) -> bool {
    let address = canonical(address);
    networks.iter().any(|network| network.contains(&address))
}

/// The client of a request that arrived from `peer`: the peer itself unless it is trusted;
/// then, walking the forwarding chain from the nearest hop back, the first address that is not
/// a trusted proxy (the nearest ones were added by proxies we trust; anything further left may
/// be made up by the client). A chain that is missing or does not parse names the peer.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let chain = forwarded_chain(headers);
    let Some(chain) = chain else { return peer };
    let mut client = peer;
    for hop in chain.into_iter().rev() {
        client = hop;
        if !is_trusted(hop, trusted) {
            break;
        }
    }
    client
}

/// The `for=` addresses of every `Forwarded` header, else those of every `X-Forwarded-For`,
/// nearest last; `None` when neither is there or one entry is not an address.
fn forwarded_chain(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let forwarded: Vec<&str> = headers.get_all(FORWARDED).iter().filter_map(|v| v.to_str().ok()).collect();
    if !forwarded.is_empty() {
        let mut chain = Vec::new();
        for element in forwarded.iter().flat_map(|value| value.split(',')) {
            let node = element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))?
                .1;
            chain.push(parse_node(node)?);
        }
        return (!chain.is_empty()).then_some(chain);
    }
    let listed: Vec<&str> = headers.get_all(X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).collect();
    if listed.is_empty() {
        return None;
    }
    listed.iter().flat_map(|value| value.split(',')).map(parse_node).collect()
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

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let spoofed = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(client_address(ip("198.51.100.7"), &spoofed, &trusted), ip("198.51.100.7"));
        assert_eq!(client_address(ip("10.1.2.3"), &spoofed, &trusted), ip("203.0.113.9"));
        assert_eq!(client_address(ip("10.1.2.3"), &headers(&[]), &trusted), ip("10.1.2.3"));
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // The client made up 1.1.1.1; 203.0.113.9 connected to our proxy 10.0.0.2.
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.2")]);
        assert_eq!(client_address(ip("10.0.0.1"), &chain, &trusted), ip("203.0.113.9"));
        let forwarded = headers(&[("forwarded", "for=1.1.1.1, for=\"[2001:db8::7]:4711\";proto=https")]);
        assert_eq!(client_address(ip("10.0.0.1"), &forwarded, &trusted), ip("2001:db8::7"));
        let garbage = headers(&[("x-forwarded-for", "not an address")]);
        assert_eq!(client_address(ip("10.0.0.1"), &garbage, &trusted), ip("10.0.0.1"));
        let mapped = ip("::ffff:192.0.2.1");
        assert_eq!(client_address(mapped, &headers(&[]), &[]), ip("192.0.2.1"));
    }
}
