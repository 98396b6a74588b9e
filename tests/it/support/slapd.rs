//! A private OpenLDAP `slapd` (2.5) on loopback: a generated slapd.conf and mdb database in a temp dir,
//! suffix `dc=example,dc=org` (the base entry is added at start), optionally the memberOf overlay and a
//! TLS listener (ldaps:// plus StartTLS) with a CA made for the test; `ldapadd`/`ldapsearch` helpers.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::certs::TestCa;
use super::process::{free_port, log_file, require_binary, run, tail, wait_for_tcp, ChildGuard, Output};

pub const BASE_DN: &str = "dc=example,dc=org";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
pub const ADMIN_PASSWORD: &str = "slapd-admin-secret";

/// How long slapd may take to accept connections (it usually takes well under a second).
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The default password policy of a slapd started with `lockout_after`.
pub const POLICY_DN: &str = "cn=default,ou=policies,dc=example,dc=org";

#[derive(Clone, Copy, Debug, Default)]
pub struct SlapdOptions {
    /// Load the memberof module and configure `overlay memberof` on the database (before any group
    /// is added, which is when the overlay maintains `memberOf` on the members).
    pub memberof: bool,
    /// Serve TLS: an extra `ldaps://` listener and StartTLS on the plain one, with a server
    /// certificate for 127.0.0.1/localhost issued by a CA whose certificate is `ca_cert_path()`.
    pub tls: bool,
    /// Lock an account after this many failed binds, as Active Directory sites do: the ppolicy
    /// overlay with a default policy (`pwdMaxFailure`, `pwdLockout TRUE`), which
    /// `Slapd::start` adds.
    pub lockout_after: Option<u32>,
}

pub struct Slapd {
    /// Stopped before `dir` is deleted (fields drop in declaration order).
    daemon: ChildGuard,
    port: u16,
    /// Set when started with `tls`.
    tls_port: Option<u16>,
    /// Set when started with `tls`: the CA certificate clients must trust.
    ca_cert: Option<PathBuf>,
    /// slapd.conf, db/, slapd.log, certificates.
    dir: TempDir,
}

impl Slapd {
    /// Starts slapd in the foreground (`-d stats`: it logs every operation to slapd.log) and adds the
    /// base entry `dc=example,dc=org`.
    pub fn start(options: SlapdOptions) -> Slapd {
        let binary = require_binary("slapd", "slapd");
        require_binary("ldapadd", "ldap-utils");
        let dir = tempfile::Builder::new().prefix("pc-slapd-").tempdir().expect("create a slapd temp dir");
        fs::create_dir_all(dir.path().join("db")).expect("create the slapd database dir");
        let ca_cert = options.tls.then(|| write_tls_files(dir.path()));
        let config = dir.path().join("slapd.conf");
        fs::write(&config, slapd_conf(dir.path(), options))
            .unwrap_or_else(|err| panic!("write {}: {err}", config.display()));

        // A free port can be taken by someone else before slapd binds it: retry on a new one.
        for attempt in 1..=3 {
            let port = free_port();
            let tls_port = options.tls.then(free_port);
            let mut listeners = format!("ldap://127.0.0.1:{port}/");
            if let Some(tls_port) = tls_port {
                listeners.push_str(&format!(" ldaps://127.0.0.1:{tls_port}/"));
            }
            let log = dir.path().join("slapd.log");
            let (stdout, stderr) = log_file(&log);
            let mut command = Command::new(&binary);
            command
                .arg("-f")
                .arg(&config)
                .args(["-h", &listeners, "-d", "stats"])
                .stdout(stdout)
                .stderr(stderr);
            let mut daemon = ChildGuard::spawn("slapd", &mut command);
            // A connect alone can reach another process that took the port between free_port()
            // and slapd's bind; slapd's own "slapd starting" line says it holds its listeners.
            let listening = || {
                let addr = |port: u16| format!("127.0.0.1:{port}");
                tail(&log).contains("slapd starting")
                    && wait_for_tcp(&addr(port), Duration::ZERO)
                    && tls_port.is_none_or(|p| wait_for_tcp(&addr(p), Duration::ZERO))
            };
            match daemon.poll_until("accepting connections", START_TIMEOUT, listening) {
                Ok(()) => {}
                Err(_) if attempt < 3 && tail(&log).contains("Address already in use") => continue,
                Err(why) => panic!("{why}; its log {}:\n{}", log.display(), tail(&log)),
            }
            let slapd = Slapd { daemon, port, tls_port, ca_cert, dir };
            let base = format!(
                "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n"
            );
            let mut added = slapd.ldapadd(&base);
            for _ in 0..3 {
                if added.success() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
                added = slapd.ldapadd(&base);
            }
            assert!(added.success(), "adding the base entry failed:\n{added}\nslapd log:\n{}", slapd.log());
            if let Some(failures) = options.lockout_after {
                let policy = format!(
                    "dn: ou=policies,{BASE_DN}\nobjectClass: organizationalUnit\nou: policies\n\n\
                     dn: {POLICY_DN}\nobjectClass: device\nobjectClass: pwdPolicy\ncn: default\n\
                     pwdAttribute: userPassword\npwdMaxFailure: {failures}\npwdLockout: TRUE\n\
                     pwdLockoutDuration: 0\npwdFailureCountInterval: 0\n"
                );
                let added = slapd.ldapadd(&policy);
                assert!(added.success(), "adding the password policy failed:\n{added}\n{}", slapd.log());
            }
            return slapd;
        }
        unreachable!("the last attempt returns or panics");
    }

    /// `ldap://127.0.0.1:PORT/` (StartTLS works on it when started with `tls`).
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}/", self.port)
    }

    /// `ldaps://127.0.0.1:PORT/`. Panics unless started with `SlapdOptions { tls: true, .. }`.
    pub fn ldaps_url(&self) -> String {
        let port = self.tls_port.expect("ldaps_url() needs Slapd::start(SlapdOptions { tls: true, .. })");
        format!("ldaps://127.0.0.1:{port}/")
    }

    /// The PEM certificate of the CA that issued slapd's server certificate. Panics unless started
    /// with `tls`.
    pub fn ca_cert_path(&self) -> &Path {
        self.ca_cert.as_deref().expect("ca_cert_path() needs Slapd::start(SlapdOptions { tls: true, .. })")
    }

    /// Runs an OpenLDAP client tool (`ldapsearch`, `ldapwhoami`, ...) with `args` as given (pass `-H`
    /// yourself); when slapd serves TLS the tool trusts its CA (`LDAPTLS_CACERT`).
    pub fn tool(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(program);
        command.args(args).env_remove("LDAPTLS_REQCERT");
        if let Some(ca) = &self.ca_cert {
            command.env("LDAPTLS_CACERT", ca).env("LDAPTLS_REQCERT", "demand");
        }
        run(&mut command, stdin.map(str::as_bytes))
    }

    /// `ldapadd -x -D ADMIN_DN -w ADMIN_PASSWORD -H url()` with `ldif` on stdin.
    pub fn ldapadd(&self, ldif: &str) -> Output {
        let url = self.url();
        self.tool("ldapadd", &["-x", "-D", ADMIN_DN, "-w", ADMIN_PASSWORD, "-H", &url], Some(ldif))
    }

    /// `ldapsearch -LLL` as the admin below `base`; name operational attributes such as `memberOf`
    /// in `attrs` to see them.
    pub fn ldapsearch(&self, base: &str, filter: &str, attrs: &[&str]) -> Output {
        let url = self.url();
        let mut args =
            vec!["-LLL", "-x", "-D", ADMIN_DN, "-w", ADMIN_PASSWORD, "-H", &url, "-b", base, filter];
        args.extend_from_slice(attrs);
        self.tool("ldapsearch", &args, None)
    }

    /// `ldapwhoami` bound as `dn` with `password`: succeeds only for valid credentials.
    pub fn ldapwhoami(&self, dn: &str, password: &str) -> Output {
        let url = self.url();
        self.tool("ldapwhoami", &["-x", "-D", dn, "-w", password, "-H", &url], None)
    }

    /// slapd's log so far (`-d stats`: one line per connection and operation).
    pub fn log(&self) -> String {
        tail(&self.dir.path().join("slapd.log"))
    }

    /// Stops slapd now, e.g. to test an unreachable directory (it is also stopped on drop).
    pub fn stop(&mut self) {
        self.daemon.stop();
    }
}

/// Writes ca.crt, server.crt and server.key into `dir`; returns the CA certificate's path.
fn write_tls_files(dir: &Path) -> PathBuf {
    let ca = TestCa::new("Portcullis test LDAP CA");
    let ca_path = dir.join("ca.crt");
    fs::write(&ca_path, &ca.cert_pem).unwrap_or_else(|err| panic!("write {}: {err}", ca_path.display()));
    ca.issue_loopback_server().write(dir, "server");
    ca_path
}

fn slapd_conf(dir: &Path, options: SlapdOptions) -> String {
    let path = |name: &str| dir.join(name).display().to_string();
    let mut conf = String::new();
    for schema in ["core", "cosine", "inetorgperson", "nis"] {
        conf.push_str(&format!("include /etc/ldap/schema/{schema}.schema\n"));
    }
    conf.push_str(&format!("pidfile {}\nargsfile {}\n", path("slapd.pid"), path("slapd.args")));
    conf.push_str("modulepath /usr/lib/ldap\nmoduleload back_mdb\n");
    if options.memberof {
        conf.push_str("moduleload memberof\n");
    }
    if options.lockout_after.is_some() {
        conf.push_str("moduleload ppolicy\n");
    }
    if options.tls {
        conf.push_str(&format!(
            "TLSCACertificateFile {}\nTLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
            path("ca.crt"),
            path("server.crt"),
            path("server.key"),
        ));
    }
    conf.push_str(&format!(
        "database mdb\n\
         maxsize 67108864\n\
         suffix \"{BASE_DN}\"\n\
         rootdn \"{ADMIN_DN}\"\n\
         rootpw {ADMIN_PASSWORD}\n\
         directory {}\n\
         access to attrs=userPassword by self write by anonymous auth by * none\n\
         access to * by * read\n",
        path("db"),
    ));
    if options.memberof {
        // Keep memberOf right when a member entry is renamed or deleted.
        conf.push_str("overlay memberof\nmemberof-refint TRUE\n");
    }
    if options.lockout_after.is_some() {
        conf.push_str(&format!("overlay ppolicy\nppolicy_default \"{POLICY_DN}\"\nppolicy_use_lockout\n"));
    }
    conf
}
