//! [`AccessSnapshot`]: users, projects and memberships held in memory, so that a token request
//! never waits on SQLite for a role.
//!
//! It holds only what a token decision needs: per user the admin and disabled flags, a stamp of
//! the password hash (so a cached login can tell the password changed) and the memberships; per
//! project its name and visibility. It is sized for 100,000 users, 10,000 projects and 1,000,000
//! memberships: projects are interned into dense slots and a membership is one `u32` (slot and
//! role), kept per user in a sorted boxed slice, so a million of them take about 4 MB.
//!
//! It is built whole at start ([`AccessSnapshot::load`]) and then kept current from the
//! `access_changes` log (schema 0004): [`read_changes`] reads the rows the log names, and
//! [`AccessSnapshot::apply`] swaps them in. [`super::live`] decides when.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;
use crate::authz::{ProjectAccess, Role};

/// Past this many log entries to catch up on, reloading everything is cheaper than row by row.
const MAX_CHANGES: i64 = 5_000;

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
    memberships: Vec<u32>,
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

/// The in-memory copy of everything a token decision reads from the database.
#[derive(Debug, Default)]
pub struct AccessSnapshot {
    users: HashMap<i64, UserAccess>,
    /// Project name to slot, for scopes; holds live projects only.
    project_by_name: HashMap<Box<str>, u32>,
    /// Project ID to slot, for memberships read from the database.
    project_by_id: HashMap<i64, u32>,
    projects: Vec<ProjectSlot>,
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

/// What the database says now about the users and projects named by new log entries.
#[derive(Debug)]
pub enum Changes {
    /// Nothing relevant happened (another table changed, or the log is where we left it).
    None,
    /// The named rows as they are now; `None` for a removed row.
    Rows { last_change: i64, projects: Vec<(i64, Option<ProjectRow>)>, users: Vec<(i64, Option<UserRow>)> },
    /// Too much changed, or entries were pruned before we read them: a complete new snapshot.
    Everything(AccessSnapshot),
}

#[derive(Debug)]
pub struct ProjectRow {
    name: String,
    public: bool,
}

#[derive(Debug)]
pub struct UserRow {
    is_admin: bool,
    disabled: bool,
    password_stamp: u64,
    /// (project ID, role) of each membership.
    memberships: Vec<(i64, Role)>,
}

impl AccessSnapshot {
    /// Reads everything in one read transaction, so the result is one consistent state.
    pub fn load(connection: &mut Connection) -> Result<AccessSnapshot, StoreError> {
        let transaction = connection.transaction()?;
        let snapshot = Self::load_in(&transaction)?;
        transaction.finish()?;
        Ok(snapshot)
    }

    fn load_in(connection: &Connection) -> Result<AccessSnapshot, StoreError> {
        let mut snapshot = AccessSnapshot { last_change: last_change(connection)?, ..Default::default() };

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
                memberships: Vec::new(),
            };
            snapshot.users.insert(row.get(0)?, user);
        }

        // Two passes, so each user's list is allocated once at its exact size (a million
        // (user, word) pairs sorted in one vector would take 16 MB at the peak, which the
        // allocator tends to keep): count per user along the user index, then fill.
        let mut statement =
            connection.prepare("SELECT user_id, COUNT(*) FROM project_members GROUP BY user_id")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            if let Some(user) = snapshot.users.get_mut(&row.get(0)?) {
                user.memberships = Vec::with_capacity(row.get(1)?);
            }
        }
        let mut statement = connection.prepare("SELECT user_id, project_id, role FROM project_members")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let role = stored_role(row.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?);
            let Some(word) = snapshot.membership_word(row.get(1)?, role) else { continue };
            if let Some(user) = snapshot.users.get_mut(&row.get(0)?) {
                user.memberships.push(word);
            }
        }
        for user in snapshot.users.values_mut() {
            user.memberships.sort_unstable();
        }
        Ok(snapshot)
    }

    /// The project `name`, as the caller `user_id` (`None`: anonymous) relates to it; `None` when
    /// no such project exists.
    pub fn project_access(&self, name: &str, user_id: Option<i64>) -> Option<ProjectAccess> {
        let slot = *self.project_by_name.get(name)?;
        let project = &self.projects[slot as usize];
        let role = user_id.and_then(|id| self.users.get(&id)).and_then(|user| user.role_in(slot));
        Some(ProjectAccess { public: project.public, role })
    }

    pub fn user(&self, id: i64) -> Option<&UserAccess> {
        self.users.get(&id)
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

    /// Takes in the rows [`read_changes`] found (projects first, so that a new member of a new
    /// project finds its slot). Returns the old snapshot when replaced whole, for the caller to
    /// free outside its lock.
    pub fn apply(&mut self, changes: Changes) -> Result<Option<AccessSnapshot>, StoreError> {
        match changes {
            Changes::None => {}
            Changes::Everything(snapshot) => return Ok(Some(std::mem::replace(self, snapshot))),
            Changes::Rows { last_change, projects, users } => {
                for (id, row) in projects {
                    self.put_project(id, row)?;
                }
                for (id, row) in users {
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
                            memberships.shrink_to_fit();
                            let user = UserAccess {
                                is_admin: row.is_admin,
                                disabled: row.disabled,
                                password_stamp: row.password_stamp,
                                memberships,
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

impl UserAccess {
    fn role_in(&self, slot: u32) -> Option<Role> {
        let index = self.memberships.binary_search_by_key(&slot, |word| word >> ROLE_BITS).ok()?;
        Role::ALL.get((self.memberships[index] & ((1 << ROLE_BITS) - 1)) as usize).copied()
    }
}

/// A role as stored (the schema's CHECK allows only these spellings), without the allocations
/// of [`Role::parse`]: it runs once per membership at start.
fn stored_role(text: &str) -> Option<Role> {
    Role::ALL.into_iter().find(|role| role.as_str() == text)
}

fn last_change(connection: &Connection) -> Result<i64, StoreError> {
    Ok(connection.query_row("SELECT COALESCE(MAX(seq), 0) FROM access_changes", [], |row| row.get(0))?)
}

/// What changed after log entry `since`, read in one transaction: the current rows of the users
/// and projects the new entries name, or a whole new snapshot when that is cheaper or needed.
pub fn read_changes(connection: &mut Connection, since: i64) -> Result<Changes, StoreError> {
    let transaction = connection.transaction()?;
    let changes = read_changes_in(&transaction, since)?;
    transaction.finish()?;
    Ok(changes)
}

fn read_changes_in(connection: &Connection, since: i64) -> Result<Changes, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT seq, user_id, project_id FROM access_changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let entries = statement
        .query_map(params![since, MAX_CHANGES + 1], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Option<i64>>(1)?, row.get::<_, Option<i64>>(2)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let Some(&(first, _, _)) = entries.first() else { return Ok(Changes::None) };
    // Sequence numbers have no holes (AUTOINCREMENT, and a rolled-back insert takes its number
    // back), so a hole means pruned entries this snapshot never saw.
    if first != since + 1 || entries.len() as i64 > MAX_CHANGES {
        return Ok(Changes::Everything(AccessSnapshot::load_in(connection)?));
    }
    let last_change = entries.last().map(|entry| entry.0).unwrap_or(since);
    let user_ids: BTreeSet<i64> = entries.iter().filter_map(|entry| entry.1).collect();
    // A membership entry names its project too, but only the user's list needs reading.
    let project_ids: BTreeSet<i64> = entries.iter().filter(|e| e.1.is_none()).filter_map(|e| e.2).collect();

    let mut project = connection.prepare_cached("SELECT name, public FROM projects WHERE id = ?1")?;
    let projects = project_ids
        .into_iter()
        .map(|id| {
            let row = project
                .query_row([id], |row| Ok(ProjectRow { name: row.get(0)?, public: row.get(1)? }))
                .optional()?;
            Ok((id, row))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;

    let mut user =
        connection.prepare_cached("SELECT is_admin, disabled, password_hash FROM users WHERE id = ?1")?;
    let mut members =
        connection.prepare_cached("SELECT project_id, role FROM project_members WHERE user_id = ?1")?;
    let mut users = Vec::with_capacity(user_ids.len());
    for id in user_ids {
        let row = user
            .query_row([id], |row| {
                Ok(UserRow {
                    is_admin: row.get(0)?,
                    disabled: row.get(1)?,
                    password_stamp: password_stamp(row.get::<_, Option<String>>(2)?.as_deref()),
                    memberships: Vec::new(),
                })
            })
            .optional()?;
        let row = match row {
            None => None,
            Some(mut row) => {
                row.memberships = members
                    .query_map([id], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)))?
                    .filter_map(|member| match member {
                        Ok((project, role)) => stored_role(&role).map(|role| Ok((project, role))),
                        Err(error) => Some(Err(error)),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some(row)
            }
        };
        users.push((id, row));
    }
    Ok(Changes::Rows { last_change, projects, users })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{projects, test_store, users};

    fn role_of(snapshot: &AccessSnapshot, project: &str, user: i64) -> Option<Role> {
        snapshot.project_access(project, Some(user)).and_then(|access| access.role)
    }

    #[test]
    fn follows_changes_row_by_row() {
        let (_dir, store) = test_store();
        let (alice, bob) = store
            .with_connection(|c| {
                let alice = users::create(c, "alice", Some("h1"), false)?;
                let bob = users::create(c, "bob", Some("h1"), false)?;
                projects::create(c, "team", false)?;
                projects::set_member(c, "team", "alice", Role::Developer)?;
                Ok((alice.id, bob.id))
            })
            .unwrap();
        let mut snapshot = store.with_connection(AccessSnapshot::load).unwrap();
        assert_eq!(role_of(&snapshot, "team", alice), Some(Role::Developer));
        assert_eq!(role_of(&snapshot, "team", bob), None);
        let stamp = snapshot.user(alice).unwrap().password_stamp;
        assert_eq!(stamp, password_stamp(Some("h1")));

        let catch_up = |snapshot: &mut AccessSnapshot| {
            let changes = store.with_connection(|c| read_changes(c, snapshot.last_change())).unwrap();
            assert!(!matches!(changes, Changes::Everything(_)), "a few changes are read row by row");
            snapshot.apply(changes).unwrap();
        };
        store
            .with_connection(|c| {
                users::set_password_hash(c, "alice", "h2")?;
                projects::set_member(c, "team", "alice", Role::Guest)?;
                projects::create(c, "open", true)?;
                projects::set_member(c, "open", "bob", Role::Maintainer)?;
                users::set_disabled(c, "bob", true)?;
                Ok(())
            })
            .unwrap();
        catch_up(&mut snapshot);
        assert_ne!(snapshot.user(alice).unwrap().password_stamp, stamp);
        assert_eq!(role_of(&snapshot, "team", alice), Some(Role::Guest));
        assert_eq!(role_of(&snapshot, "open", bob), Some(Role::Maintainer));
        assert!(snapshot.user(bob).unwrap().disabled);
        assert_eq!(snapshot.project_access("open", None), Some(ProjectAccess { public: true, role: None }));

        store
            .with_connection(|c| {
                projects::remove_member(c, "open", "bob")?;
                projects::remove(c, "team")?;
                users::remove(c, "alice")?;
                Ok(())
            })
            .unwrap();
        catch_up(&mut snapshot);
        assert_eq!(role_of(&snapshot, "open", bob), None);
        assert_eq!(snapshot.project_access("team", None), None);
        assert!(snapshot.user(alice).is_none());

        // A project recreated under an old name starts without the old members.
        store
            .with_connection(|c| {
                projects::create(c, "team", false)?;
                Ok(())
            })
            .unwrap();
        catch_up(&mut snapshot);
        assert_eq!(
            snapshot.project_access("team", Some(bob)),
            Some(ProjectAccess { public: false, role: None })
        );
    }

    #[test]
    fn pruned_log_means_a_full_reload() {
        let (_dir, store) = test_store();
        let snapshot = store.with_connection(AccessSnapshot::load).unwrap();
        store
            .with_connection(|c| {
                let transaction = c.transaction()?;
                for i in 0..2_500 {
                    users::create(&transaction, &format!("user{i}"), None, false)?;
                }
                transaction.commit()?;
                Ok(())
            })
            .unwrap();
        let pruned: i64 = store
            .with_connection(|c| Ok(c.query_row("SELECT MIN(seq) FROM access_changes", [], |r| r.get(0))?))
            .unwrap();
        assert!(pruned > 1, "the log keeps itself short");
        let changes = store.with_connection(|c| read_changes(c, snapshot.last_change())).unwrap();
        let Changes::Everything(reloaded) = changes else { panic!("expected a full reload") };
        assert_eq!(reloaded.user_count(), 2_500);
    }
}
