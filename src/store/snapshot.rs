//! [`AccessSnapshot`]: users, projects and memberships held in memory, so that a token request
//! never waits on SQLite for a role.
//!
//! It holds only what a token decision needs: per user the admin and disabled flags, a stamp of
//! the password hash (so a cached login can tell the password changed) and the memberships; per
//! project its name and visibility. It is sized for 100,000 users, 10,000 projects and 1,000,000
//! memberships: projects are interned into dense slots and a membership is one `u32` (slot and
//! role), kept per user in a sorted boxed slice, so a million of them take about 4 MB.
//!
//! For remembered robot and personal-token logins it also holds, per robot and per token, its
//! disabled flag, expiry and the log entry that last changed it.
//!
//! It is built whole at start ([`AccessSnapshot::load`]) and then kept current from the
//! `access_changes` log (schema 0004): [`super::changes`] reads the rows the log names, and
//! [`AccessSnapshot::apply`] swaps them in. [`super::live`] decides when.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use rusqlite::Connection;

use super::changes::{Changes, ProjectRow};
use super::StoreError;
use crate::authz::{ProjectAccess, Role};

/// Bits of a membership word that hold the role's index in [`Role::ALL`].
const ROLE_BITS: u32 = 3;

/// Projects can have at most this many slots (2^29), so that slot and role fit a `u32`.
const MAX_PROJECT_SLOTS: usize = 1 << (32 - ROLE_BITS);

/// What the token path needs to know of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAccess {
    pub is_admin: bool,
    pub disabled: bool,
    /// [`password_stamp`] of the stored hash: a cached login is good only while it is unchanged.
    pub password_stamp: u64,
    /// `slot << ROLE_BITS | role index`, sorted, so a lookup is a binary search on the slot.
    memberships: Box<[u32]>,
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

/// A robot or a personal access token, as a remembered login of it needs it.
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
    /// Whether it may log in at `now` (seconds since the epoch).
    pub fn usable_at(&self, now: i64) -> bool {
        !self.disabled && self.expires_at.is_none_or(|at| at > now)
    }
}

/// The in-memory copy of everything a token decision reads from the database.
#[derive(Debug, Default)]
pub struct AccessSnapshot {
    users: HashMap<i64, UserAccess>,
    robots: HashMap<i64, CredentialState>,
    /// Personal access tokens.
    tokens: HashMap<i64, CredentialState>,
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
    /// The last `access_changes` entry reflected here.
    last_change: i64,
}

/// A stamp of a stored password hash (or of its absence). Not a secret and not a security
/// boundary: it only tells "the same hash as when the login was cached" from "another one"
/// (each new hash has a new salt, so even the same password gives a new stamp).
pub fn password_stamp(hash: Option<&str>) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hash.hash(&mut hasher);
    hasher.finish()
}

impl AccessSnapshot {
    /// Reads everything in one read transaction, so the result is one consistent state.
    pub fn load(connection: &mut Connection) -> Result<AccessSnapshot, StoreError> {
        let transaction = connection.transaction()?;
        let snapshot = Self::load_in(&transaction)?;
        transaction.finish()?;
        Ok(snapshot)
    }

    pub(super) fn load_in(connection: &Connection) -> Result<AccessSnapshot, StoreError> {
        let version = last_change(connection)?;
        let mut snapshot = AccessSnapshot { last_change: version, ..Default::default() };

        let mut statement = connection.prepare("SELECT id, disabled, expires_at FROM robots")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let state = CredentialState { version, disabled: row.get(1)?, expires_at: row.get(2)? };
            snapshot.robots.insert(row.get(0)?, state);
        }
        let mut statement = connection.prepare("SELECT id, expires_at FROM access_tokens")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let state = CredentialState { version, disabled: false, expires_at: row.get(1)? };
            snapshot.tokens.insert(row.get(0)?, state);
        }

        let mut statement = connection.prepare("SELECT id, name, public FROM projects")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let name: String = row.get(1)?;
            snapshot.put_project(row.get(0)?, Some(ProjectRow { name, public: row.get(2)? }))?;
        }

        let mut statement = connection.prepare("SELECT id, is_admin, disabled, password_hash FROM users")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let hash = row.get_ref(3)?.as_str_or_null().map_err(rusqlite::Error::from)?;
            let user = UserAccess {
                is_admin: row.get(1)?,
                disabled: row.get(2)?,
                password_stamp: password_stamp(hash),
                memberships: Box::new([]),
            };
            snapshot.users.insert(row.get(0)?, user);
        }

        // Roles of directory groups, and the groups of each directory user that have one.
        let mut statement =
            connection.prepare("SELECT group_key, project_id, role FROM project_group_members")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let role = stored_role(row.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?);
            let Some(word) = snapshot.membership_word(row.get(1)?, role) else { continue };
            let key = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
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
        for grants in &mut snapshot.group_grants {
            grants.sort_unstable();
        }
        if !snapshot.group_index.is_empty() {
            let mut groups: HashMap<i64, Vec<u32>> = HashMap::new();
            let mut statement = connection.prepare("SELECT user_id, group_key FROM user_directory_groups")?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                let key = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
                if let Some(&index) = snapshot.group_index.get(key) {
                    groups.entry(row.get(0)?).or_default().push(index);
                }
            }
            for (user_id, mut indices) in groups {
                indices.sort_unstable();
                indices.dedup();
                snapshot.user_groups.insert(user_id, indices.into_boxed_slice());
            }
        }

        // Two passes, so each user's list is allocated once at its exact size (a million
        // (user, word) pairs sorted in one vector would take 16 MB at the peak, which the
        // allocator tends to keep): count per user along the user index, then fill.
        let mut lists: HashMap<i64, Vec<u32>> = HashMap::with_capacity(snapshot.users.len());
        let mut statement =
            connection.prepare("SELECT user_id, COUNT(*) FROM project_members GROUP BY user_id")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            lists.insert(row.get(0)?, Vec::with_capacity(row.get(1)?));
        }
        let mut statement = connection.prepare("SELECT user_id, project_id, role FROM project_members")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let role = stored_role(row.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?);
            let Some(word) = snapshot.membership_word(row.get(1)?, role) else { continue };
            if let Some(list) = lists.get_mut(&row.get(0)?) {
                list.push(word);
            }
        }
        for (user_id, mut list) in lists {
            if let Some(user) = snapshot.users.get_mut(&user_id) {
                list.sort_unstable();
                // Exact capacity, so this keeps the allocation.
                user.memberships = list.into_boxed_slice();
            }
        }
        Ok(snapshot)
    }

    /// The project `name`, as the caller `user_id` (`None`: anonymous) relates to it; `None` when
    /// no such project exists.
    pub fn project_access(&self, name: &str, user_id: Option<i64>) -> Option<ProjectAccess> {
        let slot = *self.project_by_name.get(name)?;
        let project = &self.projects[slot as usize];
        let role = user_id.and_then(|id| self.role_in(id, slot));
        Some(ProjectAccess { public: project.public, role })
    }

    pub fn user(&self, id: i64) -> Option<&UserAccess> {
        self.users.get(&id)
    }

    pub fn robot(&self, id: i64) -> Option<&CredentialState> {
        self.robots.get(&id)
    }

    /// A personal access token.
    pub fn token(&self, id: i64) -> Option<&CredentialState> {
        self.tokens.get(&id)
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

    pub fn last_change(&self) -> i64 {
        self.last_change
    }

    /// Takes in the rows [`super::changes::read_changes`] found (projects first, so that a new
    /// member of a new project finds its slot). Returns the old snapshot when replaced whole, for
    /// the caller to free outside its lock.
    pub fn apply(&mut self, changes: Changes) -> Result<Option<AccessSnapshot>, StoreError> {
        match changes {
            Changes::None => {}
            Changes::Everything(snapshot) => return Ok(Some(std::mem::replace(self, *snapshot))),
            Changes::Rows { last_change, projects, users, robots, tokens } => {
                for (id, row) in projects {
                    self.put_project(id, row)?;
                }
                let credentials = [(&mut self.robots, robots), (&mut self.tokens, tokens)];
                for (states, rows) in credentials {
                    for (id, row) in rows {
                        match row {
                            None => states.remove(&id),
                            Some(row) => states.insert(id, CredentialState { version: last_change, ..row }),
                        };
                    }
                }
                for (id, row) in users {
                    self.user_groups.remove(&id);
                    match row {
                        None => {
                            self.users.remove(&id);
                        }
                        Some(row) => {
                            let mut memberships: Vec<u32> = row
                                .memberships
                                .into_iter()
                                .filter_map(|(project, role)| self.membership_word(project, Some(role)))
                                .collect();
                            memberships.sort_unstable();
                            let mut groups: Vec<u32> = row
                                .groups
                                .iter()
                                .filter_map(|key| self.group_index.get(key.as_str()).copied())
                                .collect();
                            groups.sort_unstable();
                            groups.dedup();
                            if !groups.is_empty() {
                                self.user_groups.insert(id, groups.into_boxed_slice());
                            }
                            let user = UserAccess {
                                is_admin: row.is_admin,
                                disabled: row.disabled,
                                password_stamp: row.password_stamp,
                                memberships: memberships.into_boxed_slice(),
                            };
                            self.users.insert(id, user);
                        }
                    }
                }
                self.last_change = last_change;
            }
        }
        Ok(None)
    }

    /// Creates, updates (visibility, name) or kills (`None`) the slot of project `id`.
    fn put_project(&mut self, id: i64, row: Option<ProjectRow>) -> Result<(), StoreError> {
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
                    return Err(StoreError::Invalid("too many projects for the in-memory index".into()));
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
}

impl AccessSnapshot {
    /// The user's role in the project at `slot`: the most capable of their own and those of
    /// their directory groups.
    fn role_in(&self, user_id: i64, slot: u32) -> Option<Role> {
        let own = role_word(&self.users.get(&user_id)?.memberships, slot);
        let groups = self.user_groups.get(&user_id).map(|groups| &groups[..]).unwrap_or_default();
        let by_group = groups.iter().filter_map(|&group| role_word(&self.group_grants[group as usize], slot));
        // Role indices run from project admin (most capable) down, as `Role`'s order does.
        let best = own.into_iter().chain(by_group).min()?;
        Role::ALL.get(best as usize).copied()
    }
}

/// The role index in the word for `slot` among sorted membership `words`.
fn role_word(words: &[u32], slot: u32) -> Option<u32> {
    let index = words.binary_search_by_key(&slot, |word| word >> ROLE_BITS).ok()?;
    Some(words[index] & ((1 << ROLE_BITS) - 1))
}

/// A role as stored (the schema's CHECK allows only these spellings), without the allocations
/// of [`Role::parse`]: it runs once per membership at start.
pub(super) fn stored_role(text: &str) -> Option<Role> {
    Role::ALL.into_iter().find(|role| role.as_str() == text)
}

fn last_change(connection: &Connection) -> Result<i64, StoreError> {
    Ok(connection.query_row("SELECT COALESCE(MAX(seq), 0) FROM access_changes", [], |row| row.get(0))?)
}
