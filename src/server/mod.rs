//! The HTTP side: accepting connections within limits, routing, and shutting down cleanly.
//!
//! - [`state`]: [`App`], everything a request needs, built once at start;
//! - [`routes`]: which path and method go where;
//! - [`client`]: the client's address (the peer, or what a trusted proxy forwarded for);
//! - [`connection`]: limits on one connection: its deadlines and the per-address cap;
//! - [`tls`]: HTTPS, with the certificate replaced at run time when its files change;
//! - [`pacing`]: a slower pace for addresses whose token requests keep being refused;
//! - [`request_id`]: the id every request's log lines and answer carry;
//! - [`reload`]: what `SIGHUP` reloads (certificate, decision file, log filter);
//! - [`get_token`]: the realm itself, `GET /token`;
//! - [`health`]: `/healthz` (alive) and `/readyz` (database and key ready);
//! - [`metrics_listener`]: `/metrics` on an address of its own (`[metrics] listen`);
//! - [`oauth`]: `POST /token`, OAuth2's password and refresh-token grants;
//! - [`events`]: `POST /events`, the registry's notifications, into the audit log;
//! - [`body`]: reading request bodies within size and time limits;
//! - [`token_request`]: the pipeline both end in: authenticate, grant, sign;
//! - [`decision`]: what each token request came to, counted in the metrics;
//! - [`error`]: refusals in the registry's error JSON, and the one mapping of internal faults.

pub mod body;
pub mod client;
pub mod connection;
pub mod decision;
pub mod error;
pub mod events;
pub mod get_token;
pub mod health;
pub mod metrics_listener;
pub mod oauth;
pub mod pacing;
pub mod reload;
pub mod request_id;
pub mod routes;
pub mod state;
pub mod tls;
pub mod token_request;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::metrics::metrics;
use connection::{AddressSlots, Deadlines, Watched};
pub use state::App;

/// How long open connections get to finish their requests after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// File descriptors kept free of connections: the database, the log, directory sockets,
/// the listener.
const RESERVED_DESCRIPTORS: u64 = 128;

/// Serves `app` on `listener` until `shutdown` resolves, then drains open connections.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let limits = app.config.limits.clone();
    let max_connections = connections_within_descriptors(limits.max_connections);
    // One permit per connection: past the limit, new clients wait in the accept queue instead of
    // each costing a task and buffers.
    let connection_permits = Arc::new(Semaphore::new(max_connections));
    let trusted = Arc::new(app.config.trusted_networks().unwrap_or_default());
    let slots = AddressSlots::new(limits.max_connections_per_address, trusted.clone());
    let deadlines = Deadlines {
        idle: Duration::from_secs(limits.idle_timeout),
        age: Duration::from_secs(limits.max_connection_age),
    };
    let tls = match &app.tls {
        Some(certificates) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(certificates.server_config()?))),
        None => None,
    };
    let handshake_timeout = Duration::from_secs(limits.header_read_timeout);
    let (stop, stopping) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout))
        // hyper refuses heads larger than its read buffer with 431; its minimum is 8 KiB.
        .max_buf_size(limits.max_header_bytes.max(8192));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connection_permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Over its address's share: closed at once, before it costs a task.
        let Some(slot) = slots.take(peer.ip()) else { continue };
        let _ = stream.set_nodelay(true);
        // A peer that stops acknowledging what we send is dropped by the kernel after this long,
        // instead of keeping the connection alive with zero-window probes.
        let _ = socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(deadlines.idle));
        let (stream, progress) = Watched::new(stream);
        let app = app.clone();
        let peer_address = peer.ip();
        let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let app = app.clone();
            let id = request_id::request_id(peer_address, request.headers(), &app.trusted_proxies);
            let span = tracing::info_span!("request", id = %String::from_utf8_lossy(id.as_bytes()));
            let answer = async move {
                let mut response = routes::route(&app, request, peer_address, &id).await;
                response.headers_mut().insert(request_id::X_REQUEST_ID, id);
                Ok::<_, std::convert::Infallible>(response)
            };
            tracing::Instrument::instrument(answer, span)
        });
        let (builder, stopping, tls) = (builder.clone(), stopping.clone(), tls.clone());
        tokio::spawn(async move {
            metrics().connections_changed(1);
            match tls {
                None => {
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    deadlines.drive(connection, &progress, stopping).await;
                }
                Some(tls) => {
                    // The handshake gets the time a request head gets, so that a client that
                    // opens and stalls holds its slot no longer than over plain HTTP.
                    match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let connection = builder.serve_connection(TokioIo::new(stream), service);
                            deadlines.drive(connection, &progress, stopping).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%peer_address, %error, "tls handshake failed"),
                        Err(_) => tracing::debug!(%peer_address, "tls handshake timed out"),
                    }
                }
            }
            metrics().connections_changed(-1);
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = connection_permits.acquire_many(max_connections as u32);
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        tracing::warn!("connections still open after the grace period");
    }
    Ok(())
}

/// `max_connections`, lowered to what the process's descriptors allow after raising the soft
/// `RLIMIT_NOFILE` to the hard one (Rust does not; 1024 is a common soft limit): past it,
/// `accept` and every new database or directory socket would fail with EMFILE.
fn connections_within_descriptors(max_connections: usize) -> usize {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
        let available = unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return max_connections;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit.rlim_cur = limit.rlim_max;
                }
            }
            limit.rlim_cur
        };
        let usable =
            usize::try_from(available.saturating_sub(RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX).max(1);
        if usable < max_connections {
            tracing::warn!(
                max_connections,
                usable,
                descriptors = available,
                "limits.max_connections is more than the open-file limit allows; serving at most {usable}"
            );
            return usable;
        }
    }
    max_connections
}
