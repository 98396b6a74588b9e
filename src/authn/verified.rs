//! [`VerifiedLogins`]: the credential cache applied to logins, and the rule for when a
//! remembered login still holds.
//!
//! A client asks for a token, with its password, for nearly every pull and push; an argon2id
//! verification costs tens of milliseconds of a core, and a robot or token check a database
//! query on a blocking thread. So a name and secret that verified once
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

/// The condition a remembered login holds under, one per kind of credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vouch {
    /// A database account's password: holds while the account exists, is enabled and keeps the
    /// hash the password was verified against (identified by its
    /// [`password_stamp`](crate::store::snapshot::password_stamp)).
    Account { user_id: i64, password_stamp: u64 },
    /// A robot's secret: holds while the robot is unchanged since (`version`: secret, flags and
    /// permission list alike), enabled and unexpired.
    Robot { robot_id: i64, version: i64 },
    /// A personal access token: holds while the token is unchanged and unexpired and its person
    /// exists and is enabled.
    PersonalToken { token_id: i64, user_id: i64, version: i64 },
}

impl Vouch {
    /// What a robot or token login that was just checked rests on, as `snapshot` has it. The
    /// caller makes sure nothing changed between the check and `snapshot`. Passwords are vouched
    /// for by the hash they were verified against instead.
    pub fn for_generated(identity: &Identity, snapshot: &AccessSnapshot) -> Option<Vouch> {
        match identity {
            Identity::Robot { id, .. } => {
                snapshot.robot(*id).map(|robot| Vouch::Robot { robot_id: *id, version: robot.version })
            }
            Identity::PersonalToken { token_id, user_id, .. } => snapshot.token(*token_id).map(|token| {
                Vouch::PersonalToken { token_id: *token_id, user_id: *user_id, version: token.version }
            }),
            Identity::Anonymous | Identity::User { .. } => None,
        }
    }
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
        let now = crate::store::now();
        // The person behind a password or a token, if they may still log in: their admin flag.
        let person = |user_id: i64| snapshot.user(user_id).filter(|user| !user.disabled);
        let admin = match login.vouch {
            Vouch::Account { user_id, password_stamp } => {
                person(user_id).filter(|user| user.password_stamp == password_stamp).map(|user| user.is_admin)
            }
            Vouch::Robot { robot_id, version } => snapshot
                .robot(robot_id)
                .filter(|robot| robot.version == version && robot.usable_at(now))
                .map(|_| true),
            Vouch::PersonalToken { token_id, user_id, version } => snapshot
                .token(token_id)
                .filter(|token| token.version == version && token.usable_at(now))
                .and_then(|_| person(user_id))
                .map(|user| user.is_admin),
        };
        let Some(admin) = admin else {
            self.cache.remove(name, secret);
            return None;
        };
        let mut identity = login.identity;
        if let Identity::User { is_admin, .. } | Identity::PersonalToken { is_admin, .. } = &mut identity {
            *is_admin = admin;
        }
        Some(identity)
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

    #[tokio::test]
    async fn robot_and_token_logins_are_remembered_until_they_change() {
        use crate::authn::access_token::PREFIX;
        use crate::authn::secret::{digest, generate, SecretKind};
        use crate::store::robots::{self, NewRobot};
        use crate::store::{access_tokens, projects};

        let (_dir, authenticator) = authenticator(1, 10);
        let store = authenticator.store.clone();
        let (robot_secret, token) = (generate(""), generate(PREFIX));
        store
            .with_connection(|c| {
                projects::create(c, "team", false)?;
                robots::create(
                    c,
                    &NewRobot {
                        name: "robot_team+ci",
                        project: Some("team"),
                        system_projects: None,
                        actions: "pull",
                        description: "",
                        expires_at: None,
                        secret_digest: &digest(SecretKind::Robot, &robot_secret),
                    },
                )?;
                let stored = digest(SecretKind::PersonalToken, &token);
                access_tokens::create(c, "u0", "laptop", &stored, "pull", None, None)?;
                Ok(())
            })
            .unwrap();
        for _ in 0..2 {
            let robot =
                authenticator.authenticate(credentials("robot_team+ci", &robot_secret)).await.unwrap();
            assert!(matches!(robot, Identity::Robot { .. }));
            let person = authenticator.authenticate(credentials("u0", &token)).await.unwrap();
            assert!(matches!(person, Identity::PersonalToken { .. }));
        }
        assert_eq!(authenticator.remembered_logins(), 2, "one robot and one token login remembered");

        store.with_connection(|c| robots::set_disabled(c, "robot_team+ci", true)).unwrap();
        let refused = authenticator.authenticate(credentials("robot_team+ci", &robot_secret)).await;
        assert!(matches!(refused, Err(AuthnError::InvalidCredentials)), "a disabled robot");
        store.with_connection(|c| access_tokens::revoke(c, "u0", "laptop")).unwrap();
        let refused = authenticator.authenticate(credentials("u0", &token)).await;
        assert!(matches!(refused, Err(AuthnError::InvalidCredentials)), "a revoked token");
        assert_eq!(authenticator.remembered_logins(), 0, "both forgotten");
    }
}
