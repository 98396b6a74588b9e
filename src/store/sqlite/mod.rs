//! The SQLite backend of [`Store`]: opening the database, applying `schema/` migrations, the
//! connection pool, and the [`Store`] methods, each a call into the file for its tables.
//!
//! The server and the CLI open the same file at the same time, so the database runs in WAL mode
//! (readers never block the writer) with a busy timeout (writers wait for each other instead of
//! failing). Queries live in one file per table group: [`users`] (with [`names`], the login-name
//! space users and robots share), [`projects`], [`directory_accounts`] (directory users' groups and
//! roles granted to groups), [`robots`], [`personal_tokens`], [`refresh_tokens`], and
//! [`access_load`], every read that feeds the in-memory snapshot, [`audit_log`], the stored
//! audit trail, and [`signing_keys`]. The dependency order is
//! `names <- users <- projects <- {robots, personal_tokens, refresh_tokens, directory_accounts}`.

mod access_load;
mod audit_log;
mod directory_accounts;
mod login_failures;
mod names;
mod personal_tokens;
mod projects;
mod refresh_tokens;
mod robots;
mod signing_keys;
mod users;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::names::NameRules;
use super::records::*;
use super::{now, Store, StoreError};
use crate::access::{AccessSnapshot, Changes};
use crate::authz::Role;
use names::Table;

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Database(Box::new(error))
    }
}

/// Whether `error` is SQLite saying another connection holds the lock it needs.
fn is_busy(error: &StoreError) -> bool {
    let busy = |error: &rusqlite::Error| {
        matches!(
            error.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    };
    match error {
        StoreError::Database(source) => source.downcast_ref::<rusqlite::Error>().is_some_and(busy),
        StoreError::Open { reason, .. } => {
            reason.contains("database is locked") || reason.contains("database is busy")
        }
        _ => false,
    }
}

/// The numbered migrations under `schema/`, in order. Append; never edit a released one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "core", include_str!("../../../schema/0001_core.sql")),
    (2, "credentials", include_str!("../../../schema/0002_credentials.sql")),
    (3, "ldap", include_str!("../../../schema/0003_ldap.sql")),
    (4, "access_changes", include_str!("../../../schema/0004_access_changes.sql")),
    (5, "folded_names", include_str!("../../../schema/0005_folded_names.sql")),
    (6, "epoch_and_failures", include_str!("../../../schema/0006_epoch_and_failures.sql")),
    (7, "directory_checks", include_str!("../../../schema/0007_directory_checks.sql")),
    (8, "audit_log", include_str!("../../../schema/0008_audit_log.sql")),
    (9, "signing_keys", include_str!("../../../schema/0009_signing_keys.sql")),
];

/// How often the database's path is compared with the file the connections have open.
const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Device and inode of the file at `path`, if it exists.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|metadata| (metadata.dev(), metadata.ino()))
}

/// Creates `dir` (and its parents) readable by this user only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// The database and its WAL and shared-memory files readable by this user only. Best effort: a
/// file we do not own keeps its mode (and SQLite gives new WAL files the database's mode).
fn make_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
    }
}

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a write that may be skipped waits for another writer (review likely defect 8: a
/// refresh token's use record waited the full busy timeout, stalling docker pushes).
const BEST_EFFORT_WAIT: Duration = Duration::from_millis(100);

/// The database file, a pool of connections to it, and the name rules it enforces.
pub struct SqliteStore {
    path: PathBuf,
    /// Idle connections; opening one per request would cost more than the query. Bounded by the
    /// threads that use them: the server's blocking pool (`cli::serve::BLOCKING_THREADS`).
    idle: Mutex<Vec<Connection>>,
    /// A connection that only ever runs `PRAGMA data_version`, whose answer changes exactly when
    /// another connection commits. It never writes, so its own commits never hide one. Opened at
    /// the first [`Store::commit_counter`] (the CLI never asks).
    watch: Mutex<Option<Connection>>,
    rules: NameRules,
    /// The file as it was opened, and when that was last compared with what `path` names now:
    /// a database replaced by another file (`mv backup.db portcullis.db`) is noticed within a
    /// second, and every connection is reopened on the new file.
    file: Mutex<FileCheck>,
    /// Added to `data_version` by [`Store::commit_counter`]: bumped when the file was replaced,
    /// so the snapshot catches up even though the new file's counter means nothing to it.
    generation: AtomicI64,
    /// The epoch (schema 0006) of the database the snapshot was last loaded from.
    loaded_epoch: Mutex<Option<String>>,
}

/// Which file `path` named when last looked at.
struct FileCheck {
    identity: Option<(u64, u64)>,
    checked: Instant,
}

/// How a store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the database if it does not exist (`serve`, `init`).
    Create,
    /// Refuse a missing database (every other command): run from the wrong directory, a command
    /// must not act on a new, empty database.
    Existing,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path, rules: NameRules) -> Result<SqliteStore, StoreError> {
        Self::open_with(path, rules, OpenMode::Create)
    }

    /// Opens the database at `path` as `mode` says, and applies pending migrations. A directory
    /// it creates is 0700 and the database files are 0600: they hold password hashes.
    pub fn open_with(path: &Path, rules: NameRules, mode: OpenMode) -> Result<SqliteStore, StoreError> {
        if mode == OpenMode::Existing && !path.exists() {
            return Err(StoreError::Missing { path: path.to_path_buf() });
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
            create_private_dir(parent)
                .map_err(|source| StoreError::CreateDirectory { path: parent.to_path_buf(), source })?;
        }
        let store = SqliteStore {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            watch: Mutex::new(None),
            rules,
            file: Mutex::new(FileCheck { identity: None, checked: Instant::now() }),
            generation: AtomicI64::new(0),
            loaded_epoch: Mutex::new(None),
        };
        // Another process opening the same new database at this moment (two servers started on
        // one fresh data dir) can hold the lock that turning on WAL needs, which SQLite reports at
        // once rather than through the busy handler: try again for as long as a busy wait lasts.
        let started = Instant::now();
        let connection = loop {
            match store.connect().and_then(|mut connection| migrate(&mut connection).map(|()| connection)) {
                Err(error) if is_busy(&error) && started.elapsed() < BUSY_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                opened => break opened?,
            }
        };
        store.release(connection);
        make_private(path);
        store.file.lock().unwrap_or_else(PoisonError::into_inner).identity = file_identity(path);
        Ok(store)
    }

    /// Whether `path` still names the file the connections were opened on; checked at most once
    /// a second. When it does not, every connection is dropped (the next ones open the new file)
    /// and the commit counter moves on.
    fn notice_replacement(&self) {
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if file.checked.elapsed() < FILE_CHECK_INTERVAL {
            return;
        }
        file.checked = Instant::now();
        let now = file_identity(&self.path);
        if now.is_none() || now == file.identity {
            return;
        }
        tracing::warn!(path = %self.path.display(), "the database file was replaced; reloading everything from the new one");
        file.identity = now;
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
        *self.watch.lock().unwrap_or_else(PoisonError::into_inner) = None;
        *self.loaded_epoch.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.generation.fetch_add(1 << 40, Ordering::AcqRel);
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let open = |path: &Path| {
            let connection = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            connection.busy_timeout(BUSY_TIMEOUT)?;
            connection.pragma_update(None, "journal_mode", "WAL")?;
            connection.pragma_update(None, "foreign_keys", "ON")?;
            // Every commit is on disk before it returns: a revocation (`user disable`, `token
            // revoke`) must survive a power loss. (NORMAL in WAL mode may roll the last commits
            // back after one.) Writes are rare on the token path, so the fsync costs little.
            connection.pragma_update(None, "synchronous", "FULL")?;
            // Token requests read from the in-memory snapshot; the database answers indexed
            // lookups and one-pass loads, which a page cache barely helps. SQLite's default
            // (2 MB per connection, one connection per blocking thread) cost 16 MB resident.
            connection.pragma_update(None, "cache_size", -256)?;
            Ok(connection)
        };
        open(&self.path).map_err(|error: rusqlite::Error| StoreError::Open {
            path: self.path.clone(),
            reason: error.to_string(),
        })
    }

    fn release(&self, connection: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(connection);
        }
    }

    /// Runs `work` with a connection from the pool. Blocking: call from a blocking thread.
    pub(crate) fn with_connection<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut connection = match pooled {
            Some(connection) => connection,
            None => self.connect()?,
        };
        let result = work(&mut connection);
        self.release(connection);
        result
    }

    /// Runs a write that may be skipped (recording when a credential was last used) with a short
    /// busy wait: behind another writer (a CLI transaction) it gives up after
    /// [`BEST_EFFORT_WAIT`] instead of holding the token request for the full busy timeout.
    fn best_effort_write<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_within(BEST_EFFORT_WAIT, work)
    }

    /// Runs a write that waits at most `wait` for another writer.
    fn write_within<T>(
        &self,
        wait: Duration,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_connection(|c| {
            c.busy_timeout(wait)?;
            let result = work(c);
            c.busy_timeout(BUSY_TIMEOUT)?;
            result
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Starts a transaction that writes. `BEGIN IMMEDIATE` takes the write lock first, waiting for
/// another writer within the busy timeout. A deferred transaction that reads and then writes
/// fails at once with "database is locked" when another process committed in between (SQLite
/// cannot move a read snapshot that is no longer the newest to a write), which two servers
/// bootstrapping one fresh database hit. So every transaction that may write starts here.
fn write_transaction(connection: &Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    rusqlite::Transaction::new_unchecked(connection, TransactionBehavior::Immediate)
}

impl Store for SqliteStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.notice_replacement();
        self.with_connection(|c| {
            c.query_row("SELECT COUNT(*) FROM schema_migrations", [], |row| row.get::<_, i64>(0))?;
            Ok(())
        })
    }

    fn create_user(&self, new: &NewUser<'_>) -> Result<User, StoreError> {
        self.with_connection(|c| users::create(c, &self.rules, new))
    }

    fn find_user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.with_connection(|c| users::find(c, name))
    }

    fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.with_connection(|c| users::list(c))
    }

    fn count_users(&self) -> Result<i64, StoreError> {
        self.with_connection(|c| users::count(c))
    }

    fn set_user_password(&self, name: &str, hash: &str) -> Result<(), StoreError> {
        self.with_connection(|c| names::update_account(c, Table::Users, name, "password_hash", &hash))
    }

    fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<(), StoreError> {
        self.with_connection(|c| names::update_account(c, Table::Users, name, "disabled", &disabled))
    }

    fn set_user_admin(&self, name: &str, is_admin: bool) -> Result<(), StoreError> {
        self.with_connection(|c| {
            names::update_account(c, Table::Users, name, "is_admin", &is_admin)?;
            if let (true, Some(user)) = (is_admin, users::find(c, name)?) {
                if directory_accounts::release_claim(c, &user)? {
                    tracing::warn!(user = %user.name, "a system admin is never the directory's: its directory claim and identity tokens are removed");
                }
            }
            Ok(())
        })
    }

    fn remove_user(&self, name: &str) -> Result<(), StoreError> {
        self.with_connection(|c| names::remove_account(c, Table::Users, name))
    }

    fn login_name_collisions(&self) -> Result<Vec<Vec<String>>, StoreError> {
        self.with_connection(|c| names::collisions(c))
    }

    fn record_directory_login(
        &self,
        login: &DirectoryLogin,
        claim_database_account: bool,
    ) -> Result<User, StoreError> {
        self.with_connection(|c| {
            directory_accounts::record_login(c, &self.rules, login, claim_database_account)
        })
    }

    fn directory_account(&self, user_id: i64) -> Result<Option<DirectoryAccount>, StoreError> {
        self.with_connection(|c| directory_accounts::account(c, user_id))
    }

    fn record_directory_check(&self, user_id: i64, check: &DirectoryCheck<'_>) -> Result<usize, StoreError> {
        self.with_connection(|c| directory_accounts::record_check(c, user_id, check))
    }

    fn revoke_user_credentials(&self, user_id: i64) -> Result<(usize, usize), StoreError> {
        self.with_connection(|c| directory_accounts::revoke_credentials(c, user_id))
    }

    fn set_group_role(&self, project: &str, group: &str, role: Role) -> Result<(), StoreError> {
        self.with_connection(|c| directory_accounts::set_group_member(c, project, group, role))
    }

    fn remove_group_role(&self, project: &str, group: &str) -> Result<(), StoreError> {
        self.with_connection(|c| directory_accounts::remove_group_member(c, project, group))
    }

    fn list_group_roles(&self, project: Option<&str>) -> Result<Vec<GroupMember>, StoreError> {
        self.with_connection(|c| directory_accounts::list_group_members(c, project))
    }

    fn create_project(&self, name: &str, public: bool) -> Result<Project, StoreError> {
        self.with_connection(|c| projects::create(c, name, public))
    }

    fn list_projects(&self) -> Result<Vec<Project>, StoreError> {
        self.with_connection(|c| projects::list(c))
    }

    fn set_project_public(&self, name: &str, public: bool) -> Result<(), StoreError> {
        self.with_connection(|c| projects::set_public(c, name, public))
    }

    fn remove_project(&self, name: &str) -> Result<(), StoreError> {
        self.with_connection(|c| projects::remove(c, name))
    }

    fn set_member(&self, project: &str, user: &str, role: Role) -> Result<(), StoreError> {
        self.with_connection(|c| projects::set_member(c, project, user, role))
    }

    fn remove_member(&self, project: &str, user: &str) -> Result<(), StoreError> {
        self.with_connection(|c| projects::remove_member(c, project, user))
    }

    fn list_members(&self, project: Option<&str>) -> Result<Vec<Member>, StoreError> {
        self.with_connection(|c| projects::list_members(c, project))
    }

    fn create_robot(&self, new: &NewRobot<'_>) -> Result<Robot, StoreError> {
        self.with_connection(|c| robots::create(c, &self.rules, new))
    }

    fn robot_login(&self, name: &str) -> Result<Option<(Robot, String)>, StoreError> {
        self.with_connection(|c| robots::login(c, name))
    }

    fn list_robots(&self, project: Option<&str>) -> Result<Vec<Robot>, StoreError> {
        self.with_connection(|c| robots::list(c, project))
    }

    fn set_robot_disabled(&self, name: &str, disabled: bool) -> Result<(), StoreError> {
        self.with_connection(|c| names::update_account(c, Table::Robots, name, "disabled", &disabled))
    }

    fn set_robot_secret(&self, name: &str, digest: &str) -> Result<(), StoreError> {
        self.with_connection(|c| names::update_account(c, Table::Robots, name, "secret_digest", &digest))
    }

    fn remove_robot(&self, name: &str) -> Result<(), StoreError> {
        self.with_connection(|c| names::remove_account(c, Table::Robots, name))
    }

    fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.with_connection(|c| signing_keys::list(c))
    }

    fn add_signing_key(&self, new: &NewSigningKey<'_>, now: i64) -> Result<i64, StoreError> {
        self.with_connection(|c| signing_keys::add(c, new, now))
    }

    fn promote_signing_key(&self, now: i64) -> Result<(), StoreError> {
        self.with_connection(|c| signing_keys::promote(c, now))
    }

    fn replace_signing_keys(&self, now: i64, next_id: i64) -> Result<(), StoreError> {
        self.with_connection(|c| signing_keys::replace(c, now, next_id))
    }

    fn note_key_lifetime(&self, lifetime: i64) -> Result<(), StoreError> {
        self.with_connection(|c| signing_keys::note_lifetime(c, lifetime))
    }

    fn cancel_next_signing_key(&self) -> Result<(), StoreError> {
        self.with_connection(|c| signing_keys::cancel_next(c))
    }

    fn remove_signing_keys(&self, ids: &[i64]) -> Result<usize, StoreError> {
        self.with_connection(|c| signing_keys::remove(c, ids))
    }

    fn record_audit(&self, entries: &[AuditEntry], max_wait: Option<Duration>) -> Result<usize, StoreError> {
        match max_wait {
            Some(wait) => self.write_within(wait, |c| audit_log::record(c, entries)),
            None => self.with_connection(|c| audit_log::record(c, entries)),
        }
    }

    fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        self.with_connection(|c| audit_log::list(c, filter))
    }

    fn prune_audit(&self, before: i64, batch: usize) -> Result<usize, StoreError> {
        self.with_connection(|c| audit_log::prune(c, before, batch))
    }

    fn count_audit(&self) -> Result<u64, StoreError> {
        self.with_connection(|c| audit_log::count(c))
    }

    fn remove_oldest_audit(&self, count: usize) -> Result<usize, StoreError> {
        self.with_connection(|c| audit_log::remove_oldest(c, count))
    }

    fn record_robot_use(&self, id: i64, now: i64) -> Result<(), StoreError> {
        self.best_effort_write(|c| robots::record_use(c, id, now))
    }

    fn record_personal_token_use(&self, id: i64, now: i64) -> Result<(), StoreError> {
        self.best_effort_write(|c| personal_tokens::record_use(c, id, now))
    }

    fn create_personal_token(&self, new: &NewPersonalToken<'_>) -> Result<PersonalToken, StoreError> {
        self.with_connection(|c| personal_tokens::create(c, new))
    }

    fn personal_token_login(
        &self,
        user: &str,
        digest: &str,
    ) -> Result<Option<PersonalTokenLogin>, StoreError> {
        self.with_connection(|c| personal_tokens::login(c, user, digest))
    }

    fn list_personal_tokens(&self, user: Option<&str>) -> Result<Vec<PersonalToken>, StoreError> {
        self.with_connection(|c| personal_tokens::list(c, user))
    }

    fn revoke_personal_token(&self, user: &str, label: &str) -> Result<(), StoreError> {
        self.with_connection(|c| personal_tokens::revoke(c, user, label))
    }

    fn create_refresh_token(&self, new: &NewRefreshToken<'_>) -> Result<i64, StoreError> {
        self.with_connection(|c| refresh_tokens::create(c, new))
    }

    fn refresh_token_login(&self, digest: &str) -> Result<Option<RefreshToken>, StoreError> {
        self.with_connection(|c| refresh_tokens::find(c, digest))
    }

    fn touch_refresh_token(&self, id: i64, time: i64) -> Result<(), StoreError> {
        self.best_effort_write(|c| refresh_tokens::touch(c, id, time))
    }

    fn list_refresh_tokens(&self, user: Option<&str>) -> Result<Vec<RefreshToken>, StoreError> {
        self.with_connection(|c| refresh_tokens::list(c, user))
    }

    fn revoke_refresh_token(&self, id: i64) -> Result<(), StoreError> {
        self.with_connection(|c| refresh_tokens::revoke(c, id))
    }

    fn revoke_user_refresh_tokens(&self, user: &str) -> Result<usize, StoreError> {
        self.with_connection(|c| refresh_tokens::revoke_user(c, user))
    }

    fn revoke_all_refresh_tokens(&self) -> Result<usize, StoreError> {
        self.with_connection(|c| refresh_tokens::revoke_all(c))
    }

    fn record_login_failure(
        &self,
        name: &str,
        address: &str,
        directory: bool,
        window: i64,
    ) -> Result<(), StoreError> {
        self.with_connection(|c| login_failures::record(c, name, address, directory, now(), window))
    }

    fn login_failures(&self, name: &str) -> Result<Option<LoginFailures>, StoreError> {
        self.with_connection(|c| login_failures::find(c, name))
    }

    fn list_login_failures(&self) -> Result<Vec<LoginFailures>, StoreError> {
        self.with_connection(|c| login_failures::list(c))
    }

    fn reset_directory_failures(&self, name: &str) -> Result<(), StoreError> {
        self.with_connection(|c| login_failures::reset_directory(c, name))
    }

    fn clear_login_failures(&self, name: &str) -> Result<bool, StoreError> {
        self.with_connection(|c| login_failures::clear(c, name, now()))
    }

    /// `PRAGMA data_version` on the watch connection: a read of the shared-memory WAL index plus
    /// a shared lock on it, under a mutex held only for that read.
    fn commit_counter(&self) -> Result<i64, StoreError> {
        self.notice_replacement();
        let generation = self.generation.load(Ordering::Acquire);
        let mut watch = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        let connection = match watch.as_mut() {
            Some(connection) => connection,
            None => watch.insert(self.connect()?),
        };
        let mut statement = connection.prepare_cached("PRAGMA data_version")?;
        Ok(generation + statement.query_row::<i64, _, _>([], |row| row.get(0))?)
    }

    fn load_access(&self) -> Result<AccessSnapshot, StoreError> {
        let (snapshot, epoch) = self.with_connection(access_load::load)?;
        *self.loaded_epoch.lock().unwrap_or_else(PoisonError::into_inner) = Some(epoch);
        Ok(snapshot)
    }

    fn access_changes(&self, since: i64) -> Result<Changes, StoreError> {
        let loaded = self.loaded_epoch.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let (changes, epoch) =
            self.with_connection(|c| access_load::read_changes(c, since, loaded.as_deref()))?;
        *self.loaded_epoch.lock().unwrap_or_else(PoisonError::into_inner) = Some(epoch);
        Ok(changes)
    }
}

/// Applies every migration newer than the database's, each in its own immediate transaction
/// so that a server and a CLI starting together do not both apply one.
fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    connection.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT    NOT NULL,
             applied_at INTEGER NOT NULL
         )",
    )?;
    let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    for &(version, name, sql) in MIGRATIONS {
        let transaction = write_transaction(connection)?;
        let newest: i64 =
            transaction
                .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |row| row.get(0))?;
        if newest > known {
            return Err(StoreError::TooNew { found: newest, known });
        }
        // Each version is checked on its own (not against the newest) so that a migration
        // merged with a lower number than one already applied still runs.
        let applied: bool = transaction.query_row(
            "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
            [version],
            |row| row.get(0),
        )?;
        if applied {
            continue;
        }
        transaction.execute_batch(sql)?;
        transaction.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![version, name, now()],
        )?;
        transaction.commit()?;
    }
    Ok(())
}

/// `Ok` when a statement changed at least one row; `NotFound` naming `kind` and `name` when the
/// row it was about does not exist.
pub(crate) fn require_changed(
    changed: usize,
    kind: &'static str,
    name: impl Into<String>,
) -> Result<(), StoreError> {
    match changed {
        0 => Err(StoreError::NotFound { kind, name: name.into() }),
        _ => Ok(()),
    }
}

/// Sets one column (and `updated_at`) of the row of `table` called `name`; `NotFound` naming
/// `kind` when there is none. For tables whose rows are addressed by a unique `name`.
pub(crate) fn update_named(
    connection: &Connection,
    (table, kind): (&str, &'static str),
    name: &str,
    column: &str,
    value: &dyn rusqlite::ToSql,
) -> Result<(), StoreError> {
    let sql = format!("UPDATE {table} SET {column} = ?1, updated_at = ?2 WHERE name = ?3");
    require_changed(connection.execute(&sql, rusqlite::params![value, now(), name])?, kind, name)
}

/// Deletes the row of `table` called `name`; `NotFound` naming `kind` when there is none.
pub(crate) fn delete_named(
    connection: &Connection,
    (table, kind): (&str, &'static str),
    name: &str,
) -> Result<(), StoreError> {
    require_changed(connection.execute(&format!("DELETE FROM {table} WHERE name = ?1"), [name])?, kind, name)
}

/// A store on a fresh database in a temp dir, with the default name rules.
#[cfg(test)]
pub(crate) fn test_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("test.db"), test_rules()).expect("open store");
    (dir, store)
}

#[cfg(test)]
pub(crate) fn test_rules() -> NameRules {
    NameRules { robot_prefix: "robot_".into() }
}

/// Accounts tests make again and again.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::store::{NewRobot, NewUser, Source};

    /// A database account with a placeholder hash (no password verifies against it).
    pub fn database_user(name: &str) -> NewUser<'_> {
        NewUser {
            name,
            password_hash: Some("$argon2id$placeholder"),
            is_admin: false,
            source: Source::Database,
        }
    }

    /// A directory account, as `user add --ldap` makes it.
    pub fn directory_user(name: &str) -> NewUser<'_> {
        NewUser { name, password_hash: None, is_admin: false, source: Source::Ldap }
    }

    /// A pull-only robot of `project` whose secret has the digest `digest`.
    pub fn project_robot<'a>(name: &'a str, project: &'a str, digest: &'a str) -> NewRobot<'a> {
        NewRobot {
            name,
            project: Some(project),
            system_projects: None,
            actions: "pull",
            description: "",
            expires_at: None,
            secret_digest: digest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_are_recorded() {
        let (dir, store) = test_store();
        drop(store);
        let store = SqliteStore::open(&dir.path().join("test.db"), test_rules()).unwrap();
        let versions: Vec<i64> = store
            .with_connection(|c| {
                let mut statement = c.prepare("SELECT version FROM schema_migrations ORDER BY version")?;
                let rows = statement.query_map([], |row| row.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .unwrap();
        assert_eq!(versions, MIGRATIONS.iter().map(|m| m.0).collect::<Vec<_>>());
    }

    #[test]
    fn processes_racing_for_one_name_get_created_or_already_exists() {
        // Two stores on one file stand for two processes (servers bootstrapping one fresh
        // database, or a CLI next to a server): the loser of each race must see AlreadyExists,
        // never "database is locked" from a read snapshot that went stale before its write.
        let (dir, first) = test_store();
        let second = SqliteStore::open(&dir.path().join("test.db"), test_rules()).unwrap();
        let names: Vec<String> = (0..60).map(|i| format!("racer{i}")).collect();
        std::thread::scope(|scope| {
            for store in [&first, &second] {
                let names = &names;
                scope.spawn(move || {
                    for name in names {
                        match store.create_user(&fixtures::database_user(name)) {
                            Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
                            Err(error) => panic!("{name}: {error}"),
                        }
                    }
                });
            }
        });
        assert_eq!(first.count_users().unwrap(), 60);
    }

    #[test]
    fn every_connection_commits_durably() {
        let (_dir, store) = test_store();
        let synchronous: i64 =
            store.with_connection(|c| Ok(c.query_row("PRAGMA synchronous", [], |row| row.get(0))?)).unwrap();
        assert_eq!(synchronous, 2, "FULL: a revocation survives a power loss");
    }

    #[test]
    fn a_missing_database_is_refused_unless_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("portcullis.db");
        let refused = SqliteStore::open_with(&path, test_rules(), OpenMode::Existing);
        assert!(matches!(refused, Err(StoreError::Missing { .. })));
        assert!(!path.parent().unwrap().exists(), "nothing created");
        SqliteStore::open_with(&path, test_rules(), OpenMode::Create).unwrap();
        SqliteStore::open_with(&path, test_rules(), OpenMode::Existing).unwrap();
    }

    #[test]
    fn a_restored_database_is_reloaded_whole() {
        use crate::access::Changes;
        let (dir, store) = test_store();
        store.create_project("team", false).unwrap();
        let snapshot = store.load_access().unwrap();
        let backup = dir.path().join("backup.db");
        store.with_connection(|c| Ok(c.execute("VACUUM INTO ?1", [backup.display().to_string()])?)).unwrap();
        for i in 0..20 {
            store.create_project(&format!("p{i}"), false).unwrap();
        }
        let mut snapshot = snapshot;
        let changes = store.access_changes(snapshot.last_change()).unwrap();
        snapshot.apply(changes).unwrap();
        // The backup put back in place of the file, as `sqlite3 .restore` would.
        store
            .with_connection(|c| {
                c.execute("ATTACH ?1 AS old", [backup.display().to_string()])?;
                c.execute_batch(
                    "DELETE FROM main.projects; INSERT INTO main.projects SELECT * FROM old.projects;
                     DELETE FROM main.access_changes; INSERT INTO main.access_changes SELECT * FROM old.access_changes;
                     UPDATE main.sqlite_sequence SET seq = (SELECT MAX(seq) FROM main.access_changes)
                      WHERE name = 'access_changes';
                     DETACH old;",
                )?;
                Ok(())
            })
            .unwrap();
        store.remove_project("team").unwrap();
        let changes = store.access_changes(snapshot.last_change()).unwrap();
        assert!(matches!(changes, Changes::Everything(_)), "the log ends below what was seen");
        snapshot.apply(changes).unwrap();
        assert!(snapshot.project_access("team", None).is_none());
    }

    #[test]
    fn newer_database_is_refused() {
        let (dir, store) = test_store();
        store
            .with_connection(|c| {
                c.execute("INSERT INTO schema_migrations VALUES (9999, 'future', 0)", [])?;
                Ok(())
            })
            .unwrap();
        drop(store);
        assert!(matches!(
            SqliteStore::open(&dir.path().join("test.db"), test_rules()),
            Err(StoreError::TooNew { .. })
        ));
    }
}
