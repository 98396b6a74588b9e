//! `portcullis audit list`: the stored audit trail, changes made with the CLI and the pushes,
//! pulls and deletes the registry notified, newest first.

use clap::{Subcommand, ValueEnum};

use super::expiry::parse_duration;
use super::output::print_list;
use crate::store::{now, AuditEntry, AuditFilter, AuditKind, Store};
use crate::text::{for_column, rfc3339};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List changes and registry events, the newest first.
    List {
        /// Entries made by this user (the OS user of a change, the account of a push or pull)
        /// or about them (the user or robot a change changed).
        #[arg(long)]
        user: Option<String>,
        /// Entries about this project (its members, robots, and its repositories' events).
        #[arg(long)]
        project: Option<String>,
        /// Only changes, or only registry events.
        #[arg(long)]
        kind: Option<KindArgument>,
        /// Only entries of the last 30m, 24h, 7d, ... (a bare number is days).
        #[arg(long)]
        since: Option<String>,
        /// At most this many entries (the newest).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArgument {
    Change,
    Event,
}

pub fn run(store: &dyn Store, command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::List { user, project, kind, since, limit, json } = command;
    let since = match since {
        Some(text) => Some(now() - parse_duration(&text, "--since", "")?),
        None => None,
    };
    let kind = kind.map(|kind| match kind {
        KindArgument::Change => AuditKind::Change,
        KindArgument::Event => AuditKind::Event,
    });
    let entries = store.list_audit(&AuditFilter { kind, user, project, since, limit: limit as usize })?;
    // Entries are stored without control characters; a table shown on a terminal is cleaned
    // again all the same (entries written by an older version, or by hand).
    let cell = |text: &str| for_column(text, usize::MAX);
    print_list(json, &entries, &["TIME", "KIND", "ACTOR", "ACTION", "TARGET", "CLIENT"], |entry| {
        vec![
            rfc3339(entry.time),
            entry.kind.as_str().to_string(),
            if entry.actor.is_empty() { "(anonymous)".to_string() } else { cell(&entry.actor) },
            cell(&entry.action),
            cell(&target_text(entry)),
            cell(entry.address.as_deref().unwrap_or_default()),
        ]
    })
}

/// A change's target as recorded; an event's repository with its tag and digest
/// (`team/app:v1@sha256:...`).
fn target_text(entry: &AuditEntry) -> String {
    let mut text = entry.target.clone();
    if let Some(tag) = &entry.tag {
        text.push(':');
        text.push_str(tag);
    }
    if let Some(digest) = &entry.digest {
        text.push('@');
        text.push_str(digest);
    }
    text
}
