//! Which names the store accepts, and the one login-name space.
//!
//! Users (of the database or the directory) and robots all log in with a `username`, and the name
//! becomes the token's `sub`: no two accounts of any kind may share one. Directories compare names
//! case-insensitively (`Alice` and `alice` are one AD account), so names are compared with ASCII
//! case folding: an account is found by its exact spelling, else by its folded one, and a new
//! account whose folded name is taken is refused. The stored spelling is canonical. Databases made
//! before folding may hold names that differ only in case: each keeps working under its exact
//! spelling, and they are reported (`portcullis user list`, and at start).
//!
//! The robot prefix (`robot_` by default) is reserved for robots, so a user can never be named
//! like one.

use super::StoreError;
use crate::authz::scope::is_valid_component;

/// The account kinds that share the login-name space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    User,
    Robot,
}

/// The configurable part of the name rules.
#[derive(Debug, Clone)]
pub struct NameRules {
    /// Robot login names start with this, and user names never do (compared case-folded).
    pub robot_prefix: String,
}

impl NameRules {
    /// The rules `config` sets.
    pub fn from_config(config: &crate::config::Config) -> NameRules {
        NameRules { robot_prefix: config.robots.name_prefix.clone() }
    }

    /// Checks the name of a new account of `kind` against the prefix rule.
    pub fn check_new_account(&self, name: &str, kind: AccountKind) -> Result<(), StoreError> {
        let prefix = &self.robot_prefix;
        let has_prefix = !prefix.is_empty()
            && name.len() >= prefix.len()
            && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes());
        match kind {
            AccountKind::User if has_prefix => Err(StoreError::Invalid(format!(
                "invalid user name {name:?}: names starting with {prefix:?} are reserved for robots"
            ))),
            AccountKind::Robot if !has_prefix && !prefix.is_empty() => Err(StoreError::Invalid(format!(
                "invalid robot name {name:?}: robot names start with {prefix:?}"
            ))),
            _ => validate_user_name(name),
        }
    }
}

/// The form names are compared in: ASCII letters folded to lower case, everything else as is.
pub fn fold(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// User names end up in Basic auth (where `:` separates the password) and in token subjects:
/// printable, no colon, no white space, at most 255 bytes.
pub fn validate_user_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.contains(':')
        && name.chars().all(|c| !c.is_control() && !c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid user name {:?}: 1 to 255 characters, no ':' and no spaces or control characters",
            crate::text::for_message(name)
        )))
    }
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

/// Personal token labels are short words people type: letters, digits, `.`, `_`, `-`; at most 64.
pub fn validate_token_label(label: &str) -> Result<(), StoreError> {
    let ok = !label.is_empty()
        && label.len() <= 64
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid token name {label:?}: 1 to 64 letters, digits, '.', '_' or '-'"
        )))
    }
}

/// A group is granted by name or DN: printable, 1 to 1024 characters once trimmed.
pub fn validate_group(group: &str) -> Result<&str, StoreError> {
    let group = group.trim();
    if group.is_empty() || group.len() > 1024 || group.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "invalid group {group:?}: a group name or DN of 1 to 1024 printable characters"
        )));
    }
    Ok(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> NameRules {
        NameRules { robot_prefix: "robot_".into() }
    }

    #[test]
    fn user_names_with_colons_or_spaces_are_refused() {
        for bad in ["", "a:b", "a b", "a\nb"] {
            assert!(validate_user_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_user_name("ci.bot-1@example.com").is_ok());
    }

    #[test]
    fn the_robot_prefix_is_reserved_for_robots_in_any_case() {
        let rules = rules();
        for name in ["robot_team+ci", "ROBOT_team+ci", "Robot_x"] {
            assert!(rules.check_new_account(name, AccountKind::User).is_err(), "{name}");
        }
        assert!(rules.check_new_account("robotics", AccountKind::User).is_ok());
        assert!(rules.check_new_account("robot_team+ci", AccountKind::Robot).is_ok());
        assert!(rules.check_new_account("team+ci", AccountKind::Robot).is_err());
    }

    #[test]
    fn labels_and_groups() {
        assert!(validate_token_label("ci-1.x").is_ok());
        assert!(validate_token_label("a b").is_err());
        assert_eq!(validate_group("  devs ").unwrap(), "devs");
        assert!(validate_group(" ").is_err());
    }
}
