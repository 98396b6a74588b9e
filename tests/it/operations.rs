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
