//! Starting the real `portcullis serve` on a data directory, timing its start, and reading its
//! memory from `/proc`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A running server process, stopped when dropped.
pub struct Server {
    child: Child,
    pub address: SocketAddr,
    /// From spawning the process to its "listening" line: opening the database, loading the
    /// access snapshot, the key and the decoy hash, binding.
    pub start_time: Duration,
}

impl Server {
    /// Starts `binary serve` with its data in `data_dir`, listening on a free loopback port.
    pub fn start(binary: &Path, data_dir: &Path, extra_env: &[(String, String)]) -> anyhow::Result<Server> {
        let mut command = Command::new(binary);
        command.arg("serve");
        // Only the settings given here: a PORTCULLIS_CONFIG or override in the caller's
        // environment would make the figures depend on it.
        for (variable, _) in std::env::vars() {
            if variable.starts_with("PORTCULLIS_") {
                command.env_remove(variable);
            }
        }
        command
            .env("PORTCULLIS_DATA_DIR", data_dir)
            .env("PORTCULLIS_LISTEN", "127.0.0.1:0")
            .env("PORTCULLIS_LOG", "warn")
            .envs(extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let started = Instant::now();
        let mut child = command.spawn().with_context(|| format!("cannot run {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (sender, receiver) = mpsc::channel();
        // Reads every line (the server prints its registry snippet after the address) so the
        // pipe never fills.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("portcullis listening on http://") {
                    let _ = sender.send(address.trim().to_string());
                }
            }
        });
        let address = match receiver.recv_timeout(Duration::from_secs(60)) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                bail!("the server did not start within 60 s (exit status: {status:?})");
            }
        };
        let start_time = started.elapsed();
        let address = address.parse().with_context(|| format!("unexpected listening address {address:?}"))?;
        Ok(Server { child, address, start_time })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resets the peak resident set size (`VmHWM`) so the next reading covers one scenario.
    pub fn reset_peak_memory(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5");
    }

    /// Peak resident set size in MiB since start or the last reset.
    pub fn peak_memory_mib(&self) -> Option<f64> {
        status_kib(self.pid(), "VmHWM:").map(|kib| kib as f64 / 1024.0)
    }

    pub fn memory_mib(&self) -> Option<f64> {
        status_kib(self.pid(), "VmRSS:").map(|kib| kib as f64 / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) a process has used, in seconds; `self` for this process.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses; utime and stime
    // are the 14th and 15th fields, in USER_HZ ticks (100 a second on Linux).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}
