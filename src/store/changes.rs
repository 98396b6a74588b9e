//! Reading the `access_changes` log (schema 0004): what changed after the last entry a snapshot
//! took in, as the current rows of the users, projects, robots and tokens the new entries name.
//! Past [`MAX_CHANGES`] entries, or when entries were pruned unseen, a whole new snapshot.

use std::collections::BTreeSet;

use rusqlite::{params, Connection, OptionalExtension};

use super::snapshot::{password_stamp, stored_role, AccessSnapshot, CredentialState};
use super::StoreError;
use crate::authz::Role;

/// Past this many log entries to catch up on, reloading everything is cheaper than row by row.
const MAX_CHANGES: i64 = 5_000;

/// What the database says now about the users and projects named by new log entries.
#[derive(Debug)]
pub enum Changes {
    /// Nothing relevant happened (another table changed, or the log is where we left it).
    None,
    /// The named rows as they are now; `None` for a removed row.
    Rows {
        last_change: i64,
        projects: Vec<(i64, Option<ProjectRow>)>,
        users: Vec<(i64, Option<UserRow>)>,
        /// Robots and personal access tokens (their `version` is set when applied).
        robots: Vec<(i64, Option<CredentialState>)>,
        tokens: Vec<(i64, Option<CredentialState>)>,
    },
    /// Too much changed, or entries were pruned before we read them: a complete new snapshot.
    Everything(Box<AccessSnapshot>),
}

#[derive(Debug)]
pub struct ProjectRow {
    pub(super) name: String,
    pub(super) public: bool,
}

#[derive(Debug)]
pub struct UserRow {
    pub(super) is_admin: bool,
    pub(super) disabled: bool,
    pub(super) password_stamp: u64,
    /// (project ID, role) of each membership.
    pub(super) memberships: Vec<(i64, Role)>,
    /// Keys of the directory groups recorded at the user's last directory login.
    pub(super) groups: Vec<String>,
}

/// What changed after log entry `since`, read in one transaction: the current rows of the users
/// and projects the new entries name, or a whole new snapshot when that is cheaper or needed.
pub fn read_changes(connection: &mut Connection, since: i64) -> Result<Changes, StoreError> {
    let transaction = connection.transaction()?;
    let changes = read_changes_in(&transaction, since)?;
    transaction.finish()?;
    Ok(changes)
}

fn read_changes_in(connection: &Connection, since: i64) -> Result<Changes, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT seq, user_id, project_id, robot_id, token_id FROM access_changes
          WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let entries = statement
        .query_map(params![since, MAX_CHANGES + 1], |row| {
            Ok(Entry {
                seq: row.get(0)?,
                user: row.get(1)?,
                project: row.get(2)?,
                robot: row.get(3)?,
                token: row.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = entries.first().map(|entry| entry.seq) else { return Ok(Changes::None) };
    // Sequence numbers have no holes (AUTOINCREMENT, and a rolled-back insert takes its number
    // back), so a hole means pruned entries this snapshot never saw. An entry naming nothing (a
    // directory group's role) reaches users no entry names.
    let names_nothing =
        |e: &Entry| e.user.is_none() && e.project.is_none() && e.robot.is_none() && e.token.is_none();
    if first != since + 1 || entries.len() as i64 > MAX_CHANGES || entries.iter().any(names_nothing) {
        return Ok(Changes::Everything(Box::new(AccessSnapshot::load_in(connection)?)));
    }
    let last_change = entries.last().map(|entry| entry.seq).unwrap_or(since);
    let user_ids: BTreeSet<i64> = entries.iter().filter_map(|entry| entry.user).collect();
    // A membership entry names its project too, but only the user's list needs reading.
    let project_ids: BTreeSet<i64> =
        entries.iter().filter(|entry| entry.user.is_none()).filter_map(|entry| entry.project).collect();
    let robot_ids: BTreeSet<i64> = entries.iter().filter_map(|entry| entry.robot).collect();
    let token_ids: BTreeSet<i64> = entries.iter().filter_map(|entry| entry.token).collect();

    let mut project = connection.prepare_cached("SELECT name, public FROM projects WHERE id = ?1")?;
    let projects = project_ids
        .into_iter()
        .map(|id| {
            let row = project
                .query_row([id], |row| Ok(ProjectRow { name: row.get(0)?, public: row.get(1)? }))
                .optional()?;
            Ok((id, row))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;

    let mut user =
        connection.prepare_cached("SELECT is_admin, disabled, password_hash FROM users WHERE id = ?1")?;
    let mut members =
        connection.prepare_cached("SELECT project_id, role FROM project_members WHERE user_id = ?1")?;
    let mut groups =
        connection.prepare_cached("SELECT group_key FROM user_directory_groups WHERE user_id = ?1")?;
    let mut users = Vec::with_capacity(user_ids.len());
    for id in user_ids {
        let row = user
            .query_row([id], |row| {
                Ok(UserRow {
                    is_admin: row.get(0)?,
                    disabled: row.get(1)?,
                    password_stamp: password_stamp(row.get::<_, Option<String>>(2)?.as_deref()),
                    memberships: Vec::new(),
                    groups: Vec::new(),
                })
            })
            .optional()?;
        let row = match row {
            None => None,
            Some(mut row) => {
                row.memberships = members
                    .query_map([id], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)))?
                    .filter_map(|member| match member {
                        Ok((project, role)) => stored_role(&role).map(|role| Ok((project, role))),
                        Err(error) => Some(Err(error)),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                row.groups = groups.query_map([id], |row| row.get(0))?.collect::<Result<Vec<_>, _>>()?;
                Some(row)
            }
        };
        users.push((id, row));
    }
    let mut robot = connection.prepare_cached("SELECT disabled, expires_at FROM robots WHERE id = ?1")?;
    let robots = robot_ids
        .into_iter()
        .map(|id| {
            let row = robot
                .query_row([id], |row| {
                    Ok(CredentialState { version: 0, disabled: row.get(0)?, expires_at: row.get(1)? })
                })
                .optional()?;
            Ok((id, row))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let mut token = connection.prepare_cached("SELECT expires_at FROM access_tokens WHERE id = ?1")?;
    let tokens = token_ids
        .into_iter()
        .map(|id| {
            let row = token
                .query_row([id], |row| {
                    Ok(CredentialState { version: 0, disabled: false, expires_at: row.get(0)? })
                })
                .optional()?;
            Ok((id, row))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Changes::Rows { last_change, projects, users, robots, tokens })
}

/// One `access_changes` entry.
struct Entry {
    seq: i64,
    user: Option<i64>,
    project: Option<i64>,
    robot: Option<i64>,
    token: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::ProjectAccess;
    use crate::store::{projects, test_store, users};

    fn role_of(snapshot: &AccessSnapshot, project: &str, user: i64) -> Option<Role> {
        snapshot.project_access(project, Some(user)).and_then(|access| access.role)
    }

    #[test]
    fn follows_changes_row_by_row() {
        let (_dir, store) = test_store();
        let (alice, bob) = store
            .with_connection(|c| {
                let alice = users::create(c, "alice", Some("h1"), false)?;
                let bob = users::create(c, "bob", Some("h1"), false)?;
                projects::create(c, "team", false)?;
                projects::set_member(c, "team", "alice", Role::Developer)?;
                Ok((alice.id, bob.id))
            })
            .unwrap();
        let mut snapshot = store.with_connection(AccessSnapshot::load).unwrap();
        assert_eq!(role_of(&snapshot, "team", alice), Some(Role::Developer));
        assert_eq!(role_of(&snapshot, "team", bob), None);
        let stamp = snapshot.user(alice).unwrap().password_stamp;
        assert_eq!(stamp, password_stamp(Some("h1")));

        let catch_up = |snapshot: &mut AccessSnapshot| {
            let changes = store.with_connection(|c| read_changes(c, snapshot.last_change())).unwrap();
            assert!(!matches!(changes, Changes::Everything(_)), "a few changes are read row by row");
            snapshot.apply(changes).unwrap();
        };
        store
            .with_connection(|c| {
                users::set_password_hash(c, "alice", "h2")?;
                projects::set_member(c, "team", "alice", Role::Guest)?;
                projects::create(c, "open", true)?;
                projects::set_member(c, "open", "bob", Role::Maintainer)?;
                users::set_disabled(c, "bob", true)?;
                Ok(())
            })
            .unwrap();
        catch_up(&mut snapshot);
        assert_ne!(snapshot.user(alice).unwrap().password_stamp, stamp);
        assert_eq!(role_of(&snapshot, "team", alice), Some(Role::Guest));
        assert_eq!(role_of(&snapshot, "open", bob), Some(Role::Maintainer));
        assert!(snapshot.user(bob).unwrap().disabled);
        assert_eq!(snapshot.project_access("open", None), Some(ProjectAccess { public: true, role: None }));

        store
            .with_connection(|c| {
                projects::remove_member(c, "open", "bob")?;
                projects::remove(c, "team")?;
                users::remove(c, "alice")?;
                Ok(())
            })
            .unwrap();
        catch_up(&mut snapshot);
        assert_eq!(role_of(&snapshot, "open", bob), None);
        assert_eq!(snapshot.project_access("team", None), None);
        assert!(snapshot.user(alice).is_none());

        // A project recreated under an old name starts without the old members.
        store
            .with_connection(|c| {
                projects::create(c, "team", false)?;
                Ok(())
            })
            .unwrap();
        catch_up(&mut snapshot);
        assert_eq!(
            snapshot.project_access("team", Some(bob)),
            Some(ProjectAccess { public: false, role: None })
        );
    }

    #[test]
    fn pruned_log_means_a_full_reload() {
        let (_dir, store) = test_store();
        let snapshot = store.with_connection(AccessSnapshot::load).unwrap();
        store
            .with_connection(|c| {
                let transaction = c.transaction()?;
                for i in 0..2_500 {
                    users::create(&transaction, &format!("user{i}"), None, false)?;
                }
                transaction.commit()?;
                Ok(())
            })
            .unwrap();
        let pruned: i64 = store
            .with_connection(|c| Ok(c.query_row("SELECT MIN(seq) FROM access_changes", [], |r| r.get(0))?))
            .unwrap();
        assert!(pruned > 1, "the log keeps itself short");
        let changes = store.with_connection(|c| read_changes(c, snapshot.last_change())).unwrap();
        let Changes::Everything(reloaded) = changes else { panic!("expected a full reload") };
        assert_eq!(reloaded.user_count(), 2_500);
    }

    #[test]
    fn directory_group_roles_count_and_their_grants_reload_everything() {
        use crate::authn::ldap::names::group_key;
        use crate::store::directory::{record_login, remove_group_member, set_group_member, DirectoryLogin};

        let (_dir, store) = test_store();
        let dave = store
            .with_connection(|c| {
                projects::create(c, "team", false)?;
                set_group_member(c, "team", "devs", Role::Developer)?;
                let login = DirectoryLogin {
                    account: "dave".into(),
                    dn: "uid=dave,dc=test".into(),
                    groups: [(group_key("devs"), "devs".to_string())].into(),
                    group_admin: false,
                };
                record_login(c, &login, false)
            })
            .unwrap();
        let mut snapshot = store.with_connection(AccessSnapshot::load).unwrap();
        assert_eq!(role_of(&snapshot, "team", dave.id), Some(Role::Developer), "by group");

        store.with_connection(|c| projects::set_member(c, "team", "dave", Role::Guest)).unwrap();
        let changes = store.with_connection(|c| read_changes(c, snapshot.last_change())).unwrap();
        assert!(matches!(changes, Changes::Rows { .. }));
        snapshot.apply(changes).unwrap();
        assert_eq!(role_of(&snapshot, "team", dave.id), Some(Role::Developer), "the more capable wins");

        store.with_connection(|c| remove_group_member(c, "team", "devs")).unwrap();
        let changes = store.with_connection(|c| read_changes(c, snapshot.last_change())).unwrap();
        assert!(matches!(changes, Changes::Everything(_)), "a group's grant reaches users no entry names");
        snapshot.apply(changes).unwrap();
        assert_eq!(role_of(&snapshot, "team", dave.id), Some(Role::Guest), "only the direct role is left");
    }
}
