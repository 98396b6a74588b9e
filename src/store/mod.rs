//! The SQLite store: opening the database, applying `schema/` migrations, and the error type.
//!
//! The server and the CLI open the same file at the same time, so the database runs in WAL mode
//! (readers never block the writer) with a busy timeout (writers wait for each other instead of
//! failing). Queries live in one file per table group: [`users`], [`projects`], the directory's
//! group grants and memberships [`directory`], and the credentials that are not passwords:
//! [`refresh_tokens`], [`robots`], [`access_tokens`]. The server keeps what token decisions read
//! in memory: [`snapshot`], kept current by [`live`] from the log [`changes`] reads.

pub mod access_tokens;
pub mod changes;
pub mod directory;
pub mod live;
pub mod projects;
pub mod refresh_tokens;
pub mod robots;
pub mod snapshot;
pub mod users;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

pub use projects::{Member, Project};
pub use users::User;

/// The numbered migrations under `schema/`, in order. Append; never edit a released one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "core", include_str!("../../schema/0001_core.sql")),
    (2, "credentials", include_str!("../../schema/0002_credentials.sql")),
    (3, "ldap", include_str!("../../schema/0003_ldap.sql")),
    (4, "access_changes", include_str!("../../schema/0004_access_changes.sql")),
];

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name:?} does not exist")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("{0}")]
    Invalid(String),
    #[error("database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("cannot create the database directory {path}: {source}")]
    CreateDirectory { path: PathBuf, source: std::io::Error },
    #[error(
        "database schema version {found} is newer than this portcullis knows ({known}); upgrade portcullis"
    )]
    TooNew { found: i64, known: i64 },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// A handle on the database that hands out pooled connections.
pub struct Store {
    path: PathBuf,
    /// Idle connections; opening one per request would cost more than the query.
    idle: Mutex<Vec<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|source| StoreError::CreateDirectory { path: parent.to_path_buf(), source })?;
        }
        let store = Store { path: path.to_path_buf(), idle: Mutex::new(Vec::new()) };
        let mut connection = store.connect()?;
        migrate(&mut connection)?;
        store.release(connection);
        Ok(store)
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
            // Durable at each commit in WAL mode without an fsync per transaction of the log.
            connection.pragma_update(None, "synchronous", "NORMAL")?;
            // Token requests read from the in-memory snapshot; the database answers indexed
            // lookups and one-pass loads, which a page cache barely helps. SQLite's default
            // (2 MB per connection, one connection per blocking thread) cost 16 MB resident.
            connection.pragma_update(None, "cache_size", -256)?;
            Ok(connection)
        };
        open(&self.path).map_err(|source| StoreError::Open { path: self.path.clone(), source })
    }

    /// A connection of its own, outside the pool, for a caller that keeps it (the change watch).
    pub fn open_connection(&self) -> Result<Connection, StoreError> {
        self.connect()
    }

    fn release(&self, connection: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(connection);
        }
    }

    /// Runs `work` with a connection from the pool. Blocking: call from a blocking thread.
    pub fn with_connection<T>(
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

    pub fn path(&self) -> &Path {
        &self.path
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
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
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

/// Seconds since the epoch, the unit of every timestamp column.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
pub(crate) fn test_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("test.db")).expect("open store");
    (dir, store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_are_recorded() {
        let (dir, store) = test_store();
        drop(store);
        let store = Store::open(&dir.path().join("test.db")).unwrap();
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
    fn newer_database_is_refused() {
        let (dir, store) = test_store();
        store
            .with_connection(|c| {
                c.execute("INSERT INTO schema_migrations VALUES (9999, 'future', 0)", [])?;
                Ok(())
            })
            .unwrap();
        drop(store);
        assert!(matches!(Store::open(&dir.path().join("test.db")), Err(StoreError::TooNew { .. })));
    }
}
