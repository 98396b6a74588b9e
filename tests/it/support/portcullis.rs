//! The real `portcullis` binary under test: `serve` on a loopback port with its own data dir, the
//! CLI against the same database, and a raw HTTP client for the token endpoint.
//!
//! Tests start the compiled binary rather than calling the library, so that what is tested is
//! what users run: the config loading, first-run set-up and the listener included.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::process::{free_port, log_file, run, tail, wait_for_tcp, ChildGuard, Output};
use super::registry::TokenAuth;

/// The first admin's name and password in every test server.
pub const ADMIN: (&str, &str) = ("admin", "admin-password-1");
/// The service (audience) every test server issues for.
pub const SERVICE: &str = "registry.test";
pub const ISSUER: &str = "portcullis-test";

pub struct Portcullis {
    /// Stopped before `dir` is deleted (fields drop in declaration order).
    daemon: ChildGuard,
    addr: String,
    /// Data dir (database, key, certificate) and serve.log.
    dir: TempDir,
    /// PORTCULLIS_* settings shared by the server and every CLI call.
    env: Vec<(String, String)>,
}

impl Portcullis {
    /// Starts a server with test defaults.
    pub fn start() -> Portcullis {
        Portcullis::start_with(&[])
    }

    /// Starts a server with extra `PORTCULLIS_*` settings. argon2id runs at a reduced cost (4 MiB,
    /// one pass) so that suites with many logins stay fast; the algorithm and code are the same.
    pub fn start_with(extra: &[(&str, &str)]) -> Portcullis {
        let dir = tempfile::Builder::new().prefix("pc-portcullis-").tempdir().expect("create a data dir");
        // A free port can be taken by someone else before portcullis binds it: retry on a new one.
        for attempt in 1..=3 {
            let addr = format!("127.0.0.1:{}", free_port());
            let mut env: Vec<(String, String)> = vec![
                ("PORTCULLIS_LISTEN".into(), addr.clone()),
                ("PORTCULLIS_DATA_DIR".into(), dir.path().join("data").display().to_string()),
                ("PORTCULLIS_TOKEN__SERVICES".into(), SERVICE.into()),
                ("PORTCULLIS_TOKEN__ISSUER".into(), ISSUER.into()),
                ("PORTCULLIS_PASSWORDS__MEMORY_KIB".into(), "4096".into()),
                ("PORTCULLIS_PASSWORDS__ITERATIONS".into(), "1".into()),
                ("PORTCULLIS_LOG".into(), "info,portcullis=debug".into()),
            ];
            for (key, value) in extra {
                env.retain(|(k, _)| k != key);
                env.push((key.to_string(), value.to_string()));
            }
            let log = dir.path().join("serve.log");
            let (stdout, stderr) = log_file(&log);
            let mut command = Command::new(binary());
            command.arg("serve").envs(env.iter().cloned()).env("PORTCULLIS_ADMIN_PASSWORD", ADMIN.1);
            command.stdout(stdout).stderr(stderr);
            let mut daemon = ChildGuard::spawn("portcullis", &mut command);
            // Its own "listening" line, not just a connect, which another process could answer.
            let listening = format!("portcullis listening on http://{addr}");
            let ready = || tail(&log).contains(&listening) && wait_for_tcp(&addr, Duration::ZERO);
            match daemon.poll_until("portcullis to listen", Duration::from_secs(20), ready) {
                Ok(()) => return Portcullis { daemon, addr, dir, env },
                Err(_) if attempt < 3 && tail(&log).contains("cannot listen") => continue,
                Err(why) => panic!("{why}; its log {}:\n{}", log.display(), tail(&log)),
            }
        }
        unreachable!("the last attempt returns or panics");
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn certificate_path(&self) -> PathBuf {
        self.dir.path().join("data").join("token.pem")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
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
        tail(&self.dir.path().join("serve.log"))
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("serve.log")
    }

    /// Whether the server process is still running (it must survive every bad request).
    pub fn is_running(&mut self) -> bool {
        self.daemon.exit_status().is_none()
    }

    /// Runs `portcullis ARGS` against this server's database, as an admin would.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(binary());
        command.args(args).envs(self.env.iter().cloned());
        run(&mut command, stdin.map(str::as_bytes))
    }

    /// `user add NAME --password-stdin`, asserting success.
    pub fn add_user(&self, name: &str, password: &str) {
        self.cli(&["user", "add", name, "--password-stdin"], Some(&format!("{password}\n"))).assert_success();
    }

    pub fn create_project(&self, name: &str, public: bool) {
        let mut args = vec!["project", "create", name];
        if public {
            args.push("--public");
        }
        self.cli(&args, None).assert_success();
    }

    pub fn add_member(&self, project: &str, user: &str, role: &str) {
        self.cli(&["member", "add", project, user, "--role", role], None).assert_success();
    }

    /// `GET /token?QUERY` with optional Basic credentials.
    pub fn token(&self, query: &str, credentials: Option<(&str, &str)>) -> HttpResponse {
        let mut headers = Vec::new();
        if let Some((user, password)) = credentials {
            headers.push(format!("Authorization: {}", basic(user, password)));
        }
        let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        self.request("GET", &format!("/token?{query}"), &header_refs, b"")
    }

    /// Sends one raw HTTP/1.1 request (`Connection: close`) and reads the whole answer.
    pub fn request(&self, method: &str, target: &str, headers: &[&str], body: &[u8]) -> HttpResponse {
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        for header in headers {
            head.push_str(header);
            head.push_str("\r\n");
        }
        if !body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        send_raw(&self.addr, &bytes)
    }
}

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

/// A parsed HTTP answer.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// The decoded claims of the `token` in a 200 answer.
    pub fn claims(&self) -> serde_json::Value {
        use base64::Engine;
        let json = self.json();
        let token = json["token"].as_str().unwrap_or_else(|| panic!("no token in {}", self.body));
        let payload = token.split('.').nth(1).expect("a JWT has three parts");
        let bytes =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
        serde_json::from_slice(&bytes).expect("JSON claims")
    }

    /// The granted access as `type:name:actions` strings, actions sorted.
    pub fn access(&self) -> Vec<String> {
        let claims = self.claims();
        let entries = claims["access"].as_array().cloned().unwrap_or_default();
        entries
            .iter()
            .map(|entry| {
                let mut actions: Vec<&str> =
                    entry["actions"].as_array().into_iter().flatten().filter_map(|a| a.as_str()).collect();
                actions.sort();
                format!(
                    "{}:{}:{}",
                    entry["type"].as_str().unwrap_or(""),
                    entry["name"].as_str().unwrap_or(""),
                    actions.join(",")
                )
            })
            .collect()
    }

    /// The registry error code of a refusal, checking the error JSON's shape on the way.
    pub fn error_code(&self) -> String {
        let json = self.json();
        assert_eq!(self.header("content-type"), Some("application/json"), "{self:?}");
        json["errors"][0]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.body))
            .to_string()
    }
}

/// Writes `bytes` to `addr` and reads the answer until the server closes the connection.
pub fn send_raw(addr: &str, bytes: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("set a read timeout");
    // The server may answer (and close) before reading everything, e.g. for an oversized head.
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    if let Err(error) = stream.read_to_end(&mut answer) {
        if answer.is_empty() {
            panic!("no answer from {addr}: {error}");
        }
    }
    parse_response(&answer)
}

fn parse_response(answer: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head in {text:?}"));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    HttpResponse { status, headers, body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
