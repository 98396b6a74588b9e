//! What management commands print: aligned tables for people, `--json` for scripts, and the
//! password prompt.

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context};

use crate::config::Config;

/// Prints `rows` as JSON when `json` is set, else as a table under `headers`.
pub fn print_list<T: serde::Serialize>(
    json: bool,
    items: &[T],
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(items)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
    Ok(())
}

/// Reads a new password: the first line of standard input with `--password-stdin`, otherwise a
/// prompt (twice) on the terminal. Passwords never come from the command line, where `ps` and
/// shell history would show them.
/// It must have at least `min_length` characters (`passwords.min_length`).
pub fn read_new_password(from_stdin: bool, min_length: usize) -> anyhow::Result<String> {
    let password = if from_stdin {
        read_password_line()?
    } else {
        if !std::io::stdin().is_terminal() {
            bail!("no terminal to prompt for a password: pass --password-stdin and pipe it in");
        }
        let first = rpassword::prompt_password("New password: ")?;
        let second = rpassword::prompt_password("Repeat password: ")?;
        if first != second {
            bail!("the passwords do not match");
        }
        first
    };
    if password.is_empty() {
        bail!("the password must not be empty");
    }
    if password.chars().count() < min_length {
        bail!("the password must have at least {min_length} characters (passwords.min_length)");
    }
    Ok(password)
}

/// The first line of standard input, without its line ending: `--password-stdin`.
pub fn read_password_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// How a newly issued secret is shown: the options `robot create`, `robot regenerate` and
/// `pat create` share.
#[derive(Debug, clap::Args)]
pub struct IssueOutput {
    /// The registry host for the printed docker login line (default: the primary service).
    #[arg(long)]
    pub registry: Option<String>,
    /// Print the secret as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// A secret shown only now, and how to log in with it.
pub struct Issued<'a, T: serde::Serialize> {
    /// What `--json` prints.
    pub record: &'a T,
    /// One line for people: what was issued, where it works, when it expires.
    pub summary: String,
    /// `secret` or `token`.
    pub what: &'a str,
    /// The `docker login --username`.
    pub username: &'a str,
    pub secret: &'a str,
}

/// Prints `issued` as `output` asks: JSON, or the summary, the secret and a docker login line.
pub fn print_issued<T: serde::Serialize>(
    config: &Config,
    output: &IssueOutput,
    issued: Issued<'_, T>,
) -> anyhow::Result<()> {
    if output.json {
        println!("{}", serde_json::to_string_pretty(issued.record)?);
        return Ok(());
    }
    println!("{}", issued.summary);
    println!("{} (shown only now): {}", issued.what, issued.secret);
    print_login_line(config, output.registry.as_deref(), issued.username, issued.secret);
    Ok(())
}

/// Prints a ready `docker login` line for a generated secret. The host is `registry` or, by
/// default, the primary service, which is usually the registry's host name.
pub fn print_login_line(config: &Config, registry: Option<&str>, username: &str, secret: &str) {
    let registry = registry.unwrap_or(config.primary_service());
    println!("log in with:");
    println!(
        "  echo {secret} | docker login --username {} --password-stdin {registry}",
        shell_word(username)
    );
}

/// `word` as one shell word: as is when it is plainly safe, else in single quotes.
pub fn shell_word(word: &str) -> String {
    let plain = word.bytes().all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b));
    if plain && !word.is_empty() {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

pub fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_quoted_only_when_needed() {
        assert_eq!(shell_word("alice@example.com"), "alice@example.com");
        assert_eq!(shell_word("robot_team+ci"), "robot_team+ci");
        assert_eq!(shell_word("o'brien"), "'o'\\''brien'");
        assert_eq!(shell_word("a$b"), "'a$b'");
    }
}
