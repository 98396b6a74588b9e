//! `portcullis check-config`: every part a server needs, checked without serving, one line per
//! check, exit 1 when one fails. For deployment pipelines and for an operator who just edited
//! the configuration: the file and environment (they loaded, or this command would not run),
//! the signing key pair, the database, and the TLS certificate and directory when configured.

use std::time::Duration;

use anyhow::bail;

use crate::config::Config;

/// Runs every check and reports them; fails when one failed.
pub fn run(config: &Config) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    let mut check = |name: &str, outcome: anyhow::Result<String>| match outcome {
        Ok(detail) => println!("{name:<14}ok: {detail}"),
        Err(error) => {
            println!("{name:<14}FAILED: {error:#}");
            failed.push(name.to_string());
        }
    };
    check(
        "configuration",
        Ok(format!("services {}, realm {}", config.token.services.join(", "), config.realm())),
    );
    check("log filter", log_filter(config));
    check("audit", audit(config));
    check("signing key", signing_key(config));
    check("database", database(config));
    if let Some(tls) = &config.tls {
        check("tls", tls_certificate(tls));
    }
    if let Some(ldap) = &config.ldap {
        check("directory", directory(ldap));
        for warning in ldap.warnings() {
            println!("{:<14}{warning}", "warning");
        }
    }
    if !failed.is_empty() {
        bail!("{} check(s) failed: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}

/// The log filter (`PORTCULLIS_LOG` or `log_filter`) parses; a server would log at info instead.
fn log_filter(config: &Config) -> anyhow::Result<String> {
    let filter = crate::logging::filter_text(config.log_filter.as_deref());
    crate::logging::check_filter(&filter).map_err(anyhow::Error::msg)?;
    Ok(filter)
}

/// The decision sink opens and the events secret reads, as a starting server would need them.
fn audit(config: &Config) -> anyhow::Result<String> {
    let audit = &config.audit;
    let decisions = match crate::audit::decisions::DecisionLog::open(audit)? {
        None => "decisions not recorded".to_string(),
        Some(_) => match (&audit.decisions, &audit.decisions_file) {
            (crate::config::DecisionSink::File, Some(path)) => format!("decisions to {}", path.display()),
            (crate::config::DecisionSink::Syslog, _) => {
                format!("decisions to syslog {}", audit.syslog_socket.display())
            }
            _ => "decisions to standard output".to_string(),
        },
    };
    let events = if audit.events_secret()?.is_some() { "POST /events enabled" } else { "no /events" };
    let keep = match audit.keep_days {
        0 => "entries kept forever".to_string(),
        days => format!("entries kept {days} days"),
    };
    Ok(format!("{decisions}; {events}; {keep}"))
}

/// The stored keys parse, one is current, and the bundle file holds it (what a server needs
/// to sign); nothing is written.
fn signing_key(config: &Config) -> anyhow::Result<String> {
    use crate::token::key_set;
    let store = super::open_store(config)?;
    let set = key_set::load(store.as_ref(), key_set::HeaderMode::from_config(config))?;
    let bundle_path = config.certificate_path();
    if !key_set::KeyFiles::from_config(config).bundle_holds(set.current())? {
        bail!(
            "the bundle {} does not hold the current key (kid {}): write it with `portcullis key bundle --output {}`",
            bundle_path.display(),
            set.current().kid(),
            bundle_path.display()
        );
    }
    Ok(format!(
        "kid {} signs, {} key(s) trusted, bundle {}",
        set.current().kid(),
        set.keys().len(),
        bundle_path.display()
    ))
}

/// The certificate chain and key load, fit together, and have not expired.
fn tls_certificate(tls: &crate::config::TlsConfig) -> anyhow::Result<String> {
    let summary = crate::server::tls::Certificates::load(tls)?.summary();
    let not_after = crate::text::rfc3339(summary.not_after);
    if summary.has_expired() {
        bail!("{}: the certificate expired at {not_after}", tls.cert_file.display());
    }
    Ok(format!(
        "{} for {}, serial {}, valid until {not_after}",
        tls.cert_file.display(),
        summary.names.join(", "),
        summary.serial
    ))
}

/// The database exists, opens at a schema this binary knows, and answers.
fn database(config: &Config) -> anyhow::Result<String> {
    let store = super::open_store(config)?;
    store.ping()?;
    Ok(format!("{}, {} user(s)", store.location(), store.count_users()?))
}

/// The directory answers and takes the search account.
fn directory(ldap: &crate::config::ldap::LdapConfig) -> anyhow::Result<String> {
    let directory = crate::authn::ldap::Directory::new(ldap)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(ldap.timeout_secs);
    runtime.block_on(directory.connect(deadline))?;
    let account = if ldap.bind_dn.is_empty() { "anonymously" } else { ldap.bind_dn.as_str() };
    Ok(format!("{} answers; searching as {account}", directory.url()))
}
