//! The token endpoint over HTTP for every credential kind beside passwords: the OAuth2 POST
//! (password and refresh-token grants), refresh tokens from GET and POST, robots and personal
//! access tokens, and every refusal they can meet.
//!
//! The server runs in-process on an ephemeral loopback port with the real listener, routes and
//! database; requests go over TCP with a plain HTTP client, as a registry client's would.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use portcullis::authn::password::PasswordHasher;
use portcullis::authn::secret::{digest, generate, SecretKind};
use portcullis::authz::Role;
use portcullis::config::Config;
use portcullis::server::{self, App};
use portcullis::store::robots::NewRobot;
use portcullis::store::{access_tokens, projects, refresh_tokens, robots, users, Store};
use portcullis::token::keys::SigningKey;
use serde_json::Value;

const SERVICE: &str = "registry.test";

/// A running server and handles on its database.
struct Server {
    addr: SocketAddr,
    store: Arc<Store>,
    hasher: PasswordHasher,
    /// Dropping it stops the server.
    _shutdown: tokio::sync::oneshot::Sender<()>,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

/// An answer: status, headers as lower-case names, and the body parsed as JSON (`Null` if not).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    json: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The granted access of the answer's JWT, as `name:actions` strings.
    fn access(&self) -> Vec<String> {
        let token = self.json["access_token"].as_str().expect("an access_token");
        let payload = token.split('.').nth(1).expect("a JWT");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url");
        let claims: Value = serde_json::from_slice(&bytes).expect("JSON claims");
        let access = claims["access"].as_array().cloned().unwrap_or_default();
        access
            .iter()
            .map(|entry| {
                let actions: Vec<&str> =
                    entry["actions"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
                format!("{}:{}", entry["name"].as_str().unwrap(), actions.join(","))
            })
            .collect()
    }

    fn subject(&self) -> String {
        let token = self.json["access_token"].as_str().expect("an access_token");
        let payload = token.split('.').nth(1).expect("a JWT");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url");
        let claims: Value = serde_json::from_slice(&bytes).expect("JSON claims");
        claims["sub"].as_str().unwrap_or_default().to_string()
    }

    fn refresh_token(&self) -> Option<String> {
        self.json["refresh_token"].as_str().map(str::to_string)
    }

    /// Asserts a refusal with `status`, both the registry's error JSON and OAuth2's `error`.
    fn assert_refused(&self, status: u16, oauth_error: Option<&str>) {
        assert_eq!(self.status, status, "{}", self.json);
        assert!(self.json["errors"][0]["code"].is_string(), "registry error JSON: {}", self.json);
        assert!(self.json["errors"][0]["message"].is_string(), "registry error JSON: {}", self.json);
        assert_eq!(self.header("content-type"), Some("application/json"));
        if let Some(error) = oauth_error {
            assert_eq!(self.json["error"], error, "{}", self.json);
            assert!(self.json["error_description"].is_string());
        }
        assert!(self.json.get("access_token").is_none());
    }
}

impl Server {
    fn start() -> Server {
        Server::start_with(&[])
    }

    fn start_with(extra: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut environment: Vec<(String, String)> = vec![
            ("PORTCULLIS_DATA_DIR".into(), dir.path().display().to_string()),
            ("PORTCULLIS_TOKEN__SERVICES".into(), format!("{SERVICE},other.test")),
            ("PORTCULLIS_PASSWORDS__MEMORY_KIB".into(), "64".into()),
            ("PORTCULLIS_PASSWORDS__ITERATIONS".into(), "1".into()),
            ("PORTCULLIS_LIMITS__HEADER_READ_TIMEOUT".into(), "1".into()),
        ];
        environment.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::load(None, environment).expect("config");
        let store = Arc::new(Store::open(&config.database_path()).expect("store"));
        let key = SigningKey::load_or_create(
            &config.key_path(),
            &config.certificate_path(),
            config.token.algorithm,
        )
        .expect("signing key");
        let hasher = PasswordHasher::new(&config.passwords, 2).expect("hasher");
        let app = Arc::new(App::from_parts(config, store.clone(), key, hasher.clone()).expect("app"));
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().unwrap();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(server::serve(listener, app, async move {
            let _ = stopped.await;
        }));
        Server { addr, store, hasher, _shutdown: shutdown, _runtime: runtime, _dir: dir }
    }

    fn add_user(&self, name: &str, password: &str, admin: bool) {
        let hash = self.hasher.hash_blocking(password).unwrap();
        self.store.with_connection(|c| users::create(c, name, Some(&hash), admin)).unwrap();
    }

    fn add_project(&self, name: &str) {
        self.store.with_connection(|c| projects::create(c, name, false)).unwrap();
    }

    fn add_member(&self, project: &str, user: &str, role: Role) {
        self.store.with_connection(|c| projects::set_member(c, project, user, role)).unwrap();
    }

    /// A robot with a fresh secret; returns the secret.
    fn add_robot(&self, name: &str, project: Option<&str>, actions: &str, expires_at: Option<i64>) -> String {
        let secret = generate("");
        let robot = NewRobot {
            name,
            project,
            system_projects: None,
            actions,
            description: "",
            expires_at,
            secret_digest: &digest(SecretKind::Robot, &secret),
        };
        self.store.with_connection(|c| robots::create(c, &robot)).unwrap();
        secret
    }

    /// A personal access token; returns it.
    fn add_token(&self, user: &str, label: &str, actions: &str, projects: Option<&[String]>) -> String {
        let token = generate("pat_");
        let stored = digest(SecretKind::PersonalToken, &token);
        self.store
            .with_connection(|c| access_tokens::create(c, user, label, &stored, actions, projects, None))
            .unwrap();
        token
    }

    /// Sends one raw HTTP/1.1 request and reads the whole answer.
    fn send(&self, head: &str, body: &[u8]) -> Answer {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        parse_answer(&raw)
    }

    fn get(&self, query: &str, basic: Option<(&str, &str)>) -> Answer {
        let authorization = basic
            .map(|(user, password)| {
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                format!("Authorization: Basic {encoded}\r\n")
            })
            .unwrap_or_default();
        self.send(
            &format!("GET /token?{query} HTTP/1.1\r\nHost: x\r\n{authorization}Connection: close\r\n\r\n"),
            b"",
        )
    }

    /// POSTs `form` as containerd does: form content type with a charset.
    fn post(&self, form: &str) -> Answer {
        self.post_as("application/x-www-form-urlencoded; charset=utf-8", form.as_bytes())
    }

    fn post_as(&self, content_type: &str, body: &[u8]) -> Answer {
        let head = format!(
            "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        self.send(&head, body)
    }
}

fn parse_answer(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer { status, headers, json: serde_json::from_str(body).unwrap_or(Value::Null) }
}

/// alice is a developer of `team`; `other` exists but she is not a member.
fn team_server() -> Server {
    let server = Server::start();
    server.add_user("alice", "alice-pw", false);
    server.add_project("team");
    server.add_project("other");
    server.add_member("team", "alice", Role::Developer);
    server
}

fn password_form(user: &str, password: &str, scope: &str) -> String {
    format!("grant_type=password&client_id=containerd-client&username={user}&password={password}&service={SERVICE}&scope={scope}")
}

#[test]
fn password_grant_post_answers_like_containerd_needs() {
    let server = team_server();
    // containerd's push: both scopes in one field, `+` for the space, the repository twice.
    let answer = server.post(&password_form(
        "alice",
        "alice-pw",
        "repository:team/app:pull+repository:team/app:pull,push",
    ));
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert!(answer.json["access_token"].is_string(), "containerd requires access_token");
    assert_eq!(answer.json["access_token"], answer.json["token"]);
    assert_eq!(answer.json["scope"], "repository:team/app:pull,push", "scope is one string");
    assert_eq!(answer.json["expires_in"], 300);
    let issued_at = answer.json["issued_at"].as_str().unwrap();
    assert!(time::OffsetDateTime::parse(issued_at, &time::format_description::well_known::Rfc3339).is_ok());
    assert!(answer.refresh_token().is_none(), "no refresh token unless access_type=offline");
    assert_eq!(answer.access(), ["team/app:pull,push"]);
    assert_eq!(answer.subject(), "alice");
}

#[test]
fn password_grant_accepts_repeated_scope_fields_and_grants_the_intersection() {
    let server = team_server();
    let form = format!(
        "grant_type=password&username=alice&password=alice-pw&service={SERVICE}\
         &scope=repository%3Ateam%2Fapp%3Apull&scope=repository:other/app:pull&scope=repository:team/app:delete"
    );
    let answer = server.post(&form);
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.access(), ["team/app:pull"], "no delete for a developer, nothing on other");
    assert_eq!(answer.json["scope"], "repository:team/app:pull");
    let login =
        server.post(&format!("grant_type=password&username=alice&password=alice-pw&service={SERVICE}"));
    assert_eq!(login.status, 200);
    assert_eq!(login.json["scope"], "", "no scope asked, none granted, still a string");
}

#[test]
fn offline_password_grant_returns_a_reusable_refresh_token() {
    let server = team_server();
    let login = server.post(&format!("{}&access_type=offline", password_form("alice", "alice-pw", "")));
    assert_eq!(login.status, 200, "{}", login.json);
    let refresh = login.refresh_token().expect("a refresh token with access_type=offline");
    assert!(!refresh.contains("alice-pw"));
    for _ in 0..3 {
        let answer = server.post(&format!(
            "grant_type=refresh_token&refresh_token={refresh}&client_id=containerd-client&service={SERVICE}\
             &scope=repository:team/app:push,pull"
        ));
        assert_eq!(answer.status, 200, "{}", answer.json);
        assert_eq!(
            answer.refresh_token().as_deref(),
            Some(refresh.as_str()),
            "the same token, never rotated"
        );
        assert_eq!(answer.access(), ["team/app:pull,push"]);
        assert_eq!(answer.subject(), "alice");
    }
    let stored = server.store.with_connection(|c| refresh_tokens::list(c, Some("alice"))).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].client_id, "containerd-client");
}

#[test]
fn docker_login_gets_a_refresh_token_from_get_and_refreshes_by_post() {
    let server = team_server();
    // What docker login sends.
    let login = server.get(
        &format!("account=alice&client_id=docker&offline_token=true&service={SERVICE}"),
        Some(("alice", "alice-pw")),
    );
    assert_eq!(login.status, 200, "{}", login.json);
    assert!(login.json.get("scope").is_none(), "GET answers keep their old shape");
    let refresh = login.refresh_token().expect("offline_token=true gives a refresh token");
    let plain = server.get(&format!("service={SERVICE}"), Some(("alice", "alice-pw")));
    assert!(plain.refresh_token().is_none(), "only on request");
    let anonymous = server.get(&format!("offline_token=true&service={SERVICE}"), None);
    assert_eq!(anonymous.status, 200);
    assert!(anonymous.refresh_token().is_none(), "nobody to refresh for");
    // What docker push sends afterwards.
    let push = server.post(&format!(
        "client_id=docker&grant_type=refresh_token&refresh_token={refresh}&scope=repository%3Ateam%2Fapp%3Apush%2Cpull&service={SERVICE}"
    ));
    assert_eq!(push.status, 200, "{}", push.json);
    assert_eq!(push.access(), ["team/app:pull,push"]);
    assert_eq!(push.refresh_token(), Some(refresh));
}

#[test]
fn refresh_token_is_refused_for_another_service_or_when_unknown() {
    let server = team_server();
    let login = server.post(&format!("{}&access_type=offline", password_form("alice", "alice-pw", "")));
    let refresh = login.refresh_token().unwrap();
    let elsewhere =
        server.post(&format!("grant_type=refresh_token&refresh_token={refresh}&service=other.test"));
    elsewhere.assert_refused(401, Some("invalid_grant"));
    let unknown = server.post(&format!("grant_type=refresh_token&refresh_token=prt_nope&service={SERVICE}"));
    unknown.assert_refused(401, Some("invalid_grant"));
    assert!(unknown.header("www-authenticate").is_some());
}

#[test]
fn refresh_token_dies_on_revoke_password_change_disable_and_removal() {
    let server = team_server();
    let refresh_with = |user: &str, password: &str| {
        let login = server.post(&format!("{}&access_type=offline", password_form(user, password, "")));
        assert_eq!(login.status, 200, "{}", login.json);
        login.refresh_token().unwrap()
    };
    let redeem = |token: &str| {
        server.post(&format!(
            "grant_type=refresh_token&refresh_token={token}&service={SERVICE}&scope=repository:team/app:pull"
        ))
    };

    let token = refresh_with("alice", "alice-pw");
    let id = server.store.with_connection(|c| refresh_tokens::list(c, Some("alice"))).unwrap()[0].id;
    server.store.with_connection(|c| refresh_tokens::revoke(c, id)).unwrap();
    redeem(&token).assert_refused(401, Some("invalid_grant"));

    let token = refresh_with("alice", "alice-pw");
    let hash = server.hasher.hash_blocking("alice-new").unwrap();
    server.store.with_connection(|c| users::set_password_hash(c, "alice", &hash)).unwrap();
    redeem(&token).assert_refused(401, Some("invalid_grant"));

    let token = refresh_with("alice", "alice-new");
    server.store.with_connection(|c| users::set_disabled(c, "alice", true)).unwrap();
    redeem(&token).assert_refused(401, Some("invalid_grant"));
    server.store.with_connection(|c| users::set_disabled(c, "alice", false)).unwrap();
    redeem(&token).assert_refused(401, Some("invalid_grant"));

    let token = refresh_with("alice", "alice-new");
    assert_eq!(redeem(&token).status, 200);
    server.store.with_connection(|c| users::remove(c, "alice")).unwrap();
    redeem(&token).assert_refused(401, Some("invalid_grant"));
}

#[test]
fn refresh_grant_reads_admin_rights_afresh() {
    let server = team_server();
    server.add_user("root", "root-pw", true);
    let login = server.post(&format!("{}&access_type=offline", password_form("root", "root-pw", "")));
    let refresh = login.refresh_token().unwrap();
    let catalog = |server: &Server| {
        server.post(&format!(
            "grant_type=refresh_token&refresh_token={refresh}&service={SERVICE}&scope=registry:catalog:*"
        ))
    };
    assert_eq!(catalog(&server).access(), ["catalog:*"]);
    server.store.with_connection(|c| users::set_admin(c, "root", false)).unwrap();
    assert!(catalog(&server).access().is_empty(), "no longer an admin at the next refresh");
}

#[test]
fn wrong_credentials_are_401_in_both_error_formats() {
    let server = team_server();
    server.post(&password_form("alice", "wrong", "")).assert_refused(401, Some("invalid_grant"));
    server.post(&password_form("nobody", "wrong", "")).assert_refused(401, Some("invalid_grant"));
    server.post(&password_form("alice", "", "")).assert_refused(401, Some("invalid_grant"));
}

#[test]
fn malformed_oauth_requests_are_400_never_403_or_5xx() {
    let server = team_server();
    let cases = [
        (format!("grant_type=client_credentials&service={SERVICE}"), "unsupported_grant_type"),
        (format!("grant_type=authorization_code&code=x&service={SERVICE}"), "unsupported_grant_type"),
        (format!("username=alice&password=alice-pw&service={SERVICE}"), "invalid_request"),
        (format!("grant_type=password&password=alice-pw&service={SERVICE}"), "invalid_request"),
        (format!("grant_type=password&username=alice&service={SERVICE}"), "invalid_request"),
        (format!("grant_type=refresh_token&service={SERVICE}"), "invalid_request"),
        (format!("grant_type=refresh_token&refresh_token=&service={SERVICE}"), "invalid_request"),
        ("grant_type=password&username=alice&password=alice-pw".to_string(), "invalid_request"),
        (
            "grant_type=password&username=alice&password=alice-pw&service=elsewhere".to_string(),
            "invalid_request",
        ),
        (password_form("alice", "alice-pw", "repository:Team/App:pull"), "invalid_scope"),
        (password_form("alice", "alice-pw", "blob:team/app:pull"), "invalid_request"),
        (format!("{}&username=bob", password_form("alice", "alice-pw", "")), "invalid_request"),
        ("grant_type=password&grant_type=refresh_token".to_string(), "invalid_request"),
        (String::new(), "invalid_request"),
        ("%%%&&&==".to_string(), "invalid_request"),
    ];
    for (form, error) in cases {
        let answer = server.post(&form);
        answer.assert_refused(400, Some(error));
    }
    let json = server.post_as("application/json", br#"{"grant_type":"password"}"#);
    json.assert_refused(400, Some("invalid_request"));
}

#[test]
fn oversized_and_unfinished_bodies_are_refused_with_4xx() {
    let server = Server::start_with(&[("PORTCULLIS_LIMITS__MAX_BODY_BYTES", "1024")]);
    let big = format!("grant_type=password&username=a&password={}", "x".repeat(2000));
    server.post(&big).assert_refused(413, Some("invalid_request"));
    // A body that is larger than its Content-Length claims is cut at the claim by HTTP itself;
    // one sent without a length (chunked) is cut by the limit.
    let mut chunked = String::new();
    for _ in 0..4 {
        chunked.push_str(&format!("{:x}\r\n{}\r\n", 500, "y".repeat(500)));
    }
    chunked.push_str("0\r\n\r\n");
    let answer = server.send(
        "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        chunked.as_bytes(),
    );
    answer.assert_refused(413, None);
    // A client that promises a body and never sends it gets 408 within the read timeout.
    let started = std::time::Instant::now();
    let answer = server.send(
        "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n",
        b"grant_type=",
    );
    answer.assert_refused(408, None);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn other_methods_on_the_realm_are_405() {
    let server = team_server();
    let answer =
        server.send("PUT /token HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", b"");
    answer.assert_refused(405, None);
}

#[test]
fn robot_gets_exactly_its_list_and_never_the_catalog() {
    let server = team_server();
    let secret = server.add_robot("robot_team+ci", Some("team"), "pull,push", None);
    let robot = Some(("robot_team+ci", secret.as_str()));
    let push = server.get(&format!("service={SERVICE}&scope=repository:team/app:push,pull"), robot);
    assert_eq!(push.status, 200, "{}", push.json);
    assert_eq!(push.access(), ["team/app:pull,push"]);
    assert_eq!(push.subject(), "robot_team+ci");
    let star = server.get(&format!("service={SERVICE}&scope=repository:team/app:*"), robot);
    assert_eq!(star.access(), ["team/app:pull,push"], "no delete");
    let other = server.get(&format!("service={SERVICE}&scope=repository:other/app:pull"), robot);
    assert!(other.access().is_empty(), "another project");
    let catalog = server.get(&format!("service={SERVICE}&scope=registry:catalog:*"), robot);
    assert!(catalog.access().is_empty(), "robots never read the catalog");
    let offline = server.get(&format!("service={SERVICE}&offline_token=true"), robot);
    assert_eq!(offline.status, 200);
    assert!(offline.refresh_token().is_none(), "robots keep their secret, not a refresh token");
    // The same by the OAuth2 POST, as containerd would.
    let post = server.post(&password_form("robot_team%2Bci", &secret, "repository:team/app:pull"));
    assert_eq!(post.status, 200, "{}", post.json);
    assert_eq!(post.access(), ["team/app:pull"]);
}

#[test]
fn system_robot_reaches_every_project() {
    let server = team_server();
    let secret = server.add_robot("robot_mirror", None, "pull", None);
    let answer = server.get(
        &format!("service={SERVICE}&scope=repository:team/a:pull&scope=repository:other/b:pull,push"),
        Some(("robot_mirror", secret.as_str())),
    );
    assert_eq!(answer.access(), ["team/a:pull", "other/b:pull"]);
}

#[test]
fn wrong_disabled_or_expired_robot_is_401() {
    let server = team_server();
    let secret = server.add_robot("robot_team+ci", Some("team"), "pull", None);
    let query = format!("service={SERVICE}&scope=repository:team/app:pull");
    server.get(&query, Some(("robot_team+ci", "wrong"))).assert_refused(401, None);
    server.get(&query, Some(("robot_team+ci", &generate("")))).assert_refused(401, None);
    server.store.with_connection(|c| robots::set_disabled(c, "robot_team+ci", true)).unwrap();
    server.get(&query, Some(("robot_team+ci", &secret))).assert_refused(401, None);
    server.store.with_connection(|c| robots::set_disabled(c, "robot_team+ci", false)).unwrap();
    assert_eq!(server.get(&query, Some(("robot_team+ci", &secret))).status, 200);
    let expired =
        server.add_robot("robot_team+old", Some("team"), "pull", Some(portcullis::store::now() - 1));
    server.get(&query, Some(("robot_team+old", &expired))).assert_refused(401, None);
    let regenerated = generate("");
    let stored = digest(SecretKind::Robot, &regenerated);
    server.store.with_connection(|c| robots::set_secret_digest(c, "robot_team+ci", &stored)).unwrap();
    server.get(&query, Some(("robot_team+ci", &secret))).assert_refused(401, None);
    assert_eq!(server.get(&query, Some(("robot_team+ci", &regenerated))).status, 200);
}

#[test]
fn personal_token_is_capped_by_its_list_and_by_the_user() {
    let server = team_server();
    let pull_only = server.add_token("alice", "ci", "pull", None);
    let query = format!("service={SERVICE}&scope=repository:team/app:push,pull");
    let answer = server.get(&query, Some(("alice", &pull_only)));
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.access(), ["team/app:pull"], "the token's list caps a developer's push");
    assert_eq!(answer.subject(), "alice");
    let everything = server.add_token("alice", "laptop", "pull,push,delete", None);
    let star =
        server.get(&format!("service={SERVICE}&scope=repository:team/app:*"), Some(("alice", &everything)));
    assert_eq!(star.access(), ["team/app:pull,push"], "never more than the user: no delete");
    let elsewhere = server
        .get(&format!("service={SERVICE}&scope=repository:other/app:pull"), Some(("alice", &everything)));
    assert!(elsewhere.access().is_empty(), "nor on projects the user is not in");
    let listed = ["other".to_string()];
    let wrong_project = server.add_token("alice", "other-only", "pull,push", Some(&listed));
    assert!(server.get(&query, Some(("alice", &wrong_project))).access().is_empty());
    let offline = server.get(&format!("{query}&offline_token=true"), Some(("alice", &pull_only)));
    assert!(offline.refresh_token().is_none(), "a refresh token would escape the token's list");
    let post = server.post(&password_form("alice", &pull_only, "repository:team/app:pull,push"));
    assert_eq!(post.access(), ["team/app:pull"]);
    assert_eq!(server.get(&query, Some(("alice", "alice-pw"))).access(), ["team/app:pull,push"]);
}

#[test]
fn personal_token_refusals_are_401() {
    let server = team_server();
    server.add_user("bob", "bob-pw", false);
    let token = server.add_token("alice", "ci", "pull", None);
    let query = format!("service={SERVICE}&scope=repository:team/app:pull");
    server.get(&query, Some(("bob", &token))).assert_refused(401, None);
    server.get(&query, Some(("alice", &generate("pat_")))).assert_refused(401, None);
    server.store.with_connection(|c| access_tokens::revoke(c, "alice", "ci")).unwrap();
    server.get(&query, Some(("alice", &token))).assert_refused(401, None);
    let token = server.add_token("alice", "ci2", "pull", None);
    server.store.with_connection(|c| users::set_disabled(c, "alice", true)).unwrap();
    server.get(&query, Some(("alice", &token))).assert_refused(401, None);
    let expired = generate("pat_");
    let stored = digest(SecretKind::PersonalToken, &expired);
    let past = Some(portcullis::store::now() - 1);
    server
        .store
        .with_connection(|c| access_tokens::create(c, "bob", "old", &stored, "pull", None, past))
        .unwrap();
    server.get(&query, Some(("bob", &expired))).assert_refused(401, None);
}

#[test]
fn admin_personal_token_never_reads_the_catalog() {
    let server = team_server();
    server.add_user("root", "root-pw", true);
    let token = server.add_token("root", "ci", "pull,push,delete", None);
    let query = format!("service={SERVICE}&scope=registry:catalog:*&scope=repository:other/x:*");
    assert_eq!(server.get(&query, Some(("root", "root-pw"))).access(), ["catalog:*", "other/x:*"]);
    assert_eq!(server.get(&query, Some(("root", &token))).access(), ["other/x:*"]);
}

#[test]
fn directory_user_without_a_password_uses_a_personal_token() {
    let server = team_server();
    server
        .store
        .with_connection(|c| {
            users::create(c, "carol", None, false)?;
            c.execute("UPDATE users SET source = 'ldap' WHERE name = 'carol'", [])?;
            projects::set_member(c, "team", "carol", Role::Guest)
        })
        .unwrap();
    let token = server.add_token("carol", "ci", "pull", None);
    let answer =
        server.get(&format!("service={SERVICE}&scope=repository:team/app:pull"), Some(("carol", &token)));
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.access(), ["team/app:pull"]);
}
