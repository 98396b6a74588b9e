//! The `refresh_tokens` table: OAuth2 refresh tokens (docker's identity tokens), by digest.
//!
//! Rows die with their user (foreign key cascade) and on a password change or disable (triggers in
//! `schema/sqlite/0002_credentials.sql`), so every process that changes a user ends them at once.

use super::{
    params, query_opt, query_value, query_vec, require_changed, transaction, users, Db, Row, TransactionKind,
};
use crate::store::{NewRefreshToken, RefreshToken, StoreError};

/// Records a new refresh token, first dropping its user's tokens that expired (`last_used_at`
/// before `idle_before` or `created_at` before `created_before`) and the least recently used
/// past `keep_at_most`.
pub fn create(db: &mut dyn Db, new: &NewRefreshToken<'_>) -> Result<i64, StoreError> {
    let user_id = new.user_id;
    // The change log does not follow refresh tokens: no need to wait for the other writers.
    transaction(db, TransactionKind::Batch, |db| {
        db.execute(
            "DELETE FROM refresh_tokens WHERE user_id = ?1 AND (last_used_at < ?2 OR created_at < ?3)",
            params![user_id, new.idle_before, new.created_before],
        )?;
        // No LIMIT: SQLite's "LIMIT -1" for "all" is not PostgreSQL's, so the largest number.
        db.execute(
            "DELETE FROM refresh_tokens WHERE id IN (
                 SELECT id FROM refresh_tokens WHERE user_id = ?1
                  ORDER BY last_used_at DESC, id DESC LIMIT 9223372036854775807 OFFSET ?2)",
            params![user_id, new.keep_at_most - 1],
        )?;
        query_value(
            db,
            "INSERT INTO refresh_tokens (digest, user_id, service, client_id, created_at, last_used_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5) RETURNING id",
            params![new.digest, user_id, new.service, new.client_id, new.created_at],
        )
    })
}

const COLUMNS: &str = "r.id, r.user_id, u.name, r.service, r.client_id, r.created_at, r.last_used_at
                       FROM refresh_tokens r JOIN users u ON u.id = r.user_id";

fn from_row(row: &Row<'_>) -> Result<RefreshToken, StoreError> {
    Ok(RefreshToken {
        id: row.get(0)?,
        user_id: row.get(1)?,
        user: row.get(2)?,
        service: row.get(3)?,
        client_id: row.get(4)?,
        created_at: row.get(5)?,
        last_used_at: row.get(6)?,
    })
}

/// The token with this digest and its user, if both exist.
pub fn find(db: &mut dyn Db, digest: &str) -> Result<Option<RefreshToken>, StoreError> {
    query_opt(db, &format!("SELECT {COLUMNS} WHERE r.digest = ?1"), params![digest], from_row)
}

/// Records a use. Callers call it rarely (see `authn::refresh`), never on every request.
pub fn touch(db: &mut dyn Db, id: i64, time: i64) -> Result<(), StoreError> {
    db.execute("UPDATE refresh_tokens SET last_used_at = ?1 WHERE id = ?2", params![time, id])?;
    Ok(())
}

/// Tokens of one user, or of everyone, oldest first.
pub fn list(db: &mut dyn Db, user: Option<&str>) -> Result<Vec<RefreshToken>, StoreError> {
    let user = match user {
        Some(user) => Some(users::get(db, user)?.id),
        None => None,
    };
    let sql = format!("SELECT {COLUMNS} WHERE CAST(?1 AS BIGINT) IS NULL OR r.user_id = ?1 ORDER BY r.id");
    query_vec(db, &sql, params![user], from_row)
}

/// Revokes one token by the ID `token list` shows.
pub fn revoke(db: &mut dyn Db, id: i64) -> Result<(), StoreError> {
    require_changed(
        db.execute("DELETE FROM refresh_tokens WHERE id = ?1", params![id])?,
        "refresh token",
        id.to_string(),
    )
}

/// Revokes every token of `user`; returns how many there were.
pub fn revoke_user(db: &mut dyn Db, user: &str) -> Result<usize, StoreError> {
    let user = users::get(db, user)?;
    db.execute("DELETE FROM refresh_tokens WHERE user_id = ?1", params![user.id])
}

/// Revokes every refresh token there is.
pub fn revoke_all(db: &mut dyn Db) -> Result<usize, StoreError> {
    db.execute("DELETE FROM refresh_tokens", &[])
}

#[cfg(test)]
mod tests {
    use crate::store::sql::testing::{on_both_backends, TestStore};
    use crate::store::{NewRefreshToken, NewUser, Source, Store, StoreError};

    fn new<'a>(digest: &'a str, user_id: i64, client_id: &'a str, keep_at_most: i64) -> NewRefreshToken<'a> {
        NewRefreshToken {
            digest,
            user_id,
            service: "registry",
            client_id,
            created_at: crate::store::now(),
            idle_before: 0,
            created_before: 0,
            keep_at_most,
        }
    }

    fn user(store: &dyn Store, name: &str) -> i64 {
        let new =
            NewUser { name, password_hash: Some("$argon2id$a"), is_admin: false, source: Source::Database };
        store.create_user(&new).unwrap().id
    }

    fn count(store: &TestStore) -> i64 {
        store
            .with_db(|db| crate::store::sql::query_value(db, "SELECT COUNT(*) FROM refresh_tokens", &[]))
            .unwrap()
    }

    on_both_backends! {
        fn tokens_end_with_password_change_disable_and_removal(store) {
            let (alice, bob) = (user(&**store, "alice"), user(&**store, "bob"));
            store.create_refresh_token(&new("d1", alice, "docker", 200)).unwrap();
            store.create_refresh_token(&new("d2", bob, "docker", 200)).unwrap();
            let found = store.refresh_token_login("d1").unwrap().map(|t| t.user);
            assert_eq!(found, Some("alice".to_string()));
            store.set_user_admin("alice", true).unwrap();
            assert_eq!(count(store), 2, "other changes leave tokens alone");
            store.set_user_password("alice", "$argon2id$new").unwrap();
            assert!(store.refresh_token_login("d1").unwrap().is_none(), "a new password ends the token");
            store.create_refresh_token(&new("d3", alice, "docker", 200)).unwrap();
            store.set_user_disabled("alice", false).unwrap();
            assert!(store.refresh_token_login("d3").unwrap().is_some(), "enabling is not disabling");
            store.set_user_disabled("alice", true).unwrap();
            assert!(store.refresh_token_login("d3").unwrap().is_none(), "disabling ends the token");
            store.remove_user("bob").unwrap();
            assert_eq!(count(store), 0, "removal ends the token");
        }
    }

    on_both_backends! {
        fn create_prunes_expired_and_excess_tokens_of_the_same_user(store) {
            let alice = user(&**store, "alice");
            let old = store.create_refresh_token(&new("old", alice, "docker", 10)).unwrap();
            store
                .with_db(|db| {
                    db.execute("UPDATE refresh_tokens SET last_used_at = 5 WHERE id = ?1", crate::store::sql::params![old])
                })
                .unwrap();
            store
                .create_refresh_token(&NewRefreshToken { idle_before: 10, ..new("new", alice, "docker", 10) })
                .unwrap();
            assert!(store.refresh_token_login("old").unwrap().is_none());
            for i in 0..15 {
                let digest = format!("many{i}");
                store.create_refresh_token(&new(&digest, alice, "docker", 10)).unwrap();
            }
            assert_eq!(count(store), 10);
            assert!(store.refresh_token_login("many14").unwrap().is_some(), "the newest stays");
        }
    }

    on_both_backends! {
        fn list_and_revoke(store) {
            let alice = user(&**store, "alice");
            let id = store.create_refresh_token(&new("d1", alice, "docker", 200)).unwrap();
            store.create_refresh_token(&new("d2", alice, "containerd-client", 200)).unwrap();
            assert_eq!(store.list_refresh_tokens(Some("alice")).unwrap().len(), 2);
            assert!(matches!(store.list_refresh_tokens(Some("nobody")), Err(StoreError::NotFound { .. })));
            store.revoke_refresh_token(id).unwrap();
            assert!(matches!(store.revoke_refresh_token(id), Err(StoreError::NotFound { .. })));
            assert_eq!(store.revoke_user_refresh_tokens("alice").unwrap(), 1);
            assert_eq!(store.revoke_all_refresh_tokens().unwrap(), 0);
        }
    }
}
