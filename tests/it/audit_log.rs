//! The stored audit trail (`portcullis audit list`): every CLI change with the OS user who made
//! it, the real registry's notifications of a push, a pull and a delete, `POST /events`
//! refusing what it must, and `[audit] keep_days`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::binary::{Admin, Portcullis};
use crate::support::oci::make_oci_layout;
use crate::support::process::{require_binary, run};
use crate::support::registry::Registry;
use crate::support::skopeo::Skopeo;

const SECRET: &str = "events-secret-for-the-test-registry";

/// The OS account this test runs as, as `id -un` names it.
fn os_user() -> String {
    let output = run(Command::new("id").arg("-un"), None);
    output.assert_success();
    output.stdout.trim().to_string()
}

fn entries(admin: &Admin, filters: &[&str]) -> Vec<Value> {
    let args = [&["audit", "list", "--json"], filters].concat();
    admin.json(&args).as_array().cloned().expect("a JSON list")
}

/// `(action, target)` of each entry, the newest first.
fn actions(entries: &[Value]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|e| (e["action"].as_str().unwrap().into(), e["target"].as_str().unwrap().into()))
        .collect()
}

#[test]
fn every_cli_change_is_recorded_with_who_and_listed_by_filter() {
    let admin = Admin::new();
    admin.create_project("team", false);
    admin.add_user("alice", "alice-pw");
    admin.add_member("team", "alice", "developer");
    let robot =
        admin.json(&["robot", "create", "ci", "--project", "team", "--actions", "pull,push", "--json"]);
    let pat =
        admin.json(&["pat", "create", "--user", "alice", "--name", "laptop", "--project", "team", "--json"]);
    admin.ok(&["user", "disable", "alice"]);
    admin.ok(&["refresh-token", "revoke", "--user", "alice"]);
    // Reads and failed commands change nothing and are not recorded.
    admin.ok(&["user", "list"]);
    admin.ok(&["member", "list", "team"]);
    admin.fails(&["member", "add", "nowhere", "alice", "--role", "guest"]);
    admin.fails(&["user", "add", "alice", "--ldap"]);

    let all = entries(&admin, &[]);
    let expected = [
        ("refresh_token.revoke", "user=alice"),
        ("user.disable", "alice"),
        ("pat.create", "alice laptop projects=team actions=pull,push,delete expires=30d"),
        ("robot.create", "robot_team+ci project=team actions=pull,push expires=30d"),
        ("member.add", "team alice role=developer"),
        ("user.add", "alice"),
        ("project.create", "team private"),
        ("user.add", "admin admin (first start)"),
    ];
    let expected: Vec<(String, String)> =
        expected.iter().map(|(a, t)| (a.to_string(), t.to_string())).collect();
    assert_eq!(actions(&all), expected, "{all:#?}");
    let who = os_user();
    for entry in &all {
        assert_eq!(entry["kind"], "change");
        assert_eq!(entry["actor"], who.as_str(), "the OS user: {entry}");
        assert!(entry["time"].as_i64().unwrap() > 1_700_000_000, "{entry}");
    }
    // The secrets printed once are nowhere in the trail.
    let trail = admin.ok(&["audit", "list", "--json"]);
    for secret in [robot["secret"].as_str().unwrap(), pat["token"].as_str().unwrap()] {
        assert!(secret.len() > 20 && !trail.contains(secret), "a secret in the trail: {secret}\n{trail}");
    }

    // Filters: about or by a user, one project, a kind, a window, a limit.
    let about_alice = actions(&entries(&admin, &["--user", "ALICE"]));
    assert_eq!(about_alice.len(), 5, "{about_alice:?}");
    assert!(about_alice.iter().all(|(action, _)| !action.starts_with("project") && action != "robot.create"));
    let by_me = entries(&admin, &["--user", &who]);
    assert_eq!(by_me.len(), all.len());
    let team: Vec<String> =
        actions(&entries(&admin, &["--project", "team"])).into_iter().map(|(a, _)| a).collect();
    assert_eq!(team, ["robot.create", "member.add", "project.create"]);
    assert!(entries(&admin, &["--kind", "event"]).is_empty());
    assert_eq!(entries(&admin, &["--kind", "change", "--since", "1h", "--limit", "2"]).len(), 2);
    let table = admin.ok(&["audit", "list", "--project", "team"]);
    assert!(
        table.starts_with("TIME")
            && table.contains("member.add")
            && table.contains("team alice role=developer"),
        "{table}"
    );
    assert!(admin.fails(&["audit", "list", "--since", "yesterday"]).contains("--since"));
    assert!(admin.fails(&["audit", "list", "--kind", "all"]).contains("change"));

    // Under sudo, root and the account that ran sudo, when SUDO_UID and SUDO_USER agree.
    if who == "root" {
        let sudo = [("SUDO_UID", "65534"), ("SUDO_USER", "nobody")];
        admin.cli_with(&sudo, &["project", "create", "sudoers"], None).assert_success();
        assert_eq!(entries(&admin, &["--limit", "1"])[0]["actor"], "root (sudo: nobody)");
        assert_eq!(actions(&entries(&admin, &["--user", "nobody"]))[0].0, "project.create");
        let forged = [("SUDO_UID", "65534"), ("SUDO_USER", "carol\u{1b}[2J")];
        admin.cli_with(&forged, &["project", "create", "forged"], None).assert_success();
        assert_eq!(
            entries(&admin, &["--limit", "1"])[0]["actor"],
            "root",
            "names that disagree are not taken"
        );
    }
}

/// Waits until `audit list --kind event` holds `count` events, at most 20 s (the registry sends
/// its events from a queue, a moment after answering the client).
fn wait_for_events(admin: &Admin, count: usize, context: impl Fn() -> String) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = entries(admin, &["--kind", "event"]);
        if events.len() >= count {
            return events;
        }
        assert!(Instant::now() < deadline, "only {} events: {events:#?}\n{}", events.len(), context());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_registry_reports_a_push_pull_and_delete_with_their_actors() {
    let portcullis = Portcullis::start_with(&[("PORTCULLIS_AUDIT__EVENTS_SECRET", SECRET)]);
    portcullis.create_project("team", false);
    for (user, role) in [("dev", "developer"), ("maint", "maintainer")] {
        portcullis.add_user(user, &format!("{user}-pw"));
        portcullis.add_member("team", user, role);
    }
    // The registry runs `examples/registry-config.yml` as shipped, its addresses, paths and
    // secret replaced: the example's notifications block is what is proven.
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/registry-config.yml"))
            .expect("examples/registry-config.yml");
    let auth = portcullis.token_auth();
    let events_url = format!("http://{}/events", portcullis.addr());
    let registry = Registry::start_configured(|addr, data| {
        let replacements = [
            ("addr: 0.0.0.0:5000", format!("addr: {addr}")),
            ("rootdirectory: /var/lib/registry", format!("rootdirectory: {}", data.display())),
            ("realm: http://localhost:5001/token", format!("realm: {}", auth.realm)),
            ("service: registry", format!("service: {}", auth.service)),
            ("issuer: portcullis", format!("issuer: {}", auth.issuer)),
            (
                "rootcertbundle: /certs/token.pem",
                format!("rootcertbundle: {}", auth.rootcertbundle.display()),
            ),
            ("url: http://localhost:5001/events", format!("url: {events_url}")),
            ("CHANGE-ME-to-the-events_secret", SECRET.to_string()),
        ];
        replacements.iter().fold(example.clone(), |config, (from, to)| {
            assert!(config.contains(from), "examples/registry-config.yml has no {from:?}");
            config.replace(from, to)
        })
    });
    let context =
        || format!("--- registry log\n{}\n--- portcullis log\n{}", registry.log(), portcullis.log());
    let skopeo = Skopeo::new();
    let layout = tempfile::tempdir().unwrap();
    make_oci_layout(layout.path(), "latest", "audited image");
    let image = format!("docker://{}/team/app:v1", registry.addr());

    let pushed =
        skopeo.copy(&format!("oci:{}:latest", layout.path().display()), &image, Some(("dev", "dev-pw")));
    assert!(pushed.success(), "push:\n{pushed}\n{}", context());
    let push = wait_for_events(&portcullis, 1, context).remove(0);
    let pulled = tempfile::tempdir().unwrap();
    let copy = format!("oci:{}:copy", pulled.path().display());
    skopeo.copy(&image, &copy, Some(("dev", "dev-pw"))).assert_success();
    let pull = wait_for_events(&portcullis, 2, context).remove(0);
    let deleted = skopeo.delete(&image, Some(("maint", "maint-pw")));
    assert!(deleted.success(), "delete:\n{deleted}\n{}", context());
    // skopeo reads the manifest by tag (a pull), then deletes it by digest; registry 2.8 reports
    // the manifest's deletion and its tag's.
    let events = wait_for_events(&portcullis, 5, context);
    let of = |action: &str, actor: &str| -> Vec<&Value> {
        events.iter().filter(|e| e["action"] == action && e["actor"] == actor).collect()
    };
    let deletes = of("delete", "maint");
    assert_eq!((of("push", "dev").len(), of("pull", "dev").len(), deletes.len()), (1, 1, 2), "{events:#?}");
    assert_eq!(events.len(), 5, "only manifest events, no blob events: {events:#?}");
    let manifest_delete = deletes.iter().find(|e| e["digest"].is_string()).expect("the manifest's deletion");
    let tag_delete = deletes.iter().find(|e| e["tag"] == "v1").expect("the tag's deletion");

    let digest = push["digest"].as_str().expect("the manifest's digest").to_string();
    assert!(digest.starts_with("sha256:"), "{push}");
    for (event, action, actor) in
        [(&push, "push", "dev"), (&pull, "pull", "dev"), (manifest_delete, "delete", "maint")]
    {
        assert_eq!(event["kind"], "event", "{event}");
        assert_eq!(event["action"], action, "{event}");
        assert_eq!(event["actor"], actor, "the token's sub: {event}");
        assert_eq!(event["digest"], digest.as_str(), "{event}");
    }
    for event in &events {
        assert_eq!(event["target"], "team/app", "{event}");
        assert_eq!(event["project"], "team", "{event}");
        assert_eq!(event["address"], "127.0.0.1", "{event}");
        assert!(event["event_id"].as_str().is_some_and(|id| !id.is_empty()), "{event}");
    }
    assert_eq!(
        (push["tag"].as_str(), pull["tag"].as_str(), tag_delete["target"].as_str()),
        (Some("v1"), Some("v1"), Some("team/app"))
    );
    assert!(push["user_agent"].as_str().unwrap_or("").contains("skopeo"), "{push}");

    let by_dev = actions(&entries(&portcullis, &["--user", "dev", "--kind", "event"]));
    assert_eq!(
        by_dev,
        [("pull".to_string(), "team/app".to_string()), ("push".to_string(), "team/app".to_string())]
    );
    let table = portcullis.ok(&["audit", "list", "--kind", "event"]);
    assert!(table.contains(&format!("team/app:v1@{digest}")), "{table}");
    let metrics = portcullis.request("GET", "/metrics", &[], b"").body;
    let stored =
        metrics.lines().find(|line| line.starts_with("portcullis_registry_events_total{result=\"stored\"}"));
    assert_eq!(stored.and_then(|line| line.split_whitespace().last()), Some("5"), "{metrics}");
    let skipped =
        metrics.lines().find(|line| line.starts_with("portcullis_registry_events_total{result=\"skipped\"}"));
    let skipped: u64 = skipped.and_then(|line| line.split_whitespace().last()?.parse().ok()).unwrap_or(0);
    assert!(skipped >= 2, "the layer and config blobs pushed and pulled: {metrics}");
}

#[test]
fn events_need_the_secret_and_a_well_formed_envelope() {
    // The secret in a file, as a mounted Secret: read again on SIGHUP.
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("events-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let portcullis =
        Portcullis::start_with(&[("PORTCULLIS_AUDIT__EVENTS_SECRET_FILE", secret_file.to_str().unwrap())]);
    let bearer = format!("Bearer {SECRET}");
    let media_type = "application/vnd.docker.distribution.events.v2+json";
    let body = br#"{"events":[{"id":"ev-1","timestamp":"2026-12-01T10:00:00Z","action":"push",
        "target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:ab",
        "repository":"team/app","tag":"v2"},"request":{"addr":"10.1.2.3:4567","useragent":"docker/27"},
        "actor":{"name":"alice"}}]}"#;
    let post = |headers: &[(&str, &str)], body: &[u8]| portcullis.request("POST", "/events", headers, body);

    for headers in [
        vec![("Content-Type", media_type)],
        vec![("Content-Type", media_type), ("Authorization", "Bearer not-the-secret")],
        vec![("Content-Type", media_type), ("Authorization", SECRET)],
    ] {
        let refused = post(&headers, body);
        assert_eq!(refused.status, 401, "{headers:?}: {refused:?}");
        assert_eq!(refused.json()["errors"][0]["code"], "UNAUTHORIZED");
        assert!(refused.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{refused:?}");
    }
    // Said once (not per batch), so that a registry with the wrong secret does not fail unseen.
    let warned = portcullis.log().matches("POST /events without the right secret").count();
    assert_eq!(warned, 1, "{}", portcullis.log());
    let refused = post(&[("Content-Type", "text/plain"), ("Authorization", &bearer)], body);
    assert_eq!(refused.status, 415, "{refused:?}");
    for bad in [&b"{not json"[..], br#"{"events":{}}"#] {
        let refused = post(&[("Content-Type", media_type), ("Authorization", &bearer)], bad);
        assert_eq!(refused.status, 400, "{refused:?}");
        assert_eq!(refused.json()["errors"][0]["code"], "UNSUPPORTED");
    }
    let huge = format!(
        "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: {media_type}\r\nAuthorization: {bearer}\r\n\
         Content-Length: 2097152\r\nConnection: close\r\n\r\n{{\"events\":["
    );
    assert_eq!(portcullis.send_raw(huge.as_bytes()).status, 413);
    assert_eq!(portcullis.request("GET", "/events", &[], b"").status, 405);
    assert!(entries(&portcullis, &[]).iter().all(|e| e["kind"] == "change"), "nothing refused was stored");

    // The registry redelivers a batch until it is answered: stored once. (The scheme's case is
    // free.)
    let lower = format!("bearer {SECRET}");
    for (stored, duplicates, authorization) in [(1, 0, &bearer), (0, 1, &lower)] {
        let accepted = post(&[("Content-Type", media_type), ("Authorization", authorization)], body);
        assert_eq!(accepted.status, 200, "{accepted:?}");
        assert_eq!(
            (accepted.json()["stored"].as_u64(), accepted.json()["duplicates"].as_u64()),
            (Some(stored), Some(duplicates))
        );
    }
    let events = entries(&portcullis, &["--kind", "event"]);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        (events[0]["actor"].as_str(), events[0]["address"].as_str()),
        (Some("alice"), Some("10.1.2.3"))
    );
    assert_eq!(events[0]["time"], 1_796_119_200);

    // An event the registry got wrong is skipped, not the batch (a refused batch would be sent
    // again forever); one dated far ahead is dated when received.
    let mixed = br#"{"events":[{"id":5},{"id":"ev-2","action":"delete","timestamp":"9999-01-01T00:00:00Z",
        "target":{"repository":"team/app","digest":"sha256:ab"},"actor":{"name":"bob"}}]}"#;
    let accepted = post(&[("Content-Type", media_type), ("Authorization", &bearer)], mixed);
    assert_eq!((accepted.status, accepted.json()["invalid"].as_u64()), (200, Some(1)), "{accepted:?}");
    let newest = &entries(&portcullis, &["--kind", "event", "--limit", "1"])[0];
    assert_eq!(newest["actor"], "bob");
    assert!(newest["time"].as_i64().unwrap() < 4_000_000_000, "{newest}");

    // A new secret in the file takes over at SIGHUP.
    std::fs::write(&secret_file, "a-rotated-events-secret-0123\n").unwrap();
    portcullis.hang_up();
    portcullis.wait_for_log("the /events secret changed");
    assert_eq!(post(&[("Content-Type", media_type), ("Authorization", &bearer)], body).status, 401);
    let rotated =
        post(&[("Content-Type", media_type), ("Authorization", "Bearer a-rotated-events-secret-0123")], body);
    assert_eq!(rotated.status, 200, "{rotated:?}");
    assert!(
        !portcullis.log().contains(SECRET) && !portcullis.log().contains("a-rotated"),
        "no secret in the log"
    );

    // Without a secret there is no /events; a short secret is refused at start.
    let plain = Portcullis::start();
    let absent =
        plain.request("POST", "/events", &[("Content-Type", media_type), ("Authorization", &bearer)], body);
    assert_eq!(absent.status, 404, "{absent:?}");
    for (secret, complaint) in [("short", "at least 16"), ("  a-secret-with-spaces-around  ", "spaces")] {
        let refused = plain.cli_with(&[("PORTCULLIS_AUDIT__EVENTS_SECRET", secret)], &["check-config"], None);
        assert!(refused.assert_failure().stdout.contains(complaint), "{refused}");
    }
}

#[test]
fn entries_past_keep_days_or_max_entries_are_removed_by_the_server() {
    let sqlite3 = require_binary("sqlite3", "sqlite3");
    let settings = [("PORTCULLIS_AUDIT__KEEP_DAYS", "30"), ("PORTCULLIS_AUDIT__MAX_ENTRIES", "2")];
    let admin = Admin::with_settings(&settings);
    for project in ["old", "recent", "newer", "newest"] {
        admin.create_project(project, false);
    }
    let database = admin.data_dir().join("portcullis.db");
    // Age two entries (the first admin and "old") past 30 days, as if they were made then.
    let aged = "UPDATE audit_log SET time = time - 31 * 86400 WHERE target IN ('old private', 'admin admin (first start)')";
    run(Command::new(&sqlite3).arg(&database).arg(aged), None).assert_success();
    assert_eq!(entries(&admin, &[]).len(), 5);

    // Two go for their age, then the oldest of the other three for the bound.
    let portcullis = Portcullis::start_on(admin);
    portcullis.wait_for_log("removed old audit log entries");
    let kept: Vec<String> =
        actions(&entries(&portcullis, &[])).into_iter().map(|(_, target)| target).collect();
    assert_eq!(kept, ["newest private", "newer private"]);
    assert!(portcullis.log().contains("over [audit] max_entries"), "{}", portcullis.log());
    let metrics = portcullis.request("GET", "/metrics", &[], b"").body;
    assert!(metrics.lines().any(|line| line == "portcullis_audit_log_entries 2"), "{metrics}");
}
