//! `portcullis member ...`: who has which role in a project: users, and directory groups (whose
//! members get the role while the directory lists them in the group).

use anyhow::{anyhow, bail};
use clap::Subcommand;

use super::output::print_list;
use crate::audit::changes::Change;
use crate::authz::Role;
use crate::dn::looks_like_dn;
use crate::store::{GroupMember, Member, Store};

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add a user or a directory group to a project, or change their role.
    Add {
        project: String,
        #[arg(required_unless_present = "group", conflicts_with = "group")]
        user: Option<String>,
        /// A directory group instead of a user: its DN, or its name (e.g. its cn), which every
        /// group of that name matches.
        #[arg(long, value_name = "NAME_OR_DN")]
        group: Option<String>,
        /// project_admin, maintainer, developer, guest or limited_guest.
        #[arg(long)]
        role: String,
    },
    /// Remove a user or a directory group from a project.
    Remove {
        project: String,
        #[arg(required_unless_present = "group", conflicts_with = "group")]
        user: Option<String>,
        /// A directory group instead of a user, named as it was added (name or DN).
        #[arg(long, value_name = "NAME_OR_DN")]
        group: Option<String>,
    },
    /// List members of one project, or of all.
    List {
        project: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

impl MemberCommand {
    /// What the command changes, for the audit log; `None` for one that only reads.
    pub fn change(&self) -> Option<Change> {
        let (action, project, user, group, role) = match self {
            MemberCommand::Add { project, user, group, role } => {
                ("member.add", project, user, group, Some(role))
            }
            MemberCommand::Remove { project, user, group } => ("member.remove", project, user, group, None),
            MemberCommand::List { .. } => return None,
        };
        let role = role.map(|role| format!(" role={role}")).unwrap_or_default();
        let change = match (user, group) {
            (Some(user), _) => Change::new(action, format!("{project} {user}{role}")).about(user),
            (None, Some(group)) => Change::new(action, format!("{project} group={group}{role}")),
            (None, None) => return None,
        };
        Some(change.in_project(project))
    }
}

pub fn run(store: &dyn Store, command: MemberCommand) -> anyhow::Result<()> {
    match command {
        MemberCommand::Add { project, user, group, role } => {
            let role = Role::parse(&role).ok_or_else(|| {
                let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                anyhow!("unknown role {role:?}: use one of {}", names.join(", "))
            })?;
            match (user, group) {
                (Some(user), _) => {
                    store.set_member(&project, &user, role)?;
                    println!("{user} is {} of {project}", role.as_str());
                }
                (None, Some(group)) => {
                    store.set_group_role(&project, &group, role)?;
                    println!("members of group {group} are {} of {project}", role.as_str());
                    if !looks_like_dn(&group) {
                        eprintln!(
                            "warning: {group:?} is a group name: members of any directory group called \
                             that get this role, wherever it is; grant it by DN to name one group \
                             (--group \"cn=...,ou=groups,...\")"
                        );
                    }
                }
                (None, None) => bail!("name a user or a --group"),
            }
        }
        MemberCommand::Remove { project, user, group } => match (user, group) {
            (Some(user), _) => {
                store.remove_member(&project, &user)?;
                println!("removed {user} from {project}");
            }
            (None, Some(group)) => {
                store.remove_group_role(&project, &group)?;
                println!("removed group {group} from {project}");
            }
            (None, None) => bail!("name a user or a --group"),
        },
        MemberCommand::List { project, json } => {
            let users = store.list_members(project.as_deref())?;
            let groups = store.list_group_roles(project.as_deref())?;
            let mut list: Vec<Listed> = users.into_iter().map(Listed::User).collect();
            list.extend(groups.into_iter().map(Listed::Group));
            list.sort_by(|a, b| a.project().cmp(b.project()));
            print_list(json, &list, &["PROJECT", "MEMBER", "KIND", "ROLE"], |listed| match listed {
                Listed::User(m) => vec![m.project.clone(), m.user.clone(), "user".into(), m.role.clone()],
                Listed::Group(g) => vec![g.project.clone(), g.group.clone(), "group".into(), g.role.clone()],
            })?;
        }
    }
    Ok(())
}

/// One line of `member list`: a user (`{"project", "user", "role"}` in JSON, as before groups
/// existed) or a group (`{"project", "group", "role"}`).
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Listed {
    User(Member),
    Group(GroupMember),
}

impl Listed {
    fn project(&self) -> &str {
        match self {
            Listed::User(member) => &member.project,
            Listed::Group(member) => &member.project,
        }
    }
}
