//! [`App`]: the configuration, store, account snapshot, authenticator and token issuer shared by
//! every request.

use std::sync::Arc;

use anyhow::Context;

use crate::authn::ldap::DirectoryAuthenticator;
use crate::authn::password::PasswordHasher;
use crate::authn::Authenticator;
use crate::config::Config;
use crate::store::LiveAccess;
use crate::store::SharedStore;
use crate::token::keyring::Keyring;
use crate::token::TokenIssuer;

pub struct App {
    pub config: Config,
    pub store: SharedStore,
    /// Every account fact and role in memory, current with every commit: what token decisions
    /// and remembered logins read instead of the database. Its only holder.
    pub access: LiveAccess,
    pub authenticator: Authenticator,
    pub issuer: TokenIssuer,
    /// The signing keys as stored, and the one that signs: followed at every token request.
    pub keyring: Arc<Keyring>,
    /// `trusted_proxies`, parsed once.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Refresh tokens given to each user lately: a bound on the writes one client can cause.
    pub refresh_issuance: crate::authn::refresh::IssueLimit,
    /// Refused token requests per client address, and the pace they impose.
    pub pacing: super::pacing::Pacing,
    /// The last look `/readyz` took at the directory.
    pub directory_health: super::health::DirectoryHealth,
    /// The certificate served when `[tls]` is set; reloaded in place.
    pub tls: Option<Arc<super::tls::Certificates>>,
    /// The decision trail, when `[audit] decisions` names a sink.
    pub decisions: Option<Arc<crate::audit::decisions::DecisionLog>>,
    /// The secret the registry's notifications carry (`[audit] events_secret`, read again on
    /// SIGHUP); `None`: no `/events`.
    pub events_secret: std::sync::RwLock<Option<String>>,
}

impl App {
    /// Opens the store (applying migrations), loads the signing keys (creating the first, or
    /// importing an older version's key file), and loads the TLS certificate if one is
    /// configured.
    pub fn open(config: Config) -> anyhow::Result<App> {
        let store = crate::store::open(&config, crate::store::sqlite::OpenMode::Create)?;
        let hasher = PasswordHasher::new(&config.passwords, config.hash_concurrency())
            .context("password hashing configuration")?;
        let tls = match &config.tls {
            Some(tls) => Some(Arc::new(super::tls::Certificates::load(tls)?)),
            None => None,
        };
        let mut app = App::from_parts(config, store, hasher)?;
        app.tls = tls;
        app.decisions = crate::audit::decisions::DecisionLog::open(&app.config.audit)?.map(Arc::new);
        app.events_secret = std::sync::RwLock::new(app.config.audit.events_secret()?);
        if let Some(ldap) = &app.config.ldap {
            let directory =
                DirectoryAuthenticator::new(ldap, app.store.clone()).context("ldap configuration")?;
            app.authenticator = app.authenticator.with_directory(Arc::new(directory));
        }
        Ok(app)
    }

    /// Assembles an app from opened parts; loads the account snapshot (blocking).
    pub fn from_parts(config: Config, store: SharedStore, hasher: PasswordHasher) -> anyhow::Result<App> {
        let issuer = TokenIssuer::new(
            config.token.issuer.clone(),
            config.token_lifetime_secs(),
            config.token.not_before_skew,
        );
        let access = LiveAccess::open(store.clone()).context("loading users, projects and memberships")?;
        let generation = access.read().key_generation();
        let keyring =
            Arc::new(Keyring::open(store.as_ref(), &config, generation).context("the signing keys")?);
        let authenticator = Authenticator::new(store.clone(), hasher)
            .with_cache(&config.cache)
            .with_throttle(&config.throttle);
        let trusted_proxies = config.trusted_networks()?;
        let refresh_issuance = Default::default();
        let pacing = super::pacing::Pacing::new(&config.throttle);
        Ok(App {
            config,
            store,
            access,
            authenticator,
            issuer,
            keyring,
            trusted_proxies,
            refresh_issuance,
            pacing,
            directory_health: Default::default(),
            tls: None,
            decisions: None,
            events_secret: Default::default(),
        })
    }
}
