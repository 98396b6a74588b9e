//! Persistent state behind one interface, [`Store`]: accounts, projects, memberships, directory
//! group grants, robots, personal access tokens, refresh tokens, and the change log the server's
//! in-memory [`AccessSnapshot`] follows, and [`LiveAccess`], which keeps that snapshot current.
//!
//! Everything else (authentication, the server, the CLI) reaches the database only through this
//! trait. Its methods are blocking; async callers go through [`blocking`], which also turns a
//! failed worker into [`StoreError::Unavailable`] (answered 503, never 401). Backend-neutral
//! rules live beside it: [`records`] (what is stored) and [`names`] (which names are accepted,
//! and the one login-name space). The one implementation of the trait is [`sql::SqlStore`]: the
//! queries, written once for both dialects, over a backend that owns the connections, SQLite
//! ([`sqlite`], the default); the migrations of each dialect are in `schema/<dialect>/`.

mod live;
pub mod names;
pub mod postgres;
pub mod records;
pub mod sql;
pub mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;

use crate::access::{AccessSnapshot, Changes};
use crate::authz::Role;
use crate::config::Config;
pub use live::LiveAccess;
pub use names::NameRules;
pub use records::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name:?} does not exist")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    /// Input that can never be stored (a malformed name, an empty list).
    #[error("{0}")]
    Invalid(String),
    /// Well-formed, but refused by a rule about what is stored (a directory login under the name
    /// of a database account).
    #[error("{0}")]
    Refused(String),
    /// The store could not answer now (a worker failed, the in-memory index is full): the
    /// server's fault, answered 503.
    #[error("{0}")]
    Unavailable(String),
    #[error("database {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error(
        "no database at {path}: start `portcullis serve` once or run `portcullis init` to create it, \
         or point data_dir (PORTCULLIS_DATA_DIR) or database at the existing one"
    )]
    Missing { path: PathBuf },
    #[error("cannot create the database directory {path}: {source}")]
    CreateDirectory { path: PathBuf, source: std::io::Error },
    #[error(
        "database schema version {found} is newer than this portcullis knows ({known}); upgrade portcullis"
    )]
    TooNew { found: i64, known: i64 },
    /// The backend failed a query.
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<crate::access::AccessError> for StoreError {
    fn from(error: crate::access::AccessError) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

/// A store shared by the server's requests.
pub type SharedStore = Arc<dyn Store>;

/// Opens the configured store, creating the database if `mode` allows, and applies migrations.
pub fn open(config: &Config, mode: sqlite::OpenMode) -> Result<SharedStore, StoreError> {
    let rules = NameRules::from_config(config);
    match config.postgres_url() {
        Some(url) => Ok(Arc::new(postgres::PostgresStore::open_url(url, &config.postgres, rules, mode)?)),
        None => Ok(Arc::new(sqlite::SqliteStore::open_with(&config.database_path(), rules, mode)?)),
    }
}

/// Runs blocking store work on tokio's blocking threads. A worker that panicked or was cancelled
/// is [`StoreError::Unavailable`]: the one place that failure is mapped.
pub async fn blocking<T, F>(store: &SharedStore, work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
{
    let store = store.clone();
    // The request's span goes along, so that what the store logs carries the request id.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(|| work(store.as_ref())))
        .await
        .map_err(|error| StoreError::Unavailable(format!("a database task failed: {error}")))?
}

/// Seconds since the epoch, the unit of every stored time.
pub fn now() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Persistent state. Every method is blocking; names are matched as [`names`] says (exactly,
/// else by ASCII case folding when that finds one account).
pub trait Store: Send + Sync {
    /// Where the data lives, for messages.
    fn location(&self) -> String;
    /// Answers a trivial query: whether the database can be read now (readiness).
    fn ping(&self) -> Result<(), StoreError>;
    /// The newest migration applied to the database (see [`sql::SCHEMA_VERSION`]).
    fn schema_version(&self) -> Result<i64, StoreError>;

    // Accounts: users of both sources. Robots share their name space.

    /// Creates an account whose name no account of any kind holds, up to ASCII case.
    fn create_user(&self, new: &NewUser<'_>) -> Result<User, StoreError>;
    fn find_user(&self, name: &str) -> Result<Option<User>, StoreError>;
    fn user(&self, name: &str) -> Result<User, StoreError> {
        self.find_user(name)?.ok_or_else(|| StoreError::NotFound { kind: "user", name: name.to_string() })
    }
    fn list_users(&self) -> Result<Vec<User>, StoreError>;
    /// Hands every user's stored password hash (if any) and source to `each`, one row at a time:
    /// the start-up checks over every account, which must not hold 100,000 users in memory.
    fn scan_users(&self, each: &mut dyn FnMut(Option<&str>, Source)) -> Result<(), StoreError>;
    fn count_users(&self) -> Result<i64, StoreError>;
    /// Sets a new password (hash): ends the user's identity tokens and remembered logins.
    fn set_user_password(&self, name: &str, hash: &str) -> Result<(), StoreError>;
    /// Replaces user `id`'s carried-over hash `old` by `new`, an argon2id hash of the same
    /// password made at login: not a password change, nothing ends. `false` when the stored hash
    /// is no longer `old`.
    fn replace_password_hash(&self, id: i64, old: &str, new: &str) -> Result<bool, StoreError>;
    /// Writes what `portcullis import` read, in one transaction (see [`sql`]'s `import`).
    fn import(&self, plan: &Import) -> Result<ImportReport, StoreError>;
    fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<(), StoreError>;
    fn set_user_admin(&self, name: &str, is_admin: bool) -> Result<(), StoreError>;
    /// Removes the user and their memberships and credentials.
    fn remove_user(&self, name: &str) -> Result<(), StoreError>;
    /// Groups of account names (users and robots) that differ only in case: allowed in
    /// databases made before names were folded, refused for new accounts.
    fn login_name_collisions(&self) -> Result<Vec<Vec<String>>, StoreError>;

    // Directory users and group grants.

    /// Records a successful directory login: creates the account on first login, replaces its
    /// recorded groups, notes its DN and admin-group status. An existing database account of
    /// that name is used only if `claim_database_account`; otherwise [`StoreError::Refused`].
    fn record_directory_login(
        &self,
        login: &DirectoryLogin,
        claim_database_account: bool,
    ) -> Result<User, StoreError>;
    /// What the directory last said about the user `user_id`; `None` for a user no directory
    /// login ever recorded.
    fn directory_account(&self, user_id: i64) -> Result<Option<DirectoryAccount>, StoreError>;
    /// Records that the directory vouched for `user_id` again at `checked_at`, with these groups
    /// (replaced only when they changed) and admin-group status; `entry_id` is recorded where
    /// none was yet. A password change later than the recorded one revokes the identity tokens
    /// made before it; returns how many.
    fn record_directory_check(&self, user_id: i64, check: &DirectoryCheck<'_>) -> Result<usize, StoreError>;
    /// Deletes every refresh token and personal token of `user_id`, in one transaction: the
    /// directory no longer knows them. Returns how many of each.
    fn revoke_user_credentials(&self, user_id: i64) -> Result<(usize, usize), StoreError>;
    /// Grants `role` in `project` to the group `group` (a name or a DN), or changes its role.
    fn set_group_role(&self, project: &str, group: &str, role: Role) -> Result<(), StoreError>;
    fn remove_group_role(&self, project: &str, group: &str) -> Result<(), StoreError>;
    fn list_group_roles(&self, project: Option<&str>) -> Result<Vec<GroupMember>, StoreError>;

    // Projects and members.

    fn create_project(&self, name: &str, public: bool) -> Result<Project, StoreError>;
    fn list_projects(&self) -> Result<Vec<Project>, StoreError>;
    fn set_project_public(&self, name: &str, public: bool) -> Result<(), StoreError>;
    /// Removes the project and its memberships; the images stay in the registry's storage.
    fn remove_project(&self, name: &str) -> Result<(), StoreError>;
    /// Adds `user` to `project` with `role`, or changes the role of an existing member.
    fn set_member(&self, project: &str, user: &str, role: Role) -> Result<(), StoreError>;
    fn remove_member(&self, project: &str, user: &str) -> Result<(), StoreError>;
    fn list_members(&self, project: Option<&str>) -> Result<Vec<Member>, StoreError>;

    // Robots.

    /// Creates a robot whose name no account of any kind holds, up to ASCII case.
    fn create_robot(&self, new: &NewRobot<'_>) -> Result<Robot, StoreError>;
    /// The robot called `name` and its secret digest, for logging in.
    fn robot_login(&self, name: &str) -> Result<Option<(Robot, String)>, StoreError>;
    fn robot(&self, name: &str) -> Result<Robot, StoreError> {
        match self.robot_login(name)? {
            Some((robot, _)) => Ok(robot),
            None => Err(StoreError::NotFound { kind: "robot", name: name.to_string() }),
        }
    }
    /// Robots of one project (its project robots and the system robots that reach it), or all.
    fn list_robots(&self, project: Option<&str>) -> Result<Vec<Robot>, StoreError>;
    fn set_robot_disabled(&self, name: &str, disabled: bool) -> Result<(), StoreError>;
    /// Replaces the secret: the old one stops working at the next token request.
    fn set_robot_secret(&self, name: &str, digest: &str) -> Result<(), StoreError>;
    fn remove_robot(&self, name: &str) -> Result<(), StoreError>;
    /// Notes that robot `id` logged in at `now` (written at most once a minute).
    fn record_robot_use(&self, id: i64, now: i64) -> Result<(), StoreError>;

    // Personal access tokens.

    fn create_personal_token(&self, new: &NewPersonalToken<'_>) -> Result<PersonalToken, StoreError>;
    /// The token of user `user` with this digest, for logging in.
    fn personal_token_login(
        &self,
        user: &str,
        digest: &str,
    ) -> Result<Option<PersonalTokenLogin>, StoreError>;
    fn list_personal_tokens(&self, user: Option<&str>) -> Result<Vec<PersonalToken>, StoreError>;
    fn revoke_personal_token(&self, user: &str, label: &str) -> Result<(), StoreError>;
    /// Notes that token `id` logged in at `now` (written at most once a minute).
    fn record_personal_token_use(&self, id: i64, now: i64) -> Result<(), StoreError>;

    // Refresh tokens.

    /// Stores a refresh token, first dropping the owner's expired and excess ones.
    fn create_refresh_token(&self, new: &NewRefreshToken<'_>) -> Result<i64, StoreError>;
    /// The token with this digest and its owner, if both exist.
    fn refresh_token_login(&self, digest: &str) -> Result<Option<RefreshToken>, StoreError>;
    /// Records a use; callers call it rarely, never on every request.
    fn touch_refresh_token(&self, id: i64, time: i64) -> Result<(), StoreError>;
    /// Tokens of one user, or of everyone, oldest first.
    fn list_refresh_tokens(&self, user: Option<&str>) -> Result<Vec<RefreshToken>, StoreError>;
    fn revoke_refresh_token(&self, id: i64) -> Result<(), StoreError>;
    /// Revokes every token of `user`; returns how many there were.
    fn revoke_user_refresh_tokens(&self, user: &str) -> Result<usize, StoreError>;
    fn revoke_all_refresh_tokens(&self) -> Result<usize, StoreError>;

    // Failed logins per account (the throttle's shared counts).

    /// Counts a failed password login (`directory`: a failed bind) of `name` from `address`;
    /// counts older than `window` seconds after the last failure start again.
    fn record_login_failure(
        &self,
        name: &str,
        address: &str,
        directory: bool,
        window: i64,
    ) -> Result<(), StoreError>;
    fn login_failures(&self, name: &str) -> Result<Option<LoginFailures>, StoreError>;
    fn list_login_failures(&self) -> Result<Vec<LoginFailures>, StoreError>;
    /// Starts the failed-bind count of `name` afresh (a directory login succeeded).
    fn reset_directory_failures(&self, name: &str) -> Result<(), StoreError>;
    /// Forgets the failures of `name` (`user unlock`); `false` when it had none.
    fn clear_login_failures(&self, name: &str) -> Result<bool, StoreError>;

    // The stored audit trail.

    /// Adds entries in one transaction; an event whose `event_id` is already stored is skipped
    /// (the registry redelivers until it is answered). Returns how many were added. `max_wait`
    /// bounds the wait for other writers (`None`: the store's usual wait); past it the answer is
    /// [`StoreError::Database`] and the caller may try again.
    fn record_audit(
        &self,
        entries: &[AuditEntry],
        max_wait: Option<std::time::Duration>,
    ) -> Result<usize, StoreError>;
    /// Entries matching `filter`, the newest first.
    fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError>;
    /// Removes at most `batch` entries older than `before` (seconds since the epoch); returns
    /// how many. Called until it removes fewer than `batch`, so no one transaction holds the
    /// database long.
    fn prune_audit(&self, before: i64, batch: usize) -> Result<usize, StoreError>;
    /// How many entries there are.
    fn count_audit(&self) -> Result<u64, StoreError>;
    /// Removes the `count` oldest entries; returns how many.
    fn remove_oldest_audit(&self, count: usize) -> Result<usize, StoreError>;

    // Signing keys (schema 0009; see `token::key_set`).

    /// Every stored key.
    fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// Stores a key in `new.state` at `now`; [`StoreError::AlreadyExists`] when a key already
    /// holds that state (one current, at most one next).
    fn add_signing_key(&self, new: &NewSigningKey<'_>, now: i64) -> Result<i64, StoreError>;
    /// In one transaction: the next key becomes current and the current one retired, at `now`.
    /// [`StoreError::NotFound`] without a next key.
    fn promote_signing_key(&self, now: i64) -> Result<(), StoreError>;
    /// In one transaction: the next key, `next_id`, becomes current and every other key is
    /// removed (an emergency rotation: the old keys stop being trusted at once).
    /// [`StoreError::NotFound`] when `next_id` is not the next key.
    fn replace_signing_keys(&self, now: i64, next_id: i64) -> Result<(), StoreError>;
    /// Notes that a server signs with the current key for tokens of up to `lifetime` seconds.
    fn note_key_lifetime(&self, lifetime: i64) -> Result<(), StoreError>;
    /// Removes the next key, prepared and not promoted.
    fn cancel_next_signing_key(&self) -> Result<(), StoreError>;
    /// Removes the retired keys `ids`; returns how many.
    fn remove_signing_keys(&self, ids: &[i64]) -> Result<usize, StoreError>;

    // The read model.

    /// A number that changes whenever anyone commits anything: cheap (about a microsecond),
    /// asked at every token request.
    fn commit_counter(&self) -> Result<i64, StoreError>;
    /// Every account fact, in one consistent read.
    fn load_access(&self) -> Result<AccessSnapshot, StoreError>;
    /// What changed after change-log entry `since`, or a whole new snapshot when that is cheaper
    /// or needed.
    fn access_changes(&self, since: i64) -> Result<Changes, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review likely defect 9: a store task that panics is the server's fault (503), never a
    /// refusal of the credentials (401).
    #[tokio::test]
    async fn a_panicking_store_task_is_unavailable() {
        let (_dir, store) = sqlite::test_store();
        let store: SharedStore = Arc::new(store);
        let failed = blocking(&store, |_| -> Result<(), StoreError> { panic!("a bug") }).await;
        assert!(matches!(failed, Err(StoreError::Unavailable(_))), "{failed:?}");
    }
}
