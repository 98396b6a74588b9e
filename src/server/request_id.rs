//! Request ids: every request gets one, every log line of it carries it (a `request` span), and
//! the answer returns it as `X-Request-Id`, so a user's error report, the server's log and the
//! audit trail meet. An id a trusted proxy sent is kept, so that the proxy's log matches too;
//! from anyone else it is ignored (a client could otherwise make its lines look like another's).

use std::net::IpAddr;

use hyper::header::{HeaderName, HeaderValue};
use hyper::HeaderMap;
use ipnet::IpNet;

use super::client::is_trusted;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id kept from a proxy.
const MAX_LENGTH: usize = 64;

/// The id of a request from `peer` with `headers`: the proxy's when `peer` is trusted and sent
/// a sensible one (letters, digits, `-`, `_`, `.`, at most 64), else 16 random hex digits.
pub fn request_id(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> HeaderValue {
    let forwarded = headers.get(X_REQUEST_ID).filter(|_| is_trusted(peer, trusted)).filter(|value| {
        let bytes = value.as_bytes();
        (1..=MAX_LENGTH).contains(&bytes.len())
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    });
    match forwarded {
        Some(value) => value.clone(),
        None => {
            let id = format!("{:016x}", rand::random::<u64>());
            HeaderValue::from_str(&id).expect("hex digits are a header value")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxys_id_is_kept_and_anyone_elses_replaced() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id("10.0.0.1".parse().unwrap(), &headers, &trusted), "abc-123");
        let made = request_id("192.0.2.1".parse().unwrap(), &headers, &trusted);
        assert!(made != "abc-123" && made.len() == 16, "{made:?}");
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("a b"));
        assert_ne!(request_id("10.0.0.1".parse().unwrap(), &headers, &trusted), "a b");
    }
}
