//! A credential's own permission list, the most it may ever be granted.
//!
//! Robots and personal access tokens carry one. [`super::authorize`] intersects it with what the
//! subject's roles allow, in the one place every grant goes through, so no code path can hand a
//! limited credential more than its list. A subject with a ceiling never reads the catalog: the
//! list names projects and actions, never registry-wide rights.

use std::collections::BTreeSet;
use std::fmt;

use super::{DELETE, PULL, PUSH};

/// The projects and actions a credential is limited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceiling {
    pub projects: ProjectSet,
    /// A subset of pull, push and delete; never `*` (a requested `*` is granted as `*` only when
    /// all three are allowed).
    pub actions: BTreeSet<String>,
}

/// Which projects a ceiling covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectSet {
    /// Every project (that exists; roles and existence are checked as usual).
    All,
    /// Only these, by name. Empty when every listed project has been removed: nothing is allowed.
    Only(BTreeSet<String>),
}

impl Ceiling {
    /// The list as people read it: `pull,push on team`.
    pub fn describe(&self) -> String {
        format!("{} on {}", format_actions(&self.actions), self.projects)
    }

    /// The ceiling a stored permission list describes: `projects`, and `actions` as stored
    /// (`pull,push`). A stored list that no longer parses allows nothing.
    pub fn from_stored(projects: ProjectSet, actions: &str) -> Ceiling {
        Ceiling { projects, actions: parse_actions(actions).unwrap_or_default() }
    }

    /// Whether `action` on the repositories of `project` stays under the ceiling.
    pub fn allows(&self, project: &str, action: &str) -> bool {
        let project_ok = match &self.projects {
            ProjectSet::All => true,
            ProjectSet::Only(names) => names.contains(project),
        };
        project_ok && self.actions.contains(action)
    }
}

impl fmt::Display for ProjectSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProjectSet::All => write!(f, "all projects"),
            ProjectSet::Only(names) if names.is_empty() => write!(f, "no projects"),
            ProjectSet::Only(names) => {
                write!(f, "{}", names.iter().map(String::as_str).collect::<Vec<_>>().join(","))
            }
        }
    }
}

/// The actions a permission list may name, in the order they are shown.
pub const LIST_ACTIONS: [&str; 3] = [PULL, PUSH, DELETE];

/// Parses `pull,push` (commas or spaces; `*` or `all` for all three) into a non-empty action set.
pub fn parse_actions(text: &str) -> Result<BTreeSet<String>, String> {
    let mut actions = BTreeSet::new();
    for word in text.split([',', ' ']).map(str::trim).filter(|w| !w.is_empty()) {
        match word.to_ascii_lowercase().as_str() {
            "*" | "all" => actions.extend(LIST_ACTIONS.iter().map(|a| a.to_string())),
            action if LIST_ACTIONS.contains(&action) => {
                actions.insert(action.to_string());
            }
            _ => return Err(format!("unknown action {word:?}: use pull, push and delete")),
        }
    }
    if actions.is_empty() {
        return Err("no actions given: use pull, push and delete".to_string());
    }
    Ok(actions)
}

/// `pull,push,delete`, in that order: how action lists are stored and shown.
pub fn format_actions(actions: &BTreeSet<String>) -> String {
    LIST_ACTIONS.iter().filter(|a| actions.contains(**a)).copied().collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_and_format_in_a_fixed_order() {
        assert_eq!(format_actions(&parse_actions("push, pull").unwrap()), "pull,push");
        assert_eq!(format_actions(&parse_actions("*").unwrap()), "pull,push,delete");
        assert!(parse_actions("pull,admin").is_err());
        assert!(parse_actions(" , ").is_err());
    }

    #[test]
    fn ceiling_limits_projects_and_actions() {
        let ceiling = Ceiling {
            projects: ProjectSet::Only(BTreeSet::from(["team".to_string()])),
            actions: parse_actions("pull").unwrap(),
        };
        assert!(ceiling.allows("team", PULL));
        assert!(!ceiling.allows("team", PUSH));
        assert!(!ceiling.allows("other", PULL));
        let everywhere = Ceiling { projects: ProjectSet::All, actions: parse_actions("pull,push").unwrap() };
        assert!(everywhere.allows("any", PUSH));
        assert!(!everywhere.allows("any", DELETE));
    }
}
