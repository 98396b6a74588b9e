//! Robot accounts logging in: the robot's name as the user name, its generated secret as the
//! password. A robot's rights are its own permission list and nothing else; whether it is still
//! enabled and unexpired is decided with the account snapshot when the token is granted
//! ([`super::Identity::subject`]), after the secret matched, so a guesser learns nothing of it.

use super::secret::{digest, digests_match, SecretKind};
use super::{Identity, Verdict};
use crate::store::{Store, StoreError};

/// The start of every robot secret issued, so people and secret scanners can tell what a leaked
/// one is (robots made before it keep their unprefixed secrets, which still work).
pub const SECRET_PREFIX: &str = "rbt_";

/// Checks `name` and `secret` against the robots. `Unknown` when no robot has that name, so
/// that the caller goes on to the users.
pub fn check(store: &dyn Store, name: &str, secret: &str) -> Result<Verdict, StoreError> {
    let Some((robot, stored)) = store.robot_login(name)? else {
        return Ok(Verdict::Unknown);
    };
    if !digests_match(&stored, &digest(SecretKind::Robot, secret)) {
        return Ok(Verdict::Refused);
    }
    // Best effort: a busy writer elsewhere must not fail a valid login.
    if let Err(error) = store.record_robot_use(robot.id, crate::store::now()) {
        tracing::debug!(%error, robot = %robot.name, "could not record the robot's use");
    }
    Ok(Verdict::Accepted(Identity::of_robot(robot)))
}

impl Identity {
    /// Who `robot` is once its secret matched (also `access check`'s robot).
    pub fn of_robot(robot: crate::store::Robot) -> Identity {
        let ceiling = robot.ceiling();
        Identity::Robot { id: robot.id, name: robot.name, ceiling }
    }
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
    use crate::store::sqlite::fixtures::project_robot;
    use crate::store::sqlite::test_store;

    #[test]
    fn only_the_right_secret_is_accepted() {
        let (_dir, store) = test_store();
        store.create_project("team", false).unwrap();
        let secret = generate("");
        let stored = digest(SecretKind::Robot, &secret);
        store.create_robot(&project_robot("robot_team+ci", "team", &stored)).unwrap();
        assert!(matches!(
            check(&store, "robot_team+ci", &secret).unwrap(),
            Verdict::Accepted(Identity::Robot { .. })
        ));
        assert!(matches!(check(&store, "robot_team+ci", "wrong").unwrap(), Verdict::Refused));
        assert!(matches!(check(&store, "alice", &secret).unwrap(), Verdict::Unknown));
    }

    #[test]
    fn login_names_follow_harbor_with_a_shell_safe_prefix() {
        assert_eq!(login_name("robot_", Some("team"), "ci"), "robot_team+ci");
        assert_eq!(login_name("robot_", None, "mirror"), "robot_mirror");
    }
}
