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
//! - [`revalidation`]: when credentials that never reach the directory are checked against it;
//! - this file: [`DirectoryAuthenticator`], which adds the cache of recent successes, records
//!   logins, and carries out re-checks.

pub mod connection;
pub mod directory;
pub mod filter;
pub mod revalidation;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

pub use directory::{Directory, Group, Lookup, Recheck, UserEntry};
use revalidation::Revalidation;

use super::cache::CredentialCache;
use super::{sources, Identity, Verdict};
use crate::config::ldap::{LdapConfig, SourceOrder};
use crate::dn::{looks_like_dn, normalize_dn};
use crate::store::names::validate_user_name;
use crate::store::{
    blocking, DirectoryAccount, DirectoryCheck, DirectoryLogin, GroupMember, SharedStore, StoreError, User,
};

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
    /// When directory users' tokens were last re-checked.
    revalidation: Revalidation,
}

/// What a re-check of a directory user's credential decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revalidated {
    /// The last check still holds (or the directory is down, within the grace): nothing changed.
    Unchanged,
    /// The directory vouched again; the user's groups and admin status were recorded afresh.
    Refreshed,
    /// As `Refreshed`, and the password changed since the last record: the identity tokens
    /// made before the change were deleted (personal tokens, made by an operator, stay).
    PasswordChanged,
    /// The directory no longer knows the user as one who may log in: all of their refresh
    /// tokens and personal tokens were deleted.
    Revoked,
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
            revalidation: Revalidation::new(config.revalidate_secs, config.revalidate_grace_secs),
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
        if let Some(reason) = entry.disabled {
            tracing::info!(login = %crate::text::for_message(login), dn = %entry.dn, reason, "directory account may not log in; refused");
            return Ok(Verdict::Refused);
        }
        if !self.directory.check_password(&entry.dn, password, deadline).await? {
            return Ok(Verdict::Refused);
        }
        if let Err(error) = validate_user_name(&entry.account) {
            tracing::warn!(dn = %entry.dn, %error, "directory account name cannot be a Portcullis user name; refused");
            return Ok(Verdict::Refused);
        }
        if let Some(holder) = self.other_entry_holds(&entry, deadline).await? {
            tracing::warn!(login = %crate::text::for_message(login), dn = %entry.dn, recorded = %holder, "this account belongs to another directory entry; login refused (to give the name to this entry, remove the account: portcullis user remove NAME)");
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

    /// The recorded DN of another directory entry the account of `entry` belongs to, if any: the
    /// account a login uses is tied to the entry it was recorded for. The entries' lasting
    /// identifiers decide when both are known (a moved or renamed user keeps theirs; an entry
    /// made or renamed into a deleted user's DN does not have it). Without them, an entry with
    /// several values of the login attribute (one that may add a second `uid` to itself) never
    /// takes over an account recorded for, or made ahead of, another entry, and an entry with
    /// one value counts as a moved user only if the recorded entry is gone.
    async fn other_entry_holds(
        &self,
        entry: &UserEntry,
        deadline: Instant,
    ) -> Result<Option<String>, DirectoryError> {
        let account = entry.account.clone();
        let recorded = blocking(&self.store, move |store| match store.find_user(&account)? {
            Some(user) => Ok(Some((user.name.clone(), store.directory_account(user.id)?))),
            None => Ok(None),
        })
        .await
        .map_err(|error| DirectoryError::Record(error.to_string()))?;
        let Some((name, recorded)) = recorded else { return Ok(None) };
        let Some(recorded) = recorded else {
            // Made ahead (`user add --ldap`), or a database account: no entry recorded yet.
            return Ok((entry.login_values > 1).then(|| "(none recorded yet)".to_string()));
        };
        if let (Some(recorded_id), Some(entry_id)) = (&recorded.entry_id, &entry.entry_id) {
            return Ok((recorded_id != entry_id).then_some(recorded.dn));
        }
        if normalize_dn(&recorded.dn) == normalize_dn(&entry.dn) {
            return Ok(None);
        }
        if entry.login_values > 1 {
            return Ok(Some(recorded.dn));
        }
        match self.directory.recheck(&recorded.dn, &name, deadline).await? {
            Recheck::Present(_) => Ok(Some(recorded.dn)),
            Recheck::Absent(reason) => {
                tracing::info!(user = %name, from = %recorded.dn, to = %entry.dn, reason, "directory user moved or renamed; recording the new DN");
                Ok(None)
            }
        }
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

    /// Whether the directory user `user_id` (named `account`) may still use a credential that did
    /// not go to the directory, re-checking their entry by DN when it is due (see
    /// [`revalidation`]). Directory work waits for one of `slots`.
    pub async fn revalidate(
        &self,
        user_id: i64,
        account: &str,
        slots: &Semaphore,
    ) -> Result<Revalidated, DirectoryError> {
        let now = crate::store::now();
        if self.revalidation.remembered_fresh(user_id, now) {
            return Ok(Revalidated::Unchanged);
        }
        let recorded = self.recorded(user_id).await?;
        let Some(mut claim) = self.revalidation.due(user_id, recorded.checked_at, now) else {
            return Ok(Revalidated::Unchanged);
        };
        let outcome = self.recheck(&recorded, account, now, slots).await;
        if matches!(outcome, Ok(Revalidated::Revoked)) {
            claim.revoked();
        }
        outcome
    }

    /// Asks the directory about `user_id` now, however recent the last check
    /// (`portcullis access check --live`), with the same consequences as a due re-check: new
    /// groups recorded, or the credentials of a user it no longer vouches for revoked.
    pub async fn revalidate_now(
        &self,
        user_id: i64,
        account: &str,
        slots: &Semaphore,
    ) -> Result<Revalidated, DirectoryError> {
        let recorded = self.recorded(user_id).await?;
        self.recheck(&recorded, account, crate::store::now(), slots).await
    }

    /// What the store recorded of directory user `user_id`'s last check.
    async fn recorded(&self, user_id: i64) -> Result<DirectoryAccount, DirectoryError> {
        let recorded = blocking(&self.store, move |store| store.directory_account(user_id))
            .await
            .map_err(|error| DirectoryError::Record(error.to_string()))?;
        // An account made ahead with `user add --ldap` that never logged in: no DN is known, so
        // the first check looks the name up, and nothing vouched for it before.
        Ok(recorded.unwrap_or(DirectoryAccount {
            user_id,
            dn: String::new(),
            entry_id: None,
            password_changed_at: None,
            group_admin: false,
            checked_at: 0,
        }))
    }

    async fn recheck(
        &self,
        recorded: &DirectoryAccount,
        account: &str,
        now: i64,
        slots: &Semaphore,
    ) -> Result<Revalidated, DirectoryError> {
        // The wait for a slot counts against the check's deadline: logins filling every slot
        // must not hold a re-check (and its claim) for longer than one directory call may take.
        let deadline = Instant::now() + Duration::from_secs(self.config().timeout_secs);
        let slot = tokio::time::timeout_at(deadline, slots.acquire()).await;
        let _slot = match slot {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return Err(DirectoryError::Setup("shutting down".into())),
            Err(_) => {
                let error = DirectoryError::TimedOut { url: self.directory.url().to_string() };
                return self.outage(recorded, account, now, error);
            }
        };
        let looked_up = match recorded.dn.is_empty() {
            true => self.directory.find_user(account, deadline).await.map(|lookup| match lookup {
                Lookup::Found(entry) if entry.login_values > 1 => {
                    Recheck::Absent("the only entry of this name has several login names")
                }
                Lookup::Found(entry) => Recheck::Present(entry),
                Lookup::Unknown => Recheck::Absent("no directory entry has this login name"),
                Lookup::Ambiguous => Recheck::Absent("several directory entries have this login name"),
            }),
            false => self.directory.recheck(&recorded.dn, account, deadline).await,
        };
        let looked_up = looked_up.map(|found| match (found, &recorded.entry_id) {
            (Recheck::Present(entry), Some(id))
                if entry.entry_id.as_ref().is_some_and(|found| found != id) =>
            {
                Recheck::Absent("the DN now names another entry")
            }
            (found, _) => found,
        });
        let entry = match looked_up {
            Ok(Recheck::Present(entry)) => entry,
            Ok(Recheck::Absent(reason)) => {
                self.revoke(recorded, account, reason).await?;
                return Ok(Revalidated::Revoked);
            }
            Err(error) => return self.outage(recorded, account, now, error),
        };
        let groups = match self.directory.groups_of(&entry, deadline).await {
            Ok(groups) => groups,
            Err(error) => return self.outage(recorded, account, now, error),
        };
        let (user_id, group_admin) = (recorded.user_id, self.directory.is_admin(&groups));
        if recorded.dn.is_empty() {
            // As a login would record it, DN included, but without a password.
            if self.record(&entry, &groups, group_admin).await?.is_none_or(|user| user.id != user_id) {
                self.revoke(recorded, account, "the directory entry of this name belongs to another account")
                    .await?;
                return Ok(Revalidated::Revoked);
            }
        } else {
            let (groups, entry_id, password_changed_at) =
                (group_map(&groups), entry.entry_id.clone(), entry.password_changed_at);
            let revoked = blocking(&self.store, move |store| {
                let check = DirectoryCheck {
                    entry_id: entry_id.as_deref(),
                    password_changed_at,
                    groups: &groups,
                    group_admin,
                    checked_at: now,
                };
                store.record_directory_check(user_id, &check)
            })
            .await
            .map_err(|error| DirectoryError::Record(error.to_string()))?;
            if revoked > 0 {
                self.revalidation.saw(user_id, now);
                tracing::warn!(user = %entry.account, revoked, "the directory password changed: identity tokens made before the change are revoked");
                return Ok(Revalidated::PasswordChanged);
            }
        }
        self.revalidation.saw(user_id, now);
        tracing::debug!(user = %entry.account, dn = %entry.dn, password_changed_at = ?entry.password_changed_at, "directory re-check passed");
        Ok(Revalidated::Refreshed)
    }

    /// The answer when the directory could not re-check `account`: go on within the grace, 503
    /// past it.
    fn outage(
        &self,
        recorded: &DirectoryAccount,
        account: &str,
        now: i64,
        error: DirectoryError,
    ) -> Result<Revalidated, DirectoryError> {
        let within_grace = self.revalidation.within_grace(recorded.checked_at, now);
        tracing::warn!(%error, user = %crate::text::for_message(account), within_grace, "could not re-check a directory user's credential");
        self.revalidation.outage(recorded.checked_at, now, error).map(|()| Revalidated::Unchanged)
    }

    /// Deletes the credentials of a user the directory no longer vouches for, and forgets their
    /// remembered password logins.
    async fn revoke(
        &self,
        recorded: &DirectoryAccount,
        account: &str,
        reason: &str,
    ) -> Result<(), DirectoryError> {
        let user_id = recorded.user_id;
        let (refresh_tokens, personal_tokens) =
            blocking(&self.store, move |store| store.revoke_user_credentials(user_id))
                .await
                .map_err(|error| DirectoryError::Record(error.to_string()))?;
        self.cache.retain(|remembered| !remembered.account.eq_ignore_ascii_case(account));
        tracing::warn!(
            user = %crate::text::for_message(account),
            dn = %recorded.dn,
            reason,
            refresh_tokens,
            personal_tokens,
            "the directory no longer vouches for this user: their identity tokens and personal tokens are revoked"
        );
        Ok(())
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
            entry_id: entry.entry_id.clone(),
            password_changed_at: entry.password_changed_at,
            groups: group_map(groups),
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

/// The groups as the store records them: two keys per group (by DN, by name) to its text.
fn group_map(groups: &[Group]) -> BTreeMap<String, String> {
    groups
        .iter()
        .flat_map(|group| {
            let [dn_key, name_key] = group.keys();
            [(dn_key, group.dn.clone()), (name_key, group.name.clone())]
        })
        .collect()
}
