//! The token endpoint over HTTP, against the real `portcullis` binary: the protocol rules of
//! `GET /token`, Harbor's roles, and refusals of bad input. No registry here; `e2e_*` tests prove
//! that real registries and clients accept what these tests check.

use base64::Engine;

use crate::support::binary::{Portcullis, ADMIN, ISSUER, SERVICE};
use crate::support::http::basic;

const Q: &str = "service=registry.test";

/// A server with projects `team` (private) and `open` (public) and one user per role in `team`.
fn server_with_roles() -> Portcullis {
    let server = Portcullis::start();
    server.create_project("team", false);
    server.create_project("open", true);
    for (user, role) in [
        ("padmin", "project_admin"),
        ("maint", "maintainer"),
        ("dev", "developer"),
        ("guest", "guest"),
        ("lguest", "limited_guest"),
    ] {
        server.add_user(user, &format!("{user}-pw"));
        server.add_member("team", user, role);
    }
    server.add_user("outsider", "outsider-pw");
    server
}

fn access_of(server: &Portcullis, user: Option<&str>, scope: &str) -> Vec<String> {
    let password = user.map(|u| if u == ADMIN.0 { ADMIN.1.to_string() } else { format!("{u}-pw") });
    let credentials = user.zip(password.as_deref());
    let response = server.token(&format!("{Q}&scope={scope}"), credentials);
    assert_eq!(response.status, 200, "{response:?}");
    response.access()
}

#[test]
fn docker_login_request_gets_a_well_formed_token() {
    let server = Portcullis::start();
    // Exactly what `docker login` sends: no scope, account and client_id hints, offline_token.
    let response =
        server.token(&format!("account=admin&client_id=docker&offline_token=true&{Q}"), Some(ADMIN));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("content-type"), Some("application/json"));
    let json = response.json();
    assert_eq!(json["token"], json["access_token"]);
    assert_eq!(json["expires_in"], 300);
    let issued_at = json["issued_at"].as_str().expect("issued_at");
    assert!(
        issued_at.len() == 20 && issued_at.ends_with('Z') && issued_at.as_bytes()[10] == b'T',
        "issued_at must be RFC 3339 UTC: {issued_at}"
    );
    let claims = response.claims();
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], SERVICE, "aud is a plain string");
    assert_eq!(claims["sub"], "admin");
    let (iat, exp, nbf) =
        (claims["iat"].as_u64().unwrap(), claims["exp"].as_u64().unwrap(), claims["nbf"].as_u64().unwrap());
    assert_eq!(exp - iat, 300);
    assert!(nbf < iat, "nbf lies before iat to absorb clock skew");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    assert_eq!(claims["access"], serde_json::json!([]));

    let header = response.token_header();
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["alg"], "ES256");
    let kid = header["kid"].as_str().expect("kid");
    assert_eq!(kid.split(':').count(), 12, "libtrust key ID: {kid}");
    assert_eq!(header["x5c"].as_array().map(Vec::len), Some(1));
    let show = server.cli(&["key", "show"], None);
    show.assert_success();
    assert!(show.stdout.contains(kid), "key show prints the same kid: {show}");
}

#[test]
fn bad_credentials_are_401_never_anonymous() {
    let server = server_with_roles();
    for (user, password) in [("dev", "wrong"), ("nobody", "x"), ("dev", "")] {
        let response = server.token(&format!("{Q}&scope=repository:open/app:pull"), Some((user, password)));
        assert_eq!(response.status, 401, "{user}:{password:?} -> {response:?}");
        assert_eq!(response.error_code(), "UNAUTHORIZED");
    }
    server.cli(&["user", "disable", "dev"], None).assert_success();
    let response = server.token(Q, Some(("dev", "dev-pw")));
    assert_eq!(response.status, 401, "disabled users are refused");
    server.cli(&["user", "enable", "dev"], None).assert_success();
    assert_eq!(server.token(Q, Some(("dev", "dev-pw"))).status, 200);
}

#[test]
fn harbor_roles_decide_push_pull_and_delete() {
    let server = server_with_roles();
    let all = "repository:team/app:pull,push,delete";
    assert_eq!(access_of(&server, Some("padmin"), all), ["repository:team/app:delete,pull,push"]);
    assert_eq!(access_of(&server, Some("maint"), all), ["repository:team/app:delete,pull,push"]);
    assert_eq!(access_of(&server, Some("dev"), all), ["repository:team/app:pull,push"]);
    assert_eq!(access_of(&server, Some("guest"), all), ["repository:team/app:pull"]);
    assert_eq!(access_of(&server, Some("lguest"), all), ["repository:team/app:pull"]);
    assert!(access_of(&server, Some("outsider"), all).is_empty(), "non-members get nothing");
    assert_eq!(access_of(&server, Some("admin"), all), ["repository:team/app:delete,pull,push"]);
    // Nested repositories belong to their first component's project.
    assert_eq!(
        access_of(&server, Some("dev"), "repository:team/app/web:push"),
        ["repository:team/app/web:push"]
    );
    // skopeo deletes with `*`: only roles that may do everything get it.
    assert_eq!(access_of(&server, Some("maint"), "repository:team/app:*"), ["repository:team/app:*"]);
    assert_eq!(access_of(&server, Some("dev"), "repository:team/app:*"), ["repository:team/app:pull,push"]);
}

#[test]
fn missing_projects_and_single_component_names_grant_nothing() {
    let server = server_with_roles();
    assert!(access_of(&server, Some("admin"), "repository:ghost/app:pull").is_empty());
    assert!(access_of(&server, Some("admin"), "repository:app:pull").is_empty());
}

#[test]
fn public_projects_allow_anonymous_pull_only() {
    let server = server_with_roles();
    assert_eq!(access_of(&server, None, "repository:open/app:pull,push"), ["repository:open/app:pull"]);
    assert!(access_of(&server, None, "repository:team/app:pull").is_empty(), "private stays private");
    assert_eq!(
        access_of(&server, Some("outsider"), "repository:open/app:pull"),
        ["repository:open/app:pull"]
    );
    server.cli(&["project", "visibility", "open", "private"], None).assert_success();
    assert!(access_of(&server, None, "repository:open/app:pull").is_empty(), "applies to the next token");
}

#[test]
fn only_system_admins_get_the_catalog() {
    let server = server_with_roles();
    assert_eq!(access_of(&server, Some("admin"), "registry:catalog:*"), ["registry:catalog:*"]);
    assert!(access_of(&server, Some("padmin"), "registry:catalog:*").is_empty());
    assert!(access_of(&server, None, "registry:catalog:*").is_empty());
    server.cli(&["user", "admin", "dev"], None).assert_success();
    assert_eq!(access_of(&server, Some("dev"), "registry:catalog:*"), ["registry:catalog:*"]);
}

#[test]
fn role_changes_apply_to_the_next_token() {
    let server = server_with_roles();
    assert_eq!(access_of(&server, Some("guest"), "repository:team/a:push"), Vec::<String>::new());
    server.add_member("team", "guest", "developer");
    assert_eq!(access_of(&server, Some("guest"), "repository:team/a:push"), ["repository:team/a:push"]);
    server.cli(&["member", "remove", "team", "guest"], None).assert_success();
    assert!(access_of(&server, Some("guest"), "repository:team/a:pull").is_empty());
}

#[test]
fn scopes_are_split_merged_and_classes_dropped() {
    let server = server_with_roles();
    // containerd: one value, space separated (`+` in a query), the same repository twice.
    let response = server.token(
        &format!(
            "{Q}&scope=repository:team/app:pull+repository:team/app:pull,push&scope=repository:open/x:pull"
        ),
        Some(("dev", "dev-pw")),
    );
    assert_eq!(response.access(), ["repository:team/app:pull,push", "repository:open/x:pull"]);
    // docker's cross-repository mount: two repositories in one request, partly granted.
    let response = server.token(
        &format!("{Q}&scope=repository:team/app:push,pull&scope=repository:other/src:pull"),
        Some(("dev", "dev-pw")),
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.access(), ["repository:team/app:pull,push"]);
    assert_eq!(
        access_of(&server, Some("dev"), "repository(plugin):team/app:pull"),
        ["repository:team/app:pull"]
    );
    // Names with a registry host and port parse (and belong to no project).
    let response =
        server.token(&format!("{Q}&scope=repository:localhost:5000/team/app:pull"), Some(("dev", "dev-pw")));
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.access().is_empty());
}

#[test]
fn token_lifetime_is_configurable_but_never_below_60_seconds() {
    let server = Portcullis::start_with(&[("PORTCULLIS_TOKEN__EXPIRES_IN", "10")]);
    let response = server.token(Q, Some(ADMIN));
    assert_eq!(response.json()["expires_in"], 60);
    let claims = response.claims();
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 60);
}

#[test]
fn rs256_keys_are_an_option() {
    let server = Portcullis::start_with(&[("PORTCULLIS_TOKEN__ALGORITHM", "RS256")]);
    let response = server.token(Q, Some(ADMIN));
    assert_eq!(response.status, 200);
    assert_eq!(response.token_header()["alg"], "RS256");
}

#[test]
fn bad_input_gets_4xx_registry_errors_and_the_server_keeps_serving() {
    let mut server = server_with_roles();
    let dev = Some(("dev", "dev-pw"));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("missing service", "scope=repository:team/a:pull".into(), 400, "UNSUPPORTED"),
        ("empty service", "service=&scope=repository:team/a:pull".into(), 400, "UNSUPPORTED"),
        ("unknown service", "service=other".into(), 400, "UNSUPPORTED"),
        ("conflicting services", format!("{Q}&service=other"), 400, "UNSUPPORTED"),
        ("no actions part", format!("{Q}&scope=repository:team"), 400, "UNSUPPORTED"),
        ("malformed type", format!("{Q}&scope=Blob:team/a:pull"), 400, "UNSUPPORTED"),
        ("upper-case name", format!("{Q}&scope=repository:Team/A:pull"), 400, "NAME_INVALID"),
        ("bad action", format!("{Q}&scope=repository:team/a:PULL"), 400, "UNSUPPORTED"),
        ("percent garbage", format!("{Q}&scope=%FF%FE"), 400, "UNSUPPORTED"),
        (
            "thousands of scopes",
            format!("{Q}{}", "&scope=repository:team/a:pull".repeat(260)),
            400,
            "UNSUPPORTED",
        ),
    ];
    for (what, query, status, code) in cases {
        let response = server.token(&query, dev);
        assert_eq!(response.status, status, "{what}: {response:?}");
        assert_eq!(response.error_code(), code, "{what}");
    }
    // A resource type Portcullis does not know grants nothing and is no error: the other scopes
    // of the same request are still served (the protocol lets new types appear).
    let response = server.token(&format!("{Q}&scope=blob:team/a:pull&scope=repository:team/a:pull"), dev);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.access(), ["repository:team/a:pull"], "{response:?}");

    let authorizations: Vec<(&str, String)> = vec![
        ("bad base64", "Basic !!!notbase64".into()),
        ("no colon", format!("Basic {}", &basic("devnocolon", "")[6..].replace("Og==", ""))),
        ("bearer instead of basic", "Bearer abc".into()),
    ];
    for (what, authorization) in authorizations {
        let response =
            server.request("GET", &format!("/token?{Q}"), &[("Authorization", authorization.as_str())], b"");
        assert!(matches!(response.status, 400 | 401), "{what}: {response:?}");
        assert!(response.json()["errors"][0]["code"].is_string(), "{what}: {response:?}");
    }

    // Non-UTF-8 bytes inside the decoded credentials and, sent raw, in the header itself.
    let non_utf8 = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(b"\xff\xfe:\xfd"));
    let response = server.request("GET", &format!("/token?{Q}"), &[("Authorization", &non_utf8)], b"");
    assert_eq!(response.status, 400, "{response:?}");
    let mut raw = format!("GET /token?{Q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic ")
        .into_bytes();
    raw.extend_from_slice(b"\xff\xfe\r\n\r\n");
    let response = server.send_raw(&raw);
    assert_eq!(response.status, 400, "{response:?}");

    // Oversized query and head, sent raw: the server may answer before it has read them.
    let query = format!("{Q}&x={}", "a".repeat(20_000));
    let authorization = basic("dev", "dev-pw");
    let head = format!(
        "GET /token?{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: {authorization}\r\n\r\n"
    );
    let response = server.send_raw(head.as_bytes());
    assert!(matches!(response.status, 414 | 431), "{response:?}");
    let big_header = format!("X-Filler: {}", "b".repeat(40_000));
    let head = format!("GET /token?{Q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{big_header}\r\n\r\n");
    let response = server.send_raw(head.as_bytes());
    assert_eq!(response.status, 431, "{response:?}");

    // Other paths and methods.
    assert_eq!(server.request("GET", "/nope", &[], b"").status, 404);
    assert_eq!(server.request("DELETE", "/token", &[], b"").status, 405);

    assert!(server.is_running(), "the server survived:\n{}", server.log());
    assert_eq!(server.token(Q, dev).status, 200, "and still serves");
    assert!(!server.log().contains("dev-pw"), "passwords never reach the log");
}
