//! The `projects` and `project_members` tables: projects, their visibility, and who has which role.

use super::{delete_named, now, params, query_opt, query_vec, require_changed, users, write, Db, Row};
use crate::authz::Role;
use crate::store::names::validate_project_name;
use crate::store::{Member, Project, StoreError};

fn from_row(row: &Row<'_>) -> Result<Project, StoreError> {
    Ok(Project { id: row.get(0)?, name: row.get(1)?, public: row.get(2)?, created_at: row.get(3)? })
}

pub fn create(db: &mut dyn Db, name: &str, public: bool) -> Result<Project, StoreError> {
    validate_project_name(name)?;
    write(db, |db| {
        let inserted = db.execute(
            "INSERT INTO projects (name, public, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING",
            params![name, public, now()],
        )?;
        if inserted == 0 {
            return Err(StoreError::AlreadyExists { kind: "project", name: name.to_string() });
        }
        get(db, name)
    })
}

pub fn find(db: &mut dyn Db, name: &str) -> Result<Option<Project>, StoreError> {
    query_opt(
        db,
        "SELECT id, name, public, created_at FROM projects WHERE name = ?1",
        params![name],
        from_row,
    )
}

pub fn get(db: &mut dyn Db, name: &str) -> Result<Project, StoreError> {
    find(db, name)?.ok_or_else(|| StoreError::NotFound { kind: "project", name: name.to_string() })
}

pub fn list(db: &mut dyn Db) -> Result<Vec<Project>, StoreError> {
    query_vec(db, "SELECT id, name, public, created_at FROM projects ORDER BY name", &[], from_row)
}

pub fn set_public(db: &mut dyn Db, name: &str, public: bool) -> Result<(), StoreError> {
    let changed =
        write(db, |db| db.execute("UPDATE projects SET public = ?1 WHERE name = ?2", params![public, name]))?;
    require_changed(changed, "project", name.to_string())
}

/// Removes the project and its memberships. The images stay in the registry's storage; they
/// become reachable again if a project of the same name is created.
pub fn remove(db: &mut dyn Db, name: &str) -> Result<(), StoreError> {
    delete_named(db, ("projects", "project"), name)
}

/// Adds `user` to `project` with `role`, or changes the role of an existing member.
pub fn set_member(db: &mut dyn Db, project: &str, user: &str, role: Role) -> Result<(), StoreError> {
    write(db, |db| {
        let project = get(db, project)?;
        let user = users::get(db, user)?;
        put_member(db, project.id, user.id, role)
    })
}

/// Makes user `user_id` a member of project `project_id` with `role`, or changes their role.
pub fn put_member(db: &mut dyn Db, project_id: i64, user_id: i64, role: Role) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO project_members (project_id, user_id, role, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role",
        params![project_id, user_id, role.as_str(), now()],
    )?;
    Ok(())
}

pub fn remove_member(db: &mut dyn Db, project: &str, user: &str) -> Result<(), StoreError> {
    write(db, |db| {
        let project = get(db, project)?;
        let user = users::get(db, user)?;
        require_changed(
            db.execute(
                "DELETE FROM project_members WHERE project_id = ?1 AND user_id = ?2",
                params![project.id, user.id],
            )?,
            "member",
            format!("{} in {}", user.name, project.name),
        )
    })
}

/// Members of one project, or of every project when `project` is `None`.
pub fn list_members(db: &mut dyn Db, project: Option<&str>) -> Result<Vec<Member>, StoreError> {
    if let Some(project) = project {
        get(db, project)?;
    }
    query_vec(
        db,
        "SELECT p.name, u.name, m.role FROM project_members m
           JOIN projects p ON p.id = m.project_id JOIN users u ON u.id = m.user_id
          WHERE CAST(?1 AS TEXT) IS NULL OR p.name = ?1 ORDER BY p.name, u.name",
        params![project],
        |row| Ok(Member { project: row.get(0)?, user: row.get(1)?, role: row.get(2)? }),
    )
}

#[cfg(test)]
mod tests {
    use crate::authz::Role;
    use crate::store::sql::testing::on_both_backends;
    use crate::store::sqlite::fixtures::database_user;
    use crate::store::StoreError;

    on_both_backends! {
        fn projects_and_members(store) {
            let new = database_user("alice");
            store.create_user(&new).unwrap();
            store.create_project("team", false).unwrap();
            store.create_project("open", true).unwrap();
            assert!(matches!(store.create_project("Team", false), Err(StoreError::Invalid(_))));
            assert!(matches!(store.create_project("team", true), Err(StoreError::AlreadyExists { .. })));
            store.set_member("team", "alice", Role::Developer).unwrap();
            store.set_member("team", "Alice", Role::Guest).unwrap();
            let members = store.list_members(Some("team")).unwrap();
            assert_eq!((members.len(), members[0].role.as_str()), (1, "guest"), "a role is changed, not added");
            assert!(matches!(
                store.set_member("missing", "alice", Role::Guest),
                Err(StoreError::NotFound { .. })
            ));
            store.set_project_public("team", true).unwrap();
            assert!(store.list_projects().unwrap().iter().all(|project| project.public));
            store.remove_user("alice").unwrap();
            assert!(store.list_members(None).unwrap().is_empty(), "memberships go with the user");
            store.remove_project("open").unwrap();
            assert!(matches!(store.remove_project("open"), Err(StoreError::NotFound { .. })));
        }
    }
}
