//! LDAP logins against a real OpenLDAP `slapd` started by the test: directory users get the roles
//! of their groups (memberOf with the overlay, `member` and `memberUid` searches without it), over
//! StartTLS and ldaps with a test CA; wrong passwords, empty passwords and filter injection are
//! 401; database users keep working when the directory is down or hangs, while directory users get
//! a prompt 503. `e2e_docker_login_and_push_as_a_directory_user` drives docker against a registry.
//!
//! - `groups`: group names and DNs that try to pass for other groups (admin groups, DN grants),
//!   and the warnings about the weaker name form;
//! - `offboarding`: identity and personal tokens re-checked against the directory, and entries
//!   that answer for another entry's account.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::support::binary::{Admin, Portcullis, ADMIN};
use crate::support::dockerd::Dockerd;
use crate::support::process::Output;
use crate::support::registry::Registry;
use crate::support::slapd::{Slapd, SlapdOptions, ADMIN_DN, ADMIN_PASSWORD, BASE_DN};

mod groups;
mod offboarding;

const Q: &str = "service=registry.test";
const PUSH_PULL: &str = "repository:team/app:push,pull";

/// Every user's directory password is `<uid>-directory-pw`.
fn password(user: &str) -> String {
    format!("{user}-directory-pw")
}

fn user_dn(user: &str) -> String {
    format!("uid={user},ou=people,{BASE_DN}")
}

/// People: alice (developers, builders), bob (readers), carol (registry-admins), dave (no
/// group), an entry named `admin` like the bootstrap admin, and two entries named `twin`.
/// Groups: groupOfNames under ou=groups, and the posixGroup `builders` (memberUid).
fn populate(slapd: &Slapd) {
    let mut ldif = format!(
        "dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=contractors,ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: contractors\n\n\
         dn: ou=groups,{BASE_DN}\nobjectClass: organizationalUnit\nou: groups\n\n"
    );
    for user in ["alice", "bob", "carol", "dave", "admin", "twin"] {
        ldif.push_str(&format!(
            "dn: {}\nobjectClass: inetOrgPerson\nuid: {user}\ncn: {user}\nsn: {user}\nmail: {user}@example.org\n\
             userPassword: {}\n\n",
            user_dn(user),
            password(user)
        ));
    }
    ldif.push_str(&format!(
        "dn: uid=twin,ou=contractors,ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\nuid: twin\ncn: twin\n\
         sn: twin\nuserPassword: {}\n\n",
        password("twin")
    ));
    for (group, member) in [("developers", "alice"), ("readers", "bob"), ("registry-admins", "carol")] {
        ldif.push_str(&format!(
            "dn: cn={group},ou=groups,{BASE_DN}\nobjectClass: groupOfNames\ncn: {group}\nmember: {}\n\n",
            user_dn(member)
        ));
    }
    ldif.push_str(&format!(
        "dn: cn=builders,ou=groups,{BASE_DN}\nobjectClass: posixGroup\ncn: builders\ngidNumber: 5000\n\
         memberUid: alice\n"
    ));
    slapd.ldapadd(&ldif).assert_success();
}

/// Adds an `inetOrgPerson` `uid=USER` below ou=people with the usual password, and `extra`
/// attribute lines (`description: x\n`).
fn add_person(slapd: &Slapd, user: &str, extra: &str) {
    let ldif = format!(
        "dn: {}\nobjectClass: inetOrgPerson\nuid: {user}\ncn: {user}\nsn: {user}\nuserPassword: {}\n{extra}",
        user_dn(user),
        password(user)
    );
    slapd.ldapadd(&ldif).assert_success();
}

/// `ldapmodify` as slapd's admin (`changetype` lines in `ldif`).
fn modify(slapd: &Slapd, ldif: &str) {
    let url = slapd.url();
    slapd
        .tool("ldapmodify", &["-x", "-D", ADMIN_DN, "-w", ADMIN_PASSWORD, "-H", &url], Some(ldif))
        .assert_success();
}

/// `PORTCULLIS_LDAP__*` settings for `slapd` with the common keys; `extra` adds or replaces.
fn ldap_env(url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("URL", url.to_string()),
        ("USER_BASE_DN", format!("ou=people,{BASE_DN}")),
        ("USER_FILTER", "(objectClass=inetOrgPerson)".to_string()),
        ("EMAIL_ATTRIBUTE", "mail".to_string()),
        ("GROUP_BASE_DN", format!("ou=groups,{BASE_DN}")),
        ("ADMIN_GROUPS", "registry-admins".to_string()),
        ("TIMEOUT_SECS", "2".to_string()),
    ]
    .into_iter()
    .map(|(key, value)| (format!("PORTCULLIS_LDAP__{key}"), value))
    .collect();
    for (key, value) in extra {
        let key = format!("PORTCULLIS_LDAP__{key}");
        env.retain(|(k, _)| *k != key);
        env.push((key, value.to_string()));
    }
    env
}

/// The granted access of a token request that must succeed.
fn access(server: &Portcullis, user: &str, secret: &str, scope: &str) -> Vec<String> {
    let response = server.token(&format!("{Q}&scope={scope}"), Some((user, secret)));
    assert_eq!(response.status, 200, "{user} asking {scope}: {response:?}\nserver log:\n{}", server.log());
    response.access()
}

fn status(server: &Portcullis, user: &str, secret: &str) -> (u16, String) {
    let response = server.token(&format!("{Q}&scope={PUSH_PULL}"), Some((user, secret)));
    let code = if response.status == 200 { String::new() } else { response.error_code() };
    (response.status, code)
}

/// `portcullis ldap test USER` against the server's database with the directory settings `env`
/// (they need not be the server's), the password on stdin if given.
fn ldap_test(server: &Portcullis, env: &[(String, String)], user: &str, secret: Option<&str>) -> Output {
    let mut args = vec!["ldap", "test", user];
    if secret.is_some() {
        args.push("--password-stdin");
    }
    let stdin = secret.map(|secret| format!("{secret}\n"));
    server.cli_with(env, &args, stdin.as_deref())
}

#[test]
fn directory_users_log_in_with_the_roles_of_their_groups() {
    let slapd = Slapd::start(SlapdOptions { memberof: true, tls: true, ..Default::default() });
    populate(&slapd);
    // memberOf from the overlay, over StartTLS, trusting the test CA; searching as the admin DN.
    let env = ldap_env(
        &slapd.url(),
        &[
            ("STARTTLS", "true"),
            ("CA_FILE", &slapd.ca_cert_path().display().to_string()),
            ("BIND_DN", ADMIN_DN),
            ("BIND_PASSWORD", ADMIN_PASSWORD),
            ("GROUP_MEMBERSHIP", "member_of"),
        ],
    );
    let server = Portcullis::start_with(&env);
    server.create_project("team", false);
    server
        .cli(&["member", "add", "team", "--group", "developers", "--role", "developer"], None)
        .assert_success();
    let readers = format!("CN=Readers, OU=Groups, {BASE_DN}");
    server.cli(&["member", "add", "team", "--group", &readers, "--role", "guest"], None).assert_success();
    // dave is granted a role before his first login.
    server.cli(&["user", "add", "dave", "--ldap"], None).assert_success();
    server.add_member("team", "dave", "maintainer");

    assert_eq!(access(&server, "alice", &password("alice"), PUSH_PULL), ["repository:team/app:pull,push"]);
    assert_eq!(
        access(&server, "bob", &password("bob"), PUSH_PULL),
        ["repository:team/app:pull"],
        "group by DN"
    );
    let all = "repository:team/app:push,pull,delete";
    assert_eq!(access(&server, "dave", &password("dave"), all), ["repository:team/app:delete,pull,push"]);
    // carol has no role in team, but the admin group makes her a system admin.
    assert_eq!(access(&server, "carol", &password("carol"), PUSH_PULL), ["repository:team/app:pull,push"]);
    assert_eq!(access(&server, "carol", &password("carol"), "registry:catalog:*"), ["registry:catalog:*"]);
    assert!(access(&server, "alice", &password("alice"), "registry:catalog:*").is_empty());
    // The name as the directory spells it is the account: `ALICE` is alice.
    assert_eq!(access(&server, "ALICE", &password("alice"), PUSH_PULL), ["repository:team/app:pull,push"]);

    // Wrong and empty passwords, also right after a successful (remembered) login.
    for (user, secret) in [("alice", "wrong"), ("alice", ""), ("alice", "alice-directory-p"), ("nobody", "x")]
    {
        assert_eq!(status(&server, user, secret), (401, "UNAUTHORIZED".into()), "{user}:{secret:?}");
    }
    // Filter injection: each of these would match alice (and bind with her password) if the name
    // went into the filter unescaped.
    for attack in ["alic*", "*)(uid=alice", "alice)(objectClass=*", "*", "a*e", "alice\\2a"] {
        assert_eq!(status(&server, attack, &password("alice")).0, 401, "{attack:?} must match nothing");
    }
    assert_eq!(status(&server, "twin", &password("twin")).0, 401, "an ambiguous name is refused");

    // The directory cannot take over the database's admin; the database password still works.
    assert_eq!(status(&server, "admin", &password("admin")).0, 401);
    assert_eq!(access(&server, ADMIN.0, ADMIN.1, "registry:catalog:*"), ["registry:catalog:*"]);

    // Logged-in directory users are listed, and can be disabled at once (cache or not).
    let users = server.cli(&["user", "list", "--json"], None);
    users.assert_success();
    let users: serde_json::Value = serde_json::from_str(&users.stdout).expect("user list JSON");
    let source_of = |name: &str| {
        users.as_array().into_iter().flatten().find(|u| u["name"] == name).map(|u| u["source"].clone())
    };
    assert_eq!(source_of("alice"), Some("ldap".into()));
    assert_eq!(source_of("admin"), Some("database".into()));
    assert_eq!(source_of("ALICE"), None);
    server.cli(&["user", "disable", "alice"], None).assert_success();
    assert_eq!(status(&server, "alice", &password("alice")).0, 401, "disabled while remembered");
    server.cli(&["user", "enable", "alice"], None).assert_success();
    assert_eq!(status(&server, "alice", &password("alice")).0, 200);

    let members = server.cli(&["member", "list", "team"], None);
    members.assert_success();
    assert!(members.stdout.contains("developers") && members.stdout.contains("group"), "{members}");
    server.cli(&["member", "remove", "team", "--group", "developers"], None).assert_success();
    // Roles are looked up per request: the change applies to the next token, cache or not.
    assert!(access(&server, "alice", &password("alice"), PUSH_PULL).is_empty(), "group role removed");

    // `ldap test` shows what the server sees, step by step.
    let shown = ldap_test(&server, &env, "carol", Some(&password("carol")));
    shown.assert_success();
    for expected in
        [&user_dn("carol"), "registry-admins", "carol@example.org", "password      ok", "system admin  yes"]
    {
        assert!(shown.stdout.contains(expected), "missing {expected:?}:\n{shown}");
    }
    let shown = ldap_test(&server, &env, "bob", None);
    shown.assert_success();
    assert!(shown.stdout.contains("not checked") && shown.stdout.contains("guest in team"), "{shown}");
    let refused = ldap_test(&server, &env, "alice", Some("wrong"));
    refused.assert_failure();
    assert!(refused.stdout.contains("password      FAILED"), "{refused}");
    let missing = ldap_test(&server, &env, "alic*", None);
    missing.assert_failure();
    assert!(missing.stdout.contains("(uid=alic\\2a)"), "the escaped filter is shown: {missing}");
}

#[test]
fn groups_are_found_without_the_memberof_overlay() {
    let slapd = Slapd::start(SlapdOptions { memberof: false, tls: true, ..Default::default() });
    populate(&slapd);
    let ca = slapd.ca_cert_path().display().to_string();
    // ldaps://, anonymous search, groups by their `member` attribute.
    let env = ldap_env(&slapd.ldaps_url(), &[("CA_FILE", &ca), ("GROUP_MEMBERSHIP", "member")]);
    let server = Portcullis::start_with(&env);
    server.create_project("team", false);
    server
        .cli(&["member", "add", "team", "--group", "developers", "--role", "developer"], None)
        .assert_success();
    server
        .cli(&["member", "add", "team", "--group", "builders", "--role", "maintainer"], None)
        .assert_success();
    assert_eq!(access(&server, "alice", &password("alice"), PUSH_PULL), ["repository:team/app:pull,push"]);
    assert_eq!(access(&server, "carol", &password("carol"), "registry:catalog:*"), ["registry:catalog:*"]);

    // memberUid (posixGroup): alice is a builder, which makes her a maintainer.
    let by_uid = ldap_env(&slapd.ldaps_url(), &[("CA_FILE", &ca), ("GROUP_MEMBERSHIP", "member_uid")]);
    let shown = ldap_test(&server, &by_uid, "alice", Some(&password("alice")));
    shown.assert_success();
    assert!(shown.stdout.contains("builders") && shown.stdout.contains("maintainer in team"), "{shown}");

    // TLS is verified: without the test CA the system roots do not trust slapd ...
    let untrusted = ldap_env(&slapd.ldaps_url(), &[]);
    let refused = ldap_test(&server, &untrusted, "alice", None);
    refused.assert_failure();
    assert!(refused.stdout.contains("connect       FAILED"), "{refused}");
    // ... unless verification is switched off; StartTLS works the same way.
    let unverified = ldap_env(&slapd.ldaps_url(), &[("VERIFY_CERTIFICATE", "false")]);
    ldap_test(&server, &unverified, "alice", None).assert_success();
    let starttls = ldap_env(&slapd.url(), &[("STARTTLS", "true"), ("CA_FILE", &ca)]);
    ldap_test(&server, &starttls, "alice", Some(&password("alice"))).assert_success();
    // A wrong search account password is named as such.
    let bad_account = ldap_env(&slapd.url(), &[("BIND_DN", ADMIN_DN), ("BIND_PASSWORD", "wrong")]);
    let refused = ldap_test(&server, &bad_account, "alice", None);
    refused.assert_failure();
    assert!(refused.stdout.contains("refused the search account"), "{refused}");
    // A search account whose password looks like a number (review defect 13: `0123` reached the
    // directory as `123`).
    let service = format!("cn=svc,{BASE_DN}");
    slapd
        .ldapadd(&format!("dn: {service}\nobjectClass: person\ncn: svc\nsn: svc\nuserPassword: 0123\n"))
        .assert_success();
    let numeric = ldap_env(&slapd.url(), &[("BIND_DN", service.as_str()), ("BIND_PASSWORD", "0123")]);
    let found = ldap_test(&server, &numeric, "alice", None);
    assert!(found.success() && !found.stdout.contains("refused the search account"), "{found}");
}

#[test]
fn directory_outage_leaves_database_users_working_and_answers_503_fast() {
    let mut slapd = Slapd::start(SlapdOptions::default());
    populate(&slapd);
    let server = Portcullis::start_with(&ldap_env(&slapd.url(), &[]));
    server.add_user("local", "local-password-1");
    assert_eq!(status(&server, "alice", &password("alice")).0, 200);
    let metrics = crate::metrics::scrape(server.addr());
    assert_eq!(crate::metrics::counter(&metrics, "portcullis_directory_up", &[]), 1.0);
    let by_directory: f64 = ["granted", "partially_granted", "denied"]
        .iter()
        .map(|outcome| {
            let labels = [("outcome", *outcome), ("flow", "get"), ("credential", "directory")];
            crate::metrics::counter(&metrics, "portcullis_token_requests_total", &labels)
        })
        .sum();
    assert_eq!(by_directory, 1.0, "alice's login, checked by the directory");
    let binds = [("operation", "bind")];
    assert!(
        crate::metrics::counter(&metrics, "portcullis_directory_operation_duration_seconds_count", &binds)
            >= 1.0
    );
    let failures = "portcullis_directory_operation_failures_total";
    assert!(!metrics.samples.iter().any(|sample| sample.metric == failures), "no failure yet");

    slapd.stop();
    let started = Instant::now();
    assert_eq!(status(&server, "bob", &password("bob")), (503, "UNAVAILABLE".into()));
    let metrics = crate::metrics::scrape(server.addr());
    assert_eq!(crate::metrics::counter(&metrics, "portcullis_directory_up", &[]), 0.0, "the outage shows");
    let connect_failures = crate::metrics::counter(&metrics, failures, &[("operation", "connect")]);
    assert!(connect_failures >= 1.0, "the failed connection is counted");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(server.log().contains(&format!("directory {} is unreachable", slapd.url())), "{}", server.log());
    assert_eq!(status(&server, "local", "local-password-1").0, 200, "database users are unaffected");
    assert_eq!(status(&server, ADMIN.0, ADMIN.1).0, 200);
    assert_eq!(status(&server, "local", "wrong").0, 401);
    // alice logged in moments ago: remembered for cache_secs (60 s), she needs no directory.
    assert_eq!(status(&server, "alice", &password("alice")).0, 200);

    // A directory that accepts connections and never answers: 503 after timeout_secs (2 s).
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind a silent listener");
    let silent_url = format!("ldap://{}/", silent.local_addr().expect("address"));
    let server = Portcullis::start_with(&ldap_env(&silent_url, &[]));
    let started = Instant::now();
    assert_eq!(status(&server, "bob", &password("bob")), (503, "UNAVAILABLE".into()));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1900) && waited < Duration::from_secs(4), "took {waited:?}");
    // Logins arriving together each wait at most the timeout, not one timeout after another.
    let started = Instant::now();
    std::thread::scope(|threads| {
        for user in ["bob", "carol", "dave", "twin"] {
            let server = &server;
            threads.spawn(move || assert_eq!(status(server, user, &password(user)).0, 503));
        }
    });
    assert!(started.elapsed() < Duration::from_secs(4), "4 logins at once took {:?}", started.elapsed());
    let started = Instant::now();
    assert_eq!(status(&server, ADMIN.0, ADMIN.1).0, 200);
    assert!(started.elapsed() < Duration::from_secs(1), "database users never wait for the directory");
    assert!(server.log().contains("did not answer in time"), "{}", server.log());
}

#[test]
fn e2e_docker_login_and_push_as_a_directory_user() {
    let slapd = Slapd::start(SlapdOptions::default());
    populate(&slapd);
    let server = Portcullis::start_with(&ldap_env(&slapd.url(), &[]));
    server.create_project("team", false);
    server
        .cli(&["member", "add", "team", "--group", "developers", "--role", "developer"], None)
        .assert_success();
    server.cli(&["member", "add", "team", "--group", "readers", "--role", "guest"], None).assert_success();
    let registry = Registry::start(server.token_auth());
    let dockerd = Dockerd::start();
    let image = format!("{}/team/app:1", registry.addr());
    dockerd.import_image(&image);

    let wrong = dockerd.login(registry.addr(), "alice", "wrong");
    wrong.assert_failure();
    assert!(wrong.combined().contains("unauthorized"), "{wrong}");

    dockerd.login(registry.addr(), "bob", &password("bob")).assert_success();
    let denied = dockerd.docker(&["push", &image], None);
    denied.assert_failure();
    assert!(denied.combined().contains("denied"), "a guest cannot push: {denied}");

    dockerd.login(registry.addr(), "alice", &password("alice")).assert_success();
    let pushed = dockerd.docker(&["push", &image], None);
    assert!(
        pushed.success(),
        "{pushed}\nportcullis log:\n{}\nregistry log:\n{}",
        server.log(),
        registry.log()
    );
    dockerd.docker(&["rmi", &image], None).assert_success();
    dockerd.docker(&["pull", &image], None).assert_success();
}

#[test]
fn directory_first_order_lets_the_directory_decide_and_falls_back_when_it_is_down() {
    let mut slapd = Slapd::start(SlapdOptions::default());
    populate(&slapd);
    let server =
        Portcullis::start_with(&ldap_env(&slapd.url(), &[("ORDER", "directory_first"), ("CACHE_SECS", "0")]));
    server.add_user("local", "local-password-1");
    server.add_user("dave", "dave-local-password");
    // The directory decides for a database account it knows (dave) ...
    assert_eq!(status(&server, "dave", &password("dave")).0, 200);
    assert_eq!(status(&server, "dave", "dave-local-password").0, 401);
    // ... but never for a database system admin, the bootstrap admin among them (review defect
    // 5): whoever holds the directory entry `admin` does not become Portcullis's admin.
    assert_eq!(status(&server, ADMIN.0, &password("admin")).0, 401);
    assert_eq!(access(&server, ADMIN.0, ADMIN.1, "registry:catalog:*"), ["registry:catalog:*"]);
    // Names the directory does not know are database users as before.
    assert_eq!(status(&server, "local", "local-password-1").0, 200);
    assert_eq!(status(&server, "local", "wrong").0, 401);

    slapd.stop();
    assert_eq!(status(&server, ADMIN.0, ADMIN.1).0, 200, "the database decides for its admin");
    assert_eq!(
        status(&server, "local", "local-password-1").0,
        200,
        "with the directory down, the database decides"
    );
    assert_eq!(status(&server, "alice", &password("alice")), (503, "UNAVAILABLE".into()));
    // dave's account is the directory's now: his old local password does not stand in for it
    // while the directory is down.
    assert_eq!(status(&server, "dave", "dave-local-password"), (503, "UNAVAILABLE".into()));
}

#[test]
fn a_directory_admins_personal_token_stays_admin_on_every_request() {
    let slapd = Slapd::start(SlapdOptions { memberof: false, tls: false, ..Default::default() });
    populate(&slapd);
    // Directory logins are not remembered here, so each password login asks the directory.
    let env = ldap_env(&slapd.url(), &[("GROUP_MEMBERSHIP", "member"), ("CACHE_SECS", "0")]);
    let server = Portcullis::start_with(&env);
    server.create_project("other", false);
    // carol is a system admin only through registry-admins, recorded at her directory login.
    assert_eq!(access(&server, "carol", &password("carol"), "registry:catalog:*"), ["registry:catalog:*"]);
    let created = server.json(&["pat", "create", "--user", "carol", "--name", "ci", "--json"]);
    let token = created["token"].as_str().expect("the token in the JSON answer").to_string();
    // The first request checks the token afresh, the later ones are remembered: every one of
    // them must see the admin group's say (the remembered path once forgot it).
    let admin_push = "repository:other/app:pull,push";
    for request in 1..=5 {
        assert_eq!(access(&server, "carol", &token, admin_push), [admin_push], "request {request}");
    }
    // Out of the admin group in the directory, seen at her next directory login: the token,
    // remembered or not, follows the same one answer.
    let ldif = format!(
        "dn: cn=registry-admins,ou=groups,{BASE_DN}\nchangetype: modify\nreplace: member\nmember: {}\n",
        user_dn("dave")
    );
    modify(&slapd, &ldif);
    assert!(access(&server, "carol", &password("carol"), "registry:catalog:*").is_empty());
    assert!(access(&server, "carol", &token, admin_push).is_empty(), "no longer an admin");
}

#[test]
fn a_directory_account_created_ahead_is_found_whatever_the_case() {
    let slapd = Slapd::start(SlapdOptions { memberof: false, tls: false, ..Default::default() });
    populate(&slapd);
    let server = Portcullis::start_with(&ldap_env(&slapd.url(), &[("GROUP_MEMBERSHIP", "member")]));
    server.create_project("team", false);
    // Created as `Alice` before her first login; the directory spells her `alice`.
    server.cli(&["user", "add", "Alice", "--ldap"], None).assert_success();
    server.add_member("team", "Alice", "maintainer");
    let response =
        server.token(&format!("{Q}&scope=repository:team/app:delete"), Some(("alice", &password("alice"))));
    assert_eq!(response.status, 200, "{response:?}\n{}", server.log());
    assert_eq!(response.access(), ["repository:team/app:delete"], "Alice's role is alice's");
    assert_eq!(response.subject(), "Alice", "the stored spelling is the token's sub");
    let users = server.json(&["user", "list", "--json"]);
    let names: Vec<&str> =
        users.as_array().into_iter().flatten().filter_map(|u| u["name"].as_str()).collect();
    assert!(names.contains(&"Alice") && !names.contains(&"alice"), "one account, not two: {names:?}");
    // A directory account can never take a robot's name.
    let refused = server.fails(&["user", "add", "robot_team+ci", "--ldap"]);
    assert!(refused.contains("reserved for robots"), "{refused}");
}

/// SIGHUP applies new `[ldap]` settings: here the search account's password, rotated in its
/// file (a mounted Secret), fixes logins that were failing, with no restart; settings that make
/// no directory client leave the working one in place.
#[test]
fn sighup_rereads_the_directory_settings_and_the_bind_password_file() {
    let slapd = Slapd::start(SlapdOptions::default());
    populate(&slapd);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("bind-password");
    std::fs::write(&secret, "not-the-password\n").unwrap();
    let file = dir.path().join("portcullis.toml");
    let settings = |extra: &str| {
        format!(
            "[ldap]\nurl = {url:?}\nuser_base_dn = \"ou=people,{BASE_DN}\"\nuser_filter = \"(objectClass=inetOrgPerson)\"\n\
             group_base_dn = \"ou=groups,{BASE_DN}\"\nbind_dn = {ADMIN_DN:?}\nbind_password_file = {secret:?}\n\
             timeout_secs = 2\n{extra}",
            url = slapd.url(),
        )
    };
    std::fs::write(&file, settings("")).unwrap();
    let server = Portcullis::start_with(&[("PORTCULLIS_CONFIG", file.to_str().unwrap())]);
    let alice = || status(&server, "alice", &password("alice")).0;
    assert_eq!(alice(), 503, "the search account is refused: {}", server.log());

    std::fs::write(&secret, format!("{ADMIN_PASSWORD}\n")).unwrap();
    server.hang_up();
    server.wait_for_log("SIGHUP: directory settings reloaded");
    assert_eq!(alice(), 200, "{}", server.log());

    // A CA file that does not exist makes no client: the old settings keep serving.
    std::fs::write(&file, settings("starttls = true\nca_file = \"/nonexistent/ca.pem\"\n")).unwrap();
    server.hang_up();
    server.wait_for_log("the directory keeps its old settings");
    assert_eq!(status(&server, "bob", &password("bob")).0, 200, "{}", server.log());
    assert!(!server.log().contains("apply at the next start"), "[ldap] is not named as needing a restart");

    // A file that lost its [ldap] section (truncated, half-written) does not switch the
    // directory off: nothing would re-check directory users' tokens then.
    std::fs::write(&file, "").unwrap();
    server.hang_up();
    server.wait_for_log("the directory stays in use until the next start");
    assert_eq!(status(&server, "carol", &password("carol")).0, 200, "{}", server.log());
}

/// `access check` for directory users: the role names the group it comes through, an admin
/// group is named as the reason for admin rights; the recorded groups are used until `--live`
/// asks the directory, after which the check and a fresh login agree again.
#[test]
fn access_check_names_the_directory_group_and_live_asks_the_directory() {
    let slapd = Slapd::start(SlapdOptions { memberof: false, tls: false, ..Default::default() });
    populate(&slapd);
    let server = Portcullis::start_with(&ldap_env(&slapd.url(), &[("GROUP_MEMBERSHIP", "member")]));
    server.create_project("team", false);
    server
        .cli(&["member", "add", "team", "--group", "developers", "--role", "developer"], None)
        .assert_success();
    server.cli(&["member", "add", "team", "--group", "readers", "--role", "guest"], None).assert_success();
    let check = |user: &str, extra: &[&str]| {
        let mut args = vec!["access", "check", "--json", user, PUSH_PULL];
        args.extend_from_slice(extra);
        server.json(&args)
    };
    let refused = server.fails(&["access", "check", "alice", PUSH_PULL]);
    assert!(refused.contains("from their first login on"), "{refused}");
    assert_eq!(access(&server, "alice", &password("alice"), PUSH_PULL), ["repository:team/app:pull,push"]);
    let answer = check("alice", &[]);
    assert_eq!(answer["kind"], "directory_user", "{answer:#}");
    assert_eq!(answer["scopes"][0]["granted"], "repository:team/app:pull,push", "{answer:#}");
    let because = answer["scopes"][0]["because"].to_string();
    assert!(because.contains("developer in team: directory group developers"), "{because}");

    access(&server, "carol", &password("carol"), PUSH_PULL);
    let carol = check("carol", &[]);
    assert!(
        carol["system_admin"].as_str().unwrap_or_default().contains("directory admin group"),
        "{carol:#}"
    );

    // alice moves from developers to readers in the directory.
    let move_alice = format!(
        "dn: cn=developers,ou=groups,{BASE_DN}\nchangetype: modify\nreplace: member\nmember: {}\n\n\
         dn: cn=readers,ou=groups,{BASE_DN}\nchangetype: modify\nadd: member\nmember: {}\n",
        user_dn("dave"),
        user_dn("alice")
    );
    modify(&slapd, &move_alice);
    let recorded = check("alice", &[]);
    assert_eq!(
        recorded["scopes"][0]["granted"], "repository:team/app:pull,push",
        "the recorded groups: {recorded:#}"
    );
    let live = check("alice", &["--live"]);
    assert!(live["directory"].as_str().unwrap_or_default().contains("recorded afresh"), "{live:#}");
    assert_eq!(live["scopes"][0]["granted"], "repository:team/app:pull", "{live:#}");
    assert!(
        live["scopes"][0]["because"].to_string().contains("guest in team: directory group readers"),
        "{live:#}"
    );
    assert_eq!(
        access(&server, "alice", &password("alice"), PUSH_PULL),
        ["repository:team/app:pull"],
        "a login agrees"
    );
    let not_directory = server.json(&["access", "check", "--json", "--live", ADMIN.0, PUSH_PULL]);
    assert!(not_directory["directory"].as_str().unwrap_or_default().contains("not a directory user"));
}
