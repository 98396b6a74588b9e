//! HTTPS serving (`[tls]`): real clients (curl, skopeo) against certificates of a test CA, the
//! refusals a client must make (expired, wrong host), and a certificate replaced while serving.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::binary::Portcullis;
use crate::support::certs::{serial_of, serial_of_der, CertifiedKeyPem, TestCa};
use crate::support::oci::make_oci_layout;
use crate::support::process::{require_binary, run, Output};
use crate::support::registry::Registry;
use crate::support::skopeo::Skopeo;

/// A server serving `server`'s pair from files in its own temp dir; returns it with the paths.
fn start_https(dir: &Path, server: &CertifiedKeyPem) -> (Portcullis, std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = server.write(dir, "server");
    let portcullis = Portcullis::start_with(&[
        ("PORTCULLIS_TLS__CERT_FILE", cert.to_str().unwrap()),
        ("PORTCULLIS_TLS__KEY_FILE", key.to_str().unwrap()),
    ]);
    (portcullis, cert, key)
}

fn make_dir(parent: &Path, name: &str) -> std::path::PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).unwrap();
    dir
}

/// `curl` of `url` trusting only `ca`, with extra arguments.
fn curl(ca: &Path, url: &str, extra: &[&str]) -> Output {
    require_binary("curl", "curl");
    let mut command = std::process::Command::new("curl");
    command.args(["-sS", "--max-time", "10", "--cacert"]).arg(ca).args(extra).arg(url);
    run(&mut command, None)
}

#[test]
fn https_realm_serves_curl_and_a_registry_client() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("portcullis test CA");
    // Its own directory: containers/image takes every *.key beside ca.crt for a client key.
    let ca_file = ca.write(&make_dir(dir.path(), "ca"));
    let server = ca.issue_loopback_server();
    let (portcullis, _, _) = start_https(dir.path(), &server);
    let realm = portcullis.realm();
    // Readiness and check-config name the certificate served.
    let ready = curl(&ca_file, &format!("https://{}/readyz", portcullis.addr()), &[]);
    assert!(ready.stdout.contains(&serial_of(&server.cert_pem)), "{ready}");
    let check = portcullis.ok(&["check-config"]);
    assert!(check.contains("tls           ok") && check.contains(&serial_of(&server.cert_pem)), "{check}");
    assert!(realm.starts_with("https://"), "{realm}");
    // The registry snippet printed at start names the https realm.
    assert!(portcullis.log().contains(&format!("realm: {realm}")), "{}", portcullis.log());

    // curl with the CA, over TLS 1.2 and over 1.3.
    let health = format!("https://{}/healthz", portcullis.addr());
    for versions in [["--tlsv1.2", "--tls-max", "1.2"], ["--tlsv1.3", "--tls-max", "1.3"]] {
        let out = curl(&ca_file, &health, &versions);
        assert!(out.success() && out.stdout.contains("ok"), "{versions:?}: {out}");
    }
    // Without the CA, curl refuses the certificate (exit 60).
    let mut command = std::process::Command::new("curl");
    command.args(["-sS", "--max-time", "10", &health]);
    let untrusted = run(&mut command, None);
    assert_eq!(untrusted.status.code(), Some(60), "{untrusted}");
    // Plain HTTP to the TLS port gets no answer, never a token.
    let plain = curl(&ca_file, &format!("http://{}/token", portcullis.addr()), &[]);
    assert!(!plain.success() && !plain.stdout.contains("token"), "{plain}");

    // skopeo, verifying TLS with the CA from its cert dir, logs in and pushes and pulls through
    // a registry (itself on HTTPS) whose realm is Portcullis' https URL.
    portcullis.create_project("team", false);
    portcullis.add_user("alice", "alice-password-1");
    portcullis.add_member("team", "alice", "developer");
    let (registry_cert, registry_key) = ca.issue_loopback_server().write(dir.path(), "registry");
    let registry = Registry::start_tls(portcullis.token_auth(), &registry_cert, &registry_key);
    let skopeo = Skopeo::new();
    let cert_dir = ca_file.parent().unwrap().to_str().unwrap();
    let login = skopeo.run(&[
        "login",
        "--cert-dir",
        cert_dir,
        "-u",
        "alice",
        "-p",
        "alice-password-1",
        registry.addr(),
    ]);
    assert!(login.success(), "{login}\nportcullis:\n{}", portcullis.log());
    let layout = dir.path().join("layout");
    make_oci_layout(&layout, "v1", "over https");
    let image = format!("docker://{}/team/app:v1", registry.addr());
    let source = format!("oci:{}:v1", layout.display());
    let push = skopeo.run(&["copy", "--dest-cert-dir", cert_dir, &source, &image]);
    assert!(push.success(), "{push}\nregistry:\n{}", registry.log());
    let inspect = skopeo.run(&["inspect", "--cert-dir", cert_dir, &image]);
    assert!(inspect.success() && inspect.stdout.contains("team/app"), "{inspect}");
    // The same pull with a wrong password is refused by Portcullis, over TLS.
    let refused = skopeo.run(&["inspect", "--cert-dir", cert_dir, "--creds", "alice:wrong-password", &image]);
    assert!(!refused.success() && refused.stderr.contains("unauthorized"), "{refused}");
}

#[test]
fn clients_refuse_an_expired_or_wrong_host_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("portcullis test CA");
    // Its own directory: containers/image takes every *.key beside ca.crt for a client key.
    let ca_file = ca.write(&make_dir(dir.path(), "ca"));
    let (registry_cert, registry_key) = ca.issue_loopback_server().write(dir.path(), "registry");
    let cert_dir = ca_file.parent().unwrap().to_str().unwrap().to_string();
    let yesterday = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let cases = [
        ("expired", ca.issue_server(&["127.0.0.1", "localhost"], Some(yesterday)), "expired"),
        ("wrong host", ca.issue_server(&["registry.example"], None), "127.0.0.1"),
    ];
    for (case, server, complaint) in cases {
        let case_dir = make_dir(dir.path(), &case.replace(' ', "-"));
        let (portcullis, _, _) = start_https(&case_dir, &server);
        // The server starts (a renewal may be on its way) but says so.
        if case == "expired" {
            assert!(portcullis.log().contains("has expired"), "{}", portcullis.log());
        }
        let out = curl(&ca_file, &format!("https://{}/healthz", portcullis.addr()), &[]);
        assert_eq!(out.status.code(), Some(60), "{case}: {out}");
        portcullis.add_user("alice", "alice-password-1");
        let registry = Registry::start_tls(portcullis.token_auth(), &registry_cert, &registry_key);
        let login = Skopeo::new().run(&[
            "login",
            "--cert-dir",
            &cert_dir,
            "-u",
            "alice",
            "-p",
            "alice-password-1",
            registry.addr(),
        ]);
        assert!(!login.success(), "{case}: {login}");
        assert!(login.stderr.contains("x509") && login.stderr.contains(complaint), "{case}: {login}");
    }
}

/// A TLS connection that trusts only the test CA, for requests on one kept-alive connection.
struct KeptAlive {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl KeptAlive {
    fn open(addr: &str, ca_pem: &str) -> KeptAlive {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let socket = TcpStream::connect(addr).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut stream = rustls::StreamOwned::new(connection, socket);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).expect("tls handshake");
        }
        KeptAlive { stream }
    }

    /// The serial of the certificate this connection was served.
    fn serial(&self) -> String {
        serial_of_der(self.stream.conn.peer_certificates().expect("a server certificate")[0].as_ref())
    }

    /// `GET /healthz` on this connection; the status line.
    fn get_health(&mut self) -> String {
        self.stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: portcullis\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        // The head, then the body by its length.
        while !answer.ends_with(b"\r\n\r\n") {
            let read = self.stream.read(&mut byte).expect("read the answer");
            assert_eq!(read, 1, "the connection closed: {}", String::from_utf8_lossy(&answer));
            answer.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&answer).to_string();
        let length: usize = head
            .lines()
            .find_map(|line| {
                line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
            })
            .expect("a content-length")
            .parse()
            .unwrap();
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).unwrap();
        head.lines().next().unwrap().to_string()
    }
}

/// Polls new connections until one is served `serial`.
fn wait_for_serial(addr: &str, ca_pem: &str, serial: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if KeptAlive::open(addr, ca_pem).serial() == serial {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn a_replaced_certificate_serves_from_the_next_connection_and_open_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("portcullis test CA");
    let first = ca.issue_loopback_server();
    let (portcullis, cert, key) = start_https(dir.path(), &first);
    let addr = portcullis.addr().to_string();
    let mut open = KeptAlive::open(&addr, &ca.cert_pem);
    assert_eq!(open.serial(), serial_of(&first.cert_pem));
    assert!(open.get_health().contains("200"));

    // Renewed on disk (as cert-manager does): the next connection gets it, no signal needed.
    let second = ca.issue_loopback_server();
    std::fs::write(&key, &second.key_pem).unwrap();
    std::fs::write(&cert, &second.cert_pem).unwrap();
    assert!(
        wait_for_serial(&addr, &ca.cert_pem, &serial_of(&second.cert_pem), Duration::from_secs(10)),
        "the renewed certificate is not served: {}",
        portcullis.log()
    );
    // The connection opened before still answers.
    assert!(open.get_health().contains("200"));

    // A broken pair (a key that does not fit) keeps the certificate served so far.
    let stranger = ca.issue_loopback_server();
    std::fs::write(&key, &stranger.key_pem).unwrap();
    portcullis.wait_for_log("kept the certificate served so far");
    assert_eq!(KeptAlive::open(&addr, &ca.cert_pem).serial(), serial_of(&second.cert_pem));
    // A file that cannot be read (mid-rotation, a volume gone) is reported once, not every 2 s.
    let reports = || portcullis.log().matches("kept the certificate served so far").count();
    let before = reports();
    std::fs::remove_file(&cert).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while reports() == before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(reports(), before + 1, "{}", portcullis.log());
    assert_eq!(KeptAlive::open(&addr, &ca.cert_pem).serial(), serial_of(&second.cert_pem));

    // SIGHUP reloads at once, and says it did.
    let third = ca.issue_loopback_server();
    std::fs::write(&key, &third.key_pem).unwrap();
    std::fs::write(&cert, &third.cert_pem).unwrap();
    portcullis.hang_up();
    assert!(wait_for_serial(&addr, &ca.cert_pem, &serial_of(&third.cert_pem), Duration::from_secs(10)));
    assert!(open.get_health().contains("200"), "the old connection was dropped");
    portcullis.wait_for_log("SIGHUP: reloading");
    // Still the same process: SIGHUP never stops it.
    let mut portcullis = portcullis;
    assert!(portcullis.is_running());
}
