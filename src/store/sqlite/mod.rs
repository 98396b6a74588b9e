//! The SQLite backend, the default: opening the database file, applying the `schema/sqlite`
//! migrations, the connection pool, noticing a replaced file, and [`Db`] for a SQLite
//! connection. The queries themselves are shared with PostgreSQL in [`super::sql`].
//!
//! The server and the CLI open the same file at the same time, so the database runs in WAL mode
//! (readers never block the writer) with a busy timeout (writers wait for each other instead of
//! failing). A running server learns of another process's commit from `PRAGMA data_version`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};

use super::names::NameRules;
use super::sql::{query_value, Backend, Db, Dialect, Row, SqlStore, TransactionKind, Value};
use super::StoreError;

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

/// The numbered migrations under `schema/sqlite`, in order. Append; never edit a released one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "core", include_str!("../../../schema/sqlite/0001_core.sql")),
    (2, "credentials", include_str!("../../../schema/sqlite/0002_credentials.sql")),
    (3, "ldap", include_str!("../../../schema/sqlite/0003_ldap.sql")),
    (4, "access_changes", include_str!("../../../schema/sqlite/0004_access_changes.sql")),
    (5, "folded_names", include_str!("../../../schema/sqlite/0005_folded_names.sql")),
    (6, "epoch_and_failures", include_str!("../../../schema/sqlite/0006_epoch_and_failures.sql")),
    (7, "directory_checks", include_str!("../../../schema/sqlite/0007_directory_checks.sql")),
    (8, "audit_log", include_str!("../../../schema/sqlite/0008_audit_log.sql")),
    (9, "signing_keys", include_str!("../../../schema/sqlite/0009_signing_keys.sql")),
    (10, "imported_passwords", include_str!("../../../schema/sqlite/0010_imported_passwords.sql")),
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

/// The store on a SQLite file.
pub type SqliteStore = SqlStore<SqliteBackend>;

/// The database file and a pool of connections to it.
pub struct SqliteBackend {
    path: PathBuf,
    /// Idle connections; opening one per request would cost more than the query. Bounded by the
    /// threads that use them: the server's blocking pool (`cli::serve::BLOCKING_THREADS`).
    idle: Mutex<Vec<Connection>>,
    /// A connection that only ever runs `PRAGMA data_version`, whose answer changes exactly when
    /// another connection commits. It never writes, so its own commits never hide one. Opened at
    /// the first [`Store::commit_counter`] (the CLI never asks).
    watch: Mutex<Option<Connection>>,
    /// The file as it was opened, and when that was last compared with what `path` names now:
    /// a database replaced by another file (`mv backup.db portcullis.db`) is noticed within a
    /// second, and every connection is reopened on the new file.
    file: Mutex<FileCheck>,
    /// Added to `data_version` by [`Store::commit_counter`]: bumped when the file was replaced,
    /// so the snapshot catches up even though the new file's counter means nothing to it.
    generation: AtomicI64,
    /// Set when the file was replaced, until the next catch-up takes it: the snapshot then
    /// reloads everything, even from a copy of the same database.
    replaced: AtomicBool,
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

impl SqlStore<SqliteBackend> {
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
        let store = SqliteBackend {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            watch: Mutex::new(None),
            file: Mutex::new(FileCheck { identity: None, checked: Instant::now() }),
            generation: AtomicI64::new(0),
            replaced: AtomicBool::new(false),
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
        Ok(SqlStore::new(store, rules))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.backend.path
    }

    /// Runs `work` on a SQLite connection of the pool: for tests and tools that need SQL of
    /// their own.
    pub fn with_connection<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.backend.with_connection(work)
    }
}

impl SqliteBackend {
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
        self.replaced.store(true, Ordering::Release);
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
            // Every query of `store::sql` is prepared once per connection.
            connection.set_prepared_statement_cache_capacity(128);
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
    fn with_connection<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut connection = match pooled {
            Some(connection) => connection,
            None => self.connect()?,
        };
        let result = work(&mut connection);
        // A connection left inside a transaction (a failed rollback) is not reused.
        if connection.is_autocommit() {
            self.release(connection);
        }
        result
    }
}

impl Backend for SqliteBackend {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn with_db<T>(&self, work: impl FnOnce(&mut dyn Db) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.with_connection(|connection| work(connection))
    }

    /// The busy timeout shortened to `wait` for this work: behind another writer (a CLI
    /// transaction) a write that may be skipped gives up instead of holding a token request for
    /// the full [`BUSY_TIMEOUT`].
    fn with_db_waiting<T>(
        &self,
        wait: Duration,
        work: impl FnOnce(&mut dyn Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_connection(|connection| {
            connection.busy_timeout(wait)?;
            let result = work(connection);
            connection.busy_timeout(BUSY_TIMEOUT)?;
            result
        })
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.notice_replacement();
        self.with_db(|db| query_value::<i64>(db, "SELECT COUNT(*) FROM schema_migrations", &[]).map(drop))
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

    fn take_replaced(&self) -> bool {
        self.replaced.swap(false, Ordering::AcqRel)
    }
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Int(value) => ValueRef::Integer(value),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
            // SQLite has no booleans: 0 and 1, as rusqlite writes them.
            Value::Bool(value) => ValueRef::Integer(i64::from(value)),
            Value::Null => ValueRef::Null,
        }))
    }
}

/// A SQLite connection is a [`Db`]; statements are prepared once per connection and cached.
impl Db for Connection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<usize, StoreError> {
        Ok(self.prepare_cached(sql)?.execute(rusqlite::params_from_iter(params))?)
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        each: &mut dyn FnMut(&Row<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut statement = self.prepare_cached(sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(params))?;
        while let Some(row) = rows.next()? {
            each(&Row::Sqlite(row))?;
        }
        Ok(())
    }

    /// A writing transaction starts `IMMEDIATE`: it takes the write lock first, waiting for
    /// another writer within the busy timeout. A deferred one that reads and then writes fails
    /// at once with "database is locked" when another process committed in between (SQLite
    /// cannot move a read snapshot that is no longer the newest to a write), which two servers
    /// bootstrapping one fresh database hit.
    fn begin(&mut self, kind: TransactionKind) -> Result<bool, StoreError> {
        if !self.is_autocommit() {
            return Ok(false);
        }
        self.execute_batch(match kind {
            TransactionKind::Write | TransactionKind::Batch => "BEGIN IMMEDIATE",
            TransactionKind::Read => "BEGIN",
        })?;
        Ok(true)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.execute_batch(sql)?)
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        Ok(self.execute_batch("COMMIT")?)
    }

    fn rollback(&mut self) {
        let _ = self.execute_batch("ROLLBACK");
    }
}

/// Applies every migration the database lacks ([`super::sql::migrate`]: each in its own
/// immediate transaction, so that a server and a CLI starting together do not both apply one).
fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    connection.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT    NOT NULL,
             applied_at INTEGER NOT NULL
         )",
    )?;
    super::sql::migrate(connection, MIGRATIONS)
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
    use crate::store::Store;

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
    fn the_newest_migration_is_the_schema_version_of_both_dialects() {
        assert_eq!(MIGRATIONS.last().map(|m| m.0), Some(crate::store::sql::SCHEMA_VERSION));
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
        store
            .with_connection(|c| {
                Ok(Connection::execute(c, "VACUUM INTO ?1", [backup.display().to_string()])?)
            })
            .unwrap();
        for i in 0..20 {
            store.create_project(&format!("p{i}"), false).unwrap();
        }
        let mut snapshot = snapshot;
        let changes = store.access_changes(snapshot.last_change()).unwrap();
        snapshot.apply(changes).unwrap();
        // The backup put back in place of the file, as `sqlite3 .restore` would.
        store
            .with_connection(|c| {
                Connection::execute(c, "ATTACH ?1 AS old", [backup.display().to_string()])?;
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
                Connection::execute(c, "INSERT INTO schema_migrations VALUES (9999, 'future', 0)", [])?;
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
