//! `portcullis access check`: what the token endpoint would grant a user, robot, personal token
//! or anonymous client for each scope, and why: the role and where it comes from (own
//! membership, which directory group, a public project, system admin), the ceiling of a robot or
//! personal token, the project that does not exist, the action no role grants.
//!
//! It runs the server's decision ([`crate::server::token_request::decide`]) on the same account
//! snapshot the server loads, and parses the service and scopes as the endpoint does, so its
//! answer is the endpoint's. What it does not do is check a secret: it answers for the
//! principal as if they had logged in.

use anyhow::{bail, Context};
use clap::Subcommand;
use serde::Serialize;

use crate::access::AccessSnapshot;
use crate::audit::changes::Change;
use crate::authn::ldap::{DirectoryAuthenticator, Revalidated};
use crate::authn::Identity;
use crate::authz::explain::{grounds, Refusal};
use crate::authz::project_of;
use crate::authz::scope::{ResourceType, Scope};
use crate::config::Config;
use crate::server::token_request::{decide, parse_parameters};
use crate::store::SharedStore;

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// What USER (a user or robot) would be granted for each SCOPE, and why; scopes as the
    /// registry asks for them: repository:team/app:pull,push or registry:catalog:*.
    Check {
        /// USER then the scopes; with --anonymous only the scopes.
        #[arg(value_name = "USER SCOPE", required = true)]
        args: Vec<String>,
        /// Ask for an anonymous client (no USER).
        #[arg(long)]
        anonymous: bool,
        /// The service (audience) asked for; by default the first of token.services.
        #[arg(long)]
        service: Option<String>,
        /// As USER's personal access token with this label (its ceiling applies).
        #[arg(long)]
        pat: Option<String>,
        /// For a directory user: ask the directory for their groups now (records them, as a
        /// server's re-check would) instead of using those recorded at their last check.
        #[arg(long)]
        live: bool,
        /// Print the answer as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
}

/// The whole answer, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Answer {
    pub principal: String,
    /// `user`, `directory_user`, `robot`, `personal_token` or `anonymous`.
    pub kind: &'static str,
    pub service: String,
    /// Why no token at all would be issued (the endpoint answers 401), if so.
    pub refused_entirely: Option<String>,
    /// Why the principal is a system admin, if they are.
    pub system_admin: Option<String>,
    /// A robot's or personal token's permission list.
    pub ceiling: Option<String>,
    /// What `--live` learnt from the directory.
    pub directory: Option<String>,
    pub scopes: Vec<ScopeAnswer>,
}

/// One requested scope's answer.
#[derive(Debug, Serialize)]
pub struct ScopeAnswer {
    pub requested: String,
    /// What the token would hold for this resource (`repository:team/app:pull`), if anything.
    pub granted: Option<String>,
    /// The rules that allowed it.
    pub because: Vec<String>,
    /// Each refused part and why.
    pub refused: Vec<Refusal>,
}

impl AccessCommand {
    /// A check only reads; with `--live` it records what the directory said (new groups, or
    /// revoked credentials), which the audit log shows.
    pub fn change(&self) -> Option<Change> {
        let AccessCommand::Check { args, anonymous: false, live: true, .. } = self else { return None };
        let user = args.first()?;
        Some(Change::new("access.check_live", user.clone()).about(user))
    }
}

pub fn run(config: &Config, command: AccessCommand) -> anyhow::Result<()> {
    let AccessCommand::Check { args, anonymous, service, pat, live, json } = command;
    let (user, scopes) = match anonymous {
        true => (None, &args[..]),
        false => (Some(args[0].as_str()), &args[1..]),
    };
    if anonymous && (pat.is_some() || live) {
        bail!("--anonymous has no personal token and no directory to ask");
    }
    // The endpoint's own parsing: an unknown service or a malformed scope is refused alike.
    let service = service.unwrap_or_else(|| config.primary_service().to_string());
    let mut pairs = vec![("service".to_string(), service)];
    pairs.extend(scopes.iter().map(|scope| ("scope".to_string(), scope.clone())));
    let parameters = parse_parameters(config, &pairs).map_err(|error| anyhow::anyhow!(error.message))?;
    let store = super::open_store(config)?;
    let identity = match user {
        None => Identity::Anonymous,
        Some(name) => principal(store.as_ref(), name, pat.as_deref())?,
    };
    let mut snapshot = store.load_access()?;
    let mut directory = None;
    if live {
        let asked = ask_directory(config, &store, &snapshot, &identity)?;
        if asked.is_some() {
            // What the directory said was recorded: decide on it.
            snapshot = store.load_access()?;
        }
        directory = Some(asked.unwrap_or_else(|| "not a directory user: nothing to ask".to_string()));
    }
    let answer = check(&snapshot, &identity, &parameters.service, &parameters.scopes, directory);
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print(&answer);
    }
    Ok(())
}

/// The identity `name` (a robot, or a user; with `pat` one of the user's personal tokens)
/// would have after logging in.
fn principal(store: &dyn crate::store::Store, name: &str, pat: Option<&str>) -> anyhow::Result<Identity> {
    if let Some((robot, _)) = store.robot_login(name)? {
        if pat.is_some() {
            bail!("{} is a robot: robots have no personal tokens", robot.name);
        }
        return Ok(Identity::of_robot(robot));
    }
    let Some(user) = store.find_user(name)? else {
        bail!(
            "no user or robot is called {name:?} (a directory user has an account from their first login on; the token endpoint would answer 401)"
        );
    };
    let Some(label) = pat else { return Ok(Identity::User { id: user.id, name: user.name }) };
    let tokens = store.list_personal_tokens(Some(&user.name))?;
    let token = tokens.into_iter().find(|token| token.name == label).with_context(|| {
        format!("{} has no personal token labelled {label:?} (see `pat list`)", user.name)
    })?;
    Ok(Identity::of_personal_token(token, user.id))
}

/// `--live`: asks the directory about a directory user now, recording what it says; `None` for
/// anyone the directory does not vouch for (the snapshot's rule).
fn ask_directory(
    config: &Config,
    store: &SharedStore,
    snapshot: &AccessSnapshot,
    identity: &Identity,
) -> anyhow::Result<Option<String>> {
    let Some(user_id) = identity.user_id() else { return Ok(None) };
    if !snapshot.user(user_id).is_some_and(|user| user.from_directory()) {
        return Ok(None);
    }
    let ldap = config.ldap.as_ref().context("--live needs the [ldap] settings of the server")?;
    let directory = DirectoryAuthenticator::new(ldap, store.clone())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let slots = tokio::sync::Semaphore::new(1);
    let outcome = runtime.block_on(directory.revalidate_now(user_id, identity.name(), &slots))?;
    Ok(Some(match outcome {
        Revalidated::Unchanged => "the directory could not be asked: the last recorded groups are used".into(),
        Revalidated::Refreshed => "asked the directory: groups and admin status recorded afresh".into(),
        Revalidated::PasswordChanged => {
            "asked the directory: groups recorded afresh; the password changed, so older identity tokens were revoked".into()
        }
        Revalidated::Revoked => {
            "the directory no longer vouches for this user: their tokens were revoked, and a login would be refused".into()
        }
    }))
}

/// The endpoint's decision for `identity` on `scopes`, with the reasons.
pub fn check(
    snapshot: &AccessSnapshot,
    identity: &Identity,
    service: &str,
    scopes: &[Scope],
    directory: Option<String>,
) -> Answer {
    let kind = match identity {
        Identity::Anonymous => "anonymous",
        Identity::Robot { .. } => "robot",
        Identity::PersonalToken { .. } => "personal_token",
        Identity::User { id, .. } if snapshot.user(*id).is_some_and(|user| user.from_directory()) => {
            "directory_user"
        }
        Identity::User { .. } => "user",
    };
    let mut answer = Answer {
        principal: identity.name().to_string(),
        kind,
        service: service.to_string(),
        refused_entirely: None,
        system_admin: None,
        ceiling: None,
        directory,
        scopes: Vec::new(),
    };
    let decided = match decide(snapshot, identity, scopes, crate::store::now(), true) {
        Ok(decided) => decided,
        Err(why) => {
            answer.refused_entirely = Some(format!("{why}: the token endpoint answers 401"));
            return answer;
        }
    };
    let subject = &decided.subject;
    let admin_because = match identity {
        Identity::Robot { .. } => {
            "a robot: every existing project, cut down to its permission list".to_string()
        }
        _ => {
            let user = identity.user_id().and_then(|id| snapshot.user(id));
            let because = user.and_then(|user| user.admin_because()).unwrap_or_default();
            answer.system_admin = Some(because.to_string()).filter(|_| subject.is_admin);
            format!("system admin: {because}")
        }
    };
    answer.ceiling = subject.ceiling.as_ref().map(crate::authz::Ceiling::describe);
    for requested in scopes {
        let same = |kind: ResourceType, name: &str| kind == requested.resource_type && name == requested.name;
        let granted = decided.granted.iter().find(|scope| same(scope.resource_type, &scope.name));
        let prefix = format!("{}:{}:", requested.resource_type.as_str(), requested.name);
        let refused =
            decided.refusals.iter().filter(|refusal| refusal.scope.starts_with(&prefix)).cloned().collect();
        let because = granted
            .map(|granted| {
                let project = project_of(&granted.name);
                let access = project.and_then(|project| snapshot.project_access(project, identity.user_id()));
                let sources = match (project, identity.user_id()) {
                    (Some(project), Some(user_id)) => {
                        let sources = snapshot.role_sources(project, user_id);
                        let best = sources.first().map(|(role, _)| *role);
                        let source = |(role, group): (crate::authz::Role, Option<String>)| {
                            let what = match group {
                                None => "own membership".to_string(),
                                Some(key) => format!("directory group {}", crate::dn::group_of_key(&key)),
                            };
                            match Some(role) == best {
                                true => what,
                                false => format!("{what} (as {})", role.as_str()),
                            }
                        };
                        sources.into_iter().map(source).collect()
                    }
                    _ => Vec::new(),
                };
                grounds(subject, granted, access, &sources, &admin_because)
            })
            .unwrap_or_default();
        answer.scopes.push(ScopeAnswer {
            requested: requested.to_string(),
            granted: granted.map(Scope::to_string),
            because,
            refused,
        });
    }
    answer
}

fn print(answer: &Answer) {
    match answer.kind {
        "anonymous" => println!("principal  anonymous"),
        kind => println!("principal  {} ({})", answer.principal, kind.replace('_', " ")),
    }
    println!("service    {}", answer.service);
    if let Some(directory) = &answer.directory {
        println!("directory  {directory}");
    }
    if let Some(why) = &answer.refused_entirely {
        println!("refused    every request: {why}");
        return;
    }
    if let Some(admin) = &answer.system_admin {
        println!("admin      {admin}");
    }
    if let Some(ceiling) = &answer.ceiling {
        println!("ceiling    {ceiling}");
    }
    if answer.scopes.is_empty() {
        println!("login      granted (a login asks for no scope)");
    }
    for scope in &answer.scopes {
        println!("{}", scope.requested);
        match &scope.granted {
            Some(granted) => println!("  granted  {}", granted.rsplit(':').next().unwrap_or_default()),
            None => println!("  granted  nothing"),
        }
        for because in &scope.because {
            println!("  because  {because}");
        }
        for refused in &scope.refused {
            let actions = refused.scope.rsplit(':').next().unwrap_or_default();
            println!("  refused  {actions}: {}", refused.reason);
        }
    }
}
