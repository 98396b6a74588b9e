//! Directory logins (LDAP, Active Directory) beside database users.
//!
//! A login searches the user's entry with the search account, binds as that entry with the
//! given password, resolves the entry's groups, and records the user, their groups and whether an
//! admin group made them a system admin in the store (where the account snapshot picks them up for
//! every kind of credential of that user). Faults of the directory (down, slow, misconfigured)
//! become [`DirectoryError`], answered 503. Which source decides for a name is
//! [`super::sources`]'s rule, not this module's.
//!
//! - [`filter`]: search filters, escaped against injection;
//! - [`connection`]: TLS and the kept search connection;
//! - [`directory`]: [`Directory`], the search, bind and group queries;
//! - this file: [`DirectoryAuthenticator`], which adds the cache of recent successes and records
//!   logins.

pub mod connection;
pub mod directory;
pub mod filter;

use std::time::Duration;

use tokio::time::Instant;

pub use directory::{Directory, Group, Lookup, UserEntry};

use super::cache::CredentialCache;
use super::{sources, Identity, Verdict};
use crate::config::ldap::{LdapConfig, SourceOrder};
use crate::dn::looks_like_dn;
use crate::store::names::validate_user_name;
use crate::store::{blocking, DirectoryLogin, GroupMember, SharedStore, StoreError, User};

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

/// A verified directory login as remembered: enough to answer again without the directory.
#[derive(Debug, Clone)]
struct RememberedLogin {
    /// The Portcullis account name as recorded (the entry's login attribute value).
    account: String,
}

/// Directory logins with their cache, shared by all requests.
pub struct DirectoryAuthenticator {
    directory: Directory,
    /// Successful logins only, keyed by HMAC(login, password); failures always go to the
    /// directory again.
    cache: CredentialCache<RememberedLogin>,
    store: SharedStore,
}

/// Most group grants named in the start-up warning about grants by name.
const NAMED_GRANTS_SHOWN: usize = 10;

/// Settings that work but are weaker than their alternative: [`LdapConfig::warnings`], and
/// project roles granted to groups by name (`grants`), which any group of that name matches.
pub fn weaker_settings(config: &LdapConfig, grants: &[GroupMember]) -> Vec<String> {
    let mut warnings = config.warnings();
    let by_name: Vec<String> = grants
        .iter()
        .filter(|grant| !looks_like_dn(&grant.group))
        .map(|grant| format!("{:?} ({} in {})", grant.group, grant.role, grant.project))
        .collect();
    if !by_name.is_empty() {
        let more = by_name.len().saturating_sub(NAMED_GRANTS_SHOWN);
        let mut shown = by_name.iter().take(NAMED_GRANTS_SHOWN).cloned().collect::<Vec<_>>().join(", ");
        if more > 0 {
            shown.push_str(&format!(" and {more} more"));
        }
        warnings.push(format!(
            "{} project role(s) are granted to directory groups by name: {shown}; members of any \
             group called that get the role (grant by DN: portcullis member add PROJECT --group DN)",
            by_name.len()
        ));
    }
    warnings
}

impl DirectoryAuthenticator {
    /// The directory logins of the server, which logs [`weaker_settings`] once here. Blocking
    /// (it reads the group grants): call it where the server starts.
    pub fn new(config: &LdapConfig, store: SharedStore) -> Result<DirectoryAuthenticator, DirectoryError> {
        let grants = store.list_group_roles(None).unwrap_or_else(|error| {
            tracing::warn!(%error, "could not read the group grants to check them");
            Vec::new()
        });
        for warning in weaker_settings(config, &grants) {
            tracing::warn!("{warning}");
        }
        Ok(DirectoryAuthenticator {
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

    /// Checks `login` and `password` against the directory (or the cache of recent successes):
    /// `Unknown` when the directory has no entry for the name (another source may), `Refused`
    /// when it has one and refused (wrong password, ambiguous name). `row` is the account the
    /// store found for `login`, if any.
    pub async fn login(
        &self,
        login: &str,
        password: &str,
        row: Option<&User>,
    ) -> Result<Verdict, DirectoryError> {
        if password.is_empty() || validate_user_name(login).is_err() {
            return Ok(Verdict::Refused);
        }
        if let Some(remembered) = self.cache.get(login, password) {
            if let Some(verdict) = self.remembered(&remembered, row).await {
                return Ok(verdict);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(self.config().timeout_secs);
        let entry = match self.directory.find_user(login, deadline).await? {
            Lookup::Found(entry) => entry,
            Lookup::Unknown => return Ok(Verdict::Unknown),
            Lookup::Ambiguous => {
                tracing::warn!(directory = %self.directory.url(), login = %crate::text::for_message(login), "login name matches several directory entries; refused");
                return Ok(Verdict::Refused);
            }
        };
        if !self.directory.check_password(&entry.dn, password, deadline).await? {
            return Ok(Verdict::Refused);
        }
        if let Err(error) = validate_user_name(&entry.account) {
            tracing::warn!(dn = %entry.dn, %error, "directory account name cannot be a Portcullis user name; refused");
            return Ok(Verdict::Refused);
        }
        let groups = self.directory.groups_of(&entry, deadline).await?;
        let group_admin = self.directory.is_admin(&groups);
        let Some(user) = self.record(&entry, &groups, group_admin).await? else {
            return Ok(Verdict::Refused);
        };
        self.cache.insert(login, password, RememberedLogin { account: user.name.clone() });
        Ok(Verdict::Accepted(Identity::User { id: user.id, name: user.name }))
    }

    /// The verdict for a remembered login, from the account's current row (a removed account,
    /// or one the directory may no longer use, takes effect at once); `None` when the row is gone
    /// or cannot be read now, and the directory must be asked.
    async fn remembered(&self, remembered: &RememberedLogin, row: Option<&User>) -> Option<Verdict> {
        let user = match row.filter(|row| row.name == remembered.account) {
            // Usually the login is the account's name, and its row was read already.
            Some(row) => row.clone(),
            None => {
                let account = remembered.account.clone();
                blocking(&self.store, move |store| store.find_user(&account)).await.ok()??
            }
        };
        Some(match sources::directory_may_use(self.order(), &user) {
            true => Verdict::Accepted(Identity::User { id: user.id, name: user.name }),
            false => Verdict::Refused,
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
        let claim = sources::directory_may_claim_database_accounts(self.order());
        let account = entry.account.clone();
        match blocking(&self.store, move |store| store.record_directory_login(&login, claim)).await {
            Ok(user) => Ok(Some(user)),
            // A name the store refuses for this account: a database account's, a robot's.
            Err(StoreError::Refused(reason) | StoreError::Invalid(reason)) => {
                tracing::warn!(%account, %reason, "directory login refused");
                Ok(None)
            }
            Err(StoreError::AlreadyExists { kind, name }) => {
                tracing::warn!(%account, "directory login refused: the name is taken by {kind} {name}");
                Ok(None)
            }
            Err(error) => Err(DirectoryError::Record(error.to_string())),
        }
    }
}
