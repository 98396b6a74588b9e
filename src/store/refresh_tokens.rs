//! The `refresh_tokens` table: OAuth2 refresh tokens (docker's identity tokens), by digest.
//!
//! Rows die with their user (foreign key cascade) and on a password change or disable (triggers in
//! `schema/0002_credentials.sql`), so every process that changes a user ends them at once.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::require_changed;
use super::StoreError;

/// A refresh token as listed by `portcullis token list` (never the token or its digest).
#[derive(Debug, Clone, Serialize)]
pub struct RefreshToken {
    pub id: i64,
    pub user: String,
    pub service: String,
    pub client_id: String,
    pub created_at: i64,
    /// Coarse: updated at most once a minute.
    pub last_used_at: i64,
}

/// What the refresh grant needs to know about a token and its user, in one read.
#[derive(Debug, Clone)]
pub struct RefreshLogin {
    pub id: i64,
    pub user_id: i64,
    pub user_name: String,
    /// Read at every refresh, so a revoked admin right takes effect at the next token.
    pub is_admin: bool,
    pub disabled: bool,
    pub service: String,
    pub created_at: i64,
    pub last_used_at: i64,
}

/// How many refresh tokens one user keeps: each `docker login` makes one, and CI jobs log in
/// on every run. Past this, the least recently used go first.
pub const MAX_PER_USER: i64 = 200;

/// A refresh token about to be stored.
pub struct NewRefreshToken<'a> {
    pub digest: &'a str,
    pub user_id: i64,
    pub service: &'a str,
    pub client_id: &'a str,
    pub created_at: i64,
}

/// Records a new refresh token, first dropping its user's tokens that expired (`last_used_at`
/// before `idle_before` or `created_at` before `created_before`) and the least recently used
/// past [`MAX_PER_USER`].
pub fn create(
    connection: &Connection,
    new: &NewRefreshToken<'_>,
    idle_before: i64,
    created_before: i64,
) -> Result<i64, StoreError> {
    let user_id = new.user_id;
    let transaction = connection.unchecked_transaction()?;
    transaction.execute(
        "DELETE FROM refresh_tokens WHERE user_id = ?1 AND (last_used_at < ?2 OR created_at < ?3)",
        params![user_id, idle_before, created_before],
    )?;
    transaction.execute(
        "DELETE FROM refresh_tokens WHERE id IN (
             SELECT id FROM refresh_tokens WHERE user_id = ?1
              ORDER BY last_used_at DESC, id DESC LIMIT -1 OFFSET ?2)",
        params![user_id, MAX_PER_USER - 1],
    )?;
    transaction.execute(
        "INSERT INTO refresh_tokens (digest, user_id, service, client_id, created_at, last_used_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![new.digest, user_id, new.service, new.client_id, new.created_at],
    )?;
    let id = transaction.last_insert_rowid();
    transaction.commit()?;
    Ok(id)
}

/// The token with this digest and its user, if both exist.
pub fn find(connection: &Connection, digest: &str) -> Result<Option<RefreshLogin>, StoreError> {
    Ok(connection
        .query_row(
            "SELECT r.id, r.user_id, u.name, u.is_admin, u.disabled, r.service, r.created_at, r.last_used_at
               FROM refresh_tokens r JOIN users u ON u.id = r.user_id
              WHERE r.digest = ?1",
            [digest],
            |row| {
                Ok(RefreshLogin {
                    id: row.get(0)?,
                    user_id: row.get(1)?,
                    user_name: row.get(2)?,
                    is_admin: row.get(3)?,
                    disabled: row.get(4)?,
                    service: row.get(5)?,
                    created_at: row.get(6)?,
                    last_used_at: row.get(7)?,
                })
            },
        )
        .optional()?)
}

/// Records a use. Callers call it rarely (see `authn::refresh`), never on every request.
pub fn touch(connection: &Connection, id: i64, time: i64) -> Result<(), StoreError> {
    connection.execute("UPDATE refresh_tokens SET last_used_at = ?1 WHERE id = ?2", params![time, id])?;
    Ok(())
}

/// Tokens of one user, or of everyone, oldest first.
pub fn list(connection: &Connection, user: Option<&str>) -> Result<Vec<RefreshToken>, StoreError> {
    if let Some(user) = user {
        super::users::get(connection, user)?;
    }
    let mut statement = connection.prepare(
        "SELECT r.id, u.name, r.service, r.client_id, r.created_at, r.last_used_at
           FROM refresh_tokens r JOIN users u ON u.id = r.user_id
          WHERE ?1 IS NULL OR u.name = ?1 ORDER BY r.id",
    )?;
    let tokens = statement
        .query_map([user], |row| {
            Ok(RefreshToken {
                id: row.get(0)?,
                user: row.get(1)?,
                service: row.get(2)?,
                client_id: row.get(3)?,
                created_at: row.get(4)?,
                last_used_at: row.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(tokens)
}

/// Revokes one token by the ID `token list` shows.
pub fn revoke(connection: &Connection, id: i64) -> Result<(), StoreError> {
    require_changed(
        connection.execute("DELETE FROM refresh_tokens WHERE id = ?1", [id])?,
        "refresh token",
        id.to_string(),
    )
}

/// Revokes every token of `user`; returns how many there were.
pub fn revoke_user(connection: &Connection, user: &str) -> Result<usize, StoreError> {
    let user = super::users::get(connection, user)?;
    Ok(connection.execute("DELETE FROM refresh_tokens WHERE user_id = ?1", [user.id])?)
}

/// Revokes every refresh token there is.
pub fn revoke_all(connection: &Connection) -> Result<usize, StoreError> {
    Ok(connection.execute("DELETE FROM refresh_tokens", [])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{test_store, users};

    fn new<'a>(digest: &'a str, user_id: i64, client_id: &'a str) -> NewRefreshToken<'a> {
        NewRefreshToken { digest, user_id, service: "registry", client_id, created_at: crate::store::now() }
    }

    fn count(c: &Connection) -> i64 {
        c.query_row("SELECT COUNT(*) FROM refresh_tokens", [], |row| row.get(0)).unwrap()
    }

    #[test]
    fn tokens_end_with_password_change_disable_and_removal() {
        let (_dir, store) = test_store();
        store
            .with_connection(|c| {
                let alice = users::create(c, "alice", Some("$argon2id$a"), false)?;
                let bob = users::create(c, "bob", Some("$argon2id$b"), false)?;
                create(c, &new("d1", alice.id, "docker"), 0, 0)?;
                create(c, &new("d2", bob.id, "docker"), 0, 0)?;
                assert_eq!(find(c, "d1")?.map(|t| t.user_name), Some("alice".to_string()));
                users::set_admin(c, "alice", true)?;
                assert_eq!(count(c), 2, "other changes leave tokens alone");
                users::set_password_hash(c, "alice", "$argon2id$new")?;
                assert!(find(c, "d1")?.is_none(), "a new password ends the token");
                create(c, &new("d3", alice.id, "docker"), 0, 0)?;
                users::set_disabled(c, "alice", false)?;
                assert!(find(c, "d3")?.is_some(), "enabling is not disabling");
                users::set_disabled(c, "alice", true)?;
                assert!(find(c, "d3")?.is_none(), "disabling ends the token");
                users::remove(c, "bob")?;
                assert_eq!(count(c), 0, "removal ends the token");
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn create_prunes_expired_and_excess_tokens_of_the_same_user() {
        let (_dir, store) = test_store();
        store
            .with_connection(|c| {
                let alice = users::create(c, "alice", None, false)?;
                let old = create(c, &new("old", alice.id, "docker"), 0, 0)?;
                c.execute("UPDATE refresh_tokens SET last_used_at = 5 WHERE id = ?1", [old])?;
                create(c, &new("new", alice.id, "docker"), 10, 0)?;
                assert!(find(c, "old")?.is_none());
                for i in 0..MAX_PER_USER + 5 {
                    create(c, &new(&format!("many{i}"), alice.id, "docker"), 0, 0)?;
                }
                assert_eq!(count(c), MAX_PER_USER);
                assert!(find(c, &format!("many{}", MAX_PER_USER + 4))?.is_some(), "the newest stays");
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn list_and_revoke() {
        let (_dir, store) = test_store();
        store
            .with_connection(|c| {
                let alice = users::create(c, "alice", None, false)?;
                let id = create(c, &new("d1", alice.id, "docker"), 0, 0)?;
                create(c, &new("d2", alice.id, "containerd-client"), 0, 0)?;
                assert_eq!(list(c, Some("alice"))?.len(), 2);
                assert!(matches!(list(c, Some("nobody")), Err(StoreError::NotFound { .. })));
                revoke(c, id)?;
                assert!(matches!(revoke(c, id), Err(StoreError::NotFound { .. })));
                assert_eq!(revoke_user(c, "alice")?, 1);
                assert_eq!(revoke_all(c)?, 0);
                Ok(())
            })
            .unwrap();
    }
}
