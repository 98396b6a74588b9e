//! [`SqlStore`]: the one implementation of [`Store`], each method a call into the query file of
//! its tables on a connection of the [`Backend`].

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::names::{self, Table};
use super::{
    access_load, audit_log, directory_accounts, import, login_failures, personal_tokens, projects,
    refresh_tokens, robots, signing_keys, users, Db,
};
use crate::access::{AccessSnapshot, Changes};
use crate::authz::Role;
use crate::store::names::NameRules;
use crate::store::records::*;
use crate::store::{now, Store, StoreError};

/// How long a write that may be skipped waits for another writer (review likely defect 8: a
/// refresh token's use record waited the full busy timeout, stalling docker pushes).
pub const BEST_EFFORT_WAIT: Duration = Duration::from_millis(100);

/// What a database brings to [`SqlStore`]: its connections and how to tell that someone
/// committed.
pub trait Backend: Send + Sync + 'static {
    /// Where the data lives, for messages (never a password).
    fn location(&self) -> String;
    /// Runs `work` on a pooled connection. Blocking.
    fn with_db<T>(&self, work: impl FnOnce(&mut dyn Db) -> Result<T, StoreError>) -> Result<T, StoreError>;
    /// [`Backend::with_db`] for a write that waits at most `wait` for other writers.
    fn with_db_waiting<T>(
        &self,
        wait: Duration,
        work: impl FnOnce(&mut dyn Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;
    /// Whether the database answers now.
    fn ping(&self) -> Result<(), StoreError>;
    /// [`Store::commit_counter`]: cheap, asked at every token request.
    fn commit_counter(&self) -> Result<i64, StoreError>;
    /// Whether the database was replaced by another one since the last call, so that the
    /// snapshot must be loaded afresh whatever its change log says.
    fn take_replaced(&self) -> bool {
        false
    }
}

/// The store over a [`Backend`], with the name rules it enforces.
pub struct SqlStore<B> {
    pub(crate) backend: B,
    rules: NameRules,
    /// The epoch (schema 0006) of the database the snapshot was last loaded from.
    loaded_epoch: Mutex<Option<String>>,
}

impl<B: Backend> SqlStore<B> {
    pub fn new(backend: B, rules: NameRules) -> SqlStore<B> {
        SqlStore { backend, rules, loaded_epoch: Mutex::new(None) }
    }

    /// Runs `work` with a connection. Blocking: for tests and tools that need SQL of their own.
    pub fn with_db<T>(
        &self,
        work: impl FnOnce(&mut dyn Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.backend.with_db(work)
    }
}

impl<B: Backend> Store for SqlStore<B> {
    fn location(&self) -> String {
        self.backend.location()
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.backend.ping()
    }

    fn schema_version(&self) -> Result<i64, StoreError> {
        self.backend.with_db(|db| {
            super::query_value(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
        })
    }

    fn create_user(&self, new: &NewUser<'_>) -> Result<User, StoreError> {
        self.backend.with_db(|db| users::create(db, &self.rules, new))
    }

    fn find_user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.backend.with_db(|db| users::find(db, name))
    }

    fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.backend.with_db(|db| users::list(db))
    }

    fn scan_users(&self, each: &mut dyn FnMut(Option<&str>, Source)) -> Result<(), StoreError> {
        self.backend.with_db(|db| users::scan(db, each))
    }

    fn count_users(&self) -> Result<i64, StoreError> {
        self.backend.with_db(|db| users::count(db))
    }

    fn set_user_password(&self, name: &str, hash: &str) -> Result<(), StoreError> {
        self.backend.with_db(|db| users::set_password(db, name, hash))
    }

    fn replace_password_hash(&self, id: i64, old: &str, new: &str) -> Result<bool, StoreError> {
        self.backend.with_db(|db| users::replace_hash(db, id, old, new))
    }

    fn import(&self, plan: &Import) -> Result<ImportReport, StoreError> {
        self.backend.with_db(|db| import::import(db, &self.rules, plan))
    }

    fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<(), StoreError> {
        self.backend.with_db(|db| names::update_account(db, Table::Users, name, "disabled", disabled.into()))
    }

    fn set_user_admin(&self, name: &str, is_admin: bool) -> Result<(), StoreError> {
        self.backend.with_db(|db| {
            names::update_account(db, Table::Users, name, "is_admin", is_admin.into())?;
            if let (true, Some(user)) = (is_admin, users::find(db, name)?) {
                if directory_accounts::release_claim(db, &user)? {
                    tracing::warn!(user = %user.name, "a system admin is never the directory's: its directory claim and identity tokens are removed");
                }
            }
            Ok(())
        })
    }

    fn remove_user(&self, name: &str) -> Result<(), StoreError> {
        self.backend.with_db(|db| names::remove_account(db, Table::Users, name))
    }

    fn login_name_collisions(&self) -> Result<Vec<Vec<String>>, StoreError> {
        self.backend.with_db(|db| names::collisions(db))
    }

    fn record_directory_login(
        &self,
        login: &DirectoryLogin,
        claim_database_account: bool,
    ) -> Result<User, StoreError> {
        self.backend
            .with_db(|db| directory_accounts::record_login(db, &self.rules, login, claim_database_account))
    }

    fn directory_account(&self, user_id: i64) -> Result<Option<DirectoryAccount>, StoreError> {
        self.backend.with_db(|db| directory_accounts::account(db, user_id))
    }

    fn record_directory_check(&self, user_id: i64, check: &DirectoryCheck<'_>) -> Result<usize, StoreError> {
        self.backend.with_db(|db| directory_accounts::record_check(db, user_id, check))
    }

    fn revoke_user_credentials(&self, user_id: i64) -> Result<(usize, usize), StoreError> {
        self.backend.with_db(|db| directory_accounts::revoke_credentials(db, user_id))
    }

    fn set_group_role(&self, project: &str, group: &str, role: Role) -> Result<(), StoreError> {
        self.backend.with_db(|db| directory_accounts::set_group_member(db, project, group, role))
    }

    fn remove_group_role(&self, project: &str, group: &str) -> Result<(), StoreError> {
        self.backend.with_db(|db| directory_accounts::remove_group_member(db, project, group))
    }

    fn list_group_roles(&self, project: Option<&str>) -> Result<Vec<GroupMember>, StoreError> {
        self.backend.with_db(|db| directory_accounts::list_group_members(db, project))
    }

    fn create_project(&self, name: &str, public: bool) -> Result<Project, StoreError> {
        self.backend.with_db(|db| projects::create(db, name, public))
    }

    fn list_projects(&self) -> Result<Vec<Project>, StoreError> {
        self.backend.with_db(|db| projects::list(db))
    }

    fn set_project_public(&self, name: &str, public: bool) -> Result<(), StoreError> {
        self.backend.with_db(|db| projects::set_public(db, name, public))
    }

    fn remove_project(&self, name: &str) -> Result<(), StoreError> {
        self.backend.with_db(|db| projects::remove(db, name))
    }

    fn set_member(&self, project: &str, user: &str, role: Role) -> Result<(), StoreError> {
        self.backend.with_db(|db| projects::set_member(db, project, user, role))
    }

    fn remove_member(&self, project: &str, user: &str) -> Result<(), StoreError> {
        self.backend.with_db(|db| projects::remove_member(db, project, user))
    }

    fn list_members(&self, project: Option<&str>) -> Result<Vec<Member>, StoreError> {
        self.backend.with_db(|db| projects::list_members(db, project))
    }

    fn create_robot(&self, new: &NewRobot<'_>) -> Result<Robot, StoreError> {
        self.backend.with_db(|db| robots::create(db, &self.rules, new))
    }

    fn robot_login(&self, name: &str) -> Result<Option<(Robot, String)>, StoreError> {
        self.backend.with_db(|db| robots::login(db, name))
    }

    fn list_robots(&self, project: Option<&str>) -> Result<Vec<Robot>, StoreError> {
        self.backend.with_db(|db| robots::list(db, project))
    }

    fn set_robot_disabled(&self, name: &str, disabled: bool) -> Result<(), StoreError> {
        self.backend.with_db(|db| names::update_account(db, Table::Robots, name, "disabled", disabled.into()))
    }

    fn set_robot_secret(&self, name: &str, digest: &str) -> Result<(), StoreError> {
        self.backend
            .with_db(|db| names::update_account(db, Table::Robots, name, "secret_digest", digest.into()))
    }

    fn remove_robot(&self, name: &str) -> Result<(), StoreError> {
        self.backend.with_db(|db| names::remove_account(db, Table::Robots, name))
    }

    fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.backend.with_db(|db| signing_keys::list(db))
    }

    fn add_signing_key(&self, new: &NewSigningKey<'_>, now: i64) -> Result<i64, StoreError> {
        self.backend.with_db(|db| signing_keys::add(db, new, now))
    }

    fn promote_signing_key(&self, now: i64) -> Result<(), StoreError> {
        self.backend.with_db(|db| signing_keys::promote(db, now))
    }

    fn replace_signing_keys(&self, now: i64, next_id: i64) -> Result<(), StoreError> {
        self.backend.with_db(|db| signing_keys::replace(db, now, next_id))
    }

    fn note_key_lifetime(&self, lifetime: i64) -> Result<(), StoreError> {
        self.backend.with_db(|db| signing_keys::note_lifetime(db, lifetime))
    }

    fn cancel_next_signing_key(&self) -> Result<(), StoreError> {
        self.backend.with_db(|db| signing_keys::cancel_next(db))
    }

    fn remove_signing_keys(&self, ids: &[i64]) -> Result<usize, StoreError> {
        self.backend.with_db(|db| signing_keys::remove(db, ids))
    }

    fn record_audit(&self, entries: &[AuditEntry], max_wait: Option<Duration>) -> Result<usize, StoreError> {
        match max_wait {
            Some(wait) => self.backend.with_db_waiting(wait, |db| audit_log::record(db, entries)),
            None => self.backend.with_db(|db| audit_log::record(db, entries)),
        }
    }

    fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        self.backend.with_db(|db| audit_log::list(db, filter))
    }

    fn prune_audit(&self, before: i64, batch: usize) -> Result<usize, StoreError> {
        self.backend.with_db(|db| audit_log::prune(db, before, batch))
    }

    fn count_audit(&self) -> Result<u64, StoreError> {
        self.backend.with_db(|db| audit_log::count(db))
    }

    fn remove_oldest_audit(&self, count: usize) -> Result<usize, StoreError> {
        self.backend.with_db(|db| audit_log::remove_oldest(db, count))
    }

    fn record_robot_use(&self, id: i64, now: i64) -> Result<(), StoreError> {
        self.backend.with_db_waiting(BEST_EFFORT_WAIT, |db| robots::record_use(db, id, now))
    }

    fn record_personal_token_use(&self, id: i64, now: i64) -> Result<(), StoreError> {
        self.backend.with_db_waiting(BEST_EFFORT_WAIT, |db| personal_tokens::record_use(db, id, now))
    }

    fn create_personal_token(&self, new: &NewPersonalToken<'_>) -> Result<PersonalToken, StoreError> {
        self.backend.with_db(|db| personal_tokens::create(db, new))
    }

    fn personal_token_login(
        &self,
        user: &str,
        digest: &str,
    ) -> Result<Option<PersonalTokenLogin>, StoreError> {
        self.backend.with_db(|db| personal_tokens::login(db, user, digest))
    }

    fn list_personal_tokens(&self, user: Option<&str>) -> Result<Vec<PersonalToken>, StoreError> {
        self.backend.with_db(|db| personal_tokens::list(db, user))
    }

    fn revoke_personal_token(&self, user: &str, label: &str) -> Result<(), StoreError> {
        self.backend.with_db(|db| personal_tokens::revoke(db, user, label))
    }

    fn create_refresh_token(&self, new: &NewRefreshToken<'_>) -> Result<i64, StoreError> {
        self.backend.with_db(|db| refresh_tokens::create(db, new))
    }

    fn refresh_token_login(&self, digest: &str) -> Result<Option<RefreshToken>, StoreError> {
        self.backend.with_db(|db| refresh_tokens::find(db, digest))
    }

    fn touch_refresh_token(&self, id: i64, time: i64) -> Result<(), StoreError> {
        self.backend.with_db_waiting(BEST_EFFORT_WAIT, |db| refresh_tokens::touch(db, id, time))
    }

    fn list_refresh_tokens(&self, user: Option<&str>) -> Result<Vec<RefreshToken>, StoreError> {
        self.backend.with_db(|db| refresh_tokens::list(db, user))
    }

    fn revoke_refresh_token(&self, id: i64) -> Result<(), StoreError> {
        self.backend.with_db(|db| refresh_tokens::revoke(db, id))
    }

    fn revoke_user_refresh_tokens(&self, user: &str) -> Result<usize, StoreError> {
        self.backend.with_db(|db| refresh_tokens::revoke_user(db, user))
    }

    fn revoke_all_refresh_tokens(&self) -> Result<usize, StoreError> {
        self.backend.with_db(|db| refresh_tokens::revoke_all(db))
    }

    fn record_login_failure(
        &self,
        name: &str,
        address: &str,
        directory: bool,
        window: i64,
    ) -> Result<(), StoreError> {
        self.backend.with_db(|db| login_failures::record(db, name, address, directory, now(), window))
    }

    fn login_failures(&self, name: &str) -> Result<Option<LoginFailures>, StoreError> {
        self.backend.with_db(|db| login_failures::find(db, name))
    }

    fn list_login_failures(&self) -> Result<Vec<LoginFailures>, StoreError> {
        self.backend.with_db(|db| login_failures::list(db))
    }

    fn reset_directory_failures(&self, name: &str) -> Result<(), StoreError> {
        self.backend.with_db(|db| login_failures::reset_directory(db, name))
    }

    fn clear_login_failures(&self, name: &str) -> Result<bool, StoreError> {
        self.backend.with_db(|db| login_failures::clear(db, name, now()))
    }

    fn commit_counter(&self) -> Result<i64, StoreError> {
        self.backend.commit_counter()
    }

    fn load_access(&self) -> Result<AccessSnapshot, StoreError> {
        let (snapshot, epoch) = self.backend.with_db(access_load::load)?;
        *self.loaded_epoch.lock().unwrap_or_else(PoisonError::into_inner) = Some(epoch);
        Ok(snapshot)
    }

    fn access_changes(&self, since: i64) -> Result<Changes, StoreError> {
        let mut loaded = self.loaded_epoch.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if self.backend.take_replaced() {
            // Even a copy of the same database (same epoch) may be older than what was loaded.
            loaded = None;
        }
        let (changes, epoch) =
            self.backend.with_db(|db| access_load::read_changes(db, since, loaded.as_deref()))?;
        *self.loaded_epoch.lock().unwrap_or_else(PoisonError::into_inner) = Some(epoch);
        Ok(changes)
    }
}
