//! End to end for the credentials beside passwords, against the Debian `docker-registry`:
//! docker's identity token (a refresh token) from `docker login`, containerd's OAuth2 POST, robot
//! accounts with skopeo, and personal access tokens with docker.

use std::time::Duration;

use serde_json::Value;

use crate::support::binary::Portcullis;
use crate::support::containerd::Containerd;
use crate::support::dockerd::Dockerd;
use crate::support::oci::make_oci_layout;
use crate::support::registry::Registry;
use crate::support::skopeo::Skopeo;

/// The `auths` entry docker wrote for `host` in its config.json.
fn docker_auth_entry(docker: &Dockerd, host: &str) -> Value {
    let text = docker.config_json().expect("docker login writes config.json");
    let config: Value = serde_json::from_str(&text).expect("config.json is JSON");
    config["auths"][host].clone()
}

/// The server's log without terminal colour codes, for matching `key=value` fields.
fn plain_log(portcullis: &Portcullis) -> String {
    let log = portcullis.log();
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip `ESC [ ... m`.
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

#[test]
fn docker_identity_token_refreshes_until_revoked_or_password_changes_and_pat_limits_docker() {
    let portcullis = Portcullis::start();
    portcullis.create_project("team", false);
    portcullis.add_user("alice", "alice-pw");
    portcullis.add_member("team", "alice", "developer");
    let registry = Registry::start(portcullis.token_auth());
    let docker = Dockerd::start();
    let host = registry.addr().to_string();
    let context = || format!("--- registry\n{}\n--- portcullis\n{}", registry.log(), portcullis.log());

    // docker login keeps the identity token, not the password.
    docker.login(&host, "alice", "alice-pw").assert_success();
    let entry = docker_auth_entry(&docker, &host);
    let identity_token =
        entry["identitytoken"].as_str().unwrap_or_else(|| panic!("no identitytoken: {entry}"));
    assert!(identity_token.starts_with("prt_"), "{entry}");
    let config = docker.config_json().unwrap();
    assert!(!config.contains("alice-pw"), "the password is not stored:\n{config}");
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode("alice:alice-pw");
    assert!(!config.contains(&encoded), "not even encoded:\n{config}");
    let tokens = portcullis.cli(&["token", "list", "--user", "alice"], None);
    assert!(tokens.assert_success().stdout.contains("docker"), "{tokens}");

    // Push and pull go through the refresh grant, the only credential docker has now.
    let image = format!("{host}/team/app:1");
    docker.import_image(&image);
    let push = docker.docker(&["push", &image], None);
    assert!(push.success(), "push with the identity token:\n{push}\n{}", context());
    docker.docker(&["rmi", &image], None).assert_success();
    let pull = docker.docker(&["pull", &image], None);
    assert!(pull.success(), "pull with the identity token:\n{pull}\n{}", context());
    let log = plain_log(&portcullis);
    assert!(log.contains("flow=RefreshGrant"), "the refresh grant was used:\n{log}");

    // Revoked: the identity token no longer gets tokens.
    portcullis.cli(&["token", "revoke", "--user", "alice"], None).assert_success();
    docker.docker(&["rmi", &image], None).assert_success();
    let refused = docker.docker(&["pull", &image], None);
    refused.assert_failure();
    assert!(refused.combined().contains("unauthorized"), "{refused}");

    // A new login works again, until the password changes.
    docker.login(&host, "alice", "alice-pw").assert_success();
    let pull = docker.docker(&["pull", &image], None);
    assert!(pull.success(), "pull after a new login:\n{pull}\n{}", context());
    portcullis.cli(&["user", "passwd", "alice", "--password-stdin"], Some("alice-new-pw\n")).assert_success();
    docker.docker(&["rmi", &image], None).assert_success();
    let refused = docker.docker(&["pull", &image], None);
    refused.assert_failure();
    assert!(refused.combined().contains("unauthorized"), "{refused}");

    // A personal access token with pull only: docker login with it, pull works, push is denied.
    let pat = portcullis.json(&[
        "pat",
        "create",
        "--user",
        "alice",
        "--name",
        "ci",
        "--project",
        "team",
        "--actions",
        "pull",
        "--json",
    ]);
    let pat = pat["token"].as_str().expect("a token").to_string();
    docker.login(&host, "alice", &pat).assert_success();
    assert!(docker_auth_entry(&docker, &host).get("identitytoken").is_none(), "no refresh token for a PAT");
    let pull = docker.docker(&["pull", &image], None);
    assert!(pull.success(), "pull with a pull-only token:\n{pull}\n{}", context());
    let retag = format!("{host}/team/app:2");
    docker.docker(&["tag", &image, &retag], None).assert_success();
    let push = docker.docker(&["push", &retag], None);
    push.assert_failure();
    assert!(push.combined().contains("denied"), "{push}");
    // The user may push with the password; the token still may not.
    portcullis.cli(&["pat", "revoke", "--user", "alice", "--name", "ci"], None).assert_success();
    docker.docker(&["rmi", &image], None).assert_success();
    docker.docker(&["pull", &image], None).assert_failure();
}

#[test]
fn containerd_pushes_and_pulls_through_the_oauth2_post() {
    let portcullis = Portcullis::start();
    portcullis.create_project("team", false);
    portcullis.add_user("alice", "alice-pw");
    portcullis.add_member("team", "alice", "developer");
    portcullis.add_user("guest", "guest-pw");
    portcullis.add_member("team", "guest", "guest");
    let registry = Registry::start(portcullis.token_auth());
    let containerd = Containerd::start();
    let host = registry.addr();
    let context = || format!("--- registry\n{}\n--- portcullis\n{}", registry.log(), portcullis.log());

    let image = format!("{host}/team/app:1");
    containerd.import_image(&image, "pushed by ctr");
    let push = containerd.push(&image, Some(("alice", "alice-pw")));
    assert!(push.success(), "ctr push:\n{push}\n{}", context());
    let log = plain_log(&portcullis);
    assert!(log.contains("flow=PasswordGrant") && !log.contains("flow=Get"), "containerd POSTs:\n{log}");
    containerd.remove_image(&image).assert_success();
    let pull = containerd.pull(&image, Some(("guest", "guest-pw")));
    assert!(pull.success(), "ctr pull as guest:\n{pull}\n{}", context());

    // A guest's push is refused by the registry; a wrong password never gets a token.
    let other = format!("{host}/team/app:guest");
    containerd.tag(&image, &other).assert_success();
    containerd.push(&other, Some(("guest", "guest-pw"))).assert_failure();
    containerd.push(&other, Some(("alice", "wrong"))).assert_failure();
    assert!(!portcullis.log().contains("panicked"));
    // Review likely defect 6: containerd's password grant asks for no refresh token, so pulls
    // and pushes write no rows (each would be a write every replica catches up on).
    let tokens = portcullis.json(&["refresh-token", "list", "--json"]);
    assert_eq!(tokens.as_array().map(Vec::len), Some(0), "containerd left refresh tokens: {tokens}");
}

#[test]
fn skopeo_robot_pushes_only_where_it_may_and_expired_or_disabled_robots_are_refused() {
    let portcullis = Portcullis::start();
    portcullis.create_project("team", false);
    portcullis.create_project("other", false);
    let registry = Registry::start(portcullis.token_auth());
    let skopeo = Skopeo::new();
    let host = registry.addr();
    let context = || format!("--- registry\n{}\n--- portcullis\n{}", registry.log(), portcullis.log());
    let layout = tempfile::tempdir().expect("a layout dir");
    make_oci_layout(layout.path(), "v1", "pushed by a robot");
    let source = format!("oci:{}:v1", layout.path().display());

    let created =
        portcullis.json(&["robot", "create", "ci", "--project", "team", "--actions", "pull,push", "--json"]);
    let name = created["name"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert_eq!(name, "robot_team+ci");
    let robot = Some((name.as_str(), secret.as_str()));

    let push = skopeo.copy(&source, &format!("docker://{host}/team/app:1"), robot);
    assert!(push.success(), "robot push to its project:\n{push}\n{}", context());
    let elsewhere = skopeo.copy(&source, &format!("docker://{host}/other/app:1"), robot);
    elsewhere.assert_failure();
    let inspect = skopeo.inspect(&format!("docker://{host}/team/app:1"), robot);
    assert!(inspect.success(), "robot pull:\n{inspect}\n{}", context());
    let tags = skopeo.run(&[
        "list-tags",
        "--tls-verify=false",
        "--creds",
        &format!("{name}:{secret}"),
        &format!("docker://{host}/team/app"),
    ]);
    assert!(tags.success(), "robot lists tags of its repository:\n{tags}");

    // Disabled: 401 at the token endpoint, so skopeo fails; enabled again, it works.
    portcullis.cli(&["robot", "disable", &name], None).assert_success();
    let refused = skopeo.inspect(&format!("docker://{host}/team/app:1"), robot);
    refused.assert_failure();
    assert_eq!(portcullis.token("service=registry.test", robot).status, 401);
    portcullis.cli(&["robot", "enable", &name], None).assert_success();
    skopeo.inspect(&format!("docker://{host}/team/app:1"), robot).assert_success();

    // Regenerated: the old secret stops, the new one works.
    let regenerated = portcullis.json(&["robot", "regenerate", &name, "--json"]);
    let new_secret = regenerated["secret"].as_str().unwrap().to_string();
    skopeo.inspect(&format!("docker://{host}/team/app:1"), robot).assert_failure();
    skopeo.inspect(&format!("docker://{host}/team/app:1"), Some((&name, &new_secret))).assert_success();

    // Expired: a robot made to last one second is refused after it.
    let short = portcullis.json(&[
        "robot",
        "create",
        "brief",
        "--project",
        "team",
        "--actions",
        "pull",
        "--expires",
        "1s",
        "--json",
    ]);
    std::thread::sleep(Duration::from_millis(2100));
    let short = (short["name"].as_str().unwrap(), short["secret"].as_str().unwrap());
    skopeo.inspect(&format!("docker://{host}/team/app:1"), Some(short)).assert_failure();
    assert_eq!(portcullis.token("service=registry.test", Some(short)).status, 401);

    // A personal access token with pull only, with skopeo: pull yes, push no.
    portcullis.add_user("carol", "carol-pw");
    portcullis.add_member("team", "carol", "maintainer");
    let pat =
        portcullis.json(&["pat", "create", "--user", "carol", "--name", "ci", "--actions", "pull", "--json"]);
    let pat = Some(("carol", pat["token"].as_str().unwrap()));
    skopeo.inspect(&format!("docker://{host}/team/app:1"), pat).assert_success();
    skopeo.copy(&source, &format!("docker://{host}/team/app:pat"), pat).assert_failure();
    skopeo
        .copy(&source, &format!("docker://{host}/team/app:pw"), Some(("carol", "carol-pw")))
        .assert_success();
}
