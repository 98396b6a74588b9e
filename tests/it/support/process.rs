//! Child processes owned by a test: the `ChildGuard` that stops a daemon when the test ends (also on
//! panic), loopback ports, readiness polling, required binaries, and running a command with a timeout
//! while keeping its status and output for assertions.

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long `run` lets a command take before it is killed and the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// A spawned daemon that is stopped, and waited for, when the guard is dropped.
pub struct ChildGuard {
    /// `None` once the process has been stopped and reaped.
    child: Option<Child>,
    /// Names the daemon in panic messages ("registry", "slapd", ...).
    name: String,
    /// With a grace period the daemon gets SIGTERM and that long to exit before SIGKILL; daemons that
    /// clean up after themselves (dockerd unmounts its data root) need it.
    grace: Option<Duration>,
}

impl ChildGuard {
    /// Spawns `command`, panicking with the program name and the OS error if that fails.
    pub fn spawn(name: &str, command: &mut Command) -> ChildGuard {
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {name} ({}): {err}", describe(command)));
        ChildGuard { child: Some(child), name: name.to_string(), grace: None }
    }

    /// Stops the daemon with SIGTERM first and SIGKILL only after `grace`.
    pub fn with_graceful_stop(mut self, grace: Duration) -> ChildGuard {
        self.grace = Some(grace);
        self
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` once the process has exited (or was stopped), `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        match self.child.as_mut() {
            None => Some(ExitStatus::default()),
            Some(child) => child.try_wait().ok().flatten(),
        }
    }

    /// Polls `ready` every 50 ms until it returns true. Panics when the process exits first or when
    /// `timeout` passes, quoting `log` (the daemon's output) so the failure explains itself.
    pub fn wait_until(&mut self, what: &str, timeout: Duration, log: &Path, ready: impl FnMut() -> bool) {
        if let Err(why) = self.poll_until(what, timeout, ready) {
            panic!("{why}; its log {}:\n{}", log.display(), tail(log));
        }
    }

    /// Like `wait_until`, but returns why it gave up instead of panicking (for callers that retry).
    pub fn poll_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return Ok(());
            }
            if let Some(status) = self.exit_status() {
                return Err(format!("{} exited ({status}) before {what}", self.name));
            }
            if Instant::now() >= deadline {
                return Err(format!("{} was not {what} within {timeout:?}", self.name));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process (see `with_graceful_stop`) and reaps it. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        if let Some(grace) = self.grace {
            if send_signal(child.id(), "TERM") && wait_child(&mut child, grace) {
                return;
            }
            eprintln!("{} did not stop within {grace:?} of SIGTERM: killing it", self.name);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits up to `timeout` for `child` to exit; true if it did.
fn wait_child(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Sends a signal ("TERM", "KILL") through the shell's `kill` builtin; true if it was delivered.
pub fn send_signal(pid: u32, signal: &str) -> bool {
    Command::new("sh")
        .args(["-c", "kill -s \"$0\" \"$1\" 2>/dev/null", signal, &pid.to_string()])
        .status()
        .is_ok_and(|status| status.success())
}

/// An ephemeral TCP port on 127.0.0.1 that was free a moment ago (the listener is closed again, so
/// another process may take it: daemons that fail with "address in use" should be retried).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port on 127.0.0.1");
    listener.local_addr().expect("local address of an ephemeral listener").port()
}

/// True once a TCP connection to `addr` ("127.0.0.1:PORT") succeeds, false after `timeout` (tries at
/// least once, so `Duration::ZERO` is a single probe).
pub fn wait_for_tcp(addr: &str, timeout: Duration) -> bool {
    let addr: SocketAddr = addr.parse().unwrap_or_else(|err| panic!("{addr:?} is not IP:PORT: {err}"));
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `GET path HTTP/1.0` to `addr` and returns the status code, or `None` if no HTTP answer came.
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    let addr: SocketAddr = addr.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    let head = std::str::from_utf8(&head).ok()?;
    head.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

/// The path of `name` on PATH (or in /usr/sbin, /sbin). Panics naming the Debian package to install:
/// a missing tool must fail the test, never skip it.
pub fn require_binary(name: &str, debian_package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs =
        std::env::split_paths(&path).chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not installed: install the Debian package `{debian_package}` \
         (scripts/install-test-deps.sh installs every test dependency)"
    );
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// What a finished command did: its status and its output, for assertions and failure messages.
pub struct Output {
    /// The command line, quoted for humans (it may contain test passwords; they are fake).
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics, showing the command and its output, unless it exited with status 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Output {
        assert!(self.success(), "command failed:\n{self}");
        self
    }

    /// Panics, showing the command and its output, unless it exited with a non-zero status.
    #[track_caller]
    pub fn assert_failure(&self) -> &Output {
        assert!(!self.success(), "command succeeded but should have failed:\n{self}");
        self
    }

    /// stdout followed by stderr, for `contains` checks that do not care which stream it was.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ {}\n[{}]", self.command, self.status)?;
        writeln!(f, "--- stdout\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr\n{}", self.stderr.trim_end())
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `run_with_timeout` with `COMMAND_TIMEOUT`.
pub fn run(command: &mut Command, stdin: Option<&[u8]>) -> Output {
    run_with_timeout(command, stdin, COMMAND_TIMEOUT)
}

/// Runs `command` to completion, feeding it `stdin` (or /dev/null), and captures stdout and stderr.
/// A command still running after `timeout` is killed and the test panics with what it printed so far.
pub fn run_with_timeout(command: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let line = describe(command);
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|err| panic!("cannot run `{line}`: {err}"));

    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_vec();
        // A writer thread: a command that answers before reading all its input must not deadlock us.
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());

    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => break None,
            Err(err) => panic!("cannot wait for `{line}`: {err}"),
        }
    };
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "`{line}` did not finish within {timeout:?}; it printed:\n--- stdout\n{}\n--- stderr\n{}",
            collect(stdout),
            collect(stderr)
        );
    };
    Output { command: line, status, stdout: collect(stdout), stderr: collect(stderr) }
}

fn read_in_background(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut buffer = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buffer);
        }
        let _ = sender.send(buffer);
    });
    receiver
}

/// The text a reader thread collected. A grandchild that inherited the pipe can keep it open after
/// the command exited: give up after a few seconds rather than hang the test.
fn collect(receiver: mpsc::Receiver<Vec<u8>>) -> String {
    match receiver.recv_timeout(Duration::from_secs(5)) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => "<output unavailable: the pipe was still held open by another process>".to_string(),
    }
}

/// `program arg arg` with arguments quoted when they contain spaces, for messages.
pub fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        let arg = arg.to_string_lossy();
        if arg.is_empty() || arg.contains(char::is_whitespace) {
            line.push_str(&format!(" {arg:?}"));
        } else {
            line.push(' ');
            line.push_str(&arg);
        }
    }
    line
}

/// The last 60 lines of a log file (or why it cannot be read), for panic messages.
pub fn tail(log: &Path) -> String {
    match fs::read(log) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(60)..].join("\n")
        }
        Err(err) => format!("<cannot read {}: {err}>", log.display()),
    }
}

/// Opens (creating) `path` for a daemon's stdout and stderr: both go to the same file.
pub fn log_file(path: &Path) -> (Stdio, Stdio) {
    let file = fs::File::create(path).unwrap_or_else(|err| panic!("create log {}: {err}", path.display()));
    let copy =
        file.try_clone().unwrap_or_else(|err| panic!("duplicate log handle {}: {err}", path.display()));
    (Stdio::from(file), Stdio::from(copy))
}
