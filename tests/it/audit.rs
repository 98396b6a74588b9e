//! The decision trail (`[audit] decisions`): one JSON line per token request with who, from
//! where, what was asked and granted and why not, refusal floods aggregated with complete
//! counts, never a secret, and the file reopened on SIGHUP for logrotate.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::binary::{Portcullis, SERVICE};
use crate::support::http::{basic, request};

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .collect()
}

/// Waits until `path` holds lines for which `done` is true.
fn wait_for(path: &Path, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = read_lines(path);
        if done(&lines) {
            return lines;
        }
        assert!(Instant::now() < deadline, "the trail never got there: {lines:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many requests the lines of `principal` with `outcome` stand for.
fn requests_of(lines: &[Value], principal: &str, outcome: &str) -> u64 {
    lines
        .iter()
        .filter(|line| line["principal"] == principal && line["outcome"] == outcome)
        .map(|line| line["count"].as_u64().unwrap_or(1))
        .sum()
}

#[test]
fn every_token_request_gets_a_line_and_refusal_floods_are_counted_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let trail = dir.path().join("decisions.jsonl");
    let server = Portcullis::start_with(&[
        ("PORTCULLIS_AUDIT__DECISIONS", "file"),
        ("PORTCULLIS_AUDIT__DECISIONS_FILE", trail.to_str().unwrap()),
        ("PORTCULLIS_AUDIT__AGGREGATE_SECS", "1"),
        ("PORTCULLIS_THROTTLE__CLIENT_FAILURES", "3"),
    ]);
    server.create_project("team", false);
    server.add_user("alice", "alice-password-1");
    server.add_member("team", "alice", "guest");
    let asking = |query: &str, user: &str, password: &str| {
        let authorization = basic(user, password);
        let headers = [("Authorization", authorization.as_str()), ("User-Agent", "docker/27.0 test")];
        request(server.addr(), "GET", &format!("/token?service={SERVICE}&{query}"), &headers, b"")
    };
    // A guest asking to push and pull gets pull only.
    let partial = asking("scope=repository:team/app:push,pull", "alice", "alice-password-1");
    assert_eq!(partial.status, 200);
    let id = partial.header("x-request-id").unwrap().to_string();
    // Ten wrong passwords from one address: refused, then throttled.
    for _ in 0..10 {
        let refused = asking("scope=repository:team/app:pull", "alice", "wrong-password");
        assert!(matches!(refused.status, 401 | 429), "{refused:?}");
    }

    // Within the interval the refusals are written once each per outcome, then counted.
    let lines = wait_for(&trail, |lines| {
        requests_of(lines, "alice", "unauthorized") + requests_of(lines, "alice", "throttled") == 10
    });
    let grant = lines.iter().find(|line| line["outcome"] == "partially_granted").expect("the grant's line");
    assert_eq!(grant["principal"], "alice");
    assert_eq!(grant["credential"], "password");
    assert_eq!(grant["client"], "127.0.0.1");
    assert_eq!(grant["user_agent"], "docker/27.0 test");
    assert_eq!(grant["service"], SERVICE);
    assert_eq!(grant["request_id"], id.as_str());
    assert_eq!(grant["requested"], serde_json::json!(["repository:team/app:pull,push"]));
    assert_eq!(grant["granted"], serde_json::json!(["repository:team/app:pull"]));
    assert_eq!(
        grant["refused"],
        serde_json::json!([{"scope": "repository:team/app:push", "reason": "guest may not push in team"}])
    );
    let refusal = lines.iter().find(|line| line["outcome"] == "unauthorized").expect("a refusal's line");
    assert_eq!(refusal["status"], 401);
    assert!(refusal["reason"].as_str().unwrap().contains("authentication failed"), "{refusal}");
    // Eleven requests, fewer lines: the flood was aggregated (no amplification)...
    assert!(lines.len() < 11 && lines.len() >= 3, "{lines:#?}");
    // ...and no line holds a secret.
    let text = std::fs::read_to_string(&trail).unwrap();
    assert!(!text.contains("alice-password-1") && !text.contains("wrong-password"));
    assert!(!text.contains("access_token") && !text.contains("eyJ"), "{text}");
    // Database file mode: the trail is for this user alone.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&trail).unwrap().permissions().mode() & 0o077, 0);

    // logrotate: the file is moved away, SIGHUP, and the next line goes to a new file.
    let rotated = dir.path().join("decisions.jsonl.1");
    std::fs::rename(&trail, &rotated).unwrap();
    server.hang_up();
    server.wait_for_log("decision trail (re)opened");
    assert_eq!(server.token(&format!("service={SERVICE}"), None).status, 200);
    let after = wait_for(&trail, |lines| lines.iter().any(|line| line["credential"] == "anonymous"));
    assert_eq!(after.len(), 1, "{after:#?}");
    assert!(!read_lines(&rotated).iter().any(|line| line["credential"] == "anonymous"));
}

#[test]
fn decisions_reach_a_syslog_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("log");
    // Where syslogd (rsyslog, journald's /dev/log) would listen: a datagram socket.
    let syslog = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    syslog.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let server = Portcullis::start_with(&[
        ("PORTCULLIS_AUDIT__DECISIONS", "syslog"),
        ("PORTCULLIS_AUDIT__SYSLOG_SOCKET", socket_path.to_str().unwrap()),
    ]);
    assert_eq!(server.token(&format!("service={SERVICE}"), None).status, 200);
    let mut datagram = [0u8; 4096];
    let length = syslog.recv(&mut datagram).expect("a syslog datagram");
    let message = String::from_utf8_lossy(&datagram[..length]).to_string();
    // Facility auth, severity info; the tag; the JSON line.
    let line = message.strip_prefix("<38>portcullis: ").unwrap_or_else(|| panic!("{message}"));
    let line: Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["credential"], "anonymous");
    assert_eq!(line["outcome"], "granted");
}

/// SIGHUP moves the trail to the sink the configuration file names now, and stops it at
/// `none`; what only a restart applies is named.
#[test]
fn sighup_moves_the_decision_trail_to_the_configured_sink() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first.jsonl"), dir.path().join("second.jsonl"));
    let file = dir.path().join("portcullis.toml");
    let audit = |decisions: &str, path: &Path, keep_days: u32| {
        let text = format!(
            "[audit]\ndecisions = {decisions:?}\ndecisions_file = {path:?}\nkeep_days = {keep_days}\n"
        );
        std::fs::write(&file, text).unwrap();
    };
    audit("file", &first, 90);
    let server = Portcullis::start_with(&[("PORTCULLIS_CONFIG", file.to_str().unwrap())]);
    let anonymous = || assert_eq!(server.token(&format!("service={SERVICE}"), None).status, 200);
    anonymous();
    wait_for(&first, |lines| lines.len() == 1);

    audit("file", &second, 30);
    server.hang_up();
    server.wait_for_log(&format!("sink=file {}", second.display()));
    anonymous();
    wait_for(&second, |lines| lines.len() == 1);
    assert_eq!(read_lines(&first).len(), 1, "the old file gets nothing more");
    // The reload names what needs a restart after the sink is open: wait for that line too.
    server.wait_for_log("apply at the next start");
    assert!(server.log().contains("audit.keep_days"), "named as needing a restart: {}", server.log());

    audit("none", &second, 30);
    server.hang_up();
    server.wait_for_log("sink=none");
    anonymous();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read_lines(&second).len(), 1, "nothing is written at none");
}
