//! `portcullis project ...`: projects and their visibility.

use clap::{Subcommand, ValueEnum};

use super::output::{print_list, yes_no};
use crate::audit::changes::Change;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project; its repositories are named `<project>/...`.
    Create {
        name: String,
        /// Let anyone, anonymous clients included, pull from it.
        #[arg(long)]
        public: bool,
    },
    /// Make a project public or private.
    Visibility { name: String, visibility: Visibility },
    /// Delete a project and its memberships (images stay in the registry's storage).
    Remove { name: String },
    /// List projects.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Visibility {
    Public,
    Private,
}

impl ProjectCommand {
    /// What the command changes, for the audit log; `None` for one that only reads.
    pub fn change(&self) -> Option<Change> {
        let (action, name, detail) = match self {
            ProjectCommand::Create { name, public } => {
                ("project.create", name, if *public { " public" } else { " private" })
            }
            ProjectCommand::Visibility { name, visibility: Visibility::Public } => {
                ("project.visibility", name, " public")
            }
            ProjectCommand::Visibility { name, visibility: Visibility::Private } => {
                ("project.visibility", name, " private")
            }
            ProjectCommand::Remove { name } => ("project.remove", name, ""),
            ProjectCommand::List { .. } => return None,
        };
        Some(Change::new(action, format!("{name}{detail}")).in_project(name))
    }
}

pub fn run(store: &dyn Store, command: ProjectCommand) -> anyhow::Result<()> {
    match command {
        ProjectCommand::Create { name, public } => {
            store.create_project(&name, public)?;
            println!("created {} project {name}", if public { "public" } else { "private" });
        }
        ProjectCommand::Visibility { name, visibility } => {
            let public = matches!(visibility, Visibility::Public);
            store.set_project_public(&name, public)?;
            println!("{name} is now {}", if public { "public" } else { "private" });
        }
        ProjectCommand::Remove { name } => {
            store.remove_project(&name)?;
            println!("removed project {name}");
        }
        ProjectCommand::List { json } => {
            let list = store.list_projects()?;
            print_list(json, &list, &["NAME", "PUBLIC"], |p| vec![p.name.clone(), yes_no(p.public)])?;
        }
    }
    Ok(())
}
