//! The signing keys: several at once, each `next` (trusted by registries, not signing yet),
//! `current` (signing; exactly one) or `retired` (trusted until every token it signed has
//! expired), and the files registries trust them by.
//!
//! Where things live, so that every process and every replica agrees: keys and their states are
//! rows of the database (`signing_keys`, schema 0009), changed one transaction per rotation step
//! by the CLI; a server follows them through the change log like any other change, so it signs
//! with the new current key from its next request on, without restart or signal. The registry's
//! files are derived from the rows: the certificate bundle (`token.pem`, for `rootcertbundle`) and
//! the JWKS (`jwks.json`, for registry 3.x's `jwks`), both holding every trusted key. They are
//! written by the command that changed the keys and again by each server when it takes up a new
//! key set; a server signs only with a key whose certificate is in the bundle file as it reads
//! it back, so it never signs with a key the bundle it wrote does not contain.
//!
//! A database made before keys were stored imports its `token.key` and `token.pem` once, as the
//! current key; a new one generates its first key.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use serde_json::{json, Value};

pub use super::keys::HeaderMode;
use super::keys::{generate_pem, KeyError, SigningKey};
use crate::config::Config;
use crate::store::{now, KeyState, NewSigningKey, Store, StoreError, StoredKey};

/// The files registries read.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    /// PEM certificates of every trusted key (`rootcertbundle`).
    pub bundle: PathBuf,
    /// JWKS of every trusted key (registry 3.x `jwks`).
    pub jwks: PathBuf,
}

impl KeyFiles {
    pub fn from_config(config: &Config) -> KeyFiles {
        KeyFiles { bundle: config.certificate_path(), jwks: config.jwks_path() }
    }

    /// Whether the bundle file, as it is on disk now, holds `key`'s certificate: the one
    /// condition under which `key` may sign (registries restarted from the file trust it).
    pub fn bundle_holds(&self, key: &SigningKey) -> Result<bool, KeyError> {
        Ok(read(&self.bundle)?.contains(key.certificate_pem().trim()))
    }
}

/// One stored key, parsed.
pub struct Key {
    pub id: i64,
    pub state: KeyState,
    pub signing: Arc<SigningKey>,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    pub retired_at: Option<i64>,
    /// The longest token lifetime any server signed with it (see schema 0009).
    pub max_lifetime: Option<i64>,
}

/// Every stored key, parsed, and the one that signs.
pub struct KeySet {
    /// Current first, then next, then retired (newest first): the bundle's order.
    keys: Vec<Key>,
    /// Rows that did not parse (a corrupted next or retired key): left out of the bundle and
    /// the JWKS, listed by `key list`, never fatal unless it is the current key.
    broken: Vec<(i64, KeyState, String)>,
}

impl KeySet {
    /// Parses `rows`; exactly one must be current.
    pub fn from_stored(rows: &[StoredKey], mode: HeaderMode) -> Result<KeySet, KeyError> {
        let mut keys = Vec::with_capacity(rows.len());
        let mut broken = Vec::new();
        for row in rows {
            let origin = format!("signing key {} in the database", row.id);
            let signing = match SigningKey::from_pem(&row.private_key, &row.certificate, &origin, mode) {
                Ok(signing) => signing,
                Err(error) if row.state == KeyState::Current => return Err(error),
                Err(error) => {
                    tracing::warn!(id = row.id, state = row.state.as_str(), %error, "a stored signing key does not parse; it is left out of the bundle and the JWKS");
                    broken.push((row.id, row.state, error.to_string()));
                    continue;
                }
            };
            keys.push(Key {
                id: row.id,
                state: row.state,
                signing: Arc::new(signing),
                created_at: row.created_at,
                activated_at: row.activated_at,
                retired_at: row.retired_at,
                max_lifetime: row.max_lifetime,
            });
        }
        let rank = |key: &Key| match key.state {
            KeyState::Current => 0,
            KeyState::Next => 1,
            KeyState::Retired => 2,
        };
        keys.sort_by_key(|key| (rank(key), std::cmp::Reverse(key.id)));
        match keys.iter().filter(|key| key.state == KeyState::Current).count() {
            1 => Ok(KeySet { keys, broken }),
            0 => Err(KeyError::Store(
                "no current signing key yet: `portcullis init` (or the first `serve`) creates one".into(),
            )),
            found => Err(KeyError::Store(format!("{found} current keys; exactly one must sign"))),
        }
    }

    /// The key that signs.
    pub fn current(&self) -> &Arc<SigningKey> {
        &self.keys[0].signing
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub fn next(&self) -> Option<&Key> {
        self.keys.iter().find(|key| key.state == KeyState::Next)
    }

    /// Stored keys that did not parse: (id, state, why).
    pub fn broken(&self) -> &[(i64, KeyState, String)] {
        &self.broken
    }

    /// The longest lifetime any server signed a retired key's tokens with, or `fallback`.
    pub fn retired_lifetime(&self, fallback: i64) -> i64 {
        self.keys
            .iter()
            .filter(|key| key.state == KeyState::Retired)
            .filter_map(|key| key.max_lifetime)
            .fold(fallback, i64::max)
    }

    /// The certificate bundle: every trusted key's certificate, PEM.
    pub fn bundle_pem(&self) -> String {
        let mut bundle = String::new();
        for key in &self.keys {
            bundle.push_str(key.signing.certificate_pem().trim_end());
            bundle.push('\n');
        }
        bundle
    }

    /// The JWKS of every trusted key, each under both names a token header may give it (the
    /// libtrust key ID and the thumbprint), so that the file is the same whichever process
    /// writes it, whatever its `[token] key_id`: the kid its tokens carry is always there.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self.keys.iter().flat_map(|key| key.signing.jwks_entries()).collect();
        json!({ "keys": keys })
    }

    /// The algorithms of the trusted keys, for the registry's `signingalgorithms`.
    pub fn algorithms(&self) -> Vec<&'static str> {
        let mut algorithms: Vec<&'static str> =
            self.keys.iter().map(|key| key.signing.algorithm().jws_name()).collect();
        algorithms.sort_unstable();
        algorithms.dedup();
        algorithms
    }
}

/// Makes sure the database holds a current key: on a database without any, imports the key
/// files of an older version (`[token] key_file` and the certificate) or generates one with
/// `[token] algorithm`. Two processes doing this at once end with one key. Blocking.
pub fn ensure_keys(store: &dyn Store, config: &Config) -> Result<(), KeyError> {
    // A next key without a current one (prepared before the first start of this version) is no
    // reason to skip the import.
    if store.signing_keys().map_err(key_store)?.iter().any(|key| key.state == KeyState::Current) {
        return Ok(());
    }
    let (key_path, cert_path) = (config.key_path(), config.certificate_path());
    let (private_key, certificate, algorithm, imported) = if key_path.exists() {
        let private_key = read(&key_path)?;
        let certificate = read(&cert_path)?;
        let parsed = SigningKey::from_pem(
            &private_key,
            &certificate,
            &key_path.display().to_string(),
            HeaderMode::from_config(config),
        )?;
        (private_key, first_certificate(&certificate), parsed.algorithm(), true)
    } else {
        let (private_key, certificate) = generate_pem(config.token.algorithm)?;
        (private_key, certificate, config.token.algorithm, false)
    };
    let new = NewSigningKey {
        state: KeyState::Current,
        algorithm: algorithm.jws_name(),
        private_key: &private_key,
        certificate: &certificate,
    };
    match store.add_signing_key(&new, now()) {
        Ok(_) if imported => {
            tracing::info!(key = %key_path.display(), "imported the signing key into the database; the database holds the keys from now on")
        }
        Ok(_) => tracing::info!(algorithm = algorithm.jws_name(), "created the signing key"),
        // Another process stored its key first: that one is the key.
        Err(StoreError::AlreadyExists { .. }) => {}
        Err(error) => return Err(key_store(error)),
    }
    Ok(())
}

/// The key set as stored now. Blocking.
pub fn load(store: &dyn Store, mode: HeaderMode) -> Result<KeySet, KeyError> {
    KeySet::from_stored(&store.signing_keys().map_err(key_store)?, mode)
}

/// Writes the bundle and the JWKS for `set` (only when they differ from what is there), then
/// checks that the bundle file holds the current key's certificate: the one condition under
/// which `set` may sign.
pub fn publish(set: &KeySet, files: &KeyFiles) -> Result<(), KeyError> {
    write_if_changed(&files.bundle, &set.bundle_pem())?;
    let jwks = serde_json::to_string_pretty(&set.jwks()).unwrap_or_default() + "\n";
    write_if_changed(&files.jwks, &jwks)?;
    if !files.bundle_holds(set.current())? {
        return Err(KeyError::Invalid {
            path: files.bundle.display().to_string(),
            message: "the bundle does not hold the current key's certificate".into(),
        });
    }
    Ok(())
}

fn write_if_changed(path: &Path, contents: &str) -> Result<(), KeyError> {
    if std::fs::read_to_string(path).is_ok_and(|existing| existing == contents) {
        return Ok(());
    }
    super::keys::write_public(path, contents)
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path)
        .map_err(|source| KeyError::Read { path: path.display().to_string(), source })
}

/// The first certificate of a PEM file (an older version's `token.pem` holds one).
fn first_certificate(pem: &str) -> String {
    match pem.find("-----END CERTIFICATE-----") {
        Some(end) => format!("{}\n", &pem[..end + "-----END CERTIFICATE-----".len()].trim_start()),
        None => pem.to_string(),
    }
}

fn key_store(error: StoreError) -> KeyError {
    KeyError::Store(error.to_string())
}

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
        let set = load(store, mode)?;
        publish(&set, &files)?;
        let lifetime = i64::try_from(config.token_lifetime_secs()).unwrap_or(i64::MAX);
        note_lifetime(store, lifetime);
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
