//! Log lines to standard error, text or JSON, with a filter that `SIGHUP` can change.
//!
//! The filter comes from `PORTCULLIS_LOG` when it is set (it wins, as environment does over the
//! file everywhere else), else from the configuration's `log_filter`, else `info`. A reload
//! ([`set_filter`]) swaps it in place, so turning on `portcullis=debug` for a while needs no
//! restart.

use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Replaces the filter of the installed subscriber; one per process, set by [`init`].
type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

static RELOAD: OnceLock<Reload> = OnceLock::new();

/// The filter text in force: `PORTCULLIS_LOG`, else `configured`, else `info`.
pub fn filter_text(configured: Option<&str>) -> String {
    std::env::var("PORTCULLIS_LOG")
        .ok()
        .filter(|text| !text.is_empty())
        .or(configured.map(str::to_string))
        .unwrap_or_else(|| "info".to_string())
}

/// Installs the process's subscriber. An unreadable filter falls back to `info` (reported by
/// the caller through [`check_filter`]).
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        // One object per line, with the fields of the spans around each event (the request id).
        LogFormat::Json => {
            let builder = builder.json().with_current_span(true).with_filter_reloading();
            let handle = builder.reload_handle();
            let _ =
                RELOAD.set(Box::new(move |filter| handle.reload(filter).map_err(|error| error.to_string())));
            builder.init();
        }
        // Colours only for a person at a terminal: a log file or journald gets plain text that
        // grep and log shippers read as written.
        LogFormat::Text => {
            let builder = builder
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_filter_reloading();
            let handle = builder.reload_handle();
            let _ =
                RELOAD.set(Box::new(move |filter| handle.reload(filter).map_err(|error| error.to_string())));
            builder.init();
        }
    }
}

/// Whether `text` is a filter `tracing` reads (`info`, `portcullis=debug,warn`).
pub fn check_filter(text: &str) -> Result<(), String> {
    EnvFilter::try_new(text).map(|_| ()).map_err(|error| format!("log_filter {text:?}: {error}"))
}

/// Puts `text` in force as the filter.
pub fn set_filter(text: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(text).map_err(|error| format!("log_filter {text:?}: {error}"))?;
    match RELOAD.get() {
        Some(reload) => reload(filter),
        None => Err("logging is not set up".to_string()),
    }
}
