//! Who is asking: credentials from the request checked against the database, or anonymous.
//!
//! The rule that matters most: credentials that are present but wrong are refused, never
//! treated as anonymous. The registry's `/v2/` accepts any valid token, so a downgrade would
//! make `docker login` report success for a wrong password.
//!
//! - [`basic`]: decoding the `Authorization` header;
//! - [`cache`]: remembering verified secrets (keyed hashes only) for a short time;
//! - [`password`]: argon2id on a bounded blocking pool;
//! - [`ldap`]: directory (LDAP, Active Directory) users and their groups;
//! - this file: [`Authenticator`], which turns credentials into an [`Identity`].

pub mod basic;
pub mod cache;
pub mod ldap;
pub mod password;

use std::sync::Arc;

use crate::authz::Subject;
use crate::store::{users, Store, StoreError, User};
use basic::Credentials;
use password::PasswordHasher;

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
    /// The directory is down, slow or misconfigured: directory users cannot log in for now.
    #[error(transparent)]
    Directory(#[from] ldap::DirectoryError),
}

/// Checks credentials against the database users.
#[derive(Clone)]
pub struct Authenticator {
    store: Arc<Store>,
    hasher: PasswordHasher,
    /// The configured directory, if any; without one only database users exist.
    directory: Option<Arc<ldap::DirectoryLogins>>,
}

impl Authenticator {
    pub fn new(store: Arc<Store>, hasher: PasswordHasher) -> Self {
        Authenticator { store, hasher, directory: None }
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
        // Verify even for unknown users (against a decoy) so timing does not reveal names.
        let verified = self.hasher.verify(password, hash).await;
        match user {
            Some(user) if verified && !user.disabled => {
                Ok(Identity::User { id: user.id, name: user.name, is_admin: user.is_admin })
            }
            _ => Err(AuthnError::InvalidCredentials),
        }
    }

    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }
}
