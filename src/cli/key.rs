//! `portcullis key ...`: the signing keys, their rotation, and the files the registry needs of
//! them (the certificate bundle, the JWKS; its `auth:` block is [`super::registry_config`]'s).
//!
//! A rotation without downtime is three steps, each one transaction on the stored keys and a
//! rewrite of the bundle and the JWKS (see [`crate::token::key_set`]):
//! 1. `key rotate prepare`: a new `next` key, trusted but not signing; distribute the files and
//!    restart the registries;
//! 2. `key rotate promote`: `next` signs, the old current key is `retired`; every server signs
//!    with the new key from its next request on;
//! 3. `key rotate finish`: retired keys are dropped, once no token they signed can be valid.
//!
//! `key rotate promote --emergency` is for a leaked key: the new key signs at once and every
//! other key stops being trusted; tokens signed by the old keys fail at each registry's restart
//! with the new bundle, and clients log in again.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde::Serialize;

use super::expiry::format_time;
use super::output::print_list;
use crate::audit::changes::Change;
use crate::config::{Config, KeyAlgorithm};
use crate::store::{now, KeyState, Store};
use crate::token::key_set::{self, HeaderMode, KeyFiles, KeySet};

/// How long before a key's certificate expires `key list` warns.
const EXPIRY_WARNING_SECS: i64 = 90 * 86_400;

/// Seconds a registry still accepts a token after its `exp` (distribution's leeway).
pub const REGISTRY_LEEWAY_SECS: i64 = 60;

/// How long after its retirement (by this host's clock) a retired key's tokens may still be
/// accepted: the longest lifetime a server signed with, the registry's leeway, and
/// `token.not_before_skew` for the clocks of the servers that signed them.
fn retired_window(set: &KeySet, config: &Config) -> i64 {
    // Saturating: a stored lifetime is the database's word, not necessarily a sane number.
    set.retired_lifetime(lifetime(config)).saturating_add(REGISTRY_LEEWAY_SECS).saturating_add(skew(config))
}

fn skew(config: &Config) -> i64 {
    i64::try_from(config.token.not_before_skew).unwrap_or(0)
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Every stored key: state, algorithm, kid, thumbprint, created and expiry dates.
    List {
        #[arg(long)]
        json: bool,
    },
    /// The current key's algorithm, kid and certificate.
    Show,
    /// Create the first signing key (a new database gets one at `init` or `serve`); with
    /// --force, an emergency replacement of every key (see `key rotate promote --emergency`).
    Generate {
        /// ES256 (default) or RS256; overrides token.algorithm.
        #[arg(long, value_parser = parse_algorithm)]
        algorithm: Option<KeyAlgorithm>,
        /// Replace every key at once; registries refuse new tokens until restarted with the new
        /// bundle.
        #[arg(long, conflicts_with = "if_missing")]
        force: bool,
        /// Succeed without changes when a key exists (for init containers and scripts).
        #[arg(long)]
        if_missing: bool,
    },
    /// Rotate the signing key in three steps, without downtime.
    #[command(subcommand)]
    Rotate(RotateCommand),
    /// Write the JWKS of every trusted key (registry 3.x `jwks`) to a file or standard output.
    Jwks(Output),
    /// Write the certificate bundle of every trusted key (`rootcertbundle`) to a file or
    /// standard output.
    Bundle(Output),
}

#[derive(Debug, Args)]
pub struct Output {
    /// Write here (0644) instead of standard output.
    #[arg(long)]
    output: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum RotateCommand {
    /// Step 1: create the next key, trusted by registries from their next restart but not
    /// signing yet; rewrites the bundle and the JWKS.
    Prepare {
        /// ES256 or RS256 (default: token.algorithm): a rotation may change the algorithm.
        #[arg(long, value_parser = parse_algorithm)]
        algorithm: Option<KeyAlgorithm>,
    },
    /// Step 2: the next key signs from every server's next request on; the old one is retired
    /// (still trusted). Refused unless the bundle file holds the next key.
    Promote {
        /// For a leaked key: a new key signs at once (the prepared next key, or a new one) and
        /// every other key stops being trusted. Tokens the old keys signed are refused from each
        /// registry's restart with the new bundle; clients log in again.
        #[arg(long)]
        emergency: bool,
        /// With --emergency: a new key even when one is prepared (the prepared one may have
        /// leaked with the rest).
        #[arg(long, requires = "emergency")]
        new: bool,
        /// With --emergency and a new key: its algorithm.
        #[arg(long, value_parser = parse_algorithm, requires = "emergency")]
        algorithm: Option<KeyAlgorithm>,
    },
    /// Step 3: drop the retired keys; refused while a token they signed may still be valid
    /// (the longest token lifetime any server signed with, plus the registry's 60 s of leeway,
    /// after they were retired).
    Finish,
    /// Drop the prepared next key (never promoted).
    Cancel,
}

impl KeyCommand {
    /// What the command changes, for the audit log; `None` for one that only reads.
    pub fn change(&self, config: &Config) -> Option<Change> {
        let algorithm = |chosen: &Option<KeyAlgorithm>| chosen.unwrap_or(config.token.algorithm).jws_name();
        match self {
            // With --if-missing it may change nothing; the record says it was asked.
            KeyCommand::Generate { algorithm: chosen, force, if_missing } => {
                let how = match (force, if_missing) {
                    (true, _) => " force",
                    (_, true) => " if missing",
                    _ => "",
                };
                Some(Change::new("key.generate", format!("{}{how}", algorithm(chosen))))
            }
            KeyCommand::Rotate(RotateCommand::Prepare { algorithm: chosen }) => {
                Some(Change::new("key.rotate.prepare", algorithm(chosen)))
            }
            KeyCommand::Rotate(RotateCommand::Promote { emergency: false, .. }) => {
                Some(Change::new("key.rotate.promote", ""))
            }
            KeyCommand::Rotate(RotateCommand::Promote { emergency: true, .. }) => {
                Some(Change::new("key.rotate.promote", "emergency"))
            }
            KeyCommand::Rotate(RotateCommand::Finish) => Some(Change::new("key.rotate.finish", "")),
            KeyCommand::Rotate(RotateCommand::Cancel) => Some(Change::new("key.rotate.cancel", "")),
            KeyCommand::List { .. } | KeyCommand::Show | KeyCommand::Jwks(_) | KeyCommand::Bundle(_) => None,
        }
    }
}

fn parse_algorithm(text: &str) -> Result<KeyAlgorithm, String> {
    match text.to_ascii_uppercase().as_str() {
        "ES256" => Ok(KeyAlgorithm::ES256),
        "RS256" => Ok(KeyAlgorithm::RS256),
        _ => Err(format!("unsupported algorithm {text:?}: use ES256 or RS256")),
    }
}

/// One key as `key list` shows it.
#[derive(Serialize)]
struct Listed<'a> {
    id: i64,
    state: &'static str,
    algorithm: &'static str,
    /// The `kid` its tokens carry (as `[token] key_id` says).
    kid: &'a str,
    libtrust_kid: &'a str,
    /// Distribution 3.1's thumbprint of its certificate.
    thumbprint: &'a str,
    created_at: i64,
    activated_at: Option<i64>,
    retired_at: Option<i64>,
    /// When its certificate expires.
    not_after: i64,
}

pub fn run(config: &Config, command: KeyCommand) -> anyhow::Result<()> {
    // `key generate` makes the first key, and the database to hold it when there is none (an
    // init container before the first `serve`); the others need an existing one.
    let store = match command {
        KeyCommand::Generate { .. } => crate::store::open(config, crate::store::sqlite::OpenMode::Create)?,
        _ => super::open_store(config)?,
    };
    execute(config, store.as_ref(), command)
}

fn execute(config: &Config, store: &dyn Store, command: KeyCommand) -> anyhow::Result<()> {
    let mode = HeaderMode::from_config(config);
    let files = KeyFiles::from_config(config);
    let has_current = store.signing_keys()?.iter().any(|key| key.state == KeyState::Current);
    if !has_current && !matches!(command, KeyCommand::Generate { .. }) {
        // A database of an older version (or one prepared before its first start here): its key
        // file is imported, or a first key made, before anything else.
        key_set::ensure_keys(store, config)?;
    }
    match command {
        KeyCommand::Generate { if_missing, force, algorithm } => {
            generate(config, store, &files, mode, has_current, if_missing, force, algorithm)?
        }
        KeyCommand::List { json } => list(store, mode, json)?,
        KeyCommand::Show => {
            let set = key_set::load(store, mode)?;
            let key = set.current();
            println!("algorithm: {}", key.algorithm().jws_name());
            println!("kid: {}", key.kid());
            println!("libtrust kid: {}", key.libtrust_kid());
            println!("thumbprint: {}", key.thumbprint());
            println!("bundle: {}", files.bundle.display());
            print!("{}", key.certificate_pem());
        }
        KeyCommand::Jwks(output) => {
            let text = serde_json::to_string_pretty(&key_set::load(store, mode)?.jwks())? + "\n";
            write_output(output, &text)?;
        }
        KeyCommand::Bundle(output) => write_output(output, &key_set::load(store, mode)?.bundle_pem())?,
        KeyCommand::Rotate(RotateCommand::Prepare { algorithm }) => {
            prepare(config, store, &files, mode, algorithm)?
        }
        KeyCommand::Rotate(RotateCommand::Promote { emergency: true, new, algorithm }) => {
            emergency(config, store, &files, mode, algorithm, new)?
        }
        KeyCommand::Rotate(RotateCommand::Promote { emergency: false, .. }) => {
            promote(config, store, &files, mode)?
        }
        KeyCommand::Rotate(RotateCommand::Finish) => finish(config, store, &files, mode)?,
        KeyCommand::Rotate(RotateCommand::Cancel) => {
            match store.cancel_next_signing_key() {
                Err(crate::store::StoreError::NotFound { .. }) => bail!("no next key to cancel"),
                cancelled => cancelled?,
            }
            let set = key_set::load_and_publish(store, mode, &files)?;
            println!("dropped the next key; the bundle and the JWKS hold {} key(s)", set.keys().len());
        }
    }
    Ok(())
}

/// `key generate`: the first key (imported from an older version's key file, or made), or with
/// --force a new key in place of every other.
#[allow(clippy::too_many_arguments)]
fn generate(
    config: &Config,
    store: &dyn Store,
    files: &KeyFiles,
    mode: HeaderMode,
    has_current: bool,
    if_missing: bool,
    force: bool,
    algorithm: Option<KeyAlgorithm>,
) -> anyhow::Result<()> {
    match (has_current, force) {
        (true, false) => {
            let kid = key_set::load(store, mode)?.current().kid().to_string();
            if !if_missing {
                bail!("a signing key exists (kid {kid}): rotate it with `portcullis key rotate prepare`, or replace every key at once with --force");
            }
            println!("a signing key exists; kid: {kid}");
        }
        (true, true) => emergency(config, store, files, mode, algorithm, true)?,
        (false, false) => {
            let mut chosen = config.clone();
            chosen.token.algorithm = algorithm.unwrap_or(config.token.algorithm);
            key_set::ensure_keys(store, &chosen)?;
            let set = key_set::load_and_publish(store, mode, files)?;
            println!("the signing key is ready; kid: {}", set.current().kid());
            println!("registry bundle: {}", files.bundle.display());
        }
        (false, true) => {
            // A new key, never an older version's key file: that may be what leaked; and no
            // other key stays (a next key prepared before this version's first start).
            match store.cancel_next_signing_key() {
                Err(crate::store::StoreError::NotFound { .. }) | Ok(()) => {}
                Err(error) => return Err(error.into()),
            }
            key_set::add_new_key(store, KeyState::Current, algorithm.unwrap_or(config.token.algorithm))??;
            let set = key_set::load_and_publish(store, mode, files)?;
            println!("created a new signing key (nothing imported); kid: {}", set.current().kid());
        }
    }
    Ok(())
}

fn list(store: &dyn Store, mode: HeaderMode, json: bool) -> anyhow::Result<()> {
    let set = key_set::load(store, mode)?;
    for (id, state, error) in set.broken() {
        let hint =
            if *state == KeyState::Next { "; drop it with `portcullis key rotate cancel`" } else { "" };
        eprintln!("warning: key {id} ({}) does not parse and is not trusted: {error}{hint}", state.as_str());
    }
    // Registries check a certificate's validity with x5c: an expired key fails every token.
    for key in set.keys().iter().filter(|key| key.signing.not_after() < now() + EXPIRY_WARNING_SECS) {
        eprintln!(
            "warning: key {} ({}) has a certificate that expires {}: rotate it (`portcullis key rotate prepare`)",
            key.id,
            key.state.as_str(),
            format_time(Some(key.signing.not_after()))
        );
    }
    let listed: Vec<Listed> = set
        .keys()
        .iter()
        .map(|key| Listed {
            id: key.id,
            state: key.state.as_str(),
            algorithm: key.signing.algorithm().jws_name(),
            kid: key.signing.kid(),
            libtrust_kid: key.signing.libtrust_kid(),
            thumbprint: key.signing.thumbprint(),
            created_at: key.created_at,
            activated_at: key.activated_at,
            retired_at: key.retired_at,
            not_after: key.signing.not_after(),
        })
        .collect();
    print_list(json, &listed, &["ID", "STATE", "ALG", "KID", "THUMBPRINT", "CREATED", "NOT AFTER"], |key| {
        vec![
            key.id.to_string(),
            key.state.to_string(),
            key.algorithm.to_string(),
            key.kid.to_string(),
            key.thumbprint.to_string(),
            format_time(Some(key.created_at)),
            format_time(Some(key.not_after)),
        ]
    })
}

fn prepare(
    config: &Config,
    store: &dyn Store,
    files: &KeyFiles,
    mode: HeaderMode,
    algorithm: Option<KeyAlgorithm>,
) -> anyhow::Result<()> {
    let algorithm = algorithm.unwrap_or(config.token.algorithm);
    match key_set::add_new_key(store, KeyState::Next, algorithm)? {
        Err(crate::store::StoreError::AlreadyExists { .. }) => {
            bail!("a next key is prepared already: promote it (`portcullis key rotate promote`) or drop it (`key rotate cancel`)")
        }
        added => added?,
    };
    let set = key_set::load_and_publish(store, mode, files).context(
        "the next key is stored but its files could not be written; fix that and run `portcullis key bundle --output ...`, or `key rotate cancel`",
    )?;
    let next = set.next().context("the next key just stored")?;
    println!(
        "prepared the next key ({}), kid {}; it does not sign yet",
        algorithm.jws_name(),
        next.signing.kid()
    );
    println!("wrote {} and {} with every trusted key.", files.bundle.display(), files.jwks.display());
    if algorithm != set.current().algorithm() {
        println!(
            "The algorithm changes: a registry 3.x with signingalgorithms pinned needs `signingalgorithms: [{}]` now (`portcullis registry-config --registry-version 3`).",
            set.algorithms().join(", ")
        );
    }
    println!("Now give every registry the new bundle (or JWKS) and restart it; then run `portcullis key rotate promote`.");
    Ok(())
}

fn promote(config: &Config, store: &dyn Store, files: &KeyFiles, mode: HeaderMode) -> anyhow::Result<()> {
    let set = key_set::load(store, mode)?;
    let Some(next) = set.next() else {
        bail!("no next key: prepare one with `portcullis key rotate prepare` and restart the registries with the new bundle first");
    };
    // The files registries read must name the key before it signs.
    if !files.bundle_holds(&next.signing).unwrap_or(false) {
        bail!(
            "the bundle {} does not hold the next key (kid {}): write it with `portcullis key bundle --output {}`, give it to every registry and restart them, then promote",
            files.bundle.display(),
            next.signing.kid(),
            files.bundle.display()
        );
    }
    let jwks = std::fs::read_to_string(&files.jwks).ok();
    if jwks.as_ref().is_some_and(|jwks| !jwks.contains(next.signing.libtrust_kid())) {
        bail!(
            "the JWKS {} does not hold the next key (kid {}): write it with `portcullis key jwks --output {}`, give it to every registry that reads it and restart them, then promote",
            files.jwks.display(),
            next.signing.kid(),
            files.jwks.display()
        );
    }
    let kid = next.signing.kid().to_string();
    store.promote_signing_key(now())?;
    let set = key_set::load_and_publish(store, mode, files)?;
    let finish_at = now().saturating_add(retired_window(&set, config));
    println!("the next key signs now (kid {kid}): every server uses it from its next token request on");
    println!(
        "the old key is retired and still trusted; `portcullis key rotate finish` drops it from {}",
        crate::text::rfc3339(finish_at)
    );
    Ok(())
}

fn finish(config: &Config, store: &dyn Store, files: &KeyFiles, mode: HeaderMode) -> anyhow::Result<()> {
    let set = key_set::load(store, mode)?;
    let retired: Vec<_> = set.keys().iter().filter(|key| key.state == KeyState::Retired).collect();
    // Retired rows that do not parse are in no file and trusted by no one: they go at once.
    let broken: Vec<i64> = set
        .broken()
        .iter()
        .filter(|(_, state, _)| *state == KeyState::Retired)
        .map(|(id, _, _)| *id)
        .collect();
    if retired.is_empty() && broken.is_empty() {
        bail!("no retired key to drop");
    }
    // The longest lifetime any server noted on these keys, or this configuration's.
    let longest = set.retired_lifetime(lifetime(config));
    let window = retired_window(&set, config);
    let time = now();
    if let Some(latest) =
        retired.iter().filter_map(|key| key.retired_at).max().filter(|at| at.saturating_add(window) > time)
    {
        bail!(
            "a token signed by a retired key may still be valid until {} ({longest} s of token lifetime + {REGISTRY_LEEWAY_SECS} s of registry leeway + {} s of clock skew after it was retired; {} s from now): try again then",
            crate::text::rfc3339(latest.saturating_add(window)),
            skew(config),
            latest.saturating_add(window) - time
        );
    }
    let ids: Vec<i64> = retired.iter().map(|key| key.id).chain(broken).collect();
    let removed = store.remove_signing_keys(&ids)?;
    let set = key_set::load_and_publish(store, mode, files)?;
    println!(
        "dropped {removed} retired key(s); {} and {} now hold {} key(s)",
        files.bundle.display(),
        files.jwks.display(),
        set.keys().len()
    );
    println!("Restart the registries with the new bundle (or JWKS) to stop trusting the dropped keys.");
    Ok(())
}

/// A token's lifetime as this configuration issues it.
fn lifetime(config: &Config) -> i64 {
    i64::try_from(config.token_lifetime_secs()).unwrap_or(i64::MAX / 4)
}

/// The emergency rotation: a new current key (the prepared next one, or with `new` a fresh one)
/// and no other. The bundle is written before the keys change, so that no server signs with a
/// key it lacks.
fn emergency(
    config: &Config,
    store: &dyn Store,
    files: &KeyFiles,
    mode: HeaderMode,
    algorithm: Option<KeyAlgorithm>,
    new: bool,
) -> anyhow::Result<()> {
    let set = key_set::load(store, mode)?;
    let prepared = set.next().is_some();
    // A prepared key that does not parse cannot serve: it goes, as with --new.
    let broken_next = set.broken().iter().any(|(_, state, _)| *state == KeyState::Next);
    if (new && prepared) || broken_next {
        store.cancel_next_signing_key()?;
    }
    if new || !prepared {
        key_set::add_new_key(store, KeyState::Next, algorithm.unwrap_or(config.token.algorithm))??;
    }
    let set = key_set::load(store, mode)?;
    let next = set.next().context("the next key")?;
    crate::token::keys::write_public(&files.bundle, next.signing.certificate_pem())?;
    match store.replace_signing_keys(now(), next.id) {
        Err(crate::store::StoreError::NotFound { .. }) => {
            bail!("another rotation changed the keys meanwhile: look at `portcullis key list` and run this again")
        }
        replaced => replaced?,
    }
    let set = key_set::load_and_publish(store, mode, files)?;
    println!("EMERGENCY ROTATION: kid {} signs now and is the only trusted key.", set.current().kid());
    println!(
        "Give every registry {} (or {}) and restart it now: until then the registries refuse every new token; tokens of the old keys are refused from each restart on, and clients log in again.",
        files.bundle.display(),
        files.jwks.display()
    );
    Ok(())
}

fn write_output(output: Output, text: &str) -> anyhow::Result<()> {
    match output.output {
        Some(path) => {
            crate::token::keys::write_public(&path, text)?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}
