//! The `robots` and `robot_projects` tables: robot accounts, their permission lists and secrets.
//!
//! A project robot belongs to one project and goes when the project goes. A system robot covers
//! every project or a list of them; a removed project drops out of the list.

use std::collections::BTreeSet;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::{delete_named, now, projects, update_named, users, StoreError};
use crate::authz::{Ceiling, ProjectSet};

/// A robot account as stored and listed (the secret digest stays inside this module's queries).
#[derive(Debug, Clone, Serialize)]
pub struct Robot {
    pub id: i64,
    /// The full login name, prefix included.
    pub name: String,
    /// The project of a project robot; `None` for a system robot.
    pub project: Option<String>,
    /// A system robot's projects: every one, or the listed ones.
    pub all_projects: bool,
    pub projects: Vec<String>,
    /// `pull,push,delete` or a part of it.
    pub actions: String,
    pub description: String,
    pub disabled: bool,
    /// Seconds since the epoch; `None` never expires.
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

impl Robot {
    /// The permission list as the ceiling authorization applies.
    pub fn ceiling(&self) -> Ceiling {
        let projects = match (&self.project, self.all_projects) {
            (Some(project), _) => ProjectSet::Only(BTreeSet::from([project.clone()])),
            (None, true) => ProjectSet::All,
            (None, false) => ProjectSet::Only(self.projects.iter().cloned().collect()),
        };
        let actions = self.actions.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect();
        Ceiling { projects, actions }
    }

    /// Where the robot may act, for people: `team`, `all projects`, `a,b`.
    pub fn scope_text(&self) -> String {
        self.ceiling().projects.to_string()
    }
}

/// What a new robot is.
pub struct NewRobot<'a> {
    pub name: &'a str,
    /// `Some` for a project robot.
    pub project: Option<&'a str>,
    /// For a system robot: `None` for every project, else the list.
    pub system_projects: Option<&'a [String]>,
    pub actions: &'a str,
    pub description: &'a str,
    pub expires_at: Option<i64>,
    pub secret_digest: &'a str,
}

const COLUMNS: &str = "r.id, r.name, p.name, r.all_projects, r.actions, r.description, r.disabled,
                       r.expires_at, r.created_at, r.secret_digest";

fn from_row(row: &Row<'_>) -> rusqlite::Result<(Robot, String)> {
    Ok((
        Robot {
            id: row.get(0)?,
            name: row.get(1)?,
            project: row.get(2)?,
            all_projects: row.get(3)?,
            projects: Vec::new(),
            actions: row.get(4)?,
            description: row.get(5)?,
            disabled: row.get(6)?,
            expires_at: row.get(7)?,
            created_at: row.get(8)?,
        },
        row.get(9)?,
    ))
}

fn with_projects(connection: &Connection, mut robot: Robot) -> Result<Robot, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT p.name FROM robot_projects rp JOIN projects p ON p.id = rp.project_id
          WHERE rp.robot_id = ?1 ORDER BY p.name",
    )?;
    robot.projects = statement.query_map([robot.id], |row| row.get(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(robot)
}

/// Creates a robot. Its name must be free among robots and users alike: the two share the
/// `username` of docker login.
pub fn create(connection: &Connection, new: &NewRobot<'_>) -> Result<Robot, StoreError> {
    let transaction = connection.unchecked_transaction()?;
    if users::find(&transaction, new.name)?.is_some() || find(&transaction, new.name)?.is_some() {
        return Err(StoreError::AlreadyExists { kind: "user or robot", name: new.name.to_string() });
    }
    let project_id = match new.project {
        Some(project) => Some(projects::get(&transaction, project)?.id),
        None => None,
    };
    let mut listed = Vec::new();
    for project in new.system_projects.unwrap_or_default() {
        listed.push(projects::get(&transaction, project)?.id);
    }
    let all_projects = new.project.is_none() && new.system_projects.is_none();
    let time = now();
    transaction.execute(
        "INSERT INTO robots (name, project_id, all_projects, actions, secret_digest, description,
                             expires_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        params![
            new.name,
            project_id,
            all_projects,
            new.actions,
            new.secret_digest,
            new.description,
            new.expires_at,
            time
        ],
    )?;
    let robot_id = transaction.last_insert_rowid();
    for project_id in listed {
        transaction.execute(
            "INSERT OR IGNORE INTO robot_projects (robot_id, project_id) VALUES (?1, ?2)",
            params![robot_id, project_id],
        )?;
    }
    let robot = get(&transaction, new.name)?;
    transaction.commit()?;
    Ok(robot)
}

/// The robot called `name` and its secret digest, for logging in.
pub fn login(connection: &Connection, name: &str) -> Result<Option<(Robot, String)>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM robots r LEFT JOIN projects p ON p.id = r.project_id WHERE r.name = ?1"
    );
    let found = connection.prepare_cached(&sql)?.query_row([name], from_row).optional()?;
    match found {
        Some((robot, digest)) => Ok(Some((with_projects(connection, robot)?, digest))),
        None => Ok(None),
    }
}

pub fn find(connection: &Connection, name: &str) -> Result<Option<Robot>, StoreError> {
    Ok(login(connection, name)?.map(|(robot, _)| robot))
}

pub fn get(connection: &Connection, name: &str) -> Result<Robot, StoreError> {
    find(connection, name)?.ok_or_else(|| StoreError::NotFound { kind: "robot", name: name.to_string() })
}

/// Robots of one project (its project robots and the system robots that reach it), or all.
pub fn list(connection: &Connection, project: Option<&str>) -> Result<Vec<Robot>, StoreError> {
    if let Some(project) = project {
        projects::get(connection, project)?;
    }
    let sql =
        format!("SELECT {COLUMNS} FROM robots r LEFT JOIN projects p ON p.id = r.project_id ORDER BY r.name");
    let mut statement = connection.prepare(&sql)?;
    let rows = statement.query_map([], from_row)?.collect::<Result<Vec<_>, _>>()?;
    let mut robots = Vec::new();
    for (robot, _) in rows {
        let robot = with_projects(connection, robot)?;
        let reaches = match project {
            None => true,
            Some(project) => {
                robot.project.as_deref() == Some(project)
                    || (robot.project.is_none()
                        && (robot.all_projects || robot.projects.iter().any(|p| p == project)))
            }
        };
        if reaches {
            robots.push(robot);
        }
    }
    Ok(robots)
}

/// Updates one robot and fails with NotFound when there is none of that name.
fn update(
    connection: &Connection,
    name: &str,
    column: &str,
    value: &dyn rusqlite::ToSql,
) -> Result<(), StoreError> {
    update_named(connection, ("robots", "robot"), name, column, value)
}

pub fn set_disabled(connection: &Connection, name: &str, disabled: bool) -> Result<(), StoreError> {
    update(connection, name, "disabled", &disabled)
}

/// Replaces the secret: the old one stops working at the next token request.
pub fn set_secret_digest(connection: &Connection, name: &str, digest: &str) -> Result<(), StoreError> {
    update(connection, name, "secret_digest", &digest)
}

pub fn remove(connection: &Connection, name: &str) -> Result<(), StoreError> {
    delete_named(connection, ("robots", "robot"), name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    fn new<'a>(name: &'a str, project: Option<&'a str>, listed: Option<&'a [String]>) -> NewRobot<'a> {
        NewRobot {
            name,
            project,
            system_projects: listed,
            actions: "pull,push",
            description: "",
            expires_at: None,
            secret_digest: "d",
        }
    }

    #[test]
    fn project_and_system_robots_and_their_ceilings() {
        let (_dir, store) = test_store();
        store
            .with_connection(|c| {
                projects::create(c, "team", false)?;
                projects::create(c, "other", false)?;
                let ci = create(c, &new("robot_team+ci", Some("team"), None))?;
                assert_eq!(ci.ceiling().projects, ProjectSet::Only(BTreeSet::from(["team".to_string()])));
                let all = create(c, &new("robot_mirror", None, None))?;
                assert_eq!(all.ceiling().projects, ProjectSet::All);
                let listed = ["other".to_string()];
                let some = create(c, &new("robot_some", None, Some(&listed)))?;
                assert_eq!(some.projects, vec!["other".to_string()]);
                assert!(matches!(
                    create(c, &new("robot_some", None, None)),
                    Err(StoreError::AlreadyExists { .. })
                ));
                assert!(matches!(
                    create(c, &new("robot_x", Some("missing"), None)),
                    Err(StoreError::NotFound { .. })
                ));
                let names = |list: Vec<Robot>| list.into_iter().map(|r| r.name).collect::<Vec<_>>();
                assert_eq!(names(list(c, Some("team"))?), ["robot_mirror", "robot_team+ci"]);
                assert_eq!(names(list(c, None)?).len(), 3);
                projects::remove(c, "team")?;
                assert!(find(c, "robot_team+ci")?.is_none(), "a project robot goes with its project");
                projects::remove(c, "other")?;
                assert_eq!(get(c, "robot_some")?.ceiling().projects, ProjectSet::Only(BTreeSet::new()));
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn robot_names_do_not_clash_with_users() {
        let (_dir, store) = test_store();
        store
            .with_connection(|c| {
                users::create(c, "robot_taken", None, false)?;
                assert!(matches!(
                    create(c, &new("robot_taken", None, None)),
                    Err(StoreError::AlreadyExists { .. })
                ));
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn disable_regenerate_remove() {
        let (_dir, store) = test_store();
        store
            .with_connection(|c| {
                create(c, &new("robot_a", None, None))?;
                set_disabled(c, "robot_a", true)?;
                set_secret_digest(c, "robot_a", "new")?;
                let (robot, digest) = login(c, "robot_a")?.expect("exists");
                assert!(robot.disabled);
                assert_eq!(digest, "new");
                remove(c, "robot_a")?;
                assert!(matches!(remove(c, "robot_a"), Err(StoreError::NotFound { .. })));
                assert!(matches!(set_disabled(c, "robot_a", false), Err(StoreError::NotFound { .. })));
                Ok(())
            })
            .unwrap();
    }
}
