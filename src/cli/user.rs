//! `portcullis user ...`: database accounts.

use anyhow::Context;
use clap::Subcommand;

use super::output::{print_list, read_new_password, yes_no};
use crate::audit::changes::Change;
use crate::authn::carried_hash::Scheme;
use crate::authn::password::PasswordHasher;
use crate::config::Config;
use crate::store::names::{AccountKind, NameRules};
use crate::store::{NewUser, Source};

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
    /// Forget the user's failed logins: lifts every wait and slowdown throttling put on them, at
    /// every server, from their next attempt on.
    Unlock { name: String },
    /// Delete a user and their memberships.
    Remove { name: String },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
}

impl UserCommand {
    /// What the command changes, for the audit log; `None` for one that only reads.
    pub fn change(&self) -> Option<Change> {
        let (action, name, detail) = match self {
            UserCommand::Add { name, admin, ldap, .. } => {
                let flags = [(*admin, " admin"), (*ldap, " ldap")];
                let detail: String = flags.iter().filter(|(on, _)| *on).map(|(_, flag)| *flag).collect();
                ("user.add", name, detail)
            }
            UserCommand::Passwd { name, .. } => ("user.passwd", name, String::new()),
            UserCommand::Disable { name } => ("user.disable", name, String::new()),
            UserCommand::Enable { name } => ("user.enable", name, String::new()),
            UserCommand::Admin { name, revoke: false } => ("user.admin", name, String::new()),
            UserCommand::Admin { name, revoke: true } => ("user.admin", name, " revoke".to_string()),
            UserCommand::Unlock { name } => ("user.unlock", name, String::new()),
            UserCommand::Remove { name } => ("user.remove", name, String::new()),
            UserCommand::List { .. } => return None,
        };
        Some(Change::new(action, format!("{name}{detail}")).about(name))
    }
}

pub fn run(config: &Config, command: UserCommand) -> anyhow::Result<()> {
    let store = super::open_store(config)?;
    let hasher = || PasswordHasher::new(&config.passwords, 1).context("password hashing configuration");
    match command {
        UserCommand::Add { name, admin, ldap: true, .. } => {
            store.create_user(&NewUser {
                name: &name,
                password_hash: None,
                is_admin: admin,
                source: Source::Ldap,
            })?;
            println!("created directory user {name}{}", if admin { " (system admin)" } else { "" });
        }
        UserCommand::Add { name, admin, password_stdin, ldap: false } => {
            // The name is checked before the password is asked for.
            NameRules::from_config(config).check_new_account(&name, AccountKind::User)?;
            let password = read_new_password(password_stdin, config.passwords.min_length)?;
            let hash = hasher()?.hash_blocking(&password)?;
            let new = NewUser {
                name: &name,
                password_hash: Some(&hash),
                is_admin: admin,
                source: Source::Database,
            };
            store.create_user(&new)?;
            println!("created user {name}{}", if admin { " (system admin)" } else { "" });
        }
        UserCommand::Passwd { name, password_stdin } => {
            let user = store.user(&name)?;
            if user.source == Source::Ldap {
                anyhow::bail!("{name} is a directory user: their password is changed in the directory");
            }
            let password = read_new_password(password_stdin, config.passwords.min_length)?;
            let hash = hasher()?.hash_blocking(&password)?;
            store.set_user_password(&name, &hash)?;
            println!("changed the password of {name}");
        }
        UserCommand::Disable { name } => {
            store.set_user_disabled(&name, true)?;
            println!("disabled {name}");
        }
        UserCommand::Enable { name } => {
            store.set_user_disabled(&name, false)?;
            println!("enabled {name}");
        }
        UserCommand::Admin { name, revoke } => {
            store.set_user_admin(&name, !revoke)?;
            println!("{name} is {} a system admin", if revoke { "no longer" } else { "now" });
        }
        UserCommand::Unlock { name } => {
            if store.clear_login_failures(&name)? {
                println!("cleared the failed logins of {name}");
            } else {
                println!("{name} had no failed logins");
            }
        }
        UserCommand::Remove { name } => {
            store.remove_user(&name)?;
            println!("removed {name}");
        }
        UserCommand::List { json } => {
            let list: Vec<Listed> = store.list_users()?.into_iter().map(Listed::from).collect();
            print_list(json, &list, &["NAME", "ADMIN", "DISABLED", "SOURCE", "PASSWORD HASH"], |listed| {
                let user = &listed.user;
                let hash = match listed.password_hash {
                    Some("argon2id") => "argon2id".to_string(),
                    // Carried over by `import`: replaced at a login (see `carried_hash`).
                    Some(kind) => format!("{kind} (carried over)"),
                    None => "-".to_string(),
                };
                vec![
                    user.name.clone(),
                    yes_no(user.is_admin),
                    yes_no(user.disabled),
                    user.source.as_str().to_string(),
                    hash,
                ]
            })?;
            report_name_collisions(store.as_ref())?;
        }
    }
    Ok(())
}

/// A user as `user list` shows them: with the kind of their password hash (never the hash).
#[derive(serde::Serialize)]
struct Listed {
    #[serde(flatten)]
    user: crate::store::User,
    /// `argon2id`, or the kind `import` carried over (`bcrypt`, `pbkdf2`, ...); `None` without
    /// a password here (directory users).
    password_hash: Option<&'static str>,
}

impl From<crate::store::User> for Listed {
    fn from(user: crate::store::User) -> Self {
        let password_hash = user.password_hash.as_deref().map(|hash| Scheme::of(hash).name());
        Listed { user, password_hash }
    }
}

/// Warns (on standard error, so `--json` output stays clean) about accounts whose names differ
/// only in case: allowed in databases made before names were folded, and each logs in only under
/// its exact spelling.
pub fn report_name_collisions(store: &dyn crate::store::Store) -> anyhow::Result<()> {
    for names in store.login_name_collisions()? {
        eprintln!(
            "warning: these accounts' names differ only in case and each logs in only by its exact spelling: {}",
            names.join(", ")
        );
    }
    Ok(())
}
