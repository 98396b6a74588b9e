//! Change records: every change an operator makes with the CLI (users, projects, members,
//! robots, tokens, keys) is stored in the database's audit log with who made it, what and when,
//! for `portcullis audit list`.
//!
//! Who is the OS account running the command, as the kernel knows it (the real user id), not a
//! variable anyone can set; under `sudo`, the account that ran sudo (`SUDO_USER`, which sudo sets
//! and only root can fake). What is the command's action and arguments, never a secret: no
//! command takes a password or token as an argument.

use crate::store::{now, AuditEntry, AuditKind, Store, StoreError};
use crate::text::for_column;

/// What one successful command changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `user.add`, `member.remove`, `key.generate`, ...: the command, dotted.
    pub action: &'static str,
    /// The project it changed, if any.
    pub project: Option<String>,
    /// The user or robot it changed, if any.
    pub subject: Option<String>,
    /// The object and arguments as an operator would read them.
    pub target: String,
}

impl Change {
    pub fn new(action: &'static str, target: impl Into<String>) -> Change {
        Change { action, project: None, subject: None, target: target.into() }
    }

    pub fn in_project(self, project: &str) -> Change {
        Change { project: Some(project.to_string()), ..self }
    }

    pub fn about(self, subject: &str) -> Change {
        Change { subject: Some(subject.to_string()), ..self }
    }
}

/// The longest actor, subject and target a change is stored with (a change's target holds its
/// arguments, longer than an event's fields).
const MAX_CHANGE_FIELD: usize = 1024;

/// Stores `change` as made now by the OS user running this process. What is stored is shown on
/// operators' terminals by `audit list`: control and invisible characters are replaced.
pub fn record(store: &dyn Store, change: Change) -> Result<(), StoreError> {
    let entry = AuditEntry {
        kind: AuditKind::Change,
        time: now(),
        actor: for_column(&os_user(), MAX_CHANGE_FIELD),
        action: change.action.to_string(),
        project: change.project.map(|project| for_column(&project, MAX_CHANGE_FIELD)),
        subject: change.subject.map(|subject| for_column(&subject, MAX_CHANGE_FIELD)),
        target: for_column(&change.target, MAX_CHANGE_FIELD),
        tag: None,
        digest: None,
        address: None,
        user_agent: None,
        event_id: None,
    };
    store.record_audit(std::slice::from_ref(&entry), None).map(|_| ())
}

/// The name of the OS account running this process, or `uid N` when the account has no name;
/// under sudo, `root (sudo: alice)`, when `SUDO_UID` and `SUDO_USER` name the same account
/// (root could set both to anything, but no one else can).
pub fn os_user() -> String {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let name = account_name(uid).unwrap_or_else(|| format!("uid {uid}"));
    if uid == 0 {
        let sudo_uid = std::env::var("SUDO_UID").ok().and_then(|text| text.parse::<libc::uid_t>().ok());
        let sudo_user = std::env::var("SUDO_USER").ok();
        if let (Some(sudo_uid), Some(sudo_user)) = (sudo_uid, sudo_user) {
            if account_name(sudo_uid).as_deref() == Some(sudo_user.as_str()) {
                return format!("{name} (sudo: {sudo_user})");
            }
        }
    }
    name
}

/// The passwd entry's name of `uid`.
fn account_name(uid: libc::uid_t) -> Option<String> {
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to memory owned here and sized as passed; getpwuid_r writes the
    // entry's strings into `buffer`, which outlives their use below.
    let status = unsafe { libc::getpwuid_r(uid, &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
    if status != 0 || found.is_null() || entry.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points to a NUL-terminated string inside `buffer`.
    let name = unsafe { std::ffi::CStr::from_ptr(entry.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_os_user_is_the_running_account() {
        let uid = unsafe { libc::getuid() };
        if uid == 0 {
            assert_eq!(account_name(0).as_deref(), Some("root"));
        }
        assert!(!os_user().is_empty());
    }
}
