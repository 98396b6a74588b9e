//! Every read that feeds the in-memory [`AccessSnapshot`]: the whole load, and what changed after
//! the last `access_changes` entry a snapshot took in (schema 0004), as the current rows of the
//! users, projects, robots and tokens the new entries name. Past [`MAX_CHANGES`] entries, when
//! entries were pruned unseen, or when the database is not the one the snapshot came from (its
//! epoch differs, or its log ends below what the snapshot has seen: a restored backup), a whole
//! new snapshot. Each read also returns the database's epoch (schema 0006).

use std::collections::BTreeSet;

use super::{params, query_opt, query_value, query_vec, transaction, Db, Row, TransactionKind};
use crate::access::{
    AccessSnapshot, Changes, CredentialState, ProjectRow, RobotRow, SnapshotBuilder, UserFacts, UserRow,
};
use crate::authz::Role;
use crate::store::names::fold;
use crate::store::StoreError;

/// Past this many log entries to catch up on, reloading everything is cheaper than row by row.
const MAX_CHANGES: i64 = 5_000;

/// The user columns the snapshot holds, with the admin-group flag of directory users.
const USER_FACTS: &str =
    "SELECT u.id, u.is_admin, COALESCE(d.group_admin, false), u.disabled, u.password_epoch,
                                   d.user_id IS NOT NULL OR u.source = 'ldap'
                            FROM users u LEFT JOIN directory_accounts d ON d.user_id = u.id";

fn user_facts(row: &Row<'_>) -> Result<UserFacts, StoreError> {
    Ok(UserFacts {
        is_admin: row.get(1)?,
        group_admin: row.get(2)?,
        disabled: row.get(3)?,
        password_epoch: row.get(4)?,
        directory: row.get(5)?,
    })
}

fn stored_role(row: &Row<'_>, index: usize) -> Result<Option<Role>, StoreError> {
    row.with_str(index, |role| role.and_then(Role::from_stored))
}

/// Reads everything in one read transaction, so the result is one consistent state, and the
/// epoch it belongs to.
pub fn load(db: &mut dyn Db) -> Result<(AccessSnapshot, String), StoreError> {
    transaction(db, TransactionKind::Read, |db| Ok((load_in(db)?, epoch(db)?)))
}

fn epoch(db: &mut dyn Db) -> Result<String, StoreError> {
    query_value(db, "SELECT epoch FROM store_epoch", &[])
}

fn load_in(db: &mut dyn Db) -> Result<AccessSnapshot, StoreError> {
    let mut builder = SnapshotBuilder::new(last_change(db)?);
    db.query("SELECT id, name, disabled, expires_at FROM robots", &[], &mut |row| {
        builder.robot(row.get(0)?, fold(&row.get::<String>(1)?), row.get(2)?, row.get(3)?);
        Ok(())
    })?;
    db.query("SELECT id, expires_at FROM access_tokens", &[], &mut |row| {
        builder.personal_token(row.get(0)?, row.get(1)?);
        Ok(())
    })?;
    db.query("SELECT id, name, public FROM projects", &[], &mut |row| {
        builder.project(row.get(0)?, ProjectRow { name: row.get(1)?, public: row.get(2)? })?;
        Ok(())
    })?;
    db.query(USER_FACTS, &[], &mut |row| {
        builder.user(row.get(0)?, user_facts(row)?);
        Ok(())
    })?;

    // Roles of directory groups, and the groups of each directory user that have one.
    db.query("SELECT group_key, project_id, role FROM project_group_members", &[], &mut |row| {
        let (project, role) = (row.get(1)?, stored_role(row, 2)?);
        row.with_str(0, |key| builder.group_grant(key.unwrap_or_default(), project, role))
    })?;
    if builder.has_group_grants() {
        db.query("SELECT user_id, group_key FROM user_directory_groups", &[], &mut |row| {
            let user = row.get(0)?;
            row.with_str(1, |key| builder.user_group(user, key.unwrap_or_default()))
        })?;
    }

    // Two passes, so each user's list is allocated once: count per user, then fill.
    db.query("SELECT user_id, COUNT(*) FROM project_members GROUP BY user_id", &[], &mut |row| {
        builder.membership_count(row.get(0)?, usize::try_from(row.get::<i64>(1)?).unwrap_or(0));
        Ok(())
    })?;
    db.query("SELECT user_id, project_id, role FROM project_members", &[], &mut |row| {
        builder.membership(row.get(0)?, row.get(1)?, stored_role(row, 2)?);
        Ok(())
    })?;
    Ok(builder.finish())
}

/// What changed after log entry `since`, read in one transaction: the current rows of the users
/// and projects the new entries name, or a whole new snapshot when that is cheaper or needed.
/// `loaded_epoch` is the epoch the snapshot was read under (`None`: unknown, reload).
pub fn read_changes(
    db: &mut dyn Db,
    since: i64,
    loaded_epoch: Option<&str>,
) -> Result<(Changes, String), StoreError> {
    transaction(db, TransactionKind::Read, |db| {
        let epoch = epoch(db)?;
        let head = last_change(db)?;
        let changes = if loaded_epoch != Some(epoch.as_str()) || head < since {
            tracing::warn!("the database is not the one the snapshot was loaded from (restored or replaced); reloading everything");
            Changes::Everything(Box::new(load_in(db)?))
        } else {
            read_changes_in(db, since)?
        };
        Ok((changes, epoch))
    })
}

fn read_changes_in(db: &mut dyn Db, since: i64) -> Result<Changes, StoreError> {
    let entries = query_vec(
        db,
        "SELECT seq, user_id, project_id, robot_id, token_id, key_id FROM access_changes
          WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        params![since, MAX_CHANGES + 1],
        |row| {
            Ok(Entry {
                seq: row.get(0)?,
                user: row.get(1)?,
                project: row.get(2)?,
                robot: row.get(3)?,
                token: row.get(4)?,
                key: row.get(5)?,
            })
        },
    )?;
    let Some(first) = entries.first().map(|entry| entry.seq) else { return Ok(Changes::None) };
    // Sequence numbers have no holes (SQLite's AUTOINCREMENT takes a rolled-back number back;
    // PostgreSQL's trigger numbers entries under the writers' lock), so a hole means pruned
    // entries this snapshot never saw. An entry naming nothing (a directory group's role)
    // reaches users no entry names.
    let names_nothing = |e: &Entry| {
        e.user.is_none() && e.project.is_none() && e.robot.is_none() && e.token.is_none() && e.key.is_none()
    };
    if first != since + 1 || entries.len() as i64 > MAX_CHANGES || entries.iter().any(names_nothing) {
        return Ok(Changes::Everything(Box::new(load_in(db)?)));
    }
    let last_change = entries.last().map(|entry| entry.seq).unwrap_or(since);
    let user_ids: BTreeSet<i64> = entries.iter().filter_map(|entry| entry.user).collect();
    // A membership entry names its project too, but only the user's list needs reading.
    let project_ids: BTreeSet<i64> =
        entries.iter().filter(|entry| entry.user.is_none()).filter_map(|entry| entry.project).collect();
    let robot_ids: BTreeSet<i64> = entries.iter().filter_map(|entry| entry.robot).collect();
    let token_ids: BTreeSet<i64> = entries.iter().filter_map(|entry| entry.token).collect();
    // The keyring reads the keys itself; the snapshot only notes that they changed.
    let keys_changed = entries.iter().any(|entry| entry.key.is_some());

    let projects = by_id(project_ids, |id| {
        query_opt(db, "SELECT name, public FROM projects WHERE id = ?1", params![id], |row| {
            Ok(ProjectRow { name: row.get(0)?, public: row.get(1)? })
        })
    })?;

    let user_sql = format!("{USER_FACTS} WHERE u.id = ?1");
    let users = by_id(user_ids, |id| {
        let Some(facts) = query_opt(db, &user_sql, params![id], user_facts)? else { return Ok(None) };
        let mut memberships = Vec::new();
        db.query(
            "SELECT project_id, role FROM project_members WHERE user_id = ?1",
            params![id],
            &mut |row| {
                if let Some(role) = stored_role(row, 1)? {
                    memberships.push((row.get(0)?, role));
                }
                Ok(())
            },
        )?;
        let groups = query_vec(
            db,
            "SELECT group_key FROM user_directory_groups WHERE user_id = ?1",
            params![id],
            |row| row.get(0),
        )?;
        Ok(Some(UserRow { facts, memberships, groups }))
    })?;

    // Their `version` is set when applied.
    let robots = by_id(robot_ids, |id| {
        query_opt(db, "SELECT name, disabled, expires_at FROM robots WHERE id = ?1", params![id], |row| {
            Ok(RobotRow {
                folded_name: fold(&row.get::<String>(0)?),
                state: CredentialState { version: 0, disabled: row.get(1)?, expires_at: row.get(2)? },
            })
        })
    })?;
    let personal_tokens = by_id(token_ids, |id| {
        query_opt(db, "SELECT expires_at FROM access_tokens WHERE id = ?1", params![id], |row| {
            Ok(CredentialState { version: 0, disabled: false, expires_at: row.get(0)? })
        })
    })?;
    Ok(Changes::Rows { last_change, projects, users, robots, personal_tokens, keys_changed })
}

/// The current row (or `None`, removed) of each of `ids`, read by `read`.
fn by_id<T>(
    ids: BTreeSet<i64>,
    mut read: impl FnMut(i64) -> Result<Option<T>, StoreError>,
) -> Result<Vec<(i64, Option<T>)>, StoreError> {
    ids.into_iter().map(|id| Ok((id, read(id)?))).collect()
}

fn last_change(db: &mut dyn Db) -> Result<i64, StoreError> {
    query_value(db, "SELECT COALESCE(MAX(seq), 0) FROM access_changes", &[])
}

/// One `access_changes` entry.
struct Entry {
    seq: i64,
    user: Option<i64>,
    project: Option<i64>,
    robot: Option<i64>,
    token: Option<i64>,
    key: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::ProjectAccess;
    use crate::dn::group_key;
    use crate::store::sql::testing::on_both_backends;
    use crate::store::{DirectoryLogin, NewUser, Source, Store};

    fn role_of(snapshot: &AccessSnapshot, project: &str, user: i64) -> Option<Role> {
        snapshot.project_access(project, Some(user)).and_then(|access| access.role)
    }

    fn user(store: &dyn Store, name: &str, hash: Option<&str>) -> i64 {
        let new = NewUser { name, password_hash: hash, is_admin: false, source: Source::Database };
        store.create_user(&new).unwrap().id
    }

    fn catch_up(store: &dyn Store, snapshot: &mut AccessSnapshot) {
        let changes = store.access_changes(snapshot.last_change()).unwrap();
        assert!(!matches!(changes, Changes::Everything(_)), "a few changes are read row by row");
        snapshot.apply(changes).unwrap();
    }

    on_both_backends! {
        fn follows_changes_row_by_row(store) {
            let (alice, bob) = (user(&**store, "alice", Some("h1")), user(&**store, "bob", Some("h1")));
            store.create_project("team", false).unwrap();
            store.set_member("team", "alice", Role::Developer).unwrap();
            let mut snapshot = store.load_access().unwrap();
            assert_eq!(role_of(&snapshot, "team", alice), Some(Role::Developer));
            assert_eq!(role_of(&snapshot, "team", bob), None);
            let epoch = snapshot.user(alice).unwrap().password_epoch();

            store.set_user_password("alice", "h2").unwrap();
            store.set_member("team", "alice", Role::Guest).unwrap();
            store.create_project("open", true).unwrap();
            store.set_member("open", "bob", Role::Maintainer).unwrap();
            store.set_user_disabled("bob", true).unwrap();
            catch_up(&**store, &mut snapshot);
            assert_eq!(snapshot.user(alice).unwrap().password_epoch(), epoch + 1);
            assert_eq!(role_of(&snapshot, "team", alice), Some(Role::Guest));
            assert_eq!(role_of(&snapshot, "open", bob), Some(Role::Maintainer));
            assert!(snapshot.user(bob).unwrap().disabled());
            assert_eq!(snapshot.project_access("open", None), Some(ProjectAccess { public: true, role: None }));

            store.remove_member("open", "bob").unwrap();
            store.remove_project("team").unwrap();
            store.remove_user("alice").unwrap();
            catch_up(&**store, &mut snapshot);
            assert_eq!(role_of(&snapshot, "open", bob), None);
            assert_eq!(snapshot.project_access("team", None), None);
            assert!(snapshot.user(alice).is_none());

            // A project recreated under an old name starts without the old members.
            store.create_project("team", false).unwrap();
            catch_up(&**store, &mut snapshot);
            assert_eq!(
                snapshot.project_access("team", Some(bob)),
                Some(ProjectAccess { public: false, role: None })
            );
        }
    }

    on_both_backends! {
        fn pruned_log_means_a_full_reload(store) {
            let snapshot = store.load_access().unwrap();
            store
                .with_db(|db| {
                    crate::store::sql::write(db, |db| {
                        for i in 0..2_500 {
                            db.execute(
                                "INSERT INTO users (name, created_at, updated_at) VALUES (?1, 0, 0)",
                                params![&format!("user{i}")],
                            )?;
                        }
                        Ok(())
                    })
                })
                .unwrap();
            let pruned: i64 =
                store.with_db(|db| query_value(db, "SELECT MIN(seq) FROM access_changes", &[])).unwrap();
            assert!(pruned > 1, "the log keeps itself short");
            let Changes::Everything(reloaded) = store.access_changes(snapshot.last_change()).unwrap() else {
                panic!("expected a full reload")
            };
            assert_eq!(reloaded.user_count(), 2_500);
        }
    }

    fn directory_login(account: &str, groups: &[&str], group_admin: bool) -> DirectoryLogin {
        DirectoryLogin {
            account: account.into(),
            dn: format!("uid={account},dc=test"),
            entry_id: None,
            password_changed_at: None,
            groups: groups.iter().map(|group| (group_key(group), group.to_string())).collect(),
            group_admin,
        }
    }

    on_both_backends! {
        fn directory_group_roles_count_and_their_grants_reload_everything(store) {
            store.create_project("team", false).unwrap();
            store.set_group_role("team", "devs", Role::Developer).unwrap();
            let dave = store.record_directory_login(&directory_login("dave", &["devs"], false), false).unwrap();
            let mut snapshot = store.load_access().unwrap();
            assert_eq!(role_of(&snapshot, "team", dave.id), Some(Role::Developer), "by group");

            store.set_member("team", "dave", Role::Guest).unwrap();
            catch_up(&**store, &mut snapshot);
            assert_eq!(role_of(&snapshot, "team", dave.id), Some(Role::Developer), "the more capable wins");

            store.remove_group_role("team", "devs").unwrap();
            let changes = store.access_changes(snapshot.last_change()).unwrap();
            assert!(matches!(changes, Changes::Everything(_)), "a group's grant reaches users no entry names");
            snapshot.apply(changes).unwrap();
            assert_eq!(role_of(&snapshot, "team", dave.id), Some(Role::Guest), "only the direct role is left");
        }
    }

    on_both_backends! {
        fn an_admin_groups_say_is_in_the_snapshot_and_followed(store) {
            let carol = store.record_directory_login(&directory_login("carol", &[], true), false).unwrap();
            let mut snapshot = store.load_access().unwrap();
            assert!(snapshot.user(carol.id).unwrap().is_system_admin(), "loaded whole");
            store.record_directory_login(&directory_login("carol", &[], false), false).unwrap();
            catch_up(&**store, &mut snapshot);
            assert!(!snapshot.user(carol.id).unwrap().is_system_admin(), "left the admin group");
            store.record_directory_login(&directory_login("carol", &[], true), false).unwrap();
            catch_up(&**store, &mut snapshot);
            assert!(snapshot.user(carol.id).unwrap().is_system_admin(), "joined it again");
            store.record_directory_login(&directory_login("carol", &[], true), false).unwrap();
            let unchanged = store.access_changes(snapshot.last_change()).unwrap();
            assert!(matches!(unchanged, Changes::None), "a login that changes nothing logs nothing");
        }
    }
}
