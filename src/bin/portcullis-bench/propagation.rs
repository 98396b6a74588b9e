//! `propagation`: how long a change committed to PostgreSQL takes to apply on every replica.
//!
//! Starts several `portcullis serve` replicas on one PostgreSQL database, then commits role
//! changes (developer and guest in turn, through the store, as the CLI would) and after each
//! asks every replica, in a tight loop, until its token carries the new role. The latency of a
//! change is from its commit returning to the last replica answering with it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use portcullis::authz::Role;
use portcullis::config::postgres::PostgresConfig;
use portcullis::store::postgres::PostgresStore;
use portcullis::store::sqlite::OpenMode;
use portcullis::store::{NameRules, Store};

use crate::http::{token_request, Connection};
use crate::scenarios::QUERY;
use crate::seed::{self, Database};
use crate::server::Server;

/// Runs the measurement and prints p50, p99 and max.
pub fn measure(
    binary: &std::path::Path,
    url: &str,
    replicas: usize,
    changes: usize,
    data_root: &std::path::Path,
) -> anyhow::Result<()> {
    let database = Database::Postgres(url.to_string());
    let logins = seed::add_logins(&database, 0, 0)?;
    let (user, password) = &logins.warm;
    let env = database.server_env().into_iter().collect::<Vec<_>>();
    let mut servers = Vec::new();
    for replica in 0..replicas {
        let dir = data_root.join(format!("replica-{replica}"));
        std::fs::create_dir_all(&dir)?;
        servers.push(Server::start(binary, &dir, &env)?);
    }
    let store = PostgresStore::open_url(
        url,
        &PostgresConfig::default(),
        NameRules { robot_prefix: "robot_".into() },
        OpenMode::Existing,
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let addresses: Vec<SocketAddr> = servers.iter().map(|server| server.address).collect();
    let mut connections = runtime.block_on(async {
        let mut connections = Vec::new();
        for address in &addresses {
            let request = token_request(&address.to_string(), QUERY, user, password);
            let mut connection = Connection::open(*address).await?;
            // Every replica verifies the password once; what follows is answered from memory.
            can_push(&mut connection, &request).await?;
            connections.push((connection, request));
        }
        Ok::<_, anyhow::Error>(connections)
    })?;
    let mut latencies = Vec::with_capacity(changes);
    for change in 0..changes {
        let (role, push) = if change % 2 == 0 { (Role::Guest, false) } else { (Role::Developer, true) };
        // Blocking, outside the client's runtime: the store has its own.
        store.set_member(seed::PROJECT, user, role)?;
        let committed = Instant::now();
        runtime.block_on(async {
            for (connection, request) in &mut connections {
                while can_push(connection, request).await? != push {
                    if committed.elapsed() > Duration::from_secs(5) {
                        bail!("change {change} did not reach a replica within 5 s");
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        })?;
        latencies.push(committed.elapsed());
    }
    let mut sorted = latencies.clone();
    sorted.sort();
    let at = |quantile: f64| sorted[((sorted.len() - 1) as f64 * quantile).round() as usize];
    let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
    println!(
        "change propagation to {replicas} replicas over {changes} changes: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(at(1.0))
    );
    Ok(())
}

/// Asks for a token and says whether it grants push.
async fn can_push(connection: &mut Connection, request: &[u8]) -> anyhow::Result<bool> {
    let status = connection.exchange(request).await?;
    if status != 200 {
        bail!("a replica answered {status}");
    }
    let body: serde_json::Value = serde_json::from_slice(connection.last_body()).context("a token answer")?;
    let token = body["token"].as_str().context("a token")?;
    let payload = token.split('.').nth(1).context("a JWT")?;
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?)?;
    let actions = claims["access"][0]["actions"].as_array().cloned().unwrap_or_default();
    Ok(actions.iter().any(|action| action == "push"))
}
