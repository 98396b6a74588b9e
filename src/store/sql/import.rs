//! `portcullis import`'s one transaction: users, projects and memberships carried over from
//! another server, each created, updated or kept, and a report of which.
//!
//! Re-running an import changes nothing that is already as imported; a user who exists (with
//! another hash, say after their first login upgraded it) keeps it unless `replace_hashes`; a
//! directory account is never given a password.

use super::{params, projects, query_opt, users, write, Db};
use crate::store::names::NameRules;
use crate::store::{Import, ImportReport, Imported, NewUser, Source, StoreError};

pub fn import(db: &mut dyn Db, rules: &NameRules, plan: &Import) -> Result<ImportReport, StoreError> {
    write(db, |db| {
        let mut report = ImportReport::default();
        for user in &plan.users {
            let outcome = match users::find(db, &user.name)? {
                None => {
                    let new = NewUser {
                        name: &user.name,
                        password_hash: Some(&user.password_hash),
                        is_admin: user.is_admin,
                        source: Source::Database,
                    };
                    // A name the rules refuse (a robot's prefix) or a robot already has is
                    // refused before anything is written: reported, not an abort.
                    match users::create(db, rules, &new) {
                        Ok(_) => Imported::Created,
                        Err(error @ (StoreError::AlreadyExists { .. } | StoreError::Invalid(_))) => {
                            Imported::Kept(error.to_string())
                        }
                        Err(error) => return Err(error),
                    }
                }
                Some(existing) if existing.source != Source::Database => {
                    Imported::Kept("a directory account: the directory checks its password".into())
                }
                Some(existing) if existing.password_hash.as_deref() == Some(&user.password_hash) => {
                    Imported::Unchanged
                }
                Some(existing) if plan.replace_hashes => {
                    users::set_password(db, &existing.name, &user.password_hash)?;
                    Imported::Updated
                }
                Some(_) => Imported::Kept("exists with another password; --update replaces it".into()),
            };
            report.users.push((user.name.clone(), outcome));
        }
        for project in &plan.projects {
            let outcome = match projects::find(db, &project.name)? {
                Some(_) => Imported::Unchanged,
                None => {
                    projects::create(db, &project.name, project.public)?;
                    Imported::Created
                }
            };
            report.projects.push((project.name.clone(), outcome));
        }
        for member in &plan.members {
            let outcome = match (projects::find(db, &member.project)?, users::find(db, &member.user)?) {
                (None, _) => Imported::Kept(format!("project {} does not exist", member.project)),
                (_, None) => Imported::Kept(format!("user {} does not exist", member.user)),
                (Some(project), Some(user)) => {
                    let role: Option<String> = query_opt(
                        db,
                        "SELECT role FROM project_members WHERE project_id = ?1 AND user_id = ?2",
                        params![project.id, user.id],
                        |row| row.get(0),
                    )?;
                    match role {
                        Some(role) if role == member.role.as_str() => Imported::Unchanged,
                        had => {
                            projects::put_member(db, project.id, user.id, member.role)?;
                            if had.is_some() {
                                Imported::Updated
                            } else {
                                Imported::Created
                            }
                        }
                    }
                }
            };
            report.members.push((member.project.clone(), member.user.clone(), outcome));
        }
        Ok(report)
    })
}

#[cfg(test)]
mod tests {
    use crate::authz::Role;
    use crate::store::sql::testing::on_both_backends;
    use crate::store::sqlite::fixtures::directory_user;
    use crate::store::{Import, Imported, ImportedMember, ImportedProject, ImportedUser, StoreError};

    fn plan(hash: &str) -> Import {
        let user =
            |name: &str| ImportedUser { name: name.into(), password_hash: hash.into(), is_admin: false };
        Import {
            users: vec![user("alice"), user("bob"), user("carol"), user("robot_ci")],
            projects: vec![ImportedProject { name: "team".into(), public: false }],
            members: vec![
                ImportedMember { project: "team".into(), user: "alice".into(), role: Role::Developer },
                ImportedMember { project: "team".into(), user: "nobody".into(), role: Role::Guest },
            ],
            replace_hashes: false,
        }
    }

    on_both_backends! {
        fn imports_once_and_then_changes_nothing(store) {
            store.create_user(&directory_user("carol")).unwrap();
            let first = store.import(&plan("$2y$04$one")).unwrap();
            let users: Vec<_> = first.users.iter().map(|(_, what)| what.clone()).collect();
            assert_eq!(users[..2], [Imported::Created, Imported::Created]);
            assert!(matches!(&users[2], Imported::Kept(why) if why.contains("directory")), "{users:?}");
            assert!(matches!(&users[3], Imported::Kept(why) if why.contains("robot")), "reported, not an abort: {users:?}");
            assert_eq!(first.projects, [("team".to_string(), Imported::Created)]);
            assert_eq!(first.members[0].2, Imported::Created);
            assert!(matches!(&first.members[1].2, Imported::Kept(why) if why.contains("nobody")));
            assert_eq!(store.user("alice").unwrap().password_hash.as_deref(), Some("$2y$04$one"));

            let again = store.import(&plan("$2y$04$one")).unwrap();
            assert_eq!(again.users[0].1, Imported::Unchanged);
            assert_eq!(again.projects[0].1, Imported::Unchanged);
            assert_eq!(again.members[0].2, Imported::Unchanged);

            let epoch = store.user("alice").unwrap().password_epoch;
            let other = store.import(&plan("$2y$04$two")).unwrap();
            assert!(matches!(&other.users[0].1, Imported::Kept(why) if why.contains("--update")));
            assert_eq!(store.user("alice").unwrap().password_epoch, epoch, "kept as it was");
            let replaced = store.import(&Import { replace_hashes: true, ..plan("$2y$04$two") }).unwrap();
            assert_eq!(replaced.users[0].1, Imported::Updated);
            let alice = store.user("alice").unwrap();
            assert_eq!((alice.password_hash.as_deref(), alice.password_epoch), (Some("$2y$04$two"), epoch + 1));
        }
    }

    on_both_backends! {
        fn an_error_imports_nothing(store) {
            let mut bad = plan("$2y$04$one");
            bad.projects.push(ImportedProject { name: "Not A Project".into(), public: false });
            assert!(matches!(store.import(&bad), Err(StoreError::Invalid(_))));
            assert!(store.find_user("alice").unwrap().is_none(), "the users before the error are not kept");
        }
    }

    on_both_backends! {
        fn upgrading_a_hash_is_not_a_password_change(store) {
            store.import(&plan("$2y$04$one")).unwrap();
            let alice = store.user("alice").unwrap();
            assert!(store.replace_password_hash(alice.id, "$2y$04$one", "$argon2id$new").unwrap());
            let upgraded = store.user("alice").unwrap();
            assert_eq!(upgraded.password_hash.as_deref(), Some("$argon2id$new"));
            assert_eq!(upgraded.password_epoch, alice.password_epoch);
            assert!(!store.replace_password_hash(alice.id, "$2y$04$one", "$argon2id$other").unwrap(), "only from the old hash");
            store.set_user_password("alice", "$argon2id$set").unwrap();
            assert_eq!(store.user("alice").unwrap().password_epoch, alice.password_epoch + 1);
        }
    }
}
