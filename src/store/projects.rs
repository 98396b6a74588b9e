//! The `projects` and `project_members` tables: projects, their visibility, and who has which role.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::{directory, now, require_changed, users, StoreError};
use crate::authz::{ProjectAccess, Role};
use crate::token::scope::is_valid_component;

#[derive(Debug, Clone, Serialize)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub public: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub project: String,
    pub user: String,
    pub role: String,
}

/// A project name is the first component of its repositories' names, so it follows the
/// registry's component grammar (lower case, digits, `.`, `_`, `-`) and is at most 255 bytes.
pub fn validate_project_name(name: &str) -> Result<(), StoreError> {
    if name.len() <= 255 && is_valid_component(name) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid project name {name:?}: lower-case letters and digits, separated by '.', '_' or '-'"
        )))
    }
}

pub fn create(connection: &Connection, name: &str, public: bool) -> Result<Project, StoreError> {
    validate_project_name(name)?;
    let inserted = connection.execute(
        "INSERT INTO projects (name, public, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING",
        params![name, public, now()],
    )?;
    if inserted == 0 {
        return Err(StoreError::AlreadyExists { kind: "project", name: name.to_string() });
    }
    get(connection, name)
}

pub fn find(connection: &Connection, name: &str) -> Result<Option<Project>, StoreError> {
    Ok(connection
        .query_row("SELECT id, name, public, created_at FROM projects WHERE name = ?1", [name], |row| {
            Ok(Project { id: row.get(0)?, name: row.get(1)?, public: row.get(2)?, created_at: row.get(3)? })
        })
        .optional()?)
}

pub fn get(connection: &Connection, name: &str) -> Result<Project, StoreError> {
    find(connection, name)?.ok_or_else(|| StoreError::NotFound { kind: "project", name: name.to_string() })
}

pub fn list(connection: &Connection) -> Result<Vec<Project>, StoreError> {
    let mut statement =
        connection.prepare("SELECT id, name, public, created_at FROM projects ORDER BY name")?;
    let projects = statement
        .query_map([], |row| {
            Ok(Project { id: row.get(0)?, name: row.get(1)?, public: row.get(2)?, created_at: row.get(3)? })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(projects)
}

pub fn set_public(connection: &Connection, name: &str, public: bool) -> Result<(), StoreError> {
    require_changed(
        connection.execute("UPDATE projects SET public = ?1 WHERE name = ?2", params![public, name])?,
        "project",
        name.to_string(),
    )
}

/// Removes the project and its memberships. The images stay in the registry's storage; they
/// become reachable again if a project of the same name is created.
pub fn remove(connection: &Connection, name: &str) -> Result<(), StoreError> {
    require_changed(
        connection.execute("DELETE FROM projects WHERE name = ?1", [name])?,
        "project",
        name.to_string(),
    )
}

/// Adds `user` to `project` with `role`, or changes the role of an existing member.
pub fn set_member(connection: &Connection, project: &str, user: &str, role: Role) -> Result<(), StoreError> {
    let project = get(connection, project)?;
    let user = users::get(connection, user)?;
    connection.execute(
        "INSERT INTO project_members (project_id, user_id, role, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role",
        params![project.id, user.id, role.as_str(), now()],
    )?;
    Ok(())
}

pub fn remove_member(connection: &Connection, project: &str, user: &str) -> Result<(), StoreError> {
    let project = get(connection, project)?;
    let user = users::get(connection, user)?;
    require_changed(
        connection.execute(
            "DELETE FROM project_members WHERE project_id = ?1 AND user_id = ?2",
            params![project.id, user.id],
        )?,
        "member",
        format!("{} in {}", user.name, project.name),
    )
}

/// Members of one project, or of every project when `project` is `None`.
pub fn list_members(connection: &Connection, project: Option<&str>) -> Result<Vec<Member>, StoreError> {
    if let Some(project) = project {
        get(connection, project)?;
    }
    let mut statement = connection.prepare(
        "SELECT p.name, u.name, m.role FROM project_members m
           JOIN projects p ON p.id = m.project_id JOIN users u ON u.id = m.user_id
          WHERE ?1 IS NULL OR p.name = ?1 ORDER BY p.name, u.name",
    )?;
    let members = statement
        .query_map([project], |row| {
            Ok(Member { project: row.get(0)?, user: row.get(1)?, role: row.get(2)? })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(members)
}

/// The relation of user `user_id` (or of an anonymous caller, `None`) to the project `name`:
/// `None` when the project does not exist.
pub fn access(
    connection: &Connection,
    name: &str,
    user_id: Option<i64>,
) -> Result<Option<ProjectAccess>, StoreError> {
    let row: Option<(i64, bool, Option<String>)> = connection
        .query_row(
            "SELECT p.id, p.public, m.role FROM projects p
               LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = ?2
              WHERE p.name = ?1",
            params![name, user_id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let Some((project_id, public, role)) = row else { return Ok(None) };
    let direct = role.as_deref().and_then(Role::parse);
    // Roles granted to the user's directory groups add to the direct one; the most capable wins.
    let by_group = match user_id {
        Some(user_id) => directory::best_group_role(connection, project_id, user_id)?,
        None => None,
    };
    Ok(Some(ProjectAccess { public, role: direct.into_iter().chain(by_group).min() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[test]
    fn membership_and_access() {
        let (_dir, store) = test_store();
        store
            .with_connection(|c| {
                let alice = users::create(c, "alice", None, false)?;
                create(c, "team", false)?;
                create(c, "open", true)?;
                assert!(matches!(create(c, "Team", false), Err(StoreError::Invalid(_))));
                assert_eq!(
                    access(c, "team", Some(alice.id))?,
                    Some(ProjectAccess { public: false, role: None })
                );
                set_member(c, "team", "alice", Role::Developer)?;
                assert_eq!(access(c, "team", Some(alice.id))?.and_then(|a| a.role), Some(Role::Developer));
                set_member(c, "team", "alice", Role::Guest)?;
                assert_eq!(access(c, "team", Some(alice.id))?.and_then(|a| a.role), Some(Role::Guest));
                assert_eq!(access(c, "open", None)?, Some(ProjectAccess { public: true, role: None }));
                assert_eq!(access(c, "missing", None)?, None);
                assert_eq!(list_members(c, Some("team"))?.len(), 1);
                users::remove(c, "alice")?;
                assert!(list_members(c, None)?.is_empty(), "memberships go with the user");
                Ok(())
            })
            .unwrap();
    }
}
