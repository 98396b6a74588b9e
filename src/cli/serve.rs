//! `portcullis serve`: first-run set-up, then the token server until SIGINT or SIGTERM.

use std::sync::Arc;

use anyhow::Context;

use crate::audit::changes::Change;
use crate::authn::password::random_password;
use crate::config::Config;
use crate::server::{self, App};
use crate::store::{NewUser, Source};

/// Threads for short blocking work (SQLite lookups, snapshot catch-ups). Each may hold a pooled
/// database connection, so this also bounds the connections a login burst opens; tokio's
/// default (512) let 200 simultaneous new logins open 200. Hashing has threads of its own.
const BLOCKING_THREADS: usize = 8;

pub fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let app = Arc::new(tokio::task::spawn_blocking(move || App::open(config)).await??);
    bootstrap_admin(&app).await?;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    // Registered before the server says it listens: from then on a SIGHUP reloads, never kills.
    #[cfg(unix)]
    {
        let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(server::reload::on_hangup(app.clone(), hangups));
    }
    if let Some(address) = app.config.metrics.listen {
        let (metrics_local, metrics) = server::metrics_listener::bind(address).await?;
        tokio::spawn(metrics);
        println!("metrics on http://{metrics_local}/metrics");
    }
    if let Some(decisions) = &app.decisions {
        tokio::spawn(decisions.clone().flush_every_interval());
    }
    let audit = &app.config.audit;
    tokio::spawn(crate::audit::retention::trim_forever(
        app.store.clone(),
        audit.keep_days,
        audit.max_entries,
    ));
    println!("portcullis listening on {}://{local}", app.config.scheme());
    if let Some(tls) = &app.tls {
        tls.log_served("start");
        tokio::spawn(tls.clone().watch());
    }
    println!(
        "registry config.yml (auth section):\n{}",
        super::registry_config::startup_snippet(&app.config, app.store.as_ref())?
    );
    tracing::info!(%local, services = ?app.config.token.services, kid = %app.keyring.current().kid(), "serving");
    server::serve(listener, app.clone(), shutdown_signal()).await?;
    if let Some(decisions) = &app.decisions {
        decisions.flush();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Reports accounts whose names differ only in case, then creates the first admin if needed.
async fn bootstrap_admin(app: &Arc<App>) -> anyhow::Result<()> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        for names in app.store.login_name_collisions()? {
            tracing::warn!(accounts = %names.join(", "), "account names differ only in case; each logs in only by its exact spelling");
        }
        // Refusals of every kind take as long as the costliest stored hash takes to verify.
        // Row by row: a list of 100,000 users with their hashes would be 20 MiB at start.
        let mut directory_users = 0usize;
        app.store.scan_users(&mut |hash, source| {
            if let Some(hash) = hash {
                app.authenticator.hasher().note_stored_hash(hash);
            }
            directory_users += usize::from(source == Source::Ldap);
        })?;
        if app.config.ldap.is_none() && directory_users > 0 {
            tracing::warn!(directory_users, "directory users exist but no [ldap] section is configured: their personal tokens and identity tokens are not re-checked against any directory until it is");
        }
        create_first_admin(app.store.as_ref(), &app.config, app.authenticator.hasher())
    })
    .await?
}

/// On a database without users, creates the configured admin with the password from
/// `PORTCULLIS_ADMIN_PASSWORD`, or a random one printed this once. Another process creating it
/// at the same moment (two servers starting on one new database) is fine.
pub fn create_first_admin(
    store: &dyn crate::store::Store,
    config: &Config,
    hasher: &crate::authn::password::PasswordHasher,
) -> anyhow::Result<()> {
    if store.count_users()? > 0 {
        return Ok(());
    }
    let name = config.bootstrap_admin.clone();
    let (password, generated) = match std::env::var("PORTCULLIS_ADMIN_PASSWORD") {
        Ok(password) if !password.is_empty() => (password, false),
        _ => (random_password(), true),
    };
    let hash = hasher.hash_blocking(&password)?;
    let admin = NewUser { name: &name, password_hash: Some(&hash), is_admin: true, source: Source::Database };
    match store.create_user(&admin) {
        Err(crate::store::StoreError::AlreadyExists { .. }) => return Ok(()),
        created => created?,
    };
    let change = Change::new("user.add", format!("{name} admin (first start)")).about(&name);
    crate::audit::changes::record(store, change)?;
    if generated {
        println!("created system admin {name:?} with password {password}");
        println!("(shown only now; change it with: portcullis user passwd {name})");
    } else {
        println!("created system admin {name:?} with the password from PORTCULLIS_ADMIN_PASSWORD");
    }
    Ok(())
}

/// `portcullis init`: the database, the signing key and the first admin, as a first `serve`
/// would make them, without serving.
pub fn init(config: &Config) -> anyhow::Result<()> {
    let store = crate::store::open(config, crate::store::sqlite::OpenMode::Create)?;
    use crate::token::key_set;
    key_set::ensure_keys(store.as_ref(), config)?;
    let mode = key_set::HeaderMode::from_config(config);
    let keys = key_set::load_and_publish(store.as_ref(), mode, &key_set::KeyFiles::from_config(config))?;
    let hasher = crate::authn::password::PasswordHasher::new(&config.passwords, 1)?;
    create_first_admin(store.as_ref(), config, &hasher)?;
    println!(
        "database {} and signing key are ready (key ID {}; registry bundle {})",
        store.location(),
        keys.current().kid(),
        config.certificate_path().display()
    );
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return interrupt.await.unwrap_or(()),
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    interrupt.await.unwrap_or(());
}
