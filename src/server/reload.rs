//! `SIGHUP`: what a running server takes up again without a restart, and what it says about the
//! rest.
//!
//! Reloaded: the TLS certificate ([`super::tls`]), the decision trail's file (reopened, for
//! logrotate) and the log filter (`log_filter` of the configuration file read again;
//! `PORTCULLIS_LOG` wins while it is set). A configuration that no longer loads changes nothing
//! and is reported. Other settings that changed in the file are named in one warning: they
//! apply at the next start (the listener, the database, the directory connection and the
//! limits are built once).

use std::sync::Arc;

use super::App;
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
    if let Some(decisions) = &app.decisions {
        match decisions.reopen() {
            Ok(Some(path)) => tracing::info!(path = %path.display(), "audit: reopened the decision trail"),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "audit: could not reopen the decision trail; writing to the old file")
            }
        }
    }
    let running = &app.config;
    let read = match Config::load(running.source_file.as_deref(), std::env::vars()) {
        Ok(read) => read,
        Err(error) => {
            tracing::warn!(%error, "SIGHUP: the configuration does not load; nothing else changed");
            return;
        }
    };
    let filter = crate::logging::filter_text(read.log_filter.as_deref());
    match crate::logging::set_filter(&filter) {
        Ok(()) => tracing::info!(%filter, "SIGHUP: log filter in force"),
        Err(error) => tracing::warn!(%error, "SIGHUP: log filter unchanged"),
    }
    let later = needs_restart(running, &read);
    if !later.is_empty() {
        tracing::warn!(settings = %later.join(", "), "SIGHUP: these changed settings apply at the next start");
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
    keys.into_iter()
        .filter(|key| key.as_str() != "log_filter")
        .filter(|key| running.get(*key) != read.get(*key))
        .map(|key| key.to_string())
        .collect()
}
