//! `portcullis serve`: first-run set-up, then the token server until SIGINT or SIGTERM.

use std::sync::Arc;

use anyhow::Context;

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
    println!("portcullis listening on http://{local}");
    println!("registry config.yml (auth section):\n{}", super::key::registry_snippet(&app.config)?);
    tracing::info!(%local, services = ?app.config.token.services, kid = %app.issuer.key().kid(), "serving");
    server::serve(listener, app, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Reports accounts whose names differ only in case, then, on a database without users, creates the configured admin with the password from
/// `PORTCULLIS_ADMIN_PASSWORD`, or a random one printed this once.
async fn bootstrap_admin(app: &Arc<App>) -> anyhow::Result<()> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        for names in app.store.login_name_collisions()? {
            tracing::warn!(accounts = %names.join(", "), "account names differ only in case; each logs in only by its exact spelling");
        }
        if app.store.count_users()? > 0 {
            return Ok(());
        }
        let name = app.config.bootstrap_admin.clone();
        let (password, generated) = match std::env::var("PORTCULLIS_ADMIN_PASSWORD") {
            Ok(password) if !password.is_empty() => (password, false),
            _ => (random_password(), true),
        };
        let hash = app.authenticator.hasher().hash_blocking(&password)?;
        let admin = NewUser { name: &name, password_hash: Some(&hash), is_admin: true, source: Source::Database };
        app.store.create_user(&admin)?;
        if generated {
            println!("created system admin {name:?} with password {password}");
            println!("(shown only now; change it with: portcullis user passwd {name})");
        } else {
            println!("created system admin {name:?} with the password from PORTCULLIS_ADMIN_PASSWORD");
        }
        Ok(())
    })
    .await?
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
