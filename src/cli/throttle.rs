//! `portcullis throttle ...`: accounts whose password logins failed recently, as every server
//! counts them (see `[throttle]`). `portcullis user unlock NAME` clears one.

use clap::Subcommand;

use super::expiry::format_time;
use super::output::print_list;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum ThrottleCommand {
    /// List accounts with failed password logins (or directory binds) in the current window.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(store: &dyn Store, command: ThrottleCommand) -> anyhow::Result<()> {
    match command {
        ThrottleCommand::List { json } => {
            let list = store.list_login_failures()?;
            let headers = ["ACCOUNT", "FAILURES", "DIRECTORY", "SINCE", "LAST", "LAST ADDRESS"];
            print_list(json, &list, &headers, |row| {
                vec![
                    row.name.clone(),
                    row.failures.to_string(),
                    row.directory_failures.to_string(),
                    format_time(Some(row.first_failure)),
                    format_time(Some(row.last_failure)),
                    row.last_address.clone(),
                ]
            })
        }
    }
}
