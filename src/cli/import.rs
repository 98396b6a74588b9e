//! `portcullis import ...`: users (with their passwords' hashes), projects and memberships from
//! the registry's htpasswd, docker_auth or Harbor ([`crate::import`]), written in one
//! transaction, then a report of every item and of everything left out.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use crate::audit::changes::Change;
use crate::authn::carried_hash::Scheme;
use crate::authn::password::PasswordHasher;
use crate::authz::Role;
use crate::config::Config;
use crate::import::{self, Finding, HashPolicy, Plan};
use crate::store::{ImportReport, Imported};

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Users of an htpasswd file with their bcrypt hashes (their passwords keep working; the
    /// first login re-hashes with argon2id). Other kinds are reported by line and skipped.
    Htpasswd {
        file: PathBuf,
        /// Make every imported user a member of this project (created private if missing).
        #[arg(long, requires = "role")]
        project: Option<String>,
        /// Their role there: project_admin, maintainer, developer, guest, limited_guest.
        #[arg(long, requires = "project")]
        role: Option<String>,
        #[command(flatten)]
        options: Options,
    },
    /// The `users:` of a docker_auth static configuration, and the `acl:` entries that mean one
    /// role in one project (`name: P/*`); every other entry is reported with the reason.
    DockerAuth {
        file: PathBuf,
        #[command(flatten)]
        options: Options,
    },
    /// Harbor's users (a JSON or CSV export of harbor_user: their PBKDF2 hashes keep working),
    /// and projects and members as Harbor's API lists them (JSON), in any number of files.
    Harbor {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Replace the password of users that exist already (ends their identity tokens).
        #[arg(long)]
        update: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Also import weak hashes (Apache MD5, SHA-1, crypt; plain text is hashed now); they are
    /// replaced by argon2id at each user's first login (DES crypt: if the password is shorter
    /// than 8 characters; it reads no more).
    #[arg(long)]
    allow_weak: bool,
    /// Replace the password of users that exist already (ends their identity tokens).
    #[arg(long)]
    update: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl ImportCommand {
    /// What the command changes, for the audit log.
    pub fn change(&self) -> Option<Change> {
        let (action, files) = match self {
            ImportCommand::Htpasswd { file, .. } => ("import.htpasswd", vec![file]),
            ImportCommand::DockerAuth { file, .. } => ("import.docker_auth", vec![file]),
            ImportCommand::Harbor { files, .. } => ("import.harbor", files.iter().collect()),
        };
        let files: Vec<String> = files.iter().map(|file| file.display().to_string()).collect();
        Some(Change::new(action, files.join(" ")))
    }
}

pub fn run(config: &Config, command: ImportCommand) -> anyhow::Result<()> {
    let hasher = PasswordHasher::new(&config.passwords, 1).context("password hashing configuration")?;
    let (plan, update, json) = match command {
        ImportCommand::Htpasswd { file, project, role, options } => {
            let membership = match (&project, &role) {
                (Some(project), Some(role)) => {
                    let role = Role::parse(role).with_context(|| format!("unknown role {role:?}"))?;
                    Some((project.as_str(), role))
                }
                _ => None,
            };
            let policy = HashPolicy { allow_weak: options.allow_weak, hasher: &hasher };
            (import::htpasswd::read(&read(&file)?, &policy, membership), options.update, options.json)
        }
        ImportCommand::DockerAuth { file, options } => {
            let policy = HashPolicy { allow_weak: options.allow_weak, hasher: &hasher };
            let plan = import::docker_auth::read(&read(&file)?, &policy)
                .map_err(|error| anyhow::anyhow!("{}: {error}", file.display()))?;
            (plan, options.update, options.json)
        }
        ImportCommand::Harbor { files, update, json } => {
            let mut parsed = Vec::new();
            for file in &files {
                let name = file.display().to_string();
                let contents = import::harbor::parse(&name, &read(file)?).map_err(anyhow::Error::msg)?;
                parsed.push((name, contents));
            }
            (import::harbor::read(parsed), update, json)
        }
    };
    let Plan { mut import, findings, .. } = plan;
    import.replace_hashes = update;
    let store = super::open_store(config)?;
    let report = store.import(&import)?;
    let kinds: std::collections::HashMap<&str, &'static str> = import
        .users
        .iter()
        .map(|user| (user.name.as_str(), Scheme::of(&user.password_hash).name()))
        .collect();
    if json {
        let out = serde_json::json!({ "report": report, "left_out": findings });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print_report(&report, &findings, &kinds);
    // A running server times each kind of hash at start, and a new one only at its first
    // verification, which is slower than the refusals before it: say so.
    if kinds.values().any(|kind| *kind != "argon2id") {
        println!(
            "note: a running server learns how long the new kinds of hash take at its next start; restart it to keep every refusal equally long from the first"
        );
    }
    Ok(())
}

fn read(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

fn print_report(
    report: &ImportReport,
    findings: &[Finding],
    kinds: &std::collections::HashMap<&str, &'static str>,
) {
    for finding in findings {
        println!("{}: {}", finding.place, finding.message);
    }
    let word = |what: &Imported| match what {
        Imported::Created => "created".to_string(),
        Imported::Updated => "updated".to_string(),
        Imported::Unchanged => "unchanged".to_string(),
        Imported::Kept(why) => format!("kept as it is: {why}"),
    };
    for (name, what) in &report.users {
        let kind = kinds.get(name.as_str()).copied().unwrap_or("");
        println!("user {name}: {} ({kind})", word(what));
    }
    for (name, what) in &report.projects {
        println!("project {name}: {}", word(what));
    }
    for (project, user, what) in &report.members {
        println!("member {user} of {project}: {}", word(what));
    }
    let count = |items: &mut dyn Iterator<Item = &Imported>| {
        let mut counts = [0usize; 4];
        for item in items {
            counts[match item {
                Imported::Created => 0,
                Imported::Updated => 1,
                Imported::Unchanged => 2,
                Imported::Kept(_) => 3,
            }] += 1;
        }
        format!("{} created, {} updated, {} unchanged, {} kept", counts[0], counts[1], counts[2], counts[3])
    };
    println!(
        "users: {}; projects: {}; memberships: {}; {} left out",
        count(&mut report.users.iter().map(|(_, what)| what)),
        count(&mut report.projects.iter().map(|(_, what)| what)),
        count(&mut report.members.iter().map(|(_, _, what)| what)),
        findings.iter().filter(|finding| finding.left_out).count(),
    );
}
