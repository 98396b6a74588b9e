//! `/healthz` and `/readyz`, for load balancers and Kubernetes probes.
//!
//! `/healthz` is liveness: the process answers. `/readyz` is readiness: 200 only when the
//! database answers and the registry's bundle file holds the key that signs, else 503 with a
//! JSON body naming what is wrong. The directory's state is in the body too, but never makes the
//! server unready: database users, robots, personal tokens and remembered logins keep working
//! through a directory outage, and a pod taken out of its Service for it would only add an
//! outage.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::json;

use super::error::json_response;
use super::App;
use crate::store::blocking;

/// How long one look at the directory is reused: probes come every few seconds, from every
/// kubelet and load balancer, and each must not cost a directory connection.
const DIRECTORY_CHECK_REUSE: Duration = Duration::from_secs(10);

/// How long a readiness look at the directory may take.
const DIRECTORY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The last look at the directory: when, and what it said.
#[derive(Default)]
pub struct DirectoryHealth {
    last: Mutex<Option<(Instant, String)>>,
}

/// `GET /healthz`.
pub fn live() -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

/// `GET /readyz`.
pub async fn ready(app: &App) -> Response<Full<Bytes>> {
    if app.keyring.failure().is_some() {
        // A pod taken out of its Service gets no token requests to retry the take-up with: the
        // probe retries it (at most every few seconds, as the keyring allows).
        let _ = super::token_request::current_keys(app).await;
    }
    let database = match blocking(&app.store, |store| store.ping()).await {
        Ok(()) => Ok("ok".to_string()),
        Err(error) => {
            tracing::warn!(%error, "readiness: the database does not answer");
            Err(format!("error: {error}"))
        }
    };
    let signing_key = signing_key_state(app);
    let directory = directory_state(app).await;
    let ready = database.is_ok() && signing_key.is_ok();
    let mut body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "database": database.unwrap_or_else(|error| error),
        "signing_key": signing_key.unwrap_or_else(|error| error),
        "directory": directory,
    });
    // What is served, so that a renewal that did not take is visible before clients refuse.
    if let Some(tls) = &app.tls {
        let summary = tls.summary();
        body["tls"] = json!({
            "serial": summary.serial,
            "names": summary.names,
            "not_after": crate::text::rfc3339(summary.not_after),
        });
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json_response(status, &body)
}

/// The key that signs, if the registry's bundle file still holds it: a bundle replaced or lost
/// under a running server means registries restarted from it would refuse every token.
fn signing_key_state(app: &App) -> Result<String, String> {
    if let Some(failure) = app.keyring.failure() {
        let state = if app.keyring.is_withdrawn() {
            "withdrawn, not signing"
        } else {
            "signing with the previous key"
        };
        return Err(format!("error: the stored keys cannot be taken up ({state}): {failure}"));
    }
    let key = app.keyring.current();
    let bundle = app.config.certificate_path();
    match crate::token::key_set::KeyFiles::from_config(&app.config).bundle_holds(&key) {
        Ok(true) => Ok(format!("ok (key ID {})", key.kid())),
        Ok(false) => Err(format!(
            "error: the bundle {} does not hold the signing key (key ID {}); write it with `portcullis key bundle --output {}`",
            bundle.display(),
            key.kid(),
            bundle.display()
        )),
        Err(error) => Err(format!("error: {error}")),
    }
}

/// "not configured", "ok", or what the last connection attempt met, at most
/// [`DIRECTORY_CHECK_REUSE`] old.
async fn directory_state(app: &App) -> String {
    let Some(directory) = app.authenticator.directory() else { return "not configured".to_string() };
    let health = &app.directory_health;
    if let Some((at, state)) = health.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).as_ref() {
        if at.elapsed() < DIRECTORY_CHECK_REUSE {
            return state.clone();
        }
    }
    let deadline = tokio::time::Instant::now() + DIRECTORY_CHECK_TIMEOUT;
    let state = match directory.directory().connect(deadline).await {
        Ok(()) => "ok".to_string(),
        Err(error) => format!("unavailable: {error}"),
    };
    *health.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
        Some((Instant::now(), state.clone()));
    state
}
