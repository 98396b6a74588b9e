//! The login-name space in SQL (see [`crate::store::names`]): whether a folded name is taken by
//! any account, how a typed name finds its account, and the collisions old databases may hold.

use rusqlite::{Connection, OptionalExtension};

use super::{delete_named, update_named};
use crate::store::names::{AccountKind, NameRules};
use crate::store::StoreError;

/// Refuses a new account of `kind` called `name` unless the rules allow the name and no user or
/// robot holds it, compared with ASCII case folding. Every account insert calls this first, in
/// the inserting transaction.
pub fn claim_login_name(
    connection: &Connection,
    rules: &NameRules,
    name: &str,
    kind: AccountKind,
) -> Result<(), StoreError> {
    rules.check_new_account(name, kind)?;
    let taken: Option<(String, &'static str)> = connection
        .prepare_cached(
            "SELECT name, 'user' FROM users WHERE name = ?1 COLLATE NOCASE
             UNION ALL SELECT name, 'robot' FROM robots WHERE name = ?1 COLLATE NOCASE LIMIT 1",
        )?
        .query_row([name], |row| {
            let kind = if row.get::<_, String>(1)? == "user" { "user" } else { "robot" };
            Ok((row.get(0)?, kind))
        })
        .optional()?;
    match taken {
        None => Ok(()),
        Some((existing, kind)) if existing == name => Err(StoreError::AlreadyExists { kind, name: existing }),
        Some((existing, kind)) => Err(StoreError::AlreadyExists {
            kind,
            name: format!("{existing} (names are compared ignoring case, so {name:?} is taken)"),
        }),
    }
}

/// The canonical spelling of the row of `table` that `name` logs in as: the row spelled exactly
/// so, else the one row whose name equals it up to ASCII case. `None` when there is none, or when
/// several differ from `name` only in case (an old database; the exact spelling still works).
pub fn resolve(connection: &Connection, table: Table, name: &str) -> Result<Option<String>, StoreError> {
    let exact = format!("SELECT name FROM {} WHERE name = ?1", table.name());
    if let Some(found) = connection.prepare_cached(&exact)?.query_row([name], |row| row.get(0)).optional()? {
        return Ok(Some(found));
    }
    let folded = format!("SELECT name FROM {} WHERE name = ?1 COLLATE NOCASE LIMIT 2", table.name());
    let mut statement = connection.prepare_cached(&folded)?;
    let found: Vec<String> = statement.query_map([name], |row| row.get(0))?.collect::<Result<_, _>>()?;
    Ok(match <[String; 1]>::try_from(found) {
        Ok([only]) => Some(only),
        Err(_) => None,
    })
}

/// The tables whose rows are accounts.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Users,
    Robots,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::Robots => "robots",
        }
    }

    /// What its rows are called in messages.
    fn kind(self) -> &'static str {
        match self {
            Table::Users => "user",
            Table::Robots => "robot",
        }
    }
}

/// Sets one column (and `updated_at`) of the account of `table` that `name` logs in as;
/// NotFound when there is none.
pub fn update_account(
    connection: &Connection,
    table: Table,
    name: &str,
    column: &str,
    value: &dyn rusqlite::ToSql,
) -> Result<(), StoreError> {
    let name = resolve(connection, table, name)?.unwrap_or_else(|| name.to_string());
    update_named(connection, (table.name(), table.kind()), &name, column, value)
}

/// Removes the account of `table` that `name` logs in as (and, by cascade, what hangs on it).
pub fn remove_account(connection: &Connection, table: Table, name: &str) -> Result<(), StoreError> {
    let name = resolve(connection, table, name)?.unwrap_or_else(|| name.to_string());
    delete_named(connection, (table.name(), table.kind()), &name)
}

/// Groups of account names that are equal up to ASCII case, each sorted, for reports.
pub fn collisions(connection: &Connection) -> Result<Vec<Vec<String>>, StoreError> {
    let mut statement = connection.prepare(
        "WITH names AS (SELECT name FROM users UNION ALL SELECT name FROM robots)
         SELECT group_concat(name, char(10)) FROM
           (SELECT name FROM names ORDER BY name)
         GROUP BY lower(name) HAVING COUNT(*) > 1 ORDER BY lower(name)",
    )?;
    let groups = statement
        .query_map([], |row| row.get::<_, String>(0))?
        .map(|group| group.map(|text| text.split('\n').map(str::to_string).collect()))
        .collect::<Result<Vec<Vec<String>>, _>>()?;
    Ok(groups)
}
