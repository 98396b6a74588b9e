//! [`VerifiedLogins`]: the credential cache applied to logins, and the rule for when a
//! remembered login still holds.
//!
//! A client asks for a token, with its password, for nearly every pull and push; an argon2id
//! verification costs tens of milliseconds of a core, and a robot or token check a database
//! query on a blocking thread. So a name and secret that verified once
//! are remembered (as an HMAC, see [`super::cache`]) with what they proved and what that proof
//! hangs on, a [`Vouch`]. A remembered login is used only after checking its vouch against the
//! current [`AccessSnapshot`], which the caller has just brought up to date: a new password, a
//! disabled or removed account ends it at the next request, whichever process made the change.
//! A remembered login holds only *who* it proved; what that principal may do (admin status,
//! roles) is never remembered here but read from the snapshot for every token.

use std::time::Duration;

use super::cache::CredentialCache;
use super::Identity;
use crate::access::AccessSnapshot;
use crate::config::CacheConfig;

/// What a verified secret proved, and what must stay true for it to keep proving it.
#[derive(Debug, Clone)]
pub struct VerifiedLogin {
    pub identity: Identity,
    pub vouch: Vouch,
}

/// The condition a remembered login holds under, one per kind of credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vouch {
    /// A database account's password: holds while the account exists, is enabled and its
    /// password was not set again since it was verified (`password_epoch`).
    Account { user_id: i64, password_epoch: i64 },
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
            Identity::PersonalToken { token_id, user_id, .. } => {
                snapshot.personal_token(*token_id).map(|token| Vouch::PersonalToken {
                    token_id: *token_id,
                    user_id: *user_id,
                    version: token.version,
                })
            }
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
        // The person behind a password or a token, if they may still log in.
        let person = |user_id: i64| snapshot.user(user_id).filter(|user| !user.disabled());
        let holds = match login.vouch {
            Vouch::Account { user_id, password_epoch } => {
                person(user_id).is_some_and(|user| user.password_epoch() == password_epoch)
            }
            Vouch::Robot { robot_id, version } => {
                snapshot.robot(robot_id).is_some_and(|robot| robot.version == version && robot.usable_at(now))
            }
            Vouch::PersonalToken { token_id, user_id, version } => {
                snapshot
                    .personal_token(token_id)
                    .is_some_and(|token| token.version == version && token.usable_at(now))
                    && person(user_id).is_some()
            }
        };
        if !holds {
            self.cache.remove(name, secret);
            return None;
        }
        Some(login.identity)
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
    use crate::authn::secret::{digest, generate, SecretKind};
    use crate::authn::{personal_token, Authenticator, AuthnError};
    use crate::store::sqlite::fixtures::project_robot;
    use crate::store::sqlite::{test_store, SqliteStore};
    use crate::store::LiveAccess;
    use crate::store::{NewPersonalToken, NewUser, SharedStore, Source};

    fn credentials(name: &str, password: &str) -> Option<Credentials> {
        Some(Credentials { username: name.into(), password: password.into() })
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        store: SharedStore,
        access: LiveAccess,
        authenticator: Authenticator,
    }

    impl Fixture {
        async fn login(&self, name: &str, password: &str) -> Result<Identity, AuthnError> {
            let attempt = credentials(name, password)
                .map(|credentials| crate::authn::Attempt { credentials, client: [127, 0, 0, 1].into() });
            self.authenticator.authenticate(attempt, &self.access).await.map(|(identity, _)| identity)
        }
    }

    /// An authenticator over a fresh database holding `count` users `u0..` with password `pw`.
    fn fixture(count: usize, max_entries: usize) -> Fixture {
        let (dir, store): (_, SqliteStore) = test_store();
        let store: SharedStore = Arc::new(store);
        let hasher = crate::authn::password::tests::cheap();
        let hash = hasher.hash_blocking("pw").unwrap();
        for i in 0..count {
            let name = format!("u{i}");
            let new = NewUser {
                name: &name,
                password_hash: Some(&hash),
                is_admin: false,
                source: Source::Database,
            };
            store.create_user(&new).unwrap();
        }
        let access = LiveAccess::open(store.clone()).unwrap();
        let cache = CacheConfig { credential_lifetime: 60, max_entries };
        let authenticator = Authenticator::new(store.clone(), hasher).with_cache(&cache);
        Fixture { _dir: dir, store, access, authenticator }
    }

    #[tokio::test]
    async fn the_cache_size_bound_holds() {
        let fixture = fixture(10, 3);
        for _round in 0..2 {
            for i in 0..10 {
                let identity = fixture.login(&format!("u{i}"), "pw").await.unwrap();
                assert!(matches!(identity, Identity::User { ref name, .. } if *name == format!("u{i}")));
                let remembered = fixture.authenticator.remembered_logins();
                assert!(remembered <= 3, "{remembered}");
            }
        }
        assert_eq!(fixture.authenticator.remembered_logins(), 3);
    }

    #[tokio::test]
    async fn a_wrong_password_after_a_right_one_is_refused() {
        let fixture = fixture(1, 10);
        for _ in 0..2 {
            assert!(fixture.login("u0", "pw").await.is_ok());
        }
        assert_eq!(fixture.authenticator.remembered_logins(), 1);
        for wrong in ["pw ", "PW", "p", ""] {
            let refused = fixture.login("u0", wrong).await;
            assert!(matches!(refused, Err(AuthnError::InvalidCredentials)), "{wrong:?}");
        }
        assert_eq!(fixture.authenticator.remembered_logins(), 1, "failures are never remembered");
    }

    #[tokio::test]
    async fn a_remembered_login_ends_with_a_new_password_or_a_disable() {
        let fixture = fixture(1, 10);
        fixture.login("u0", "pw").await.unwrap();
        fixture.store.set_user_disabled("u0", true).unwrap();
        fixture.access.refresh().await.unwrap();
        let snapshot = fixture.access.read();
        assert!(fixture.authenticator.remembered.as_ref().unwrap().recall("u0", "pw", &snapshot).is_none());
    }

    #[tokio::test]
    async fn robot_and_token_logins_are_remembered_until_they_change() {
        let fixture = fixture(1, 10);
        let store = &fixture.store;
        let (robot_secret, token) = (generate(""), generate(personal_token::PREFIX));
        store.create_project("team", false).unwrap();
        let robot_digest = digest(SecretKind::Robot, &robot_secret);
        store.create_robot(&project_robot("robot_team+ci", "team", &robot_digest)).unwrap();
        let stored = digest(SecretKind::PersonalToken, &token);
        let new = NewPersonalToken {
            user: "u0",
            label: "laptop",
            digest: &stored,
            actions: "pull",
            projects: None,
            expires_at: None,
        };
        store.create_personal_token(&new).unwrap();
        for _ in 0..2 {
            let robot = fixture.login("robot_team+ci", &robot_secret).await.unwrap();
            assert!(matches!(robot, Identity::Robot { .. }));
            let person = fixture.login("u0", &token).await.unwrap();
            assert!(matches!(person, Identity::PersonalToken { .. }));
        }
        assert_eq!(fixture.authenticator.remembered_logins(), 2, "one robot and one token login remembered");

        store.set_robot_disabled("robot_team+ci", true).unwrap();
        fixture.access.refresh().await.unwrap();
        let recalled = fixture.authenticator.remembered.as_ref().unwrap().recall(
            "robot_team+ci",
            &robot_secret,
            &fixture.access.read(),
        );
        assert!(recalled.is_none(), "a disabled robot is forgotten");
        store.revoke_personal_token("u0", "laptop").unwrap();
        let refused = fixture.login("u0", &token).await;
        assert!(matches!(refused, Err(AuthnError::InvalidCredentials)), "a revoked token");
        assert_eq!(fixture.authenticator.remembered_logins(), 0, "both forgotten");
    }

    #[tokio::test]
    async fn every_refusal_takes_at_least_the_floor() {
        let fixture = fixture(1, 10);
        fixture.store.create_project("team", false).unwrap();
        let digest = digest(SecretKind::Robot, &generate(""));
        fixture.store.create_robot(&project_robot("robot_team+ci", "team", &digest)).unwrap();
        let floor = fixture.authenticator.hasher().hash_time().mul_f32(1.5);
        // A robot's wrong secret is refused without any hashing, a database user's wrong
        // password after one: both wait for the floor.
        for (name, secret) in [("robot_team+ci", "wrong"), ("u0", "wrong"), ("nobody", "x")] {
            let started = std::time::Instant::now();
            let refused = fixture.login(name, secret).await;
            assert!(matches!(refused, Err(AuthnError::InvalidCredentials)), "{name}");
            assert!(started.elapsed() >= floor, "{name}: {:?} < {floor:?}", started.elapsed());
        }
    }
}
