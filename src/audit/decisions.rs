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
/// are counted together under their address alone, so memory stays bounded under a flood of
/// made-up names (a line is at most about 16 KiB: the server clips what it records).
const MAX_PENDING: usize = 1_000;

/// One token request's line.
#[derive(Debug, Serialize)]
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
    /// Requested scopes (or their actions) left out of the token.
    pub refused: Vec<String>,
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
    Syslog(std::os::unix::net::UnixDatagram),
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
                Sink::Syslog(socket)
            }
            #[cfg(not(unix))]
            DecisionSink::Syslog => anyhow::bail!("audit.decisions = \"syslog\" needs a Unix system"),
        };
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
            let full = pending.len() >= MAX_PENDING;
            let principal = if full { String::from("*") } else { line.principal.clone() };
            let key = (principal, line.client);
            if let Some(counted) = pending.get_mut(&key) {
                counted.more += 1;
                counted.last = line;
                return;
            }
            if full {
                // Counted under the address alone; the line at the end of the interval says so.
                let mut line = line;
                line.principal = "*".to_string();
                pending.insert(key, Pending { last: line, more: 1 });
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
            Sink::Syslog(socket) => socket.send(format!("<38>portcullis: {text}").as_bytes()).map(|_| ()),
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
