//! Running Portcullis where operators run it: variables that Kubernetes injects into every pod of
//! a namespace with a Service named `portcullis` are not configuration, while a mistyped
//! variable still stops the server, naming itself; `/readyz` follows the database.

use crate::support::binary::{Admin, Portcullis, ADMIN, SERVICE};

#[test]
fn kubernetes_service_links_do_not_stop_the_server() {
    let server = Portcullis::start_with(&[
        ("PORTCULLIS_PORT", "tcp://10.96.0.12:5001"),
        ("PORTCULLIS_SERVICE_HOST", "10.96.0.12"),
        ("PORTCULLIS_SERVICE_PORT", "5001"),
        ("PORTCULLIS_PORT_5001_TCP", "tcp://10.96.0.12:5001"),
        ("PORTCULLIS_PORT_5001_TCP_PROTO", "tcp"),
        ("PORTCULLIS_PORT_5001_TCP_PORT", "5001"),
        ("PORTCULLIS_PORT_5001_TCP_ADDR", "10.96.0.12"),
    ]);
    let answer = server.token(&format!("service={SERVICE}&scope=registry:catalog:*"), Some(ADMIN));
    assert_eq!(answer.access(), ["registry:catalog:*"], "{answer:?}");
    assert!(
        server.log().contains("PORTCULLIS_PORT_5001_TCP_ADDR (set by Kubernetes)"),
        "one debug line each:\n{}",
        server.log()
    );

    let typo = Admin::with_settings(&[("PORTCULLIS_DATABSE", "/tmp/elsewhere.db")]);
    let refused = typo.cli(&["user", "list"], None);
    refused.assert_failure();
    assert!(refused.stderr.contains("PORTCULLIS_DATABSE") && refused.stderr.contains("databse"), "{refused}");
}

/// `/readyz` is 200 while the database answers and names the key; when the database file is
/// replaced by something that is no database, it is 503 and says so, while `/healthz` stays 200.
/// A directory that is down is reported but never makes the server unready.
#[test]
fn readiness_follows_the_database_and_reports_the_directory() {
    let directory = format!("ldap://127.0.0.1:{}", crate::support::process::free_port());
    let server = Portcullis::start_with(&[
        ("PORTCULLIS_LDAP__URL", directory.as_str()),
        ("PORTCULLIS_LDAP__USER_BASE_DN", "ou=people,dc=example,dc=org"),
        ("PORTCULLIS_LDAP__GROUP_BASE_DN", "ou=groups,dc=example,dc=org"),
        ("PORTCULLIS_LDAP__TIMEOUT_SECS", "1"),
    ]);
    let ready = server.request("GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 200, "{ready:?}");
    let body = ready.json();
    assert_eq!(body["database"], "ok");
    assert!(body["signing_key"].as_str().is_some_and(|key| key.starts_with("ok")), "{body}");
    assert!(body["directory"].as_str().is_some_and(|state| state.starts_with("unavailable")), "{body}");

    // A bundle that lost the signing key (replaced by hand) makes the server unready: registries
    // restarted from it would refuse every token.
    let bundle = server.certificate_path();
    let kept = std::fs::read_to_string(&bundle).unwrap();
    std::fs::write(&bundle, "").unwrap();
    let unready = server.request("GET", "/readyz", &[], b"");
    assert_eq!(unready.status, 503, "{unready:?}");
    assert!(
        unready.json()["signing_key"].as_str().is_some_and(|s| s.contains("does not hold")),
        "{unready:?}"
    );
    std::fs::write(&bundle, kept).unwrap();
    assert_eq!(server.request("GET", "/readyz", &[], b"").status, 200);

    let database = server.data_dir().join("portcullis.db");
    let garbage = server.data_dir().join("garbage");
    std::fs::write(&garbage, vec![b'x'; 8192]).expect("write");
    std::fs::rename(&garbage, &database).expect("replace the database");
    for stale in ["portcullis.db-wal", "portcullis.db-shm"] {
        let _ = std::fs::remove_file(server.data_dir().join(stale));
    }
    // The file is looked at once a second.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let unready = server.request("GET", "/readyz", &[], b"");
    assert_eq!(unready.status, 503, "{unready:?}");
    assert_eq!(unready.json()["status"], "not ready");
    assert!(
        unready.json()["database"].as_str().is_some_and(|state| state.starts_with("error")),
        "{unready:?}"
    );
    assert_eq!(server.request("GET", "/healthz", &[], b"").status, 200, "still alive");
}

/// `log_format = "json"`: every line is one JSON object; a request's lines carry its id, which the
/// answer returns as `X-Request-Id`. An id a trusted proxy sent is kept; anyone else's is not.
#[test]
fn json_logs_carry_the_request_id_the_answer_returns() {
    let server = Portcullis::start_with(&[
        ("PORTCULLIS_LOG_FORMAT", "json"),
        ("PORTCULLIS_TRUSTED_PROXIES", "127.0.0.9"),
    ]);
    let answer = server.token(&format!("service={SERVICE}&scope=registry:catalog:*"), Some(ADMIN));
    let id = answer.header("x-request-id").expect("a request id").to_string();
    assert_eq!(id.len(), 16, "{id}");
    let log = server.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(lines.len() >= 2, "{log}");
    let issued = lines
        .iter()
        .find(|line| line["fields"]["message"] == "token issued")
        .unwrap_or_else(|| panic!("a token issued line:\n{log}"));
    assert_eq!(issued["span"]["id"], id.as_str(), "{issued}");

    let spoofed = crate::support::http::send_raw_from(
        std::net::Ipv4Addr::new(127, 0, 0, 8),
        server.addr(),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: chosen-by-me\r\nConnection: close\r\n\r\n",
    );
    assert_ne!(spoofed.header("x-request-id"), Some("chosen-by-me"), "not from a trusted proxy");
    let proxied = crate::support::http::send_raw_from(
        std::net::Ipv4Addr::new(127, 0, 0, 9),
        server.addr(),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: from-the-proxy.42\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(proxied.header("x-request-id"), Some("from-the-proxy.42"));
}

/// `portcullis check-config` prints one line per check and fails when one does: a missing
/// certificate, a directory that does not answer.
#[test]
fn check_config_names_each_check_and_fails_on_a_broken_part() {
    let admin = Admin::new();
    let fine = admin.cli(&["check-config"], None);
    fine.assert_success();
    for part in ["configuration", "log filter", "audit", "signing key", "database"] {
        assert!(
            fine.stdout.lines().any(|line| line.starts_with(part) && line.contains("ok:")),
            "{part}: {fine}"
        );
    }
    // A benchmark's variables are not configuration; a filter, a sink or a file that a server
    // could not use fails its own line.
    admin.cli_with(&[("PORTCULLIS_BENCH_TOKENS", "100")], &["check-config"], None).assert_success();
    let filter = admin.cli_with(&[("PORTCULLIS_LOG", "portcullis=[")], &["check-config"], None);
    assert!(filter.assert_failure().stdout.contains("log filter    FAILED"), "{filter}");
    let sink = admin.cli_with(&[("PORTCULLIS_AUDIT__DECISIONS", "file")], &["check-config"], None);
    assert!(
        sink.assert_failure().stdout.contains("audit         FAILED")
            && sink.stdout.contains("decisions_file"),
        "{sink}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.toml");
    std::fs::write(&file, "[audit]\nkeep_dayz = 3\n").unwrap();
    let typo = admin.cli_with(&[("PORTCULLIS_CONFIG", file.to_str().unwrap())], &["check-config"], None);
    typo.assert_failure();
    assert!(typo.stdout.contains("configuration FAILED") && typo.stdout.contains("keep_dayz"), "{typo}");
    let closed = format!("ldap://127.0.0.1:{}", crate::support::process::free_port());
    let directory = [
        ("PORTCULLIS_LDAP__URL", closed.as_str()),
        ("PORTCULLIS_LDAP__USER_BASE_DN", "ou=people,dc=example,dc=org"),
        ("PORTCULLIS_LDAP__GROUP_BASE_DN", "ou=groups,dc=example,dc=org"),
        ("PORTCULLIS_LDAP__TIMEOUT_SECS", "1"),
    ];
    let unreachable = admin.cli_with(&directory, &["check-config"], None);
    unreachable.assert_failure();
    assert!(unreachable.stdout.contains("directory     FAILED"), "{unreachable}");
    std::fs::remove_file(admin.data_dir().join("token.pem")).expect("remove the certificate");
    let broken = admin.cli(&["check-config"], None);
    broken.assert_failure();
    assert!(
        broken.stdout.contains("signing key   FAILED") && broken.stdout.contains("database      ok"),
        "{broken}"
    );
    assert!(broken.stderr.contains("1 check(s) failed: signing key"), "{broken}");
}

/// `examples/kubernetes/` validates against the Kubernetes schemas (`--strict`: no unknown
/// fields), and the binary runs as the Deployment says: its arguments, its environment (with
/// the Service's injected variables beside them) and its uid, serving both probes.
#[test]
fn the_kubernetes_manifests_validate_and_run_as_written() {
    use crate::support::kubernetes;
    let manifests = kubernetes::manifests("");
    assert!(manifests.len() >= 3, "{manifests:?}");
    kubernetes::validate(&manifests);
    // The validator does refuse what Kubernetes would.
    let scratch = tempfile::tempdir().expect("a temp dir");
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes");
    let wrong = scratch.path().join("wrong.yaml");
    let deployment = std::fs::read_to_string(directory.join("deployment.yaml")).expect("deployment.yaml");
    std::fs::write(&wrong, deployment.replace("replicas: 1", "replicas: one")).expect("write");
    let validate =
        crate::support::process::require_binary("kubernetes-validate", "kubernetes-validate (PyPI)");
    crate::support::process::run(std::process::Command::new(&validate).arg("--strict").arg(&wrong), None)
        .assert_failure();

    let container = kubernetes::container(&directory.join("deployment.yaml"));
    let data = kubernetes::volume(scratch.path(), "data", container.uid);
    let log = scratch.path().join("serve.log");
    let adapt = |name: &str, value: Option<&str>| match name {
        "PORTCULLIS_ADMIN_PASSWORD" => "from-the-secret-1".to_string(),
        "PORTCULLIS_DATA_DIR" | "PORTCULLIS_TOKEN__CERTIFICATE_FILE" => {
            value.expect("a path").replacen("/data", &data.display().to_string(), 1)
        }
        _ => value.expect("a value").to_string(),
    };
    let (_daemon, addr) = kubernetes::run_as_pod(&container, adapt, &log);
    for probe in ["/healthz", "/readyz"] {
        let answer = crate::support::http::request(&addr, "GET", probe, &[], b"");
        assert_eq!(answer.status, 200, "{probe}: {answer:?}\n{}", crate::support::process::tail(&log));
    }
    let login = crate::support::http::request(
        &addr,
        "GET",
        "/token?service=registry.example.com",
        &[("Authorization", &crate::support::http::basic("admin", "from-the-secret-1"))],
        b"",
    );
    assert_eq!(login.status, 200, "{login:?}");
    use std::os::unix::fs::MetadataExt;
    let database = std::fs::metadata(data.join("portcullis.db")).expect("the database, keys included");
    assert_eq!(
        (database.uid(), database.mode() & 0o777),
        (65532, 0o600),
        "written by the pod's uid, for it alone"
    );
}

#[test]
fn sighup_reloads_the_log_filter_and_names_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.toml");
    std::fs::write(&file, "log_filter = \"warn\"\n").unwrap();
    let mut server =
        Portcullis::start_with(&[("PORTCULLIS_CONFIG", file.to_str().unwrap()), ("PORTCULLIS_LOG", "")]);
    assert_eq!(server.token(&format!("service={SERVICE}"), None).status, 200);
    // At warn, neither the debug line of a token nor info lines.
    assert!(!server.log().contains("token issued"), "{}", server.log());

    // A file that does not load changes nothing, and says so.
    std::fs::write(&file, "log_filter = [\n").unwrap();
    server.hang_up();
    server.wait_for_log("the configuration does not load");
    assert!(server.is_running());

    // Debug for portcullis, and a setting that only a restart applies.
    std::fs::write(&file, "log_filter = \"info,portcullis=debug\"\nbootstrap_admin = \"root\"\n").unwrap();
    server.hang_up();
    server.wait_for_log("SIGHUP: log filter in force");
    server.wait_for_log("apply at the next start");
    assert!(server.log().contains("bootstrap_admin"), "{}", server.log());
    assert_eq!(server.token(&format!("service={SERVICE}"), None).status, 200);
    server.wait_for_log("token issued");
    assert!(server.is_running());
}
