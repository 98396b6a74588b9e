//! Robot accounts logging in: the robot's name as the user name, its generated secret as the
//! password. A robot's rights are its own permission list and nothing else.

use rusqlite::Connection;

use super::secret::{digest, digests_match, SecretKind, Verdict};
use super::Identity;
use crate::store::{robots, StoreError};

/// Checks `name` and `secret` against the robots. `NotMine` when no robot has that name, so
/// that the caller goes on to the users.
pub fn check(connection: &Connection, name: &str, secret: &str, now: i64) -> Result<Verdict, StoreError> {
    let Some((robot, stored)) = robots::login(connection, name)? else {
        return Ok(Verdict::NotMine);
    };
    if !digests_match(&stored, &digest(SecretKind::Robot, secret)) {
        return Ok(Verdict::Refused);
    }
    // Told to the log only once the secret matched: the operator learns why a working CI job
    // stopped, a guesser learns nothing.
    if robot.disabled {
        tracing::info!(robot = %robot.name, "robot is disabled");
        return Ok(Verdict::Refused);
    }
    if robot.expires_at.is_some_and(|at| at <= now) {
        tracing::info!(robot = %robot.name, "robot has expired");
        return Ok(Verdict::Refused);
    }
    let ceiling = robot.ceiling();
    Ok(Verdict::Accepted(Identity::Robot { id: robot.id, name: robot.name, ceiling }))
}

/// The login name of a new robot: `<prefix><project>+<name>` for a project robot (as Harbor's
/// `robot$project+name`), `<prefix><name>` for a system robot.
pub fn login_name(prefix: &str, project: Option<&str>, name: &str) -> String {
    match project {
        Some(project) => format!("{prefix}{project}+{name}"),
        None => format!("{prefix}{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::secret::generate;
    use crate::store::robots::NewRobot;
    use crate::store::{projects, test_store};

    fn robot(c: &Connection, name: &str, secret: &str, expires_at: Option<i64>) -> Result<(), StoreError> {
        robots::create(
            c,
            &NewRobot {
                name,
                project: Some("team"),
                system_projects: None,
                actions: "pull",
                description: "",
                expires_at,
                secret_digest: &digest(SecretKind::Robot, secret),
            },
        )?;
        Ok(())
    }

    #[test]
    fn only_the_right_secret_of_a_live_robot_is_accepted() {
        let (_dir, store) = test_store();
        store
            .with_connection(|c| {
                projects::create(c, "team", false)?;
                let secret = generate("");
                robot(c, "robot_team+ci", &secret, None)?;
                robot(c, "robot_team+old", &secret, Some(100))?;
                assert!(matches!(
                    check(c, "robot_team+ci", &secret, 1000)?,
                    Verdict::Accepted(Identity::Robot { .. })
                ));
                assert!(matches!(check(c, "robot_team+ci", "wrong", 1000)?, Verdict::Refused));
                assert!(matches!(check(c, "robot_team+old", &secret, 1000)?, Verdict::Refused), "expired");
                assert!(matches!(check(c, "alice", &secret, 1000)?, Verdict::NotMine));
                robots::set_disabled(c, "robot_team+ci", true)?;
                assert!(matches!(check(c, "robot_team+ci", &secret, 1000)?, Verdict::Refused), "disabled");
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn login_names_follow_harbor_with_a_shell_safe_prefix() {
        assert_eq!(login_name("robot_", Some("team"), "ci"), "robot_team+ci");
        assert_eq!(login_name("robot_", None, "mirror"), "robot_mirror");
    }
}
