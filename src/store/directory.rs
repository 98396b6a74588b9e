//! Directory users and groups in the database (`schema/0003_ldap.sql`): recording a directory
//! login, roles granted to groups, and the best group role a user has in a project.
//!
//! A directory login records the user (source `ldap`, no password hash) and the groups the
//! directory reported, so that `user list` shows them, direct memberships can be granted to them,
//! and project access by group is one indexed query away for every kind of credential.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use super::{now, projects, require_changed, users, StoreError, User};
use crate::authn::ldap::names::group_key;
use crate::authz::Role;

/// The `users.source` of accounts that authenticate against the directory.
pub const LDAP_SOURCE: &str = "ldap";
/// The `users.source` of accounts with a password hash in the database.
pub const DATABASE_SOURCE: &str = "database";

/// A project role granted to a directory group.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupMember {
    pub project: String,
    /// The group as it was granted: a name or a DN.
    pub group: String,
    pub role: String,
}

/// Creates a directory account ahead of its first login, so memberships can be granted to it.
pub fn create_ldap_user(connection: &Connection, name: &str) -> Result<User, StoreError> {
    users::validate_user_name(name)?;
    let time = now();
    let inserted = connection.execute(
        "INSERT INTO users (name, password_hash, is_admin, source, created_at, updated_at)
         VALUES (?1, NULL, 0, ?2, ?3, ?3) ON CONFLICT (name) DO NOTHING",
        params![name, LDAP_SOURCE, time],
    )?;
    if inserted == 0 {
        return Err(StoreError::AlreadyExists { kind: "user", name: name.to_string() });
    }
    users::get(connection, name)
}

/// What a directory login proved, to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryLogin {
    /// The Portcullis user name: the entry's login attribute value.
    pub account: String,
    /// The entry's DN.
    pub dn: String,
    /// The user's groups, key to name (see `group_key`); two keys per group, DN and name.
    pub groups: BTreeMap<String, String>,
    /// Whether an admin group made the user a system admin.
    pub group_admin: bool,
}

/// Records a successful directory login: creates the account on first login, replaces its
/// recorded groups when they changed, and notes its DN and admin-group status. An existing
/// database account of that name is used only if `claim_database_account` (directory-first
/// order); otherwise the login is refused with `Invalid`, so that a directory entry can never
/// take over a local account.
pub fn record_login(
    connection: &mut Connection,
    login: &DirectoryLogin,
    claim_database_account: bool,
) -> Result<User, StoreError> {
    let (account, groups) = (login.account.as_str(), &login.groups);
    let user = match users::find(connection, account)? {
        Some(user) => user,
        None => match create_ldap_user(connection, account) {
            // Two first logins at once: the other one created it.
            Err(StoreError::AlreadyExists { .. }) => users::get(connection, account)?,
            other => other?,
        },
    };
    if user.source != LDAP_SOURCE && !claim_database_account {
        return Err(StoreError::Invalid(format!(
            "directory account {account:?} has the name of a {} user, which the directory may not log in as",
            user.source
        )));
    }
    if recorded_groups(connection, user.id)? != *groups {
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        transaction.execute("DELETE FROM user_directory_groups WHERE user_id = ?1", [user.id])?;
        for (key, name) in groups {
            transaction.execute(
                "INSERT INTO user_directory_groups (user_id, group_key, group_name) VALUES (?1, ?2, ?3)",
                params![user.id, key, name],
            )?;
        }
        transaction.commit()?;
    }
    connection.execute(
        "INSERT INTO directory_accounts (user_id, dn, group_admin, last_login) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id) DO UPDATE
            SET dn = excluded.dn, group_admin = excluded.group_admin, last_login = excluded.last_login",
        params![user.id, login.dn, login.group_admin, now()],
    )?;
    Ok(user)
}

/// Whether the user's last directory login found them in an admin group: what makes them a
/// system admin when they present a credential the directory does not see (a refresh token).
pub fn group_admin(connection: &Connection, user_id: i64) -> Result<bool, StoreError> {
    let mut statement =
        connection.prepare_cached("SELECT group_admin FROM directory_accounts WHERE user_id = ?1")?;
    Ok(statement.query_row([user_id], |row| row.get(0)).optional()?.unwrap_or(false))
}

/// The groups recorded at the user's last directory login, key to name.
pub fn recorded_groups(
    connection: &Connection,
    user_id: i64,
) -> Result<BTreeMap<String, String>, StoreError> {
    let mut statement = connection
        .prepare_cached("SELECT group_key, group_name FROM user_directory_groups WHERE user_id = ?1")?;
    let rows = statement.query_map([user_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Grants `role` in `project` to the group `group` (a name or a DN), or changes its role.
pub fn set_group_member(
    connection: &Connection,
    project: &str,
    group: &str,
    role: Role,
) -> Result<(), StoreError> {
    let group = group.trim();
    if group.is_empty() || group.len() > 1024 || group.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "invalid group {group:?}: a group name or DN of 1 to 1024 printable characters"
        )));
    }
    let project = projects::get(connection, project)?;
    connection.execute(
        "INSERT INTO project_group_members (project_id, group_key, group_name, role, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (project_id, group_key) DO UPDATE SET role = excluded.role, group_name = excluded.group_name",
        params![project.id, group_key(group), group, role.as_str(), now()],
    )?;
    Ok(())
}

pub fn remove_group_member(connection: &Connection, project: &str, group: &str) -> Result<(), StoreError> {
    let project = projects::get(connection, project)?;
    require_changed(
        connection.execute(
            "DELETE FROM project_group_members WHERE project_id = ?1 AND group_key = ?2",
            params![project.id, group_key(group)],
        )?,
        "group member",
        format!("{group} in {}", project.name),
    )
}

/// Group grants of one project, or of every project when `project` is `None`.
pub fn list_group_members(
    connection: &Connection,
    project: Option<&str>,
) -> Result<Vec<GroupMember>, StoreError> {
    if let Some(project) = project {
        projects::get(connection, project)?;
    }
    let mut statement = connection.prepare(
        "SELECT p.name, g.group_name, g.role FROM project_group_members g JOIN projects p ON p.id = g.project_id
          WHERE ?1 IS NULL OR p.name = ?1 ORDER BY p.name, g.group_name",
    )?;
    let members = statement
        .query_map([project], |row| {
            Ok(GroupMember { project: row.get(0)?, group: row.get(1)?, role: row.get(2)? })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(members)
}

/// The most capable role `user_id` holds in the project `project_id` through their recorded
/// groups. Roles nest (each allows all that the next one does), so the most capable one is the
/// union of what all of them allow.
pub fn best_group_role(
    connection: &Connection,
    project_id: i64,
    user_id: i64,
) -> Result<Option<Role>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT g.role FROM project_group_members g
           JOIN user_directory_groups u ON u.group_key = g.group_key
          WHERE g.project_id = ?1 AND u.user_id = ?2",
    )?;
    let roles = statement.query_map([project_id, user_id], |row| row.get::<_, String>(0))?;
    let mut best: Option<Role> = None;
    for role in roles {
        if let Some(role) = Role::parse(&role?) {
            // `Role`'s order runs from project admin (most capable) down to limited guest.
            best = Some(best.map_or(role, |current| current.min(role)));
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{DELETE, PULL, PUSH};
    use crate::store::test_store;

    fn groups(pairs: &[&str]) -> BTreeMap<String, String> {
        pairs.iter().map(|group| (group_key(group), group.to_string())).collect()
    }

    fn login(account: &str, names: &[&str]) -> DirectoryLogin {
        DirectoryLogin {
            account: account.to_string(),
            dn: format!("uid={account},ou=people,dc=example,dc=org"),
            groups: groups(names),
            group_admin: names.contains(&"admins"),
        }
    }

    #[test]
    fn first_login_creates_an_ldap_user_and_records_groups() {
        let (_dir, store) = test_store();
        store
            .with_connection(|c| {
                let user = record_login(
                    c,
                    &login("carol", &["devs", "cn=devs,ou=groups,dc=example,dc=org"]),
                    false,
                )?;
                assert_eq!(user.source, LDAP_SOURCE);
                assert!(user.password_hash.is_none());
                assert_eq!(recorded_groups(c, user.id)?.len(), 2);
                let again = record_login(c, &login("carol", &["ops"]), false)?;
                assert_eq!(again.id, user.id);
                assert_eq!(recorded_groups(c, user.id)?, groups(&["ops"]), "groups are replaced, not added");
                assert!(!group_admin(c, user.id)?);
                record_login(c, &login("carol", &["admins"]), false)?;
                assert!(group_admin(c, user.id)?, "remembered for credentials the directory does not see");
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn directory_cannot_take_over_a_database_account_unless_directory_first() {
        let (_dir, store) = test_store();
        store
            .with_connection(|c| {
                users::create(c, "admin", Some("$argon2id$x"), true)?;
                assert!(matches!(record_login(c, &login("admin", &[]), false), Err(StoreError::Invalid(_))));
                let admin = record_login(c, &login("admin", &["devs"]), true)?;
                assert_eq!(admin.source, DATABASE_SOURCE);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn group_roles_match_by_name_or_dn_and_the_best_wins() {
        let (_dir, store) = test_store();
        store
            .with_connection(|c| {
                let team = projects::create(c, "team", false)?;
                let user = record_login(
                    c,
                    &login("dave", &["Devs", "CN=Devs,OU=Groups,DC=example,DC=org", "qa"]),
                    false,
                )?;
                assert_eq!(best_group_role(c, team.id, user.id)?, None);
                set_group_member(c, "team", "qa", Role::Guest)?;
                assert_eq!(best_group_role(c, team.id, user.id)?, Some(Role::Guest));
                set_group_member(c, "team", "cn=devs, ou=groups, dc=example, dc=org", Role::Developer)?;
                assert_eq!(best_group_role(c, team.id, user.id)?, Some(Role::Developer));
                assert_eq!(list_group_members(c, Some("team"))?.len(), 2);
                remove_group_member(c, "team", "CN=Devs,OU=Groups,DC=Example,DC=org")?;
                assert_eq!(best_group_role(c, team.id, user.id)?, Some(Role::Guest));
                assert!(matches!(remove_group_member(c, "team", "nope"), Err(StoreError::NotFound { .. })));
                assert!(matches!(
                    set_group_member(c, "missing", "qa", Role::Guest),
                    Err(StoreError::NotFound { .. })
                ));
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn roles_nest_so_the_smallest_is_the_union() {
        // best_group_role keeps one role; that is only right while each role allows everything
        // the roles after it (in `Role`'s order) allow.
        for pair in Role::ALL.windows(2) {
            for action in [PULL, PUSH, DELETE] {
                assert!(pair[0].allows(action) || !pair[1].allows(action), "{pair:?} {action}");
            }
            assert!(pair[0] < pair[1]);
        }
    }
}
