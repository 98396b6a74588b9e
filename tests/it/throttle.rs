//! Password guessing against the real binary, from several loopback addresses at once: an
//! (account, address) pair that failed too often is answered 429 `TOOMANYREQUESTS` with
//! `Retry-After`, without its password being checked, while the same account still logs in from
//! another address; forwarding headers count only from trusted proxies.

use std::net::Ipv4Addr;

use crate::support::binary::Portcullis;
use crate::support::http::{basic, send_raw_from, HttpResponse};

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const USER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);

fn login_from(
    server: &Portcullis,
    source: Ipv4Addr,
    user: &str,
    password: &str,
    extra: &str,
) -> HttpResponse {
    let request = format!(
        "GET /token?service=registry.test HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {}\r\n{extra}\r\n",
        basic(user, password)
    );
    send_raw_from(source, server.addr(), request.as_bytes())
}

#[test]
fn a_guessing_client_is_told_to_wait_while_the_user_logs_in_elsewhere() {
    let server = Portcullis::start_with(&[
        ("PORTCULLIS_THROTTLE__CLIENT_FAILURES", "3"),
        ("PORTCULLIS_THROTTLE__CLIENT_DELAY", "60"),
    ]);
    server.add_user("alice", "alice-password-1");
    for guess in 0..3 {
        let refused = login_from(&server, ATTACKER, "alice", &format!("guess-{guess}"), "");
        assert_eq!(refused.status, 401, "{refused:?}");
    }
    // Even the right password is not checked from that address now.
    let throttled = login_from(&server, ATTACKER, "alice", "alice-password-1", "");
    assert_eq!(throttled.status, 429, "{throttled:?}");
    assert_eq!(throttled.error_code(), "TOOMANYREQUESTS");
    let retry: u64 = throttled.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((55..=60).contains(&retry), "{retry}");
    // The name in another case is the same account.
    assert_eq!(login_from(&server, ATTACKER, "ALICE", "x", "").status, 429);
    // A forged forwarding header from an untrusted peer changes nothing.
    let forged = login_from(&server, ATTACKER, "alice", "x", "X-Forwarded-For: 127.0.0.9\r\n");
    assert_eq!(forged.status, 429, "{forged:?}");
    // The real user, from their own address, is not locked out.
    let user = login_from(&server, USER, "alice", "alice-password-1", "");
    assert_eq!(user.status, 200, "{user:?}");
    assert_eq!(user.header("cache-control"), Some("no-store"));
    assert_eq!(user.header("pragma"), Some("no-cache"));
    // Other accounts from the attacker's address are untouched.
    server.add_user("bob", "bob-password-12");
    assert_eq!(login_from(&server, ATTACKER, "bob", "bob-password-12", "").status, 200);
    // Every process sees the account's counts; unlocking clears them at the server too.
    let listed = server.json(&["throttle", "list", "--json"]);
    let alice =
        listed.as_array().into_iter().flatten().find(|row| row["name"] == "alice").expect("alice listed");
    assert_eq!(alice["last_address"], "127.0.0.3", "{listed}");
    assert!(alice["failures"].as_i64() >= Some(3), "{listed}");
    server.ok(&["user", "unlock", "alice"]);
    let after = login_from(&server, ATTACKER, "alice", "alice-password-1", "");
    assert_eq!(after.status, 200, "unlocked: {after:?}");
    // The log says it once per address, with the count, not once per attempt.
    let log = server.log();
    assert!(log.matches("authentication failed").count() <= 2, "{log}");
}

#[test]
fn a_trusted_proxy_names_the_client() {
    let server = Portcullis::start_with(&[
        ("PORTCULLIS_THROTTLE__CLIENT_FAILURES", "2"),
        ("PORTCULLIS_TRUSTED_PROXIES", "127.0.0.5/32"),
    ]);
    server.add_user("carol", "carol-password-1");
    let proxy = Ipv4Addr::new(127, 0, 0, 5);
    for _ in 0..2 {
        let refused = login_from(&server, proxy, "carol", "wrong", "X-Forwarded-For: 203.0.113.7\r\n");
        assert_eq!(refused.status, 401, "{refused:?}");
    }
    let throttled =
        login_from(&server, proxy, "carol", "carol-password-1", "X-Forwarded-For: 203.0.113.7\r\n");
    assert_eq!(throttled.status, 429, "the forwarded client is throttled: {throttled:?}");
    let other = login_from(&server, proxy, "carol", "carol-password-1", "X-Forwarded-For: 203.0.113.8\r\n");
    assert_eq!(other.status, 200, "another client behind the same proxy is not: {other:?}");
}
