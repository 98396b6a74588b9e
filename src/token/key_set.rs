//! The stored signing keys as one set, and the files registries trust them by.
//!
//! Keys and their states (`next`, `current`, `retired`) are rows of the database
//! (`signing_keys`, schema 0009), so every process and every replica agrees on them and a
//! rotation step is one transaction. [`KeySet`] is those rows parsed; [`publish`] writes what
//! registries read from it: the certificate bundle (`token.pem`, `rootcertbundle`) and the JWKS
//! (`jwks.json`, registry 3.x's `jwks`), both holding every trusted key. The CLI's rotation
//! commands and each server's [`super::keyring::Keyring`] publish after every change; a key signs
//! only while the bundle file holds it ([`KeyFiles::bundle_holds`]).
//!
//! A database made before keys were stored imports its `token.key` and `token.pem` once, as the
//! current key ([`ensure_keys`]); a new one generates its first key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

pub use super::keys::HeaderMode;
use super::keys::{generate_pem, KeyError, SigningKey};
use crate::config::{Config, KeyAlgorithm};
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
    let imported = key_path.exists();
    let added = if imported {
        let private_key = read(&key_path)?;
        let certificate = read(&cert_path)?;
        let parsed = SigningKey::from_pem(
            &private_key,
            &certificate,
            &key_path.display().to_string(),
            HeaderMode::from_config(config),
        )?;
        let new = NewSigningKey {
            state: KeyState::Current,
            algorithm: parsed.algorithm().jws_name(),
            private_key: &private_key,
            certificate: &first_certificate(&certificate),
        };
        store.add_signing_key(&new, now())
    } else {
        add_new_key(store, KeyState::Current, config.token.algorithm)?
    };
    match added {
        Ok(_) if imported => {
            tracing::info!(key = %key_path.display(), "imported the signing key into the database; the database holds the keys from now on")
        }
        Ok(_) => tracing::info!(algorithm = config.token.algorithm.jws_name(), "created the signing key"),
        // Another process stored its key first: that one is the key.
        Err(StoreError::AlreadyExists { .. }) => {}
        Err(error) => return Err(key_store(error)),
    }
    Ok(())
}

/// Generates a key of `algorithm` and stores it in `state`: the outer error is the key's
/// generation, the inner one the store's answer ([`StoreError::AlreadyExists`] when a key holds
/// that state). Blocking.
pub fn add_new_key(
    store: &dyn Store,
    state: KeyState,
    algorithm: KeyAlgorithm,
) -> Result<Result<i64, StoreError>, KeyError> {
    let (private_key, certificate) = generate_pem(algorithm)?;
    let new = NewSigningKey {
        state,
        algorithm: algorithm.jws_name(),
        private_key: &private_key,
        certificate: &certificate,
    };
    Ok(store.add_signing_key(&new, now()))
}

/// The key set as stored now. Blocking.
pub fn load(store: &dyn Store, mode: HeaderMode) -> Result<KeySet, KeyError> {
    KeySet::from_stored(&store.signing_keys().map_err(key_store)?, mode)
}

/// The key set as stored now, with its bundle and JWKS written ([`load`], then [`publish`]).
/// Blocking.
pub fn load_and_publish(store: &dyn Store, mode: HeaderMode, files: &KeyFiles) -> Result<KeySet, KeyError> {
    let set = load(store, mode)?;
    publish(&set, files)?;
    Ok(set)
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
