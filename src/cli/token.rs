//! `portcullis token ...`: the refresh tokens clients hold (docker's identity tokens).

use anyhow::bail;
use clap::{ArgGroup, Subcommand};

use super::expiry::format_time;
use super::output::print_list;
use crate::audit::changes::Change;
use crate::authn::refresh::Lifetimes;
use crate::config::Config;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// List refresh tokens, of one user or of all.
    List {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke one refresh token (by the ID `token list` shows), a user's, or all. The client must
    /// log in again; access tokens already issued run out within token.expires_in.
    #[command(group(ArgGroup::new("which").required(true).args(["id", "user", "all"])))]
    Revoke {
        id: Option<i64>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

impl TokenCommand {
    /// What the command changes, for the audit log; `None` for one that only reads.
    pub fn change(&self) -> Option<Change> {
        match self {
            TokenCommand::Revoke { id: Some(id), .. } => {
                Some(Change::new("refresh_token.revoke", format!("id={id}")))
            }
            TokenCommand::Revoke { user: Some(user), .. } => {
                Some(Change::new("refresh_token.revoke", format!("user={user}")).about(user))
            }
            TokenCommand::Revoke { .. } => Some(Change::new("refresh_token.revoke", "all")),
            TokenCommand::List { .. } => None,
        }
    }
}

pub fn run(config: &Config, store: &dyn Store, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::List { user, json } => {
            let list = store.list_refresh_tokens(user.as_deref())?;
            let lifetimes = Lifetimes::from(&config.refresh_tokens);
            print_list(
                json,
                &list,
                &["ID", "USER", "SERVICE", "CLIENT", "CREATED", "LAST USED", "EXPIRES"],
                |t| {
                    vec![
                        t.id.to_string(),
                        t.user.clone(),
                        t.service.clone(),
                        t.client_id.clone(),
                        format_time(Some(t.created_at)),
                        format_time(Some(t.last_used_at)),
                        format_time(Some(lifetimes.expires_at(t.created_at, t.last_used_at))),
                    ]
                },
            )?;
        }
        TokenCommand::Revoke { id, user, all } => match (id, user, all) {
            (Some(id), _, _) => {
                store.revoke_refresh_token(id)?;
                println!("revoked refresh token {id}");
            }
            (_, Some(user), _) => {
                let count = store.revoke_user_refresh_tokens(&user)?;
                println!("revoked {count} refresh token(s) of {user}");
            }
            (_, _, true) => {
                let count = store.revoke_all_refresh_tokens()?;
                println!("revoked {count} refresh token(s)");
            }
            _ => bail!("say which tokens: an ID, --user NAME or --all"),
        },
    }
    Ok(())
}
