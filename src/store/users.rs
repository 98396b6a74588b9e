//! The `users` table: accounts, their password hashes and their admin and disabled flags.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::{delete_named, now, update_named, StoreError};

/// An account as stored. The password hash is never serialized (it is skipped in `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub disabled: bool,
    /// Where the account authenticates: `database`, or a directory in later versions.
    pub source: String,
    pub created_at: i64,
}

const COLUMNS: &str = "id, name, password_hash, is_admin, disabled, source, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        name: row.get(1)?,
        password_hash: row.get(2)?,
        is_admin: row.get(3)?,
        disabled: row.get(4)?,
        source: row.get(5)?,
        created_at: row.get(6)?,
    })
}

/// User names end up in Basic auth (where `:` separates the password) and in token subjects:
/// printable, no colon, no white space, at most 255 bytes.
pub fn validate_user_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.contains(':')
        && name.chars().all(|c| !c.is_control() && !c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid user name {name:?}: 1 to 255 characters, no ':' and no spaces or control characters"
        )))
    }
}

pub fn create(
    connection: &Connection,
    name: &str,
    password_hash: Option<&str>,
    is_admin: bool,
) -> Result<User, StoreError> {
    validate_user_name(name)?;
    // Robots and users share the login name space.
    if super::robots::find(connection, name)?.is_some() {
        return Err(StoreError::AlreadyExists { kind: "robot", name: name.to_string() });
    }
    let time = now();
    let inserted = connection.execute(
        "INSERT INTO users (name, password_hash, is_admin, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (name) DO NOTHING",
        params![name, password_hash, is_admin, time],
    )?;
    if inserted == 0 {
        return Err(StoreError::AlreadyExists { kind: "user", name: name.to_string() });
    }
    find(connection, name)?.ok_or_else(|| StoreError::NotFound { kind: "user", name: name.to_string() })
}

pub fn find(connection: &Connection, name: &str) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE name = ?1");
    Ok(connection.query_row(&sql, [name], from_row).optional()?)
}

pub fn get(connection: &Connection, name: &str) -> Result<User, StoreError> {
    find(connection, name)?.ok_or_else(|| StoreError::NotFound { kind: "user", name: name.to_string() })
}

pub fn list(connection: &Connection) -> Result<Vec<User>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users ORDER BY name");
    let mut statement = connection.prepare(&sql)?;
    let users = statement.query_map([], from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(users)
}

pub fn count(connection: &Connection) -> Result<i64, StoreError> {
    Ok(connection.query_row("SELECT COUNT(*) FROM users", [], |row| row.get(0))?)
}

/// Updates one user and fails with NotFound when there is none of that name.
fn update(
    connection: &Connection,
    name: &str,
    column: &str,
    value: &dyn rusqlite::ToSql,
) -> Result<(), StoreError> {
    update_named(connection, ("users", "user"), name, column, value)
}

pub fn set_password_hash(connection: &Connection, name: &str, hash: &str) -> Result<(), StoreError> {
    update(connection, name, "password_hash", &hash)
}

pub fn set_disabled(connection: &Connection, name: &str, disabled: bool) -> Result<(), StoreError> {
    update(connection, name, "disabled", &disabled)
}

pub fn set_admin(connection: &Connection, name: &str, is_admin: bool) -> Result<(), StoreError> {
    update(connection, name, "is_admin", &is_admin)
}

/// Removes the user and, by cascade, their memberships and credentials.
pub fn remove(connection: &Connection, name: &str) -> Result<(), StoreError> {
    delete_named(connection, ("users", "user"), name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[test]
    fn create_find_update_remove() {
        let (_dir, store) = test_store();
        store
            .with_connection(|c| {
                let alice = create(c, "alice", Some("$argon2id$x"), false)?;
                assert!(!alice.is_admin && !alice.disabled);
                assert!(matches!(create(c, "alice", None, false), Err(StoreError::AlreadyExists { .. })));
                set_disabled(c, "alice", true)?;
                set_admin(c, "alice", true)?;
                let alice = get(c, "alice")?;
                assert!(alice.disabled && alice.is_admin);
                assert!(matches!(set_disabled(c, "bob", true), Err(StoreError::NotFound { .. })));
                assert_eq!(list(c)?.len(), 1);
                remove(c, "alice")?;
                assert!(find(c, "alice")?.is_none());
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn user_names_with_colons_or_spaces_are_refused() {
        for bad in ["", "a:b", "a b", "a\nb"] {
            assert!(validate_user_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_user_name("ci.bot-1@example.com").is_ok());
    }
}
