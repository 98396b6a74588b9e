//! The benchmark's data: the users it logs in as, and the large database for scale runs, on
//! either backend (a SQLite file, or a PostgreSQL URL).
//!
//! Everything is written in one transaction with multi-row inserts, straight into the schema
//! through the store's own [`Db`] connections. Users that share a password share one PHC string
//! (same salt, same hash): verifying it costs the server exactly as much as a hash of its own
//! would, and creating ten thousand users then costs one hash instead of ten thousand.

use std::collections::HashMap;
use std::path::PathBuf;

use portcullis::authn::password::{random_password, PasswordHasher};
use portcullis::config::postgres::PostgresConfig;
use portcullis::config::PasswordConfig;
use portcullis::store::postgres::PostgresStore;
use portcullis::store::sql::{placeholders, query_value, query_vec, write, Db, Dialect, Value};
use portcullis::store::sqlite::{OpenMode, SqliteStore};
use portcullis::store::{now, NameRules, StoreError};

/// The project every benchmark user is a developer of; scopes ask for `bench/app`.
pub const PROJECT: &str = "bench";

/// Rows per INSERT.
const ROWS: usize = 500;

/// Where the benchmark's data goes.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Database {
    /// Runs `work` on a connection of this database, made and migrated as `portcullis serve`
    /// would make it.
    pub fn with_db<T>(&self, work: impl FnOnce(&mut dyn Db) -> Result<T, StoreError>) -> anyhow::Result<T> {
        let rules = NameRules { robot_prefix: "robot_".into() };
        Ok(match self {
            Database::Sqlite(path) => SqliteStore::open(path, rules)?.with_db(work)?,
            Database::Postgres(url) => {
                PostgresStore::open_url(url, &PostgresConfig::default(), rules, OpenMode::Create)?
                    .with_db(work)?
            }
        })
    }

    /// The server's setting for it.
    pub fn server_env(&self) -> Option<(String, String)> {
        match self {
            Database::Sqlite(_) => None,
            Database::Postgres(url) => Some(("PORTCULLIS_DATABASE".to_string(), url.clone())),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(path) => format!("SQLite {}", path.display()),
            Database::Postgres(url) => format!("PostgreSQL {}", url.split('?').next().unwrap_or(url)),
        }
    }
}

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
/// and the `bench` project, after removing the users of earlier runs, so that a reused
/// database keeps its size.
pub fn add_logins(database: &Database, many: usize, cold: usize) -> anyhow::Result<Logins> {
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
    database.with_db(|db| {
        write(db, |db| {
            db.execute("DELETE FROM users WHERE name LIKE 'bench-%'", &[])?;
            let project = ensure_project(db, PROJECT)?;
            let warm = std::iter::once((logins.warm.0.clone(), warm_hash.as_str()));
            let many = logins.many.iter().map(|name| (name.clone(), many_hash.as_str()));
            let cold = logins.cold.iter().map(|name| (name.clone(), cold_hash.as_str()));
            let users: Vec<(String, &str)> = warm.chain(many).chain(cold).collect();
            let ids = insert_users(db, &users)?;
            let members: Vec<(i64, i64, &str)> =
                users.iter().map(|(name, _)| (project, ids[name], "developer")).collect();
            insert_members(db, &members)
        })
    })?;
    Ok(logins)
}

/// Fills a database with `users` users, `projects` projects and `memberships` memberships
/// (spread evenly over the users, each user in distinct projects), in one transaction.
pub fn generate(
    database: &Database,
    users: usize,
    projects: usize,
    memberships: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(users > 0 && projects > 0, "need at least one user and one project");
    let per_user = memberships.div_ceil(users);
    anyhow::ensure!(per_user <= projects, "{memberships} memberships need at least {per_user} projects");
    // Nobody logs in as these users; they share one hash at the default cost.
    let hash = PasswordHasher::new(&PasswordConfig::default(), 1)?.hash_blocking(&random_password())?;
    const ROLES: [&str; 5] = ["project_admin", "maintainer", "developer", "guest", "limited_guest"];
    database.with_db(|db| {
        let tables = ["users", "projects", "project_members"];
        if db.dialect() == Dialect::Sqlite {
            // Room for the whole transaction in memory, so pages are written once at commit,
            // and statement journals (each insert fires triggers) in memory.
            db.execute("PRAGMA cache_size = -524288", &[])?;
            db.execute("PRAGMA temp_store = MEMORY", &[])?;
        }
        write(db, |db| {
            if db.dialect() == Dialect::Postgres {
                // The change log's triggers off while a million rows go in (the tables are
                // ours): one entry at the end makes a running server reload everything.
                for table in tables {
                    db.execute(&format!("ALTER TABLE {table} DISABLE TRIGGER USER"), &[])?;
                }
            }
            // Every tenth project public, as in a real installation.
            let names: Vec<(String, bool)> =
                (0..projects).map(|p| (format!("project-{p:05}"), p % 10 == 0)).collect();
            let project_ids = insert_projects(db, &names)?;
            let user_names: Vec<(String, &str)> =
                (0..users).map(|u| (format!("user-{u:06}"), hash.as_str())).collect();
            let user_ids = insert_users(db, &user_names)?;
            let stride = (projects / per_user.max(1)).max(1);
            let mut left = memberships;
            let mut members = Vec::with_capacity(ROWS);
            for (u, (name, _)) in user_names.iter().enumerate() {
                for k in 0..per_user.min(left) {
                    // Distinct projects per user (k * stride < projects), shifted per user.
                    let project = project_ids[&names[(u + k * stride) % projects].0];
                    members.push((project, user_ids[name], ROLES[(u + k) % ROLES.len()]));
                    if members.len() == ROWS {
                        insert_members(db, &members)?;
                        members.clear();
                    }
                }
                left -= per_user.min(left);
            }
            insert_members(db, &members)?;
            if db.dialect() == Dialect::Postgres {
                for table in tables {
                    db.execute(&format!("ALTER TABLE {table} ENABLE TRIGGER USER"), &[])?;
                }
                db.execute("SELECT portcullis_log_change(NULL, NULL, NULL, NULL, NULL)", &[])?;
            }
            Ok(())
        })
    })
}

/// Counts of what a database holds, to print.
pub fn counts(database: &Database) -> anyhow::Result<(i64, i64, i64)> {
    database.with_db(|db| {
        let mut count = |table: &str| query_value::<i64>(db, &format!("SELECT COUNT(*) FROM {table}"), &[]);
        Ok((count("users")?, count("projects")?, count("project_members")?))
    })
}

fn ensure_project(db: &mut dyn Db, name: &str) -> Result<i64, StoreError> {
    let existing: Vec<i64> =
        query_vec(db, "SELECT id FROM projects WHERE name = ?1", &[Value::Text(name)], |row| row.get(0))?;
    match existing.first() {
        Some(id) => Ok(*id),
        None => Ok(insert_projects(db, &[(name.to_string(), false)])?[name]),
    }
}

/// Inserts rows into `table` (`columns`, the first of them `name`), `ROWS` at a time; returns
/// each name's id.
fn insert_named(
    db: &mut dyn Db,
    table: &str,
    columns: &[&str],
    values: &[Value<'_>],
) -> Result<HashMap<String, i64>, StoreError> {
    let mut ids = HashMap::with_capacity(values.len() / columns.len());
    for chunk in values.chunks(ROWS * columns.len()) {
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES {} RETURNING id, name",
            columns.join(", "),
            placeholders(chunk.len() / columns.len(), columns.len())
        );
        for (id, name) in query_vec(db, &sql, chunk, |row| Ok((row.get::<i64>(0)?, row.get::<String>(1)?)))? {
            ids.insert(name, id);
        }
    }
    Ok(ids)
}

/// Inserts users (name, password hash); returns each name's id.
fn insert_users(db: &mut dyn Db, users: &[(String, &str)]) -> Result<HashMap<String, i64>, StoreError> {
    let time = now();
    let values: Vec<Value<'_>> = users
        .iter()
        .flat_map(|(name, hash)| [Value::Text(name), Value::Text(hash), Value::Int(time), Value::Int(time)])
        .collect();
    insert_named(db, "users", &["name", "password_hash", "created_at", "updated_at"], &values)
}

/// Inserts projects (name, public); returns each name's id.
fn insert_projects(db: &mut dyn Db, names: &[(String, bool)]) -> Result<HashMap<String, i64>, StoreError> {
    let time = now();
    let values: Vec<Value<'_>> = names
        .iter()
        .flat_map(|(name, public)| [Value::Text(name), Value::Bool(*public), Value::Int(time)])
        .collect();
    insert_named(db, "projects", &["name", "public", "created_at"], &values)
}

/// Inserts memberships (project id, user id, role).
fn insert_members(db: &mut dyn Db, members: &[(i64, i64, &str)]) -> Result<(), StoreError> {
    let time = now();
    for chunk in members.chunks(ROWS) {
        let sql = format!(
            "INSERT INTO project_members (project_id, user_id, role, created_at) VALUES {}",
            placeholders(chunk.len(), 4)
        );
        let values: Vec<Value<'_>> = chunk
            .iter()
            .flat_map(|(project, user, role)| {
                [Value::Int(*project), Value::Int(*user), Value::Text(role), Value::Int(time)]
            })
            .collect();
        db.execute(&sql, &values)?;
    }
    Ok(())
}
