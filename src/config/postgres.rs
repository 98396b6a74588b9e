//! The `[postgres]` section: settings that only mean something when `database` is a
//! `postgres://` URL (replicas sharing one PostgreSQL database; see
//! `docs/high-availability.md`). The URL itself stays in `database`, so that one key says where
//! the data is, for either backend.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// PostgreSQL-only settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connections per process. A server's database work runs on its blocking threads, so more
    /// than those can never be busy; the CLI uses one.
    pub pool_size: usize,
    /// A file holding the password (first line), so that it need not sit in the URL or in the
    /// environment; a Kubernetes Secret mounted as a file. Wins over a password in the URL.
    pub password_file: Option<PathBuf>,
    /// How long a replica may go without confirming the change log's head with a round trip to
    /// the database before it answers token requests 503 instead of granting from data that may
    /// be old. Also the deadline of every query.
    pub max_staleness_secs: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig { pool_size: 16, password_file: None, max_staleness_secs: 10 }
    }
}

impl PostgresConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.pool_size == 0 || self.pool_size > 1000 {
            return Err(ConfigError::Invalid("postgres.pool_size must be between 1 and 1000".into()));
        }
        if !(1..=3600).contains(&self.max_staleness_secs) {
            return Err(ConfigError::Invalid(
                "postgres.max_staleness_secs must be between 1 and 3600 seconds".into(),
            ));
        }
        Ok(())
    }
}

/// Whether `database` is a PostgreSQL URL rather than a SQLite file path.
pub fn is_postgres_url(database: &str) -> bool {
    let lower = database.get(..13).unwrap_or(database).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}
