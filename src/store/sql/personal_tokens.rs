//! The `access_tokens` and `access_token_projects` tables: personal access tokens.
//!
//! A token belongs to a row of `users`, whatever the user's source, so directory (LDAP) users
//! can have them as well as database users; it dies with its user.

use super::names::{resolve, Table};
use super::{now, params, projects, query_opt, query_vec, users, write, Db, Row};
use crate::store::names::validate_token_label;
use crate::store::{NewPersonalToken, PersonalToken, PersonalTokenLogin, StoreError};

const COLUMNS: &str =
    "t.id, u.name, t.name, t.actions, t.all_projects, t.expires_at, t.created_at, t.user_id, t.last_used_at";

fn from_row(row: &Row<'_>) -> Result<PersonalTokenLogin, StoreError> {
    Ok(PersonalTokenLogin {
        token: PersonalToken {
            id: row.get(0)?,
            user: row.get(1)?,
            name: row.get(2)?,
            actions: row.get(3)?,
            all_projects: row.get(4)?,
            projects: Vec::new(),
            expires_at: row.get(5)?,
            created_at: row.get(6)?,
            last_used_at: row.get(8)?,
        },
        user_id: row.get(7)?,
    })
}

fn with_projects(db: &mut dyn Db, mut login: PersonalTokenLogin) -> Result<PersonalTokenLogin, StoreError> {
    login.token.projects = query_vec(
        db,
        "SELECT p.name FROM access_token_projects tp JOIN projects p ON p.id = tp.project_id
          WHERE tp.token_id = ?1 ORDER BY p.name",
        params![login.token.id],
        |row| row.get(0),
    )?;
    Ok(login)
}

/// Creates a token for `new.user` labelled `new.label`.
pub fn create(db: &mut dyn Db, new: &NewPersonalToken<'_>) -> Result<PersonalToken, StoreError> {
    let NewPersonalToken { user, label, digest, actions, projects, expires_at } = *new;
    validate_token_label(label)?;
    let owner = write(db, |db| {
        let owner = users::get(db, user)?;
        let mut listed = Vec::new();
        for project in projects.unwrap_or_default() {
            listed.push(projects::get(db, project)?.id);
        }
        let token_id: Option<i64> = query_opt(
            db,
            "INSERT INTO access_tokens (user_id, name, digest, actions, all_projects, expires_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (user_id, name) DO NOTHING RETURNING id",
            params![owner.id, label, digest, actions, projects.is_none(), expires_at, now()],
            |row| row.get(0),
        )?;
        let Some(token_id) = token_id else {
            return Err(StoreError::AlreadyExists { kind: "token", name: format!("{label} of {user}") });
        };
        for project_id in listed {
            db.execute(
                "INSERT INTO access_token_projects (token_id, project_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![token_id, project_id],
            )?;
        }
        Ok(owner)
    })?;
    get(db, &owner.name, label)
}

/// The token of user `user` (exactly, else up to ASCII case) with this digest, for logging in.
pub fn login(db: &mut dyn Db, user: &str, digest: &str) -> Result<Option<PersonalTokenLogin>, StoreError> {
    let Some(user) = resolve(db, Table::Users, user)? else { return Ok(None) };
    let sql = format!(
        "SELECT {COLUMNS} FROM access_tokens t JOIN users u ON u.id = t.user_id
          WHERE t.digest = ?1 AND u.name = ?2"
    );
    let found = query_opt(db, &sql, params![digest, &user], from_row)?;
    found.map(|login| with_projects(db, login)).transpose()
}

pub fn get(db: &mut dyn Db, user: &str, label: &str) -> Result<PersonalToken, StoreError> {
    let user = resolve(db, Table::Users, user)?.unwrap_or_else(|| user.to_string());
    let sql = format!(
        "SELECT {COLUMNS} FROM access_tokens t JOIN users u ON u.id = t.user_id
          WHERE u.name = ?1 AND t.name = ?2"
    );
    match query_opt(db, &sql, params![&user, label], from_row)? {
        Some(login) => Ok(with_projects(db, login)?.token),
        None => Err(StoreError::NotFound { kind: "token", name: format!("{label} of {user}") }),
    }
}

/// Tokens of one user, or of everyone.
pub fn list(db: &mut dyn Db, user: Option<&str>) -> Result<Vec<PersonalToken>, StoreError> {
    let user = match user {
        Some(user) => Some(users::get(db, user)?.name),
        None => None,
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM access_tokens t JOIN users u ON u.id = t.user_id
          WHERE CAST(?1 AS TEXT) IS NULL OR u.name = ?1 ORDER BY u.name, t.name"
    );
    let rows = query_vec(db, &sql, params![&user], from_row)?;
    rows.into_iter().map(|login| Ok(with_projects(db, login)?.token)).collect()
}

/// Records that the token logged in at `now`, at most once a minute.
pub fn record_use(db: &mut dyn Db, id: i64, now: i64) -> Result<(), StoreError> {
    db.execute(
        "UPDATE access_tokens SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2 - 60)",
        params![id, now],
    )?;
    Ok(())
}

pub fn revoke(db: &mut dyn Db, user: &str, label: &str) -> Result<(), StoreError> {
    write(db, |db| {
        let token = get(db, user, label)?;
        db.execute("DELETE FROM access_tokens WHERE id = ?1", params![token.id])?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use crate::store::sql::testing::on_both_backends;
    use crate::store::sqlite::fixtures::{database_user, directory_user};
    use std::collections::BTreeSet;

    use crate::authz::ProjectSet;
    use crate::store::{NewPersonalToken, StoreError};

    fn new<'a>(
        user: &'a str,
        label: &'a str,
        digest: &'a str,
        projects: Option<&'a [String]>,
    ) -> NewPersonalToken<'a> {
        NewPersonalToken { user, label, digest, actions: "pull", projects, expires_at: None }
    }

    on_both_backends! {
        fn create_login_list_revoke(store) {
            let alice = database_user("alice");
            store.create_user(&alice).unwrap();
            store.create_project("team", false).unwrap();
            let listed = ["team".to_string()];
            let token = store.create_personal_token(&new("alice", "ci", "d1", Some(&listed))).unwrap();
            assert_eq!(token.ceiling().projects, ProjectSet::Only(BTreeSet::from(["team".to_string()])));
            store.create_personal_token(&new("alice", "laptop", "d2", None)).unwrap();
            let again = store.create_personal_token(&new("alice", "ci", "d3", None));
            assert!(matches!(again, Err(StoreError::AlreadyExists { .. })));
            let nobody = store.create_personal_token(&new("bob", "ci", "d4", None));
            assert!(matches!(nobody, Err(StoreError::NotFound { .. })));
            let bad_label = store.create_personal_token(&new("alice", "a b", "d5", None));
            assert!(matches!(bad_label, Err(StoreError::Invalid(_))));
            assert!(store.personal_token_login("alice", "d1").unwrap().is_some());
            assert!(store.personal_token_login("ALICE", "d1").unwrap().is_some(), "the owner's name up to case");
            assert!(store.personal_token_login("bob", "d1").unwrap().is_none(), "only with its owner's name");
            let all = store.personal_token_login("alice", "d2").unwrap().map(|l| l.token.ceiling().projects);
            assert_eq!(all, Some(ProjectSet::All));
            assert_eq!(store.list_personal_tokens(Some("alice")).unwrap().len(), 2);
            store.revoke_personal_token("alice", "ci").unwrap();
            assert!(store.personal_token_login("alice", "d1").unwrap().is_none());
            store.remove_user("alice").unwrap();
            assert!(store.list_personal_tokens(None).unwrap().is_empty(), "tokens go with their user");
        }
    }

    on_both_backends! {
        fn directory_users_without_a_password_can_have_tokens(store) {
            let carol = directory_user("carol");
            store.create_user(&carol).unwrap();
            store.create_personal_token(&new("carol", "ci", "d", None)).unwrap();
            assert!(store.personal_token_login("carol", "d").unwrap().is_some());
        }
    }
}
