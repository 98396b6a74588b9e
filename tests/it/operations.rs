//! Running Portcullis where operators run it: variables that Kubernetes injects into every pod of
//! a namespace with a Service named `portcullis` are not configuration, while a mistyped
//! variable still stops the server, naming itself.

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
