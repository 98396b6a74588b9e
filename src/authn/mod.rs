//! Who is asking: credentials from the request checked against the database, or anonymous.
//!
//! The rule that matters most: credentials that are present but wrong are refused, never
//! treated as anonymous. The registry's `/v2/` accepts any valid token, so a downgrade would
//! make `docker login` report success for a wrong password.
//!
//! - [`basic`]: decoding the `Authorization` header;
//! - [`cache`]: remembering verified secrets (keyed hashes only) for a short time;
//! - [`password`]: argon2id, verified on a [`verifier_pool`] of bounded size;
//! - [`verified`]: which remembered logins still hold;
//! - [`secret`]: generated secrets and their digests; [`robot`], [`access_token`] and
//!   [`refresh`]: robot accounts, personal access tokens and OAuth2 refresh tokens;
//! - [`ldap`]: directory (LDAP, Active Directory) users and their groups;
//! - this file: [`Authenticator`], which turns credentials into an [`Identity`].

pub mod access_token;
pub mod basic;
pub mod cache;
pub mod ldap;
pub mod password;
pub mod refresh;
pub mod robot;
pub mod secret;
pub mod verified;
pub mod verifier_pool;

use std::sync::Arc;

use crate::authz::{Ceiling, Subject};
use crate::config::ldap::SourceOrder;
use crate::config::CacheConfig;
use crate::store::directory::DATABASE_SOURCE;
use crate::store::live::LiveAccess;
use crate::store::snapshot::password_stamp;
use crate::store::{users, Store, StoreError, User};
use basic::Credentials;
use password::PasswordHasher;
use verified::{VerifiedLogin, VerifiedLogins, Vouch};

/// An authenticated caller, or nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    /// A database user whose password was verified.
    User {
        id: i64,
        name: String,
        is_admin: bool,
    },
    /// A robot account; its rights are its own permission list alone.
    Robot {
        /// The `robots` row, for logs and audits.
        id: i64,
        /// The full login name, the token's `sub`.
        name: String,
        /// The robot's projects and actions.
        ceiling: Ceiling,
    },
    /// A person who presented a personal access token: their rights, capped by the token's list.
    PersonalToken {
        /// The `access_tokens` row, for logs and audits.
        token_id: i64,
        /// The person, whose memberships are looked up as for a password login.
        user_id: i64,
        /// The person's user name: the token's `sub`.
        name: String,
        is_admin: bool,
        /// The token's projects and actions.
        ceiling: Ceiling,
    },
}

impl Identity {
    /// The view of this identity that authorization needs.
    pub fn subject(&self) -> Subject {
        match self {
            Identity::Anonymous => Subject::anonymous(),
            Identity::User { name, is_admin, .. } => {
                Subject { name: name.clone(), is_admin: *is_admin, authenticated: true, ceiling: None }
            }
            // System-wide rights cut down to the robot's list: exactly the list, on projects that
            // exist, and never the catalog (a ceiling excludes it).
            Identity::Robot { name, ceiling, .. } => Subject {
                name: name.clone(),
                is_admin: true,
                authenticated: true,
                ceiling: Some(ceiling.clone()),
            },
            Identity::PersonalToken { name, is_admin, ceiling, .. } => Subject {
                name: name.clone(),
                is_admin: *is_admin,
                authenticated: true,
                ceiling: Some(ceiling.clone()),
            },
        }
    }

    /// The database user ID used to look up memberships.
    pub fn user_id(&self) -> Option<i64> {
        match self {
            Identity::Anonymous | Identity::Robot { .. } => None,
            Identity::User { id, .. } => Some(*id),
            Identity::PersonalToken { user_id, .. } => Some(*user_id),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    /// Unknown user, wrong password, disabled account, or empty password: one answer for all, so
    /// that a caller cannot tell which.
    #[error("authentication failed: wrong user name or password, or the account is disabled")]
    InvalidCredentials,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The directory is down, slow or misconfigured: directory users cannot log in for now.
    #[error(transparent)]
    Directory(#[from] ldap::DirectoryError),
}

/// Checks credentials against the database users.
#[derive(Clone)]
pub struct Authenticator {
    store: Arc<Store>,
    hasher: PasswordHasher,
    /// Verified logins and the live view of accounts they are checked against; `None` verifies
    /// every request from scratch.
    remembered: Option<(Arc<VerifiedLogins>, LiveAccess)>,
    /// The configured directory, if any; without one only database users exist.
    directory: Option<Arc<ldap::DirectoryLogins>>,
}

impl Authenticator {
    pub fn new(store: Arc<Store>, hasher: PasswordHasher) -> Self {
        Authenticator { store, hasher, remembered: None, directory: None }
    }

    /// Remembers verified logins as `config` says, checking each against `access` before use.
    pub fn with_cache(mut self, access: LiveAccess, config: &CacheConfig) -> Self {
        self.remembered = Some((Arc::new(VerifiedLogins::new(config)), access));
        self
    }

    /// Adds directory users beside the database users.
    pub fn with_directory(mut self, directory: Arc<ldap::DirectoryLogins>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// Resolves the caller: anonymous without credentials, a user with valid ones, an error with
    /// any others.
    pub async fn authenticate(&self, credentials: Option<Credentials>) -> Result<Identity, AuthnError> {
        let Some(Credentials { username, password }) = credentials else {
            return Ok(Identity::Anonymous);
        };
        // An empty password is never valid, whatever is stored (a directory would accept it as
        // an unauthenticated bind).
        if password.is_empty() {
            return Err(AuthnError::InvalidCredentials);
        }
        // Remembered logins first: they need no database. (A user and a robot never share a
        // name, and a remembered login holds only while what it rests on is unchanged, so this
        // answers as the checks below would.)
        let mut seen = None;
        if let Some((logins, access)) = &self.remembered {
            access.refresh().await?;
            let snapshot = access.read();
            if let Some(identity) = logins.recall(&username, &password, &snapshot) {
                return Ok(identity);
            }
            seen = Some(snapshot.last_change());
        }
        match self.check_generated(&username, &password).await? {
            secret::Verdict::Accepted(identity) => {
                if let Some(seen) = seen {
                    self.remember_generated(&username, &password, &identity, seen).await?;
                }
                return Ok(identity);
            }
            secret::Verdict::Refused => return Err(AuthnError::InvalidCredentials),
            secret::Verdict::NotMine => {}
        }
        let store = self.store.clone();
        let lookup_name = username.clone();
        let user =
            tokio::task::spawn_blocking(move || store.with_connection(|c| users::find(c, &lookup_name)))
                .await
                .map_err(|_| AuthnError::InvalidCredentials)??;
        if let Some(directory) = &self.directory {
            return ldap::authenticate(self, directory, user, &username, password).await;
        }
        self.verify_database(user, password).await
    }

    /// Checks `password` against the database user `user` (a decoy when `None`).
    pub(crate) async fn verify_database(
        &self,
        user: Option<User>,
        password: String,
    ) -> Result<Identity, AuthnError> {
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        // Kept for the cache only once verified (below); dropped at the end of this call.
        let secret = match (&self.remembered, &user) {
            (Some(_), Some(user)) if self.database_decides_first(user) => Some(password.clone()),
            _ => None,
        };
        // Verify even for unknown users (against a decoy) so timing does not reveal names.
        let verified = self.hasher.verify(password, hash).await;
        match user {
            Some(user) if verified && !user.disabled => {
                let vouch = Vouch::Account {
                    user_id: user.id,
                    password_stamp: password_stamp(user.password_hash.as_deref()),
                };
                let identity = Identity::User { id: user.id, name: user.name, is_admin: user.is_admin };
                if let (Some((logins, _)), Some(secret)) = (&self.remembered, secret) {
                    // The login name is the row's name: the row was found by it.
                    let name = identity.subject().name;
                    logins.remember(&name, &secret, VerifiedLogin { identity: identity.clone(), vouch });
                }
                Ok(identity)
            }
            _ => Err(AuthnError::InvalidCredentials),
        }
    }

    /// Whether a database user's password is checked before any directory, so that a
    /// remembered password login answers as a fresh check would. (In directory-first order, or
    /// when the directory was down, the directory may decide differently next time.)
    fn database_decides_first(&self, user: &User) -> bool {
        match &self.directory {
            None => true,
            Some(directory) => {
                directory.order() == SourceOrder::DatabaseFirst && user.source == DATABASE_SOURCE
            }
        }
    }

    /// Remembers a robot or token login that was just checked, if nothing that vouches for it
    /// changed since `seen` (the snapshot's last log entry before the check): the snapshot's
    /// versions then describe exactly the rows the check read.
    async fn remember_generated(
        &self,
        username: &str,
        secret: &str,
        identity: &Identity,
        seen: i64,
    ) -> Result<(), AuthnError> {
        let Some((logins, access)) = &self.remembered else { return Ok(()) };
        access.refresh().await?;
        let snapshot = access.read();
        if snapshot.last_change() != seen {
            return Ok(());
        }
        if let Some(vouch) = Vouch::for_generated(identity, &snapshot) {
            logins.remember(username, secret, VerifiedLogin { identity: identity.clone(), vouch });
        }
        Ok(())
    }

    /// Personal access tokens, then robots: generated secrets, checked by digest without argon2.
    async fn check_generated(&self, username: &str, password: &str) -> Result<secret::Verdict, AuthnError> {
        let store = self.store.clone();
        let (username, password) = (username.to_string(), password.to_string());
        tokio::task::spawn_blocking(move || {
            store.with_connection(|c| {
                let now = crate::store::now();
                match access_token::check(c, &username, &password, now)? {
                    secret::Verdict::NotMine => robot::check(c, &username, &password, now),
                    verdict => Ok(verdict),
                }
            })
        })
        .await
        .map_err(|_| AuthnError::InvalidCredentials)?
        .map_err(AuthnError::from)
    }

    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    /// How many verified logins are remembered now (0 without a cache).
    pub fn remembered_logins(&self) -> usize {
        self.remembered.as_ref().map(|(logins, _)| logins.len()).unwrap_or(0)
    }
}
