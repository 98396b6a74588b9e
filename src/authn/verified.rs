//! [`VerifiedLogins`]: the credential cache applied to logins, and the rule for when a
//! remembered login still holds.
//!
//! A client asks for a token, with its password, for nearly every pull and push; an argon2id
//! verification costs tens of milliseconds of a core. So a name and secret that verified once
//! are remembered (as an HMAC, see [`super::cache`]) with what they proved and what that proof
//! hangs on, a [`Vouch`]. A remembered login is used only after checking its vouch against the
//! current [`AccessSnapshot`], which the caller has just brought up to date: a new password, a
//! disabled or removed account ends it at the next request, whichever process made the change,
//! and the admin flag is always read fresh.

use std::time::Duration;

use super::cache::CredentialCache;
use super::Identity;
use crate::config::CacheConfig;
use crate::store::snapshot::AccessSnapshot;

/// What a verified secret proved, and what must stay true for it to keep proving it.
#[derive(Debug, Clone)]
pub struct VerifiedLogin {
    pub identity: Identity,
    pub vouch: Vouch,
}

/// The condition a remembered login holds under. Other credential kinds add their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vouch {
    /// A database account's password: holds while the account exists, is enabled and keeps the
    /// hash the password was verified against (identified by its
    /// [`password_stamp`](crate::store::snapshot::password_stamp)).
    Account { user_id: i64, password_stamp: u64 },
}

/// Verified logins, bounded in number and in age (the `[cache]` config section).
pub struct VerifiedLogins {
    cache: CredentialCache<VerifiedLogin>,
}

impl VerifiedLogins {
    pub fn new(config: &CacheConfig) -> Self {
        VerifiedLogins {
            cache: CredentialCache::new(Duration::from_secs(config.credential_lifetime), config.max_entries),
        }
    }

    /// The identity `name` and `secret` prove now, if they were verified recently and what that
    /// rested on still holds in `snapshot`. A login that no longer holds is forgotten.
    pub fn recall(&self, name: &str, secret: &str, snapshot: &AccessSnapshot) -> Option<Identity> {
        let login = self.cache.get(name, secret)?;
        match login.vouch {
            Vouch::Account { user_id, password_stamp } => {
                let holds = snapshot
                    .user(user_id)
                    .filter(|user| !user.disabled && user.password_stamp == password_stamp);
                let Some(user) = holds else {
                    self.cache.remove(name, secret);
                    return None;
                };
                let mut identity = login.identity;
                if let Identity::User { is_admin, .. } = &mut identity {
                    *is_admin = user.is_admin;
                }
                Some(identity)
            }
        }
    }

    /// Remembers that `name` and `secret` were just verified and proved `login`.
    pub fn remember(&self, name: &str, secret: &str, login: VerifiedLogin) {
        self.cache.insert(name, secret, login);
    }

    /// Logins remembered now (expired ones included until they are next looked up or evicted).
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::authn::basic::Credentials;
    use crate::authn::password::PasswordHasher;
    use crate::authn::{Authenticator, AuthnError};
    use crate::config::PasswordConfig;
    use crate::store::live::LiveAccess;
    use crate::store::{test_store, users};

    fn credentials(name: &str, password: &str) -> Option<Credentials> {
        Some(Credentials { username: name.into(), password: password.into() })
    }

    /// An authenticator over a fresh database holding `count` users `u0..` with password `pw`.
    fn authenticator(count: usize, max_entries: usize) -> (tempfile::TempDir, Authenticator) {
        let (dir, store) = test_store();
        let store = Arc::new(store);
        let config = PasswordConfig { memory_kib: 64, iterations: 1, parallelism: 1, max_concurrent: 1 };
        let hasher = PasswordHasher::new(&config, 1).unwrap();
        let hash = hasher.hash_blocking("pw").unwrap();
        store
            .with_connection(|c| {
                for i in 0..count {
                    users::create(c, &format!("u{i}"), Some(&hash), false)?;
                }
                Ok(())
            })
            .unwrap();
        let access = LiveAccess::open(store.clone()).unwrap();
        let cache = CacheConfig { credential_lifetime: 60, max_entries };
        (dir, Authenticator::new(store, hasher).with_cache(access, &cache))
    }

    #[tokio::test]
    async fn the_cache_size_bound_holds() {
        let (_dir, authenticator) = authenticator(10, 3);
        for _round in 0..2 {
            for i in 0..10 {
                let identity = authenticator.authenticate(credentials(&format!("u{i}"), "pw")).await.unwrap();
                assert!(matches!(identity, Identity::User { ref name, .. } if *name == format!("u{i}")));
                assert!(authenticator.remembered_logins() <= 3, "{}", authenticator.remembered_logins());
            }
        }
        assert_eq!(authenticator.remembered_logins(), 3);
    }

    #[tokio::test]
    async fn a_wrong_password_after_a_right_one_is_refused() {
        let (_dir, authenticator) = authenticator(1, 10);
        for _ in 0..2 {
            assert!(authenticator.authenticate(credentials("u0", "pw")).await.is_ok());
        }
        assert_eq!(authenticator.remembered_logins(), 1);
        for wrong in ["pw ", "PW", "p", ""] {
            let refused = authenticator.authenticate(credentials("u0", wrong)).await;
            assert!(matches!(refused, Err(AuthnError::InvalidCredentials)), "{wrong:?}");
        }
        assert_eq!(authenticator.remembered_logins(), 1, "failures are never remembered");
    }
}
