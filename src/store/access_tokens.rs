//! The `access_tokens` and `access_token_projects` tables: personal access tokens.
//!
//! A token belongs to a row of `users`, whatever the user's source, so directory (LDAP) users
//! can have them as well as database users; it dies with its user.

use std::collections::BTreeSet;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::{now, projects, users, StoreError};
use crate::authz::{Ceiling, ProjectSet};

/// A personal access token as listed (never the token or its digest).
#[derive(Debug, Clone, Serialize)]
pub struct AccessToken {
    pub id: i64,
    /// The owner's user name.
    pub user: String,
    /// The owner's label for it, unique per owner.
    pub name: String,
    pub actions: String,
    /// Every project the owner may use, or only `projects`.
    pub all_projects: bool,
    pub projects: Vec<String>,
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

impl AccessToken {
    pub fn ceiling(&self) -> Ceiling {
        let projects = if self.all_projects {
            ProjectSet::All
        } else {
            ProjectSet::Only(self.projects.iter().cloned().collect::<BTreeSet<_>>())
        };
        let actions = self.actions.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect();
        Ceiling { projects, actions }
    }
}

/// A token found by its digest, with what the login needs of its owner.
#[derive(Debug, Clone)]
pub struct AccessTokenLogin {
    pub token: AccessToken,
    pub user_id: i64,
    pub is_admin: bool,
    pub disabled: bool,
}

/// Labels are short words people type: letters, digits, `.`, `_`, `-`; at most 64.
pub fn validate_label(label: &str) -> Result<(), StoreError> {
    let ok = !label.is_empty()
        && label.len() <= 64
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid token name {label:?}: 1 to 64 letters, digits, '.', '_' or '-'"
        )))
    }
}

const COLUMNS: &str = "t.id, u.name, t.name, t.actions, t.all_projects, t.expires_at, t.created_at,
                       t.user_id, u.is_admin, u.disabled";

fn from_row(row: &Row<'_>) -> rusqlite::Result<AccessTokenLogin> {
    Ok(AccessTokenLogin {
        token: AccessToken {
            id: row.get(0)?,
            user: row.get(1)?,
            name: row.get(2)?,
            actions: row.get(3)?,
            all_projects: row.get(4)?,
            projects: Vec::new(),
            expires_at: row.get(5)?,
            created_at: row.get(6)?,
        },
        user_id: row.get(7)?,
        is_admin: row.get(8)?,
        disabled: row.get(9)?,
    })
}

fn with_projects(
    connection: &Connection,
    mut login: AccessTokenLogin,
) -> Result<AccessTokenLogin, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT p.name FROM access_token_projects tp JOIN projects p ON p.id = tp.project_id
          WHERE tp.token_id = ?1 ORDER BY p.name",
    )?;
    login.token.projects =
        statement.query_map([login.token.id], |row| row.get(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(login)
}

/// Creates a token for `user` labelled `label`; `projects` `None` means every project.
pub fn create(
    connection: &Connection,
    user: &str,
    label: &str,
    digest: &str,
    actions: &str,
    projects: Option<&[String]>,
    expires_at: Option<i64>,
) -> Result<AccessToken, StoreError> {
    validate_label(label)?;
    let transaction = connection.unchecked_transaction()?;
    let owner = users::get(&transaction, user)?;
    let mut listed = Vec::new();
    for project in projects.unwrap_or_default() {
        listed.push(projects::get(&transaction, project)?.id);
    }
    let inserted = transaction.execute(
        "INSERT INTO access_tokens (user_id, name, digest, actions, all_projects, expires_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (user_id, name) DO NOTHING",
        params![owner.id, label, digest, actions, projects.is_none(), expires_at, now()],
    )?;
    if inserted == 0 {
        return Err(StoreError::AlreadyExists { kind: "token", name: format!("{label} of {user}") });
    }
    let token_id = transaction.last_insert_rowid();
    for project_id in listed {
        transaction.execute(
            "INSERT OR IGNORE INTO access_token_projects (token_id, project_id) VALUES (?1, ?2)",
            params![token_id, project_id],
        )?;
    }
    transaction.commit()?;
    get(connection, user, label)
}

/// The token of user `user` with this digest, for logging in.
pub fn login(
    connection: &Connection,
    user: &str,
    digest: &str,
) -> Result<Option<AccessTokenLogin>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM access_tokens t JOIN users u ON u.id = t.user_id
          WHERE t.digest = ?1 AND u.name = ?2"
    );
    let found = connection.prepare_cached(&sql)?.query_row(params![digest, user], from_row).optional()?;
    found.map(|login| with_projects(connection, login)).transpose()
}

pub fn get(connection: &Connection, user: &str, label: &str) -> Result<AccessToken, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM access_tokens t JOIN users u ON u.id = t.user_id
          WHERE u.name = ?1 AND t.name = ?2"
    );
    let found = connection.query_row(&sql, params![user, label], from_row).optional()?;
    match found {
        Some(login) => Ok(with_projects(connection, login)?.token),
        None => Err(StoreError::NotFound { kind: "token", name: format!("{label} of {user}") }),
    }
}

/// Tokens of one user, or of everyone.
pub fn list(connection: &Connection, user: Option<&str>) -> Result<Vec<AccessToken>, StoreError> {
    if let Some(user) = user {
        users::get(connection, user)?;
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM access_tokens t JOIN users u ON u.id = t.user_id
          WHERE ?1 IS NULL OR u.name = ?1 ORDER BY u.name, t.name"
    );
    let mut statement = connection.prepare(&sql)?;
    let rows = statement.query_map([user], from_row)?.collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(|login| Ok(with_projects(connection, login)?.token)).collect()
}

pub fn revoke(connection: &Connection, user: &str, label: &str) -> Result<(), StoreError> {
    let token = get(connection, user, label)?;
    connection.execute("DELETE FROM access_tokens WHERE id = ?1", [token.id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[test]
    fn create_login_list_revoke() {
        let (_dir, store) = test_store();
        store
            .with_connection(|c| {
                users::create(c, "alice", Some("$argon2id$a"), false)?;
                projects::create(c, "team", false)?;
                let listed = ["team".to_string()];
                let token = create(c, "alice", "ci", "d1", "pull", Some(&listed), None)?;
                assert_eq!(token.ceiling().projects, ProjectSet::Only(BTreeSet::from(["team".to_string()])));
                create(c, "alice", "laptop", "d2", "pull,push", None, Some(10))?;
                assert!(matches!(
                    create(c, "alice", "ci", "d3", "pull", None, None),
                    Err(StoreError::AlreadyExists { .. })
                ));
                assert!(matches!(
                    create(c, "bob", "ci", "d4", "pull", None, None),
                    Err(StoreError::NotFound { .. })
                ));
                assert!(matches!(
                    create(c, "alice", "a b", "d5", "pull", None, None),
                    Err(StoreError::Invalid(_))
                ));
                assert!(login(c, "alice", "d1")?.is_some());
                assert!(login(c, "bob", "d1")?.is_none(), "a token works only with its owner's name");
                assert_eq!(
                    login(c, "alice", "d2")?.map(|l| l.token.ceiling().projects),
                    Some(ProjectSet::All)
                );
                assert_eq!(list(c, Some("alice"))?.len(), 2);
                revoke(c, "alice", "ci")?;
                assert!(login(c, "alice", "d1")?.is_none());
                users::remove(c, "alice")?;
                assert!(list(c, None)?.is_empty(), "tokens go with their user");
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn directory_users_without_a_password_can_have_tokens() {
        let (_dir, store) = test_store();
        store
            .with_connection(|c| {
                users::create(c, "carol", None, false)?;
                c.execute("UPDATE users SET source = 'ldap' WHERE name = 'carol'", [])?;
                create(c, "carol", "ci", "d", "pull", None, None)?;
                assert!(login(c, "carol", "d")?.is_some());
                Ok(())
            })
            .unwrap();
    }
}
