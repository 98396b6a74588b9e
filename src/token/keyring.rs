//! The key set a running server signs with, following the database: a key change any process
//! commits (a promotion, an emergency) reaches the server through the change log like every
//! other change, and [`Keyring::follow`] takes it up at the next token request, without restart
//! or signal. A set is taken up only once its files are written and the bundle holds its current
//! key; until then the old key keeps signing while it is still stored, and nothing signs once it
//! is not (503). What the set is and how its files are written is [`super::key_set`]'s business.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::key_set::{ensure_keys, load_and_publish, publish, HeaderMode, KeyFiles, KeySet};
use super::keys::{KeyError, SigningKey};
use crate::config::Config;
use crate::store::Store;

/// How often a server retries taking up keys it could not use.
const RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// The key set a server signs with, following the database.
pub struct Keyring {
    set: RwLock<Arc<KeySet>>,
    /// The snapshot's key generation the set was taken up at ([`crate::access::AccessSnapshot::key_generation`]).
    generation: AtomicU64,
    /// While the keys as stored cannot be taken up: why (`/readyz` says it).
    failure: RwLock<Option<String>>,
    /// Set when the key in use is no longer among the stored keys (an emergency rotation this
    /// server could not take up): it must not sign any more; token requests get 503.
    withdrawn: std::sync::atomic::AtomicBool,
    /// When the last take-up failed (it is tried again after [`RETRY`]); locked for each
    /// take-up, so that there is one at a time.
    last_failure: std::sync::Mutex<Option<std::time::Instant>>,
    mode: HeaderMode,
    files: KeyFiles,
    /// This server's token lifetime, noted on each key it signs with.
    lifetime: i64,
}

impl Keyring {
    /// Makes sure a key exists, loads the set, publishes its files. Blocking.
    pub fn open(store: &dyn Store, config: &Config, generation: u64) -> Result<Keyring, KeyError> {
        ensure_keys(store, config)?;
        let mode = HeaderMode::from_config(config);
        let files = KeyFiles::from_config(config);
        let set = load_and_publish(store, mode, &files)?;
        let lifetime = i64::try_from(config.token_lifetime_secs()).unwrap_or(i64::MAX);
        note_lifetime(store, lifetime);
        crate::metrics::metrics().signing_key_taken_up(set.current().not_after());
        Ok(Keyring {
            set: RwLock::new(Arc::new(set)),
            generation: AtomicU64::new(generation),
            failure: RwLock::new(None),
            withdrawn: Default::default(),
            last_failure: Default::default(),
            mode,
            files,
            lifetime,
        })
    }

    /// The key that signs now.
    pub fn current(&self) -> Arc<SigningKey> {
        self.set().current().clone()
    }

    pub fn set(&self) -> Arc<KeySet> {
        self.set.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether the set was taken up at `generation` (an atomic load: asked at every token).
    pub fn is_at(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Acquire) == generation
    }

    /// Whether the key in use was removed from the database while this server could not take
    /// up the new keys: then it must not sign.
    pub fn is_withdrawn(&self) -> bool {
        self.withdrawn.load(Ordering::Acquire)
    }

    /// Why the stored keys cannot be taken up, while they cannot.
    pub fn failure(&self) -> Option<String> {
        self.failure.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Takes up the keys as stored now, seen at snapshot key generation `generation`: the new
    /// set signs once its files are written and the bundle holds its current key. Otherwise the
    /// old set keeps signing while its key is still stored (its certificate is in the bundle
    /// written before), is withdrawn when it is not, and the take-up is tried again after
    /// [`RETRY`]. Blocking.
    pub fn follow(&self, store: &dyn Store, generation: u64) {
        // Held for the whole take-up: one at a time.
        let mut last_failure = self.last_failure.lock().unwrap_or_else(PoisonError::into_inner);
        if self.is_at(generation) || last_failure.is_some_and(|at| at.elapsed() < RETRY) {
            return;
        }
        let rows = store.signing_keys();
        let taken = rows.as_ref().map_err(|error| KeyError::Store(error.to_string())).and_then(|rows| {
            let set = KeySet::from_stored(rows, self.mode)?;
            publish(&set, &self.files)?;
            Ok(set)
        });
        match taken {
            Ok(set) => {
                let old = self.set();
                if set.current().kid() != old.current().kid() {
                    if set.keys()[0].id < old.keys()[0].id {
                        tracing::warn!(kid = %set.current().kid(), "the database's current signing key is older than the one in use (was a backup restored?): registries given a later bundle refuse its tokens");
                    }
                    tracing::info!(kid = %set.current().kid(), previous = %old.current().kid(), "signing with the new current key");
                }
                crate::metrics::metrics().signing_key_taken_up(set.current().not_after());
                *self.set.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
                *self.failure.write().unwrap_or_else(PoisonError::into_inner) = None;
                self.withdrawn.store(false, Ordering::Release);
                self.generation.store(generation, Ordering::Release);
                *last_failure = None;
                note_lifetime(store, self.lifetime);
            }
            Err(error) => {
                let current = self.current();
                let still_stored = rows.as_ref().map(|rows| {
                    rows.iter().any(|row| row.certificate.trim() == current.certificate_pem().trim())
                });
                // A database that cannot be read says nothing about the key: keep signing.
                let withdrawn = matches!(still_stored, Ok(false));
                self.withdrawn.store(withdrawn, Ordering::Release);
                *self.failure.write().unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
                *last_failure = Some(std::time::Instant::now());
                if withdrawn {
                    tracing::error!(%error, kid = %current.kid(), "the signing key in use was removed from the database and the new keys cannot be used here: refusing to sign until they can");
                } else {
                    tracing::error!(%error, kid = %current.kid(), "the new signing keys cannot be used; signing with the previous key, which is still trusted");
                }
            }
        }
    }
}

/// Notes this server's token lifetime on the current key (best effort: `finish` then also
/// counts the CLI's own lifetime).
fn note_lifetime(store: &dyn Store, lifetime: i64) {
    if let Err(error) = store.note_key_lifetime(lifetime) {
        tracing::warn!(%error, "could not note this server's token lifetime on the signing key");
    }
}
