//! How much of the audit log is kept: `[audit] keep_days` (entries older than that go) and
//! `[audit] max_entries` (past that many, the oldest go, whatever their age: a flood of pulls
//! must not fill the disk). The server applies both at start and every [`EVERY`], in batches
//! of [`BATCH`] rows so that no removal holds the database for long. Any number of servers may
//! do it at once.

use std::time::Duration;

use crate::store::{blocking, now, SharedStore, StoreError};

/// How often the log is trimmed.
const EVERY: Duration = Duration::from_secs(600);

/// Rows removed per transaction.
const BATCH: usize = 10_000;

/// Trims the log now and every [`EVERY`], forever.
pub async fn trim_forever(store: SharedStore, keep_days: u32, max_entries: u64) {
    if keep_days == 0 && max_entries == 0 {
        return;
    }
    let mut ticks = tokio::time::interval(EVERY);
    loop {
        ticks.tick().await;
        if let Err(error) = trim(&store, keep_days, max_entries).await {
            // Tried again at the next tick; nothing is lost by waiting.
            tracing::warn!(%error, "could not remove old audit log entries");
        }
    }
}

/// One round: what is older than `keep_days`, then what is beyond `max_entries` (0: no bound).
async fn trim(store: &SharedStore, keep_days: u32, max_entries: u64) -> Result<(), StoreError> {
    let mut removed = 0;
    if keep_days > 0 {
        let before = now() - i64::from(keep_days) * 86_400;
        removed +=
            in_batches(store, usize::MAX, move |store, batch| store.prune_audit(before, batch)).await?;
    }
    let count = blocking(store, |store| store.count_audit()).await?;
    crate::metrics::metrics().audit_log_entries(count);
    if max_entries > 0 && count > max_entries {
        tracing::warn!(count, max_entries, "the audit log is over [audit] max_entries: removing its oldest entries (raise max_entries or lower keep_days to keep more)");
        let excess = usize::try_from(count - max_entries).unwrap_or(usize::MAX);
        removed += in_batches(store, excess, |store, batch| store.remove_oldest_audit(batch)).await?;
        crate::metrics::metrics().audit_log_entries(count.min(max_entries));
    }
    if removed > 0 {
        tracing::info!(removed, keep_days, max_entries, "removed old audit log entries");
    }
    Ok(())
}

/// A pause between two batches: room for the writes waiting behind the last one.
const PAUSE: Duration = Duration::from_millis(10);

/// Removes at most `limit` rows, [`BATCH`] per transaction, with `remove` (given a batch size,
/// it removes at most that many and says how many), until a batch comes up short.
async fn in_batches(
    store: &SharedStore,
    limit: usize,
    remove: impl Fn(&dyn crate::store::Store, usize) -> Result<usize, StoreError> + Clone + Send + 'static,
) -> Result<usize, StoreError> {
    let mut removed = 0;
    while removed < limit {
        let batch = (limit - removed).min(BATCH);
        let remove = remove.clone();
        let gone = blocking(store, move |store| remove(store, batch)).await?;
        removed += gone;
        if gone < batch {
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    Ok(removed)
}
