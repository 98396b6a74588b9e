//! Directory users and groups in the database (`schema/sqlite/0003_ldap.sql`): recording a directory
//! login (the account, its DN, admin-group status and groups), and roles granted to groups.
//!
//! A directory login records the user (source `ldap`, no password hash) and the groups the
//! directory reported, so that `user list` shows them, direct memberships can be granted to them,
//! and every kind of credential of that user gets the same group roles from the snapshot.

use std::collections::BTreeMap;

use super::{now, params, projects, query_opt, query_vec, require_changed, users, write, Db};
use crate::authz::Role;
use crate::dn::group_key;
use crate::store::names::{validate_group, NameRules};
use crate::store::{
    DirectoryAccount, DirectoryCheck, DirectoryLogin, GroupMember, NewUser, Source, StoreError, User,
};

/// Records a successful directory login: creates the account on first login, replaces its
/// recorded groups when they changed, and notes its DN and admin-group status. An existing
/// database account of that name is used only if `claim_database_account` (directory-first
/// order); otherwise the login is refused with `Invalid`, so that a directory entry can never
/// take over a local account.
pub fn record_login(
    db: &mut dyn Db,
    rules: &NameRules,
    login: &DirectoryLogin,
    claim_database_account: bool,
) -> Result<User, StoreError> {
    let (account, groups) = (login.account.as_str(), &login.groups);
    write(db, |db| {
        let user = match users::find(db, account)? {
            Some(user) => user,
            None => {
                let new =
                    NewUser { name: account, password_hash: None, is_admin: false, source: Source::Ldap };
                users::create(db, rules, &new)?
            }
        };
        if user.source != Source::Ldap && !claim_database_account {
            return Err(StoreError::Refused(format!(
                "directory account {account:?} has the name of a {} user, which the directory may not log in as",
                user.source.as_str()
            )));
        }
        // A system admin of the database (the bootstrap admin among them) is never the directory's
        // to claim: whoever holds a directory entry of that name would become admin.
        if user.source != Source::Ldap && user.is_admin {
            return Err(StoreError::Refused(format!(
                "directory account {account:?} has the name of a database system admin, which the directory may never log in as"
            )));
        }
        replace_groups(db, user.id, groups)?;
        let revoked = note_password_change(db, user.id, login.password_changed_at)?;
        if revoked > 0 {
            tracing::info!(user = %user.name, revoked, "the directory password changed: identity tokens made before the change are revoked");
        }
        let time = now();
        db.execute(
            "INSERT INTO directory_accounts AS d (user_id, dn, group_admin, last_login, checked_at, entry_id)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5)
             ON CONFLICT (user_id) DO UPDATE
                SET dn = excluded.dn, group_admin = excluded.group_admin, last_login = excluded.last_login,
                    checked_at = excluded.checked_at, entry_id = COALESCE(excluded.entry_id, d.entry_id)",
            params![user.id, &login.dn, login.group_admin, time, &login.entry_id],
        )?;
        Ok(user)
    })
}

/// Replaces the recorded groups of `user_id` with `groups`, writing only when they changed (a
/// write would make every server catch up).
fn replace_groups(
    db: &mut dyn Db,
    user_id: i64,
    groups: &BTreeMap<String, String>,
) -> Result<(), StoreError> {
    if recorded_groups(db, user_id)? == *groups {
        return Ok(());
    }
    write(db, |db| {
        db.execute("DELETE FROM user_directory_groups WHERE user_id = ?1", params![user_id])?;
        for (key, name) in groups {
            db.execute(
                "INSERT INTO user_directory_groups (user_id, group_key, group_name) VALUES (?1, ?2, ?3)",
                params![user_id, key, name],
            )?;
        }
        Ok(())
    })
}

/// What the directory last said about `user_id`.
pub fn account(db: &mut dyn Db, user_id: i64) -> Result<Option<DirectoryAccount>, StoreError> {
    query_opt(
        db,
        "SELECT dn, group_admin, checked_at, entry_id, password_changed_at FROM directory_accounts WHERE user_id = ?1",
        params![user_id],
        |row| {
            Ok(DirectoryAccount {
                user_id,
                dn: row.get(0)?,
                group_admin: row.get(1)?,
                checked_at: row.get(2)?,
                entry_id: row.get(3)?,
                password_changed_at: row.get(4)?,
            })
        },
    )
}

/// Records a re-check of `user_id` by DN: its groups and admin status as the directory gave them
/// at `check.checked_at`, and a password change since the last record, which revokes the identity
/// tokens made before it (returned: how many). `NotFound` when no directory login was ever
/// recorded for the user.
pub fn record_check(db: &mut dyn Db, user_id: i64, check: &DirectoryCheck<'_>) -> Result<usize, StoreError> {
    write(db, |db| {
        replace_groups(db, user_id, check.groups)?;
        let revoked = note_password_change(db, user_id, check.password_changed_at)?;
        require_changed(
            db.execute(
                "UPDATE directory_accounts
                    SET group_admin = ?2,
                        checked_at = CASE WHEN checked_at > ?3 THEN checked_at ELSE ?3 END,
                        entry_id = COALESCE(entry_id, ?4)
                  WHERE user_id = ?1",
                params![user_id, check.group_admin, check.checked_at, check.entry_id],
            )?,
            "directory account",
            user_id.to_string(),
        )?;
        Ok(revoked)
    })
}

/// When the directory reports a password change after the one recorded for `user_id` (or, with
/// none recorded, after the user's last directory login: ppolicy sets no time when an entry is
/// added), deletes the user's identity tokens made before it and records the new time. Returns
/// how many went.
fn note_password_change(db: &mut dyn Db, user_id: i64, changed_at: Option<i64>) -> Result<usize, StoreError> {
    let Some(changed_at) = changed_at else { return Ok(0) };
    write(db, |db| {
        let recorded: Option<Option<i64>> = query_opt(
            db,
            "SELECT COALESCE(password_changed_at, last_login) FROM directory_accounts WHERE user_id = ?1",
            params![user_id],
            |row| row.get(0),
        )?;
        let revoked = match recorded.flatten() {
            Some(recorded) if changed_at > recorded => db.execute(
                "DELETE FROM refresh_tokens WHERE user_id = ?1 AND created_at < ?2",
                params![user_id, changed_at],
            )?,
            _ => 0,
        };
        db.execute(
            "UPDATE directory_accounts SET password_changed_at = ?2 WHERE user_id = ?1",
            params![user_id, changed_at],
        )?;
        Ok(revoked)
    })
}

/// Gives a database account the directory had claimed (directory-first order) back to the
/// database, when it is made a system admin, which the directory may never be: its recorded
/// entry and groups go, and so do its identity tokens, which directory logins made. (Personal
/// tokens are made by an operator with the CLI and stay.) `true` when there was a claim.
pub fn release_claim(db: &mut dyn Db, user: &User) -> Result<bool, StoreError> {
    if user.source != Source::Database {
        return Ok(false);
    }
    write(db, |db| {
        let claimed = db.execute("DELETE FROM directory_accounts WHERE user_id = ?1", params![user.id])? > 0;
        if claimed {
            db.execute("DELETE FROM user_directory_groups WHERE user_id = ?1", params![user.id])?;
            db.execute("DELETE FROM refresh_tokens WHERE user_id = ?1", params![user.id])?;
        }
        Ok(claimed)
    })
}

/// Deletes the refresh tokens and personal tokens of `user_id` together.
pub fn revoke_credentials(db: &mut dyn Db, user_id: i64) -> Result<(usize, usize), StoreError> {
    write(db, |db| {
        let refresh_tokens = db.execute("DELETE FROM refresh_tokens WHERE user_id = ?1", params![user_id])?;
        let personal_tokens = db.execute("DELETE FROM access_tokens WHERE user_id = ?1", params![user_id])?;
        Ok((refresh_tokens, personal_tokens))
    })
}

/// The groups recorded at the user's last directory login, key to name.
pub fn recorded_groups(db: &mut dyn Db, user_id: i64) -> Result<BTreeMap<String, String>, StoreError> {
    let rows = query_vec(
        db,
        "SELECT group_key, group_name FROM user_directory_groups WHERE user_id = ?1",
        params![user_id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    Ok(rows.into_iter().collect())
}

/// Grants `role` in `project` to the group `group` (a name or a DN), or changes its role.
pub fn set_group_member(db: &mut dyn Db, project: &str, group: &str, role: Role) -> Result<(), StoreError> {
    let group = validate_group(group)?;
    write(db, |db| {
        let project = projects::get(db, project)?;
        db.execute(
            "INSERT INTO project_group_members (project_id, group_key, group_name, role, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (project_id, group_key) DO UPDATE SET role = excluded.role, group_name = excluded.group_name",
            params![project.id, &group_key(group), group, role.as_str(), now()],
        )?;
        Ok(())
    })
}

/// Removes the grant of `group` in `project`: the one with its key, or one added with exactly
/// this text (a grant stored under the key an earlier DN spelling rule gave it).
pub fn remove_group_member(db: &mut dyn Db, project: &str, group: &str) -> Result<(), StoreError> {
    write(db, |db| {
        let project = projects::get(db, project)?;
        require_changed(
            db.execute(
                "DELETE FROM project_group_members WHERE project_id = ?1 AND (group_key = ?2 OR group_name = ?3)",
                params![project.id, &group_key(group), group],
            )?,
            "group member",
            format!("{group} in {}", project.name),
        )
    })
}

/// Group grants of one project, or of every project when `project` is `None`.
pub fn list_group_members(db: &mut dyn Db, project: Option<&str>) -> Result<Vec<GroupMember>, StoreError> {
    if let Some(project) = project {
        projects::get(db, project)?;
    }
    query_vec(
        db,
        "SELECT p.name, g.group_name, g.role FROM project_group_members g JOIN projects p ON p.id = g.project_id
          WHERE CAST(?1 AS TEXT) IS NULL OR p.name = ?1 ORDER BY p.name, g.group_name",
        params![project],
        |row| Ok(GroupMember { project: row.get(0)?, group: row.get(1)?, role: row.get(2)? }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::testing::{on_both_backends, TestStore};
    use crate::store::sqlite::fixtures::{database_user, directory_user};

    fn groups(pairs: &[&str]) -> BTreeMap<String, String> {
        pairs.iter().map(|group| (group_key(group), group.to_string())).collect()
    }

    fn login(account: &str, names: &[&str]) -> DirectoryLogin {
        DirectoryLogin {
            account: account.to_string(),
            dn: format!("uid={account},ou=people,dc=example,dc=org"),
            entry_id: None,
            password_changed_at: None,
            groups: groups(names),
            group_admin: names.contains(&"admins"),
        }
    }

    fn group_admin(store: &TestStore, user_id: i64) -> bool {
        store
            .with_db(|db| {
                crate::store::sql::query_value(
                    db,
                    "SELECT group_admin FROM directory_accounts WHERE user_id = ?1",
                    params![user_id],
                )
            })
            .unwrap()
    }

    on_both_backends! {
        fn first_login_creates_an_ldap_user_and_records_groups(store) {
            let recorded = |id| store.with_db(|db| recorded_groups(db, id)).unwrap();
            let first = login("carol", &["devs", "cn=devs,ou=groups,dc=example,dc=org"]);
            let user = store.record_directory_login(&first, false).unwrap();
            assert_eq!(user.source, Source::Ldap);
            assert!(user.password_hash.is_none());
            assert_eq!(recorded(user.id).len(), 2);
            let again = store.record_directory_login(&login("carol", &["ops"]), false).unwrap();
            assert_eq!(again.id, user.id);
            assert_eq!(recorded(user.id), groups(&["ops"]), "groups are replaced, not added");
            assert!(!group_admin(store, user.id));
            store.record_directory_login(&login("carol", &["admins"]), false).unwrap();
            assert!(group_admin(store, user.id), "kept for credentials the directory does not see");
        }
    }

    on_both_backends! {
        fn a_directory_login_finds_its_account_up_to_case(store) {
            let new = directory_user("Alice");
            let created = store.create_user(&new).unwrap();
            let logged_in = store.record_directory_login(&login("alice", &[]), false).unwrap();
            assert_eq!((logged_in.id, logged_in.name.as_str()), (created.id, "Alice"));
        }
    }

    on_both_backends! {
        fn directory_cannot_take_over_a_database_account_unless_directory_first(store) {
            store.create_user(&database_user("ci")).unwrap();
            let refused = store.record_directory_login(&login("ci", &[]), false);
            assert!(matches!(refused, Err(StoreError::Refused(_))), "{refused:?}");
            let claimed = store.record_directory_login(&login("ci", &["devs"]), true).unwrap();
            assert_eq!(claimed.source, Source::Database);
        }
    }

    on_both_backends! {
        fn directory_never_claims_a_database_admin(store) {
            let admin = store.create_user(&NewUser { is_admin: true, ..database_user("admin") }).unwrap();
            let refused = store.record_directory_login(&login("admin", &["admins"]), true);
            assert!(matches!(refused, Err(StoreError::Refused(_))), "{refused:?}");
            assert_eq!(store.directory_account(admin.id).unwrap(), None, "nothing recorded");
        }
    }

    on_both_backends! {
        fn making_a_claimed_account_admin_gives_it_back_to_the_database(store) {
            let ci = store.create_user(&database_user("ci")).unwrap();
            store.record_directory_login(&login("ci", &["devs"]), true).unwrap();
            assert!(store.directory_account(ci.id).unwrap().is_some());
            store.set_user_admin("ci", true).unwrap();
            assert_eq!(store.directory_account(ci.id).unwrap(), None, "no longer the directory's");
            assert!(store.with_db(|db| recorded_groups(db, ci.id)).unwrap().is_empty());
        }
    }

    fn check<'a>(
        groups: &'a BTreeMap<String, String>,
        checked_at: i64,
        password_changed_at: Option<i64>,
    ) -> DirectoryCheck<'a> {
        DirectoryCheck { entry_id: None, password_changed_at, groups, group_admin: false, checked_at }
    }

    on_both_backends! {
        fn a_check_refreshes_groups_and_time_and_revocation_takes_every_token(store) {
            let user = store.record_directory_login(&login("carol", &["admins"]), false).unwrap();
            let first = store.directory_account(user.id).unwrap().unwrap();
            assert!(first.group_admin && first.checked_at > 0);
            assert_eq!(first.dn, "uid=carol,ou=people,dc=example,dc=org");
            let ops = groups(&["ops"]);
            store.record_directory_check(user.id, &check(&ops, first.checked_at + 500, None)).unwrap();
            let checked = store.directory_account(user.id).unwrap().unwrap();
            assert_eq!((checked.group_admin, checked.checked_at), (false, first.checked_at + 500));
            assert_eq!(store.with_db(|db| recorded_groups(db, user.id)).unwrap(), ops);
            store.record_directory_check(user.id, &check(&ops, first.checked_at, None)).unwrap();
            assert_eq!(
                store.directory_account(user.id).unwrap().unwrap().checked_at,
                first.checked_at + 500,
                "an older check never moves the time back"
            );
            assert!(matches!(
                store.record_directory_check(user.id + 100, &check(&BTreeMap::new(), 1, None)),
                Err(StoreError::NotFound { .. })
            ));
            assert_eq!(store.revoke_user_credentials(user.id).unwrap(), (0, 0));
        }
    }

    on_both_backends! {
        fn a_later_password_change_revokes_the_identity_tokens_made_before_it(store) {
            let user = store.record_directory_login(&login("carol", &[]), false).unwrap();
            let token = |digest: &str, created_at: i64| {
                let new = crate::store::NewRefreshToken {
                    digest,
                    user_id: user.id,
                    service: "registry",
                    client_id: "docker",
                    created_at,
                    idle_before: 0,
                    created_before: 0,
                    keep_at_most: 10,
                };
                store.create_refresh_token(&new).unwrap();
            };
            token("old", 1000);
            token("new", 3000);
            let none = groups(&[]);
            assert_eq!(
                store.record_directory_check(user.id, &check(&none, 4000, Some(2000))).unwrap(),
                0,
                "first seen"
            );
            assert_eq!(
                store.record_directory_check(user.id, &check(&none, 4001, Some(2000))).unwrap(),
                0,
                "same"
            );
            assert_eq!(
                store.record_directory_check(user.id, &check(&none, 4002, Some(2500))).unwrap(),
                1,
                "changed"
            );
            let left: Vec<String> = store
                .list_refresh_tokens(Some("carol"))
                .unwrap()
                .into_iter()
                .map(|t| t.created_at.to_string())
                .collect();
            assert_eq!(left, ["3000"], "the one made after the change stays");
        }
    }

    on_both_backends! {
        fn a_directory_login_never_takes_a_robots_name(store) {
            let refused = store.record_directory_login(&login("robot_team+ci", &[]), false);
            assert!(matches!(refused, Err(StoreError::Invalid(_))), "{refused:?}");
        }
    }

    on_both_backends! {
        fn group_grants_by_name_or_dn_list_and_remove(store) {
            store.create_project("team", false).unwrap();
            store.set_group_role("team", "qa", Role::Guest).unwrap();
            store.set_group_role("team", "cn=devs, ou=groups, dc=example, dc=org", Role::Developer).unwrap();
            assert_eq!(store.list_group_roles(Some("team")).unwrap().len(), 2);
            store.remove_group_role("team", "CN=Devs,OU=Groups,DC=Example,DC=org").unwrap();
            assert_eq!(store.list_group_roles(None).unwrap().len(), 1, "the DN matched in another spelling");
            assert!(matches!(store.remove_group_role("team", "nope"), Err(StoreError::NotFound { .. })));
            assert!(matches!(
                store.set_group_role("missing", "qa", Role::Guest),
                Err(StoreError::NotFound { .. })
            ));
            assert!(matches!(store.set_group_role("team", " ", Role::Guest), Err(StoreError::Invalid(_))));
        }
    }

    on_both_backends! {
        fn a_grant_keyed_by_an_older_dn_spelling_can_still_be_removed(store) {
            store.create_project("team", false).unwrap();
            let typed = "cn=a\\2Cb,ou=groups,dc=org";
            store
                .with_db(|c| {
                    let project = projects::get(c, "team")?;
                    c.execute(
                        "INSERT INTO project_group_members (project_id, group_key, group_name, role, created_at)
                         VALUES (?1, 'dn:cn=a\\2cb,ou=groups,dc=org', ?2, 'guest', 0)",
                        params![project.id, typed],
                    )?;
                    Ok(())
                })
                .unwrap();
            store.remove_group_role("team", typed).unwrap();
            assert!(store.list_group_roles(None).unwrap().is_empty());
        }
    }
}
