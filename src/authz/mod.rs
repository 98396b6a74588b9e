//! What an authenticated (or anonymous) caller may do: Harbor's project roles as registry actions.
//!
//! A repository `team/app/web` belongs to the project `team`, its first path component. Access
//! is the union of what the caller's role in that project allows, pull for everyone on a public
//! project, and everything for system admins, always limited to projects that exist. The answer
//! is the intersection of that with what was asked: asking for more is not an error, the registry
//! enforces the difference. A robot's or personal access token's [`Ceiling`] caps all of it.

pub mod ceiling;
pub mod explain;
pub mod scope;

use std::collections::BTreeSet;

pub use ceiling::{Ceiling, ProjectSet};
use scope::{ResourceType, Scope};

/// The registry actions Portcullis grants. `*` is granted only where all of them are.
pub const PULL: &str = "pull";
pub const PUSH: &str = "push";
pub const DELETE: &str = "delete";
pub const ALL: &str = "*";

/// A member's role in a project, as in Harbor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    ProjectAdmin,
    Maintainer,
    Developer,
    Guest,
    /// Harbor's limited guest differs from a guest only in its UI and API rights; at the registry
    /// both may pull and nothing else.
    LimitedGuest,
}

impl Role {
    pub const ALL: [Role; 5] =
        [Role::ProjectAdmin, Role::Maintainer, Role::Developer, Role::Guest, Role::LimitedGuest];

    /// The name stored in the database and shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ProjectAdmin => "project_admin",
            Role::Maintainer => "maintainer",
            Role::Developer => "developer",
            Role::Guest => "guest",
            Role::LimitedGuest => "limited_guest",
        }
    }

    /// A role as stored (exactly [`Role::as_str`]; the schema allows no other spelling), without
    /// the allocations of [`Role::parse`]: a loader runs it once per membership.
    pub fn from_stored(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }

    /// Parses a role name; `-` and `_` are interchangeable and `admin` means project admin.
    pub fn parse(text: &str) -> Option<Role> {
        match text.to_ascii_lowercase().replace('-', "_").as_str() {
            "project_admin" | "projectadmin" | "admin" => Some(Role::ProjectAdmin),
            "maintainer" => Some(Role::Maintainer),
            "developer" => Some(Role::Developer),
            "guest" => Some(Role::Guest),
            "limited_guest" | "limitedguest" => Some(Role::LimitedGuest),
            _ => None,
        }
    }

    /// The role table: which registry actions the role allows on its project's repositories.
    pub fn allows(self, action: &str) -> bool {
        match action {
            PULL => true,
            PUSH => matches!(self, Role::ProjectAdmin | Role::Maintainer | Role::Developer),
            DELETE => matches!(self, Role::ProjectAdmin | Role::Maintainer),
            _ => false,
        }
    }
}

/// Who is asking, as far as authorization cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The token's `sub`; empty for anonymous callers.
    pub name: String,
    /// System admins may do everything on existing projects and read the catalog.
    pub is_admin: bool,
    /// Whether anyone authenticated at all. Anonymous callers only ever get public pulls.
    pub authenticated: bool,
    /// The credential's own permission list (robots, personal access tokens): whatever the rest
    /// allows is cut down to it, and the catalog is never granted. `None` for passwords.
    pub ceiling: Option<Ceiling>,
}

impl Subject {
    pub fn anonymous() -> Subject {
        Subject { name: String::new(), is_admin: false, authenticated: false, ceiling: None }
    }
}

/// What the caller's relation to one existing project is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectAccess {
    pub public: bool,
    /// The caller's role, if a member.
    pub role: Option<Role>,
}

/// The project a repository belongs to: its first path component, if it has at least two.
pub fn project_of(repository: &str) -> Option<&str> {
    let (project, rest) = repository.split_once('/')?;
    (!project.is_empty() && !rest.is_empty()).then_some(project)
}

/// Grants the subset of `requested` that `subject` may have. `lookup` answers for one project
/// name: `None` when the project does not exist.
pub fn authorize(
    subject: &Subject,
    requested: &[Scope],
    mut lookup: impl FnMut(&str) -> Option<ProjectAccess>,
) -> Vec<Scope> {
    let mut granted = Vec::new();
    for scope in requested {
        let allowed = match scope.resource_type {
            ResourceType::Registry if subject.ceiling.is_some() => BTreeSet::new(),
            ResourceType::Registry => catalog_actions(subject, scope),
            ResourceType::Repository => match project_of(&scope.name) {
                Some(project) => match lookup(project) {
                    Some(access) => {
                        let mut allowed = repository_actions(subject, &access);
                        if let Some(ceiling) = &subject.ceiling {
                            allowed.retain(|action| ceiling.allows(project, action));
                        }
                        allowed
                    }
                    None => BTreeSet::new(),
                },
                None => BTreeSet::new(),
            },
        };
        let actions = intersect(&scope.actions, &allowed);
        if !actions.is_empty() {
            granted.push(Scope { resource_type: scope.resource_type, name: scope.name.clone(), actions });
        }
    }
    granted
}

/// Only system admins list the catalog, and the registry demands the action `*` literally.
fn catalog_actions(subject: &Subject, scope: &Scope) -> BTreeSet<String> {
    if subject.is_admin && scope.name == "catalog" {
        BTreeSet::from([ALL.to_string()])
    } else {
        BTreeSet::new()
    }
}

fn repository_actions(subject: &Subject, access: &ProjectAccess) -> BTreeSet<String> {
    [PULL, PUSH, DELETE]
        .into_iter()
        .filter(|action| roles_allow(subject, access, action))
        .map(str::to_string)
        .collect()
}

/// Whether `subject` may do `action` on a project's repositories by the rules before any
/// ceiling: system admins everything, members what their role allows, anyone pull from a
/// public project. The one statement of the rule ([`explain`] retraces it).
pub(crate) fn roles_allow(subject: &Subject, access: &ProjectAccess, action: &str) -> bool {
    let allowed = rules_allowing(subject, access, action);
    allowed.by_admin || allowed.by_role || allowed.by_public
}

/// Which of the rules of [`roles_allow`] allow `action` (for [`explain::grounds`]).
pub(crate) fn rules_allowing(subject: &Subject, access: &ProjectAccess, action: &str) -> Allowed {
    Allowed {
        by_admin: subject.is_admin,
        by_role: subject.authenticated && access.role.is_some_and(|role| role.allows(action)),
        by_public: access.public && action == PULL,
    }
}

/// The rules that allow an action: system admin, the caller's role, a public project's pull.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Allowed {
    pub by_admin: bool,
    pub by_role: bool,
    pub by_public: bool,
}

impl Allowed {
    /// Allowed by a rule of either.
    pub fn or(self, other: Allowed) -> Allowed {
        Allowed {
            by_admin: self.by_admin || other.by_admin,
            by_role: self.by_role || other.by_role,
            by_public: self.by_public || other.by_public,
        }
    }
}

/// Requested ∩ allowed, where a requested `*` is granted as `*` only if every action is allowed,
/// and otherwise stands for whatever actions are.
fn intersect(requested: &BTreeSet<String>, allowed: &BTreeSet<String>) -> BTreeSet<String> {
    let mut granted = BTreeSet::new();
    for action in requested {
        if action == ALL {
            if allowed.contains(ALL) || [PULL, PUSH, DELETE].iter().all(|a| allowed.contains(*a)) {
                granted.insert(ALL.to_string());
            } else {
                granted.extend(allowed.iter().cloned());
            }
        } else if allowed.contains(action) {
            granted.insert(action.clone());
        }
    }
    granted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::scope::parse_scopes;

    fn user(admin: bool) -> Subject {
        Subject { name: "u".into(), is_admin: admin, authenticated: true, ceiling: None }
    }

    fn grant(subject: &Subject, scope: &str, access: Option<ProjectAccess>) -> Vec<String> {
        let requested = parse_scopes([scope], 8).unwrap();
        authorize(subject, &requested, |_| access).iter().map(|s| s.to_string()).collect()
    }

    fn member(role: Role) -> Option<ProjectAccess> {
        Some(ProjectAccess { public: false, role: Some(role) })
    }

    #[test]
    fn role_table_matches_harbor() {
        let table = [
            (Role::ProjectAdmin, [true, true, true]),
            (Role::Maintainer, [true, true, true]),
            (Role::Developer, [true, true, false]),
            (Role::Guest, [true, false, false]),
            (Role::LimitedGuest, [true, false, false]),
        ];
        for (role, expected) in table {
            assert_eq!([role.allows(PULL), role.allows(PUSH), role.allows(DELETE)], expected, "{role:?}");
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("limited-guest"), Some(Role::LimitedGuest));
        assert_eq!(Role::parse("owner"), None);
    }

    #[test]
    fn guest_cannot_push() {
        assert_eq!(
            grant(&user(false), "repository:t/a:push,pull", member(Role::Guest)),
            ["repository:t/a:pull"]
        );
    }

    #[test]
    fn developer_star_is_expanded_to_what_it_may() {
        assert_eq!(
            grant(&user(false), "repository:t/a:*", member(Role::Developer)),
            ["repository:t/a:pull,push"]
        );
        assert_eq!(grant(&user(false), "repository:t/a:*", member(Role::Maintainer)), ["repository:t/a:*"]);
    }

    #[test]
    fn public_project_allows_anonymous_pull_only() {
        let public = Some(ProjectAccess { public: true, role: None });
        assert_eq!(grant(&Subject::anonymous(), "repository:t/a:pull,push", public), ["repository:t/a:pull"]);
        let private = Some(ProjectAccess { public: false, role: None });
        assert!(grant(&Subject::anonymous(), "repository:t/a:pull", private).is_empty());
    }

    #[test]
    fn non_member_and_missing_project_get_nothing() {
        assert!(grant(
            &user(false),
            "repository:t/a:pull",
            Some(ProjectAccess { public: false, role: None })
        )
        .is_empty());
        assert!(
            grant(&user(true), "repository:t/a:pull", None).is_empty(),
            "admins too need the project to exist"
        );
    }

    #[test]
    fn single_component_names_belong_to_no_project() {
        assert_eq!(project_of("app"), None);
        assert_eq!(project_of("team/app/web"), Some("team"));
        assert!(grant(&user(true), "repository:app:pull", member(Role::ProjectAdmin)).is_empty());
    }

    #[test]
    fn only_admins_get_the_catalog() {
        assert_eq!(grant(&user(true), "registry:catalog:*", None), ["registry:catalog:*"]);
        assert!(grant(&user(false), "registry:catalog:*", None).is_empty());
        assert!(grant(&Subject::anonymous(), "registry:catalog:*", None).is_empty());
    }

    #[test]
    fn admin_may_do_everything_on_existing_projects() {
        let none = Some(ProjectAccess { public: false, role: None });
        assert_eq!(
            grant(&user(true), "repository:t/a:delete,push,pull", none),
            ["repository:t/a:delete,pull,push"]
        );
    }

    #[test]
    fn unknown_actions_are_never_granted() {
        assert!(grant(&user(true), "repository:t/a:frobnicate", member(Role::ProjectAdmin)).is_empty());
    }

    fn limited(admin: bool, projects: ProjectSet, actions: &str) -> Subject {
        let actions = ceiling::parse_actions(actions).unwrap();
        Subject { ceiling: Some(Ceiling { projects, actions }), ..user(admin) }
    }

    #[test]
    fn ceiling_cuts_role_rights_down_to_its_list() {
        let pull_only = limited(false, ProjectSet::All, "pull");
        assert_eq!(
            grant(&pull_only, "repository:t/a:push,pull", member(Role::Maintainer)),
            ["repository:t/a:pull"]
        );
        assert_eq!(grant(&pull_only, "repository:t/a:*", member(Role::Maintainer)), ["repository:t/a:pull"]);
        let elsewhere = limited(false, ProjectSet::Only(BTreeSet::from(["other".to_string()])), "pull,push");
        assert!(grant(&elsewhere, "repository:t/a:pull", member(Role::Maintainer)).is_empty());
    }

    #[test]
    fn ceiling_never_adds_rights() {
        let wide = limited(false, ProjectSet::All, "pull,push,delete");
        assert_eq!(grant(&wide, "repository:t/a:*", member(Role::Guest)), ["repository:t/a:pull"]);
        assert!(
            grant(&wide, "repository:t/a:pull", Some(ProjectAccess { public: false, role: None })).is_empty()
        );
    }

    #[test]
    fn subjects_with_a_ceiling_never_get_the_catalog() {
        assert!(grant(&limited(true, ProjectSet::All, "*"), "registry:catalog:*", None).is_empty());
    }

    #[test]
    fn system_wide_subject_under_a_ceiling_gets_exactly_its_list() {
        // How robots are authorized: system-wide rights, cut down to the robot's list.
        let robot = limited(true, ProjectSet::Only(BTreeSet::from(["t".to_string()])), "pull,push");
        let none = Some(ProjectAccess { public: false, role: None });
        assert_eq!(grant(&robot, "repository:t/a:*", none), ["repository:t/a:pull,push"]);
        assert!(grant(&robot, "repository:u/a:pull", none).is_empty());
        assert!(grant(&robot, "repository:t/a:pull", None).is_empty(), "the project must exist");
    }
}
