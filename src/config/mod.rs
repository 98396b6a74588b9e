//! The configuration: every default in one place, a TOML file over them, environment over both.
//!
//! Precedence is defaults < file < environment, so a container can run with no file at all.
//! Any key can be set from the environment as `PORTCULLIS_<SECTION>__<KEY>` (two underscores
//! between levels, e.g. `PORTCULLIS_TOKEN__EXPIRES_IN=600`) or `PORTCULLIS_<KEY>` for top-level
//! keys (`PORTCULLIS_LISTEN=0.0.0.0:5001`). Unknown keys, from either source, are an error rather
//! than silently ignored: a typo must not leave a default (say, a test issuer) in production.

pub mod ldap;
pub mod postgres;
pub mod throttle;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Environment variables that look like config overrides but are not config keys.
const NON_CONFIG_VARIABLES: &[&str] =
    &["PORTCULLIS_CONFIG", "PORTCULLIS_ADMIN_PASSWORD", "PORTCULLIS_LOG", "PORTCULLIS_BENCH_PASSWORD"];

/// Who sets a `PORTCULLIS_`-prefixed variable that is not configuration (`key` is what follows
/// the prefix), if anyone: Kubernetes injects service links for a Service named `portcullis`
/// into every pod of its namespace (`PORTCULLIS_SERVICE_HOST`, `PORTCULLIS_SERVICE_PORT[_NAME]`,
/// `PORTCULLIS_PORT`, `PORTCULLIS_PORT_5001_TCP[_PROTO|_PORT|_ADDR]`), and the benchmark passes
/// its own settings as `PORTCULLIS_BENCH_*`. Every other unknown variable stays an error, so a
/// typo (`PORTCULLIS_DATABSE`) never falls back to a default in silence.
fn set_by_others(key: &str) -> Option<&'static str> {
    if key.starts_with("BENCH_") {
        return Some("the benchmark");
    }
    if matches!(key, "SERVICE_HOST" | "SERVICE_PORT" | "PORT") || key.starts_with("SERVICE_PORT_") {
        return Some("Kubernetes");
    }
    // PORT_<port>_<protocol>, optionally _PROTO, _PORT or _ADDR after it.
    let mut parts = key.strip_prefix("PORT_")?.splitn(3, '_');
    let (port, protocol, rest) = (parts.next()?, parts.next()?, parts.next());
    let is_port = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    let is_protocol = matches!(protocol, "TCP" | "UDP" | "SCTP");
    let is_field = rest.is_none_or(|rest| matches!(rest, "PROTO" | "PORT" | "ADDR"));
    (is_port && is_protocol && is_field).then_some("Kubernetes")
}

/// The shortest token lifetime clients cope with: containers/image clamps anything below to 60 s.
pub const MIN_TOKEN_LIFETIME_SECS: u64 = 60;
/// The longest `token.expires_in` accepted.
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 86_400;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the token endpoint listens on. Loopback by default: exposing it is a decision.
    pub listen: SocketAddr,
    /// The URL clients reach Portcullis at, used to print the registry's `realm`. Defaults to
    /// `http://<listen>` (`https://` with `[tls]`); set it when behind a proxy or TLS terminator.
    pub public_url: Option<String>,
    /// Directory for the database, signing key and certificate (created on first start).
    pub data_dir: PathBuf,
    /// Where the data lives: a SQLite database file (the default, `<data_dir>/portcullis.db`), or
    /// a `postgres://` / `postgresql://` URL for replicas sharing one PostgreSQL database (its
    /// settings in `[postgres]`).
    pub database: Option<PathBuf>,
    pub postgres: postgres::PostgresConfig,
    pub token: TokenConfig,
    pub passwords: PasswordConfig,
    pub limits: LimitsConfig,
    pub cache: CacheConfig,
    pub refresh_tokens: RefreshTokenConfig,
    pub robots: RobotConfig,
    /// Name of the system admin created on first start when the database has no users.
    pub bootstrap_admin: String,
    pub throttle: throttle::ThrottleConfig,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` or `Forwarded` header names
    /// the client; from any other peer those headers are ignored. Empty: the socket's peer is
    /// the client.
    pub trusted_proxies: Vec<String>,
    /// The one header a trusted proxy names the client in: `x-forwarded-for` (nginx, HAProxy,
    /// cloud load balancers) or `forwarded` (RFC 7239). The other is ignored, since a proxy that
    /// sets one passes a client's own copy of the other through.
    pub forwarded_header: ForwardedHeader,
    /// How log lines are written: text for people, JSON for log shippers.
    pub log_format: LogFormat,
    /// What is logged (`info`, `portcullis=debug,info`); `PORTCULLIS_LOG` wins over it.
    /// Reloaded on SIGHUP.
    pub log_filter: Option<String>,
    /// The file this configuration was read from, read again on SIGHUP.
    #[serde(skip)]
    pub source_file: Option<PathBuf>,
    /// An LDAP directory or Active Directory whose users may log in beside the database users.
    pub ldap: Option<ldap::LdapConfig>,
    /// Serve HTTPS with this certificate instead of plain HTTP.
    pub tls: Option<TlsConfig>,
    pub metrics: MetricsConfig,
    pub audit: AuditConfig,
    /// `PORTCULLIS_*` variables that others set (Kubernetes, the benchmark) and loading ignored,
    /// to be logged once logging is set up (which needs this configuration).
    #[serde(skip)]
    pub ignored_variables: Vec<String>,
}

/// The certificate and key `listen` serves HTTPS with (TLS 1.2 and 1.3). Both files are read
/// again when they change and on `SIGHUP`, so a renewed certificate (cert-manager, an ACME
/// client) serves without a restart.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, the server's certificate first, then the intermediates.
    pub cert_file: PathBuf,
    /// PEM private key of the first certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// The audit trail.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Where one JSON line per token request goes: `none`, `stdout`, `file` (`decisions_file`,
    /// reopened on SIGHUP) or `syslog` (facility auth).
    pub decisions: DecisionSink,
    /// The file of `decisions = "file"`.
    pub decisions_file: Option<PathBuf>,
    /// The local syslog socket of `decisions = "syslog"`.
    pub syslog_socket: PathBuf,
    /// Refusals of one principal from one address: the first line at once, then one line with
    /// the count per this many seconds.
    pub aggregate_secs: u64,
    /// The shared secret the registry sends with its notifications to `POST /events`, as
    /// `Authorization: Bearer <secret>` (set in the registry's `notifications.endpoints[].headers`);
    /// at least 16 characters. Unset (and no `events_secret_file`): `/events` is not served.
    pub events_secret: Option<String>,
    /// A file holding that secret (trailing newline ignored), e.g. a mounted Kubernetes Secret.
    pub events_secret_file: Option<PathBuf>,
    /// Changes and registry events older than this many days are removed from the database
    /// (by the server, every 10 minutes); 0 keeps them forever.
    pub keep_days: u32,
    /// At most this many changes and events are kept (about 300 bytes each); past it the oldest
    /// are removed, whatever their age. 0: no bound but `keep_days`.
    pub max_entries: u64,
}

/// The shortest accepted `[audit] events_secret`.
pub const MIN_EVENTS_SECRET: usize = 16;

/// Where decision lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionSink {
    #[default]
    None,
    Stdout,
    File,
    Syslog,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            decisions: DecisionSink::None,
            decisions_file: None,
            syslog_socket: PathBuf::from("/dev/log"),
            aggregate_secs: 60,
            events_secret: None,
            events_secret_file: None,
            keep_days: 90,
            max_entries: 10_000_000,
        }
    }
}

impl AuditConfig {
    /// The `/events` secret from `events_secret` or `events_secret_file`, if either is set.
    pub fn events_secret(&self) -> Result<Option<String>, ConfigError> {
        let secret = read_secret(
            self.events_secret.as_deref(),
            self.events_secret_file.as_deref(),
            "audit.events_secret",
        )?;
        match secret {
            Some(secret) if secret.chars().count() < MIN_EVENTS_SECRET => Err(ConfigError::Invalid(format!(
                "audit.events_secret must be at least {MIN_EVENTS_SECRET} characters (e.g. openssl rand -hex 24)"
            ))),
            // HTTP drops spaces at the ends of a header value, so such a secret never matches.
            Some(secret) if secret.trim() != secret || secret.chars().any(char::is_control) => {
                Err(ConfigError::Invalid(
                    "audit.events_secret must not begin or end with spaces or hold control characters".into(),
                ))
            }
            secret => Ok(secret),
        }
    }
}

/// A secret given inline or in a file (its trailing newline ignored), not both: `what` and
/// `what_file` name the keys in messages.
pub fn read_secret(
    inline: Option<&str>,
    file: Option<&Path>,
    what: &str,
) -> Result<Option<String>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid(format!("set {what} or {what}_file, not both"))),
        (Some(secret), None) => Ok(Some(secret.to_string())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|text| Some(text.trim_end_matches(['\r', '\n']).to_string()))
            .map_err(|error| {
                ConfigError::Invalid(format!("cannot read {what}_file {}: {error}", path.display()))
            }),
        (None, None) => Ok(None),
    }
}

/// Where Prometheus metrics are served.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` on this address only (plain HTTP), e.g. `0.0.0.0:9101` for the pod
    /// network while `listen` faces clients. Unset: `/metrics` is served on `listen`.
    pub listen: Option<SocketAddr>,
}

/// Which header names the client behind a trusted proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    #[default]
    XForwardedFor,
    Forwarded,
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One readable line per event, coloured only on a terminal.
    #[default]
    Text,
    /// One JSON object per line, with the span fields (the request id) included.
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Services (the registry's `auth.token.service`, the token's `aud`) this server issues for.
    /// A request naming any other service is refused: a token for one registry must not open
    /// another that trusts the same key.
    pub services: Vec<String>,
    /// The token's `iss`; must equal the registry's `auth.token.issuer`.
    pub issuer: String,
    /// Token lifetime in seconds (`expires_in`); raised to 60 if set lower; at most a day.
    pub expires_in: u64,
    /// How far `nbf` lies in the past, to absorb clock skew between this host and the registry.
    pub not_before_skew: u64,
    /// The algorithm of keys created from now on (the first key, `key rotate prepare`):
    /// `ES256` (default: fast, accepted by every registry version) or `RS256`. Which key signs
    /// is the key store's say, not this.
    pub algorithm: KeyAlgorithm,
    /// A PKCS#8 PEM private key imported as the current key by a database that has none (an
    /// older version kept its key here); defaults to `<data_dir>/token.key`. The database holds
    /// the keys from then on.
    pub key_file: Option<PathBuf>,
    /// The certificate bundle written for the registry's `rootcertbundle`: every trusted key's
    /// certificate; defaults to `<data_dir>/token.pem`.
    pub certificate_file: Option<PathBuf>,
    /// The JWKS written for registry 3.x's `jwks`; defaults to `<data_dir>/jwks.json`.
    pub jwks_file: Option<PathBuf>,
    /// The header's `kid`: `libtrust` (registry 2.8, and 3.x's JWKS) or `thumbprint` (3.1's
    /// names for bundle certificates).
    pub key_id: KeyIdMode,
    /// Whether the header carries `x5c` (the certificate): right for 2.8 and for 3.x with a
    /// `rootcertbundle`; wrong for 3.x with a JWKS alone, which checks `x5c` against its
    /// (empty) bundle first and refuses.
    pub x5c: bool,
}

/// How the token header's `kid` names the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyIdMode {
    /// The libtrust key ID of the public key (`PYYO:TEWU:...`).
    #[default]
    Libtrust,
    /// The key's JWK thumbprint as distribution 3.1 computes it for bundle certificates.
    Thumbprint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum KeyAlgorithm {
    ES256,
    RS256,
}

impl KeyAlgorithm {
    /// The JWS `alg` value.
    pub fn jws_name(self) -> &'static str {
        match self {
            KeyAlgorithm::ES256 => "ES256",
            KeyAlgorithm::RS256 => "RS256",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordConfig {
    /// argon2id memory cost in KiB (OWASP: 19456 = 19 MiB).
    pub memory_kib: u32,
    /// argon2id passes (OWASP: 2).
    pub iterations: u32,
    /// argon2id lanes (OWASP: 1).
    pub parallelism: u32,
    /// How many hashes may run at once; 0 means one per CPU core. Each holds `memory_kib`, so
    /// this bounds the memory a login burst can take.
    pub max_concurrent: usize,
    /// Password logins waiting for a hashing thread at most; past it a login is answered 503
    /// with `Retry-After` at once. One client address may hold at most a quarter of the places.
    pub max_queued: usize,
    /// Shortest password a database user may be given.
    pub min_length: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Scopes per token request, after splitting on spaces. Real clients send one to three.
    pub max_scopes: usize,
    /// Longest request target (path and query) accepted, in bytes.
    pub max_uri_bytes: usize,
    /// Largest request head (request line and headers) in bytes; larger heads get 431.
    pub max_header_bytes: usize,
    /// Largest request body (the OAuth2 form) in bytes.
    pub max_body_bytes: usize,
    /// Connections served at once; further ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Seconds a client may take to send its request head before the connection is closed.
    pub header_read_timeout: u64,
    /// Seconds a connection may go without a byte moving either way (a client that stops
    /// reading its answers holds nothing for longer).
    pub idle_timeout: u64,
    /// Seconds a connection may live in all; then it is closed after its current request.
    pub max_connection_age: u64,
    /// Connections at once from one client address (trusted proxies excepted).
    pub max_connections_per_address: usize,
}

impl LimitsConfig {
    /// How long a request body may take to arrive: as long as its head may.
    pub fn body_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.header_read_timeout.max(1))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Seconds a verified name and secret are accepted again without re-hashing. A change to the
    /// account (password, disabled, removed) ends it at once whatever is left; 0 turns the cache
    /// off and every request pays a full argon2id verification.
    pub credential_lifetime: u64,
    /// Most verified logins remembered at once (about 200 bytes each); the oldest go first.
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { credential_lifetime: 300, max_entries: 100_000 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RefreshTokenConfig {
    /// Seconds a refresh token (docker's identity token) lives without being used.
    pub idle_lifetime: u64,
    /// Seconds a refresh token lives at most, used or not; then the client must log in again.
    pub max_lifetime: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RobotConfig {
    /// Start of every new robot's name (`robot_team+ci`). Harbor's `robot$` needs quoting in
    /// every shell; the default needs none. Letters, digits, `.`, `_` and `-` only.
    pub name_prefix: String,
}

impl Default for RefreshTokenConfig {
    fn default() -> Self {
        RefreshTokenConfig { idle_lifetime: 30 * 86400, max_lifetime: 90 * 86400 }
    }
}

impl Default for RobotConfig {
    fn default() -> Self {
        RobotConfig { name_prefix: "robot_".to_string() }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5001)),
            public_url: None,
            data_dir: PathBuf::from("portcullis-data"),
            database: None,
            token: TokenConfig::default(),
            passwords: PasswordConfig::default(),
            limits: LimitsConfig::default(),
            cache: CacheConfig::default(),
            refresh_tokens: RefreshTokenConfig::default(),
            robots: RobotConfig::default(),
            bootstrap_admin: "admin".to_string(),
            throttle: throttle::ThrottleConfig::default(),
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::XForwardedFor,
            log_format: LogFormat::Text,
            log_filter: None,
            source_file: None,
            ldap: None,
            tls: None,
            metrics: MetricsConfig::default(),
            postgres: postgres::PostgresConfig::default(),
            audit: AuditConfig::default(),
            ignored_variables: Vec::new(),
        }
    }
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            services: vec!["registry".to_string()],
            issuer: "portcullis".to_string(),
            expires_in: 300,
            not_before_skew: 10,
            algorithm: KeyAlgorithm::ES256,
            key_file: None,
            certificate_file: None,
            jwks_file: None,
            key_id: KeyIdMode::Libtrust,
            x5c: true,
        }
    }
}

impl Default for PasswordConfig {
    fn default() -> Self {
        PasswordConfig {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            max_concurrent: 0,
            max_queued: 256,
            min_length: 12,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_scopes: 64,
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            max_connections: 4096,
            header_read_timeout: 10,
            idle_timeout: 30,
            max_connection_age: 600,
            max_connections_per_address: 512,
        }
    }
}

/// A configuration that could not be read, named with where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {variable}: {message}")]
    Environment { variable: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Loads defaults, then `path` if given, then `PORTCULLIS_*` variables from `environment`.
    pub fn load(
        path: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut tree = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
                text.parse::<toml::Table>().map_err(|error| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: error.message().to_string(),
                })?
            }
            None => toml::Table::new(),
        };
        let mut overridden = Vec::new();
        let mut ignored = Vec::new();
        let templates = environment_templates();
        for (variable, value) in environment {
            let Some(key) = variable.strip_prefix("PORTCULLIS_") else { continue };
            if NON_CONFIG_VARIABLES.contains(&variable.as_str()) {
                continue;
            }
            if let Some(source) = set_by_others(key) {
                ignored.push(format!("{variable} (set by {source})"));
                continue;
            }
            let path: Vec<String> = key.split("__").map(|part| part.to_ascii_lowercase()).collect();
            parse_environment_value(&templates, &path, &value)
                .and_then(|value| set_path(&mut tree, &path, value))
                .map_err(|message| ConfigError::Environment { variable: variable.clone(), message })?;
            overridden.push(variable);
        }
        let config: Config = toml::Value::Table(tree).try_into().map_err(|error: toml::de::Error| {
            let message = error.message().to_string();
            match (path, overridden.is_empty()) {
                (Some(path), true) => ConfigError::Parse { path: path.to_path_buf(), message },
                _ => ConfigError::Invalid(format!(
                    "invalid configuration (file {}, environment {}): {message}",
                    path.map(|p| p.display().to_string()).unwrap_or_else(|| "none".into()),
                    if overridden.is_empty() { "none".to_string() } else { overridden.join(", ") }
                )),
            }
        })?;
        config.validate()?;
        Ok(Config { ignored_variables: ignored, source_file: path.map(Path::to_path_buf), ..config })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.token.services.is_empty() || self.token.services.iter().any(|s| s.trim().is_empty()) {
            return Err(ConfigError::Invalid(
                "token.services must list at least one non-empty service".into(),
            ));
        }
        if self.token.issuer.trim().is_empty() {
            return Err(ConfigError::Invalid("token.issuer must not be empty".into()));
        }
        let limits = &self.limits;
        if limits.max_scopes == 0 || limits.max_connections == 0 || limits.max_connections_per_address == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_scopes, limits.max_connections and limits.max_connections_per_address must be positive"
                    .into(),
            ));
        }
        // 0 would close every connection whose head is not already buffered.
        if limits.header_read_timeout == 0 || limits.idle_timeout == 0 || limits.max_connection_age == 0 {
            return Err(ConfigError::Invalid(
                "limits.header_read_timeout, limits.idle_timeout and limits.max_connection_age must be at least 1 second"
                    .into(),
            ));
        }
        if self.passwords.max_queued == 0 {
            return Err(ConfigError::Invalid("passwords.max_queued must be positive".into()));
        }
        self.throttle.validate()?;
        // A token outliving a day is no short-lived token; the key rotation's waits add to it.
        if self.token.expires_in > MAX_TOKEN_LIFETIME_SECS {
            return Err(ConfigError::Invalid(format!(
                "token.expires_in must be at most {MAX_TOKEN_LIFETIME_SECS} seconds (a day)"
            )));
        }
        // `postgres://...` read as a path would quietly make a SQLite file of that name (a
        // directory `postgres:` and one database per replica).
        self.postgres.validate()?;
        if let Some(database) = self.database.as_deref().and_then(|path| path.to_str()) {
            // Not echoed: a URL may carry a password.
            if database.contains("://") && !postgres::is_postgres_url(database) {
                return Err(ConfigError::Invalid(
                    "database: a URL that is neither a file path nor a postgres:// URL".into(),
                ));
            }
        }
        // An inline secret is checked here; a file is read when the server starts.
        if self.audit.events_secret_file.is_none() || self.audit.events_secret.is_some() {
            self.audit.events_secret()?;
        }
        self.trusted_networks()?;
        if self.passwords.memory_kib < 8 * self.passwords.parallelism.max(1) || self.passwords.iterations == 0
        {
            return Err(ConfigError::Invalid(
                "passwords: memory_kib must be at least 8 per lane and iterations at least 1".into(),
            ));
        }
        if self.refresh_tokens.idle_lifetime < 60 || self.refresh_tokens.max_lifetime < 60 {
            return Err(ConfigError::Invalid(
                "refresh_tokens: idle_lifetime and max_lifetime must be at least 60 seconds".into(),
            ));
        }
        let prefix = &self.robots.name_prefix;
        if prefix.is_empty()
            || prefix.len() > 32
            || !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(ConfigError::Invalid(format!(
                "robots.name_prefix {prefix:?}: 1 to 32 letters, digits, '.', '_' or '-' \
                 (safe unquoted in shells)"
            )));
        }
        if let Some(ldap) = &self.ldap {
            ldap.validate()?;
        }
        Ok(())
    }

    /// `trusted_proxies` parsed: each an address (a network of one) or a CIDR range.
    pub fn trusted_networks(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|proxy| {
                let proxy = proxy.trim();
                proxy
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| proxy.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ConfigError::Invalid(format!(
                            "trusted_proxies: {proxy:?} is neither an address nor a CIDR range like 10.0.0.0/8"
                        ))
                    })
            })
            .collect()
    }

    /// The token lifetime actually used: clients misbehave below 60 s.
    /// The token lifetime as issued: `expires_in` within 60 s and a day.
    pub fn token_lifetime_secs(&self) -> u64 {
        self.token.expires_in.max(MIN_TOKEN_LIFETIME_SECS)
    }

    /// The PostgreSQL URL `database` holds, if it holds one.
    pub fn postgres_url(&self) -> Option<&str> {
        self.database.as_deref().and_then(|path| path.to_str()).filter(|url| postgres::is_postgres_url(url))
    }

    pub fn database_path(&self) -> PathBuf {
        self.database.clone().unwrap_or_else(|| self.data_dir.join("portcullis.db"))
    }

    pub fn key_path(&self) -> PathBuf {
        self.token.key_file.clone().unwrap_or_else(|| self.data_dir.join("token.key"))
    }

    pub fn certificate_path(&self) -> PathBuf {
        self.token.certificate_file.clone().unwrap_or_else(|| self.data_dir.join("token.pem"))
    }

    pub fn jwks_path(&self) -> PathBuf {
        self.token.jwks_file.clone().unwrap_or_else(|| self.data_dir.join("jwks.json"))
    }

    /// The primary service: the one printed in the registry snippet.
    pub fn primary_service(&self) -> &str {
        &self.token.services[0]
    }

    /// The realm URL the registry must send clients to.
    pub fn realm(&self) -> String {
        let base = self.public_url.clone().unwrap_or_else(|| format!("{}://{}", self.scheme(), self.listen));
        format!("{}/token", base.trim_end_matches('/'))
    }

    /// `https` when `[tls]` is set, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// How many argon2 computations may run at once.
    pub fn hash_concurrency(&self) -> usize {
        match self.passwords.max_concurrent {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        }
    }
}

/// What a variable's text means: what its key holds in the defaults (with a default `[ldap]`
/// section), so `PORTCULLIS_TOKEN__EXPIRES_IN=600` is a number while
/// `PORTCULLIS_LDAP__BIND_PASSWORD=0123` stays the text `0123`. Keys without a default (the
/// optional ones, all of them text) and unknown keys stay text; deserializing then names an
/// unknown key. (The lists `token.services` and `trusted_proxies` are split on commas where they
/// are set, and `ldap.admin_groups` on `;`.)
fn parse_environment_value(
    defaults: &toml::Table,
    path: &[String],
    value: &str,
) -> Result<toml::Value, String> {
    let mut template = None;
    let mut table = Some(defaults);
    for part in path {
        template = table.and_then(|table| table.get(part));
        table = template.and_then(toml::Value::as_table);
    }
    Ok(match template {
        Some(toml::Value::Integer(_)) => toml::Value::Integer(
            value
                .trim()
                .parse()
                .map_err(|_| format!("{:?} is not a whole number", crate::text::for_message(value)))?,
        ),
        Some(toml::Value::Boolean(_)) => match value.trim() {
            "true" => toml::Value::Boolean(true),
            "false" => toml::Value::Boolean(false),
            _ => return Err(format!("{:?} is neither true nor false", crate::text::for_message(value))),
        },
        Some(toml::Value::Table(_)) => return Err("names a section, not a setting".to_string()),
        _ => toml::Value::String(value.to_string()),
    })
}

/// Every key of the configuration with its default value: the types environment values take.
fn environment_templates() -> toml::Table {
    let defaults = Config {
        ldap: Some(ldap::LdapConfig::default()),
        tls: Some(TlsConfig::default()),
        postgres: postgres::PostgresConfig {
            password_file: Some(PathBuf::from("postgres-password")),
            ..postgres::PostgresConfig::default()
        },
        metrics: MetricsConfig { listen: Some(SocketAddr::from(([127, 0, 0, 1], 9101))) },
        log_filter: Some("info".to_string()),
        audit: AuditConfig {
            decisions_file: Some(PathBuf::from("decisions.jsonl")),
            events_secret: Some(String::new()),
            events_secret_file: Some(PathBuf::from("events-secret")),
            ..AuditConfig::default()
        },
        ..Config::default()
    };
    toml::Table::try_from(&defaults).unwrap_or_default()
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut current = table;
    for part in parents {
        let entry = current.entry(part.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| format!("`{part}` is not a section"))?;
    }
    // A list key given as one string: split on commas.
    let value = match (last.as_str(), value) {
        ("services" | "trusted_proxies", toml::Value::String(s)) => toml::Value::Array(
            s.split(',').map(|item| toml::Value::String(item.trim().to_string())).collect(),
        ),
        (_, value) => value,
    };
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_need_no_file() {
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config.listen.port(), 5001);
        assert_eq!(config.primary_service(), "registry");
        assert_eq!(config.realm(), "http://127.0.0.1:5001/token");
        assert_eq!(config.token_lifetime_secs(), 300);
    }

    #[test]
    fn kubernetes_service_links_are_not_configuration_but_typos_are_errors() {
        let injected = [
            ("PORTCULLIS_PORT", "tcp://10.96.0.12:5001"),
            ("PORTCULLIS_SERVICE_HOST", "10.96.0.12"),
            ("PORTCULLIS_SERVICE_PORT", "5001"),
            ("PORTCULLIS_SERVICE_PORT_HTTP", "5001"),
            ("PORTCULLIS_PORT_5001_TCP", "tcp://10.96.0.12:5001"),
            ("PORTCULLIS_PORT_5001_TCP_PROTO", "tcp"),
            ("PORTCULLIS_PORT_5001_TCP_PORT", "5001"),
            ("PORTCULLIS_PORT_5001_TCP_ADDR", "10.96.0.12"),
            ("PORTCULLIS_PORT_53_UDP", "udp://10.96.0.12:53"),
            ("PORTCULLIS_BENCH_SEED", "7"),
        ];
        assert!(Config::load(None, env(&injected)).is_ok());
        for typo in [
            "PORTCULLIS_DATABSE",
            "PORTCULLIS_PORT_5001_TCP_HOST",
            "PORTCULLIS_PORT_X_TCP",
            "PORTCULLIS_PORTS",
        ] {
            let refused = Config::load(None, env(&[(typo, "x")]));
            assert!(refused.is_err(), "{typo} must not be ignored");
        }
    }

    #[test]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:7000\"\n[token]\nissuer = \"file\"\nexpires_in = 30\n")
            .unwrap();
        let config = Config::load(
            Some(&path),
            env(&[
                ("PORTCULLIS_TOKEN__ISSUER", "env"),
                ("PORTCULLIS_TOKEN__SERVICES", "a, b"),
                ("PORTCULLIS_CONFIG", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen.port(), 7000);
        assert_eq!(config.token.issuer, "env");
        assert_eq!(config.token.services, vec!["a", "b"]);
        assert_eq!(config.token_lifetime_secs(), 60, "lifetimes below 60 s are raised");
    }

    #[test]
    fn robot_prefix_must_be_shell_safe() {
        assert_eq!(Config::load(None, env(&[])).unwrap().robots.name_prefix, "robot_");
        for bad in ["robot$", "", "a b", "bot'"] {
            assert!(Config::load(None, env(&[("PORTCULLIS_ROBOTS__NAME_PREFIX", bad)])).is_err(), "{bad:?}");
        }
        assert!(Config::load(None, env(&[("PORTCULLIS_ROBOTS__NAME_PREFIX", "ci-")])).is_ok());
    }

    #[test]
    fn annotated_example_is_valid_and_shows_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/portcullis.toml");
        let example = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(example.source_file.as_deref(), Some(path.as_path()));
        let example = Config { source_file: None, ..example };
        let defaults = Config::load(None, env(&[])).unwrap();
        assert_eq!(format!("{example:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn token_lifetimes_are_at_most_a_day() {
        let long = Config::load(None, [("PORTCULLIS_TOKEN__EXPIRES_IN".to_string(), "86401".to_string())]);
        assert!(long.unwrap_err().to_string().contains("at most 86400"));
        assert!(
            Config::load(None, [("PORTCULLIS_TOKEN__EXPIRES_IN".to_string(), "86400".to_string())]).is_ok()
        );
    }

    #[test]
    fn database_urls_are_not_taken_for_file_paths() {
        let load = |url: &str| Config::load(None, [("PORTCULLIS_DATABASE".to_string(), url.to_string())]);
        let error = load("mysql://u:s3cret@h/d").unwrap_err().to_string();
        assert!(error.contains("database"), "{error}");
        assert!(!error.contains("s3cret"), "no password in the message: {error}");
        for url in ["postgres://portcullis:s3cret@db:5432/portcullis", "PostgreSQL://db/x"] {
            let config = load(url).unwrap();
            assert_eq!(config.postgres_url(), Some(url));
        }
        let path = load("/var/lib/p/db.sqlite").unwrap();
        assert_eq!(path.postgres_url(), None);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let error = Config::load(None, env(&[("PORTCULLIS_TOKEN__ISUER", "x")])).unwrap_err();
        assert!(error.to_string().contains("isuer"), "{error}");
    }
}
