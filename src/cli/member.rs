//! `portcullis member ...`: who has which role in a project.

use anyhow::anyhow;
use clap::Subcommand;

use super::output::print_list;
use crate::authz::Role;
use crate::store::{projects, Store};

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add a user to a project, or change their role.
    Add {
        project: String,
        user: String,
        /// project_admin, maintainer, developer, guest or limited_guest.
        #[arg(long)]
        role: String,
    },
    /// Remove a user from a project.
    Remove { project: String, user: String },
    /// List members of one project, or of all.
    List {
        project: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(store: &Store, command: MemberCommand) -> anyhow::Result<()> {
    match command {
        MemberCommand::Add { project, user, role } => {
            let role = Role::parse(&role).ok_or_else(|| {
                let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                anyhow!("unknown role {role:?}: use one of {}", names.join(", "))
            })?;
            store.with_connection(|c| projects::set_member(c, &project, &user, role))?;
            println!("{user} is {} of {project}", role.as_str());
        }
        MemberCommand::Remove { project, user } => {
            store.with_connection(|c| projects::remove_member(c, &project, &user))?;
            println!("removed {user} from {project}");
        }
        MemberCommand::List { project, json } => {
            let list = store.with_connection(|c| projects::list_members(c, project.as_deref()))?;
            print_list(json, &list, &["PROJECT", "USER", "ROLE"], |m| {
                vec![m.project.clone(), m.user.clone(), m.role.clone()]
            })?;
        }
    }
    Ok(())
}
