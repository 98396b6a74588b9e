//! The token endpoint over HTTP for every credential kind beside passwords: the OAuth2 POST
//! (password and refresh-token grants), refresh tokens from GET and POST, robots and personal
//! access tokens, and every refusal they can meet.
//!
//! Against the real binary on a loopback port. Users, projects, robots and tokens are made,
//! changed and revoked with its CLI while it runs, as an admin would; requests go over TCP with a
//! plain HTTP client, as a registry client's would.

use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::binary::{Portcullis, SERVICE};

/// A second service the servers here issue for: refresh tokens are bound to the one they came from.
const OTHER_SERVICE: &str = "other.test";

/// A server issuing for `SERVICE` and `OTHER_SERVICE`, with extra `settings`.
fn server_with(settings: &[(&str, &str)]) -> Portcullis {
    let services = format!("{SERVICE},{OTHER_SERVICE}");
    let mut all = vec![("PORTCULLIS_TOKEN__SERVICES", services.as_str())];
    all.extend_from_slice(settings);
    Portcullis::start_with(&all)
}

/// alice (password `alice-pw`) is a developer of `team`; `other` exists but she is not a member.
fn team_server() -> Portcullis {
    let server = server_with(&[]);
    server.add_user("alice", "alice-pw");
    server.create_project("team", false);
    server.create_project("other", false);
    server.add_member("team", "alice", "developer");
    server
}

fn password_form(user: &str, password: &str, scope: &str) -> String {
    format!("grant_type=password&client_id=containerd-client&username={user}&password={password}&service={SERVICE}&scope={scope}")
}

/// `user add NAME --admin`: a system admin.
fn add_admin(server: &Portcullis, name: &str, password: &str) {
    server
        .cli(&["user", "add", name, "--admin", "--password-stdin"], Some(&format!("{password}\n")))
        .assert_success();
}

/// A robot's secret or a personal access token, as the CLI printed it with `--json`.
struct Issued {
    /// Who logs in with it: the robot's full name, or the token's user.
    login: String,
    secret: String,
    /// Seconds since the epoch; `None` for never.
    expires_at: Option<u64>,
}

impl Issued {
    fn from_json(json: &Value, login: &str, secret: &str) -> Issued {
        let field =
            |name: &str| json[name].as_str().unwrap_or_else(|| panic!("no {name} in {json}")).to_string();
        Issued { login: field(login), secret: field(secret), expires_at: json["expires_at"].as_u64() }
    }

    /// Basic credentials for a token request.
    fn credentials(&self) -> Option<(&str, &str)> {
        Some((&self.login, &self.secret))
    }

    /// Waits until the second it expires at has begun: from then on the server refuses it.
    fn wait_until_expired(&self) {
        let at = Duration::from_secs(self.expires_at.expect("a credential that expires"));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970");
        if let Some(left) = at.checked_sub(now) {
            thread::sleep(left);
        }
    }
}

/// `robot create NAME ARGS... --json`.
fn create_robot(server: &Portcullis, name: &str, args: &[&str]) -> Issued {
    let json = server.json(&[&["robot", "create", name], args, &["--json"]].concat());
    Issued::from_json(&json, "name", "secret")
}

/// `pat create --user USER --name NAME ARGS... --json`.
fn create_token(server: &Portcullis, user: &str, name: &str, args: &[&str]) -> Issued {
    let json = server.json(&[&["pat", "create", "--user", user, "--name", name], args, &["--json"]].concat());
    Issued::from_json(&json, "user", "token")
}

/// A secret of the shape the server generates (`prefix` and 32 letters and digits) that it never
/// issued.
fn never_issued(prefix: &str) -> String {
    format!("{prefix}{}", &"N0tIssuedByAnyone".repeat(2)[..32])
}

#[test]
fn password_grant_post_answers_like_containerd_needs() {
    let server = team_server();
    // containerd's push: both scopes in one field, `+` for the space, the repository twice.
    let answer = server.post_form(&password_form(
        "alice",
        "alice-pw",
        "repository:team/app:pull+repository:team/app:pull,push",
    ));
    assert_eq!(answer.status, 200, "{answer:?}");
    let json = answer.json();
    assert!(json["access_token"].is_string(), "containerd requires access_token");
    assert_eq!(json["access_token"], json["token"]);
    assert_eq!(json["scope"], "repository:team/app:pull,push", "scope is one string");
    assert_eq!(json["expires_in"], 300);
    let issued_at = json["issued_at"].as_str().unwrap();
    assert!(time::OffsetDateTime::parse(issued_at, &time::format_description::well_known::Rfc3339).is_ok());
    assert!(answer.refresh_token().is_none(), "no refresh token unless access_type=offline");
    assert_eq!(answer.access(), ["repository:team/app:pull,push"]);
    assert_eq!(answer.subject(), "alice");
}

#[test]
fn password_grant_accepts_repeated_scope_fields_and_grants_the_intersection() {
    let server = team_server();
    let form = format!(
        "grant_type=password&username=alice&password=alice-pw&service={SERVICE}\
         &scope=repository%3Ateam%2Fapp%3Apull&scope=repository:other/app:pull&scope=repository:team/app:delete"
    );
    let answer = server.post_form(&form);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.access(), ["repository:team/app:pull"], "no delete for a developer, nothing on other");
    assert_eq!(answer.json()["scope"], "repository:team/app:pull");
    let login =
        server.post_form(&format!("grant_type=password&username=alice&password=alice-pw&service={SERVICE}"));
    assert_eq!(login.status, 200);
    assert_eq!(login.json()["scope"], "", "no scope asked, none granted, still a string");
}

#[test]
fn offline_password_grant_returns_a_reusable_refresh_token() {
    let server = team_server();
    let login = server.post_form(&format!("{}&access_type=offline", password_form("alice", "alice-pw", "")));
    assert_eq!(login.status, 200, "{login:?}");
    let refresh = login.refresh_token().expect("a refresh token with access_type=offline");
    assert!(!refresh.contains("alice-pw"));
    for _ in 0..3 {
        let answer = server.post_form(&format!(
            "grant_type=refresh_token&refresh_token={refresh}&client_id=containerd-client&service={SERVICE}\
             &scope=repository:team/app:push,pull"
        ));
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(
            answer.refresh_token().as_deref(),
            Some(refresh.as_str()),
            "the same token, never rotated"
        );
        assert_eq!(answer.access(), ["repository:team/app:pull,push"]);
        assert_eq!(answer.subject(), "alice");
    }
    let stored = server.json(&["token", "list", "--user", "alice", "--json"]);
    assert_eq!(stored.as_array().map(Vec::len), Some(1), "{stored}");
    assert_eq!(stored[0]["client_id"], "containerd-client");
}

#[test]
fn docker_login_gets_a_refresh_token_from_get_and_refreshes_by_post() {
    let server = team_server();
    // What docker login sends.
    let login = server.token(
        &format!("account=alice&client_id=docker&offline_token=true&service={SERVICE}"),
        Some(("alice", "alice-pw")),
    );
    assert_eq!(login.status, 200, "{login:?}");
    assert!(login.json().get("scope").is_none(), "GET answers keep their old shape");
    let refresh = login.refresh_token().expect("offline_token=true gives a refresh token");
    let plain = server.token(&format!("service={SERVICE}"), Some(("alice", "alice-pw")));
    assert!(plain.refresh_token().is_none(), "only on request");
    let anonymous = server.token(&format!("offline_token=true&service={SERVICE}"), None);
    assert_eq!(anonymous.status, 200);
    assert!(anonymous.refresh_token().is_none(), "nobody to refresh for");
    // What docker push sends afterwards.
    let push = server.post_form(&format!(
        "client_id=docker&grant_type=refresh_token&refresh_token={refresh}&scope=repository%3Ateam%2Fapp%3Apush%2Cpull&service={SERVICE}"
    ));
    assert_eq!(push.status, 200, "{push:?}");
    assert_eq!(push.access(), ["repository:team/app:pull,push"]);
    assert_eq!(push.refresh_token(), Some(refresh));
}

#[test]
fn refresh_token_is_refused_for_another_service_or_when_unknown() {
    let server = team_server();
    let login = server.post_form(&format!("{}&access_type=offline", password_form("alice", "alice-pw", "")));
    let refresh = login.refresh_token().unwrap();
    let elsewhere = server
        .post_form(&format!("grant_type=refresh_token&refresh_token={refresh}&service={OTHER_SERVICE}"));
    elsewhere.assert_refused(401, Some("invalid_grant"));
    let unknown =
        server.post_form(&format!("grant_type=refresh_token&refresh_token=prt_nope&service={SERVICE}"));
    unknown.assert_refused(401, Some("invalid_grant"));
    assert!(unknown.header("www-authenticate").is_some());
}

#[test]
fn refresh_token_dies_on_revoke_password_change_disable_and_removal() {
    let server = team_server();
    let refresh_with = |user: &str, password: &str| {
        let login = server.post_form(&format!("{}&access_type=offline", password_form(user, password, "")));
        assert_eq!(login.status, 200, "{login:?}");
        login.refresh_token().unwrap()
    };
    let redeem = |token: &str| {
        server.post_form(&format!(
            "grant_type=refresh_token&refresh_token={token}&service={SERVICE}&scope=repository:team/app:pull"
        ))
    };

    let token = refresh_with("alice", "alice-pw");
    let listed = server.json(&["token", "list", "--user", "alice", "--json"]);
    let id = listed[0]["id"].as_i64().unwrap_or_else(|| panic!("no token id in {listed}"));
    server.ok(&["token", "revoke", &id.to_string()]);
    redeem(&token).assert_refused(401, Some("invalid_grant"));

    let token = refresh_with("alice", "alice-pw");
    server.cli(&["user", "passwd", "alice", "--password-stdin"], Some("alice-new\n")).assert_success();
    redeem(&token).assert_refused(401, Some("invalid_grant"));

    let token = refresh_with("alice", "alice-new");
    server.ok(&["user", "disable", "alice"]);
    redeem(&token).assert_refused(401, Some("invalid_grant"));
    server.ok(&["user", "enable", "alice"]);
    redeem(&token).assert_refused(401, Some("invalid_grant"));

    let token = refresh_with("alice", "alice-new");
    assert_eq!(redeem(&token).status, 200);
    server.ok(&["user", "remove", "alice"]);
    redeem(&token).assert_refused(401, Some("invalid_grant"));
}

#[test]
fn refresh_grant_reads_admin_rights_afresh() {
    let server = team_server();
    add_admin(&server, "root", "root-pw");
    let login = server.post_form(&format!("{}&access_type=offline", password_form("root", "root-pw", "")));
    let refresh = login.refresh_token().unwrap();
    let catalog = |server: &Portcullis| {
        server.post_form(&format!(
            "grant_type=refresh_token&refresh_token={refresh}&service={SERVICE}&scope=registry:catalog:*"
        ))
    };
    assert_eq!(catalog(&server).access(), ["registry:catalog:*"]);
    server.ok(&["user", "admin", "root", "--revoke"]);
    assert!(catalog(&server).access().is_empty(), "no longer an admin at the next refresh");
}

#[test]
fn wrong_credentials_are_401_in_both_error_formats() {
    let server = team_server();
    server.post_form(&password_form("alice", "wrong", "")).assert_refused(401, Some("invalid_grant"));
    server.post_form(&password_form("nobody", "wrong", "")).assert_refused(401, Some("invalid_grant"));
    server.post_form(&password_form("alice", "", "")).assert_refused(401, Some("invalid_grant"));
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
        (password_form("alice", "alice-pw", "Blob:team/app:pull"), "invalid_request"),
        (format!("{}&username=bob", password_form("alice", "alice-pw", "")), "invalid_request"),
        ("grant_type=password&grant_type=refresh_token".to_string(), "invalid_request"),
        (String::new(), "invalid_request"),
        ("%%%&&&==".to_string(), "invalid_request"),
    ];
    for (form, error) in cases {
        let answer = server.post_form(&form);
        answer.assert_refused(400, Some(error));
    }
    let json = server.post("application/json", br#"{"grant_type":"password"}"#);
    json.assert_refused(400, Some("invalid_request"));
}

#[test]
fn oversized_and_unfinished_bodies_are_refused_with_4xx() {
    let server = server_with(&[
        ("PORTCULLIS_LIMITS__MAX_BODY_BYTES", "1024"),
        ("PORTCULLIS_LIMITS__HEADER_READ_TIMEOUT", "1"),
    ]);
    let big = format!("grant_type=password&username=a&password={}", "x".repeat(2000));
    server.post_form(&big).assert_refused(413, Some("invalid_request"));
    // A body that is larger than its Content-Length claims is cut at the claim by HTTP itself;
    // one sent without a length (chunked) is cut by the limit. The framing is the point here, so
    // both go out as raw bytes.
    let mut chunked = String::new();
    for _ in 0..4 {
        chunked.push_str(&format!("{:x}\r\n{}\r\n", 500, "y".repeat(500)));
    }
    chunked.push_str("0\r\n\r\n");
    let answer = server.send_raw(
        format!(
            "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunked}"
        )
        .as_bytes(),
    );
    answer.assert_refused(413, None);
    // A client that promises a body and never sends it gets 408 within the read timeout.
    let started = Instant::now();
    let answer = server.send_raw(
        b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 100\r\n\r\ngrant_type=",
    );
    answer.assert_refused(408, None);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn other_methods_on_the_realm_are_405() {
    let server = team_server();
    server.request("PUT", "/token", &[], b"").assert_refused(405, None);
}

#[test]
fn robot_gets_exactly_its_list_and_never_the_catalog() {
    let server = team_server();
    let ci = create_robot(&server, "ci", &["--project", "team", "--actions", "pull,push"]);
    assert_eq!(ci.login, "robot_team+ci");
    let robot = ci.credentials();
    let push = server.token(&format!("service={SERVICE}&scope=repository:team/app:push,pull"), robot);
    assert_eq!(push.status, 200, "{push:?}");
    assert_eq!(push.access(), ["repository:team/app:pull,push"]);
    assert_eq!(push.subject(), "robot_team+ci");
    let star = server.token(&format!("service={SERVICE}&scope=repository:team/app:*"), robot);
    assert_eq!(star.access(), ["repository:team/app:pull,push"], "no delete");
    let other = server.token(&format!("service={SERVICE}&scope=repository:other/app:pull"), robot);
    assert!(other.access().is_empty(), "another project");
    let catalog = server.token(&format!("service={SERVICE}&scope=registry:catalog:*"), robot);
    assert!(catalog.access().is_empty(), "robots never read the catalog");
    let offline = server.token(&format!("service={SERVICE}&offline_token=true"), robot);
    assert_eq!(offline.status, 200);
    assert!(offline.refresh_token().is_none(), "robots keep their secret, not a refresh token");
    // The same by the OAuth2 POST, as containerd would.
    let post = server.post_form(&password_form("robot_team%2Bci", &ci.secret, "repository:team/app:pull"));
    assert_eq!(post.status, 200, "{post:?}");
    assert_eq!(post.access(), ["repository:team/app:pull"]);
}

#[test]
fn system_robot_reaches_every_project() {
    let server = team_server();
    let mirror = create_robot(&server, "mirror", &["--system", "--actions", "pull"]);
    assert_eq!(mirror.login, "robot_mirror");
    let answer = server.token(
        &format!("service={SERVICE}&scope=repository:team/a:pull&scope=repository:other/b:pull,push"),
        mirror.credentials(),
    );
    assert_eq!(answer.access(), ["repository:team/a:pull", "repository:other/b:pull"]);
}

#[test]
fn wrong_disabled_or_expired_robot_is_401() {
    let server = team_server();
    // Made first, so that its one second has (nearly) run out by the time it is tried.
    let brief = create_robot(&server, "old", &["--project", "team", "--actions", "pull", "--expires", "1s"]);
    let ci = create_robot(&server, "ci", &["--project", "team", "--actions", "pull"]);
    let name = ci.login.as_str();
    let query = format!("service={SERVICE}&scope=repository:team/app:pull");
    server.token(&query, Some((name, "wrong"))).assert_refused(401, None);
    server.token(&query, Some((name, &never_issued("")))).assert_refused(401, None);
    server.ok(&["robot", "disable", name]);
    server.token(&query, ci.credentials()).assert_refused(401, None);
    server.ok(&["robot", "enable", name]);
    assert_eq!(server.token(&query, ci.credentials()).status, 200);
    brief.wait_until_expired();
    server.token(&query, brief.credentials()).assert_refused(401, None);
    let regenerated =
        Issued::from_json(&server.json(&["robot", "regenerate", name, "--json"]), "name", "secret");
    server.token(&query, ci.credentials()).assert_refused(401, None);
    assert_eq!(server.token(&query, regenerated.credentials()).status, 200);
}

#[test]
fn personal_token_is_capped_by_its_list_and_by_the_user() {
    let server = team_server();
    let pull_only = create_token(&server, "alice", "ci", &["--actions", "pull"]);
    let query = format!("service={SERVICE}&scope=repository:team/app:push,pull");
    let answer = server.token(&query, pull_only.credentials());
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.access(), ["repository:team/app:pull"], "the token's list caps a developer's push");
    assert_eq!(answer.subject(), "alice");
    let everything = create_token(&server, "alice", "laptop", &["--actions", "pull,push,delete"]);
    let star =
        server.token(&format!("service={SERVICE}&scope=repository:team/app:*"), everything.credentials());
    assert_eq!(star.access(), ["repository:team/app:pull,push"], "never more than the user: no delete");
    let elsewhere =
        server.token(&format!("service={SERVICE}&scope=repository:other/app:pull"), everything.credentials());
    assert!(elsewhere.access().is_empty(), "nor on projects the user is not in");
    let wrong_project =
        create_token(&server, "alice", "other-only", &["--actions", "pull,push", "--project", "other"]);
    assert!(server.token(&query, wrong_project.credentials()).access().is_empty());
    let offline = server.token(&format!("{query}&offline_token=true"), pull_only.credentials());
    assert!(offline.refresh_token().is_none(), "a refresh token would escape the token's list");
    let post = server.post_form(&password_form("alice", &pull_only.secret, "repository:team/app:pull,push"));
    assert_eq!(post.access(), ["repository:team/app:pull"]);
    assert_eq!(server.token(&query, Some(("alice", "alice-pw"))).access(), ["repository:team/app:pull,push"]);
}

#[test]
fn personal_token_refusals_are_401() {
    let server = team_server();
    server.add_user("bob", "bob-pw");
    // Made first, so that its one second has (nearly) run out by the time it is tried.
    let brief = create_token(&server, "bob", "old", &["--actions", "pull", "--expires", "1s"]);
    let ci = create_token(&server, "alice", "ci", &["--actions", "pull"]);
    let query = format!("service={SERVICE}&scope=repository:team/app:pull");
    server.token(&query, Some(("bob", &ci.secret))).assert_refused(401, None);
    server.token(&query, Some(("alice", &never_issued("pat_")))).assert_refused(401, None);
    server.ok(&["pat", "revoke", "--user", "alice", "--name", "ci"]);
    server.token(&query, ci.credentials()).assert_refused(401, None);
    let ci2 = create_token(&server, "alice", "ci2", &["--actions", "pull"]);
    server.ok(&["user", "disable", "alice"]);
    server.token(&query, ci2.credentials()).assert_refused(401, None);
    brief.wait_until_expired();
    server.token(&query, brief.credentials()).assert_refused(401, None);
}

#[test]
fn admin_personal_token_never_reads_the_catalog() {
    let server = team_server();
    add_admin(&server, "root", "root-pw");
    let token = create_token(&server, "root", "ci", &["--actions", "pull,push,delete"]);
    let query = format!("service={SERVICE}&scope=registry:catalog:*&scope=repository:other/x:*");
    assert_eq!(
        server.token(&query, Some(("root", "root-pw"))).access(),
        ["registry:catalog:*", "repository:other/x:*"]
    );
    assert_eq!(server.token(&query, token.credentials()).access(), ["repository:other/x:*"]);
}

#[test]
fn directory_user_without_a_password_uses_a_personal_token() {
    let server = team_server();
    server.ok(&["user", "add", "carol", "--ldap"]);
    server.add_member("team", "carol", "guest");
    let token = create_token(&server, "carol", "ci", &["--actions", "pull"]);
    let answer =
        server.token(&format!("service={SERVICE}&scope=repository:team/app:pull"), token.credentials());
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.access(), ["repository:team/app:pull"]);
}

#[test]
fn robots_and_personal_tokens_show_when_they_were_last_used() {
    let server = team_server();
    let robot = server.json(&["robot", "create", "ci", "--project", "team", "--json"]);
    let (robot_name, secret) = (robot["name"].as_str().unwrap(), robot["secret"].as_str().unwrap());
    assert!(secret.starts_with("rbt_"), "a recognisable robot secret: {secret}");
    let token = server.json(&["pat", "create", "--user", "alice", "--name", "laptop", "--json"]);
    let token = token["token"].as_str().unwrap().to_string();
    let unused = server.json(&["robot", "list", "--json"]);
    assert!(unused[0]["last_used_at"].is_null(), "{unused}");
    assert_eq!(server.token(&format!("service={SERVICE}"), Some((robot_name, secret))).status, 200);
    assert_eq!(server.token(&format!("service={SERVICE}"), Some(("alice", &token))).status, 200);
    let robots = server.json(&["robot", "list", "--json"]);
    assert!(robots[0]["last_used_at"].is_i64(), "{robots}");
    let tokens = server.json(&["pat", "list", "--json"]);
    assert!(tokens[0]["last_used_at"].is_i64(), "{tokens}");
}
