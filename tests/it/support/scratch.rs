//! `ScratchDir`: a short-named temp dir under /tmp for daemons that mount things and start helper
//! processes (dockerd, containerd). Its cleanup ends every process whose command line still names the
//! dir, unmounts whatever is mounted below it, and only then deletes it. `ScratchDaemon`: such a
//! daemon, started and stopped the same way for each.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::process::{log_file, send_signal, ChildGuard};

/// How long leftover processes get between SIGTERM and SIGKILL.
const STRAY_GRACE: Duration = Duration::from_secs(10);

pub struct ScratchDir {
    /// Under /tmp with a short name: unix socket paths inside must stay below 108 bytes.
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `/tmp/<prefix>XXXXXX`.
    pub fn new(prefix: &str) -> ScratchDir {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in("/tmp")
            .unwrap_or_else(|err| panic!("create a temp dir /tmp/{prefix}*: {err}"));
        // Cleanup is ours (see Drop): tempfile would delete through mounts that are still in place.
        ScratchDir { path: dir.keep() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        stop_processes_naming(&self.path);
        let still_mounted = unmount_all_under(&self.path);
        if still_mounted.is_empty() {
            if let Err(err) = fs::remove_dir_all(&self.path) {
                eprintln!("warning: cannot remove {}: {err}", self.path.display());
            }
        } else {
            // Deleting would descend into the mounted file systems: leave the dir, say so.
            eprintln!("warning: left {} in place: still mounted: {still_mounted:?}", self.path.display());
        }
    }
}

/// What tells one root daemon from another when it is started and stopped.
pub struct DaemonKind {
    /// Names it in messages and its log file (`NAME.log` in the scratch dir).
    pub name: &'static str,
    /// What `ready` checks, for the message when it never comes (`answering \`ctr version\``).
    pub ready: &'static str,
    /// How long it may take to become ready.
    pub start_timeout: Duration,
    /// How long it gets between SIGTERM and SIGKILL: dockerd unmounts its data root and stops its
    /// containerd, containerd its plugins.
    pub stop_grace: Duration,
}

/// A root daemon living in a `ScratchDir` (dockerd, containerd): its output goes to `NAME.log` in
/// the dir; when dropped it gets SIGTERM and its grace period, then SIGKILL, and only then is the dir
/// cleaned up (which kills survivors such as shims and unmounts what is left).
pub struct ScratchDaemon {
    /// Stopped before `dir` cleans up (fields drop in declaration order).
    daemon: ChildGuard,
    /// Numbers the files `write_import` writes.
    imports: AtomicUsize,
    dir: ScratchDir,
}

impl ScratchDaemon {
    /// Spawns `command` (the daemon, configured to keep everything in `dir`) and waits until
    /// `ready` returns true; panics with its log if it exits or times out first.
    pub fn start(
        kind: &DaemonKind,
        dir: ScratchDir,
        command: &mut Command,
        ready: impl FnMut() -> bool,
    ) -> Self {
        let log = dir.join(&format!("{}.log", kind.name));
        let (stdout, stderr) = log_file(&log);
        command.stdout(stdout).stderr(stderr);
        let mut daemon = ChildGuard::spawn(kind.name, command).with_graceful_stop(kind.stop_grace);
        daemon.wait_until(kind.ready, kind.start_timeout, &log, ready);
        ScratchDaemon { daemon, imports: AtomicUsize::new(0), dir }
    }

    /// The scratch dir holding everything of this daemon (gone after drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `bytes` to a new `import-N.tar` in the scratch dir, for the daemon to import; returns
    /// its path.
    pub fn write_import(&self, bytes: &[u8]) -> String {
        let n = self.imports.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(&format!("import-{n}.tar"));
        fs::write(&path, bytes).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
        path.to_string_lossy().into_owned()
    }
}

impl Drop for ScratchDaemon {
    fn drop(&mut self) {
        // Before `dir` is dropped: the daemon cleans up after itself first, the dir gets the rest.
        self.daemon.stop();
    }
}

/// Ends every process (other than this one) whose command line mentions `dir`: SIGTERM, then SIGKILL
/// after `STRAY_GRACE`. This catches a containerd that outlived its dockerd, and shims.
pub fn stop_processes_naming(dir: &Path) {
    let strays = processes_naming(dir);
    if strays.is_empty() {
        return;
    }
    for &pid in &strays {
        send_signal(pid, "TERM");
    }
    let deadline = Instant::now() + STRAY_GRACE;
    while Instant::now() < deadline && strays.iter().any(|&pid| is_running(pid)) {
        thread::sleep(Duration::from_millis(50));
    }
    for &pid in strays.iter().filter(|&&pid| is_running(pid)) {
        eprintln!("process {pid} ignored SIGTERM for {STRAY_GRACE:?}: killing it");
        send_signal(pid, "KILL");
    }
}

/// Pids of live processes whose command line contains `dir` as a path (`dir` itself or `dir/...`).
pub fn processes_naming(dir: &Path) -> Vec<u32> {
    let dir = dir.to_string_lossy().into_owned();
    let own = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != own && is_running(pid))
        .filter(|&pid| {
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { return false };
            cmdline.split(|&b| b == 0).any(|arg| names_path(&String::from_utf8_lossy(arg), &dir))
        })
        .collect()
}

/// True if `arg` contains `dir` followed by the end, a `/`, or a character that cannot be in the
/// random suffix (so /tmp/pcd.ab does not match /tmp/pcd.abc).
fn names_path(arg: &str, dir: &str) -> bool {
    arg.match_indices(dir).any(|(at, _)| {
        arg[at + dir.len()..].chars().next().is_none_or(|next| !(next.is_ascii_alphanumeric() || next == '_'))
    })
}

/// A process exists and is not a zombie.
pub fn is_running(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself contain ") ".
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Mount points at or below `dir`, most recent first (the order to unmount them in).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mount_path(field)))
        .filter(|mount| mount.starts_with(dir))
        .collect();
    found.reverse();
    found
}

/// Unmounts everything at or below `dir` (lazily if a plain unmount fails); returns what is left.
pub fn unmount_all_under(dir: &Path) -> Vec<PathBuf> {
    for mount in mounts_under(dir) {
        let plain = Command::new("umount").arg(&mount).output();
        if !plain.is_ok_and(|out| out.status.success()) {
            let _ = Command::new("umount").arg("-l").arg(&mount).output();
        }
    }
    mounts_under(dir)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mount_path(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("0");
            if let Ok(value) = u8::from_str_radix(octal, 8) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
