//! `portcullis db copy`: every row of one database into another (a SQLite installation moving to
//! PostgreSQL), in one transaction on the target, verified by counting before it commits.
//!
//! The target's columns and their types decide what is read from the source (SQLite keeps
//! booleans as integers; PostgreSQL wants them as booleans), so a column a later migration adds
//! is copied without this file knowing it. The target's own triggers stay off while the rows go
//! in (the copy is no change anyone made: no change log entries, no refresh tokens ended), then
//! one change-log entry naming nothing makes every running replica reload everything. The
//! target keeps its own epoch: it is another database.

use super::{params, query_value, query_vec, transaction, Db, Dialect, TransactionKind, Value};
use crate::store::StoreError;

/// The tables copied, parents before children (foreign keys). `access_changes` (each database
/// has its own log), `store_epoch` and `schema_migrations` are not copied.
const TABLES: &[&str] = &[
    "users",
    "projects",
    "project_members",
    "refresh_tokens",
    "robots",
    "robot_projects",
    "access_tokens",
    "access_token_projects",
    "project_group_members",
    "user_directory_groups",
    "directory_accounts",
    "login_failures",
    "audit_log",
    "signing_keys",
];

/// Rows per INSERT: few statements for a million memberships, within PostgreSQL's 65,535
/// parameters.
const ROWS_PER_INSERT: usize = 500;

/// What a column holds, as the target declares it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Integer,
    Boolean,
    Text,
}

/// One column value read from the source.
enum Owned {
    Integer(Option<i64>),
    Boolean(Option<bool>),
    Text(Option<String>),
}

impl Owned {
    fn value(&self) -> Value<'_> {
        match self {
            Owned::Integer(value) => (*value).into(),
            Owned::Boolean(value) => (*value).into(),
            Owned::Text(value) => value.into(),
        }
    }
}

/// How many rows each table got.
pub struct Copied {
    pub tables: Vec<(&'static str, i64)>,
}

/// Copies every row of `source` into `target` (a PostgreSQL database with the same schema
/// version). A target that holds rows is refused unless `replace`, which empties it first.
pub fn copy(source: &mut dyn Db, target: &mut dyn Db, replace: bool) -> Result<Copied, StoreError> {
    if target.dialect() != Dialect::Postgres {
        return Err(StoreError::Invalid("db copy writes to a PostgreSQL database only".into()));
    }
    transaction(source, TransactionKind::Read, |source| {
        super::write(target, |target| {
            let holding = non_empty_tables(target)?;
            if !holding.is_empty() && !replace {
                return Err(StoreError::Refused(format!(
                    "the target database already holds data (in {}); give --force to replace it",
                    holding.join(", ")
                )));
            }
            for table in TABLES.iter().rev() {
                target.execute(&format!("DELETE FROM {table}"), &[])?;
            }
            let mut copied = Vec::new();
            for &table in TABLES {
                target.execute(&format!("ALTER TABLE {table} DISABLE TRIGGER USER"), &[])?;
                let rows = copy_table(source, target, table)?;
                target.execute(&format!("ALTER TABLE {table} ENABLE TRIGGER USER"), &[])?;
                let (in_source, in_target) = (count(source, table)?, count(target, table)?);
                if in_source != in_target || rows != in_target {
                    return Err(StoreError::Unavailable(format!(
                        "{table}: {in_source} rows in the source, {in_target} in the target after the copy; nothing was changed"
                    )));
                }
                copied.push((table, in_target));
            }
            // One entry naming nothing: running replicas reload everything.
            target.execute("SELECT portcullis_log_change(NULL, NULL, NULL, NULL, NULL)", &[])?;
            Ok(Copied { tables: copied })
        })
    })
}

fn count(db: &mut dyn Db, table: &str) -> Result<i64, StoreError> {
    query_value(db, &format!("SELECT COUNT(*) FROM {table}"), &[])
}

fn non_empty_tables(db: &mut dyn Db) -> Result<Vec<&'static str>, StoreError> {
    let mut holding = Vec::new();
    for &table in TABLES {
        if query_value::<bool>(db, &format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])? {
            holding.push(table);
        }
    }
    Ok(holding)
}

/// The target's columns of `table` and their kinds, in order.
fn columns(target: &mut dyn Db, table: &str) -> Result<Vec<(String, Kind)>, StoreError> {
    let columns = query_vec(
        target,
        "SELECT column_name, data_type FROM information_schema.columns
          WHERE table_schema = current_schema() AND table_name = ?1 ORDER BY ordinal_position",
        params![table],
        |row| {
            let (name, kind): (String, String) = (row.get(0)?, row.get(1)?);
            let kind = match kind.as_str() {
                "bigint" | "integer" | "smallint" => Kind::Integer,
                "boolean" => Kind::Boolean,
                "text" | "character varying" => Kind::Text,
                other => {
                    return Err(StoreError::Invalid(format!("{table}.{name}: a column of type {other}")))
                }
            };
            Ok((name, kind))
        },
    )?;
    if columns.is_empty() {
        return Err(StoreError::Invalid(format!("the target database has no table {table}")));
    }
    Ok(columns)
}

/// Copies the rows of `table`; returns how many.
fn copy_table(source: &mut dyn Db, target: &mut dyn Db, table: &str) -> Result<i64, StoreError> {
    let columns = columns(target, table)?;
    let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
    let select = format!("SELECT {} FROM {table}", names.join(", "));
    let mut batch: Vec<Owned> = Vec::with_capacity(ROWS_PER_INSERT * columns.len());
    let mut copied = 0;
    source.query(&select, &[], &mut |row| {
        for (index, (_, kind)) in columns.iter().enumerate() {
            batch.push(match kind {
                Kind::Integer => Owned::Integer(row.get(index)?),
                Kind::Boolean => Owned::Boolean(row.get(index)?),
                Kind::Text => Owned::Text(row.get(index)?),
            });
        }
        if batch.len() == ROWS_PER_INSERT * columns.len() {
            insert(target, table, &names, &batch)?;
            copied += ROWS_PER_INSERT as i64;
            batch.clear();
        }
        Ok(())
    })?;
    if !batch.is_empty() {
        insert(target, table, &names, &batch)?;
        copied += (batch.len() / columns.len()) as i64;
    }
    if names.contains(&"id") {
        continue_identity(target, table)?;
    }
    Ok(copied)
}

/// One multi-row INSERT of `values` (whole rows of `names`).
fn insert(target: &mut dyn Db, table: &str, names: &[&str], values: &[Owned]) -> Result<(), StoreError> {
    let rows = super::placeholders(values.len() / names.len(), names.len());
    let sql = format!("INSERT INTO {table} ({}) VALUES {rows}", names.join(", "));
    let values: Vec<Value<'_>> = values.iter().map(Owned::value).collect();
    target.execute(&sql, &values)?;
    Ok(())
}

/// Moves the identity of `table`'s `id` past the copied ids, so that new rows get new ones.
fn continue_identity(target: &mut dyn Db, table: &str) -> Result<(), StoreError> {
    let sequence: Option<String> =
        query_value(target, "SELECT pg_get_serial_sequence(?1, 'id')", params![table])?;
    if let Some(sequence) = sequence {
        target.execute(
            &format!("SELECT setval(CAST(?1 AS TEXT)::regclass, (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"),
            params![&sequence],
        )?;
    }
    Ok(())
}
