//! The `portcullis` command line: `serve`, and one file per group of management commands.
//!
//! Management commands open the same database as a running server and may be used while it
//! runs: a change applies to the next token request. Every command fails with one line on
//! standard error and a non-zero exit status.

pub mod access;
pub mod audit;
pub mod check;
pub mod db;
mod expiry;
pub mod import;
pub mod key;
pub mod ldap;
pub mod member;
pub mod output;
pub mod pat;
pub mod project;
pub mod registry_config;
pub mod robot;
pub mod serve;
pub mod throttle;
pub mod token;
pub mod user;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::audit::changes::Change;
use crate::config::Config;
use crate::store::SharedStore;

#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about = "Token auth server for private container registries")]
pub struct Cli {
    /// TOML configuration file (every key is optional; PORTCULLIS_* variables override it).
    #[arg(long, short, global = true, env = "PORTCULLIS_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the token server (creates the database, key and first admin on first start).
    Serve,
    /// Create the database, signing key and first admin without serving (every other command
    /// needs an existing database).
    Init,
    /// Manage users.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Manage projects.
    #[command(subcommand)]
    Project(project::ProjectCommand),
    /// Manage project members and their roles.
    #[command(subcommand)]
    Member(member::MemberCommand),
    /// Manage the token signing keys: list, rotate, JWKS and bundle.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Print the `auth:` block for the registry's config.yml.
    RegistryConfig(registry_config::RegistryConfigArgs),
    /// Manage refresh tokens (docker login's identity tokens).
    #[command(subcommand, name = "refresh-token", visible_alias = "token")]
    RefreshToken(token::TokenCommand),
    /// Manage robot accounts.
    #[command(subcommand)]
    Robot(robot::RobotCommand),
    /// Manage personal access tokens.
    #[command(subcommand, visible_alias = "personal-token")]
    Pat(pat::PatCommand),
    /// Show failed password logins per account (what throttling counts).
    #[command(subcommand)]
    Throttle(throttle::ThrottleCommand),
    /// Check the LDAP / Active Directory configuration.
    #[command(subcommand)]
    Ldap(ldap::LdapCommand),
    /// Check everything a server needs without serving: the configuration, the signing key pair,
    /// the database and the directory; exit 1 when a check fails.
    CheckConfig,
    /// The stored audit trail: changes made with these commands, and the registry's events.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The database: check the connection and schema, copy SQLite into PostgreSQL.
    #[command(subcommand)]
    Db(db::DbCommand),
    /// What a user, robot, personal token or anonymous client would be granted, and why.
    #[command(subcommand)]
    Access(access::AccessCommand),
    /// Bring users (with their passwords), projects and members over from htpasswd, docker_auth
    /// or Harbor.
    #[command(subcommand)]
    Import(import::ImportCommand),
}

impl Command {
    /// What the command changes, for the audit log; `None` for one that only reads or serves.
    /// Every command is named here, so that a new one has to say.
    fn change(&self, config: &Config) -> Option<Change> {
        match self {
            Command::User(command) => command.change(),
            Command::Project(command) => command.change(),
            Command::Member(command) => command.change(),
            Command::Key(command) => command.change(config),
            Command::RefreshToken(command) => command.change(),
            Command::Robot(command) => command.change(config),
            Command::Pat(command) => command.change(),
            Command::Import(command) => command.change(),
            // `serve` and `init` record the first admin they create themselves.
            Command::Serve
            | Command::Init
            | Command::RegistryConfig(_)
            | Command::Throttle(_)
            | Command::Ldap(_)
            | Command::CheckConfig
            | Command::Audit(_) => None,
            Command::Access(command) => command.change(),
            // `db copy` records itself in the database it copied into.
            Command::Db(_) => None,
        }
    }
}

/// Runs the command of `cli` with `config` (loaded from `cli.config` and the environment), and
/// records in the audit log what it changed.
pub fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    match cli.command.change(&config) {
        Some(change) => {
            execute(cli.command, config.clone())?;
            record_change(&config, change)
        }
        None => execute(cli.command, config),
    }
}

fn execute(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve::run(config),
        Command::CheckConfig => check::run(&config),
        Command::Init => serve::init(&config),
        Command::User(command) => user::run(&config, command),
        Command::Project(command) => project::run(open_store(&config)?.as_ref(), command),
        Command::Member(command) => member::run(open_store(&config)?.as_ref(), command),
        Command::Key(command) => key::run(&config, command),
        Command::Ldap(command) => ldap::run(&config, command),
        Command::Throttle(command) => throttle::run(open_store(&config)?.as_ref(), command),
        Command::RegistryConfig(args) => {
            print!("{}", registry_config::registry_snippet(&config, open_store(&config)?.as_ref(), &args)?);
            Ok(())
        }
        Command::RefreshToken(command) => token::run(&config, open_store(&config)?.as_ref(), command),
        Command::Robot(command) => robot::run(&config, open_store(&config)?.as_ref(), command),
        Command::Pat(command) => pat::run(&config, open_store(&config)?.as_ref(), command),
        Command::Audit(command) => audit::run(open_store(&config)?.as_ref(), command),
        Command::Db(command) => db::run(&config, command),
        Command::Import(command) => import::run(&config, command),
        Command::Access(command) => access::run(&config, command),
    }
}

/// Stores `change` as made by the OS user running this command. The change itself is made:
/// a failure here says so, and exits non-zero so that scripts notice the gap in the trail.
fn record_change(config: &Config, change: Change) -> anyhow::Result<()> {
    // Every changing command needs the database (`key generate` makes it), so it is there.
    open_store(config)
        .and_then(|store| Ok(crate::audit::changes::record(store.as_ref(), change)?))
        .map_err(|error| error.context("the change was made, but recording it in the audit log failed"))
}

/// Opens the configured store, which must exist (applying pending migrations).
pub fn open_store(config: &Config) -> anyhow::Result<SharedStore> {
    Ok(crate::store::open(config, crate::store::sqlite::OpenMode::Existing)?)
}
