//! The `users` table: accounts of both sources, their password hashes and their admin and
//! disabled flags.

use super::names::{claim_login_name, resolve, Table};
use super::{now, params, query_opt, query_value, query_vec, require_changed, write, Db, Row};
use crate::store::names::{AccountKind, NameRules};
use crate::store::{NewUser, Source, StoreError, User};

const COLUMNS: &str = "id, name, password_hash, is_admin, disabled, source, created_at, password_epoch";

fn from_row(row: &Row<'_>) -> Result<User, StoreError> {
    let source: String = row.get(5)?;
    Ok(User {
        id: row.get(0)?,
        name: row.get(1)?,
        password_hash: row.get(2)?,
        is_admin: row.get(3)?,
        disabled: row.get(4)?,
        // The schema's CHECK allows only the two spellings.
        source: Source::from_stored(&source).unwrap_or(Source::Ldap),
        created_at: row.get(6)?,
        password_epoch: row.get(7)?,
    })
}

/// The one insert of an account, of either source, after claiming its name.
pub fn create(db: &mut dyn Db, rules: &NameRules, new: &NewUser<'_>) -> Result<User, StoreError> {
    write(db, |db| {
        claim_login_name(db, rules, new.name, AccountKind::User)?;
        let time = now();
        db.execute(
            "INSERT INTO users (name, password_hash, is_admin, source, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![new.name, new.password_hash, new.is_admin, new.source.as_str(), time],
        )?;
        get(db, new.name)
    })
}

/// The account `name` logs in as (exactly, else up to ASCII case; see [`resolve`]).
pub fn find(db: &mut dyn Db, name: &str) -> Result<Option<User>, StoreError> {
    let Some(name) = resolve(db, Table::Users, name)? else { return Ok(None) };
    let sql = format!("SELECT {COLUMNS} FROM users WHERE name = ?1");
    query_opt(db, &sql, params![&name], from_row)
}

pub fn get(db: &mut dyn Db, name: &str) -> Result<User, StoreError> {
    find(db, name)?.ok_or_else(|| StoreError::NotFound { kind: "user", name: name.to_string() })
}

/// Sets the password of the account `name` logs in as: a new hash and a new password epoch,
/// which ends the user's identity tokens (schema 0010's trigger) and remembered logins.
pub fn set_password(db: &mut dyn Db, name: &str, hash: &str) -> Result<(), StoreError> {
    write(db, |db| {
        let name = resolve(db, Table::Users, name)?.unwrap_or_else(|| name.to_string());
        let changed = db.execute(
            "UPDATE users SET password_hash = ?1, password_epoch = password_epoch + 1, updated_at = ?2
              WHERE name = ?3",
            params![hash, now(), &name],
        )?;
        require_changed(changed, "user", name)
    })
}

/// Replaces user `id`'s hash `old` by `new`, a hash of the same password (a carried-over hash
/// upgraded at login): the epoch stays, so nothing that rests on the password ends. `false` when
/// the hash is no longer `old` (the password was set meanwhile): that newer one stays.
pub fn replace_hash(db: &mut dyn Db, id: i64, old: &str, new: &str) -> Result<bool, StoreError> {
    let changed = write(db, |db| {
        db.execute(
            "UPDATE users SET password_hash = ?1, updated_at = ?2 WHERE id = ?3 AND password_hash = ?4",
            params![new, now(), id, old],
        )
    })?;
    Ok(changed > 0)
}

pub fn list(db: &mut dyn Db) -> Result<Vec<User>, StoreError> {
    query_vec(db, &format!("SELECT {COLUMNS} FROM users ORDER BY name"), &[], from_row)
}

/// Every user's hash and source, row by row (see [`crate::store::Store::scan_users`]).
pub fn scan(db: &mut dyn Db, each: &mut dyn FnMut(Option<&str>, Source)) -> Result<(), StoreError> {
    db.query("SELECT password_hash, source FROM users", &[], &mut |row| {
        let source =
            row.with_str(1, |source| source.and_then(Source::from_stored).unwrap_or(Source::Ldap))?;
        row.with_str(0, |hash| each(hash, source))
    })
}

pub fn count(db: &mut dyn Db) -> Result<i64, StoreError> {
    query_value(db, "SELECT COUNT(*) FROM users", &[])
}

#[cfg(test)]
mod tests {
    use crate::store::sql::testing::on_both_backends;
    use crate::store::sqlite::fixtures::{database_user, directory_user};
    use crate::store::{NewUser, Source, StoreError};

    on_both_backends! {
        fn create_find_update_remove(store) {
            let alice = store.create_user(&database_user("alice")).unwrap();
            assert!(!alice.is_admin && !alice.disabled);
            assert!(matches!(store.create_user(&database_user("alice")), Err(StoreError::AlreadyExists { .. })));
            store.set_user_disabled("alice", true).unwrap();
            store.set_user_admin("alice", true).unwrap();
            let alice = store.user("alice").unwrap();
            assert!(alice.disabled && alice.is_admin);
            assert!(matches!(store.set_user_disabled("bob", true), Err(StoreError::NotFound { .. })));
            assert_eq!(store.list_users().unwrap().len(), 1);
            store.remove_user("alice").unwrap();
            assert!(store.find_user("alice").unwrap().is_none());
        }
    }

    on_both_backends! {
        fn names_are_found_and_claimed_up_to_ascii_case(store) {
            let directory = directory_user("Alice");
            let alice = store.create_user(&directory).unwrap();
            assert_eq!(store.user("alice").unwrap().id, alice.id, "a login as alice is Alice");
            assert_eq!(store.user("ALICE").unwrap().name, "Alice", "the stored spelling is canonical");
            let refused = store.create_user(&database_user("alice"));
            assert!(matches!(refused, Err(StoreError::AlreadyExists { .. })), "{refused:?}");
            store.set_user_admin("aLiCe", true).unwrap();
            assert!(store.user("Alice").unwrap().is_admin);
        }
    }

    on_both_backends! {
        fn old_databases_keep_names_that_differ_only_in_case(store) {
            store.create_user(&database_user("bob")).unwrap();
            store
                .with_db(|db| {
                    db.execute(
                        "INSERT INTO users (name, password_hash, created_at, updated_at) VALUES ('Bob', NULL, 0, 0)",
                        &[],
                    )
                })
                .unwrap();
            assert_eq!(store.user("bob").unwrap().name, "bob", "the exact spelling wins");
            assert_eq!(store.user("Bob").unwrap().name, "Bob");
            assert!(store.find_user("BOB").unwrap().is_none(), "an ambiguous folded name finds no one");
            assert_eq!(store.login_name_collisions().unwrap(), vec![vec!["Bob".to_string(), "bob".to_string()]]);
        }
    }

    on_both_backends! {
        fn users_may_not_take_the_robot_prefix(store) {
            for name in ["robot_team+ci", "Robot_team+ci"] {
                let refused = store.create_user(&NewUser {
                    name,
                    password_hash: None,
                    is_admin: false,
                    source: Source::Ldap,
                });
                assert!(matches!(refused, Err(StoreError::Invalid(_))), "{name}: {refused:?}");
            }
        }
    }
}
