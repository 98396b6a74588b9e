//! Directory logins (LDAP, Active Directory) beside database users.
//!
//! A login searches the user's entry with the search account, binds as that entry with the
//! given password, resolves the entry's groups, and records the user and groups in the database
//! (where project roles granted to groups are looked up). Which source decides for a name is the
//! configured [`SourceOrder`]; faults of the directory (down, slow, misconfigured) become
//! [`DirectoryError`], answered 503, and never touch database users in database-first order.
//!
//! - [`names`]: filter escaping and group keys;
//! - [`connection`]: TLS and the kept search connection;
//! - [`directory`]: the search, bind and group queries;
//! - this file: [`DirectoryLogins`], which adds the cache and the order of sources.

pub mod connection;
pub mod directory;
pub mod names;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use directory::{Directory, Group, Lookup, UserEntry};

use super::cache::CredentialCache;
use super::{Authenticator, AuthnError, Identity};
use crate::config::ldap::{LdapConfig, SourceOrder};
use crate::store::directory::{record_login, DirectoryLogin, DATABASE_SOURCE, LDAP_SOURCE};
use crate::store::{users, Store, StoreError, User};

/// Most remembered directory logins; past it the oldest are forgotten first.
const CACHE_CAPACITY: usize = 10_000;

/// Why the directory could not answer. Each is the server's problem, not the user's: 503.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DirectoryError {
    #[error("directory {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("directory {url} did not answer in time")]
    TimedOut { url: String },
    #[error("directory {url} refused the search account (check ldap.bind_dn and its password): {reason}")]
    SearchAccountRefused { url: String, reason: String },
    #[error("directory {url} failed {operation}: {reason}")]
    Failed { url: String, operation: String, reason: String },
    #[error("ldap: {0}")]
    Setup(String),
    /// The directory said yes but the database could not record it: still a 503, not a 401.
    #[error("recording a directory login in the database failed: {0}")]
    Record(String),
}

/// What the directory said about one login.
#[derive(Debug)]
pub enum DirectoryVerdict {
    Accepted(Identity),
    /// The directory has no entry for the name: another source may.
    Unknown,
    /// The directory has the entry and refused (wrong password, ambiguous name, disabled
    /// account): no other source is asked.
    Refused,
}

/// A verified directory login as remembered: enough to answer again without the directory.
#[derive(Debug, Clone)]
struct RememberedLogin {
    /// The Portcullis user name (the entry's login attribute value).
    account: String,
    /// Member of an admin group at the time.
    directory_admin: bool,
}

/// Directory logins with their cache, shared by all requests.
pub struct DirectoryLogins {
    directory: Directory,
    /// Successful logins only, keyed by HMAC(login, password); failures always go to the
    /// directory again.
    cache: CredentialCache<RememberedLogin>,
    store: Arc<Store>,
}

impl DirectoryLogins {
    pub fn new(config: &LdapConfig, store: Arc<Store>) -> Result<DirectoryLogins, DirectoryError> {
        Ok(DirectoryLogins {
            directory: Directory::new(config)?,
            cache: CredentialCache::new(Duration::from_secs(config.cache_secs), CACHE_CAPACITY),
            store,
        })
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    fn config(&self) -> &LdapConfig {
        &self.directory.config
    }

    /// Which source decides first for a name both know.
    pub fn order(&self) -> SourceOrder {
        self.config().order
    }

    /// Checks `login` and `password` against the directory (or the cache of recent successes).
    /// `row` is the database user named `login`, if the caller has already read it.
    pub async fn login(
        &self,
        login: &str,
        password: &str,
        row: Option<&User>,
    ) -> Result<DirectoryVerdict, DirectoryError> {
        if password.is_empty() || users::validate_user_name(login).is_err() {
            return Ok(DirectoryVerdict::Refused);
        }
        if let Some(remembered) = self.cache.get(login, password) {
            if let Some(verdict) = self.remembered(&remembered, row).await {
                return Ok(verdict);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(self.config().timeout_secs);
        let entry = match self.directory.find_user(login, deadline).await? {
            Lookup::Found(entry) => entry,
            Lookup::Unknown => return Ok(DirectoryVerdict::Unknown),
            Lookup::Ambiguous => {
                tracing::warn!(directory = %self.directory.url(), %login, "login name matches several directory entries; refused");
                return Ok(DirectoryVerdict::Refused);
            }
        };
        if !self.directory.check_password(&entry.dn, password, deadline).await? {
            return Ok(DirectoryVerdict::Refused);
        }
        if let Err(error) = users::validate_user_name(&entry.account) {
            tracing::warn!(dn = %entry.dn, %error, "directory account name cannot be a Portcullis user name; refused");
            return Ok(DirectoryVerdict::Refused);
        }
        let groups = self.directory.groups_of(&entry, deadline).await?;
        let directory_admin = self.directory.is_admin(&groups);
        let Some(user) = self.record(&entry, &groups, directory_admin).await? else {
            return Ok(DirectoryVerdict::Refused);
        };
        if user.disabled {
            return Ok(DirectoryVerdict::Refused);
        }
        self.cache.insert(
            login,
            password,
            RememberedLogin { account: entry.account.clone(), directory_admin },
        );
        Ok(DirectoryVerdict::Accepted(identity(&user, directory_admin)))
    }

    /// The verdict for a remembered login, from the user's current row (a disabled or changed
    /// account takes effect at once); `None` when the row is gone and the directory must be asked.
    async fn remembered(&self, remembered: &RememberedLogin, row: Option<&User>) -> Option<DirectoryVerdict> {
        let user = match row.filter(|row| row.name == remembered.account) {
            // Usually the login is the account's name, and its row was read already.
            Some(row) => row.clone(),
            None => {
                let store = self.store.clone();
                let account = remembered.account.clone();
                tokio::task::spawn_blocking(move || store.with_connection(|c| users::find(c, &account)))
                    .await
                    .ok()?
                    .ok()??
            }
        };
        let claimable = user.source == LDAP_SOURCE || self.config().order == SourceOrder::DirectoryFirst;
        Some(if user.disabled || !claimable {
            DirectoryVerdict::Refused
        } else {
            DirectoryVerdict::Accepted(identity(&user, remembered.directory_admin))
        })
    }

    /// Records the login, its groups and admin status; `None` (logged) when the account may not
    /// be used.
    async fn record(
        &self,
        entry: &UserEntry,
        groups: &[Group],
        group_admin: bool,
    ) -> Result<Option<User>, DirectoryError> {
        let login = DirectoryLogin {
            account: entry.account.clone(),
            dn: entry.dn.clone(),
            groups: groups
                .iter()
                .flat_map(|group| {
                    let [dn_key, name_key] = group.keys();
                    [(dn_key, group.dn.clone()), (name_key, group.name.clone())]
                })
                .collect(),
            group_admin,
        };
        let store = self.store.clone();
        let claim = self.config().order == SourceOrder::DirectoryFirst;
        let account = entry.account.clone();
        let recorded =
            tokio::task::spawn_blocking(move || store.with_connection(|c| record_login(c, &login, claim)))
                .await;
        match recorded {
            Ok(Ok(user)) => Ok(Some(user)),
            Ok(Err(StoreError::Invalid(reason))) => {
                tracing::warn!(%account, %reason, "directory login refused");
                Ok(None)
            }
            Ok(Err(error)) => Err(DirectoryError::Record(error.to_string())),
            Err(error) => Err(DirectoryError::Record(error.to_string())),
        }
    }
}

fn identity(user: &User, directory_admin: bool) -> Identity {
    Identity::User { id: user.id, name: user.name.clone(), is_admin: user.is_admin || directory_admin }
}

/// Authenticates with both sources in the configured order. `user` is the database row named
/// `login`, if any.
pub(crate) async fn authenticate(
    authenticator: &Authenticator,
    logins: &DirectoryLogins,
    user: Option<User>,
    login: &str,
    password: String,
) -> Result<Identity, AuthnError> {
    let order = logins.config().order;
    let verdict = match &user {
        Some(user) if order == SourceOrder::DatabaseFirst && user.source == DATABASE_SOURCE => None,
        _ => Some(logins.login(login, &password, user.as_ref()).await),
    };
    let database_user = user.filter(|user| user.source == DATABASE_SOURCE);
    let Some(verdict) = verdict else {
        return authenticator.verify_database(database_user, password).await;
    };
    match verdict {
        Ok(DirectoryVerdict::Accepted(identity)) => Ok(identity),
        Ok(DirectoryVerdict::Refused) => Err(AuthnError::InvalidCredentials),
        Ok(DirectoryVerdict::Unknown) if order == SourceOrder::DirectoryFirst => {
            authenticator.verify_database(database_user, password).await
        }
        Ok(DirectoryVerdict::Unknown) => Err(AuthnError::InvalidCredentials),
        Err(error) if database_user.is_some() => {
            tracing::warn!(%error, %login, "directory unavailable; checking the database user instead");
            authenticator.verify_database(database_user, password).await
        }
        Err(error) => {
            tracing::error!(%error, %login, "directory unavailable; directory users cannot log in");
            Err(AuthnError::Directory(error))
        }
    }
}
