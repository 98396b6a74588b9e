//! `/metrics`: token requests of every kind counted by outcome, flow and credential, read back
//! through an independent Prometheus text parser (`prometheus-parse`), and `[metrics] listen`.

use std::collections::HashMap;

use prometheus_parse::{Sample, Scrape, Value};

use crate::support::binary::{Portcullis, SERVICE};
use crate::support::http;
use crate::support::process::free_port;

/// `/metrics` of the server at `addr`, parsed.
pub fn scrape(addr: &str) -> Scrape {
    let response = http::request(addr, "GET", "/metrics", &[], b"");
    assert_eq!(response.status, 200, "{response:?}");
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.contains("openmetrics-text") || content_type.contains("text/plain"),
        "{content_type}"
    );
    let lines = response.body.lines().map(|line| Ok(line.to_string()));
    Scrape::parse(lines).expect("the metrics parse as Prometheus text")
}

fn labels(sample: &Sample) -> HashMap<String, String> {
    sample.labels.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
}

/// The value of the counter sample `name` whose labels include `wanted`.
pub fn counter(scrape: &Scrape, name: &str, wanted: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|sample| {
            let labels = labels(sample);
            sample.metric == name
                && wanted.iter().all(|(key, value)| labels.get(*key).map(String::as_str) == Some(value))
        })
        .unwrap_or_else(|| panic!("no sample {name} {wanted:?}"));
    match sample.value {
        Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value) => value,
        ref other => panic!("{name} is not a counter: {other:?}"),
    }
}

fn token_requests(scrape: &Scrape, outcome: &str, flow: &str, credential: &str) -> f64 {
    counter(
        scrape,
        "portcullis_token_requests_total",
        &[("outcome", outcome), ("flow", flow), ("credential", credential)],
    )
}

#[test]
fn token_requests_are_counted_by_outcome_flow_and_credential() {
    let server = Portcullis::start_with(&[("PORTCULLIS_THROTTLE__CLIENT_FAILURES", "2")]);
    server.create_project("team", false);
    server.add_user("alice", "alice-password-1");
    server.add_member("team", "alice", "guest");
    let alice = Some(("alice", "alice-password-1"));
    assert_eq!(counter(&scrape(server.addr()), "portcullis_directory_up", &[]), -1.0, "no [ldap]");
    let pull = format!("service={SERVICE}&scope=repository:team/app:pull");
    let push_pull = format!("service={SERVICE}&scope=repository:team/app:push,pull");
    let before = scrape(server.addr());

    // A login (verified), then the same password again (remembered), a guest asking to push
    // (partly granted), a repository of another project (denied), anonymous.
    let login = server.token(&format!("service={SERVICE}&offline_token=true&client_id=docker"), alice);
    assert_eq!(login.status, 200);
    assert_eq!(server.token(&pull, alice).status, 200);
    assert_eq!(server.token(&push_pull, alice).status, 200);
    assert_eq!(
        server.token(&format!("service={SERVICE}&scope=repository:other/app:pull"), alice).status,
        200
    );
    assert_eq!(server.token(&format!("service={SERVICE}"), None).status, 200);
    // The refresh grant, and a form that cannot be read.
    let refresh = login.refresh_token().expect("a refresh token");
    let form = format!("grant_type=refresh_token&refresh_token={refresh}&service={SERVICE}&client_id=docker&scope=repository:team/app:pull");
    assert_eq!(server.post_form(&form).status, 200);
    assert_eq!(server.post_form("grant_type=magic").status, 400);
    // The password grant (containerd's first POST), a robot and a personal token.
    let form = format!(
        "grant_type=password&username=alice&password=alice-password-1&service={SERVICE}&client_id=containerd"
    );
    assert_eq!(server.post_form(&form).status, 200);
    let robot = server.json(&["robot", "create", "ci", "--project", "team", "--json"]);
    let robot = (robot["name"].as_str().unwrap().to_string(), robot["secret"].as_str().unwrap().to_string());
    assert_eq!(server.token(&pull, Some((&robot.0, &robot.1))).status, 200);
    let pat = server.json(&["pat", "create", "--user", "alice", "--name", "laptop", "--json"]);
    assert_eq!(server.token(&pull, Some(("alice", pat["token"].as_str().unwrap()))).status, 200);
    // Wrong passwords: refused, then throttled for this address.
    let wrong = Some(("alice", "not-the-password"));
    assert_eq!(server.token(&pull, wrong).status, 401);
    assert_eq!(server.token(&pull, wrong).status, 401);
    assert_eq!(server.token(&pull, wrong).status, 429);

    let after = scrape(server.addr());
    let delta = |outcome: &str, flow: &str, credential: &str| {
        token_requests(&after, outcome, flow, credential) - token_requests(&before, outcome, flow, credential)
    };
    assert_eq!(delta("granted", "get", "password"), 1.0);
    assert_eq!(delta("granted", "get", "cached"), 1.0);
    assert_eq!(delta("partially_granted", "get", "cached"), 1.0);
    assert_eq!(delta("denied", "get", "cached"), 1.0);
    assert_eq!(delta("granted", "get", "anonymous"), 1.0);
    assert_eq!(delta("granted", "refresh_grant", "refresh_token"), 1.0);
    assert_eq!(
        delta("granted", "password_grant", "cached") + delta("granted", "password_grant", "password"),
        1.0
    );
    assert_eq!(delta("granted", "get", "robot"), 1.0);
    assert_eq!(delta("granted", "get", "personal_token"), 1.0);
    assert_eq!(delta("error", "unknown", "none"), 1.0);
    assert_eq!(delta("unauthorized", "get", "password"), 2.0);
    assert_eq!(delta("throttled", "get", "password"), 1.0);

    // The latency histogram counted every token request; the cache its hits and misses.
    let count = counter(&after, "portcullis_token_request_duration_seconds_count", &[]);
    assert!(count >= 10.0, "{count}");
    assert!(after.samples.iter().any(|s| s.metric == "portcullis_token_request_duration_seconds_bucket"
        || matches!(s.value, Value::Histogram(_))
            && s.metric == "portcullis_token_request_duration_seconds"));
    let hits = counter(&after, "portcullis_credential_cache_lookups_total", &[("result", "hit")]);
    assert!(hits >= 3.0, "{hits}");
    // The hashing queue saw the verifications; the snapshot followed the CLI's changes; this
    // very scrape holds a connection.
    assert!(counter(&after, "portcullis_password_hash_wait_seconds_count", &[]) >= 1.0);
    assert!(counter(&after, "portcullis_snapshot_catch_ups_total", &[]) >= 1.0);
    assert!(counter(&after, "portcullis_open_connections", &[]) >= 1.0);
    let signing_expiry = counter(&after, "portcullis_signing_key_expiry_timestamp_seconds", &[]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as f64;
    assert!(
        signing_expiry > now + 9.0 * 365.0 * 86400.0,
        "the key's certificate, ten years: {signing_expiry}"
    );
    for name in
        ["portcullis_password_hash_queue_depth", "portcullis_tls_certificate_expiry_timestamp_seconds"]
    {
        assert!(after.samples.iter().any(|sample| sample.metric == name), "no {name}");
    }
    // Nothing secret in there.
    let text = http::request(server.addr(), "GET", "/metrics", &[], b"").body;
    assert!(!text.contains("alice-password-1") && !text.contains(&refresh));
}

#[test]
fn metrics_listen_moves_them_to_their_own_address() {
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let server = Portcullis::start_with(&[("PORTCULLIS_METRICS__LISTEN", metrics_addr.as_str())]);
    assert!(server.log().contains(&format!("metrics on http://{metrics_addr}/metrics")), "{}", server.log());
    // Not on the clients' port any more...
    assert_eq!(http::request(server.addr(), "GET", "/metrics", &[], b"").status, 404);
    // ...but on their own, where nothing else is served.
    assert_eq!(server.token(&format!("service={SERVICE}"), None).status, 200);
    let scraped = scrape(&metrics_addr);
    assert!(token_requests(&scraped, "granted", "get", "anonymous") >= 1.0);
    assert_eq!(http::request(&metrics_addr, "GET", "/token", &[], b"").status, 404);
}
