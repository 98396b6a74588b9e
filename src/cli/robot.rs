//! `portcullis robot ...`: robot accounts for CI and other machines.
//!
//! A project robot (`--project team`) is named `<prefix>team+NAME` and reaches only its project;
//! a system robot (`--system`) is named `<prefix>NAME` and reaches every project or the ones given
//! with `--projects`. Each has a list of actions and an expiry. The secret is printed once, with
//! a `docker login` line ready to paste.

use anyhow::bail;
use clap::{ArgGroup, Subcommand};
use serde::Serialize;

use super::expiry::{format_expiry, format_time, parse_expiry};
use super::output::{print_issued, print_list, yes_no, IssueOutput, Issued};
use crate::audit::changes::Change;
use crate::authn::robot::{login_name, SECRET_PREFIX};
use crate::authn::secret::{digest, generate, SecretKind};
use crate::authz::ceiling::{format_actions, parse_actions};
use crate::authz::scope::is_valid_component;
use crate::config::Config;
use crate::store::{now, NewRobot, Robot, Store};

#[derive(Debug, Subcommand)]
pub enum RobotCommand {
    /// Create a robot and print its secret (shown only this once).
    #[command(group(ArgGroup::new("kind").required(true).args(["project", "system"])))]
    Create {
        /// The robot's own part of the name: lower-case letters, digits, '.', '_' or '-'.
        name: String,
        /// Make a project robot of this project.
        #[arg(long)]
        project: Option<String>,
        /// Make a system robot: every project, or those given with --projects.
        #[arg(long)]
        system: bool,
        /// A system robot's projects, comma-separated (default: every project).
        #[arg(long, requires = "system", value_delimiter = ',')]
        projects: Option<Vec<String>>,
        /// What it may do: pull, push and delete, comma-separated.
        #[arg(long, default_value = "pull")]
        actions: String,
        /// When it stops working: 30d, 12h, 1y, ... or never.
        #[arg(long, default_value = "30d")]
        expires: String,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        output: IssueOutput,
    },
    /// List robots (of one project: its robots and the system robots that reach it).
    List {
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Stop a robot's logins from the next token request on.
    Disable { name: String },
    /// Let a disabled robot log in again.
    Enable { name: String },
    /// Delete a robot.
    Remove { name: String },
    /// Replace a robot's secret; the old one stops working at once.
    Regenerate {
        name: String,
        #[command(flatten)]
        output: IssueOutput,
    },
}

/// What `create` and `regenerate` tell scripts.
#[derive(Serialize)]
struct IssuedSecret<'a> {
    name: &'a str,
    secret: &'a str,
    expires_at: Option<i64>,
}

impl RobotCommand {
    /// What the command changes, for the audit log; `None` for one that only reads.
    pub fn change(&self, config: &Config) -> Option<Change> {
        let (action, name) = match self {
            RobotCommand::Create { name, project, projects, actions, expires, .. } => {
                let full_name = login_name(&config.robots.name_prefix, project.as_deref(), name);
                let reach = match (project, projects) {
                    (Some(project), _) => format!("project={project}"),
                    (None, Some(projects)) => format!("system projects={}", projects.join(",")),
                    (None, None) => "system".to_string(),
                };
                let target = format!("{full_name} {reach} actions={actions} expires={expires}");
                let change = Change::new("robot.create", target).about(&full_name);
                return Some(match project {
                    Some(project) => change.in_project(project),
                    None => change,
                });
            }
            RobotCommand::Disable { name } => ("robot.disable", name),
            RobotCommand::Enable { name } => ("robot.enable", name),
            RobotCommand::Remove { name } => ("robot.remove", name),
            RobotCommand::Regenerate { name, .. } => ("robot.regenerate", name),
            RobotCommand::List { .. } => return None,
        };
        Some(Change::new(action, name.as_str()).about(name))
    }
}

pub fn run(config: &Config, store: &dyn Store, command: RobotCommand) -> anyhow::Result<()> {
    match command {
        RobotCommand::Create {
            name,
            project,
            system: _,
            projects,
            actions,
            expires,
            description,
            output,
        } => {
            if !is_valid_component(&name) || name.len() > 64 {
                bail!(
                    "invalid robot name {name:?}: lower-case letters and digits, \
                     separated by '.', '_' or '-'"
                );
            }
            let actions = format_actions(&parse_actions(&actions).map_err(anyhow::Error::msg)?);
            let expires_at = parse_expiry(&expires, now())?;
            let full_name = login_name(&config.robots.name_prefix, project.as_deref(), &name);
            let secret = generate(SECRET_PREFIX);
            let robot = store.create_robot(&NewRobot {
                name: &full_name,
                project: project.as_deref(),
                system_projects: projects.as_deref(),
                actions: &actions,
                description: &description,
                expires_at,
                secret_digest: &digest(SecretKind::Robot, &secret),
            })?;
            print_secret(config, &robot, &secret, &output, "created")?;
        }
        RobotCommand::List { project, json } => {
            let list = store.list_robots(project.as_deref())?;
            let time = now();
            print_list(
                json,
                &list,
                &["NAME", "PROJECTS", "ACTIONS", "EXPIRES", "DISABLED", "LAST USED"],
                |r| {
                    vec![
                        r.name.clone(),
                        r.scope_text(),
                        r.actions.clone(),
                        format_expiry(r.expires_at, time),
                        yes_no(r.disabled),
                        r.last_used_at.map_or_else(|| "never".to_string(), |at| format_time(Some(at))),
                    ]
                },
            )?;
        }
        RobotCommand::Disable { name } => {
            store.set_robot_disabled(&name, true)?;
            println!("disabled {name}");
        }
        RobotCommand::Enable { name } => {
            store.set_robot_disabled(&name, false)?;
            println!("enabled {name}");
        }
        RobotCommand::Remove { name } => {
            store.remove_robot(&name)?;
            println!("removed {name}");
        }
        RobotCommand::Regenerate { name, output } => {
            let secret = generate(SECRET_PREFIX);
            store.set_robot_secret(&name, &digest(SecretKind::Robot, &secret))?;
            let robot = store.robot(&name)?;
            print_secret(config, &robot, &secret, &output, "new secret for")?;
        }
    }
    Ok(())
}

fn print_secret(
    config: &Config,
    robot: &Robot,
    secret: &str,
    output: &IssueOutput,
    what: &str,
) -> anyhow::Result<()> {
    let summary = format!(
        "{what} robot {}: {} on {}, expires {}",
        robot.name,
        robot.actions,
        robot.scope_text(),
        format_time(robot.expires_at)
    );
    let record = IssuedSecret { name: &robot.name, secret, expires_at: robot.expires_at };
    print_issued(
        config,
        output,
        Issued { record: &record, summary, what: "secret", username: &robot.name, secret },
    )
}
