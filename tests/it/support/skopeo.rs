//! `skopeo` (containers/image, the library podman and buildah share) confined to a temp dir: its own
//! TMPDIR, auth file (`REGISTRY_AUTH_FILE`), registries config and an accept-everything signature
//! policy, with TLS verification off for plain HTTP on loopback. Every call returns its `Output`.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

use super::process::{require_binary, run, Output};

pub struct Skopeo {
    /// policy.json, auth.json, registries.conf, registries.d/, tmp/.
    dir: TempDir,
}

impl Skopeo {
    pub fn new() -> Skopeo {
        require_binary("skopeo", "skopeo");
        let dir = tempfile::Builder::new().prefix("pc-skopeo-").tempdir().expect("create a skopeo temp dir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            fs::write(&path, text).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
        };
        // Signature policy: accept anything (the default /etc/containers/policy.json may not exist).
        write("policy.json", r#"{"default":[{"type":"insecureAcceptAnything"}]}"#);
        // No search registries and no mirrors: only what the test names is contacted.
        write("registries.conf", "unqualified-search-registries = []\n");
        for sub in ["registries.d", "tmp"] {
            fs::create_dir_all(dir.path().join(sub)).expect("create a skopeo temp subdir");
        }
        Skopeo { dir }
    }

    /// `REGISTRY_AUTH_FILE`: where `login` stores credentials (absent until then).
    pub fn auth_file(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }

    /// Runs `skopeo --policy ... --registries.d ... ARGS` in the private environment.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut command = self.command();
        command.args(args);
        run(&mut command, None)
    }

    /// `skopeo` with the global flags and environment that keep it inside the temp dir.
    fn command(&self) -> Command {
        let dir = self.dir.path();
        let mut command = Command::new("skopeo");
        command
            .arg("--policy")
            .arg(dir.join("policy.json"))
            .arg("--registries.d")
            .arg(dir.join("registries.d"))
            .env("TMPDIR", dir.join("tmp"))
            .env("REGISTRY_AUTH_FILE", self.auth_file())
            .env("CONTAINERS_REGISTRIES_CONF", dir.join("registries.conf"))
            .env_remove("CONTAINERS_CONF")
            .env_remove("DOCKER_CONFIG");
        command
    }

    /// `skopeo copy SRC DST`, with `creds` (user, password) for whichever side is `docker://`.
    pub fn copy(&self, src: &str, dst: &str, creds: Option<(&str, &str)>) -> Output {
        let creds = creds.map(|(user, password)| format!("{user}:{password}"));
        let mut args = vec!["copy", "--src-tls-verify=false", "--dest-tls-verify=false"];
        if let Some(creds) = &creds {
            if src.starts_with("docker://") {
                args.extend(["--src-creds", creds]);
            }
            if dst.starts_with("docker://") {
                args.extend(["--dest-creds", creds]);
            }
        }
        args.extend([src, dst]);
        self.run(&args)
    }

    /// `skopeo inspect IMAGE` (e.g. `docker://127.0.0.1:PORT/p/r:tag` or `oci:DIR:tag`).
    pub fn inspect(&self, image: &str, creds: Option<(&str, &str)>) -> Output {
        self.with_creds(&["inspect", "--tls-verify=false"], image, creds)
    }

    /// `skopeo delete IMAGE`: asks the token server for `repository:P/R:*`.
    pub fn delete(&self, image: &str, creds: Option<(&str, &str)>) -> Output {
        self.with_creds(&["delete", "--tls-verify=false"], image, creds)
    }

    /// `skopeo list-tags docker://REGISTRY/REPO`.
    pub fn list_tags(&self, repository: &str, creds: Option<(&str, &str)>) -> Output {
        self.with_creds(&["list-tags", "--tls-verify=false"], repository, creds)
    }

    /// `skopeo login REGISTRY -u USER --password-stdin` into the private auth file.
    pub fn login(&self, registry: &str, user: &str, password: &str) -> Output {
        let mut command = self.command();
        command.args(["login", "--tls-verify=false", "--username", user, "--password-stdin", registry]);
        run(&mut command, Some(password.as_bytes()))
    }

    fn with_creds(&self, command: &[&str], image: &str, creds: Option<(&str, &str)>) -> Output {
        let creds = creds.map(|(user, password)| format!("{user}:{password}"));
        let mut args = command.to_vec();
        if let Some(creds) = &creds {
            args.extend(["--creds", creds]);
        }
        args.push(image);
        self.run(&args)
    }
}

impl Default for Skopeo {
    fn default() -> Skopeo {
        Skopeo::new()
    }
}
