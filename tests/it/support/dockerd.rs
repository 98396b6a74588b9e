//! A private dockerd (Debian docker.io 20.10, run as root) and the `docker` CLI pointed at it: its own
//! socket, data root, exec root, managed containerd and client config, all in one short temp dir, so
//! neither the machine's Docker nor the user's ~/.docker is touched. Test images come from
//! `docker import` of a tiny tarball: nothing is ever pulled from the internet.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::oci::{tar, IMAGE_FILE};
use super::process::{require_binary, run, Output};
use super::scratch::{DaemonKind, ScratchDaemon, ScratchDir};

const DOCKERD: DaemonKind = DaemonKind {
    name: "dockerd",
    ready: "answering `docker version`",
    start_timeout: Duration::from_secs(30),
    // dockerd unmounts its data root and stops its containerd on SIGTERM: give it time to.
    stop_grace: Duration::from_secs(15),
};

pub struct Dockerd {
    /// In /tmp/pcd.XXXXXX: data/, exec/ (with the managed containerd), docker.sock, dockerd.log,
    /// client/.
    daemon: ScratchDaemon,
    /// The API socket, `unix://` + this is DOCKER_HOST.
    socket: PathBuf,
    /// DOCKER_CONFIG for every CLI call: config.json with the logins lands here.
    client_config: PathBuf,
}

impl Dockerd {
    /// Starts dockerd without networking or iptables changes, with the vfs storage driver, and waits
    /// until `docker version` reaches it.
    pub fn start() -> Dockerd {
        let dockerd = require_binary("dockerd", "docker.io");
        require_binary("docker", "docker.io");
        require_binary("containerd", "containerd");
        let dir = ScratchDir::new("pcd.");
        let socket = dir.join("docker.sock");
        let client_config = dir.join("client");
        fs::create_dir_all(&client_config).expect("create the docker client config dir");
        // daemon.json keeps /etc/docker/daemon.json out, and moves the daemon's identity key out of
        // /etc/docker (20.10 writes /etc/docker/key.json unless told otherwise).
        let daemon_json = dir.join("daemon.json");
        let key = dir.join("key.json");
        let settings = serde_json::json!({ "deprecated-key-path": key.to_string_lossy() });
        fs::write(&daemon_json, settings.to_string()).expect("write daemon.json");

        let mut command = Command::new(dockerd);
        command
            .arg("--config-file")
            .arg(&daemon_json)
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs"])
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .env_remove("DOCKER_HOST");
        let daemon =
            ScratchDaemon::start(&DOCKERD, dir, &mut command, || server_answers(&socket, &client_config));
        Dockerd { daemon, socket, client_config }
    }

    /// Runs `docker ARGS` against this daemon with a private DOCKER_CONFIG; `stdin` feeds e.g.
    /// `login --password-stdin`.
    pub fn docker(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = self.docker_command();
        command.args(args);
        run(&mut command, stdin.map(str::as_bytes))
    }

    /// `docker login REGISTRY -u USER --password-stdin`.
    pub fn login(&self, registry: &str, user: &str, password: &str) -> Output {
        self.docker(&["login", registry, "--username", user, "--password-stdin"], Some(password))
    }

    /// The CLI's config.json (where `docker login` stores `auth` or `identitytoken`), or `None`
    /// before the first login.
    pub fn config_json(&self) -> Option<String> {
        fs::read_to_string(self.client_config.join("config.json")).ok()
    }

    /// Creates the image `tag` (e.g. `127.0.0.1:5000/project/app:1`) with `docker import` of a
    /// one-file tarball whose content names the tag; returns the image id (`sha256:...`).
    pub fn import_image(&self, tag: &str) -> String {
        let content = format!("portcullis test image {tag}\n");
        let tarball = self.daemon.write_import(&tar(&[(IMAGE_FILE, content.as_bytes())]));
        let output = self.docker(&["import", &tarball, tag], None);
        output.assert_success();
        output.stdout.trim().to_string()
    }

    /// The temp dir holding everything of this daemon (gone after drop).
    pub fn dir(&self) -> &Path {
        self.daemon.dir()
    }

    fn docker_command(&self) -> Command {
        docker_command(&self.socket, &self.client_config)
    }
}

fn docker_command(socket: &Path, client_config: &Path) -> Command {
    let mut command = Command::new("docker");
    command
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .env("DOCKER_CONFIG", client_config)
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH");
    command
}

/// True once `docker version` gets the server's version.
fn server_answers(socket: &Path, client_config: &Path) -> bool {
    let mut probe = docker_command(socket, client_config);
    probe.args(["version", "--format", "{{.Server.Version}}"]);
    probe.output().is_ok_and(|out| out.status.success())
}
