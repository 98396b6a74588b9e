//! The login-name space in SQL (see [`crate::store::names`]): whether a folded name is taken by
//! any account, how a typed name finds its account, and the collisions old databases may hold.

use super::{delete_named, params, query_opt, query_vec, update_named, write, Db, Value};
use crate::store::names::{fold, AccountKind, NameRules};
use crate::store::StoreError;

/// Refuses a new account of `kind` called `name` unless the rules allow the name and no user or
/// robot holds it, compared with ASCII case folding. Every account insert calls this first, in
/// the inserting transaction.
pub fn claim_login_name(
    db: &mut dyn Db,
    rules: &NameRules,
    name: &str,
    kind: AccountKind,
) -> Result<(), StoreError> {
    rules.check_new_account(name, kind)?;
    let dialect = db.dialect();
    let sql = format!(
        "SELECT name, 'user' FROM users WHERE {}
         UNION ALL SELECT name, 'robot' FROM robots WHERE {} LIMIT 1",
        dialect.folded_eq("name", "?1"),
        dialect.folded_eq("name", "?1"),
    );
    let taken: Option<(String, &'static str)> = query_opt(db, &sql, params![name], |row| {
        let kind = if row.get::<String>(1)? == "user" { "user" } else { "robot" };
        Ok((row.get(0)?, kind))
    })?;
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
pub fn resolve(db: &mut dyn Db, table: Table, name: &str) -> Result<Option<String>, StoreError> {
    let exact = format!("SELECT name FROM {} WHERE name = ?1", table.name());
    if let Some(found) = query_opt(db, &exact, params![name], |row| row.get(0))? {
        return Ok(Some(found));
    }
    let folded =
        format!("SELECT name FROM {} WHERE {} LIMIT 2", table.name(), db.dialect().folded_eq("name", "?1"));
    let found: Vec<String> = query_vec(db, &folded, params![name], |row| row.get(0))?;
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
    db: &mut dyn Db,
    table: Table,
    name: &str,
    column: &str,
    value: Value<'_>,
) -> Result<(), StoreError> {
    write(db, |db| {
        let name = resolve(db, table, name)?.unwrap_or_else(|| name.to_string());
        update_named(db, (table.name(), table.kind()), &name, column, value)
    })
}

/// Removes the account of `table` that `name` logs in as (and, by cascade, what hangs on it).
pub fn remove_account(db: &mut dyn Db, table: Table, name: &str) -> Result<(), StoreError> {
    write(db, |db| {
        let name = resolve(db, table, name)?.unwrap_or_else(|| name.to_string());
        delete_named(db, (table.name(), table.kind()), &name)
    })
}

/// Groups of account names that are equal up to ASCII case, each sorted, for reports. The
/// database finds them, so that a server starting on 100,000 accounts reads only the few that
/// collide (usually none), not every name.
pub fn collisions(db: &mut dyn Db) -> Result<Vec<Vec<String>>, StoreError> {
    let folded = db.dialect().fold("name");
    let sql = format!(
        "WITH names AS (SELECT name FROM users UNION ALL SELECT name FROM robots)
         SELECT name FROM names
          WHERE {folded} IN (SELECT {folded} FROM names GROUP BY {folded} HAVING COUNT(*) > 1)
          ORDER BY {folded}, name"
    );
    let names: Vec<String> = query_vec(db, &sql, &[], |row| row.get(0))?;
    let mut groups: Vec<Vec<String>> = Vec::new();
    for name in names {
        match groups.last_mut() {
            Some(group) if fold(&group[0]) == fold(&name) => group.push(name),
            _ => groups.push(vec![name]),
        }
    }
    Ok(groups)
}
