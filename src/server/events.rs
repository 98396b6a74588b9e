//! `POST /events`: the registry's notifications, stored in the audit log
//! ([`crate::audit::events`] decides what is kept).
//!
//! The registry authenticates with the shared secret of `[audit] events_secret`, sent as
//! `Authorization: Bearer <secret>` because the registry's `notifications.endpoints[].headers`
//! says so; compared in constant time. Answers: 200 once stored (the registry then drops the
//! batch; events it got wrong are skipped and counted, since a refused batch would be sent again
//! forever), 401 for a wrong or missing secret (logged at most once a minute: a registry with
//! the wrong secret otherwise fails unseen), 400/413/415 for a body that is not an events
//! envelope, 503 when the database cannot take it within [`STORE_WAIT`] (the registry keeps
//! the batch and retries), 404 when no secret is configured.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use subtle::ConstantTimeEq;

use super::body::{media_type, read_limited};
use super::error::{json_response, ApiError};
use super::App;
use crate::store::{blocking, now};

/// The largest notification body accepted. The registry sends a batch per `threshold` events,
/// each under a kilobyte; a megabyte is far above any real batch.
const MAX_EVENTS_BODY: usize = 1024 * 1024;

/// How long a batch waits for another writer (a CLI transaction) before the answer is 503:
/// under the registry's own timeout (2 s in the example), so that it retries rather than
/// giving up on an answer that comes too late.
const STORE_WAIT: Duration = Duration::from_millis(1500);

/// When a refused secret was last logged (Unix seconds).
static LAST_REFUSAL_LOGGED: AtomicI64 = AtomicI64::new(i64::MIN / 2);

/// The media types a notification may carry: 2.8's, 3.x's, and plain JSON for tools.
const MEDIA_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.events.v1+json",
    "application/vnd.docker.distribution.events.v2+json",
    "application/json",
];

/// The credentials of `Authorization: Bearer <token>` (the scheme in any case, RFC 7235), or
/// nothing.
fn bearer_token(headers: &hyper::HeaderMap) -> &[u8] {
    const SCHEME: &[u8] = b"bearer ";
    headers
        .get(AUTHORIZATION)
        .map(|value| value.as_bytes())
        .filter(|value| value.len() > SCHEME.len() && value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME))
        .map(|value| &value[SCHEME.len()..])
        .unwrap_or_default()
}

/// Stores the notifications in `request`.
pub async fn receive(
    app: &App,
    request: Request<Incoming>,
    client: IpAddr,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let secret = app.events_secret.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let Some(secret) = secret else {
        return Err(ApiError::not_found(
            "registry events are not received here: set [audit] events_secret to enable POST /events",
        ));
    };
    // Compared in constant time.
    if !bool::from(bearer_token(request.headers()).ct_eq(secret.as_bytes())) {
        crate::metrics::metrics().registry_events_refused();
        let now = now();
        if LAST_REFUSAL_LOGGED.load(Ordering::Relaxed) + 60 <= now {
            LAST_REFUSAL_LOGGED.store(now, Ordering::Relaxed);
            tracing::warn!(%client, "POST /events without the right secret (is the registry's notifications header [audit] events_secret?)");
        }
        let mut response = ApiError::unauthorized(
            "POST /events needs Authorization: Bearer <[audit] events_secret> (the registry's notifications headers)",
        )
        .into_response();
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"portcullis-events\""));
        return Ok(response);
    }
    if let Some(media_type) =
        media_type(request.headers()).filter(|media_type| !MEDIA_TYPES.contains(&media_type.as_str()))
    {
        return Err(ApiError::unsupported_media_type(format!(
            "POST /events takes the registry's events JSON, not {}",
            crate::text::for_message(&media_type)
        )));
    }
    let body = read_limited(request, MAX_EVENTS_BODY, app.config.limits.body_timeout()).await?;
    let classified = crate::audit::events::classify(&body, now())
        .map_err(|error| ApiError::bad_request(format!("not a registry events envelope: {error}")))?;
    let (skipped, invalid) = (classified.skipped, classified.invalid);
    let received = classified.entries.len();
    let stored = blocking(&app.store, move |store| store.record_audit(&classified.entries, Some(STORE_WAIT)))
        .await
        .map_err(|error| {
            tracing::error!(%error, "registry events could not be stored; the registry will send them again");
            ApiError::unavailable("the events could not be stored now; send them again")
        })?;
    if invalid > 0 {
        tracing::warn!(invalid, "registry events that are not events were skipped");
    }
    tracing::debug!(stored, duplicates = received - stored, skipped, invalid, "registry events");
    crate::metrics::metrics().registry_events(stored, received - stored, skipped + invalid);
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "stored": stored, "duplicates": received - stored, "skipped": skipped, "invalid": invalid
        }),
    ))
}
