//! The store's queries, written once for both databases, and the one [`Store`] implementation
//! over them: [`SqlStore`], generic over the [`Backend`] that owns the connections (SQLite in
//! [`super::sqlite`], PostgreSQL in [`super::postgres`]).
//!
//! Every table group has one file of queries taking a [`Db`], a connection of either backend:
//! [`users`] (with [`names`], the login-name space users and robots share), [`projects`],
//! [`directory_accounts`] (directory users' groups and roles granted to groups), [`robots`],
//! [`personal_tokens`], [`refresh_tokens`], [`login_failures`], [`audit_log`], [`signing_keys`],
//! [`import`] (`portcullis import`'s one transaction), and [`access_load`], every read that
//! feeds the in-memory snapshot. The dependency order is
//! `names <- users <- projects <- {robots, personal_tokens, refresh_tokens, directory_accounts}`.
//!
//! The SQL is the common part of SQLite's and PostgreSQL's dialects, with `?N` placeholders (the
//! PostgreSQL backend rewrites them to `$N`). Where the two differ (ASCII case folding, string
//! aggregation) a query asks [`Db::dialect`]. Integers are `BIGINT` on PostgreSQL so that every
//! column reads as `i64` on both. Writing transactions go through [`write`]: SQLite's starts
//! `IMMEDIATE`, PostgreSQL's takes the writers' advisory lock first, so on both backends writers
//! follow each other the way SQLite's single writer always did (and PostgreSQL's change-log
//! entries are numbered in commit order: see `schema/postgres`).

pub(super) mod access_load;
pub(super) mod audit_log;
pub(super) mod directory_accounts;
pub(super) mod import;
pub(super) mod login_failures;
pub(super) mod names;
pub(super) mod personal_tokens;
pub(super) mod projects;
pub(super) mod refresh_tokens;
pub(super) mod robots;
pub(super) mod signing_keys;
pub(super) mod users;

pub mod copy;
mod store;
#[cfg(test)]
pub(crate) mod testing;

pub use store::{Backend, SqlStore};

use super::{now, StoreError};

/// The schema version this build knows: the newest migration of both dialects (they are
/// numbered alike; see `schema/postgres/0009_baseline.sql`).
pub const SCHEMA_VERSION: i64 = 10;

/// Which SQL dialect a [`Db`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `expression` with ASCII letters folded to lower case and nothing else changed, the
    /// comparison form of login names ([`crate::store::names::fold`]): SQLite's `lower()` folds
    /// only ASCII; PostgreSQL's would fold every letter, so it gets `translate()`.
    pub fn fold(self, expression: &str) -> String {
        match self {
            Dialect::Sqlite => format!("lower({expression})"),
            Dialect::Postgres => {
                format!("translate({expression}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')")
            }
        }
    }

    /// `left = right` compared up to ASCII case, in the form the name indexes serve (schema
    /// 0005: `COLLATE NOCASE` on SQLite, the `translate()` expression on PostgreSQL).
    pub fn folded_eq(self, left: &str, right: &str) -> String {
        match self {
            Dialect::Sqlite => format!("{left} = {right} COLLATE NOCASE"),
            Dialect::Postgres => format!("{} = {}", self.fold(left), self.fold(right)),
        }
    }

    /// Whether text `haystack` contains `needle`, both SQL expressions.
    pub fn contains(self, haystack: &str, needle: &str) -> String {
        match self {
            Dialect::Sqlite => format!("instr({haystack}, {needle}) > 0"),
            Dialect::Postgres => format!("strpos({haystack}, {needle}) > 0"),
        }
    }
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Int(i64),
    Text(&'a str),
    Bool(bool),
    Null,
}

impl From<i64> for Value<'_> {
    fn from(value: i64) -> Self {
        Value::Int(value)
    }
}

impl From<bool> for Value<'_> {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(value: &'a str) -> Self {
        Value::Text(value)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(value: &'a String) -> Self {
        Value::Text(value)
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

impl<'a> From<&'a Option<String>> for Value<'a> {
    fn from(value: &'a Option<String>) -> Self {
        value.as_deref().into()
    }
}

/// The values of a query's placeholders, `?1` first: `params![id, name]`.
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        &[$($crate::store::sql::Value::from($value)),*][..]
    };
}
pub(crate) use params;

/// What a column can be read as on both backends.
pub trait Column: rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a> {}
impl<T: rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a>> Column for T {}

/// One result row of either backend.
pub enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r tokio_postgres::Row),
}

impl Row<'_> {
    /// Column `index` (from 0) as a `T`.
    pub fn get<T: Column>(&self, index: usize) -> Result<T, StoreError> {
        match self {
            Row::Sqlite(row) => Ok(row.get(index)?),
            Row::Postgres(row) => row.try_get(index).map_err(|error| StoreError::Database(Box::new(error))),
        }
    }

    /// Column `index` as text handed to `read` without a copy (`None` for NULL): for the
    /// snapshot's loads, which read a million roles.
    pub fn with_str<R>(&self, index: usize, read: impl FnOnce(Option<&str>) -> R) -> Result<R, StoreError> {
        match self {
            Row::Sqlite(row) => {
                Ok(read(row.get_ref(index)?.as_str_or_null().map_err(rusqlite::Error::from)?))
            }
            Row::Postgres(row) => {
                let text: Option<&str> =
                    row.try_get(index).map_err(|error| StoreError::Database(Box::new(error)))?;
                Ok(read(text))
            }
        }
    }
}

/// Whether a transaction may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionKind {
    /// Changes what the change log follows, or reads and then writes: waits for the other
    /// writers first (see the module header).
    Write,
    /// Several writes committed together to tables the change log does not follow (audit
    /// entries, refresh tokens): on PostgreSQL they need not wait for the other writers.
    Batch,
    /// Reads one consistent state of the database.
    Read,
}

/// One connection of a backend: the few calls every query is made of.
pub trait Db {
    fn dialect(&self) -> Dialect;
    /// Runs a statement; returns how many rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<usize, StoreError>;
    /// Runs a query, handing each row to `each` as it arrives (never all of them at once).
    fn query(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        each: &mut dyn FnMut(&Row<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Runs several statements without parameters (a migration script).
    fn batch(&mut self, sql: &str) -> Result<(), StoreError>;
    /// Starts a transaction, unless one is open: `false` then, and the work joins it.
    fn begin(&mut self, kind: TransactionKind) -> Result<bool, StoreError>;
    fn commit(&mut self) -> Result<(), StoreError>;
    /// Best effort: a connection whose rollback failed is not reused by its backend.
    fn rollback(&mut self);
}

/// Runs `work` in a transaction of `kind`, committed when it returns `Ok`, rolled back
/// otherwise; inside an open transaction it simply joins that one.
pub fn transaction<T>(
    db: &mut dyn Db,
    kind: TransactionKind,
    work: impl FnOnce(&mut dyn Db) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    if !db.begin(kind)? {
        return work(db);
    }
    match work(db) {
        Ok(value) => {
            if let Err(error) = db.commit() {
                db.rollback();
                return Err(error);
            }
            Ok(value)
        }
        Err(error) => {
            db.rollback();
            Err(error)
        }
    }
}

/// [`transaction`] of the [`TransactionKind::Write`] kind: every change to a table the change
/// log follows, and every read-then-write, runs in one.
pub fn write<T>(
    db: &mut dyn Db,
    work: impl FnOnce(&mut dyn Db) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    transaction(db, TransactionKind::Write, work)
}

/// Every row of `sql`, each made by `map`.
pub fn query_vec<T>(
    db: &mut dyn Db,
    sql: &str,
    params: &[Value<'_>],
    mut map: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut rows = Vec::new();
    db.query(sql, params, &mut |row| {
        rows.push(map(row)?);
        Ok(())
    })?;
    Ok(rows)
}

/// The first row of `sql`, if any, made by `map`.
pub fn query_opt<T>(
    db: &mut dyn Db,
    sql: &str,
    params: &[Value<'_>],
    map: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut map = Some(map);
    let mut found = None;
    db.query(sql, params, &mut |row| {
        if let Some(map) = map.take() {
            found = Some(map(row)?);
        }
        Ok(())
    })?;
    Ok(found)
}

/// The first column of the one row `sql` answers (an aggregate, an `EXISTS`).
pub fn query_value<T: Column>(db: &mut dyn Db, sql: &str, params: &[Value<'_>]) -> Result<T, StoreError> {
    query_opt(db, sql, params, |row| row.get(0))?
        .ok_or_else(|| StoreError::Database(format!("no row from: {sql}").into()))
}

/// The placeholders of a multi-row `VALUES` list: `(?1, ?2), (?3, ?4)` for 2 rows of 2 columns.
pub fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let values: Vec<String> =
                (1..=columns).map(|column| format!("?{}", row * columns + column)).collect();
            format!("({})", values.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Applies every migration of `migrations` (version, name, script; numbered alike in both
/// dialects) that the database lacks, each in its own transaction with its record in
/// `schema_migrations`, which must exist. A database newer than the last of them is refused
/// (rather than misread). Each version is checked on its own, not against the newest, so that a
/// migration merged with a lower number than one already applied still runs.
pub fn migrate(db: &mut dyn Db, migrations: &[(i64, &str, &str)]) -> Result<(), StoreError> {
    let known = migrations.last().map(|m| m.0).unwrap_or(0);
    for &(version, name, sql) in migrations {
        // Each check inside the migration's transaction: two processes starting together apply
        // each migration once.
        transaction(db, TransactionKind::Batch, |db| {
            let newest: i64 =
                query_value(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])?;
            if newest > known {
                return Err(StoreError::TooNew { found: newest, known });
            }
            let applied: bool = query_value(
                db,
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
                params![version],
            )?;
            if !applied {
                db.batch(sql)?;
                db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                    params![version, name, now()],
                )?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// `Ok` when a statement changed at least one row; `NotFound` naming `kind` and `name` when the
/// row it was about does not exist.
pub fn require_changed(
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
pub fn update_named(
    db: &mut dyn Db,
    (table, kind): (&str, &'static str),
    name: &str,
    column: &str,
    value: Value<'_>,
) -> Result<(), StoreError> {
    let sql = format!("UPDATE {table} SET {column} = ?1, updated_at = ?2 WHERE name = ?3");
    let changed = write(db, |db| db.execute(&sql, &[value, Value::Int(now()), Value::Text(name)]))?;
    require_changed(changed, kind, name)
}

/// Deletes the row of `table` called `name`; `NotFound` naming `kind` when there is none.
pub fn delete_named(
    db: &mut dyn Db,
    (table, kind): (&str, &'static str),
    name: &str,
) -> Result<(), StoreError> {
    let sql = format!("DELETE FROM {table} WHERE name = ?1");
    let changed = write(db, |db| db.execute(&sql, params![name]))?;
    require_changed(changed, kind, name)
}
