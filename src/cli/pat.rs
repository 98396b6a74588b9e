//! `portcullis pat ...`: personal access tokens, a person's password substitute for CI and
//! `docker login`, limited to (at most) the person's own rights.

use clap::Subcommand;
use serde::Serialize;

use super::expiry::{format_expiry, format_time, parse_expiry};
use super::output::{print_issued, print_list, IssueOutput, Issued};
use crate::audit::changes::Change;
use crate::authn::personal_token::PREFIX;
use crate::authn::secret::{digest, generate, SecretKind};
use crate::authz::ceiling::{format_actions, parse_actions};
use crate::config::Config;
use crate::store::{now, NewPersonalToken, Store};

#[derive(Debug, Subcommand)]
pub enum PatCommand {
    /// Create a token for a user and print it (shown only this once). Directory users appear in
    /// the user list after their first login and can have tokens from then on.
    Create {
        #[arg(long)]
        user: String,
        /// The user's label for the token (laptop, gitlab-ci), unique per user.
        #[arg(long)]
        name: String,
        /// When it stops working: 30d, 12h, 1y, ... or never.
        #[arg(long, default_value = "30d")]
        expires: String,
        /// Limit it to these projects (repeat, or comma-separate; default: every project).
        #[arg(long = "project", value_delimiter = ',')]
        projects: Vec<String>,
        /// Limit it to these actions: pull, push, delete (default: all the user may do).
        #[arg(long, default_value = "pull,push,delete")]
        actions: String,
        #[command(flatten)]
        output: IssueOutput,
    },
    /// List tokens (never their values), of one user or of all.
    List {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token; it stops working at the next token request.
    Revoke {
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: String,
    },
}

impl PatCommand {
    /// What the command changes, for the audit log; `None` for one that only reads.
    pub fn change(&self) -> Option<Change> {
        match self {
            PatCommand::Create { user, name, expires, projects, actions, .. } => {
                let projects = if projects.is_empty() { "all".to_string() } else { projects.join(",") };
                let target = format!("{user} {name} projects={projects} actions={actions} expires={expires}");
                Some(Change::new("pat.create", target).about(user))
            }
            PatCommand::Revoke { user, name } => {
                Some(Change::new("pat.revoke", format!("{user} {name}")).about(user))
            }
            PatCommand::List { .. } => None,
        }
    }
}

#[derive(Serialize)]
struct IssuedToken<'a> {
    user: &'a str,
    name: &'a str,
    token: &'a str,
    expires_at: Option<i64>,
}

pub fn run(config: &Config, store: &dyn Store, command: PatCommand) -> anyhow::Result<()> {
    match command {
        PatCommand::Create { user, name, expires, projects, actions, output } => {
            let actions = format_actions(&parse_actions(&actions).map_err(anyhow::Error::msg)?);
            let expires_at = parse_expiry(&expires, now())?;
            let projects = (!projects.is_empty()).then_some(projects);
            let token = generate(PREFIX);
            let created = store.create_personal_token(&NewPersonalToken {
                user: &user,
                label: &name,
                digest: &digest(SecretKind::PersonalToken, &token),
                actions: &actions,
                projects: projects.as_deref(),
                expires_at,
            })?;
            let summary = format!(
                "created token {name} of {}: {} on {} (at most what {} may do), expires {}",
                created.user,
                created.actions,
                created.ceiling().projects,
                created.user,
                format_time(expires_at)
            );
            let record = IssuedToken { user: &created.user, name: &name, token: &token, expires_at };
            let username = &created.user;
            print_issued(
                config,
                &output,
                Issued { record: &record, summary, what: "token", username, secret: &token },
            )?;
        }
        PatCommand::List { user, json } => {
            let list = store.list_personal_tokens(user.as_deref())?;
            let time = now();
            let headers = ["USER", "NAME", "PROJECTS", "ACTIONS", "CREATED", "EXPIRES", "LAST USED"];
            print_list(json, &list, &headers, |t| {
                vec![
                    t.user.clone(),
                    t.name.clone(),
                    t.ceiling().projects.to_string(),
                    t.actions.clone(),
                    format_time(Some(t.created_at)),
                    format_expiry(t.expires_at, time),
                    t.last_used_at.map_or_else(|| "never".to_string(), |at| format_time(Some(at))),
                ]
            })?;
        }
        PatCommand::Revoke { user, name } => {
            store.revoke_personal_token(&user, &name)?;
            println!("revoked token {name} of {user}");
        }
    }
    Ok(())
}
