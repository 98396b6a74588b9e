//! A private PostgreSQL cluster (Debian's `postgresql`, 15) on a loopback port, in its own temp
//! dir, trusting local connections as the role `portcullis`; stopped (fast) when dropped.
//!
//! PostgreSQL refuses to run as root, so `initdb` and `postgres` run as the `postgres` account
//! (`setpriv`, which execs: the guard's child is the postmaster itself, and stopping it stops the
//! cluster). That account must be able to traverse the directory, so it is 0755 and its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tempfile::TempDir;

use super::process::{free_port, log_file, require_binary, run, send_signal, tail, ChildGuard, Output};

/// How long the cluster may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The role the tests connect as (the cluster's superuser).
pub const ROLE: &str = "portcullis";

pub struct Postgres {
    /// Stopped before `dir` is deleted (fields drop in declaration order).
    daemon: ChildGuard,
    port: u16,
    /// Server settings beyond the defaults (`-c` arguments), kept for a restart.
    settings: Vec<String>,
    /// pg/ (the cluster), postgres.log, and the socket directory.
    dir: TempDir,
}

/// The directory of PostgreSQL's server binaries (not on PATH in Debian).
fn server_binaries() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("postgres").is_file() && bin.join("initdb").is_file())
        .max();
    found.unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server is not installed: install the Debian package `postgresql` \
             (scripts/install-test-deps.sh installs every test dependency)"
        )
    })
}

/// `command` run as the `postgres` account.
fn as_postgres(program: &Path) -> Command {
    let setpriv = require_binary("setpriv", "util-linux");
    let mut command = Command::new(setpriv);
    command.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]).arg(program);
    command
}

impl Postgres {
    /// Creates and starts a cluster; returns once it accepts connections.
    pub fn start() -> Postgres {
        Postgres::start_configured(|_| Vec::new())
    }

    /// A cluster that accepts TCP connections over TLS only (`hostssl`), with this certificate
    /// and key (PEM).
    #[allow(dead_code)] // The store's unit tests include this file and use other parts.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Postgres {
        Postgres::start_configured(|dir| {
            let data = dir.join("pg");
            std::fs::write(data.join("server.crt"), cert_pem).expect("write server.crt");
            std::fs::write(data.join("server.key"), key_pem).expect("write server.key");
            hand_to_postgres(&data.join("server.crt"));
            hand_to_postgres(&data.join("server.key"));
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(data.join("server.key"), std::fs::Permissions::from_mode(0o600))
                .expect("chmod server.key");
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
            )
            .expect("write pg_hba.conf");
            ["ssl=on", "ssl_cert_file=server.crt", "ssl_key_file=server.key"].map(String::from).to_vec()
        })
    }

    /// A streaming standby of `primary` (`pg_basebackup -R`), read-only until promoted.
    #[allow(dead_code)] // The store's unit tests include this file and use other parts.
    pub fn start_standby_of(primary: &Postgres) -> Postgres {
        let bin = server_binaries();
        let dir =
            tempfile::Builder::new().prefix("pc-postgres-").tempdir().expect("create a postgres temp dir");
        hand_to_postgres(dir.path());
        let mut backup = as_postgres(&bin.join("pg_basebackup"));
        backup
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                ROLE,
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "-D",
            ])
            .arg(dir.path().join("pg"));
        run(&mut backup, None).assert_success();
        let port = free_port();
        let daemon = Postgres::launch(dir.path(), port, &primary.settings)
            .unwrap_or_else(|why| panic!("{why}:\n{}", tail(&dir.path().join("postgres.log"))));
        Postgres { daemon, port, settings: primary.settings.clone(), dir }
    }

    /// Promotes a standby to a primary that takes writes; returns once it does.
    #[allow(dead_code)]
    pub fn promote(&self) {
        self.psql("postgres", "SELECT pg_promote(true, 30)").assert_success();
    }

    /// Creates a cluster, lets `setup` prepare its directory and name server settings, starts
    /// it.
    fn start_configured(setup: impl FnOnce(&Path) -> Vec<String>) -> Postgres {
        let bin = server_binaries();
        let dir =
            tempfile::Builder::new().prefix("pc-postgres-").tempdir().expect("create a postgres temp dir");
        hand_to_postgres(dir.path());
        let mut initdb = as_postgres(&bin.join("initdb"));
        initdb.arg("-D").arg(dir.path().join("pg")).args(["-A", "trust", "-U", ROLE, "--no-sync"]);
        run(&mut initdb, None).assert_success();
        let settings = setup(dir.path());
        // A free port can be taken by someone else before the postmaster binds it: retry.
        for attempt in 1..=3 {
            let port = free_port();
            match Postgres::launch(dir.path(), port, &settings) {
                Ok(daemon) => return Postgres { daemon, port, settings, dir },
                Err(_)
                    if attempt < 3 && tail(&dir.path().join("postgres.log")).contains("could not bind") =>
                {
                    continue
                }
                Err(why) => panic!("{why}; its log:\n{}", tail(&dir.path().join("postgres.log"))),
            }
        }
        unreachable!("the last attempt returns or panics");
    }

    /// Starts the postmaster of the cluster in `dir` on `port`; returns once it accepts
    /// connections.
    fn launch(dir: &Path, port: u16, settings: &[String]) -> Result<ChildGuard, String> {
        let log = dir.join("postgres.log");
        let (stdout, stderr) = log_file(&log);
        let mut command = as_postgres(&server_binaries().join("postgres"));
        command
            .arg("-D")
            .arg(dir.join("pg"))
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .arg("-k")
            .arg(dir)
            .args(settings.iter().flat_map(|setting| ["-c", setting.as_str()]))
            .stdout(stdout)
            .stderr(stderr);
        // SIGTERM is a smart shutdown that waits for clients; the guard's grace then kills.
        let mut daemon =
            ChildGuard::spawn("postgres", &mut command).with_graceful_stop(Duration::from_secs(5));
        let ready = || Postgres::probe(port).is_some_and(|output| output.success());
        daemon.poll_until("accepting connections", START_TIMEOUT, ready)?;
        Ok(daemon)
    }

    /// Stops the cluster (a fast shutdown, as an operator's or a failing host's: its clients'
    /// connections break).
    pub fn stop(&mut self) {
        if let Some(pid) = self.daemon.pid() {
            send_signal(pid, "INT");
        }
        self.daemon.stop();
    }

    /// Stops the cluster at once (fast shutdown: clients are disconnected, not waited for).
    pub fn stop_fast(mut self) {
        self.stop();
    }

    /// Starts the stopped cluster again on its port.
    pub fn restart(&mut self) {
        self.daemon = Postgres::launch(self.dir.path(), self.port, &self.settings)
            .unwrap_or_else(|why| panic!("{why}:\n{}", self.log()));
    }

    /// Stops (`kill -STOP`) the postmaster and every backend: connections stay open and answer
    /// nothing, as a hung server's do.
    pub fn freeze(&self) {
        for pid in self.processes() {
            send_signal(pid, "STOP");
        }
    }

    /// Undoes [`Postgres::freeze`].
    pub fn thaw(&self) {
        for pid in self.processes() {
            send_signal(pid, "CONT");
        }
    }

    /// The postmaster and its children.
    fn processes(&self) -> Vec<u32> {
        let Some(postmaster) = self.daemon.pid() else { return Vec::new() };
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...: the command may hold spaces, so read after its ")".
            let parent = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if parent.and_then(|ppid| ppid.parse::<u32>().ok()) == Some(postmaster) {
                pids.push(pid);
            }
        }
        pids
    }

    fn probe(port: u16) -> Option<Output> {
        let psql = require_binary("psql", "postgresql-client");
        let mut command = Command::new(psql);
        command.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            ROLE,
            "-d",
            "postgres",
            "-Atc",
            "SELECT 1",
        ]);
        Some(run(&mut command, None))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://portcullis@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs `sql` with psql against `database` (unaligned, tuples only) and returns its output.
    pub fn psql(&self, database: &str, sql: &str) -> Output {
        let psql = require_binary("psql", "postgresql-client");
        let mut command = Command::new(psql);
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", ROLE, "-d", database]).args([
            "-v",
            "ON_ERROR_STOP=1",
            "-Atc",
            sql,
        ]);
        run(&mut command, None)
    }

    /// Everything the postmaster has logged so far.
    pub fn log(&self) -> String {
        tail(&self.dir.path().join("postgres.log"))
    }

    /// Whether the postmaster still runs.
    pub fn is_running(&mut self) -> bool {
        self.daemon.exit_status().is_none()
    }
}

/// Makes `dir` the `postgres` account's, and traversable (a root temp dir is 0700).
fn hand_to_postgres(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let id = |flag: &str| {
        let output = run(Command::new("id").args([flag, "postgres"]), None);
        output.assert_success();
        output.stdout.trim().parse::<u32>().expect("a numeric id")
    };
    std::os::unix::fs::chown(dir, Some(id("-u")), Some(id("-g"))).expect("chown the postgres temp dir");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the postgres temp dir");
}

/// The URL of a new, empty database on the test binary's shared cluster: started at the first
/// call and stopped (fast) when the binary exits, so that a suite can give every test its own
/// database without a cluster each. (A guard in a static is never dropped; the exit handler
/// stops it instead.)
#[allow(dead_code)] // Each of the two test binaries that include this file uses other parts.
pub fn shared_database() -> String {
    static CLUSTER: Mutex<Option<Postgres>> = Mutex::new(None);
    static DATABASES: AtomicUsize = AtomicUsize::new(0);
    extern "C" fn stop_cluster() {
        let cluster = CLUSTER.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(cluster) = cluster {
            cluster.stop_fast();
        }
    }
    let mut cluster = CLUSTER.lock().unwrap_or_else(PoisonError::into_inner);
    let cluster = cluster.get_or_insert_with(|| {
        let started = Postgres::start();
        // SAFETY: registers a plain function to run at exit; it touches only the static above.
        unsafe { libc::atexit(stop_cluster) };
        started
    });
    let name = format!("test_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::Relaxed));
    cluster.psql("postgres", &format!("CREATE DATABASE {name}")).assert_success();
    cluster.url(&name)
}
