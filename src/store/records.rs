//! What the store keeps, as every backend hands it over: accounts, projects, memberships, group
//! grants and the credentials that are not passwords. Plain data, no SQL.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::authz::{Ceiling, ProjectSet, Role};

/// Where an account's password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// An argon2id hash in the database.
    Database,
    /// The directory (LDAP, Active Directory); the database holds no password.
    Ldap,
}

impl Source {
    /// The spelling stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Database => "database",
            Source::Ldap => "ldap",
        }
    }

    pub fn from_stored(text: &str) -> Option<Source> {
        [Source::Database, Source::Ldap].into_iter().find(|source| source.as_str() == text)
    }
}

/// An account as stored. The password hash is never serialized (it is skipped in `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    /// The canonical spelling: the token's `sub`, whatever case a login typed.
    pub name: String,
    #[serde(skip)]
    pub password_hash: Option<String>,
    /// Moves each time the password is set (see `schema/sqlite/0010_imported_passwords.sql`).
    #[serde(skip)]
    pub password_epoch: i64,
    /// Made a system admin by an operator (an admin group's say is kept apart, in the snapshot).
    pub is_admin: bool,
    pub disabled: bool,
    pub source: Source,
    pub created_at: i64,
}

/// A new account, of either source.
#[derive(Debug, Clone, Copy)]
pub struct NewUser<'a> {
    pub name: &'a str,
    /// `Some` for a database account, `None` for a directory account.
    pub password_hash: Option<&'a str>,
    pub is_admin: bool,
    pub source: Source,
}

#[derive(Debug, Clone, Serialize)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub public: bool,
    pub created_at: i64,
}

/// A user's role in a project.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub project: String,
    pub user: String,
    pub role: String,
}

/// A project role granted to a directory group.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupMember {
    pub project: String,
    /// The group as it was granted: a name or a DN.
    pub group: String,
    pub role: String,
}

/// What a directory login proved, to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryLogin {
    /// The Portcullis user name: the entry's login attribute value.
    pub account: String,
    /// The entry's DN.
    pub dn: String,
    /// The entry's lasting identifier (`entryUUID`, `objectGUID`), when the directory gives one.
    pub entry_id: Option<String>,
    /// When the entry's password last changed (Unix seconds), when the directory says.
    pub password_changed_at: Option<i64>,
    /// The user's groups, key to name (see [`crate::dn::group_key`]); two keys per group, DN and
    /// name.
    pub groups: BTreeMap<String, String>,
    /// Whether an admin group made the user a system admin.
    pub group_admin: bool,
}

/// What the directory last said about one directory user (`directory_accounts`): what a
/// re-check of their tokens looks up, and how old that word is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryAccount {
    pub user_id: i64,
    /// The entry's DN at the last login or check.
    pub dn: String,
    /// The entry's lasting identifier recorded then, if the directory gave one: a DN that names
    /// another entry later (a user deleted, another made under the same name) is not this user.
    pub entry_id: Option<String>,
    /// When the entry's password last changed, as recorded then (Unix seconds).
    pub password_changed_at: Option<i64>,
    /// Whether an admin group made the user a system admin then.
    pub group_admin: bool,
    /// When the directory last vouched for the user (a login or a re-check), Unix seconds.
    pub checked_at: i64,
}

/// What a re-check by DN found, to record (see [`super::Store::record_directory_check`]).
#[derive(Debug, Clone)]
pub struct DirectoryCheck<'a> {
    pub entry_id: Option<&'a str>,
    pub password_changed_at: Option<i64>,
    /// The user's groups, key to name, as in [`DirectoryLogin::groups`].
    pub groups: &'a BTreeMap<String, String>,
    pub group_admin: bool,
    pub checked_at: i64,
}

/// A robot account as stored and listed (the secret digest stays in the backend's queries).
#[derive(Debug, Clone, Serialize)]
pub struct Robot {
    pub id: i64,
    /// The full login name, prefix included.
    pub name: String,
    /// The project of a project robot; `None` for a system robot.
    pub project: Option<String>,
    /// A system robot's projects: every one, or the listed ones.
    pub all_projects: bool,
    pub projects: Vec<String>,
    /// `pull,push,delete` or a part of it.
    pub actions: String,
    pub description: String,
    pub disabled: bool,
    /// Seconds since the epoch; `None` never expires.
    pub expires_at: Option<i64>,
    pub created_at: i64,
    /// When its secret last logged in (to within a minute, and the credential cache's lifetime).
    pub last_used_at: Option<i64>,
}

impl Robot {
    /// The permission list as authorization applies it.
    pub fn ceiling(&self) -> Ceiling {
        let projects = match (&self.project, self.all_projects) {
            (Some(project), _) => ProjectSet::Only(BTreeSet::from([project.clone()])),
            (None, true) => ProjectSet::All,
            (None, false) => ProjectSet::Only(self.projects.iter().cloned().collect()),
        };
        Ceiling::from_stored(projects, &self.actions)
    }

    /// Where the robot may act, for people: `team`, `all projects`, `a,b`.
    pub fn scope_text(&self) -> String {
        self.ceiling().projects.to_string()
    }
}

/// What a new robot is.
pub struct NewRobot<'a> {
    pub name: &'a str,
    /// `Some` for a project robot.
    pub project: Option<&'a str>,
    /// For a system robot: `None` for every project, else the list.
    pub system_projects: Option<&'a [String]>,
    pub actions: &'a str,
    pub description: &'a str,
    pub expires_at: Option<i64>,
    pub secret_digest: &'a str,
}

/// The failed password logins of one account, as every process sees them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LoginFailures {
    /// The account name, folded.
    pub name: String,
    /// Failures since `first_failure` (counts start again a window after the last failure).
    pub failures: i64,
    /// Of those, failed directory binds.
    pub directory_failures: i64,
    pub first_failure: i64,
    pub last_failure: i64,
    /// The client address of the last failure.
    pub last_address: String,
    /// When `user unlock` last cleared the counts.
    pub cleared_at: Option<i64>,
}

/// A personal access token as listed (never the token or its digest).
#[derive(Debug, Clone, Serialize)]
pub struct PersonalToken {
    pub id: i64,
    /// The owner's user name.
    pub user: String,
    /// The owner's label for it, unique per owner.
    pub name: String,
    pub actions: String,
    /// Every project the owner may use, or only `projects`.
    pub all_projects: bool,
    pub projects: Vec<String>,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    /// When it last logged in (to within a minute, and the credential cache's lifetime).
    pub last_used_at: Option<i64>,
}

impl PersonalToken {
    pub fn ceiling(&self) -> Ceiling {
        let projects = match self.all_projects {
            true => ProjectSet::All,
            false => ProjectSet::Only(self.projects.iter().cloned().collect()),
        };
        Ceiling::from_stored(projects, &self.actions)
    }
}

/// A personal access token found by its digest, and its owner's row ID.
#[derive(Debug, Clone)]
pub struct PersonalTokenLogin {
    pub token: PersonalToken,
    pub user_id: i64,
}

/// What a new personal access token is.
pub struct NewPersonalToken<'a> {
    /// The owner's user name.
    pub user: &'a str,
    pub label: &'a str,
    pub digest: &'a str,
    pub actions: &'a str,
    /// `None`: every project the owner may use.
    pub projects: Option<&'a [String]>,
    pub expires_at: Option<i64>,
}

/// A refresh token as found by its digest and as listed by `portcullis refresh-token list`
/// (never the token or its digest).
#[derive(Debug, Clone, Serialize)]
pub struct RefreshToken {
    pub id: i64,
    /// The owner's row, whose account facts the snapshot holds.
    #[serde(skip)]
    pub user_id: i64,
    /// The owner's user name.
    pub user: String,
    pub service: String,
    pub client_id: String,
    pub created_at: i64,
    /// Coarse: updated at most once a minute.
    pub last_used_at: i64,
}

/// A refresh token about to be stored, and which of its owner's older ones go first.
pub struct NewRefreshToken<'a> {
    pub digest: &'a str,
    pub user_id: i64,
    pub service: &'a str,
    pub client_id: &'a str,
    pub created_at: i64,
    /// The owner's tokens last used before this, or created before `created_before`, are dropped.
    pub idle_before: i64,
    pub created_before: i64,
    /// The owner keeps at most this many, the least recently used going first.
    pub keep_at_most: i64,
}

/// Which part of the stored audit trail an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditKind {
    /// A change made with the CLI: users, projects, members, robots, tokens, keys.
    Change,
    /// A push, pull or delete the registry notified.
    Event,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Change => "change",
            AuditKind::Event => "event",
        }
    }

    pub fn from_stored(text: &str) -> Option<AuditKind> {
        [AuditKind::Change, AuditKind::Event].into_iter().find(|kind| kind.as_str() == text)
    }
}

/// One entry of the stored audit trail (schema 0008), as recorded and as listed. Never holds a
/// secret: a change's `target` names what changed and how, not a password or token.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditEntry {
    pub kind: AuditKind,
    /// Seconds since the epoch.
    pub time: i64,
    /// The OS user that ran the CLI, or the token `sub` of the registry request ("" anonymous).
    pub actor: String,
    /// `user.add`, `member.remove`, ... for a change; `push`, `pull`, `delete` for an event.
    pub action: String,
    /// The project concerned, if any.
    pub project: Option<String>,
    /// The user or robot a change is about.
    pub subject: Option<String>,
    /// A change's object and arguments (`team/alice role=developer`); an event's repository.
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The client address the registry saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The registry's id of an event: a redelivered event is stored once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

/// Which audit entries `audit list` wants; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub kind: Option<AuditKind>,
    /// Entries made by this user (the actor) or about them (the subject).
    pub user: Option<String>,
    pub project: Option<String>,
    /// Entries at or after this time (seconds since the epoch).
    pub since: Option<i64>,
    /// At most this many, the newest.
    pub limit: usize,
}

/// A signing key's place in a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Trusted by registries (in the bundle and the JWKS), not signing yet.
    Next,
    /// Signing; exactly one.
    Current,
    /// No longer signing; trusted until every token it signed has expired.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Current => "current",
            KeyState::Retired => "retired",
        }
    }

    pub fn from_stored(text: &str) -> Option<KeyState> {
        [KeyState::Next, KeyState::Current, KeyState::Retired]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// A signing key as stored (schema 0009). The private key never leaves the store but to sign.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub id: i64,
    pub state: KeyState,
    /// `ES256` or `RS256`.
    pub algorithm: String,
    /// PKCS#8 PEM.
    pub private_key: String,
    /// The self-signed certificate, PEM.
    pub certificate: String,
    pub created_at: i64,
    /// When it began signing.
    pub activated_at: Option<i64>,
    /// When it stopped signing.
    pub retired_at: Option<i64>,
    /// The longest `expires_in` of any server that signed with it.
    pub max_lifetime: Option<i64>,
}

/// A key to store.
#[derive(Debug, Clone, Copy)]
pub struct NewSigningKey<'a> {
    pub state: KeyState,
    pub algorithm: &'static str,
    pub private_key: &'a str,
    pub certificate: &'a str,
}

/// Accounts, projects and memberships carried over from another server (`portcullis import`),
/// written in one transaction: all of it or, on an error, none.
#[derive(Debug, Clone, Default)]
pub struct Import {
    pub users: Vec<ImportedUser>,
    /// Created private or public when missing; an existing project keeps its visibility.
    pub projects: Vec<ImportedProject>,
    pub members: Vec<ImportedMember>,
    /// Whether a user that exists already gets the imported hash (a password change: it ends
    /// their identity tokens); otherwise they are kept as they are.
    pub replace_hashes: bool,
}

#[derive(Debug, Clone)]
pub struct ImportedUser {
    pub name: String,
    /// Carried over as it was (bcrypt, PBKDF2, ...), or argon2id made by the import.
    pub password_hash: String,
    /// A system admin where the old server said so (Harbor's `sysadmin_flag`); only for users
    /// the import creates.
    pub is_admin: bool,
}

#[derive(Debug, Clone)]
pub struct ImportedProject {
    pub name: String,
    pub public: bool,
}

#[derive(Debug, Clone)]
pub struct ImportedMember {
    pub project: String,
    pub user: String,
    pub role: Role,
}

/// What the import did with one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Imported {
    Created,
    /// An existing user got the imported hash, or an existing member the imported role.
    Updated,
    /// It was there already, as imported.
    Unchanged,
    /// It was there already and stays as it was, for this reason.
    Kept(String),
}

/// What [`crate::store::Store::import`] did, item by item, in the order given.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub users: Vec<(String, Imported)>,
    pub projects: Vec<(String, Imported)>,
    /// `(project, user, what)`.
    pub members: Vec<(String, String, Imported)>,
}
