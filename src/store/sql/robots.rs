//! The `robots` and `robot_projects` tables: robot accounts, their permission lists and secrets.
//!
//! A project robot belongs to one project and goes when the project goes. A system robot covers
//! every project or a list of them; a removed project drops out of the list.

use super::names::{claim_login_name, resolve, Table};
use super::{now, params, projects, query_opt, query_value, query_vec, write, Db, Row};
use crate::store::names::{AccountKind, NameRules};
use crate::store::{NewRobot, Robot, StoreError};

const COLUMNS: &str = "r.id, r.name, p.name, r.all_projects, r.actions, r.description, r.disabled,
                       r.expires_at, r.created_at, r.secret_digest, r.last_used_at";

fn from_row(row: &Row<'_>) -> Result<(Robot, String), StoreError> {
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
            last_used_at: row.get(10)?,
        },
        row.get(9)?,
    ))
}

fn with_projects(db: &mut dyn Db, mut robot: Robot) -> Result<Robot, StoreError> {
    robot.projects = query_vec(
        db,
        "SELECT p.name FROM robot_projects rp JOIN projects p ON p.id = rp.project_id
          WHERE rp.robot_id = ?1 ORDER BY p.name",
        params![robot.id],
        |row| row.get(0),
    )?;
    Ok(robot)
}

/// Creates a robot. Its name must be free among robots and users alike: the two share the
/// `username` of docker login.
pub fn create(db: &mut dyn Db, rules: &NameRules, new: &NewRobot<'_>) -> Result<Robot, StoreError> {
    write(db, |db| {
        claim_login_name(db, rules, new.name, AccountKind::Robot)?;
        let project_id = match new.project {
            Some(project) => Some(projects::get(db, project)?.id),
            None => None,
        };
        let mut listed = Vec::new();
        for project in new.system_projects.unwrap_or_default() {
            listed.push(projects::get(db, project)?.id);
        }
        let all_projects = new.project.is_none() && new.system_projects.is_none();
        let time = now();
        let robot_id: i64 = query_value(
            db,
            "INSERT INTO robots (name, project_id, all_projects, actions, secret_digest, description,
                                 expires_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) RETURNING id",
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
        for project_id in listed {
            db.execute(
                "INSERT INTO robot_projects (robot_id, project_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![robot_id, project_id],
            )?;
        }
        get(db, new.name)
    })
}

/// The robot called `name` (exactly, else up to ASCII case) and its secret digest.
pub fn login(db: &mut dyn Db, name: &str) -> Result<Option<(Robot, String)>, StoreError> {
    let Some(name) = resolve(db, Table::Robots, name)? else { return Ok(None) };
    let sql = format!(
        "SELECT {COLUMNS} FROM robots r LEFT JOIN projects p ON p.id = r.project_id WHERE r.name = ?1"
    );
    match query_opt(db, &sql, params![&name], from_row)? {
        Some((robot, digest)) => Ok(Some((with_projects(db, robot)?, digest))),
        None => Ok(None),
    }
}

pub fn find(db: &mut dyn Db, name: &str) -> Result<Option<Robot>, StoreError> {
    Ok(login(db, name)?.map(|(robot, _)| robot))
}

pub fn get(db: &mut dyn Db, name: &str) -> Result<Robot, StoreError> {
    find(db, name)?.ok_or_else(|| StoreError::NotFound { kind: "robot", name: name.to_string() })
}

/// Robots of one project (its project robots and the system robots that reach it), or all.
pub fn list(db: &mut dyn Db, project: Option<&str>) -> Result<Vec<Robot>, StoreError> {
    if let Some(project) = project {
        projects::get(db, project)?;
    }
    let sql =
        format!("SELECT {COLUMNS} FROM robots r LEFT JOIN projects p ON p.id = r.project_id ORDER BY r.name");
    let rows = query_vec(db, &sql, &[], from_row)?;
    let mut robots = Vec::new();
    for (robot, _) in rows {
        let robot = with_projects(db, robot)?;
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

/// Records that the robot logged in at `now`, at most once a minute.
pub fn record_use(db: &mut dyn Db, id: i64, now: i64) -> Result<(), StoreError> {
    db.execute(
        "UPDATE robots SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2 - 60)",
        params![id, now],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::store::sql::testing::on_both_backends;
    use crate::store::sqlite::fixtures::directory_user;
    use std::collections::BTreeSet;

    use crate::authz::ProjectSet;
    use crate::store::{NewRobot, Robot, StoreError};

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

    on_both_backends! {
        fn project_and_system_robots_and_their_ceilings(store) {
            store.create_project("team", false).unwrap();
            store.create_project("other", false).unwrap();
            let ci = store.create_robot(&new("robot_team+ci", Some("team"), None)).unwrap();
            assert_eq!(ci.ceiling().projects, ProjectSet::Only(BTreeSet::from(["team".to_string()])));
            let all = store.create_robot(&new("robot_mirror", None, None)).unwrap();
            assert_eq!(all.ceiling().projects, ProjectSet::All);
            let listed = ["other".to_string()];
            let some = store.create_robot(&new("robot_some", None, Some(&listed))).unwrap();
            assert_eq!(some.projects, vec!["other".to_string()]);
            let again = store.create_robot(&new("robot_some", None, None));
            assert!(matches!(again, Err(StoreError::AlreadyExists { .. })));
            let missing = store.create_robot(&new("robot_x", Some("missing"), None));
            assert!(matches!(missing, Err(StoreError::NotFound { .. })));
            let names = |list: Vec<Robot>| list.into_iter().map(|r| r.name).collect::<Vec<_>>();
            assert_eq!(names(store.list_robots(Some("team")).unwrap()), ["robot_mirror", "robot_team+ci"]);
            assert_eq!(names(store.list_robots(None).unwrap()).len(), 3);
            store.remove_project("team").unwrap();
            assert!(
                store.robot_login("robot_team+ci").unwrap().is_none(),
                "a project robot goes with its project"
            );
            store.remove_project("other").unwrap();
            assert_eq!(store.robot("robot_some").unwrap().ceiling().projects, ProjectSet::Only(BTreeSet::new()));
        }
    }

    on_both_backends! {
        fn robot_names_do_not_clash_with_users_in_any_case(store) {
            let user = directory_user("robotics");
            store.create_user(&user).unwrap();
            store.create_robot(&new("robot_ci", None, None)).unwrap();
            let clash = store.create_robot(&new("ROBOT_CI", None, None));
            assert!(matches!(clash, Err(StoreError::AlreadyExists { .. })), "{clash:?}");
            let unprefixed = store.create_robot(&new("robotics", None, None));
            assert!(matches!(unprefixed, Err(StoreError::Invalid(_))), "{unprefixed:?}");
        }
    }

    on_both_backends! {
        fn disable_regenerate_remove(store) {
            store.create_robot(&new("robot_a", None, None)).unwrap();
            store.set_robot_disabled("robot_a", true).unwrap();
            store.set_robot_secret("robot_a", "new").unwrap();
            let (robot, digest) = store.robot_login("Robot_A").unwrap().expect("found up to case");
            assert!(robot.disabled);
            assert_eq!(digest, "new");
            store.remove_robot("robot_a").unwrap();
            assert!(matches!(store.remove_robot("robot_a"), Err(StoreError::NotFound { .. })));
            assert!(matches!(store.set_robot_disabled("robot_a", false), Err(StoreError::NotFound { .. })));
        }
    }
}
