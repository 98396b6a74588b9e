//! argon2id password hashing on a bounded pool of blocking threads, and the verification of
//! the hashes `portcullis import` carried over (bcrypt, PBKDF2, ...; see [`super::carried_hash`]),
//! which a successful login replaces with argon2id.
//!
//! One verification takes tens of milliseconds and `memory_kib` of memory. Running it on the
//! async workers would stall every other request, and running any number at once would let a
//! login burst exhaust memory; so each runs on a [`VerifierPool`] with one thread per allowed
//! concurrent hash, each reusing one buffer of hash memory.

use std::sync::Arc;

use std::net::IpAddr;

use super::carried_hash;
use super::verifier_pool::{NotVerified, VerifierPool};
use crate::config::PasswordConfig;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::{Argon2, Params};

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
    /// About how long the costliest stored hash seen takes to verify (nanoseconds), estimated
    /// from its parameters: after the operator lowers the cost, accounts with old hashes take
    /// longer to refuse than a decoy, so every refusal is made to take at least this long
    /// (review likely defect 11). At least `hash_time`.
    slowest_stored: Arc<std::sync::atomic::AtomicU64>,
    /// How long one verification of each class of carried-over hash took ([`carried_hash::cost_class`]:
    /// bcrypt of one cost, ...), the shortest seen: measured, since their cost is not in argon2's
    /// units, and the shortest, since a busy machine only ever makes one slower. Every refusal
    /// takes at least as long as the slowest class.
    carried_costs: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Duration>>>,
}

/// The outcome of one verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub matched: bool,
    /// A carried-over hash matched: an argon2id hash of the same password to store instead.
    pub upgraded: Option<String>,
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
        let verifiers = VerifierPool::start(concurrency.max(1), params.clone(), config.max_queued)
            .map_err(|e| HashError::Hash(format!("cannot start the verifier threads: {e}")))?;
        Ok(PasswordHasher {
            params,
            verifiers: Arc::new(verifiers),
            decoy_hash: decoy_hash.into(),
            hash_time,
            slowest_stored: Arc::new(std::sync::atomic::AtomicU64::new(nanos(hash_time))),
            carried_costs: Default::default(),
        })
    }

    /// Takes note of a stored hash's cost (at start for every account, and at each
    /// verification), so that [`PasswordHasher::slowest_verification`] covers it. A carried-over
    /// hash of a class not seen yet is timed here, once per class (blocking: at start, or from
    /// the CLI).
    pub fn note_stored_hash(&self, phc: &str) {
        if let Some(class) = carried_hash::cost_class(phc) {
            if !self.costs().contains_key(&class) {
                let started = std::time::Instant::now();
                carried_hash::verify(random_password().as_bytes(), phc);
                self.note_carried_cost(class, started.elapsed());
            }
            return;
        }
        self.note_argon2_hash(phc);
    }

    fn costs(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, std::time::Duration>> {
        self.carried_costs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One verification of `class` took `took`: the class's estimate is the shortest seen. Not
    /// capped as argon2's are: import refuses the kinds that would take too long
    /// ([`carried_hash::MAX_BCRYPT_COST`]), and a stored bcrypt of cost 14 is verified at every
    /// login of its user, so a refusal may as well take as long.
    fn note_carried_cost(&self, class: String, took: std::time::Duration) {
        let mut costs = self.costs();
        let kept = costs.entry(class).or_insert(took);
        *kept = (*kept).min(took);
    }

    fn note_argon2_hash(&self, phc: &str) {
        let Ok(params) = PasswordHash::new(phc).and_then(|hash| Params::try_from(&hash)) else { return };
        let work = |params: &Params| f64::from(params.m_cost()) * f64::from(params.t_cost());
        let ratio = work(&params) / work(&self.params);
        if ratio > 1.0 {
            // Capped: a hash nobody could verify in time is not worth waiting for on every refusal.
            let estimate = self.hash_time.mul_f64(ratio.min(64.0));
            self.slowest_stored.fetch_max(nanos(estimate), std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// About how long the costliest stored hash takes to verify (at least one verification at
    /// the configured cost).
    pub fn slowest_verification(&self) -> std::time::Duration {
        let argon2 =
            std::time::Duration::from_nanos(self.slowest_stored.load(std::sync::atomic::Ordering::Relaxed));
        self.costs().values().copied().fold(argon2, std::time::Duration::max)
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

    /// Verifies `password` against the stored hash `phc` off the async workers. `None` for `phc`
    /// verifies against the decoy and always fails, taking the same time.
    pub async fn verify(
        &self,
        password: String,
        phc: Option<String>,
        client: IpAddr,
    ) -> Result<Verified, NotVerified> {
        let stored = phc.is_some();
        let class = phc.as_deref().and_then(carried_hash::cost_class);
        if let Some(phc) = phc.as_deref().filter(|_| class.is_none()) {
            self.note_argon2_hash(phc);
        }
        let phc = phc.map(Arc::from).unwrap_or_else(|| self.decoy_hash.clone());
        let checked = self.verifiers.verify(password, phc, client).await?;
        if let Some(class) = class {
            self.note_carried_cost(class, checked.took);
        }
        Ok(Verified { matched: checked.matched && stored, upgraded: checked.upgraded.filter(|_| stored) })
    }
}

fn nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
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
    super::verifier_pool::hash_in(&mut Vec::new(), params, password.as_bytes())
        .ok_or_else(|| HashError::Hash("argon2id could not hash with these parameters".into()))
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

    #[test]
    fn a_costlier_stored_hash_raises_the_slowest_verification() {
        let hasher = cheap();
        assert_eq!(hasher.slowest_verification(), hasher.hash_time());
        let params = Params::new(hasher.params.m_cost() * 4, hasher.params.t_cost(), 1, None).unwrap();
        let costly = hash_with(&params, "pw").unwrap();
        hasher.note_stored_hash(&costly);
        let ratio = hasher.slowest_verification().as_secs_f64() / hasher.hash_time().as_secs_f64();
        assert!((3.9..4.1).contains(&ratio), "{ratio}");
        hasher.note_stored_hash("not a hash");
        hasher.note_stored_hash(&hash_with(&hasher.params, "pw").unwrap());
        assert!(hasher.slowest_verification() > hasher.hash_time() * 3, "cheaper ones never lower it");
    }

    #[test]
    fn a_carried_over_hash_is_timed_once_per_class_and_raises_the_floor() {
        let hasher = cheap();
        let bcrypt = bcrypt::hash("pw", 10).unwrap();
        let started = std::time::Instant::now();
        hasher.note_stored_hash(&bcrypt);
        let took = started.elapsed();
        assert!(
            hasher.slowest_verification() >= took.mul_f32(0.5),
            "{:?} vs {took:?}",
            hasher.slowest_verification()
        );
        assert!(
            hasher.slowest_verification() > hasher.hash_time(),
            "bcrypt at cost 10 is costlier than the cheap argon2"
        );
        let other = bcrypt::hash("other", 10).unwrap();
        let again = std::time::Instant::now();
        hasher.note_stored_hash(&other);
        assert!(again.elapsed() < took / 4, "the class is not timed twice");
    }

    #[tokio::test]
    async fn verifies_only_the_right_password() {
        let hasher = cheap();
        let hash = hasher.hash_blocking("s3cret").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let client = IpAddr::from([127, 0, 0, 1]);
        let matched = |verified: Result<Verified, NotVerified>| verified.unwrap().matched;
        assert!(matched(hasher.verify("s3cret".into(), Some(hash.clone()), client).await));
        assert!(!matched(hasher.verify("wrong".into(), Some(hash), client).await));
        assert!(!matched(hasher.verify("anything".into(), None, client).await), "the decoy never matches");
        assert!(!matched(hasher.verify("x".into(), Some("not a hash".into()), client).await));
    }
}
