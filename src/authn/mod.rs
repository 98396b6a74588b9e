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
//! - this file: [`Authenticator`], which turns credentials into an [`Identity`].

pub mod basic;
pub mod cache;
pub mod password;
pub mod verified;
pub mod verifier_pool;

use std::sync::Arc;

use crate::authz::Subject;
use crate::config::CacheConfig;
use crate::store::live::LiveAccess;
use crate::store::snapshot::password_stamp;
use crate::store::{users, Store, StoreError};
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
}

impl Identity {
    /// The view of this identity that authorization needs.
    pub fn subject(&self) -> Subject {
        match self {
            Identity::Anonymous => Subject::anonymous(),
            Identity::User { name, is_admin, .. } => {
                Subject { name: name.clone(), is_admin: *is_admin, authenticated: true }
            }
        }
    }

    /// The database user ID used to look up memberships.
    pub fn user_id(&self) -> Option<i64> {
        match self {
            Identity::Anonymous => None,
            Identity::User { id, .. } => Some(*id),
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
}

/// Checks credentials against the database users.
#[derive(Clone)]
pub struct Authenticator {
    store: Arc<Store>,
    hasher: PasswordHasher,
    /// Verified logins and the live view of accounts they are checked against; `None` verifies
    /// every request from scratch.
    remembered: Option<(Arc<VerifiedLogins>, LiveAccess)>,
}

impl Authenticator {
    pub fn new(store: Arc<Store>, hasher: PasswordHasher) -> Self {
        Authenticator { store, hasher, remembered: None }
    }

    /// Remembers verified logins as `config` says, checking each against `access` before use.
    pub fn with_cache(mut self, access: LiveAccess, config: &CacheConfig) -> Self {
        self.remembered = Some((Arc::new(VerifiedLogins::new(config)), access));
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
        if let Some((logins, access)) = &self.remembered {
            access.refresh().await?;
            if let Some(identity) = logins.recall(&username, &password, &access.read()) {
                return Ok(identity);
            }
        }
        // Kept for the cache only once verified (below); dropped at the end of this call.
        let secret = self.remembered.as_ref().map(|_| password.clone());
        let store = self.store.clone();
        let lookup_name = username.clone();
        let user =
            tokio::task::spawn_blocking(move || store.with_connection(|c| users::find(c, &lookup_name)))
                .await
                .map_err(|_| AuthnError::InvalidCredentials)??;
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        // Verify even for unknown users (against a decoy) so timing does not reveal names.
        let verified = self.hasher.verify(password, hash).await;
        match user {
            Some(user) if verified && !user.disabled => {
                let identity = Identity::User { id: user.id, name: user.name, is_admin: user.is_admin };
                if let (Some((logins, _)), Some(secret)) = (&self.remembered, secret) {
                    let vouch = Vouch::Account {
                        user_id: user.id,
                        password_stamp: password_stamp(user.password_hash.as_deref()),
                    };
                    logins.remember(&username, &secret, VerifiedLogin { identity: identity.clone(), vouch });
                }
                Ok(identity)
            }
            _ => Err(AuthnError::InvalidCredentials),
        }
    }

    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    /// How many verified logins are remembered now (0 without a cache).
    pub fn remembered_logins(&self) -> usize {
        self.remembered.as_ref().map(|(logins, _)| logins.len()).unwrap_or(0)
    }
}
