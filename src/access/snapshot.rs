//! [`AccessSnapshot`]: every account fact a token decision needs, held in memory, and the one
//! place that answers "is this principal a system admin" and "what is its role in project P".
//!
//! It holds per user the admin grant an operator gave, the admin status an admin group gave at
//! the last directory login, the disabled flag, a stamp of the password hash (so a remembered
//! login can tell the password changed) and the memberships; per project its name and
//! visibility; per robot and personal access token its disabled flag, expiry and the log entry
//! that last changed it. It is sized for 100,000 users, 10,000 projects and 1,000,000
//! memberships: projects are interned into dense slots and a membership is one `u32` (slot and
//! role), kept per user in a sorted boxed slice, so a million of them take about 4 MB.
//!
//! Pure data: no SQL here. A store backend builds it whole with a [`SnapshotBuilder`] and keeps it
//! current by handing [`Changes`] to [`AccessSnapshot::apply`]; [`super::live`] decides when.

use std::collections::HashMap;

use crate::authz::{ProjectAccess, Role};

/// Bits of a membership word that hold the role's index in [`Role::ALL`].
const ROLE_BITS: u32 = 3;

/// Projects can have at most this many slots (2^29), so that slot and role fit a `u32`.
const MAX_PROJECT_SLOTS: usize = 1 << (32 - ROLE_BITS);

/// The snapshot cannot hold what the database holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("too many projects for the in-memory index (at most {MAX_PROJECT_SLOTS})")]
    TooManyProjects,
}

/// What the database says of one user, as a token decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserFacts {
    /// `users.is_admin`: an operator made the user a system admin.
    pub is_admin: bool,
    /// An admin group made the user a system admin at their last directory login
    /// (`directory_accounts.group_admin`); kept apart so the operator's grant is never lost.
    pub group_admin: bool,
    pub disabled: bool,
    /// `users.password_epoch`: moves each time the password is set, and not when a carried-over
    /// hash is replaced by an argon2id hash of the same password (schema 0010).
    pub password_epoch: i64,
    /// A directory account (source `ldap`), or one a directory login was recorded for
    /// (`directory_accounts`): their credentials that do not go to the directory are re-checked
    /// against it now and then.
    pub directory: bool,
}

/// One user as the snapshot holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAccess {
    facts: UserFacts,
    /// `slot << ROLE_BITS | role index`, sorted, so a lookup is a binary search on the slot.
    memberships: Box<[u32]>,
}

impl UserAccess {
    /// The admin rule, the only copy: an operator's grant or an admin group's.
    pub fn is_system_admin(&self) -> bool {
        self.facts.is_admin || self.facts.group_admin
    }

    /// Why the user is a system admin, for `access check`: `None` when they are not.
    pub fn admin_because(&self) -> Option<&'static str> {
        match (self.facts.is_admin, self.facts.group_admin) {
            (true, _) => Some("made a system admin with `user admin`"),
            (false, true) => Some("a member of a directory admin group (ldap.admin_groups)"),
            (false, false) => None,
        }
    }

    pub fn disabled(&self) -> bool {
        self.facts.disabled
    }

    /// Whether the directory vouches for this user (see [`UserFacts::directory`]).
    pub fn from_directory(&self) -> bool {
        self.facts.directory
    }

    /// A remembered password login holds only while this is the epoch it was verified under.
    pub fn password_epoch(&self) -> i64 {
        self.facts.password_epoch
    }
}

/// One project slot. Slots are never reused while the snapshot lives: a removed project's slot
/// stays, unreachable by name or ID, so a membership word that still names it can never match a
/// newer project. The next full reload drops it.
#[derive(Debug, Clone)]
struct ProjectSlot {
    id: i64,
    /// The name it answers to, to drop from `project_by_name` when it changes or goes.
    name: Box<str>,
    public: bool,
}

/// A robot or a personal access token, as a token decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialState {
    /// The log entry that last changed it (or the snapshot's load point): a login remembered
    /// with another value no longer holds. Any change counts, permission lists included.
    pub version: i64,
    /// A disabled robot (tokens have no flag of their own; their person's counts).
    pub disabled: bool,
    /// Seconds since the epoch; `None` never expires.
    pub expires_at: Option<i64>,
}

impl CredentialState {
    /// Whether it may be used at `now` (seconds since the epoch).
    pub fn usable_at(&self, now: i64) -> bool {
        !self.disabled && self.expires_at.is_none_or(|at| at > now)
    }
}

/// A robot as the database has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RobotRow {
    /// Its login name, folded as names are compared (`store::names::fold`).
    pub folded_name: String,
    pub state: CredentialState,
}

/// A project as the database has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRow {
    pub name: String,
    pub public: bool,
}

/// A user as the database has them now, with their memberships and recorded directory groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub facts: UserFacts,
    /// (project ID, role) of each membership.
    pub memberships: Vec<(i64, Role)>,
    /// Keys of the directory groups recorded at the user's last directory login.
    pub groups: Vec<String>,
}

/// What changed since the snapshot's last log entry, as a backend read it.
#[derive(Debug)]
pub enum Changes {
    /// Nothing relevant happened (another table changed, or the log is where we left it).
    None,
    /// The named rows as they are now; `None` for a removed row.
    Rows {
        last_change: i64,
        projects: Vec<(i64, Option<ProjectRow>)>,
        users: Vec<(i64, Option<UserRow>)>,
        /// Robots, with their login names, and personal access tokens (their `version` is set
        /// when applied).
        robots: Vec<(i64, Option<RobotRow>)>,
        personal_tokens: Vec<(i64, Option<CredentialState>)>,
        /// Whether a signing key was added, changed state or removed.
        keys_changed: bool,
    },
    /// Too much changed, entries were pruned unseen, or the database is not the one the
    /// snapshot was loaded from: a complete new snapshot.
    Everything(Box<AccessSnapshot>),
}

/// The in-memory copy of everything a token decision reads from the database.
#[derive(Debug, Default)]
pub struct AccessSnapshot {
    users: HashMap<i64, UserAccess>,
    robots: HashMap<i64, CredentialState>,
    /// Folded robot login names to the robots of that name (more than one only in databases
    /// made before names were compared folded): a login whose name is none of these is no robot,
    /// so checking it costs no database lookup (a guessing flood of random names must cost next
    /// to nothing).
    robot_by_name: HashMap<Box<str>, Vec<i64>>,
    /// Each robot's folded name, to drop it from `robot_by_name` when the robot changes or goes.
    robot_names: HashMap<i64, Box<str>>,
    personal_tokens: HashMap<i64, CredentialState>,
    /// Project name to slot, for scopes; holds live projects only.
    project_by_name: HashMap<Box<str>, u32>,
    /// Project ID to slot, for memberships read from the database.
    project_by_id: HashMap<i64, u32>,
    projects: Vec<ProjectSlot>,
    /// Directory group keys that have project roles, to their index in `group_grants`.
    group_index: HashMap<Box<str>, u32>,
    /// Per group: membership words as for users, sorted.
    group_grants: Vec<Vec<u32>>,
    /// Directory users' groups that have project roles (indices into `group_grants`), as
    /// recorded at their last directory login. Apart from `users`, which it would grow by 16
    /// bytes each, most of whom have none.
    user_groups: HashMap<i64, Box<[u32]>>,
    /// The last change-log entry reflected here.
    last_change: i64,
    /// Counts the signing-key changes (and full reloads) this snapshot took in: the keyring
    /// compares it with the one it loaded at ([`crate::token::keyring::Keyring::is_at`]).
    key_generation: u64,
}

impl AccessSnapshot {
    /// The project `name`, as the caller `user_id` (`None`: anonymous) relates to it; `None` when
    /// no such project exists.
    pub fn project_access(&self, name: &str, user_id: Option<i64>) -> Option<ProjectAccess> {
        let slot = *self.project_by_name.get(name)?;
        let project = &self.projects[slot as usize];
        let role = user_id.and_then(|id| self.role_in(id, slot));
        Some(ProjectAccess { public: project.public, role })
    }

    /// The user `id`, if they exist.
    pub fn user(&self, id: i64) -> Option<&UserAccess> {
        self.users.get(&id)
    }

    pub fn robot(&self, id: i64) -> Option<&CredentialState> {
        self.robots.get(&id)
    }

    /// Whether a robot has the login name `folded` (folded as `store::names::fold` does).
    pub fn has_robot_named(&self, folded: &str) -> bool {
        self.robot_by_name.contains_key(folded)
    }

    /// Replaces (or, for `None`, removes) robot `id` and its name.
    fn put_robot(&mut self, id: i64, row: Option<RobotRow>, version: i64) {
        if let Some(old) = self.robot_names.remove(&id) {
            if let Some(ids) = self.robot_by_name.get_mut(&old) {
                ids.retain(|robot| *robot != id);
                if ids.is_empty() {
                    self.robot_by_name.remove(&old);
                }
            }
        }
        match row {
            None => {
                self.robots.remove(&id);
            }
            Some(RobotRow { folded_name, state }) => {
                self.robots.insert(id, CredentialState { version, ..state });
                self.name_robot(id, folded_name);
            }
        }
    }

    fn name_robot(&mut self, id: i64, folded_name: String) {
        let name: Box<str> = folded_name.into();
        self.robot_by_name.entry(name.clone()).or_default().push(id);
        self.robot_names.insert(id, name);
    }

    pub fn personal_token(&self, id: i64) -> Option<&CredentialState> {
        self.personal_tokens.get(&id)
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn project_count(&self) -> usize {
        self.project_by_name.len()
    }

    pub fn membership_count(&self) -> usize {
        self.users.values().map(|user| user.memberships.len()).sum()
    }

    /// The last change-log entry reflected here.
    pub fn last_change(&self) -> i64 {
        self.last_change
    }

    /// See the field: moves on whenever the signing keys may have changed.
    pub fn key_generation(&self) -> u64 {
        self.key_generation
    }

    /// Takes in what a backend read (projects first, so that a new member of a new project finds
    /// its slot). Returns the old snapshot when replaced whole, for the caller to free outside its
    /// lock.
    pub fn apply(&mut self, changes: Changes) -> Result<Option<AccessSnapshot>, AccessError> {
        match changes {
            Changes::None => {}
            Changes::Everything(snapshot) => {
                // Anything may have changed, the keys too.
                let key_generation = self.key_generation + 1;
                let old = std::mem::replace(self, *snapshot);
                self.key_generation = key_generation;
                return Ok(Some(old));
            }
            Changes::Rows { last_change, projects, users, robots, personal_tokens, keys_changed } => {
                if keys_changed {
                    self.key_generation += 1;
                }
                for (id, row) in projects {
                    self.put_project(id, row)?;
                }
                for (id, row) in robots {
                    self.put_robot(id, row, last_change);
                }
                for (id, row) in personal_tokens {
                    match row {
                        None => self.personal_tokens.remove(&id),
                        Some(row) => {
                            self.personal_tokens.insert(id, CredentialState { version: last_change, ..row })
                        }
                    };
                }
                for (id, row) in users {
                    self.put_user(id, row);
                }
                self.last_change = last_change;
            }
        }
        Ok(None)
    }

    /// Replaces (or, for `None`, removes) user `id` with their memberships and groups.
    fn put_user(&mut self, id: i64, row: Option<UserRow>) {
        self.user_groups.remove(&id);
        let Some(row) = row else {
            self.users.remove(&id);
            return;
        };
        let mut memberships: Vec<u32> = row
            .memberships
            .into_iter()
            .filter_map(|(project, role)| self.membership_word(project, Some(role)))
            .collect();
        memberships.sort_unstable();
        let mut groups: Vec<u32> =
            row.groups.iter().filter_map(|key| self.group_index.get(key.as_str()).copied()).collect();
        groups.sort_unstable();
        groups.dedup();
        if !groups.is_empty() {
            self.user_groups.insert(id, groups.into_boxed_slice());
        }
        self.users.insert(id, UserAccess { facts: row.facts, memberships: memberships.into_boxed_slice() });
    }

    /// Creates, updates (visibility, name) or kills (`None`) the slot of project `id`.
    fn put_project(&mut self, id: i64, row: Option<ProjectRow>) -> Result<(), AccessError> {
        let existing = self.project_by_id.get(&id).copied();
        if let Some(slot) = existing {
            // Drop the old name first: a renamed or removed project must not answer to it.
            let old_name = &self.projects[slot as usize].name;
            if self.project_by_name.get(old_name) == Some(&slot) {
                self.project_by_name.remove(old_name);
            }
        }
        let Some(row) = row else {
            if existing.is_some() {
                self.project_by_id.remove(&id);
            }
            return Ok(());
        };
        let slot = match existing {
            Some(slot) => slot,
            None => {
                if self.projects.len() >= MAX_PROJECT_SLOTS {
                    return Err(AccessError::TooManyProjects);
                }
                let name = row.name.clone().into_boxed_str();
                self.projects.push(ProjectSlot { id, name, public: row.public });
                let slot = (self.projects.len() - 1) as u32;
                self.project_by_id.insert(id, slot);
                slot
            }
        };
        let name = row.name.into_boxed_str();
        let project = &mut self.projects[slot as usize];
        project.public = row.public;
        project.name = name.clone();
        debug_assert_eq!(project.id, id);
        self.project_by_name.insert(name, slot);
        Ok(())
    }

    /// The membership word for a role in project `project_id`, if that project is known.
    fn membership_word(&self, project_id: i64, role: Option<Role>) -> Option<u32> {
        let slot = *self.project_by_id.get(&project_id)?;
        let role = Role::ALL.iter().position(|r| Some(*r) == role)? as u32;
        Some(slot << ROLE_BITS | role)
    }

    /// The role rule, the only copy: the user's role in the project at `slot` is the most
    /// capable of their own and those of their directory groups.
    fn role_in(&self, user_id: i64, slot: u32) -> Option<Role> {
        // Role indices run from project admin (most capable) down, as `Role`'s order does; roles
        // nest (each allows all that the next one does), so the most capable is their union.
        let best = self.roles_in(user_id, slot).map(|(role, _)| role).min()?;
        Role::ALL.get(best as usize).copied()
    }

    /// Every role index the user has in the project at `slot`, each with the group index it
    /// comes through (`None`: their own membership).
    fn roles_in(&self, user_id: i64, slot: u32) -> impl Iterator<Item = (u32, Option<u32>)> + '_ {
        let own = self.users.get(&user_id).and_then(|user| role_word(&user.memberships, slot));
        let groups = self.user_groups.get(&user_id).map(|groups| &groups[..]).unwrap_or_default();
        let by_group = groups.iter().filter_map(move |&group| {
            role_word(&self.group_grants[group as usize], slot).map(|role| (role, Some(group)))
        });
        own.map(|role| (role, None)).into_iter().chain(by_group)
    }

    /// Where the user's roles in project `name` come from, for `access check`: each role with
    /// the directory group it is granted to (`None`: a membership of the user's own), most
    /// capable first. [`AccessSnapshot::project_access`] answers with the first.
    pub fn role_sources(&self, name: &str, user_id: i64) -> Vec<(Role, Option<String>)> {
        let Some(&slot) = self.project_by_name.get(name) else { return Vec::new() };
        let group_name = |index: u32| {
            self.group_index
                .iter()
                .find(|(_, &i)| i == index)
                .map(|(key, _)| key.to_string())
                .unwrap_or_default()
        };
        let mut sources: Vec<(Role, Option<String>)> = self
            .roles_in(user_id, slot)
            .filter_map(|(role, group)| Some((*Role::ALL.get(role as usize)?, group.map(group_name))))
            .collect();
        sources.sort();
        sources
    }
}

/// The role index in the word for `slot` among sorted membership `words`.
fn role_word(words: &[u32], slot: u32) -> Option<u32> {
    let index = words.binary_search_by_key(&slot, |word| word >> ROLE_BITS).ok()?;
    Some(words[index] & ((1 << ROLE_BITS) - 1))
}

/// Builds a whole snapshot from rows a backend streams in, allocating each user's membership
/// list once at its exact size (a million (user, word) pairs sorted in one vector would take
/// 16 MB at the peak, which the allocator tends to keep).
///
/// Feed it in this order: robots, personal tokens and projects; users; group grants; users'
/// groups; membership counts; memberships. Then [`SnapshotBuilder::finish`].
pub struct SnapshotBuilder {
    snapshot: AccessSnapshot,
    /// Each user's membership words while they are read, allocated at the counted size.
    lists: HashMap<i64, Vec<u32>>,
    /// Each user's group indices while they are read.
    groups: HashMap<i64, Vec<u32>>,
}

impl SnapshotBuilder {
    /// A builder for the state as of change-log entry `last_change`.
    pub fn new(last_change: i64) -> Self {
        SnapshotBuilder {
            snapshot: AccessSnapshot { last_change, ..Default::default() },
            lists: HashMap::new(),
            groups: HashMap::new(),
        }
    }

    /// Robot `id`, its login name folded (`store::names::fold`).
    pub fn robot(&mut self, id: i64, folded_name: String, disabled: bool, expires_at: Option<i64>) {
        let version = self.snapshot.last_change;
        self.snapshot.robots.insert(id, CredentialState { version, disabled, expires_at });
        self.snapshot.name_robot(id, folded_name);
    }

    pub fn personal_token(&mut self, id: i64, expires_at: Option<i64>) {
        let version = self.snapshot.last_change;
        self.snapshot.personal_tokens.insert(id, CredentialState { version, disabled: false, expires_at });
    }

    pub fn project(&mut self, id: i64, row: ProjectRow) -> Result<(), AccessError> {
        self.snapshot.put_project(id, Some(row))
    }

    pub fn user(&mut self, id: i64, facts: UserFacts) {
        self.snapshot.users.insert(id, UserAccess { facts, memberships: Box::new([]) });
    }

    /// A role granted to the directory group `key` in project `project_id`.
    pub fn group_grant(&mut self, key: &str, project_id: i64, role: Option<Role>) {
        let snapshot = &mut self.snapshot;
        let Some(word) = snapshot.membership_word(project_id, role) else { return };
        let index = match snapshot.group_index.get(key) {
            Some(&index) => index,
            None => {
                snapshot.group_grants.push(Vec::new());
                let index = (snapshot.group_grants.len() - 1) as u32;
                snapshot.group_index.insert(key.into(), index);
                index
            }
        };
        snapshot.group_grants[index as usize].push(word);
    }

    /// Whether any group has a role: users' groups need reading only then.
    pub fn has_group_grants(&self) -> bool {
        !self.snapshot.group_index.is_empty()
    }

    /// User `user_id` was in the group `key` at their last directory login.
    pub fn user_group(&mut self, user_id: i64, key: &str) {
        if let Some(&index) = self.snapshot.group_index.get(key) {
            self.groups.entry(user_id).or_default().push(index);
        }
    }

    /// User `user_id` has `count` memberships, about to follow.
    pub fn membership_count(&mut self, user_id: i64, count: usize) {
        self.lists.insert(user_id, Vec::with_capacity(count));
    }

    pub fn membership(&mut self, user_id: i64, project_id: i64, role: Option<Role>) {
        let Some(word) = self.snapshot.membership_word(project_id, role) else { return };
        if let Some(list) = self.lists.get_mut(&user_id) {
            list.push(word);
        }
    }

    pub fn finish(self) -> AccessSnapshot {
        let SnapshotBuilder { mut snapshot, lists, groups } = self;
        for grants in &mut snapshot.group_grants {
            grants.sort_unstable();
        }
        for (user_id, mut indices) in groups {
            indices.sort_unstable();
            indices.dedup();
            snapshot.user_groups.insert(user_id, indices.into_boxed_slice());
        }
        for (user_id, mut list) in lists {
            if let Some(user) = snapshot.users.get_mut(&user_id) {
                list.sort_unstable();
                // Exact capacity, so this keeps the allocation.
                user.memberships = list.into_boxed_slice();
            }
        }
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{DELETE, PULL, PUSH};

    fn facts(is_admin: bool, group_admin: bool) -> UserFacts {
        UserFacts { is_admin, group_admin, disabled: false, password_epoch: 0, directory: false }
    }

    fn snapshot() -> AccessSnapshot {
        let mut builder = SnapshotBuilder::new(7);
        builder.project(1, ProjectRow { name: "team".into(), public: false }).unwrap();
        builder.project(2, ProjectRow { name: "open".into(), public: true }).unwrap();
        builder.user(10, facts(false, false));
        builder.user(11, facts(false, true));
        builder.user(12, facts(true, false));
        builder.group_grant("name:devs", 1, Some(Role::Developer));
        builder.user_group(10, "name:devs");
        builder.user_group(10, "name:ungranted");
        builder.membership_count(10, 2);
        builder.membership(10, 1, Some(Role::Guest));
        builder.membership(10, 2, Some(Role::Maintainer));
        builder.finish()
    }

    #[test]
    fn admin_is_the_operators_grant_or_an_admin_groups() {
        let snapshot = snapshot();
        assert!(!snapshot.user(10).unwrap().is_system_admin());
        assert!(snapshot.user(11).unwrap().is_system_admin(), "through an admin group");
        assert!(snapshot.user(12).unwrap().is_system_admin(), "granted by an operator");
        assert!(snapshot.user(13).is_none());
    }

    #[test]
    fn the_most_capable_of_own_and_group_roles_wins() {
        let snapshot = snapshot();
        let role = |project, user| snapshot.project_access(project, Some(user)).and_then(|a| a.role);
        assert_eq!(role("team", 10), Some(Role::Developer), "the group's developer beats own guest");
        assert_eq!(role("open", 10), Some(Role::Maintainer));
        assert_eq!(role("team", 11), None);
        assert_eq!(snapshot.project_access("open", None), Some(ProjectAccess { public: true, role: None }));
        assert_eq!(snapshot.project_access("missing", Some(10)), None);
        assert_eq!(snapshot.membership_count(), 2);
        assert_eq!(snapshot.last_change(), 7);
    }

    #[test]
    fn applied_rows_replace_users_projects_and_credentials() {
        let mut snapshot = snapshot();
        let changes = Changes::Rows {
            last_change: 9,
            projects: vec![(1, None), (3, Some(ProjectRow { name: "new".into(), public: false }))],
            users: vec![
                (
                    11,
                    Some(UserRow {
                        facts: facts(false, false),
                        memberships: vec![(3, Role::Guest)],
                        groups: vec![],
                    }),
                ),
                (12, None),
            ],
            robots: vec![(
                5,
                Some(RobotRow {
                    folded_name: "robot_team+ci".into(),
                    state: CredentialState { version: 0, disabled: true, expires_at: None },
                }),
            )],
            personal_tokens: vec![],
            keys_changed: false,
        };
        snapshot.apply(changes).unwrap();
        assert_eq!(snapshot.project_access("team", Some(10)), None, "a removed project answers nothing");
        assert!(!snapshot.user(11).unwrap().is_system_admin(), "the admin group is gone");
        assert_eq!(snapshot.project_access("new", Some(11)).and_then(|a| a.role), Some(Role::Guest));
        assert!(snapshot.user(12).is_none());
        assert_eq!(snapshot.robot(5).map(|robot| robot.version), Some(9));
        assert_eq!(snapshot.last_change(), 9);
        assert!(snapshot.has_robot_named("robot_team+ci"));
        let renamed = RobotRow {
            folded_name: "robot_team+cd".into(),
            state: CredentialState { version: 0, disabled: false, expires_at: None },
        };
        let changes = Changes::Rows {
            last_change: 10,
            projects: vec![],
            users: vec![],
            robots: vec![(5, Some(renamed))],
            personal_tokens: vec![],
            keys_changed: false,
        };
        snapshot.apply(changes).unwrap();
        assert!(!snapshot.has_robot_named("robot_team+ci") && snapshot.has_robot_named("robot_team+cd"));
        // Two robots of one folded name (an old database): removing one keeps the other's.
        let twin = |name: &str| RobotRow {
            folded_name: name.into(),
            state: CredentialState { version: 0, disabled: false, expires_at: None },
        };
        let changes = Changes::Rows {
            last_change: 11,
            projects: vec![],
            users: vec![],
            robots: vec![(6, Some(twin("robot_team+cd")))],
            personal_tokens: vec![],
            keys_changed: false,
        };
        snapshot.apply(changes).unwrap();
        let changes = Changes::Rows {
            last_change: 12,
            projects: vec![],
            users: vec![],
            robots: vec![(5, None)],
            personal_tokens: vec![],
            keys_changed: false,
        };
        snapshot.apply(changes).unwrap();
        assert!(snapshot.has_robot_named("robot_team+cd"), "robot 6 still has the name");
    }

    #[test]
    fn roles_nest_so_the_most_capable_is_the_union() {
        // `role_in` keeps one role; that is only right while each role allows everything the
        // roles after it (in `Role`'s order) allow.
        for pair in Role::ALL.windows(2) {
            for action in [PULL, PUSH, DELETE] {
                assert!(pair[0].allows(action) || !pair[1].allows(action), "{pair:?} {action}");
            }
            assert!(pair[0] < pair[1]);
        }
    }
}
