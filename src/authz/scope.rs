//! Scopes: what a client asks for, parsed and merged.
//!
//! Grammar (distribution `docs/spec/auth/scope.md`):
//! `resourcetype[(class)]:resourcename:action[,action]*`, several separated by spaces. The type runs
//! to the first `:` and the actions follow the last one, because names may hold `host:port`.
//! Duplicate resources are merged into one with the union of their actions: containerd asks for
//! `repository:p/r:pull repository:p/r:pull,push` in one push, and answering with two entries
//! makes the registry see only one of them.

use std::collections::BTreeSet;
use std::fmt;

use crate::text::for_message;

/// The resource types a registry knows. Anything else is refused: granting on an unknown type
/// can only be a client error, and answering 400 tells the client so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    /// `repository:<name>:<actions>`, the name being a repository path.
    Repository,
    /// `registry:catalog:*`, the only registry-wide resource.
    Registry,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Repository => "repository",
            ResourceType::Registry => "registry",
        }
    }
}

/// One requested (or granted) resource with its set of actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub resource_type: ResourceType,
    /// Repository path (`team/app`, possibly `host:port/team/app`) or `catalog`.
    pub name: String,
    /// A set: clients order `push,pull` differently and repeat them. `*` means every action.
    pub actions: BTreeSet<String>,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let actions: Vec<&str> = self.actions.iter().map(String::as_str).collect();
        write!(f, "{}:{}:{}", self.resource_type.as_str(), self.name, actions.join(","))
    }
}

/// Why a scope string was refused; each message names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("malformed scope {0:?}: expected type:name:actions")]
    Malformed(String),
    #[error("invalid resource name {0:?} in scope")]
    InvalidName(String),
    #[error("invalid action {0:?} in scope")]
    InvalidAction(String),
    #[error("too many scopes in one request (limit {0})")]
    TooMany(usize),
}

/// Longest repository name distribution accepts.
const MAX_NAME_LEN: usize = 255;

/// Parses every `scope` value of a request (each may hold several, space-separated) into merged
/// scopes, in order of first appearance. At most `limit` scope strings are accepted.
pub fn parse_scopes<'a>(
    values: impl IntoIterator<Item = &'a str>,
    limit: usize,
) -> Result<Vec<Scope>, ScopeError> {
    let mut scopes: Vec<Scope> = Vec::new();
    let mut seen = 0usize;
    for value in values {
        for text in value.split_ascii_whitespace() {
            seen += 1;
            if seen > limit {
                return Err(ScopeError::TooMany(limit));
            }
            if let Some(scope) = parse_one(text)? {
                merge_into(&mut scopes, scope);
            }
        }
    }
    Ok(scopes)
}

/// Adds `scope` to `scopes`, merging its actions into an existing entry for the same resource.
pub fn merge_into(scopes: &mut Vec<Scope>, scope: Scope) {
    match scopes.iter_mut().find(|s| s.resource_type == scope.resource_type && s.name == scope.name) {
        Some(existing) => existing.actions.extend(scope.actions),
        None => scopes.push(scope),
    }
}

/// One scope; `None` for a well-formed scope of a resource type Portcullis does not know, which
/// grants nothing and is no error (the protocol lets new types appear; Harbor answers so too).
fn parse_one(text: &str) -> Result<Option<Scope>, ScopeError> {
    let malformed = || ScopeError::Malformed(for_message(text));
    let (type_text, rest) = text.split_once(':').ok_or_else(malformed)?;
    let (name, actions_text) = rest.rsplit_once(':').ok_or_else(malformed)?;
    let resource_type = parse_type(type_text)?;
    if name.is_empty() {
        return Err(malformed());
    }
    let mut actions = BTreeSet::new();
    for action in actions_text.split(',').filter(|a| !a.is_empty()) {
        if action != "*" && !action.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(ScopeError::InvalidAction(for_message(action)));
        }
        actions.insert(action.to_string());
    }
    let valid_name = match resource_type {
        Some(ResourceType::Repository) => is_valid_repository_name(name),
        Some(ResourceType::Registry) => name.len() <= MAX_NAME_LEN && is_valid_component(name),
        None => name.len() <= MAX_NAME_LEN && name.chars().all(|c| !c.is_control()),
    };
    if !valid_name {
        return Err(ScopeError::InvalidName(for_message(name)));
    }
    Ok(resource_type.map(|resource_type| Scope { resource_type, name: name.to_string(), actions }))
}

/// `repository`, `registry`, or either with a class such as `repository(plugin)`, which the
/// registry ignores and so do we; `None` for another well-formed type (`[a-z0-9]+`).
fn parse_type(text: &str) -> Result<Option<ResourceType>, ScopeError> {
    let base = match text.split_once('(') {
        Some((base, class)) => {
            let class = class.strip_suffix(')').ok_or_else(|| ScopeError::Malformed(for_message(text)))?;
            if class.is_empty() || !class.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
                return Err(ScopeError::Malformed(for_message(text)));
            }
            base
        }
        None => text,
    };
    match base {
        "repository" => Ok(Some(ResourceType::Repository)),
        "registry" => Ok(Some(ResourceType::Registry)),
        other if !other.is_empty() && other.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) => {
            Ok(None)
        }
        _ => Err(ScopeError::Malformed(for_message(text))),
    }
}

/// A repository name as distribution's reference grammar has it: optional `host[:port]/`, then
/// path components of lower-case alphanumerics joined by `.`, `_`, `__` or runs of `-`.
pub fn is_valid_repository_name(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return false;
    }
    let mut components: Vec<&str> = name.split('/').collect();
    if components.len() > 1 && looks_like_host(components[0]) {
        if !is_valid_host(components[0]) {
            return false;
        }
        components.remove(0);
    }
    components.iter().all(|c| is_valid_component(c))
}

/// A path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub fn is_valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-+", and it must be followed by an alphanumeric.
        let start = i;
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < bytes.len() && bytes[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < bytes.len() && bytes[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= bytes.len() || !alnum(bytes[i]) {
            return false;
        }
    }
    true
}

/// Distribution treats the first component as a host when it holds a `.` or `:` or is `localhost`.
fn looks_like_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

fn is_valid_host(component: &str) -> bool {
    let (host, port) = match component.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (component, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    port_ok && host.split('.').all(label_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actions(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn parses_repository_scope() {
        let scopes = parse_scopes(["repository:team/app:pull,push"], 10).unwrap();
        assert_eq!(scopes.len(), 1);
        assert_eq!(scopes[0].resource_type, ResourceType::Repository);
        assert_eq!(scopes[0].name, "team/app");
        assert_eq!(scopes[0].actions, actions(&["pull", "push"]));
    }

    #[test]
    fn splits_on_spaces_and_merges_duplicates() {
        // containerd's push: the same repository twice in one space-separated value.
        let scopes =
            parse_scopes(["repository:p/r:pull repository:p/r:pull,push", "repository:other/x:pull"], 10)
                .unwrap();
        assert_eq!(scopes.len(), 2);
        assert_eq!(scopes[0].actions, actions(&["pull", "push"]));
        assert_eq!(scopes[1].name, "other/x");
    }

    #[test]
    fn host_and_port_in_name() {
        let scopes = parse_scopes(["repository:localhost:5000/team/app/web:pull"], 10).unwrap();
        assert_eq!(scopes[0].name, "localhost:5000/team/app/web");
        assert_eq!(scopes[0].actions, actions(&["pull"]));
    }

    #[test]
    fn class_is_ignored() {
        let scopes = parse_scopes(["repository(plugin):team/app:pull"], 10).unwrap();
        assert_eq!(scopes[0].resource_type, ResourceType::Repository);
        assert_eq!(scopes[0].to_string(), "repository:team/app:pull");
    }

    #[test]
    fn catalog_star() {
        let scopes = parse_scopes(["registry:catalog:*"], 10).unwrap();
        assert_eq!(scopes[0].resource_type, ResourceType::Registry);
        assert_eq!(scopes[0].actions, actions(&["*"]));
    }

    #[test]
    fn empty_scope_value_means_nothing_asked() {
        assert!(parse_scopes(["", "  "], 10).unwrap().is_empty());
    }

    #[test]
    fn unknown_resource_types_grant_nothing_and_are_no_error() {
        let scopes =
            parse_scopes(["blob:a/b:pull repository:team/app:pull", "plugin(x):y:pull"], 10).unwrap();
        assert_eq!(scopes.len(), 1, "only the known type is kept");
        assert_eq!(scopes[0].to_string(), "repository:team/app:pull");
        assert!(parse_scopes(["blob:a/b:pull"; 11], 10).is_err(), "they still count toward the limit");
    }

    #[test]
    fn rejects_bad_scopes() {
        assert!(matches!(parse_scopes(["repository"], 10), Err(ScopeError::Malformed(_))));
        assert!(matches!(parse_scopes(["repository:pull"], 10), Err(ScopeError::Malformed(_))));
        assert!(matches!(parse_scopes(["repository::pull"], 10), Err(ScopeError::Malformed(_))));
        assert!(matches!(parse_scopes(["Blob:a/b:pull"], 10), Err(ScopeError::Malformed(_))));
        assert!(matches!(parse_scopes(["repository:Team/App:pull"], 10), Err(ScopeError::InvalidName(_))));
        assert!(matches!(parse_scopes(["repository:a//b:pull"], 10), Err(ScopeError::InvalidName(_))));
        assert!(matches!(parse_scopes(["repository:a/b:PULL"], 10), Err(ScopeError::InvalidAction(_))));
        assert!(matches!(parse_scopes(["repository(:a/b:pull"], 10), Err(ScopeError::Malformed(_))));
        let many = vec!["repository:a/b:pull"; 11];
        assert_eq!(parse_scopes(many, 10), Err(ScopeError::TooMany(10)));
    }

    #[test]
    fn component_grammar() {
        for good in ["a", "a.b", "a_b", "a__b", "a---b", "0x"] {
            assert!(is_valid_component(good), "{good}");
        }
        for bad in ["", "-a", "a-", "a..b", "a___b", "a.-b", "A", "a b", "é"] {
            assert!(!is_valid_component(bad), "{bad}");
        }
        assert!(!is_valid_repository_name(&"a".repeat(256)));
    }
}
