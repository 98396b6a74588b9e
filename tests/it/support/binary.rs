//! The real `portcullis` binary under test. `Admin` is a data dir of its own and the CLI run
//! against it, as an admin would; `Portcullis` is `serve` on a loopback port over such a data dir,
//! and is also its `Admin` (it derefs to it), so `server.cli(...)` changes what the running server
//! sees. Requests go through `support::http`.
//!
//! Tests start the compiled binary rather than calling the library, so that what is tested is
//! what users run: the config loading, first-run set-up and the listener included.
//!
//! With `PORTCULLIS_IT_DATABASE=postgres` in the environment every `Admin` gets a fresh database
//! of its own on a private PostgreSQL cluster instead of a SQLite file, so the same tests run on
//! both backends (`scripts/test.sh` runs the token endpoint's that way too). On PostgreSQL a
//! change reaches a running server within a second, not at its very next request: after each
//! CLI command the harness waits until the server has confirmed the change log's new head
//! (`portcullis_change_log_head`), so that the tests' "change, then ask" holds on both.

use std::ops::Deref;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::http::{self, basic, HttpResponse};
use super::process::{free_port, log_file, run, tail, wait_for_tcp, ChildGuard, Output};
use super::registry::TokenAuth;

/// The first admin's name and password in every test server.
pub const ADMIN: (&str, &str) = ("admin", "admin-password-1");
/// The service (audience) every test server issues for, and the registry host of the CLI's
/// `docker login` lines.
pub const SERVICE: &str = "registry.test";
pub const ISSUER: &str = "portcullis-test";

/// A data dir and the settings every `portcullis` command against it gets: the CLI as an admin
/// runs it, with or without a server.
pub struct Admin {
    /// The data dir (database, key, certificate) is `data/` inside; serve.log lies beside it.
    dir: TempDir,
    /// `PORTCULLIS_*` settings of the data dir itself: where it is, the service and issuer, and
    /// argon2id at a reduced cost (4 MiB, one pass) so that suites with many logins stay fast; the
    /// algorithm and code are the same.
    base: Vec<(String, String)>,
    /// The extra settings it was made with (`with_settings`, `Portcullis::start_with`).
    settings: Vec<(String, String)>,
    /// The PostgreSQL database the harness gave it (see the module header), if any.
    postgres: Option<String>,
}

/// The backend `PORTCULLIS_IT_DATABASE` asks every test for: `None` for SQLite (the default),
/// or a fresh PostgreSQL database's URL.
fn test_database() -> Option<String> {
    match std::env::var("PORTCULLIS_IT_DATABASE").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => None,
        Ok("postgres") => Some(super::postgres::shared_database()),
        Ok(other) => panic!("PORTCULLIS_IT_DATABASE={other:?}: use sqlite or postgres"),
    }
}

impl Admin {
    /// A fresh data dir with test defaults.
    pub fn new() -> Admin {
        Admin::with_settings::<&str, &str>(&[])
    }

    /// A fresh data dir with extra `PORTCULLIS_*` settings (they replace defaults of the same name).
    pub fn with_settings<K: AsRef<str>, V: AsRef<str>>(settings: &[(K, V)]) -> Admin {
        let dir = tempfile::Builder::new().prefix("pc-portcullis-").tempdir().expect("create a data dir");
        let base = [
            ("PORTCULLIS_DATA_DIR", dir.path().join("data").display().to_string()),
            ("PORTCULLIS_TOKEN__SERVICES", SERVICE.to_string()),
            ("PORTCULLIS_TOKEN__ISSUER", ISSUER.to_string()),
            ("PORTCULLIS_PASSWORDS__MEMORY_KIB", "4096".to_string()),
            ("PORTCULLIS_PASSWORDS__ITERATIONS", "1".to_string()),
            // Short passwords keep the tests readable; the policy has a test of its own.
            ("PORTCULLIS_PASSWORDS__MIN_LENGTH", "1".to_string()),
            ("PORTCULLIS_LOG", "info,portcullis=debug".to_string()),
        ];
        let mut base: Vec<(String, String)> = base.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let settings = owned(settings);
        // A test that chose its database keeps it (and is waited for on PostgreSQL all the same).
        let chosen =
            settings.iter().find(|(name, _)| name == "PORTCULLIS_DATABASE").map(|(_, url)| url.clone());
        let postgres = match &chosen {
            Some(url) => Some(url.clone()).filter(|url| url.starts_with("postgres")),
            None => test_database(),
        };
        if let (None, Some(url)) = (&chosen, &postgres) {
            base.push(("PORTCULLIS_DATABASE".to_string(), url.clone()));
        }
        let admin = Admin { dir, base, settings, postgres };
        // Only `serve` and `init` create a database; every other command needs one. (A data dir
        // made with settings that do not load stays empty: its commands fail as they should.)
        let mut init = admin.command(&admin.settings);
        init.arg("init").env("PORTCULLIS_ADMIN_PASSWORD", ADMIN.1);
        let _ = run(&mut init, None);
        admin
    }

    /// `https` when the settings give a `[tls]` certificate, else `http`.
    pub fn scheme(&self) -> &'static str {
        let tls = self.settings.iter().any(|(name, _)| name == "PORTCULLIS_TLS__CERT_FILE");
        if tls {
            "https"
        } else {
            "http"
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `portcullis` with this data dir's settings and `settings` on top, and no others: no
    /// `PORTCULLIS_*` variable of the environment the tests run in leaks in.
    fn command(&self, settings: &[(String, String)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PORTCULLIS_") {
                command.env_remove(name);
            }
        }
        command.envs(self.base.iter().cloned()).envs(settings.iter().cloned());
        command
    }

    /// The command `cli` would run for `args`, unstarted (to run it under another tool).
    pub fn command_for(&self, args: &[&str]) -> Command {
        let mut command = self.command(&self.settings);
        command.args(args);
        command
    }

    /// Runs `portcullis ARGS` against this data dir, `stdin` fed to it (e.g. `--password-stdin`).
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = self.command(&self.settings);
        command.args(args);
        let output = run(&mut command, stdin.map(str::as_bytes));
        self.wait_for_server();
        output
    }

    /// On PostgreSQL, with a server running on this data dir: returns once the server has
    /// confirmed the change log's head as it is now (what a SQLite server sees at once).
    fn wait_for_server(&self) {
        let Some(url) = &self.postgres else { return };
        let Some((_, addr)) = self.base.iter().find(|(name, _)| name == "PORTCULLIS_LISTEN") else { return };
        let psql = super::process::require_binary("psql", "postgresql-client");
        let head = run(
            Command::new(psql).args([
                url.as_str(),
                "-Atc",
                "SELECT COALESCE(MAX(seq), 0) FROM access_changes",
            ]),
            None,
        );
        let head: i64 = head.assert_success().stdout.trim().parse().expect("the change log's head");
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            let metrics = http::request(addr, "GET", "/metrics", &[], b"");
            let confirmed = metrics
                .body
                .lines()
                .find_map(|line| line.strip_prefix("portcullis_change_log_head "))
                .and_then(|value| value.trim().parse::<i64>().ok());
            if confirmed.is_some_and(|confirmed| confirmed >= head) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not follow entry {head} within 2 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Like `cli`, but with `settings` in place of the extra settings the data dir was made with
    /// (the data dir, service and argon2 cost stay): e.g. `ldap test` with another directory
    /// configuration than the running server's.
    pub fn cli_with<K: AsRef<str>, V: AsRef<str>>(
        &self,
        settings: &[(K, V)],
        args: &[&str],
        stdin: Option<&str>,
    ) -> Output {
        let mut command = self.command(&owned(settings));
        command.args(args);
        let output = run(&mut command, stdin.map(str::as_bytes));
        self.wait_for_server();
        output
    }

    /// Runs a command that must succeed; returns its standard output.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        self.cli(args, None).assert_success().stdout.clone()
    }

    /// Runs a command that must fail; returns its standard error.
    #[track_caller]
    pub fn fails(&self, args: &[&str]) -> String {
        self.cli(args, None).assert_failure().stderr.clone()
    }

    /// Runs a `... --json` command that must succeed; returns what it printed, parsed.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> Value {
        let output = self.cli(args, None);
        output.assert_success();
        serde_json::from_str(&output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{output}"))
    }

    /// `user add NAME --password-stdin`, asserting success.
    pub fn add_user(&self, name: &str, password: &str) {
        self.cli(&["user", "add", name, "--password-stdin"], Some(&format!("{password}\n"))).assert_success();
    }

    /// `project create NAME [--public]`, asserting success.
    pub fn create_project(&self, name: &str, public: bool) {
        let mut args = vec!["project", "create", name];
        if public {
            args.push("--public");
        }
        self.cli(&args, None).assert_success();
    }

    /// `member add PROJECT USER --role ROLE` (also changes an existing member's role).
    pub fn add_member(&self, project: &str, user: &str, role: &str) {
        self.cli(&["member", "add", project, user, "--role", role], None).assert_success();
    }
}

fn owned<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string())).collect()
}

/// `portcullis serve` on a loopback port, stopped when dropped; also the `Admin` of its data dir.
pub struct Portcullis {
    /// Stopped before the data dir is deleted (fields drop in declaration order).
    daemon: ChildGuard,
    addr: String,
    admin: Admin,
}

impl Deref for Portcullis {
    type Target = Admin;

    /// The CLI against the server's database and settings.
    fn deref(&self) -> &Admin {
        &self.admin
    }
}

impl Portcullis {
    /// Starts a server with test defaults.
    pub fn start() -> Portcullis {
        Portcullis::start_with::<&str, &str>(&[])
    }

    /// Starts a server with extra `PORTCULLIS_*` settings (they replace defaults of the same
    /// name); CLI calls through it get the same settings.
    pub fn start_with<K: AsRef<str>, V: AsRef<str>>(settings: &[(K, V)]) -> Portcullis {
        Portcullis::start_on(Admin::with_settings(settings))
    }

    /// Starts a server on a data dir an admin prepared with the CLI (what a server finds at
    /// start), with the settings `admin` was made with.
    pub fn start_on(mut admin: Admin) -> Portcullis {
        let log = admin.dir.path().join("serve.log");
        // A free port can be taken by someone else before portcullis binds it: retry on a new one.
        for attempt in 1..=3 {
            let addr = format!("127.0.0.1:{}", free_port());
            let listen = [("PORTCULLIS_LISTEN".to_string(), addr.clone())];
            let (stdout, stderr) = log_file(&log);
            let mut command = admin.command(&[listen.as_slice(), &admin.settings].concat());
            command.arg("serve").env("PORTCULLIS_ADMIN_PASSWORD", ADMIN.1).stdout(stdout).stderr(stderr);
            let mut daemon = ChildGuard::spawn("portcullis", &mut command);
            // Its own "listening" line, not just a connect, which another process could answer.
            let listening = format!("portcullis listening on {}://{addr}", admin.scheme());
            let ready = || tail(&log).contains(&listening) && wait_for_tcp(&addr, Duration::ZERO);
            match daemon.poll_until("portcullis to listen", Duration::from_secs(20), ready) {
                Ok(()) => {
                    // The CLI sees the configuration the server runs with, the address included.
                    admin.base.extend(listen);
                    return Portcullis { daemon, addr, admin };
                }
                Err(_) if attempt < 3 && tail(&log).contains("cannot listen") => continue,
                Err(why) => panic!("{why}; its log {}:\n{}", log.display(), tail(&log)),
            }
        }
        unreachable!("the last attempt returns or panics");
    }

    /// `host:port` the server listens on (loopback).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn realm(&self) -> String {
        format!("{}://{}/token", self.scheme(), self.addr)
    }

    /// Waits (at most 10 s) until the server has logged `text`; panics with its log if not.
    #[track_caller]
    pub fn wait_for_log(&self, text: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self.log().contains(text) {
            assert!(std::time::Instant::now() < deadline, "no {text:?} in the log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends the server SIGHUP (reload), as `kill -HUP` would.
    pub fn hang_up(&self) {
        let pid = self.daemon.pid().expect("the server is running");
        // SAFETY: kill only sends a signal to the process id given.
        let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
        assert_eq!(sent, 0, "SIGHUP to {pid}: {}", std::io::Error::last_os_error());
    }

    pub fn certificate_path(&self) -> PathBuf {
        self.data_dir().join("token.pem")
    }

    /// The registry's `auth.token` block for this server.
    pub fn token_auth(&self) -> TokenAuth {
        TokenAuth {
            realm: self.realm(),
            service: SERVICE.into(),
            issuer: ISSUER.into(),
            rootcertbundle: self.certificate_path(),
        }
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        tail(&self.admin.dir.path().join("serve.log"))
    }

    /// Kills the server at once, as `kill -9` does: no shutdown, its connections reset.
    pub fn kill(&mut self) {
        let pid = self.daemon.pid().expect("the server is running");
        assert!(super::process::send_signal(pid, "KILL"), "kill -9 {pid}");
        while self.daemon.exit_status().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether the server process is still running (it must survive every bad request).
    pub fn is_running(&mut self) -> bool {
        self.daemon.exit_status().is_none()
    }

    /// `GET /token?QUERY` with optional Basic credentials, as docker and skopeo ask.
    pub fn token(&self, query: &str, credentials: Option<(&str, &str)>) -> HttpResponse {
        let authorization = credentials.map(|(user, password)| basic(user, password));
        let headers: Vec<(&str, &str)> =
            authorization.iter().map(|value| ("Authorization", value.as_str())).collect();
        self.request("GET", &format!("/token?{query}"), &headers, b"")
    }

    /// `POST /token` with `form` as containerd sends it: form content type with a charset.
    pub fn post_form(&self, form: &str) -> HttpResponse {
        self.post("application/x-www-form-urlencoded; charset=utf-8", form.as_bytes())
    }

    /// `POST /token` with any content type and body.
    pub fn post(&self, content_type: &str, body: &[u8]) -> HttpResponse {
        self.request("POST", "/token", &[("Content-Type", content_type)], body)
    }

    /// A well-formed request (see `http::request`).
    pub fn request(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
        http::request(&self.addr, method, target, headers, body)
    }

    /// Sends `bytes` as they are (see `http::send_raw`): for requests no HTTP client would make.
    pub fn send_raw(&self, bytes: &[u8]) -> HttpResponse {
        http::send_raw(&self.addr, bytes)
    }
}
