//! The decision trail: one JSON line per token request, to standard output, a file or syslog.
//!
//! A line says who asked (client address, user agent, the principal and the credential kind),
//! for what (service, requested scopes), what they got (granted scopes, the refused ones), the
//! outcome and, for a refusal, why. Never a password, secret or token: only names.
//!
//! A flood of refusals must not become a flood of lines (or a full disk): refusals of one
//! principal from one address are written at once the first time in an interval and then only
//! counted; when the interval ends one line carries the count of the rest. The counts are
//! complete (every refused request is in exactly one line) and there is never more than one
//! line per request. Grants are always written line by line.
//!
//! The file sink is reopened on `SIGHUP`, so logrotate can move it away (`postrotate: kill -HUP`).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::config::{AuditConfig, DecisionSink};

/// Distinct (principal, address) pairs counted at once; past it, further refusals of new pairs
/// are counted together under their address alone, and past twice it under no address, so
/// memory stays bounded under a flood of made-up names from any number of addresses (a line is
/// at most about 16 KiB: the server clips what it records).
const MAX_PENDING: usize = 1_000;

/// One token request's line.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionLine {
    /// RFC 3339, UTC.
    pub time: String,
    pub request_id: String,
    pub client: IpAddr,
    pub user_agent: String,
    /// The token's `sub`, or the name a refused login gave (clipped); empty when anonymous.
    pub principal: String,
    /// `password`, `cached`, `robot`, `personal_token`, `refresh_token`, `anonymous`, `directory`, `none`.
    pub credential: &'static str,
    /// `get`, `password_grant`, `refresh_grant`, `unknown`.
    pub flow: &'static str,
    pub service: String,
    pub requested: Vec<String>,
    pub granted: Vec<String>,
    /// Requested scopes (or their actions) left out of the token, each with why.
    pub refused: Vec<crate::authz::explain::Refusal>,
    /// `granted`, `partially_granted`, `denied`, `unauthorized`, `throttled`, `error`.
    pub outcome: &'static str,
    /// HTTP status of the answer.
    pub status: u16,
    /// Why the request was refused, as the client was told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For aggregated refusals: how many requests this line stands for (absent means 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// Refusals of one (principal, address) pair counted since their first line.
struct Pending {
    /// The latest refusal, written with the count when the interval ends.
    last: DecisionLine,
    /// Refusals after the one written at once.
    more: u64,
}

/// Where lines go.
enum Sink {
    Stdout,
    File {
        path: PathBuf,
        file: File,
    },
    #[cfg(unix)]
    Syslog {
        socket: std::os::unix::net::UnixDatagram,
        path: PathBuf,
    },
    /// `decisions = "none"` set by a reload: nothing is written.
    Discard,
}

impl Sink {
    fn describe(&self) -> String {
        match self {
            Sink::Stdout => "standard output".to_string(),
            Sink::File { path, .. } => format!("file {}", path.display()),
            #[cfg(unix)]
            Sink::Syslog { path, .. } => format!("syslog {}", path.display()),
            Sink::Discard => "none".to_string(),
        }
    }
}

/// The sink `config` names, opened; `None` for `decisions = "none"`.
fn open_sink(config: &AuditConfig) -> anyhow::Result<Option<Sink>> {
    let sink = match &config.decisions {
        DecisionSink::None => return Ok(None),
        DecisionSink::Stdout => Sink::Stdout,
        DecisionSink::File => {
            let path = config
                .decisions_file
                .clone()
                .context("audit.decisions = \"file\" needs audit.decisions_file")?;
            Sink::File { file: open_append(&path)?, path }
        }
        #[cfg(unix)]
        DecisionSink::Syslog => {
            let socket = std::os::unix::net::UnixDatagram::unbound()?;
            socket.connect(&config.syslog_socket).with_context(|| {
                format!("cannot reach syslog at {} (audit.syslog_socket)", config.syslog_socket.display())
            })?;
            Sink::Syslog { socket, path: config.syslog_socket.clone() }
        }
        #[cfg(not(unix))]
        DecisionSink::Syslog => anyhow::bail!("audit.decisions = \"syslog\" needs a Unix system"),
    };
    Ok(Some(sink))
}

/// The decision trail of one process.
pub struct DecisionLog {
    sink: Mutex<Sink>,
    pending: Mutex<HashMap<(String, IpAddr), Pending>>,
    interval: Duration,
    /// When a failed write was last reported (Unix seconds).
    last_write_warning: AtomicI64,
}

impl DecisionLog {
    /// The configured trail, or `None` when decisions are not recorded.
    pub fn open(config: &AuditConfig) -> anyhow::Result<Option<DecisionLog>> {
        let Some(sink) = open_sink(config)? else { return Ok(None) };
        Ok(Some(DecisionLog {
            sink: Mutex::new(sink),
            pending: Mutex::new(HashMap::new()),
            interval: Duration::from_secs(config.aggregate_secs.max(1)),
            last_write_warning: AtomicI64::new(i64::MIN / 2),
        }))
    }

    /// Records one request: written now, or counted when it repeats a refusal of its pair.
    pub fn record(&self, line: DecisionLine) {
        if matches!(line.outcome, "unauthorized" | "throttled") {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            // A pair already counted keeps its own count, full map or not.
            let key = (line.principal.clone(), line.client);
            if let Some(counted) = pending.get_mut(&key) {
                counted.more += 1;
                counted.last = line;
                return;
            }
            if pending.len() >= MAX_PENDING {
                // A new pair is counted under its address alone, and past twice the bound (a
                // flood from many addresses) under no address; the line at the end of the
                // interval says so with "*" and 0.0.0.0.
                let mut line = line;
                line.principal = "*".to_string();
                if pending.len() >= 2 * MAX_PENDING && !pending.contains_key(&("*".to_string(), line.client))
                {
                    line.client = IpAddr::from([0, 0, 0, 0]);
                }
                let counted = pending
                    .entry((line.principal.clone(), line.client))
                    .or_insert_with(|| Pending { last: line.clone(), more: 0 });
                counted.more += 1;
                counted.last = line;
                return;
            }
            let first = serde_json::to_string(&line);
            pending.insert(key, Pending { last: line, more: 0 });
            drop(pending);
            if let Ok(text) = first {
                self.write(&text);
            }
            return;
        }
        if let Ok(text) = serde_json::to_string(&line) {
            self.write(&text);
        }
    }

    /// Writes the counts of the refusals that repeated during the interval, and forgets them.
    pub fn flush(&self) {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        for (_, Pending { mut last, more }) in pending {
            if more == 0 {
                continue;
            }
            last.count = Some(more);
            if let Ok(text) = serde_json::to_string(&last) {
                self.write(&text);
            }
        }
    }

    /// Flushes every interval until the process ends.
    pub async fn flush_every_interval(self: std::sync::Arc<Self>) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let log = self.clone();
            let _ = tokio::task::spawn_blocking(move || log.flush()).await;
        }
    }

    /// Reopens the file sink (after logrotate moved it); other sinks need nothing.
    pub fn reopen(&self) -> anyhow::Result<Option<PathBuf>> {
        self.flush();
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        if let Sink::File { path, file } = &mut *sink {
            *file = open_append(path)?;
            return Ok(Some(path.clone()));
        }
        Ok(None)
    }

    /// Writes from now on to the sink `config` names (SIGHUP): the file reopened (logrotate), or
    /// another file, standard output or syslog, after what is pending went to the old one;
    /// `decisions = "none"` stops writing. A sink that does not open leaves the old one.
    /// Returns the sink now in use, described.
    pub fn reconfigure(&self, config: &AuditConfig) -> anyhow::Result<String> {
        self.flush();
        let new = open_sink(config)?.unwrap_or(Sink::Discard);
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        *sink = new;
        Ok(sink.describe())
    }

    fn write(&self, text: &str) {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        let written = match &mut *sink {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{text}").and_then(|_| out.flush())
            }
            Sink::File { file, .. } => writeln!(file, "{text}"),
            // RFC 3164 framing: priority (facility auth(4)*8 + info(6) = 38), tag, message.
            #[cfg(unix)]
            Sink::Syslog { socket, .. } => {
                socket.send(format!("<38>portcullis: {text}").as_bytes()).map(|_| ())
            }
            Sink::Discard => Ok(()),
        };
        if let Err(error) = written {
            // Once a minute at most: a full disk or a gone syslog must not flood the log too.
            let now = crate::store::now();
            if self.last_write_warning.load(Ordering::Relaxed) + 60 <= now {
                self.last_write_warning.store(now, Ordering::Relaxed);
                tracing::warn!(%error, "audit: decision lines cannot be written");
            }
        }
    }
}

fn open_append(path: &std::path::Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the decision trail {} (audit.decisions_file)", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(principal: &str, client: IpAddr) -> DecisionLine {
        DecisionLine {
            time: String::new(),
            request_id: String::new(),
            client,
            user_agent: String::new(),
            principal: principal.to_string(),
            credential: "password",
            flow: "get",
            service: String::new(),
            requested: Vec::new(),
            granted: Vec::new(),
            refused: Vec::new(),
            outcome: "unauthorized",
            status: 401,
            reason: None,
            count: None,
        }
    }

    /// Lines written to the trail's file, as (principal, client, count).
    fn written(path: &std::path::Path) -> Vec<(String, String, u64)> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                let field = |name: &str| value[name].as_str().unwrap().to_string();
                (field("principal"), field("client"), value["count"].as_u64().unwrap_or(1))
            })
            .collect()
    }

    #[test]
    fn a_full_map_keeps_counting_known_pairs_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        let config = AuditConfig {
            decisions: DecisionSink::File,
            decisions_file: Some(path.clone()),
            ..AuditConfig::default()
        };
        let log = DecisionLog::open(&config).unwrap().unwrap();
        let one = IpAddr::from([10, 0, 0, 1]);
        log.record(refusal("alice", one));
        for n in 1..MAX_PENDING {
            log.record(refusal(&format!("guess{n}"), one));
        }
        // Full: alice's next refusals are still hers; a new name from a known address goes to
        // that address's "*"; new names from new addresses past twice the bound to 0.0.0.0.
        log.record(refusal("alice", one));
        log.record(refusal("alice", one));
        log.record(refusal("newcomer", one));
        for n in 0..(2 * MAX_PENDING) as u32 {
            log.record(refusal("flood", IpAddr::from((0x0b00_0000 + n).to_be_bytes())));
        }
        assert!(log.pending.lock().unwrap().len() <= 2 * MAX_PENDING + 1);
        log.flush();
        let lines = written(&path);
        let count = |principal: &str, client: &str| -> u64 {
            lines.iter().filter(|(p, c, _)| p == principal && c == client).map(|(_, _, n)| n).sum()
        };
        assert_eq!(count("alice", "10.0.0.1"), 3, "{lines:?}");
        assert_eq!(count("*", "10.0.0.1"), 1);
        let flood: u64 = lines.iter().filter(|(p, _, _)| p == "*").map(|(_, _, n)| n).sum::<u64>() - 1;
        assert_eq!(flood, 2 * MAX_PENDING as u64, "every refusal counted once");
        assert!(count("*", "0.0.0.0") > 0);
        assert_eq!(lines.iter().map(|(_, _, n)| n).sum::<u64>(), (3 * MAX_PENDING + 3) as u64);
    }
}
