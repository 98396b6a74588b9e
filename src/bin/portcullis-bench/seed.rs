//! The benchmark's data: the users it logs in as, and the large database for scale runs.
//!
//! Everything is written in one transaction with prepared statements, straight into the schema.
//! Users that share a password share one PHC string (same salt, same hash): verifying it costs
//! the server exactly as much as a hash of its own would, and creating ten thousand users then
//! costs one hash instead of ten thousand.

use std::path::Path;

use portcullis::authn::password::{random_password, PasswordHasher};
use portcullis::config::PasswordConfig;
use portcullis::store::sqlite::SqliteStore;
use portcullis::store::{now, NameRules};
use rusqlite::{params, Connection, OptionalExtension};

/// The project every benchmark user is a developer of; scopes ask for `bench/app`.
pub const PROJECT: &str = "bench";

/// Who the benchmark logs in as.
pub struct Logins {
    /// One user at the default argon2id cost, for the warm scenarios.
    pub warm: (String, String),
    /// Users sharing one password hashed at a trivial cost: the many-users scenario logs each in
    /// once before measuring, and what it measures never hashes.
    pub many: Vec<String>,
    pub many_password: String,
    /// Users sharing one password at the default cost, each logged in only once: the cold
    /// scenarios, where every request pays a full verification.
    pub cold: Vec<String>,
    pub cold_password: String,
}

/// Adds the benchmark's users (names with a fresh random tag, so no server has them cached)
/// and the `bench` project, after removing the users of earlier runs, so that a reused data
/// directory keeps its size.
pub fn add_logins(database: &Path, many: usize, cold: usize) -> anyhow::Result<Logins> {
    let mut connection = open(database)?;
    let tag: String = random_password().chars().take(6).collect::<String>().to_lowercase();
    let default_cost = PasswordHasher::new(&PasswordConfig::default(), 1)?;
    let trivial_cost = PasswordHasher::new(
        &PasswordConfig {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 1,
            ..Default::default()
        },
        1,
    )?;
    let warm_password = random_password();
    let many_password = random_password();
    let cold_password = random_password();
    let warm_hash = default_cost.hash_blocking(&warm_password)?;
    let many_hash = trivial_cost.hash_blocking(&many_password)?;
    let cold_hash = default_cost.hash_blocking(&cold_password)?;
    let logins = Logins {
        warm: (format!("bench-{tag}-warm"), warm_password),
        many: (0..many).map(|i| format!("bench-{tag}-many-{i}")).collect(),
        many_password,
        cold: (0..cold).map(|i| format!("bench-{tag}-cold-{i}")).collect(),
        cold_password,
    };
    {
        connection.pragma_update(None, "temp_store", "MEMORY")?;
        let transaction = connection.transaction()?;
        transaction.execute("DELETE FROM users WHERE name LIKE 'bench-%'", [])?;
        let project = ensure_project(&transaction, PROJECT, false)?;
        let mut insert = Inserter::new(&transaction)?;
        let warm = std::iter::once((&logins.warm.0, &warm_hash));
        let many = logins.many.iter().map(|name| (name, &many_hash));
        let cold = logins.cold.iter().map(|name| (name, &cold_hash));
        for (name, hash) in warm.chain(many).chain(cold) {
            let user = insert.user(name, hash)?;
            insert.member(user, project, "developer")?;
        }
        drop(insert);
        transaction.commit()?;
    }
    Ok(logins)
}

/// Fills a database with `users` users, `projects` projects and `memberships` memberships
/// (spread evenly over the users, each user in distinct projects), in one transaction.
pub fn generate(database: &Path, users: usize, projects: usize, memberships: usize) -> anyhow::Result<()> {
    anyhow::ensure!(users > 0 && projects > 0, "need at least one user and one project");
    let per_user = memberships.div_ceil(users);
    anyhow::ensure!(per_user <= projects, "{memberships} memberships need at least {per_user} projects");
    let mut connection = open(database)?;
    // Nobody logs in as these users; they share one hash at the default cost.
    let hash = PasswordHasher::new(&PasswordConfig::default(), 1)?.hash_blocking(&random_password())?;
    const ROLES: [&str; 5] = ["project_admin", "maintainer", "developer", "guest", "limited_guest"];
    {
        // Room for the whole transaction in memory, so pages are written once at commit
        // instead of spilling to the log as it grows, and statement journals (each insert
        // fires triggers) in memory rather than in temporary files.
        connection.pragma_update(None, "cache_size", -512 * 1024)?;
        connection.pragma_update(None, "temp_store", "MEMORY")?;
        let transaction = connection.transaction()?;
        let mut insert = Inserter::new(&transaction)?;
        let project_ids = (0..projects)
            .map(|p| insert.project(&format!("project-{p:05}"), p % 10 == 0))
            .collect::<Result<Vec<_>, _>>()?;
        let stride = (projects / per_user.max(1)).max(1);
        let mut left = memberships;
        for u in 0..users {
            let user = insert.user(&format!("user-{u:06}"), &hash)?;
            for k in 0..per_user.min(left) {
                // Distinct projects per user (k * stride < projects), shifted per user.
                let project = project_ids[(u + k * stride) % projects];
                insert.member(user, project, ROLES[(u + k) % ROLES.len()])?;
            }
            left -= per_user.min(left);
        }
        drop(insert);
        transaction.commit()?;
    }
    Ok(())
}

/// Counts of what a database holds, to print.
pub fn counts(database: &Path) -> anyhow::Result<(i64, i64, i64)> {
    let c = open(database)?;
    let count = |table: &str| -> rusqlite::Result<i64> {
        c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| row.get(0))
    };
    Ok((count("users")?, count("projects")?, count("project_members")?))
}

/// The database at `database`, created and migrated by the store as `portcullis serve` would,
/// then opened directly: seeding a million rows goes straight to the tables, in one transaction,
/// rather than through the store's one-account-at-a-time interface.
fn open(database: &Path) -> anyhow::Result<Connection> {
    SqliteStore::open(database, NameRules { robot_prefix: "robot_".into() })?;
    let connection = Connection::open(database)?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    Ok(connection)
}

fn ensure_project(connection: &Connection, name: &str, public: bool) -> rusqlite::Result<i64> {
    let existing: Option<i64> = connection
        .query_row("SELECT id FROM projects WHERE name = ?1", [name], |row| row.get(0))
        .optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    connection.execute(
        "INSERT INTO projects (name, public, created_at) VALUES (?1, ?2, ?3)",
        params![name, public, now()],
    )?;
    Ok(connection.last_insert_rowid())
}

/// Prepared inserts, reused for every row.
struct Inserter<'c> {
    connection: &'c Connection,
    user: rusqlite::Statement<'c>,
    project: rusqlite::Statement<'c>,
    member: rusqlite::Statement<'c>,
    time: i64,
}

impl<'c> Inserter<'c> {
    fn new(connection: &'c Connection) -> rusqlite::Result<Self> {
        Ok(Inserter {
            connection,
            user: connection.prepare(
                "INSERT INTO users (name, password_hash, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
            )?,
            project: connection
                .prepare("INSERT INTO projects (name, public, created_at) VALUES (?1, ?2, ?3)")?,
            member: connection.prepare(
                "INSERT INTO project_members (project_id, user_id, role, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?,
            time: now(),
        })
    }

    fn user(&mut self, name: &str, hash: &str) -> rusqlite::Result<i64> {
        self.user.execute(params![name, hash, self.time])?;
        Ok(self.connection.last_insert_rowid())
    }

    fn project(&mut self, name: &str, public: bool) -> rusqlite::Result<i64> {
        self.project.execute(params![name, public, self.time])?;
        Ok(self.connection.last_insert_rowid())
    }

    fn member(&mut self, user: i64, project: i64, role: &str) -> rusqlite::Result<()> {
        self.member.execute(params![project, user, role, self.time])?;
        Ok(())
    }
}
