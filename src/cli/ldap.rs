//! `portcullis ldap test USER`: what the server sees when USER logs in, step by step.
//!
//! Each step of a directory login runs on its own and prints what it found (the entry's DN, the
//! groups, admin or not, the project roles those groups bring) or why it failed, so that a wrong
//! base DN, filter, search account or membership mode shows up as the step that broke, the way
//! Harbor's "Test LDAP server" does. The password is optional: without one the bind is skipped.

use std::time::Duration;

use anyhow::bail;
use clap::Subcommand;
use tokio::time::Instant;

use crate::authn::ldap::filter::and_filter;
use crate::authn::ldap::{weaker_settings, Directory, Lookup};
use crate::config::ldap::GroupMembership;
use crate::config::Config;
use crate::dn::group_key;
use crate::store::GroupMember;

#[derive(Debug, Subcommand)]
pub enum LdapCommand {
    /// Look USER up in the configured directory and show the entry, groups and admin status;
    /// with a password, check it too. Nothing is recorded.
    Test {
        user: String,
        /// Prompt for the user's password and check it with a bind.
        #[arg(long, short)]
        password: bool,
        /// Read the password to check from the first line of standard input.
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
    },
}

pub fn run(config: &Config, command: LdapCommand) -> anyhow::Result<()> {
    let Some(ldap) = &config.ldap else {
        bail!("no [ldap] section in the configuration (or PORTCULLIS_LDAP__* variables)");
    };
    match command {
        LdapCommand::Test { user, password, password_stdin } => {
            let password = if password_stdin {
                Some(super::output::read_password_line()?)
            } else if password {
                Some(rpassword::prompt_password(format!("Directory password of {user}: "))?)
            } else {
                None
            };
            let directory = Directory::new(ldap)?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            // A directory can be checked before the first start: no database, no grants yet.
            let grants = match super::open_store(config) {
                Ok(store) => store.list_group_roles(None)?,
                Err(_) if config.postgres_url().is_none() && !config.database_path().exists() => Vec::new(),
                Err(error) => return Err(error),
            };
            for warning in weaker_settings(ldap, &grants) {
                step("warning", warning);
            }
            runtime.block_on(test(&directory, &user, password.as_deref(), &grants))
        }
    }
}

fn step(name: &str, outcome: impl std::fmt::Display) {
    println!("{name:<14}{outcome}");
}

async fn test(
    directory: &Directory,
    login: &str,
    password: Option<&str>,
    grants: &[GroupMember],
) -> anyhow::Result<()> {
    let config = directory.config();
    let deadline = || Instant::now() + Duration::from_secs(config.timeout_secs);
    let tls = match (config.starttls, directory.url().to_ascii_lowercase().starts_with("ldaps://")) {
        (true, _) => "StartTLS",
        (false, true) => "TLS",
        (false, false) => "no TLS",
    };
    step("directory", format!("{} ({tls})", directory.url()));
    let account = if config.bind_dn.is_empty() { "anonymous".to_string() } else { config.bind_dn.clone() };
    if let Err(error) = directory.connect(deadline()).await {
        step("connect", format!("FAILED: {error}"));
        bail!("could not connect and bind as the search account");
    }
    step("connect", format!("ok, searching as {account}"));

    let filter = and_filter(&config.login_attribute, login, config.user_filter.as_deref());
    let entry = match directory.find_user(login, deadline()).await {
        Ok(Lookup::Found(entry)) => entry,
        Ok(Lookup::Unknown) => {
            step("user search", format!("FAILED: no entry matches {filter} below {}", config.user_base_dn));
            bail!("user {login:?} not found");
        }
        Ok(Lookup::Ambiguous) => {
            step(
                "user search",
                format!("FAILED: several entries match {filter} below {}", config.user_base_dn),
            );
            bail!("user {login:?} is ambiguous: tighten user_filter or user_base_dn");
        }
        Err(error) => {
            step("user search", format!("FAILED: {error}"));
            bail!("the user search failed");
        }
    };
    step("user search", format!("ok, {}", entry.dn));
    step("account", &entry.account);
    if let Some(email) = &entry.email {
        step("email", email);
    }

    match password {
        None => step("password", "not checked (pass --password or --password-stdin)"),
        Some(password) => match directory.check_password(&entry.dn, password, deadline()).await {
            Ok(true) => step("password", "ok, the bind succeeded"),
            Ok(false) => {
                step(
                    "password",
                    "FAILED: the directory refused the bind (wrong password, or account locked)",
                );
                bail!("wrong password for {login:?}");
            }
            Err(error) => {
                step("password", format!("FAILED: {error}"));
                bail!("the bind failed");
            }
        },
    }

    let how = match config.group_membership {
        GroupMembership::MemberOf => format!("{} on the user entry", config.membership_attribute()),
        GroupMembership::Member | GroupMembership::MemberUid => format!(
            "groups below {} whose {} lists the user",
            config.group_base_dn.as_deref().unwrap_or(""),
            config.membership_attribute()
        ),
    };
    let groups = match directory.groups_of(&entry, deadline()).await {
        Ok(groups) => groups,
        Err(error) => {
            step("groups", format!("FAILED: {error}"));
            bail!("the group lookup failed");
        }
    };
    step("groups", format!("{} found ({how})", groups.len()));
    for group in &groups {
        println!("{:<14}  {} ({})", "", group.name, group.dn);
    }
    step("system admin", if directory.is_admin(&groups) { "yes, through an admin group" } else { "no" });

    let keys: Vec<String> = groups.iter().flat_map(|group| group.keys()).collect();
    let roles: Vec<&GroupMember> =
        grants.iter().filter(|grant| keys.contains(&group_key(&grant.group))).collect();
    if roles.is_empty() {
        step("group roles", "none");
    }
    for (index, grant) in roles.iter().enumerate() {
        let label = if index == 0 { "group roles" } else { "" };
        step(label, format!("{} in {} (through group {})", grant.role, grant.project, grant.group));
    }
    Ok(())
}
