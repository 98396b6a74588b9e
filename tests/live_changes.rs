//! Changes made with the CLI, in another process, while the server runs, apply to the very next
//! token request, although the server remembers verified logins and keeps roles in memory.
//!
//! Each check first makes the server answer from its cache (a repeated login), then changes the
//! database with the real `portcullis` binary, then asks once more: a server that missed the
//! change would answer from memory and fail the check.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;

/// A `portcullis serve` on a free loopback port with its own data directory, stopped on drop.
struct Server {
    child: Child,
    address: String,
    /// Holds the database the CLI writes too; deleted after the server stops.
    data: tempfile::TempDir,
}

/// Settings shared by the server and the CLI: a reduced argon2id cost keeps the test fast in a
/// debug build (the code path is the same).
fn settings(data: &std::path::Path) -> Vec<(String, String)> {
    vec![
        ("PORTCULLIS_DATA_DIR".into(), data.display().to_string()),
        ("PORTCULLIS_PASSWORDS__MEMORY_KIB".into(), "1024".into()),
        ("PORTCULLIS_PASSWORDS__ITERATIONS".into(), "1".into()),
    ]
}

impl Server {
    fn start(extra: &[(&str, &str)]) -> Server {
        let data = tempfile::tempdir().expect("a data dir");
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command
            .arg("serve")
            .envs(settings(data.path()))
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .env("PORTCULLIS_LISTEN", "127.0.0.1:0")
            .env("PORTCULLIS_ADMIN_PASSWORD", "admin-password")
            .env("PORTCULLIS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("start portcullis serve");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("portcullis listening on http://") {
                    let _ = sender.send(address.trim().to_string());
                }
            }
        });
        let address = receiver.recv_timeout(Duration::from_secs(60)).expect("the server listens within 60 s");
        Server { child, address, data }
    }

    /// Runs `portcullis ARGS` on the server's database and asserts success.
    fn cli(&self, args: &[&str], stdin: Option<&str>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .envs(settings(self.data.path()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the portcullis CLI");
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).expect("write to the CLI");
        }
        let output = child.wait_with_output().expect("wait for the CLI");
        assert!(
            output.status.success(),
            "portcullis {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `GET /token` for one repository scope; returns the status and the granted actions.
    fn token(&self, scope: &str, credentials: Option<(&str, &str)>) -> (u16, Vec<String>) {
        let mut request =
            format!("GET /token?service=registry&scope={scope} HTTP/1.1\r\nHost: {}\r\n", self.address);
        if let Some((user, password)) = credentials {
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            request.push_str(&format!("Authorization: Basic {encoded}\r\n"));
        }
        request.push_str("Connection: close\r\n\r\n");
        let mut stream = TcpStream::connect(&self.address).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        stream.write_all(request.as_bytes()).expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read the answer");
        let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
        if status != 200 {
            return (status, Vec::new());
        }
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
        let token = json["token"].as_str().expect("a token");
        let payload = token.split('.').nth(1).expect("a JWT");
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url"),
        )
        .expect("JSON claims");
        let actions = claims["access"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|entry| entry["actions"].as_array().cloned().unwrap_or_default())
            .filter_map(|action| action.as_str().map(str::to_string))
            .collect();
        (status, actions)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PUSH: &str = "repository:team/app:pull,push";
const CATALOG: &str = "registry:catalog:*";

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Logs in twice (the second time from the cache) and returns the second answer.
fn twice(server: &Server, scope: &str, credentials: (&str, &str)) -> (u16, Vec<String>) {
    let first = server.token(scope, Some(credentials));
    let second = server.token(scope, Some(credentials));
    assert_eq!(first, second, "a remembered login answers as a verified one");
    second
}

#[test]
fn cli_changes_apply_to_the_very_next_token() {
    let server = Server::start(&[]);
    let alice = ("alice", "first-password");
    server.cli(&["user", "add", "alice", "--password-stdin"], Some("first-password\n"));
    server.cli(&["project", "create", "team"], None);
    server.cli(&["member", "add", "team", "alice", "--role", "developer"], None);
    assert_eq!(twice(&server, PUSH, alice), (200, strings(&["pull", "push"])));

    // A wrong password right after the right one is refused, not served from the cache.
    assert_eq!(server.token(PUSH, Some(("alice", "wrong-password"))).0, 401);
    assert_eq!(server.token(PUSH, Some(("alice", "first-passwordx"))).0, 401);

    server.cli(&["member", "add", "team", "alice", "--role", "guest"], None);
    assert_eq!(server.token(PUSH, Some(alice)), (200, strings(&["pull"])), "role change");

    server.cli(&["member", "remove", "team", "alice"], None);
    assert_eq!(server.token(PUSH, Some(alice)), (200, vec![]), "membership removal");

    server.cli(&["project", "visibility", "team", "public"], None);
    assert_eq!(server.token(PUSH, None), (200, strings(&["pull"])), "project made public");
    server.cli(&["project", "visibility", "team", "private"], None);
    assert_eq!(server.token(PUSH, None), (200, vec![]), "project made private");

    assert_eq!(twice(&server, CATALOG, alice), (200, vec![]));
    server.cli(&["user", "admin", "alice"], None);
    assert_eq!(server.token(CATALOG, Some(alice)), (200, strings(&["*"])), "made an admin");
    server.cli(&["user", "admin", "alice", "--revoke"], None);
    assert_eq!(server.token(CATALOG, Some(alice)), (200, vec![]), "admin revoked");

    server.cli(&["user", "passwd", "alice", "--password-stdin"], Some("second-password\n"));
    assert_eq!(server.token(PUSH, Some(alice)).0, 401, "the old password stops at once");
    let alice = ("alice", "second-password");
    assert_eq!(twice(&server, PUSH, alice).0, 200);

    server.cli(&["user", "disable", "alice"], None);
    assert_eq!(server.token(PUSH, Some(alice)).0, 401, "disabled");
    server.cli(&["user", "enable", "alice"], None);
    assert_eq!(twice(&server, PUSH, alice).0, 200, "enabled again");

    server.cli(&["user", "remove", "alice"], None);
    assert_eq!(server.token(PUSH, Some(alice)).0, 401, "removed");

    // A new account of the same name with the same password is a new login, with its own roles.
    server.cli(&["user", "add", "alice", "--password-stdin"], Some("second-password\n"));
    assert_eq!(server.token(PUSH, Some(alice)), (200, vec![]), "recreated, without the old memberships");
}

#[test]
fn a_disabled_cache_still_applies_changes() {
    let server = Server::start(&[("PORTCULLIS_CACHE__CREDENTIAL_LIFETIME", "0")]);
    server.cli(&["user", "add", "bob", "--password-stdin"], Some("bob-password\n"));
    server.cli(&["project", "create", "team"], None);
    server.cli(&["member", "add", "team", "bob", "--role", "maintainer"], None);
    assert_eq!(twice(&server, PUSH, ("bob", "bob-password")), (200, strings(&["pull", "push"])));
    server.cli(&["member", "remove", "team", "bob"], None);
    assert_eq!(server.token(PUSH, Some(("bob", "bob-password"))), (200, vec![]));
}
