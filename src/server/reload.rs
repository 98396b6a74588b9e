//! `SIGHUP`: what a running server takes up again without a restart, and what it says about the
//! rest.
//!
//! Reloaded: the TLS certificate ([`super::tls`]), the decision trail's sink (its file
//! reopened, for logrotate, or another file, stdout or syslog as `[audit]` now says), the log
//! filter (`log_filter` of the configuration file read again;
//! `PORTCULLIS_LOG` wins while it is set), the directory settings (`[ldap]`, its bind
//! password file and CA file read again: a rotated search-account password needs no restart;
//! a file without `[ldap]` does not switch the directory off) and the `/events` secret.
//! A configuration that no longer loads changes nothing and is reported; so do `[ldap]` settings
//! that do not make a directory client. Other settings that changed in the file are named in one
//! warning: they apply at the next start (the listener, the database and the limits are built
//! once).

use std::sync::Arc;

use super::App;
use crate::authn::ldap::DirectoryAuthenticator;
use crate::config::Config;

/// Reloads on each `SIGHUP` until the process ends.
#[cfg(unix)]
pub async fn on_hangup(app: Arc<App>, mut hangups: tokio::signal::unix::Signal) {
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading");
        let reloading = app.clone();
        let _ = tokio::task::spawn_blocking(move || reload(&reloading)).await;
    }
}

/// One reload, blocking (file reads).
pub fn reload(app: &App) {
    if let Some(tls) = &app.tls {
        tls.reload("SIGHUP");
    }
    let running = &app.config;
    let read = match Config::load(running.source_file.as_deref(), std::env::vars()) {
        Ok(read) => read,
        Err(error) => {
            tracing::warn!(%error, "SIGHUP: the configuration does not load; nothing else changed");
            reopen_decisions(app);
            return;
        }
    };
    if let Some(decisions) = &app.decisions {
        match decisions.reconfigure(&read.audit) {
            Ok(sink) => tracing::info!(%sink, "audit: decision trail (re)opened"),
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "audit: the decision sink does not open; writing to the old one")
            }
        }
    }
    let filter = crate::logging::filter_text(read.log_filter.as_deref());
    match crate::logging::set_filter(&filter) {
        Ok(()) => tracing::info!(%filter, "SIGHUP: log filter in force"),
        Err(error) => tracing::warn!(%error, "SIGHUP: log filter unchanged"),
    }
    reload_directory(app, &read);
    match read.audit.events_secret() {
        Ok(secret) => {
            let mut current = app.events_secret.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if *current != secret {
                tracing::info!(enabled = secret.is_some(), "SIGHUP: the /events secret changed");
                *current = secret;
            }
        }
        Err(error) => tracing::warn!(%error, "SIGHUP: /events keeps its old secret"),
    }
    let mut later = needs_restart(running, &read);
    if app.decisions.is_none() && read.audit.decisions != crate::config::DecisionSink::None {
        later.push("audit.decisions (the decision trail was off at start)".to_string());
    }
    if !later.is_empty() {
        tracing::warn!(settings = %later.join(", "), "SIGHUP: these changed settings apply at the next start");
    }
}

/// Reopens the decision trail's file as it is configured now (logrotate moved it).
fn reopen_decisions(app: &App) {
    let Some(decisions) = &app.decisions else { return };
    match decisions.reopen() {
        Ok(Some(path)) => tracing::info!(path = %path.display(), "audit: reopened the decision trail"),
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "audit: could not reopen the decision trail; writing to the old file")
        }
    }
}

/// Puts a directory client made from `read`'s `[ldap]` in place of the one in use; one that
/// cannot be made leaves the old one serving. Logins remembered from the old one stay valid for
/// the rest of their `cache_secs`.
fn reload_directory(app: &App, read: &Config) {
    let Some(ldap) = &read.ldap else {
        // Without a directory, nothing re-checks directory users' identity and personal tokens:
        // a file that lost its [ldap] section (truncated, half-written) must not do that to a
        // running server. Removing the directory takes a restart, which says so.
        if app.authenticator.directory().is_some() {
            tracing::warn!("SIGHUP: [ldap] is gone from the configuration; the directory stays in use until the next start");
        }
        return;
    };
    match DirectoryAuthenticator::new(ldap, app.store.clone()) {
        Ok(directory) => {
            app.authenticator.replace_directory(Some(Arc::new(directory)));
            tracing::info!(url = %ldap.url, "SIGHUP: directory settings reloaded");
        }
        Err(error) => {
            tracing::warn!(%error, "SIGHUP: the [ldap] settings do not make a directory client; the directory keeps its old settings")
        }
    }
}

/// The top-level keys and sections whose values differ between `running` and `read`, other
/// than what a reload applies.
fn needs_restart(running: &Config, read: &Config) -> Vec<String> {
    let table = |config: &Config| toml::Table::try_from(config).unwrap_or_default();
    let (running, read) = (table(running), table(read));
    let mut keys: Vec<&String> = running.keys().chain(read.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut changed: Vec<String> = keys
        .into_iter()
        .filter(|key| !matches!(key.as_str(), "log_filter" | "ldap" | "audit"))
        .filter(|key| running.get(*key) != read.get(*key))
        .map(|key| key.to_string())
        .collect();
    // Of [audit], the decision sink is applied; the rest is read at start.
    let audit = |table: &toml::Table| {
        table.get("audit").and_then(|audit| audit.as_table()).cloned().unwrap_or_default()
    };
    let (running_audit, read_audit) = (audit(&running), audit(&read));
    for key in ["aggregate_secs", "keep_days", "max_entries"] {
        if running_audit.get(key) != read_audit.get(key) {
            changed.push(format!("audit.{key}"));
        }
    }
    changed
}
