//! argon2id password hashing on a bounded pool of blocking threads.
//!
//! One verification takes tens of milliseconds and `memory_kib` of memory. Running it on the
//! async workers would stall every other request, and running any number at once would let a
//! login burst exhaust memory; so each runs on a [`VerifierPool`] with one thread per allowed
//! concurrent hash, each reusing one buffer of hash memory.

use std::sync::Arc;

use std::net::IpAddr;

use super::verifier_pool::{NotVerified, VerifierPool};
use crate::config::PasswordConfig;
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};

/// Hashes and verifies passwords with argon2id at the configured cost.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    /// One thread per concurrent verification; waiting callers queue there, holding no hash
    /// memory.
    verifiers: Arc<VerifierPool>,
    /// A hash of a random password at the configured cost, verified against when the user does
    /// not exist so that an unknown name takes as long to refuse as a wrong password.
    decoy_hash: Arc<str>,
    /// How long making the decoy took: about one verification at the configured cost.
    hash_time: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

impl PasswordHasher {
    pub fn new(config: &PasswordConfig, concurrency: usize) -> Result<Self, HashError> {
        let params = Params::new(config.memory_kib, config.iterations, config.parallelism, None)
            .map_err(|e| HashError::Params(e.to_string()))?;
        let started = std::time::Instant::now();
        let decoy_hash = hash_with(&params, &random_password())?;
        let hash_time = started.elapsed();
        let verifiers = VerifierPool::start(concurrency.max(1), params.block_count(), config.max_queued)
            .map_err(|e| HashError::Hash(format!("cannot start the verifier threads: {e}")))?;
        Ok(PasswordHasher {
            params,
            verifiers: Arc::new(verifiers),
            decoy_hash: decoy_hash.into(),
            hash_time,
        })
    }

    /// Whether a verification for `client` would find a place in the queue now.
    pub fn has_room(&self, client: IpAddr) -> bool {
        self.verifiers.has_room(client)
    }

    /// About how long one verification at the configured cost takes (measured at start).
    pub fn hash_time(&self) -> std::time::Duration {
        self.hash_time
    }

    /// Hashes `password` into a PHC string (blocking; for the CLI).
    pub fn hash_blocking(&self, password: &str) -> Result<String, HashError> {
        hash_with(&self.params, password)
    }

    /// Verifies `password` against `phc` off the async workers. `None` for `phc` verifies
    /// against the decoy and always fails, taking the same time.
    pub async fn verify(
        &self,
        password: String,
        phc: Option<String>,
        client: IpAddr,
    ) -> Result<bool, NotVerified> {
        let stored = phc.is_some();
        let phc = phc.map(Arc::from).unwrap_or_else(|| self.decoy_hash.clone());
        Ok(self.verifiers.verify(password, phc, client).await? && stored)
    }
}

/// Verifies a password against a PHC string; a malformed hash never matches.
pub fn verify_blocking(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        // The parameters come from the stored hash, so changing the configured cost does not
        // lock out users whose hashes were made at the old one.
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

fn hash_with(params: &Params, password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    argon2
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Hash(e.to_string()))
}

/// A random password for generated credentials: 24 characters from an unambiguous alphabet
/// (about 137 bits).
pub fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..24).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A hasher at the lowest cost argon2 allows, for tests that hash real passwords.
    pub(crate) fn cheap() -> PasswordHasher {
        let config = PasswordConfig {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 1,
            ..Default::default()
        };
        PasswordHasher::new(&config, 1).unwrap()
    }

    #[tokio::test]
    async fn verifies_only_the_right_password() {
        let hasher = cheap();
        let hash = hasher.hash_blocking("s3cret").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let client = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(hasher.verify("s3cret".into(), Some(hash.clone()), client).await, Ok(true));
        assert_eq!(hasher.verify("wrong".into(), Some(hash), client).await, Ok(false));
        assert_eq!(
            hasher.verify("anything".into(), None, client).await,
            Ok(false),
            "the decoy never matches"
        );
        assert_eq!(hasher.verify("x".into(), Some("not a hash".into()), client).await, Ok(false));
    }
}
