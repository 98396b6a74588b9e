//! Harbor: users exported from its database (`harbor_user`, as JSON or CSV: `username`,
//! `password`, `salt`, `password_version`, `sysadmin_flag`), and projects and members as its API
//! lists them (`/api/v2.0/projects`, `/api/v2.0/projects/{name}/members`).
//!
//! Harbor keeps a PBKDF2 key of each password (`utils.Encrypt`: 4096 iterations, 16 bytes,
//! SHA-1 or SHA-256, the `salt` column as bytes): carried over as it is and replaced at first
//! login. Robot accounts cannot be: Harbor keeps no form of their secrets another server could
//! check. Group members name a group Harbor resolved itself, not the DN a role here needs.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::{Finding, Plan};
use crate::authn::carried_hash;
use crate::authz::Role;
use crate::store::{ImportedMember, ImportedProject, ImportedUser};
use crate::text::for_message;

/// What one file holds, told by its content.
pub enum HarborFile {
    Users(Vec<HarborUser>),
    Projects(Vec<HarborProject>),
    Members(Vec<HarborMember>),
}

/// A `harbor_user` row.
#[derive(Debug, Deserialize)]
pub struct HarborUser {
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    salt: String,
    #[serde(default)]
    password_version: String,
    #[serde(default, deserialize_with = "flag")]
    sysadmin_flag: bool,
    #[serde(default, deserialize_with = "flag")]
    deleted: bool,
}

/// A project as `/api/v2.0/projects` lists it.
#[derive(Debug, Deserialize)]
pub struct HarborProject {
    project_id: i64,
    name: String,
    #[serde(default)]
    metadata: HashMap<String, Value>,
}

/// A member as `/api/v2.0/projects/{name}/members` lists it.
#[derive(Debug, Deserialize)]
pub struct HarborMember {
    project_id: i64,
    entity_name: String,
    /// `u` for a user, `g` for a group.
    entity_type: String,
    #[serde(default)]
    role_id: Option<i64>,
    #[serde(default)]
    role_name: Option<String>,
}

/// A boolean as PostgreSQL exports it (`t`/`f` in CSV, `true`/`false` in JSON) or Harbor's API
/// writes it (`"true"`).
fn flag<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    let value = Value::deserialize(deserializer)?;
    Ok(match value {
        Value::Bool(flag) => flag,
        Value::Number(number) => number.as_i64() == Some(1),
        Value::String(text) => matches!(text.to_ascii_lowercase().as_str(), "t" | "true" | "1" | "yes"),
        _ => false,
    })
}

/// Reads one file: a JSON array (users, projects or members, by their fields) or CSV with a
/// header (users).
pub fn parse(name: &str, text: &str) -> Result<HarborFile, String> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('[') {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let users: Result<Vec<HarborUser>, _> = reader.deserialize().collect();
        return users
            .map(HarborFile::Users)
            .map_err(|error| format!("{name}: not a CSV export of harbor_user: {error}"));
    }
    let rows: Vec<Value> =
        serde_json::from_str(text).map_err(|error| format!("{name}: not a JSON array: {error}"))?;
    let has = |field: &str| rows.first().is_some_and(|row| row.get(field).is_some());
    let kind = match () {
        _ if has("username") => "users",
        _ if has("entity_name") => "members",
        _ if has("project_id") && has("name") => "projects",
        _ if rows.is_empty() => return Ok(HarborFile::Users(Vec::new())),
        _ => return Err(format!("{name}: neither harbor_user rows, projects nor members")),
    };
    let value = Value::Array(rows);
    let error = |error: serde_json::Error| format!("{name}: {kind}: {error}");
    match kind {
        "users" => serde_json::from_value(value).map(HarborFile::Users).map_err(error),
        "members" => serde_json::from_value(value).map(HarborFile::Members).map_err(error),
        _ => serde_json::from_value(value).map(HarborFile::Projects).map_err(error),
    }
}

/// The plan for `files` (each named, for reports): users, then projects, then members.
pub fn read(files: Vec<(String, HarborFile)>) -> Plan {
    let mut plan = Plan::default();
    let (mut users, mut projects, mut members) = (Vec::new(), Vec::new(), Vec::new());
    for (name, file) in files {
        match file {
            HarborFile::Users(rows) => users.extend(rows.into_iter().map(|row| (name.clone(), row))),
            HarborFile::Projects(rows) => projects.extend(rows),
            HarborFile::Members(rows) => members.extend(rows.into_iter().map(|row| (name.clone(), row))),
        }
    }
    for (index, (file, user)) in users.into_iter().enumerate() {
        let place = format!("{file} row {}", index + 1);
        if user.deleted {
            plan.findings.push(Finding::skipped(
                place,
                format!("{}: deleted in Harbor; skipped", for_message(&user.username)),
            ));
            continue;
        }
        match carried_hash::harbor_pbkdf2(&user.password_version, &user.salt, &user.password) {
            Ok(password_hash) => {
                let user = ImportedUser { name: user.username, password_hash, is_admin: user.sysadmin_flag };
                plan.add_user(place, user)
            }
            Err(why) => plan
                .findings
                .push(Finding::skipped(place, format!("{}: {why}; skipped", for_message(&user.username)))),
        }
    }
    let mut project_names = HashMap::new();
    for project in projects {
        let public = project.metadata.get("public").is_some_and(|value| match value {
            Value::Bool(public) => *public,
            Value::String(text) => text == "true",
            _ => false,
        });
        project_names.insert(project.project_id, project.name.clone());
        plan.import.projects.push(ImportedProject { name: project.name, public });
    }
    for (index, (file, member)) in members.into_iter().enumerate() {
        let place = format!("{file} member {}", index + 1);
        let Some(project) = project_names.get(&member.project_id) else {
            let message = format!(
                "{}: project {} is in no projects file given; skipped",
                for_message(&member.entity_name),
                member.project_id
            );
            plan.findings.push(Finding::skipped(place, message));
            continue;
        };
        if member.entity_type != "u" {
            let message = format!(
                "group {} of {project}: give its directory group a role with `member add {project} --group DN --role ROLE` (Harbor's export has no DN)",
                for_message(&member.entity_name)
            );
            plan.findings.push(Finding::skipped(place, message));
            continue;
        }
        match role(&member) {
            Some(role) => plan.import.members.push(ImportedMember {
                project: project.clone(),
                user: member.entity_name,
                role,
            }),
            None => plan.findings.push(Finding::skipped(
                place,
                format!("{}: unknown Harbor role; skipped", for_message(&member.entity_name)),
            )),
        }
    }
    plan.findings.push(Finding::note(
        "robots",
        "Harbor's robot accounts cannot be carried over (Harbor keeps no form of their secrets another server can check): make new ones with `portcullis robot create`",
    ));
    plan
}

/// Harbor's role ids (1 project admin, 2 developer, 3 guest, 4 maintainer, 5 limited guest) or
/// names (`projectAdmin`, ...).
fn role(member: &HarborMember) -> Option<Role> {
    match member.role_id {
        Some(1) => Some(Role::ProjectAdmin),
        Some(2) => Some(Role::Developer),
        Some(3) => Some(Role::Guest),
        Some(4) => Some(Role::Maintainer),
        Some(5) => Some(Role::LimitedGuest),
        _ => member.role_name.as_deref().and_then(Role::parse),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_from_csv_and_json_and_members_by_project_id() {
        let csv = "username,email,password,salt,password_version,sysadmin_flag,deleted\n\
                   alice,a@x,0123456789abcdef0123456789abcdef,salt1,sha256,f,f\n\
                   root,r@x,0123456789abcdef0123456789abcdef,salt2,sha1,t,f\n\
                   gone#7,g@x,0123456789abcdef0123456789abcdef,salt3,sha1,f,t\n\
                   bad,b@x,xyz,salt4,sha256,f,f\n";
        let json = r#"[{"username": "bob", "password": "0123456789abcdef0123456789abcdef", "salt": "s", "password_version": "sha256", "sysadmin_flag": false}]"#;
        let projects = r#"[{"project_id": 3, "name": "team", "metadata": {"public": "true"}}, {"project_id": 4, "name": "ops", "metadata": {}}]"#;
        let members = r#"[{"id": 1, "project_id": 3, "entity_name": "alice", "entity_type": "u", "role_id": 2, "role_name": "developer"},
                          {"id": 2, "project_id": 3, "entity_name": "devs", "entity_type": "g", "role_id": 3},
                          {"id": 3, "project_id": 9, "entity_name": "bob", "entity_type": "u", "role_id": 1},
                          {"id": 4, "project_id": 4, "entity_name": "bob", "entity_type": "u", "role_name": "limitedGuest"}]"#;
        let files = [
            ("users.csv", csv),
            ("users.json", json),
            ("projects.json", projects),
            ("members.json", members),
        ]
        .into_iter()
        .map(|(name, text)| (name.to_string(), parse(name, text).unwrap()))
        .collect();
        let plan = read(files);
        let users: Vec<_> = plan.import.users.iter().map(|u| (u.name.as_str(), u.is_admin)).collect();
        assert_eq!(users, [("alice", false), ("root", true), ("bob", false)]);
        assert!(plan.import.users[0].password_hash.starts_with("$pbkdf2-sha256$i=4096$"));
        let projects: Vec<_> = plan.import.projects.iter().map(|p| (p.name.as_str(), p.public)).collect();
        assert_eq!(projects, [("team", true), ("ops", false)]);
        let members: Vec<_> =
            plan.import.members.iter().map(|m| (m.project.as_str(), m.user.as_str(), m.role)).collect();
        assert_eq!(members, [("team", "alice", Role::Developer), ("ops", "bob", Role::LimitedGuest)]);
        let places: Vec<_> = plan.findings.iter().map(|f| f.place.as_str()).collect();
        assert_eq!(
            places,
            [
                "users.csv row 3",
                "users.csv row 4",
                "members.json member 2",
                "members.json member 3",
                "robots"
            ]
        );
        assert!(parse("x.json", r#"[{"what": 1}]"#).is_err());
    }
}
