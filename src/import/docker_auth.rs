//! cesanta/docker_auth's static configuration: its `users:` (bcrypt hashes) and the `acl:`
//! entries that say what a project role says.
//!
//! docker_auth decides by the first entry that matches an (account, repository) pair; Portcullis
//! by roles that add up. An entry is carried over as a membership only when it means exactly
//! one role in one project for one account, and no earlier entry could match the same account
//! and repositories (it would decide first): `account` an exact name, `name` exactly `P/*`,
//! actions `pull` (guest), `pull,push` (developer) or `*` (maintainer), no other condition.
//! Every other entry is reported with the reason.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{Finding, HashPolicy, Plan};
use crate::authz::Role;
use crate::store::names::{fold, validate_project_name};
use crate::store::{ImportedMember, ImportedProject, ImportedUser};

#[derive(Debug, Deserialize)]
struct Config {
    #[serde(default)]
    users: BTreeMap<String, Option<StaticUser>>,
    #[serde(default)]
    acl: Vec<AclEntry>,
}

#[derive(Debug, Deserialize)]
struct StaticUser {
    password: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AclEntry {
    #[serde(rename = "match", default)]
    conditions: Conditions,
    #[serde(default)]
    actions: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Conditions {
    account: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    ip: Option<String>,
    service: Option<String>,
    labels: Option<serde_yaml::Value>,
}

/// The users and memberships of the docker_auth configuration `text`; `Err` when it is not
/// YAML of that shape.
pub fn read(text: &str, policy: &HashPolicy<'_>) -> Result<Plan, String> {
    let config: Config =
        serde_yaml::from_str(text).map_err(|error| format!("not a docker_auth configuration: {error}"))?;
    let mut plan = Plan::default();
    for (name, user) in &config.users {
        let place = format!("users: {name:?}");
        match user.as_ref().and_then(|user| user.password.as_deref()) {
            _ if name.is_empty() => plan.findings.push(Finding::skipped(
                place,
                "the anonymous user: Portcullis lets anyone pull from public projects (`project create P --public`)",
            )),
            None => plan.findings.push(Finding::skipped(place, "no password; skipped")),
            Some(hash) => match policy.accept(hash) {
                Ok((password_hash, _)) => {
                    plan.add_user(place, ImportedUser { name: name.clone(), password_hash, is_admin: false })
                }
                Err(why) => plan.findings.push(Finding::skipped(place, format!("{why}; skipped"))),
            },
        }
    }
    let mut projects = BTreeSet::new();
    for (index, entry) in config.acl.iter().enumerate() {
        let place = format!("acl entry {} {}", index + 1, describe(entry));
        match membership(entry).and_then(|member| {
            match config.acl[..index].iter().position(|earlier| could_match_first(earlier, &member)) {
                Some(earlier) => Err(format!(
                    "acl entry {} may match the same account and repositories first (docker_auth takes the first match)",
                    earlier + 1
                )),
                None => Ok(member),
            }
        }) {
            Ok(member) => {
                projects.insert(member.project.clone());
                plan.import.members.push(member);
            }
            Err(why) => plan.findings.push(Finding::skipped(place, format!("not carried over: {why}"))),
        }
    }
    if !projects.is_empty() {
        plan.findings.push(Finding::note(
            "acl",
            "docker_auth's `P/*` matches one level (P/app, not P/app/web); a role covers every repository of P",
        ));
    }
    plan.import.projects = projects.into_iter().map(|name| ImportedProject { name, public: false }).collect();
    Ok(plan)
}

/// The entry in a few words, for reports.
fn describe(entry: &AclEntry) -> String {
    let account =
        entry.conditions.account.as_deref().map_or("any account".to_string(), |a| format!("account {a:?}"));
    let name = entry.conditions.name.as_deref().map_or("any name".to_string(), |n| format!("name {n:?}"));
    format!("({account}, {name}, actions {:?})", entry.actions.join(","))
}

/// The membership `entry` means, or why it means none.
fn membership(entry: &AclEntry) -> Result<ImportedMember, String> {
    let conditions = &entry.conditions;
    if entry.actions.is_empty() {
        return Err("it grants nothing (an entry that denies)".into());
    }
    if conditions.ip.is_some() || conditions.service.is_some() || conditions.labels.is_some() {
        return Err("it matches on ip, service or labels, which a project role does not".into());
    }
    if conditions.kind.as_deref().is_some_and(|kind| kind != "repository") {
        return Err("it is about another resource type than repositories".into());
    }
    let account = match conditions.account.as_deref() {
        None => return Err("it matches every account".into()),
        Some("") => return Err(
            "it is for the anonymous user: make the project public instead (`project visibility P public`)"
                .into(),
        ),
        Some(account) if account.contains("${") => return Err("its account has ${...} placeholders".into()),
        Some(account) if is_regex(account) => return Err("its account is a regular expression".into()),
        Some(account) if is_glob(account) => return Err("its account is a pattern".into()),
        Some(account) => account,
    };
    let project = match conditions.name.as_deref() {
        None => return Err("it matches every repository (a system admin is made with `user admin`)".into()),
        Some(name) if name.contains("${") => {
            return Err("its name has ${...} placeholders (per-account namespaces have no project)".into())
        }
        Some(name) if is_regex(name) => return Err("its name is a regular expression".into()),
        Some(name) => match name.strip_suffix("/*") {
            Some(project) if !is_glob(project) && validate_project_name(project).is_ok() => project,
            _ => return Err(format!("its name {name:?} is not of the form <project>/*")),
        },
    };
    let actions: BTreeSet<&str> = entry.actions.iter().map(String::as_str).collect();
    // docker_auth reads `*` as every action only when it is the whole list; in a longer one it
    // is one more name that no request asks for.
    let role =
        match actions.iter().copied().collect::<Vec<_>>()[..] {
            ["*"] => Role::Maintainer,
            _ if actions.contains("*") => return Err(
                "`*` among other actions means only those others in docker_auth; no role grants exactly them"
                    .into(),
            ),
            ["pull"] => Role::Guest,
            ["pull", "push"] => Role::Developer,
            ["delete", "pull", "push"] => Role::Maintainer,
            _ => return Err(format!("no role grants exactly {:?}", entry.actions.join(","))),
        };
    Ok(ImportedMember { project: project.to_string(), user: account.to_string(), role })
}

/// Whether `earlier` could match some request of `member`'s account on `member`'s project,
/// erring towards yes: a condition Portcullis cannot evaluate here counts as matching.
fn could_match_first(earlier: &AclEntry, member: &ImportedMember) -> bool {
    let conditions = &earlier.conditions;
    if !conditions.kind.as_deref().is_none_or(|kind| might_match(kind, "repository")) {
        return false;
    }
    // Portcullis compares login names ignoring ASCII case: `Dev` in an earlier entry is `dev`.
    let account =
        conditions.account.as_deref().is_none_or(|pattern| might_match(&fold(pattern), &fold(&member.user)));
    let prefix = format!("{}/", member.project);
    let repository = conditions.name.as_deref().is_none_or(|pattern| {
        let pattern = pattern.replace("${account}", &member.user);
        let pattern = pattern.as_str();
        if pattern.contains("${") || is_regex(pattern) {
            return true;
        }
        // The literal part before the first wildcard must allow a name under the project.
        let literal = &pattern[..pattern.find(['*', '?', '[', '\\']).unwrap_or(pattern.len())];
        match is_glob(pattern) {
            false => pattern.starts_with(&prefix),
            true => literal.starts_with(&prefix) || prefix.starts_with(literal),
        }
    });
    account && repository
}

/// Whether the docker_auth pattern `pattern` might match `value` (exact names and simple globs
/// evaluated; regular expressions and placeholders assumed to).
fn might_match(pattern: &str, value: &str) -> bool {
    if pattern.contains("${") || is_regex(pattern) || pattern.contains(['[', '\\']) {
        return true;
    }
    let (pattern, value): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    glob_matches(&pattern, &value)
}

/// `*` (any run of characters but `/`) and `?` (one character but `/`), as Go's `path.Match`, in
/// linear time: on a mismatch only the last `*` takes one more character (an earlier one could
/// not do better, and no `*` takes a `/`).
fn glob_matches(pattern: &[char], value: &[char]) -> bool {
    let (mut p, mut v) = (0, 0);
    let mut last_star: Option<(usize, usize)> = None;
    while v < value.len() {
        match pattern.get(p) {
            Some('*') => {
                last_star = Some((p, v));
                p += 1;
            }
            Some('?') if value[v] != '/' => (p, v) = (p + 1, v + 1),
            Some(&c) if c != '?' && c == value[v] => (p, v) = (p + 1, v + 1),
            _ => match last_star {
                Some((star, taken)) if value[taken] != '/' => {
                    last_star = Some((star, taken + 1));
                    (p, v) = (star + 1, taken + 1);
                }
                _ => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

fn is_regex(pattern: &str) -> bool {
    pattern.len() > 2 && pattern.starts_with('/') && pattern.ends_with('/')
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '\\'])
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
server: {addr: ":5001"}
users:
  "admin": {password: "$2y$05$LO.vzwpWC5LZGqThvEfznu8qhb5SGqvBSWY1J3yZ4AxtMRZ3kN5jC"}
  "ci": {password: "$2y$05$LO.vzwpWC5LZGqThvEfznu8qhb5SGqvBSWY1J3yZ4AxtMRZ3kN5jC"}
  "dev": {password: "$2y$05$LO.vzwpWC5LZGqThvEfznu8qhb5SGqvBSWY1J3yZ4AxtMRZ3kN5jC"}
  "": {}
acl:
  - match: {account: "admin"}
    actions: ["*"]
  - match: {account: "dev", name: "team/*"}
    actions: ["pull", "push"]
  - match: {account: "ci", name: "team/*"}
    actions: ["pull"]
  - match: {account: "ci", name: "team/*"}
    actions: ["*"]
  - match: {account: "/.+/", name: "${account}/*"}
    actions: ["*"]
  - match: {account: "dev", name: "ops/*", ip: "10.0.0.0/8"}
    actions: ["pull"]
  - match: {account: "", name: "public/*"}
    actions: ["pull"]
  - match: {account: "d*", name: "tools/*"}
    actions: ["pull"]
  - match: {account: "dev", name: "tools/*"}
    actions: ["pull", "push"]
  - match: {account: "ci", name: "web/*"}
    actions: ["pull", "push"]
  - match: {name: "web/*"}
    actions: []
"#;

    #[test]
    fn maps_what_means_one_role_and_says_why_for_the_rest() {
        let hasher = crate::authn::password::tests::cheap();
        let plan = read(CONFIG, &HashPolicy { allow_weak: false, hasher: &hasher }).unwrap();
        let users: Vec<_> = plan.import.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(users, ["admin", "ci", "dev"]);
        let members: Vec<_> =
            plan.import.members.iter().map(|m| (m.project.as_str(), m.user.as_str(), m.role)).collect();
        assert_eq!(
            members,
            [("team", "dev", Role::Developer), ("team", "ci", Role::Guest), ("web", "ci", Role::Developer)]
        );
        let projects: Vec<_> = plan.import.projects.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(projects, ["team", "web"]);
        let reason = |entry: usize| {
            let place = format!("acl entry {entry} ");
            plan.findings
                .iter()
                .find(|f| f.place.starts_with(&place))
                .map(|f| f.message.clone())
                .unwrap_or_default()
        };
        assert!(reason(1).contains("every repository"), "{}", reason(1));
        assert!(reason(4).contains("acl entry 3 may match"), "{}", reason(4));
        assert!(reason(5).contains("regular expression"), "{}", reason(5));
        assert!(reason(6).contains("ip"), "{}", reason(6));
        assert!(reason(7).contains("anonymous"), "{}", reason(7));
        assert!(reason(8).contains("pattern"), "{}", reason(8));
        assert!(
            reason(9).contains("acl entry 8 may match"),
            "a glob that matches dev shadows: {}",
            reason(9)
        );
        assert!(reason(11).contains("grants nothing"), "{}", reason(11));
        assert!(plan.findings.iter().any(|f| f.place == "users: \"\"" && f.message.contains("anonymous")));
    }

    #[test]
    fn earlier_entries_shadow_up_to_case_and_type_patterns_and_star_must_stand_alone() {
        let hasher = crate::authn::password::tests::cheap();
        let config = r#"
acl:
  - match: {account: "Dev", name: "team/*"}
    actions: []
  - match: {account: "dev", name: "team/*"}
    actions: ["pull"]
  - match: {account: "ci", type: "*", name: "ops/*"}
    actions: []
  - match: {account: "ci", name: "ops/*"}
    actions: ["pull"]
  - match: {account: "ci", name: "web/*"}
    actions: ["pull", "*"]
"#;
        let plan = read(config, &HashPolicy { allow_weak: false, hasher: &hasher }).unwrap();
        assert!(plan.import.members.is_empty(), "{:?}", plan.import.members);
        let messages: Vec<_> = plan.findings.iter().map(|f| f.message.as_str()).collect();
        assert!(messages[1].contains("acl entry 1 may match"), "{messages:?}");
        assert!(messages[3].contains("acl entry 3 may match"), "{messages:?}");
        assert!(messages[4].contains("`*` among other actions"), "{messages:?}");
    }

    #[test]
    fn globs_match_as_gos_path_match() {
        for (pattern, value, expected) in [
            ("d*", "dev", true),
            ("d*", "ci", false),
            ("*", "a/b", false),
            ("?i", "ci", true),
            ("?b", "öb", true),
            ("*a*b", "xaxxb", true),
            ("a*/b", "ax/b", true),
            ("a*b", "a/b", false),
            ("", "", true),
            ("**", "", true),
        ] {
            assert_eq!(might_match(pattern, value), expected, "{pattern:?} {value:?}");
        }
        // A pattern that backtracking in every way would take ages over.
        let hard = format!("{}b", "*a".repeat(40));
        assert!(!might_match(&hard, &"a".repeat(255)));
        assert!(read(
            "users: [not, a, map]",
            &HashPolicy { allow_weak: false, hasher: &crate::authn::password::tests::cheap() }
        )
        .is_err());
    }
}
