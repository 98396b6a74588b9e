//! `portcullis registry-config`: the `auth:` block of the registry's `config.yml` for this
//! configuration and key set, for registry 2.8 or 3.x (with a bundle, a JWKS or both), with
//! warnings when the token header would not suit the registry named (see the README's table).

use anyhow::bail;
use clap::{Args, ValueEnum};

use crate::config::Config;
use crate::store::Store;
use crate::token::key_set::{self, HeaderMode};

/// The registry version `registry-config` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RegistryVersion {
    /// Distribution 2.8 (registry:2): rootcertbundle, libtrust kid or x5c.
    #[value(name = "2")]
    V2,
    /// Distribution 3.x (registry:3): rootcertbundle and/or jwks, signingalgorithms.
    #[value(name = "3")]
    V3,
}

/// `registry-config`'s options.
#[derive(Debug, Args)]
pub struct RegistryConfigArgs {
    /// The registry's major version.
    #[arg(long, default_value = "2")]
    registry_version: RegistryVersion,
    /// Registry 3.x: trust the JWKS file (alone, unless --bundle is given too).
    #[arg(long)]
    jwks: bool,
    /// With --jwks: trust the certificate bundle as well.
    #[arg(long, requires = "jwks")]
    bundle: bool,
}

/// The registry's `auth:` block for this configuration and key set. Paths are absolute so the
/// snippet works wherever the registry runs from; warnings (on standard error) say when the
/// token header would not suit the registry named.
pub fn registry_snippet(
    config: &Config,
    store: &dyn Store,
    args: &RegistryConfigArgs,
) -> anyhow::Result<String> {
    let absolute = |path: std::path::PathBuf| std::path::absolute(&path).unwrap_or(path);
    let (bundle, jwks) = (absolute(config.certificate_path()), absolute(config.jwks_path()));
    let mut snippet = format!(
        "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n",
        config.realm(),
        config.primary_service(),
        config.token.issuer
    );
    let mode = HeaderMode::from_config(config);
    match args.registry_version {
        RegistryVersion::V2 => {
            if args.jwks {
                bail!("registry 2.8 reads no JWKS: leave out --jwks, or use --registry-version 3");
            }
            if !mode.x5c && mode.key_id == crate::config::KeyIdMode::Thumbprint {
                eprintln!(
                    "warning: registry 2.8 finds keys by x5c or the libtrust kid: with [token] key_id = \"thumbprint\" and x5c = false it refuses every token"
                );
            }
            snippet.push_str(&format!("    rootcertbundle: {}\n", bundle.display()));
        }
        RegistryVersion::V3 => {
            if !args.jwks || args.bundle {
                snippet.push_str(&format!("    rootcertbundle: {}\n", bundle.display()));
            }
            if args.jwks {
                snippet.push_str(&format!("    jwks: {}\n", jwks.display()));
            }
            let algorithms = match store.signing_keys()?.is_empty() {
                true => vec![config.token.algorithm.jws_name()],
                false => key_set::load(store, mode)?.algorithms(),
            };
            snippet.push_str(&format!("    signingalgorithms: [{}]\n", algorithms.join(", ")));
            if args.jwks && !args.bundle && mode.x5c {
                eprintln!(
                    "warning: with a JWKS alone, registry 3.x checks a token's x5c against an empty bundle and refuses it: set [token] x5c = false (or add --bundle)"
                );
            }
        }
    }
    Ok(snippet)
}

/// The `auth:` block a server prints at start: registry 2.8's, which 3.x with a bundle reads too.
pub fn startup_snippet(config: &Config, store: &dyn Store) -> anyhow::Result<String> {
    let args = RegistryConfigArgs { registry_version: RegistryVersion::V2, jwks: false, bundle: false };
    registry_snippet(config, store, &args)
}
