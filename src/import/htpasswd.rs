//! An htpasswd file: `name:hash` per line, as the registry's `auth: htpasswd` reads it (bcrypt
//! only) and Apache's `htpasswd` writes it (also `$apr1$`, `{SHA}`, crypt and plain text).
//!
//! Blank lines and `#` comments are skipped. A line that cannot be carried over is a finding with
//! its number; the rest are imported.

use super::{Finding, HashPolicy, Plan};
use crate::authz::Role;
use crate::store::{ImportedMember, ImportedProject, ImportedUser};
use crate::text::for_message;

/// Every user of `text`, each a member of `project` with `role` when given.
pub fn read(text: &str, policy: &HashPolicy<'_>, project: Option<(&str, Role)>) -> Plan {
    let mut plan = Plan::default();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let place = format!("line {number}");
        // As the registry reads it: the line trimmed, the name up to the first `:`, the hash all
        // of the rest.
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, hash)) = line.split_once(':') else {
            plan.findings.push(Finding::skipped(place, "no ':' between the user name and the hash"));
            continue;
        };
        match policy.accept(hash) {
            Ok((password_hash, _)) => {
                plan.add_user(place, ImportedUser { name: name.to_string(), password_hash, is_admin: false })
            }
            Err(why) => {
                plan.findings.push(Finding::skipped(place, format!("{}: {why}; skipped", for_message(name))))
            }
        }
    }
    if let Some((project, role)) = project {
        plan.import.projects.push(ImportedProject { name: project.to_string(), public: false });
        let members = plan.import.users.iter().map(|user| ImportedMember {
            project: project.to_string(),
            user: user.name.clone(),
            role,
        });
        plan.import.members = members.collect();
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow_weak: bool, hasher: &crate::authn::password::PasswordHasher) -> HashPolicy<'_> {
        HashPolicy { allow_weak, hasher }
    }

    #[test]
    fn bcrypt_lines_are_imported_and_the_rest_reported_by_number() {
        let hasher = crate::authn::password::tests::cheap();
        let bcrypt = bcrypt::hash("pw", 4).unwrap();
        let text = format!(
            "# users\nalice:{bcrypt}\n\nbob:$apr1$saltsalt$abcdefghijklmnopqrstuv\ncarol:{{SHA}}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n\
             dave:abJnggxhB/yWI\nerin:plain-password\nno colon here\nALICE:{bcrypt}\nfrank:$2y$31$xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n"
        );
        let strict = read(&text, &policy(false, &hasher), Some(("team", Role::Developer)));
        let names: Vec<_> = strict.import.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["alice"]);
        let places: Vec<_> = strict.findings.iter().map(|f| f.place.as_str()).collect();
        assert_eq!(places, ["line 4", "line 5", "line 6", "line 7", "line 8", "line 9", "line 10"]);
        assert!(strict.findings[0].message.contains("weak apr1-md5"), "{:?}", strict.findings[0]);
        assert!(strict.findings[3].message.contains("plain-text"), "{:?}", strict.findings[3]);
        assert!(strict.findings[5].message.contains("same user as line 2"));
        assert!(strict.findings[6].message.contains("cost 31"));
        assert_eq!(strict.import.members.len(), 1);
        assert_eq!(strict.import.members[0].role, Role::Developer);

        let weak = read(&text, &policy(true, &hasher), None);
        let names: Vec<_> = weak.import.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "carol", "dave", "erin"]);
        let erin = &weak.import.users[4].password_hash;
        assert!(erin.starts_with("$argon2id$"), "plain text is hashed at once: {erin}");
        assert!(weak.import.members.is_empty());
    }
}
