//! `[audit] keep_days`: the server removes stored changes and events older than that, at start
//! and then hourly. Any number of servers may do it at once; each removal is one DELETE.

use std::time::Duration;

use crate::store::{blocking, now, SharedStore};

/// How often old entries are looked for.
const EVERY: Duration = Duration::from_secs(3600);

/// Removes entries older than `keep_days` now and every hour, forever; `keep_days = 0` keeps
/// everything and returns at once.
pub async fn prune_forever(store: SharedStore, keep_days: u32) {
    if keep_days == 0 {
        return;
    }
    let mut ticks = tokio::time::interval(EVERY);
    loop {
        ticks.tick().await;
        let before = now() - i64::from(keep_days) * 86_400;
        match blocking(&store, move |store| store.prune_audit(before)).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, keep_days, "removed old audit log entries"),
            // Tried again at the next tick; nothing is lost by waiting.
            Err(error) => tracing::warn!(%error, "could not remove old audit log entries"),
        }
    }
}
