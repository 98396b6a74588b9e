//! Proves the test harness in tests/it/support/ works on this machine, without Portcullis: every tool
//! starts, answers, and is cleaned up; each client's push/pull plumbing works against a registry.
//! Run: `cargo test --test it stack_smoke -- --nocapture`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::support::certs::self_signed_p256;
use crate::support::containerd::Containerd;
use crate::support::dockerd::Dockerd;
use crate::support::oci::{make_oci_layout, OciImage};
use crate::support::postgres::Postgres;
use crate::support::process::{require_binary, run};
use crate::support::registry::{Registry, TokenAuth};
use crate::support::scratch::{mounts_under, processes_naming};
use crate::support::skopeo::Skopeo;
use crate::support::slapd::{Slapd, SlapdOptions, BASE_DN};

/// Asserts a daemon's temp dir left nothing behind once its guard was dropped.
fn assert_cleaned_up(dir: &Path) {
    assert!(processes_naming(dir).is_empty(), "processes still name {}", dir.display());
    assert!(mounts_under(dir).is_empty(), "still mounted under {}", dir.display());
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
fn slapd_memberof_overlay_and_tls_work() {
    let started = Instant::now();
    let slapd = Slapd::start(SlapdOptions { memberof: true, tls: true, ..Default::default() });
    let ldif = format!(
        "dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: uid=alice,ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\nuid: alice\ncn: Alice\nsn: Liddell\n\
         userPassword: alice-password\n\n\
         dn: cn=developers,{BASE_DN}\nobjectClass: groupOfNames\ncn: developers\n\
         member: uid=alice,ou=people,{BASE_DN}\n"
    );
    slapd.ldapadd(&ldif).assert_success();

    let search = slapd.ldapsearch(BASE_DN, "(uid=alice)", &["memberOf"]);
    search.assert_success();
    assert!(search.stdout.contains(&format!("memberOf: cn=developers,{BASE_DN}")), "no memberOf:\n{search}");

    let alice = format!("uid=alice,ou=people,{BASE_DN}");
    slapd.ldapwhoami(&alice, "alice-password").assert_success();
    slapd.ldapwhoami(&alice, "wrong-password").assert_failure();
    // ldaps:// and StartTLS (-ZZ: fail unless TLS is established), trusting the test CA.
    let ldaps = slapd.ldaps_url();
    slapd
        .tool("ldapwhoami", &["-x", "-D", &alice, "-w", "alice-password", "-H", &ldaps], None)
        .assert_success();
    let plain = slapd.url();
    slapd
        .tool("ldapwhoami", &["-ZZ", "-x", "-D", &alice, "-w", "alice-password", "-H", &plain], None)
        .assert_success();
    assert!(slapd.ca_cert_path().exists());
    eprintln!("slapd: {:?}", started.elapsed());
}

#[test]
fn dockerd_imports_an_image_and_cleans_up() {
    let started = Instant::now();
    let dockerd = Dockerd::start();
    let dir = dockerd.dir().to_path_buf();
    let id = dockerd.import_image("smoke/hello:1");
    assert!(id.starts_with("sha256:"), "docker import printed {id:?}");
    let images = dockerd.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"], None);
    images.assert_success();
    assert!(images.stdout.lines().any(|line| line == "smoke/hello:1"), "not listed:\n{images}");
    assert!(dockerd.config_json().is_none(), "a fresh DOCKER_CONFIG has no config.json");
    drop(dockerd);
    assert_cleaned_up(&dir);
    eprintln!("dockerd: {:?}", started.elapsed());
}

#[test]
fn containerd_answers_and_imports_an_oci_archive() {
    let started = Instant::now();
    let containerd = Containerd::start();
    let dir = containerd.dir().to_path_buf();
    containerd.ctr(&["version"]).assert_success();
    let image = containerd.import_image("127.0.0.1:5000/smoke/hello:1", "hello from ctr");
    let listed = containerd.ctr(&["images", "ls", "-q"]);
    listed.assert_success();
    assert!(
        listed.stdout.lines().any(|line| line == "127.0.0.1:5000/smoke/hello:1"),
        "not imported:\n{listed}"
    );
    let info = containerd.ctr(&["images", "ls"]);
    assert!(info.stdout.contains(&image.manifest.digest), "digest differs:\n{info}");
    drop(containerd);
    assert_cleaned_up(&dir);
    eprintln!("containerd: {:?}", started.elapsed());
}

#[test]
fn skopeo_inspects_an_oci_layout() {
    let skopeo = Skopeo::new();
    let layout = tempfile::tempdir().expect("create a layout dir");
    let image = make_oci_layout(layout.path(), "v1", "hello from skopeo");
    let target = format!("oci:{}:v1", layout.path().display());
    let inspect = skopeo.inspect(&target, None);
    inspect.assert_success();
    let json: serde_json::Value = serde_json::from_str(&inspect.stdout).expect("skopeo inspect prints JSON");
    assert_eq!(json["Digest"], image.manifest.digest.as_str(), "{inspect}");
    assert_eq!(json["Layers"][0], image.layer.digest.as_str(), "{inspect}");
}

#[test]
fn registry_with_token_auth_answers_401_with_a_bearer_challenge() {
    let dir = tempfile::tempdir().expect("create a cert dir");
    let (bundle, _key) = self_signed_p256("smoke token signer").write(dir.path(), "token");
    let registry = Registry::start(TokenAuth {
        realm: "http://127.0.0.1:1/token".to_string(),
        service: "smoke-registry".to_string(),
        issuer: "smoke-issuer".to_string(),
        rootcertbundle: bundle,
    });
    match ureq::get(&format!("{}/v2/", registry.url())).call() {
        Err(ureq::Error::Status(401, response)) => {
            let challenge = response.header("www-authenticate").unwrap_or_default().to_string();
            assert!(challenge.starts_with("Bearer realm="), "challenge {challenge:?}\n{}", registry.log());
            assert!(challenge.contains(r#"realm="http://127.0.0.1:1/token""#), "challenge {challenge:?}");
            assert!(challenge.contains(r#"service="smoke-registry""#), "challenge {challenge:?}");
        }
        other => panic!("expected 401 from /v2/, got {other:?}\n{}", registry.log()),
    }
}

/// Every client's push/pull plumbing (flags, plain HTTP on loopback, private config) against a registry
/// without auth: the tests with Portcullis then only add credentials.
#[test]
fn docker_ctr_and_skopeo_round_trip_through_a_registry() {
    let started = Instant::now();
    let registry = Registry::start_without_auth();
    let addr = registry.addr();

    let dockerd = Dockerd::start();
    let from_docker = format!("{addr}/smoke/docker:1");
    dockerd.import_image(&from_docker);
    dockerd.docker(&["push", &from_docker], None).assert_success();
    dockerd.docker(&["rmi", &from_docker], None).assert_success();
    dockerd.docker(&["pull", &from_docker], None).assert_success();
    // A registry without auth accepts any login; the CLI stores it in the private DOCKER_CONFIG.
    dockerd.login(addr, "smoke", "smoke-password").assert_success();
    let config = dockerd.config_json().expect("docker login writes config.json");
    assert!(config.contains(addr), "{config}");

    let containerd = Containerd::start();
    let from_ctr = format!("{addr}/smoke/ctr:1");
    containerd.import_image(&from_ctr, "pushed by ctr");
    containerd.push(&from_ctr, None).assert_success();
    containerd.remove_image(&from_ctr).assert_success();
    containerd.pull(&from_ctr, None).assert_success();
    containerd.pull(&from_docker, None).assert_success();

    let skopeo = Skopeo::new();
    let layout = tempfile::tempdir().expect("create a layout dir");
    let image = make_oci_layout(layout.path(), "v1", "pushed by skopeo");
    let from_skopeo = format!("docker://{addr}/smoke/skopeo:1");
    skopeo.copy(&format!("oci:{}:v1", layout.path().display()), &from_skopeo, None).assert_success();
    let inspect = skopeo.inspect(&from_skopeo, None);
    assert!(inspect.assert_success().stdout.contains(&image.manifest.digest), "{inspect}");
    skopeo.inspect(&format!("docker://{addr}/smoke/ctr:1"), None).assert_success();
    let tags = skopeo.list_tags(&format!("docker://{addr}/smoke/skopeo"), None);
    assert!(tags.assert_success().stdout.contains("\"1\""), "{tags}");
    skopeo.delete(&from_skopeo, None).assert_success();
    skopeo.login(addr, "smoke", "smoke-password").assert_success();
    assert!(skopeo.auth_file().exists(), "skopeo login writes REGISTRY_AUTH_FILE");
    skopeo.inspect(&from_skopeo, None).assert_failure();
    eprintln!("round trips: {:?}", started.elapsed());
}

#[test]
fn tiny_images_are_valid_archives() {
    let tar = require_binary("tar", "tar");
    let dir = tempfile::tempdir().expect("create a dir");
    let image = OciImage::tiny("checked by tar and gzip");
    let archive = dir.path().join("image.tar");
    std::fs::write(&archive, image.archive("example/app:1")).expect("write the archive");
    let listing = run(Command::new(&tar).arg("-tvf").arg(&archive), None);
    listing.assert_success();
    assert!(listing.stdout.contains(&format!("blobs/sha256/{}", image.layer.hex())), "{listing}");
    let layer = dir.path().join("layer.tgz");
    std::fs::write(&layer, &image.layer.bytes).expect("write the layer");
    let content = run(Command::new(&tar).arg("-xzOf").arg(&layer).arg("hello.txt"), None);
    assert_eq!(content.assert_success().stdout, "checked by tar and gzip", "{content}");
}

#[test]
fn commands_report_failures_with_their_output() {
    let output = run(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]), None);
    output.assert_failure();
    assert_eq!(output.status.code(), Some(3));
    assert_eq!((output.stdout.as_str(), output.stderr.as_str()), ("out\n", "err\n"));
    let echoed = run(&mut Command::new("cat"), Some(b"fed on stdin"));
    assert_eq!(echoed.assert_success().stdout, "fed on stdin");
}

#[test]
#[should_panic(expected = "install the Debian package `portcullis-no-such-package`")]
fn a_missing_binary_fails_naming_its_package() {
    require_binary("portcullis-no-such-binary", "portcullis-no-such-package");
}

/// A private PostgreSQL cluster starts as the postgres account, takes SQL (a table, a trigger
/// and NOTIFY, which the replicas' change log will use), and is gone with its guard.
#[test]
fn a_private_postgres_cluster_starts_and_is_cleaned_up() {
    let started = Instant::now();
    let mut postgres = Postgres::start();
    eprintln!("postgres started in {:?}", started.elapsed());
    let created = postgres.psql(
        "postgres",
        "CREATE TABLE changes (seq bigserial PRIMARY KEY, what text);
         CREATE FUNCTION notify_change() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN PERFORM pg_notify('changes', NEW.seq::text); RETURN NEW; END $$;
         CREATE TRIGGER changes_notify AFTER INSERT ON changes FOR EACH ROW EXECUTE FUNCTION notify_change();
         INSERT INTO changes (what) VALUES ('a'), ('b');
         SELECT count(*) FROM changes;",
    );
    assert_eq!(created.assert_success().stdout.trim().lines().last(), Some("2"), "{created}");
    assert!(postgres.psql("postgres", "SELECT current_user").stdout.contains("portcullis"));
    assert!(postgres.url("portcullis").starts_with("postgres://portcullis@127.0.0.1:"));
    assert!(postgres.is_running(), "{}", postgres.log());
    let port = postgres.port();
    drop(postgres);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "stopped with its guard");
}
