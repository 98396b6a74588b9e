//! The properties the fuzz targets check, one public function per target, each taking the raw
//! input and panicking when a property fails.
//!
//! This file is compiled twice: as the `portcullis_fuzz` library that `fuzz_targets/*.rs` call
//! (nightly, libFuzzer), and as a module of the main crate's integration tests
//! (`tests/it/fuzz_corpus.rs`, through `#[path]`), which replays every file of `corpus/<target>/`
//! on stable. So it uses nothing but `portcullis`'s public API, std, and crates the main package
//! depends on itself (`base64`, `form_urlencoded`), and it holds no crate-level attributes.
//!
//! A property that fails is a bug to fix, not an input shape to skip: each bug the fuzzer found
//! has a regression test with its input in `tests/it/fuzz_corpus.rs`.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use portcullis::authn::basic::{parse_basic, BasicAuthError, Credentials};
use portcullis::authz::scope::{is_valid_component, is_valid_repository_name, parse_scopes, ResourceType};
use portcullis::config::Config;
use portcullis::dn::{first_rdn_value, group_key, is_within, looks_like_dn, normalize_dn};
use portcullis::server::oauth::{parse_form, Form};
use portcullis::server::token_request::{Flow, Presented};

/// Scopes per request, as the default `limits.max_scopes`.
const MAX_SCOPES: usize = 64;

/// `scope`: the input is one `scope` value (UTF-8; other inputs are skipped).
///
/// - the value, and the same text sent as one `scope` field per line, parse alike (errors too);
/// - every parsed scope is valid (name grammar, actions `*` or lower-case letters), resources are
///   unique, at most the limit;
/// - each scope re-serialised with `Display` parses back to itself, and so does the whole list
///   joined with spaces.
pub fn scope(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let whole = parse_scopes([text], MAX_SCOPES);
    assert_eq!(whole, parse_scopes(text.split('\n'), MAX_SCOPES), "one value vs one field per line");
    let Ok(scopes) = whole else { return };
    assert!(scopes.len() <= MAX_SCOPES);
    for (index, scope) in scopes.iter().enumerate() {
        assert!(
            scopes[..index].iter().all(|s| (s.resource_type, &s.name) != (scope.resource_type, &scope.name)),
            "resources are merged: {scope:?}"
        );
        match scope.resource_type {
            ResourceType::Repository => assert!(is_valid_repository_name(&scope.name), "{scope:?}"),
            ResourceType::Registry => assert!(is_valid_component(&scope.name), "{scope:?}"),
        }
        for action in &scope.actions {
            assert!(
                action == "*" || (!action.is_empty() && action.bytes().all(|b| b.is_ascii_lowercase())),
                "{action:?}"
            );
        }
        let printed = scope.to_string();
        assert_eq!(parse_scopes([printed.as_str()], 1), Ok(vec![scope.clone()]), "{printed:?}");
    }
    let printed: Vec<String> = scopes.iter().map(ToString::to_string).collect();
    assert_eq!(parse_scopes([printed.join(" ").as_str()], MAX_SCOPES), Ok(scopes));
}

/// `basic`: the input is an `Authorization` header value, and also a decoded `user:password`.
///
/// - whatever parses has no `:` in the name, and `Basic base64(user:password)` parses back to
///   the same pair; `Debug` hides the password;
/// - the input base64-encoded behind `Basic ` (or `bAsIc`, with extra white space) parses to
///   exactly its split at the first `:`, or `NotUtf8` / `NoSeparator` (an empty input leaves no
///   token: `UnsupportedScheme`).
pub fn basic(data: &[u8]) {
    if let Ok(credentials) = parse_basic(data) {
        assert!(!credentials.username.contains(':'));
        let pair = format!("{}:{}", credentials.username, credentials.password);
        let header = format!("Basic {}", STANDARD.encode(pair));
        assert_eq!(parse_basic(header.as_bytes()), Ok(credentials.clone()));
        assert!(format!("{credentials:?}").contains("<hidden>"));
    }
    let expected = match std::str::from_utf8(data) {
        // `Basic ` and nothing: the header is trimmed first, so there is no token at all.
        Ok("") => Err(BasicAuthError::UnsupportedScheme),
        Err(_) => Err(BasicAuthError::NotUtf8),
        Ok(text) => text
            .split_once(':')
            .map(|(username, password)| Credentials {
                username: username.to_string(),
                password: password.to_string(),
            })
            .ok_or(BasicAuthError::NoSeparator),
    };
    let encoded = STANDARD.encode(data);
    assert_eq!(parse_basic(format!("Basic {encoded}").as_bytes()), expected);
    assert_eq!(parse_basic(format!(" bAsIc  {encoded}\t").as_bytes()), expected);
}

/// The configuration the `oauth_form` target reads forms against: the defaults, two services.
fn form_config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let mut config = Config::default();
        config.token.services = vec!["registry".to_string(), "registry.example.com".to_string()];
        config
    })
}

/// `oauth_form`: the input is a `POST /token` body, read by `server::oauth::parse_form`.
///
/// - a refusal is a 400 with OAuth2's `invalid_request`, `invalid_scope` or
///   `unsupported_grant_type`, and its message stays short however long the body;
/// - an accepted form says what its fields say: the grant, a configured service, the scopes,
///   the name and password or a non-empty refresh token, `offline_token` / `access_type`, a
///   `client_id` clipped to 80 bytes;
/// - a single-valued field the grant reads (`grant_type`, `service`, `access_type`, and
///   `username`/`password` or `refresh_token`) repeated with the same value changes nothing, and
///   repeated with another value is an error.
pub fn oauth_form(data: &[u8]) {
    let config = form_config();
    let form = match parse_form(config, data) {
        Err(error) => {
            assert_eq!(error.api.status.as_u16(), 400, "{error:?}");
            assert!(
                matches!(error.error, "invalid_request" | "invalid_scope" | "unsupported_grant_type"),
                "{error:?}"
            );
            assert!(error.api.message.len() < 1024, "client text is clipped in messages");
            return;
        }
        Ok(form) => form,
    };
    let pairs: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    let values = |name: &str| -> Vec<&str> {
        pairs.iter().filter(|(key, _)| key == name).map(|(_, value)| value.as_str()).collect()
    };
    let first = |name: &str| values(name).first().copied();
    let singles: &[&str] = match form.flow {
        Flow::PasswordGrant => {
            assert_eq!(first("grant_type"), Some("password"));
            let Presented::Password(credentials) = &form.presented else { panic!("{form:?}") };
            assert_eq!(first("username"), Some(credentials.username.as_str()));
            assert_eq!(first("password"), Some(credentials.password.as_str()));
            &["grant_type", "service", "access_type", "username", "password"]
        }
        Flow::RefreshGrant => {
            assert_eq!(first("grant_type"), Some("refresh_token"));
            let Presented::RefreshToken(token) = &form.presented else { panic!("{form:?}") };
            assert!(!token.is_empty());
            assert_eq!(first("refresh_token"), Some(token.as_str()));
            &["grant_type", "service", "access_type", "refresh_token"]
        }
        Flow::Get => panic!("a form is never a GET: {form:?}"),
    };
    let parameters = &form.parameters;
    assert_eq!(first("service"), Some(parameters.service.as_str()));
    assert!(config.token.services.contains(&parameters.service));
    assert_eq!(Ok(parameters.scopes.clone()), parse_scopes(values("scope"), config.limits.max_scopes));
    let offline = values("offline_token").last().is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || first("access_type") == Some("offline");
    assert_eq!(parameters.offline_token, offline);
    assert!(parameters.client_id.len() <= 80);
    for name in singles {
        let Some(value) = first(name) else { continue };
        let same = parse_form(config, &appended(data, name, value));
        assert_eq!(same.as_ref().map(summary).ok(), Some(summary(&form)), "{name} repeated alike");
        let other = parse_form(config, &appended(data, name, &format!("{value}x")));
        let error = other.expect_err("a single-valued field given twice with different values");
        assert_eq!(error.api.status.as_u16(), 400);
        assert!(error.api.message.contains("conflicting"), "{name}: {error:?}");
    }
}

/// `body` with `&name=value` added (the value form-encoded).
fn appended(body: &[u8], name: &str, value: &str) -> Vec<u8> {
    let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
    [body, b"&", name.as_bytes(), b"=", encoded.as_bytes()].concat()
}

/// Everything a form says, the password included (its `Debug` hides it).
fn summary(form: &Form) -> String {
    let presented = match &form.presented {
        Presented::Password(c) => format!("password {:?} {:?}", c.username, c.password),
        other => format!("{other:?}"),
    };
    format!("{:?} {:?} {presented}", form.flow, form.parameters)
}

/// `dn`: the input is a DN, a newline, and a second text used as a base DN and as an RDN value.
///
/// - `normalize_dn` is idempotent, ignores ASCII case, and keeps the number of RDNs;
/// - a DN is within itself and its child (`cn=child,<dn>`) is within it; when `is_within` says
///   yes, the base's RDNs are the last RDNs of the DN;
/// - `group_key` is `dn:` + the normalized DN for DNs and `name:` + lower case otherwise, and
///   recomputing it from what follows the prefix gives the same key;
/// - an RDN value escaped as RFC 4514 says comes back from `first_rdn_value` unchanged, and its
///   DN is within the DN it was put in front of.
pub fn dn(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (dn, other) = text.split_once('\n').unwrap_or((&text, ""));
    let normalized = normalize_dn(dn);
    assert_eq!(normalize_dn(&normalized), normalized, "idempotent");
    assert_eq!(normalize_dn(&dn.to_ascii_uppercase()), normalized, "ASCII case is ignored");
    assert_eq!(rdns(&normalized).len(), rdns(dn).len(), "RDNs kept: {dn:?} -> {normalized:?}");
    assert!(is_within(dn, dn));
    assert!(is_within(&format!("cn=child,{dn}"), dn));
    check_within(dn, other);
    check_within(other, dn);

    for name in [dn, other] {
        let key = group_key(name);
        let rest = if looks_like_dn(name) {
            assert_eq!(key, format!("dn:{}", normalize_dn(name)));
            key.strip_prefix("dn:")
        } else {
            assert_eq!(key, format!("name:{}", name.trim().to_lowercase()));
            key.strip_prefix("name:")
        };
        assert_eq!(group_key(rest.expect("prefixed")), key, "stable key for {name:?}");
    }

    if let Some(value) = first_rdn_value(dn) {
        assert!(!value.is_empty());
    }
    if !other.is_empty() {
        let child = format!("CN={},{dn}", escape_rdn_value(other));
        assert_eq!(first_rdn_value(&child).as_deref(), Some(other), "{child:?}");
        assert!(is_within(&child, dn), "{child:?} within {dn:?}");
        check_within(&child, dn);
    }
}

/// When `is_within(dn, base)`, the normalized base's RDNs end the normalized DN's.
fn check_within(dn: &str, base: &str) {
    if !is_within(dn, base) {
        return;
    }
    let (dn_rdns, base_rdns) = (normalize_dn(dn), normalize_dn(base));
    assert!(rdns(&dn_rdns).ends_with(&rdns(&base_rdns)), "{dn:?} within {base:?}");
}

/// A DN's RDNs: split on commas that no backslash escapes (RFC 4514), written independently of
/// `portcullis::dn`. A blank DN is the root, which has none (and everything is within it).
fn rdns(dn: &str) -> Vec<&str> {
    if dn.bytes().all(|byte| byte.is_ascii_whitespace()) {
        return Vec::new();
    }
    let mut parts = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (index, character) in dn.char_indices() {
        match (escaped, character) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, ',') => {
                parts.push(&dn[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&dn[start..]);
    parts
}

/// `value` as an RDN value (RFC 4514 section 2.4): the specials behind a backslash, a leading
/// `#` or space and a trailing space as `\#` / `\ `, other white space and controls as `\XX`
/// per UTF-8 byte.
fn escape_rdn_value(value: &str) -> String {
    let mut out = String::new();
    let last = value.chars().count().saturating_sub(1);
    for (index, character) in value.chars().enumerate() {
        match character {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(character);
            }
            '#' if index == 0 => out.push_str("\\#"),
            ' ' if index == 0 || index == last => out.push_str("\\ "),
            ' ' => out.push(' '),
            c if c.is_whitespace() || c.is_control() => {
                let mut buffer = [0; 4];
                for byte in c.encode_utf8(&mut buffer).bytes() {
                    out.push_str(&format!("\\{byte:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `config`: the input is a config file, except lines starting with `PORTCULLIS_`, which are
/// environment variables `NAME=VALUE`. Loaded with `Config::load` (the file through a temporary
/// file; no file when that part is blank).
///
/// - a loaded configuration is valid: services non-empty and non-blank, an issuer, positive
///   limits, token lifetime at least 60 s, a realm URL ending in `/token`;
/// - the environment wins: the last variable setting `token.issuer`, `token.services` (split on
///   commas) or `bootstrap_admin` is what the configuration holds;
/// - variables outside the overlay (`PORTCULLIS_CONFIG`, no prefix) change nothing, and an
///   unknown key in the environment is an error.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut file = String::new();
    let mut environment = Vec::new();
    for line in text.split_inclusive('\n') {
        if line.starts_with("PORTCULLIS_") {
            let line = line.strip_suffix('\n').unwrap_or(line);
            let (name, value) = line.split_once('=').unwrap_or((line, ""));
            environment.push((name.to_string(), value.to_string()));
        } else {
            file.push_str(line);
        }
    }
    let loaded = load(&file, environment.clone());
    let ignored = [
        ("PORTCULLIS_CONFIG".to_string(), "/nonexistent.toml".to_string()),
        ("XPORTCULLIS_TOKEN__ISSUER".to_string(), "x".to_string()),
    ];
    let with_ignored = load(&file, environment.iter().cloned().chain(ignored));
    assert_eq!(
        with_ignored.as_ref().map(|c| format!("{c:?}")).ok(),
        loaded.as_ref().map(|c| format!("{c:?}")).ok()
    );
    let Ok(config) = loaded else { return };

    assert!(!config.token.services.is_empty());
    assert!(config.token.services.iter().all(|s| !s.trim().is_empty()));
    assert!(!config.token.issuer.trim().is_empty());
    assert!(config.limits.max_scopes > 0 && config.limits.max_connections > 0);
    assert!(config.token_lifetime_secs() >= 60);
    assert!(config.realm().ends_with("/token"));
    assert_eq!(config.primary_service(), config.token.services[0]);

    let last = |path: &[&str]| {
        environment.iter().rev().find_map(|(name, value)| {
            let key = name.strip_prefix("PORTCULLIS_")?;
            let parts: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
            (parts == path).then_some(value.as_str())
        })
    };
    if let Some(issuer) = last(&["token", "issuer"]) {
        assert_eq!(config.token.issuer, issuer);
    }
    if let Some(services) = last(&["token", "services"]) {
        let expected: Vec<&str> = services.split(',').map(str::trim).collect();
        assert_eq!(config.token.services, expected);
    }
    if let Some(admin) = last(&["bootstrap_admin"]) {
        assert_eq!(config.bootstrap_admin, admin);
    }
    let unknown = ("PORTCULLIS_TOKEN__NO_SUCH_KEY".to_string(), "x".to_string());
    assert!(load(&file, environment.into_iter().chain([unknown])).is_err(), "unknown keys are errors");
}

/// `Config::load` over `file` (written to a temporary file unless blank) and `environment`.
fn load(
    file: &str,
    environment: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, portcullis::config::ConfigError> {
    if file.trim().is_empty() {
        return Config::load(None, environment);
    }
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let serial = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("portcullis-fuzz-{}-{serial}.toml", std::process::id()));
    std::fs::write(&path, file).expect("write the temporary config file");
    // The temporary file's name is recorded as the source; each load has its own.
    let loaded = Config::load(Some(&path), environment).map(|config| Config { source_file: None, ..config });
    let _ = std::fs::remove_file(&path);
    let _ = format!("{:?}", loaded.as_ref().err().map(ToString::to_string));
    loaded
}

/// A password hasher at the lowest argon2 cost, made once: `import` hashes plain-text lines.
fn cheap_hasher() -> &'static portcullis::authn::password::PasswordHasher {
    static HASHER: OnceLock<portcullis::authn::password::PasswordHasher> = OnceLock::new();
    HASHER.get_or_init(|| {
        let config = portcullis::config::PasswordConfig {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 1,
            ..Default::default()
        };
        portcullis::authn::password::PasswordHasher::new(&config, 1).expect("a hasher")
    })
}

/// `import`: the first byte picks the reader (htpasswd, docker_auth, Harbor, a single stored
/// hash), the rest is the file (UTF-8; other inputs are skipped).
///
/// - no reader panics or hangs, whatever the file;
/// - every user a reader keeps has a valid name, no two share a name up to ASCII case, and its
///   hash is one [`carried_hash::check`] accepts (or argon2id made from plain text);
/// - a hash `check` accepts never matches the empty password, and verifying any hash never
///   panics; what `check` refuses is never imported.
pub fn import(data: &[u8]) {
    use portcullis::authn::carried_hash::{self, Scheme};
    use portcullis::import::{docker_auth, harbor, htpasswd, HashPolicy, Plan};
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let policy = HashPolicy { allow_weak: selector & 0x10 != 0, hasher: cheap_hasher() };
    let plan: Option<Plan> = match selector % 4 {
        0 => Some(htpasswd::read(text, &policy, None)),
        1 => docker_auth::read(text, &policy).ok(),
        2 => harbor::parse("fuzz", text).ok().map(|file| harbor::read(vec![("fuzz".to_string(), file)])),
        _ => {
            let accepted = carried_hash::check(text);
            let _ = carried_hash::verify(b"password", text);
            let _ = carried_hash::cost_class(text);
            if let Ok(scheme) = accepted {
                assert!(
                    scheme == Scheme::Argon2 || !carried_hash::verify(b"", text),
                    "{text:?} matches nothing"
                );
            }
            None
        }
    };
    let Some(plan) = plan else { return };
    let mut names = std::collections::HashSet::new();
    for user in &plan.import.users {
        assert!(portcullis::store::names::validate_user_name(&user.name).is_ok(), "{:?}", user.name);
        assert!(names.insert(portcullis::store::names::fold(&user.name)), "{:?} twice", user.name);
        // Plain text is hashed with argon2id by the import itself; every other hash was checked.
        let made_here = Scheme::of(&user.password_hash) == Scheme::Argon2 && policy.allow_weak;
        assert!(
            made_here || carried_hash::check(&user.password_hash).is_ok(),
            "{:?} imported unchecked",
            user.password_hash
        );
        if !policy.allow_weak {
            assert!(
                !Scheme::of(&user.password_hash).is_weak(),
                "{:?} without --allow-weak",
                user.password_hash
            );
        }
    }
}
