//! Remembering verified credentials, so a secret costs one slow check per lifetime, not per token.
//!
//! Docker and containerd send the user's password with nearly every token request, and each
//! argon2id check (or directory bind) takes tens of milliseconds. After one success, the same
//! name and secret are accepted from memory until the entry expires.
//!
//! Safety rules, each enforced here rather than by callers:
//! - the key is an HMAC of name and secret under a random per-process key: the secret itself is
//!   never stored, and a memory dump does not give an offline-guessable plain hash;
//! - only successes are stored; a wrong secret always takes the slow path;
//! - the map is bounded: past `capacity`, the oldest entries go first (entries share one lifetime,
//!   so insertion order is expiry order);
//! - callers drop entries when what they vouch for changes ([`CredentialCache::retain`],
//!   [`CredentialCache::clear`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// The HMAC of a name and secret: the only form in which a secret is remembered.
pub type Fingerprint = [u8; 32];

/// A bounded, expiring map from verified (name, secret) pairs to what they proved, `V`.
pub struct CredentialCache<V> {
    /// Random per process, so fingerprints are useless outside it.
    hmac_key: [u8; 32],
    /// How long a verified secret is trusted without checking again.
    lifetime: Duration,
    /// Most entries held at once; bounds memory whatever the number of distinct callers.
    capacity: usize,
    inner: Mutex<Entries<V>>,
}

struct Entries<V> {
    map: HashMap<Fingerprint, (Instant, V)>,
    /// Fingerprints in insertion order, with the insertion time, for eviction.
    order: VecDeque<(Fingerprint, Instant)>,
}

impl<V: Clone> CredentialCache<V> {
    /// A cache trusting entries for `lifetime`, holding at most `capacity`. A zero lifetime or
    /// capacity disables it.
    pub fn new(lifetime: Duration, capacity: usize) -> Self {
        let mut hmac_key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut hmac_key);
        CredentialCache {
            hmac_key,
            lifetime,
            capacity,
            inner: Mutex::new(Entries { map: HashMap::new(), order: VecDeque::new() }),
        }
    }

    fn enabled(&self) -> bool {
        !self.lifetime.is_zero() && self.capacity > 0
    }

    /// HMAC-SHA256 over the name's length, the name and the secret (the length keeps
    /// `("ab", "c")` and `("a", "bc")` apart).
    pub fn fingerprint(&self, name: &str, secret: &str) -> Fingerprint {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.hmac_key).expect("HMAC takes any key length");
        mac.update(&(name.len() as u64).to_be_bytes());
        mac.update(name.as_bytes());
        mac.update(secret.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// What `name` and `secret` proved when last verified, if that is recent enough.
    pub fn get(&self, name: &str, secret: &str) -> Option<V> {
        if !self.enabled() {
            return None;
        }
        let fingerprint = self.fingerprint(name, secret);
        let mut inner = self.inner.lock().ok()?;
        match inner.map.get(&fingerprint) {
            Some((inserted, value)) if inserted.elapsed() < self.lifetime => Some(value.clone()),
            Some(_) => {
                inner.map.remove(&fingerprint);
                None
            }
            None => None,
        }
    }

    /// Remembers that `name` and `secret` were verified and proved `value`.
    pub fn insert(&self, name: &str, secret: &str, value: V) {
        if !self.enabled() {
            return;
        }
        let fingerprint = self.fingerprint(name, secret);
        let now = Instant::now();
        let Ok(mut inner) = self.inner.lock() else { return };
        inner.map.insert(fingerprint, (now, value));
        inner.order.push_back((fingerprint, now));
        while inner.map.len() > self.capacity || inner.order.len() > 2 * self.capacity {
            let Some((oldest, inserted)) = inner.order.pop_front() else { break };
            // Skip queue entries superseded by a later insert of the same fingerprint.
            if inner.map.get(&oldest).is_some_and(|(at, _)| *at == inserted) {
                inner.map.remove(&oldest);
            }
        }
    }

    /// Keeps only the entries for which `keep` holds: how a changed user is dropped.
    pub fn retain(&self, mut keep: impl FnMut(&V) -> bool) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.map.retain(|_, (_, value)| keep(value));
        }
    }

    pub fn clear(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.map.clear();
            inner.order.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|inner| inner.map.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_only_the_exact_pair() {
        let cache = CredentialCache::new(Duration::from_secs(60), 10);
        cache.insert("alice", "right", 1);
        assert_eq!(cache.get("alice", "right"), Some(1));
        assert_eq!(cache.get("alice", "wrong"), None);
        assert_eq!(cache.get("alicer", "ight"), None);
    }

    #[test]
    fn entries_expire() {
        let cache = CredentialCache::new(Duration::from_millis(20), 10);
        cache.insert("alice", "pw", 1);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get("alice", "pw"), None);
    }

    #[test]
    fn size_bound_holds_and_evicts_oldest() {
        let cache = CredentialCache::new(Duration::from_secs(60), 100);
        for i in 0..1000 {
            cache.insert(&format!("user{i}"), "pw", i);
            assert!(cache.len() <= 100);
        }
        assert_eq!(cache.get("user0", "pw"), None);
        assert_eq!(cache.get("user999", "pw"), Some(999));
        // Re-inserting one name many times must not grow the queue without bound either.
        for _ in 0..1000 {
            cache.insert("same", "pw", 0);
        }
        assert!(cache.inner.lock().unwrap().order.len() <= 200);
    }

    #[test]
    fn retain_drops_a_changed_user() {
        let cache = CredentialCache::new(Duration::from_secs(60), 10);
        cache.insert("alice", "pw", "alice");
        cache.insert("bob", "pw", "bob");
        cache.retain(|user| *user != "alice");
        assert_eq!(cache.get("alice", "pw"), None);
        assert_eq!(cache.get("bob", "pw"), Some("bob"));
    }

    #[test]
    fn zero_lifetime_disables() {
        let cache = CredentialCache::new(Duration::ZERO, 10);
        cache.insert("a", "b", 1);
        assert!(cache.is_empty());
    }
}
