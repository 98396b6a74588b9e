//! A private containerd (1.6, CRI plugin disabled) with its root, state and sockets in a short temp dir,
//! and the `ctr` client pointed at it: import an image made in Rust, push it to a registry over plain
//! HTTP with `--user`, pull with the `native` snapshotter (nothing gets mounted).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::oci::OciImage;
use super::process::{require_binary, run, Output};
use super::scratch::{DaemonKind, ScratchDaemon, ScratchDir};

const CONTAINERD: DaemonKind = DaemonKind {
    name: "containerd",
    ready: "answering `ctr version`",
    start_timeout: Duration::from_secs(20),
    // containerd stops its plugins on SIGTERM.
    stop_grace: Duration::from_secs(10),
};

pub struct Containerd {
    /// In /tmp/pcc.XXXXXX: config.toml, root/, state/, containerd.sock, containerd.log.
    daemon: ScratchDaemon,
    /// The gRPC socket `ctr --address` talks to.
    socket: PathBuf,
}

impl Containerd {
    /// Starts containerd and waits until `ctr version` reaches it.
    pub fn start() -> Containerd {
        let binary = require_binary("containerd", "containerd");
        require_binary("ctr", "containerd");
        let dir = ScratchDir::new("pcc.");
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        let quote = |path: PathBuf| serde_json::to_string(&path.to_string_lossy()).expect("quote a path");
        // TOML basic strings and JSON strings escape alike.
        let toml = format!(
            "version = 2\n\
             root = {root}\n\
             state = {state}\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = {grpc}\n\
             [ttrpc]\n  address = {ttrpc}\n\
             [debug]\n  address = {debug}\n",
            root = quote(dir.join("root")),
            state = quote(dir.join("state")),
            grpc = quote(socket.clone()),
            ttrpc = quote(dir.join("containerd.sock.ttrpc")),
            debug = quote(dir.join("debug.sock")),
        );
        fs::write(&config, toml).unwrap_or_else(|err| panic!("write {}: {err}", config.display()));

        let mut command = Command::new(binary);
        command.arg("--config").arg(&config);
        let daemon = ScratchDaemon::start(&CONTAINERD, dir, &mut command, || server_answers(&socket));
        Containerd { daemon, socket }
    }

    /// Runs `ctr --address SOCKET ARGS` (namespace `default`).
    pub fn ctr(&self, args: &[&str]) -> Output {
        let mut command = Command::new("ctr");
        command.arg("--address").arg(&self.socket).args(args).env_remove("CONTAINERD_NAMESPACE");
        run(&mut command, None)
    }

    /// Imports a tiny image (see `OciImage::tiny`) holding `content` under the name `reference`
    /// (`127.0.0.1:PORT/project/repo:tag`), without unpacking it; returns the image.
    pub fn import_image(&self, reference: &str, content: &str) -> OciImage {
        let image = OciImage::tiny(content);
        let archive = self.daemon.write_import(&image.archive(reference));
        self.ctr(&["images", "import", "--no-unpack", &archive]).assert_success();
        image
    }

    /// `ctr images push --plain-http [--user U:P] REFERENCE`.
    pub fn push(&self, reference: &str, creds: Option<(&str, &str)>) -> Output {
        let user = creds.map(|(user, password)| format!("{user}:{password}"));
        let mut args = vec!["images", "push", "--plain-http"];
        if let Some(user) = &user {
            args.extend(["--user", user]);
        }
        args.push(reference);
        self.ctr(&args)
    }

    /// `ctr images pull --plain-http --snapshotter native [--user U:P] REFERENCE`.
    pub fn pull(&self, reference: &str, creds: Option<(&str, &str)>) -> Output {
        let user = creds.map(|(user, password)| format!("{user}:{password}"));
        let mut args = vec!["images", "pull", "--plain-http", "--snapshotter", "native"];
        if let Some(user) = &user {
            args.extend(["--user", user]);
        }
        args.push(reference);
        self.ctr(&args)
    }

    /// `ctr images tag SOURCE TARGET`.
    pub fn tag(&self, source: &str, target: &str) -> Output {
        self.ctr(&["images", "tag", source, target])
    }

    /// `ctr images rm REFERENCE` (so a following pull really fetches).
    pub fn remove_image(&self, reference: &str) -> Output {
        self.ctr(&["images", "rm", reference])
    }

    /// The temp dir holding everything of this daemon (gone after drop).
    pub fn dir(&self) -> &Path {
        self.daemon.dir()
    }
}

/// True once `ctr version` gets the server's version.
fn server_answers(socket: &Path) -> bool {
    let mut probe = Command::new("ctr");
    probe.arg("--address").arg(socket).arg("version").stdin(std::process::Stdio::null());
    probe.output().is_ok_and(|out| out.status.success())
}
