//! A private CNCF distribution registry (Debian's `docker-registry`, v2.8) on a loopback port, with
//! filesystem storage in a temp dir and, normally, token auth pointing at the token server under test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::process::{free_port, http_status, log_file, require_binary, tail, ChildGuard};

/// How long the registry may take to answer `/v2/`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The `auth.token` block of the registry config.
#[derive(Clone, Debug)]
pub struct TokenAuth {
    /// Absolute URL of the token endpoint, sent to clients in the `Bearer realm=` challenge.
    pub realm: String,
    /// Must equal the `aud` of the tokens.
    pub service: String,
    /// Must equal the `iss` of the tokens.
    pub issuer: String,
    /// PEM file with at least one certificate whose key signs the tokens.
    pub rootcertbundle: PathBuf,
}

pub struct Registry {
    /// Held for its Drop, which stops the registry before `dir` is deleted (fields drop in
    /// declaration order).
    daemon: ChildGuard,
    addr: String,
    /// config.yml, registry.log and data/ (the storage root).
    dir: TempDir,
}

impl Registry {
    /// Starts a registry that trusts tokens as `auth` describes; returns once `/v2/` answers (401).
    pub fn start(auth: TokenAuth) -> Registry {
        Registry::start_with(Some(&auth))
    }

    /// Starts a registry without any auth: for checking a client's plumbing, never for access tests.
    pub fn start_without_auth() -> Registry {
        Registry::start_with(None)
    }

    /// Starts a registry like [`Registry::start`] that serves HTTPS with `cert` and `key`.
    pub fn start_tls(auth: TokenAuth, cert: &Path, key: &Path) -> Registry {
        Registry::start_with_tls(Some(&auth), Some((cert, key)))
    }

    /// Starts a registry with the config `config` writes for a listen address and a storage
    /// directory (e.g. an example config with its addresses and paths replaced).
    pub fn start_configured(config: impl Fn(&str, &Path) -> String) -> Registry {
        let binary = require_binary("docker-registry", "docker-registry");
        let dir =
            tempfile::Builder::new().prefix("pc-registry-").tempdir().expect("create a registry temp dir");
        // A free port can be taken by someone else before the registry binds it: retry on a new one.
        for attempt in 1..=3 {
            let addr = format!("127.0.0.1:{}", free_port());
            let path = dir.path().join("config.yml");
            fs::write(&path, config(&addr, &dir.path().join("data")))
                .unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
            let log = dir.path().join("registry.log");
            let mut daemon = spawn(&binary, dir.path());
            match daemon
                .poll_until("answering GET /v2/", START_TIMEOUT, || http_status(&addr, "/v2/").is_some())
            {
                Ok(()) => return Registry { daemon, addr, dir },
                Err(_) if attempt < 3 && tail(&log).contains("address already in use") => continue,
                Err(why) => panic!("{why}; its log {}:\n{}", log.display(), tail(&log)),
            }
        }
        unreachable!("the last attempt returns or panics");
    }

    fn start_with(auth: Option<&TokenAuth>) -> Registry {
        Registry::start_with_tls(auth, None)
    }

    fn start_with_tls(auth: Option<&TokenAuth>, tls: Option<(&Path, &Path)>) -> Registry {
        Registry::start_configured(|addr, data| config_yaml(addr, data, auth, tls))
    }

    /// Stops the registry and starts it again on the same port, storage and config: what an
    /// operator does to make it read a new certificate bundle (registries read it only at start).
    pub fn restart(&mut self) {
        self.daemon.stop();
        let binary = require_binary("docker-registry", "docker-registry");
        self.daemon = spawn(&binary, self.dir.path());
        let addr = self.addr.clone();
        let log = self.dir.path().join("registry.log");
        self.daemon.wait_until("answering GET /v2/ again", START_TIMEOUT, &log, || {
            http_status(&addr, "/v2/").is_some()
        });
    }

    /// `127.0.0.1:PORT`: the registry part of image references (`127.0.0.1:PORT/project/repo:tag`).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The registry's log so far (its access log and errors such as `token signed by untrusted key`).
    pub fn log(&self) -> String {
        let path = self.dir.path().join("registry.log");
        fs::read_to_string(&path).unwrap_or_else(|err| format!("<cannot read {}: {err}>", path.display()))
    }
}

/// `docker-registry serve DIR/config.yml`, logging to DIR/registry.log (started afresh).
fn spawn(binary: &Path, dir: &Path) -> ChildGuard {
    let (stdout, stderr) = log_file(&dir.join("registry.log"));
    let mut command = Command::new(binary);
    command.arg("serve").arg(dir.join("config.yml")).current_dir(dir).stdout(stdout).stderr(stderr);
    // Every REGISTRY_* variable overrides the config (REGISTRY_AUTH_FILE from skopeo/podman
    // breaks it): the registry gets none of them.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("REGISTRY_") {
            command.env_remove(name);
        }
    }
    ChildGuard::spawn("docker-registry", &mut command)
}

/// The registry config. Strings are written as JSON strings, which YAML reads verbatim.
fn config_yaml(addr: &str, data: &Path, auth: Option<&TokenAuth>, tls: Option<(&Path, &Path)>) -> String {
    let quote = |text: &str| serde_json::to_string(text).expect("quote a string as JSON");
    let mut yaml = format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: text\n\
         storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
         \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: {addr}\n  secret: {secret}\n",
        data = quote(&data.to_string_lossy()),
        addr = quote(addr),
        secret = quote("portcullis-test-harness-upload-secret"),
    );
    if let Some((cert, key)) = tls {
        yaml.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            quote(&cert.to_string_lossy()),
            quote(&key.to_string_lossy())
        ));
    }
    if let Some(auth) = auth {
        yaml.push_str(&format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            quote(&auth.realm),
            quote(&auth.service),
            quote(&auth.issuer),
            quote(&auth.rootcertbundle.to_string_lossy()),
        ));
    }
    yaml
}
