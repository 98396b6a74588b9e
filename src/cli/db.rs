//! `portcullis db ...`: the database itself. `db check` says which database the configuration
//! reaches, its schema version and how long a round trip takes; `db copy` moves a SQLite
//! installation into PostgreSQL (for replicas; see `docs/high-availability.md`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Subcommand;

use crate::audit::changes::Change;
use crate::config::Config;
use crate::store::names::NameRules;
use crate::store::postgres::PostgresStore;
use crate::store::sql::SCHEMA_VERSION;
use crate::store::sqlite::{OpenMode, SqliteStore};

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Connect to the configured database: print where it is, its schema version and the time
    /// of a round trip; exit 1 when it cannot be reached.
    Check,
    /// Copy every row of a SQLite database into an empty PostgreSQL database (one transaction;
    /// row counts verified before it commits). Run it with the servers stopped.
    Copy {
        /// The SQLite database file (e.g. /var/lib/portcullis/portcullis.db).
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL URL (`[postgres] password_file` supplies the password if it is not in
        /// the URL).
        #[arg(long)]
        to: String,
        /// Replace whatever the target holds.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(config: &Config, command: DbCommand) -> anyhow::Result<()> {
    match command {
        DbCommand::Check => {
            let store = super::open_store(config)?;
            let started = Instant::now();
            store.ping()?;
            let round_trip = started.elapsed();
            let version = store.schema_version()?;
            println!("database     {}", store.location());
            println!("schema       version {version} (this portcullis knows {SCHEMA_VERSION})");
            println!("round trip   {:.1} ms", round_trip.as_secs_f64() * 1000.0);
            println!("users        {}", store.count_users()?);
            Ok(())
        }
        DbCommand::Copy { from, to, force } => copy(config, &from, &to, force),
    }
}

fn copy(config: &Config, from: &std::path::Path, to: &str, force: bool) -> anyhow::Result<()> {
    if !crate::config::postgres::is_postgres_url(to) {
        bail!("--to must be a postgres:// or postgresql:// URL");
    }
    let rules = NameRules::from_config(config);
    let source = SqliteStore::open_with(from, rules.clone(), OpenMode::Existing)
        .with_context(|| format!("the source database {}", from.display()))?;
    let target = PostgresStore::open_url(to, &config.postgres, rules, OpenMode::Create)
        .context("the target database")?;
    let copied = source
        .with_db(|source| target.with_db(|target| crate::store::sql::copy::copy(source, target, force)))?;
    for (table, rows) in &copied.tables {
        println!("{table:<24}{rows:>10} rows");
    }
    let change = Change::new("db.copy", format!("{} to {}", from.display(), target_location(&target)));
    crate::audit::changes::record(&target, change)?;
    println!(
        "copied {} into {}; point every server's database at it",
        from.display(),
        target_location(&target)
    );
    Ok(())
}

fn target_location(target: &PostgresStore) -> String {
    use crate::store::Store;
    target.location()
}
