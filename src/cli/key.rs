//! `portcullis key ...` and `registry-config`: the signing key and what the registry needs of it.

use anyhow::bail;
use clap::Subcommand;

use crate::audit::changes::Change;
use crate::config::{Config, KeyAlgorithm};
use crate::token::keys::SigningKey;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create the signing key and its certificate (refuses to replace them without --force).
    Generate {
        /// ES256 (default) or RS256; overrides token.algorithm.
        #[arg(long, value_parser = parse_algorithm)]
        algorithm: Option<KeyAlgorithm>,
        /// Replace an existing key. Registries must then be given the new certificate.
        #[arg(long, conflicts_with = "if_missing")]
        force: bool,
        /// Succeed without changes when the key exists (for init containers and scripts).
        #[arg(long)]
        if_missing: bool,
    },
    /// Show the key's algorithm, kid and certificate.
    Show,
}

impl KeyCommand {
    /// What the command changes, for the audit log; `None` for one that only reads or, with
    /// `--if-missing`, finds the key there.
    pub fn change(&self, config: &Config) -> Option<Change> {
        match self {
            KeyCommand::Generate { if_missing: true, .. }
                if config.key_path().exists() && config.certificate_path().exists() =>
            {
                None
            }
            KeyCommand::Generate { algorithm, force, .. } => {
                let algorithm = algorithm.unwrap_or(config.token.algorithm).jws_name();
                let target = format!(
                    "{} {algorithm}{}",
                    config.key_path().display(),
                    if *force { " force" } else { "" }
                );
                Some(Change::new("key.generate", target))
            }
            KeyCommand::Show => None,
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

pub fn run(config: &Config, command: KeyCommand) -> anyhow::Result<()> {
    let (key_path, cert_path) = (config.key_path(), config.certificate_path());
    match command {
        KeyCommand::Generate { algorithm, force, if_missing } => {
            if if_missing && key_path.exists() && cert_path.exists() {
                let key = SigningKey::load(&key_path, &cert_path)?;
                println!("{} exists; kid: {}", key_path.display(), key.kid());
                return Ok(());
            }
            if (key_path.exists() || cert_path.exists()) && !force {
                bail!(
                    "{} already exists; pass --force to replace it (registries must then get the new certificate)",
                    key_path.display()
                );
            }
            let key = SigningKey::create(&key_path, &cert_path, algorithm.unwrap_or(config.token.algorithm))?;
            println!("wrote {} (private, 0600) and {}", key_path.display(), cert_path.display());
            println!("kid: {}", key.kid());
        }
        KeyCommand::Show => {
            if !key_path.exists() {
                bail!(
                    "no signing key at {}: run `portcullis key generate` or `portcullis serve`",
                    key_path.display()
                );
            }
            let key = SigningKey::load(&key_path, &cert_path)?;
            println!("algorithm: {:?}", key.algorithm());
            println!("kid: {}", key.kid());
            println!("certificate: {}", cert_path.display());
            print!("{}", key.certificate_pem());
        }
    }
    Ok(())
}

/// The registry's `auth:` block for this configuration. Paths are absolute so the snippet works
/// wherever the registry runs from.
pub fn registry_snippet(config: &Config) -> anyhow::Result<String> {
    let cert_path = config.certificate_path();
    let cert_path = std::path::absolute(&cert_path).unwrap_or(cert_path);
    Ok(format!(
        "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
        config.realm(),
        config.primary_service(),
        config.token.issuer,
        cert_path.display()
    ))
}
