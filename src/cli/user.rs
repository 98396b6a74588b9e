//! `portcullis user ...`: database accounts.

use anyhow::Context;
use clap::Subcommand;

use super::output::{print_list, read_new_password, yes_no};
use crate::authn::password::PasswordHasher;
use crate::config::Config;
use crate::store::{directory, users};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (password from a prompt or --password-stdin), or with --ldap a directory
    /// user ahead of their first login.
    Add {
        name: String,
        /// Make the user a system admin (every project, and the catalog).
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long, conflicts_with = "ldap")]
        password_stdin: bool,
        /// A directory user: no password here, they log in with their directory password (the
        /// name must be their login attribute's value). Lets memberships be granted before the
        /// first login.
        #[arg(long)]
        ldap: bool,
    },
    /// Change a user's password.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Refuse the user's logins from the next request on (memberships are kept).
    Disable { name: String },
    /// Allow a disabled user to log in again.
    Enable { name: String },
    /// Grant or (with --revoke) take away system admin rights.
    Admin {
        name: String,
        #[arg(long)]
        revoke: bool,
    },
    /// Delete a user and their memberships.
    Remove { name: String },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config: &Config, command: UserCommand) -> anyhow::Result<()> {
    let store = super::open_store(config)?;
    let hasher = || PasswordHasher::new(&config.passwords, 1).context("password hashing configuration");
    match command {
        UserCommand::Add { name, admin, ldap: true, .. } => {
            store.with_connection(|c| directory::create_ldap_user(c, &name))?;
            if admin {
                store.with_connection(|c| users::set_admin(c, &name, true))?;
            }
            println!("created directory user {name}{}", if admin { " (system admin)" } else { "" });
        }
        UserCommand::Add { name, admin, password_stdin, ldap: false } => {
            users::validate_user_name(&name)?;
            let password = read_new_password(password_stdin)?;
            let hash = hasher()?.hash_blocking(&password)?;
            store.with_connection(|c| users::create(c, &name, Some(&hash), admin))?;
            println!("created user {name}{}", if admin { " (system admin)" } else { "" });
        }
        UserCommand::Passwd { name, password_stdin } => {
            let user = store.with_connection(|c| users::get(c, &name))?;
            if user.source == directory::LDAP_SOURCE {
                anyhow::bail!("{name} is a directory user: their password is changed in the directory");
            }
            let password = read_new_password(password_stdin)?;
            let hash = hasher()?.hash_blocking(&password)?;
            store.with_connection(|c| users::set_password_hash(c, &name, &hash))?;
            println!("changed the password of {name}");
        }
        UserCommand::Disable { name } => {
            store.with_connection(|c| users::set_disabled(c, &name, true))?;
            println!("disabled {name}");
        }
        UserCommand::Enable { name } => {
            store.with_connection(|c| users::set_disabled(c, &name, false))?;
            println!("enabled {name}");
        }
        UserCommand::Admin { name, revoke } => {
            store.with_connection(|c| users::set_admin(c, &name, !revoke))?;
            println!("{name} is {} a system admin", if revoke { "no longer" } else { "now" });
        }
        UserCommand::Remove { name } => {
            store.with_connection(|c| users::remove(c, &name))?;
            println!("removed {name}");
        }
        UserCommand::List { json } => {
            let list = store.with_connection(|c| users::list(c))?;
            print_list(json, &list, &["NAME", "ADMIN", "DISABLED", "SOURCE"], |u| {
                vec![u.name.clone(), yes_no(u.is_admin), yes_no(u.disabled), u.source.clone()]
            })?;
        }
    }
    Ok(())
}
