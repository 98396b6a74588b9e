//! Why a requested action was not granted, in words an operator can act on ("guest may not push
//! in team", "project team does not exist"). [`super::authorize`] decides; this retraces the same
//! rules for the actions it left out, so the decision trail can say why without the warm path
//! paying for sentences nobody reads. [`grounds`] says, for `portcullis access check`, which
//! rules allowed what was granted.

use serde::Serialize;

use super::scope::{ResourceType, Scope};
use super::{project_of, roles_allow, Ceiling, ProjectAccess, Subject, ALL, DELETE, PULL, PUSH};

/// One refused part of a request: the scope (with the refused actions only) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// `repository:team/app:push`.
    pub scope: String,
    pub reason: String,
}

/// The refusals for the actions of `requested` that `granted` (what [`super::authorize`] gave)
/// leaves out; `lookup` answers for a project as it did for the grant.
pub fn refusals(
    subject: &Subject,
    requested: &[Scope],
    granted: &[Scope],
    mut lookup: impl FnMut(&str) -> Option<ProjectAccess>,
) -> Vec<Refusal> {
    let mut refusals = Vec::new();
    for asked in requested {
        let given = granted.iter().find(|s| s.resource_type == asked.resource_type && s.name == asked.name);
        // Actions refused for the same reason share one entry.
        let mut by_reason: Vec<(String, Vec<&str>)> = Vec::new();
        for action in &asked.actions {
            if given.is_some_and(|given| given.actions.contains(action) || given.actions.contains(ALL)) {
                continue;
            }
            let reason = why(subject, asked, action, &mut lookup);
            match by_reason.iter_mut().find(|(known, _)| *known == reason) {
                Some((_, actions)) => actions.push(action),
                None => by_reason.push((reason, vec![action])),
            }
        }
        for (reason, actions) in by_reason {
            let scope = format!("{}:{}:{}", asked.resource_type.as_str(), asked.name, actions.join(","));
            refusals.push(Refusal { scope, reason });
        }
    }
    refusals
}

/// Why `granted` (a scope of what [`super::authorize`] gave `subject`) was granted: each rule
/// that allows some of its actions, in words. `access` is the project's as for the grant,
/// `role_sources` says where the subject's role there comes from (its own membership, which
/// group), `admin_because` why the subject has system-wide rights. For `portcullis access check`.
pub fn grounds(
    subject: &Subject,
    granted: &Scope,
    access: Option<ProjectAccess>,
    role_sources: &[String],
    admin_because: &str,
) -> Vec<String> {
    let actions: Vec<&str> = match granted.actions.contains(ALL) {
        true => vec![PULL, PUSH, DELETE],
        false => granted.actions.iter().map(String::as_str).collect(),
    };
    let mut grounds = Vec::new();
    let (Some(access), Some(project)) = (access, project_of(&granted.name)) else {
        // The catalog: only system admins get it.
        grounds.push(admin_because.to_string());
        return grounds;
    };
    // The rules that allow at least one of the granted actions, as `authorize` applied them.
    let rules = actions.iter().map(|action| super::rules_allowing(subject, &access, action));
    let allowed = rules.fold(super::Allowed::default(), |all, one| all.or(one));
    if allowed.by_admin {
        grounds.push(admin_because.to_string());
    }
    if let (true, Some(role)) = (allowed.by_role, access.role) {
        grounds.push(format!("{} in {project}: {}", role.as_str(), role_sources.join("; ")));
    }
    if allowed.by_public {
        grounds.push(format!("{project} is public: anyone may pull"));
    }
    if let Some(ceiling) = &subject.ceiling {
        grounds.push(format!("within {}'s permissions ({})", subject.name, ceiling.describe()));
    }
    grounds
}

/// Why `action` on `scope` is not granted to `subject`.
fn why(
    subject: &Subject,
    scope: &Scope,
    action: &str,
    lookup: &mut impl FnMut(&str) -> Option<ProjectAccess>,
) -> String {
    if scope.resource_type == ResourceType::Registry {
        return match () {
            _ if subject.ceiling.is_some() => "robots and personal tokens never read the catalog".into(),
            _ if scope.name != "catalog" => {
                format!("registry:{} is not a resource Portcullis grants", scope.name)
            }
            _ if !subject.authenticated => "the catalog needs a login as a system admin".into(),
            _ => "only system admins read the catalog".into(),
        };
    }
    let Some(project) = project_of(&scope.name) else {
        return format!("{:?} names no project: repositories are named <project>/<name>", scope.name);
    };
    let Some(access) = lookup(project) else {
        return format!("project {project} does not exist");
    };
    if ![PULL, PUSH, DELETE, ALL].contains(&action) {
        return format!("{action:?} is not a registry action");
    }
    // `*` stands for every action; it is refused for the first one missing.
    let action = if action == ALL { first_missing(subject, &access, project) } else { action };
    if roles_allow(subject, &access, action) {
        // Only a ceiling cuts what the roles allow.
        let ceiling = subject.ceiling.as_ref().map(Ceiling::describe).unwrap_or_default();
        return format!("{}'s permissions ({ceiling}) do not include {action} in {project}", subject.name);
    }
    match (subject.authenticated, access.role) {
        (false, _) if access.public => format!("anonymous clients may only pull from {project}"),
        (false, _) => format!("project {project} is private: log in"),
        (true, None) if access.public => {
            format!("{} is not a member of {project}, which is public: pull only", subject.name)
        }
        (true, None) => format!("{} is not a member of {project}", subject.name),
        (true, Some(role)) => format!("{} may not {action} in {project}", role.as_str()),
    }
}

/// The first of pull, push, delete that the roles or the ceiling do not allow (for a refused `*`).
fn first_missing<'a>(subject: &Subject, access: &ProjectAccess, project: &str) -> &'a str {
    [PULL, PUSH, DELETE]
        .into_iter()
        .find(|action| {
            !roles_allow(subject, access, action)
                || subject.ceiling.as_ref().is_some_and(|ceiling| !ceiling.allows(project, action))
        })
        .unwrap_or(DELETE)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::authz::scope::parse_scopes;
    use crate::authz::{authorize, Ceiling, ProjectSet, Role};

    fn explain(subject: &Subject, scope: &str, access: Option<ProjectAccess>) -> Vec<(String, String)> {
        let requested = parse_scopes([scope], 8).unwrap();
        let granted = authorize(subject, &requested, |_| access);
        refusals(subject, &requested, &granted, |_| access).into_iter().map(|r| (r.scope, r.reason)).collect()
    }

    fn user(name: &str) -> Subject {
        Subject { name: name.into(), is_admin: false, authenticated: true, ceiling: None }
    }

    fn pair(scope: &str, reason: &str) -> Vec<(String, String)> {
        vec![(scope.to_string(), reason.to_string())]
    }

    #[test]
    fn each_refusal_names_its_rule() {
        let guest = Some(ProjectAccess { public: false, role: Some(Role::Guest) });
        let developer = Some(ProjectAccess { public: false, role: Some(Role::Developer) });
        let public = Some(ProjectAccess { public: true, role: None });
        let private = Some(ProjectAccess { public: false, role: None });
        let alice = user("alice");
        assert_eq!(
            explain(&alice, "repository:team/app:pull,push,delete", guest),
            [
                pair("repository:team/app:delete", "guest may not delete in team"),
                pair("repository:team/app:push", "guest may not push in team")
            ]
            .concat()
        );
        assert_eq!(explain(&alice, "repository:team/app:pull,push", developer), vec![]);
        assert_eq!(
            explain(&alice, "repository:team/app:*", developer),
            pair("repository:team/app:*", "developer may not delete in team")
        );
        assert_eq!(
            explain(&alice, "repository:team/app:push", public),
            pair("repository:team/app:push", "alice is not a member of team, which is public: pull only")
        );
        assert_eq!(
            explain(&alice, "repository:team/app:pull", private),
            pair("repository:team/app:pull", "alice is not a member of team")
        );
        assert_eq!(
            explain(&alice, "repository:team/app:pull", None),
            pair("repository:team/app:pull", "project team does not exist")
        );
        assert_eq!(explain(&alice, "repository:app:pull", guest).len(), 1);
        assert_eq!(
            explain(&alice, "registry:catalog:*", None),
            pair("registry:catalog:*", "only system admins read the catalog")
        );
        let anonymous = Subject::anonymous();
        assert_eq!(
            explain(&anonymous, "repository:team/app:pull,push", public),
            pair("repository:team/app:push", "anonymous clients may only pull from team")
        );
        assert_eq!(
            explain(&anonymous, "repository:team/app:pull", private),
            pair("repository:team/app:pull", "project team is private: log in")
        );
        let robot = Subject {
            name: "robot_ci".into(),
            is_admin: false,
            authenticated: true,
            ceiling: Some(Ceiling {
                projects: ProjectSet::Only(BTreeSet::from(["team".to_string()])),
                actions: BTreeSet::from([PULL.to_string()]),
            }),
        };
        assert_eq!(
            explain(&robot, "repository:team/app:pull,push", developer),
            pair(
                "repository:team/app:push",
                "robot_ci's permissions (pull on team) do not include push in team"
            )
        );
        assert_eq!(
            explain(&robot, "registry:catalog:*", None),
            pair("registry:catalog:*", "robots and personal tokens never read the catalog")
        );
    }
}
