//! Replicas on PostgreSQL: several `portcullis serve` processes on one real PostgreSQL
//! database (a private cluster per test), each with its own data dir, changed through the CLI
//! of yet another data dir: every change reaches every replica within a second, and a replica
//! that cannot confirm the database's change log answers 503 instead of granting from old data.

use std::time::{Duration, Instant};

use crate::support::binary::{Admin, Portcullis};
use crate::support::dockerd::Dockerd;
use crate::support::http::{basic, send_raw_from};
use crate::support::nginx::Nginx;
use crate::support::postgres::Postgres;
use crate::support::registry::{Registry, TokenAuth};

const PUSH: &str = "service=registry.test&scope=repository:team/app:pull,push";

/// A cluster with an empty database `auth`, and its URL.
fn database() -> (Postgres, String) {
    let postgres = Postgres::start();
    postgres.psql("postgres", "CREATE DATABASE auth").assert_success();
    let url = postgres.url("auth");
    (postgres, url)
}

/// What `server` grants alice for PUSH, or its status when it grants nothing.
fn alice_gets(server: &Portcullis) -> Result<Vec<String>, u16> {
    let answer = server.token(PUSH, Some(("alice", "alice-password")));
    match answer.status {
        200 => Ok(answer.access()),
        status => Err(status),
    }
}

/// Waits up to `limit` until every replica answers `expected`; returns how long that took.
fn until_all(replicas: &[Portcullis], expected: &Result<Vec<String>, u16>, limit: Duration) -> Duration {
    let started = Instant::now();
    for (index, replica) in replicas.iter().enumerate() {
        loop {
            let answer = alice_gets(replica);
            if answer == *expected {
                break;
            }
            assert!(
                started.elapsed() < limit,
                "replica {index} still answers {answer:?}, not {expected:?}, after {limit:?}:\n{}",
                replica.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    started.elapsed()
}

/// alice, a developer of the project team (what every test here starts from).
fn alice_in_team(admin: &Admin) {
    admin.add_user("alice", "alice-password");
    admin.create_project("team", false);
    admin.add_member("team", "alice", "developer");
}

fn pull_push() -> Result<Vec<String>, u16> {
    Ok(vec!["repository:team/app:pull,push".to_string()])
}

#[test]
fn a_change_made_with_the_cli_reaches_every_replica_within_a_second() {
    let (_postgres, url) = database();
    let settings = [("PORTCULLIS_DATABASE", url.as_str())];
    let replicas: Vec<Portcullis> = (0..3).map(|_| Portcullis::start_with(&settings)).collect();
    // The CLI of another machine: its own data dir, the same URL.
    let cli = Admin::with_settings(&settings);
    alice_in_team(&cli);
    until_all(&replicas, &pull_push(), Duration::from_secs(1));

    cli.add_member("team", "alice", "guest");
    let took =
        until_all(&replicas, &Ok(vec!["repository:team/app:pull".to_string()]), Duration::from_secs(1));
    eprintln!("a role change reached three replicas in {took:?}");
    cli.ok(&["member", "remove", "team", "alice"]);
    until_all(&replicas, &Ok(Vec::new()), Duration::from_secs(1));
    cli.ok(&["user", "disable", "alice"]);
    until_all(&replicas, &Err(401), Duration::from_secs(1));

    // A key rotation made from the CLI: every replica signs with the new key from its next
    // requests on, without a restart or a signal, and publishes both keys meanwhile.
    cli.ok(&["key", "rotate", "prepare"]);
    let keys = cli.json(&["key", "list", "--json"]);
    let next = keys.as_array().unwrap().iter().find(|key| key["state"] == "next").expect("a next key");
    let new_kid = next["kid"].as_str().unwrap().to_string();
    cli.ok(&["key", "rotate", "promote"]);
    let started = Instant::now();
    for replica in &replicas {
        loop {
            let answer = replica.token("service=registry.test", Some(("admin", "admin-password-1")));
            if answer.token_header()["kid"] == new_kid.as_str() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(1), "still the old key:\n{}", replica.log());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    eprintln!("a promoted key signed on three replicas after {:?}", started.elapsed());

    // One bootstrap admin, whichever replica started first; one signing key for all.
    let users = cli.json(&["user", "list", "--json"]);
    let admins = users.as_array().unwrap().iter().filter(|user| user["is_admin"] == true).count();
    assert_eq!(admins, 1, "{users}");
    let bundles: Vec<String> =
        replicas.iter().map(|replica| std::fs::read_to_string(replica.certificate_path()).unwrap()).collect();
    assert!(bundles.iter().all(|bundle| *bundle == bundles[0]), "every replica publishes the same keys");
}

#[test]
fn replicas_answer_503_while_the_database_is_gone_or_hung_and_recover_by_themselves() {
    let (mut postgres, url) = database();
    let settings = [("PORTCULLIS_DATABASE", url.as_str()), ("PORTCULLIS_POSTGRES__MAX_STALENESS_SECS", "2")];
    let replica = Portcullis::start_with(&settings);
    alice_in_team(&replica);
    until_all(std::slice::from_ref(&replica), &pull_push(), Duration::from_secs(1));

    for outage in ["stopped", "hung"] {
        match outage {
            "stopped" => postgres.stop(),
            _ => postgres.freeze(),
        }
        // Within the staleness bound (and a heartbeat) every request is refused with 503.
        let took = until_all(std::slice::from_ref(&replica), &Err(503), Duration::from_secs(6));
        eprintln!("{outage}: 503 after {took:?}");
        let answer = replica.token(PUSH, Some(("alice", "alice-password")));
        assert_eq!(answer.status, 503, "{outage}: {}", answer.body);
        assert!(answer.body.contains("UNAVAILABLE"), "{}", answer.body);
        match outage {
            "stopped" => postgres.restart(),
            _ => postgres.thaw(),
        }
        let took = until_all(std::slice::from_ref(&replica), &pull_push(), Duration::from_secs(15));
        eprintln!("{outage}: serving again {took:?} after the database came back");
    }
}

#[test]
fn a_sqlite_installation_copied_into_postgres_keeps_every_credential_and_key() {
    // An installation on SQLite: a user with a remembered login (refresh token), a robot, a
    // personal token, audit entries, the signing key.
    let sqlite = Portcullis::start();
    alice_in_team(&sqlite);
    let robot = sqlite.json(&["robot", "create", "ci", "--project", "team", "--actions", "pull", "--json"]);
    let pat = sqlite.json(&["pat", "create", "--user", "alice", "--name", "laptop", "--json"]);
    let form = "grant_type=password&username=alice&password=alice-password&client_id=docker\
                &access_type=offline&service=registry.test&scope=repository:team/app:pull";
    let login = sqlite.post_form(form);
    let refresh = login.refresh_token().expect("a refresh token");
    let kid = login.token_header()["kid"].clone();
    let sqlite_file = sqlite.data_dir().join("portcullis.db");
    let events = sqlite.json(&["audit", "list", "--json"]).as_array().map(Vec::len).unwrap();

    let (postgres, url) = database();
    let copy = |force: bool| {
        let admin = Admin::new();
        let mut args = vec!["db", "copy", "--from", sqlite_file.to_str().unwrap(), "--to", url.as_str()];
        if force {
            args.push("--force");
        }
        admin.cli(&args, None)
    };
    let copied = copy(false);
    copied.assert_success();
    assert!(copied.stdout.contains("project_members") && copied.stdout.contains("signing_keys"), "{copied}");
    let refused = copy(false);
    refused.assert_failure();
    assert!(refused.stderr.contains("already holds data") && refused.stderr.contains("--force"), "{refused}");
    assert!(!refused.stderr.contains(&url), "no URL (it may hold a password) in: {}", refused.stderr);
    copy(true).assert_success();

    let server = Portcullis::start_with(&[("PORTCULLIS_DATABASE", url.as_str())]);
    let check = server.ok(&["db", "check"]);
    assert!(
        check.contains("schema       version 10 (this portcullis knows 10)")
            && check.contains("postgres://portcullis@127.0.0.1"),
        "{check}"
    );
    let password = server.token(PUSH, Some(("alice", "alice-password")));
    assert_eq!(password.access(), ["repository:team/app:pull,push"]);
    assert_eq!(password.token_header()["kid"], kid, "the same signing key");
    let robot_login =
        server.token(PUSH, Some((robot["name"].as_str().unwrap(), robot["secret"].as_str().unwrap())));
    assert_eq!(robot_login.access(), ["repository:team/app:pull"]);
    let pat_login = server.token(PUSH, Some(("alice", pat["token"].as_str().unwrap())));
    assert_eq!(pat_login.access(), ["repository:team/app:pull,push"]);
    let refreshed = server.post_form(&format!(
        "grant_type=refresh_token&refresh_token={refresh}&client_id=docker&service=registry.test\
         &scope=repository:team/app:pull"
    ));
    assert_eq!(refreshed.access(), ["repository:team/app:pull"], "{refreshed:?}");
    // New rows get new ids after the copied ones, and the trail kept its entries.
    server.add_user("bob", "bob-password");
    let trail = server.json(&["audit", "list", "--json", "--limit", "1000"]);
    let copies = trail.as_array().unwrap().iter().filter(|entry| entry["action"] == "db.copy").count();
    assert_eq!(copies, 1, "the forced copy replaced the first one's trail too: {trail}");
    assert!(trail.as_array().unwrap().len() >= events + 2, "{trail}");
    drop((server, postgres, sqlite));
}

#[test]
fn docker_through_the_load_balancer_survives_a_replica_killed_mid_pulls() {
    let (_postgres, url) = database();
    let settings = [("PORTCULLIS_DATABASE", url.as_str()), ("PORTCULLIS_TRUSTED_PROXIES", "127.0.0.1")];
    let mut replicas: Vec<Portcullis> = (0..3).map(|_| Portcullis::start_with(&settings)).collect();
    let upstreams: Vec<&str> = replicas.iter().map(|replica| replica.addr()).collect();
    let nginx = Nginx::start(&upstreams);
    let cli = &replicas[0];
    cli.add_user("dev", "dev-password");
    cli.create_project("team", false);
    cli.add_member("team", "dev", "developer");
    // The registry asks the balancer, never a replica; every replica publishes the same bundle.
    let auth = TokenAuth { realm: format!("http://{}/token", nginx.addr()), ..replicas[0].token_auth() };
    let registry = Registry::start(auth);
    let docker = Dockerd::start();
    let host = registry.addr().to_string();
    docker.login(&host, "dev", "dev-password").assert_success();
    let image = format!("{host}/team/app:1");
    docker.import_image(&image);
    docker.docker(&["push", &image], None).assert_success();

    // Pulls in a loop (each one a token request: a refresh grant POST with docker's identity
    // token) while one replica is killed.
    let victim = replicas.remove(1);
    let killer = std::thread::spawn(move || {
        let mut victim = victim;
        std::thread::sleep(Duration::from_millis(700));
        victim.kill();
        victim
    });
    let started = Instant::now();
    let mut pulls = 0;
    while pulls < 8 || started.elapsed() < Duration::from_secs(3) {
        let pull = docker.docker(&["pull", &image], None);
        assert!(pull.success(), "pull {pulls}:\n{pull}\n--- nginx\n{}", nginx.error_log());
        pulls += 1;
    }
    let mut victim = killer.join().expect("the killer thread");
    assert!(!victim.is_running(), "the replica was killed");
    eprintln!("{pulls} pulls in {:?}, none failed", started.elapsed());
    let retried = nginx.error_log();
    assert!(
        retried.contains("Connection refused") || retried.contains("upstream"),
        "nginx never met the dead replica:\n{retried}"
    );

    // The replicas see the client behind the balancer: a wrong password from 127.0.0.2 counts
    // against that address, not nginx's.
    let guess = format!(
        "GET /token?service=registry.test HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        nginx.addr(),
        basic("dev", "wrong-password")
    );
    let refused = send_raw_from(std::net::Ipv4Addr::new(127, 0, 0, 2), nginx.addr(), guess.as_bytes());
    assert_eq!(refused.status, 401, "{refused:?}");
    let failures = replicas[0].json(&["throttle", "list", "--json"]);
    assert_eq!(failures[0]["last_address"], "127.0.0.2", "{failures}");
}

#[test]
fn the_kubernetes_replicas_validate_and_run_as_written_on_one_database() {
    use crate::support::kubernetes;
    let mut manifests = kubernetes::manifests("ha");
    manifests.extend(kubernetes::manifests("").into_iter().filter(|path| path.ends_with("service.yaml")));
    assert!(manifests.len() >= 4, "{manifests:?}");
    kubernetes::validate(&manifests);

    let (postgres, _) = database();
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes/ha");
    let container = kubernetes::container(&directory.join("deployment.yaml"));
    let scratch = tempfile::tempdir().expect("a temp dir");
    let secret = kubernetes::volume(scratch.path(), "portcullis-db", container.uid);
    std::fs::write(secret.join("password"), "unused-with-trust\n").expect("the Secret's file");
    let mut pods = Vec::new();
    for pod in 0..2 {
        let data = kubernetes::volume(scratch.path(), &format!("data-{pod}"), container.uid);
        let adapt = |name: &str, value: Option<&str>| match name {
            "PORTCULLIS_ADMIN_PASSWORD" => "from-the-secret-1".to_string(),
            "PORTCULLIS_DATA_DIR" => data.display().to_string(),
            "PORTCULLIS_POSTGRES__PASSWORD_FILE" => secret.join("password").display().to_string(),
            // The Service `postgres` of the cluster is the test's own cluster.
            "PORTCULLIS_DATABASE" => {
                let value = value.expect("a URL");
                assert!(
                    !value.contains(":change-me") && value.contains("@postgres:5432/portcullis"),
                    "{value}"
                );
                value.replace("@postgres:5432/portcullis", &format!("@127.0.0.1:{}/auth", postgres.port()))
            }
            _ => value.expect("a value").to_string(),
        };
        let log = scratch.path().join(format!("pod-{pod}.log"));
        pods.push((kubernetes::run_as_pod(&container, adapt, &log), log));
    }
    for ((_, addr), log) in &pods {
        let ready = crate::support::http::request(addr, "GET", "/readyz", &[], b"");
        assert_eq!(ready.status, 200, "{ready:?}\n{}", crate::support::process::tail(log));
        let login = crate::support::http::request(
            addr,
            "GET",
            "/token?service=registry.example.com&scope=registry:catalog:*",
            &[("Authorization", &basic("admin", "from-the-secret-1"))],
            b"",
        );
        assert_eq!(login.access(), ["registry:catalog:*"], "one first admin for both pods");
    }
}

#[test]
fn a_pg_dump_restored_into_a_fresh_database_serves_the_same_tokens() {
    let (postgres, url) = database();
    let settings = [("PORTCULLIS_DATABASE", url.as_str())];
    let before = Portcullis::start_with(&settings);
    alice_in_team(&before);
    let form = "grant_type=password&username=alice&password=alice-password&client_id=docker\
                &access_type=offline&service=registry.test&scope=repository:team/app:pull";
    let login = before.post_form(form);
    let refresh = login.refresh_token().expect("a refresh token");
    let kid = login.token_header()["kid"].clone();

    let scratch = tempfile::tempdir().expect("a temp dir");
    let dump = scratch.path().join("portcullis.dump");
    let pg_dump = crate::support::process::require_binary("pg_dump", "postgresql-client");
    let pg_restore = crate::support::process::require_binary("pg_restore", "postgresql-client");
    let mut dumping = std::process::Command::new(pg_dump);
    dumping.args(["-Fc", "-f"]).arg(&dump).arg(&url);
    crate::support::process::run(&mut dumping, None).assert_success();
    postgres.psql("postgres", "CREATE DATABASE restored").assert_success();
    let restored = postgres.url("restored");
    let mut restoring = std::process::Command::new(pg_restore);
    restoring.args(["--exit-on-error", "-d", &restored]).arg(&dump);
    crate::support::process::run(&mut restoring, None).assert_success();
    drop(before);

    let after = Portcullis::start_with(&[("PORTCULLIS_DATABASE", restored.as_str())]);
    let password = after.token(PUSH, Some(("alice", "alice-password")));
    assert_eq!(password.access(), ["repository:team/app:pull,push"]);
    assert_eq!(password.token_header()["kid"], kid, "the keys came back with the data");
    let refreshed = after.post_form(&format!(
        "grant_type=refresh_token&refresh_token={refresh}&client_id=docker&service=registry.test\
         &scope=repository:team/app:pull"
    ));
    assert_eq!(refreshed.access(), ["repository:team/app:pull"], "{refreshed:?}");
    // The restored database takes changes and follows them.
    after.add_member("team", "alice", "guest");
    assert_eq!(after.token(PUSH, Some(("alice", "alice-password"))).access(), ["repository:team/app:pull"]);
}

#[test]
fn the_database_connection_is_encrypted_and_checked_as_sslmode_says() {
    let ca = crate::support::certs::TestCa::new("portcullis test database CA");
    let certificate = ca.issue_server(&["localhost"], None);
    let postgres = Postgres::start_tls(&certificate.cert_pem, &certificate.key_pem);
    postgres.psql("postgres", "CREATE DATABASE auth").assert_success();
    let roots = tempfile::tempdir().expect("a temp dir");
    let root = ca.write(roots.path());
    let stranger = crate::support::certs::TestCa::new("another CA");
    std::fs::create_dir(roots.path().join("other")).expect("a dir");
    let other_root = stranger.write(&roots.path().join("other"));
    let port = postgres.port();
    let check = |host: &str, query: &str| {
        let url = format!("postgres://portcullis@{host}:{port}/auth?{query}");
        let admin = Admin::with_settings(&[("PORTCULLIS_DATABASE", url.as_str())]);
        admin.cli(&["db", "check"], None)
    };
    let root = root.display().to_string();
    let other_root = other_root.display().to_string();
    // The server takes TCP connections over TLS only: what connects, connected encrypted.
    check("localhost", &format!("sslmode=verify-full&sslrootcert={root}")).assert_success();
    check("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={root}")).assert_success();
    check("127.0.0.1", "sslmode=require").assert_success();
    check("127.0.0.1", "").assert_success();
    let plain = check("127.0.0.1", "sslmode=disable");
    plain.assert_failure();
    assert!(plain.stderr.contains("no encryption") || plain.stderr.contains("pg_hba"), "{plain}");
    // verify-full checks the name, verify-ca and verify-full the issuer.
    let wrong_name = check("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={root}"));
    wrong_name.assert_failure();
    assert!(wrong_name.stderr.contains("certificate"), "{wrong_name}");
    for mode in ["verify-ca", "verify-full"] {
        let unknown = check("localhost", &format!("sslmode={mode}&sslrootcert={other_root}"));
        unknown.assert_failure();
        assert!(unknown.stderr.contains("certificate"), "{mode}: {unknown}");
    }
}

#[test]
fn a_promoted_standby_is_followed_through_a_multi_host_url() {
    let (mut primary, _) = database();
    let standby = Postgres::start_standby_of(&primary);
    let hosts = format!("127.0.0.1:{},127.0.0.1:{}", primary.port(), standby.port());
    let url = format!("postgres://portcullis@{hosts}/auth?target_session_attrs=read-write");
    let settings = [("PORTCULLIS_DATABASE", url.as_str()), ("PORTCULLIS_POSTGRES__MAX_STALENESS_SECS", "2")];
    let replica = Portcullis::start_with(&settings);
    alice_in_team(&replica);
    until_all(std::slice::from_ref(&replica), &pull_push(), Duration::from_secs(1));
    // The standby has it too (streaming replication), and refuses writes.
    let replicated =
        || standby.psql("auth", "SELECT count(*) FROM project_members").stdout.trim().to_string();
    let started = Instant::now();
    while replicated() != "1" {
        assert!(started.elapsed() < Duration::from_secs(10), "not replicated");
        std::thread::sleep(Duration::from_millis(20));
    }

    // The primary fails; the standby is promoted: the replica follows without a restart.
    primary.stop();
    until_all(std::slice::from_ref(&replica), &Err(503), Duration::from_secs(6));
    standby.promote();
    let took = until_all(std::slice::from_ref(&replica), &pull_push(), Duration::from_secs(15));
    eprintln!("serving from the promoted standby {took:?} after the promotion");
    // And it takes changes there.
    replica.add_member("team", "alice", "guest");
    until_all(
        std::slice::from_ref(&replica),
        &Ok(vec!["repository:team/app:pull".to_string()]),
        Duration::from_secs(1),
    );
    assert!(standby.psql("auth", "SELECT role FROM project_members").stdout.contains("guest"));
}
