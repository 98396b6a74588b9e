//! `[metrics] listen`: `/metrics` on an address of its own, so that Prometheus scrapes a port
//! only the cluster reaches while clients reach `listen`. Plain HTTP, a handful of connections
//! at once, and nothing but `/metrics` (and `/healthz`, for a probe of that port).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::service::service_fn;
use hyper::{Method, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::error::ApiError;

/// Scrapers at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 16;

/// Binds `address`; the returned task serves it until the process ends.
pub async fn bind(
    address: SocketAddr,
) -> anyhow::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (metrics.listen)"))?;
    let local = listener.local_addr()?;
    Ok((local, serve(listener)))
}

async fn serve(listener: TcpListener) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = service_fn(|request: Request<hyper::body::Incoming>| async move {
            let response = match (request.method(), request.uri().path()) {
                (&Method::GET, "/metrics") => super::routes::metrics_text(),
                (&Method::GET, "/healthz") => super::health::live(),
                _ => ApiError::not_found("this port serves /metrics only").into_response(),
            };
            Ok::<_, std::convert::Infallible>(response)
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            // A scraper that stalls is dropped after a minute.
            let _ = tokio::time::timeout(Duration::from_secs(60), connection).await;
            drop(permit);
        });
    }
}
