//! `POST /events`: the registry's notifications, stored in the audit log
//! ([`crate::audit::events`] decides what is kept).
//!
//! The registry authenticates with the shared secret of `[audit] events_secret`, sent as
//! `Authorization: Bearer <secret>` because the registry's `notifications.endpoints[].headers`
//! says so; compared in constant time. Answers: 200 once stored (the registry then drops the
//! batch), 401 for a wrong or missing secret, 400/413/415 for a body that can never be stored,
//! 503 when the database cannot take it (the registry keeps the batch and retries), 404 when no
//! secret is configured.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Request, Response, StatusCode};
use subtle::ConstantTimeEq;

use super::body::{media_type, read_limited};
use super::error::{json_response, ApiError};
use super::App;
use crate::store::{blocking, now};

/// The largest notification body accepted. The registry sends a batch per `threshold` events,
/// each under a kilobyte; a megabyte is far above any real batch.
const MAX_EVENTS_BODY: usize = 1024 * 1024;

/// The media types a notification may carry: 2.8's, 3.x's, and plain JSON for tools.
const MEDIA_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.events.v1+json",
    "application/vnd.docker.distribution.events.v2+json",
    "application/json",
];

/// Stores the notifications in `request`.
pub async fn receive(app: &App, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, ApiError> {
    let Some(secret) = app.events_secret.as_deref() else {
        return Err(ApiError::not_found(
            "registry events are not received here: set [audit] events_secret to enable POST /events",
        ));
    };
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    if !bool::from(presented.ct_eq(secret.as_bytes())) {
        return Err(ApiError::unauthorized(
            "POST /events needs Authorization: Bearer <[audit] events_secret> (the registry's notifications headers)",
        ));
    }
    if let Some(media_type) =
        media_type(request.headers()).filter(|media_type| !MEDIA_TYPES.contains(&media_type.as_str()))
    {
        return Err(ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "UNSUPPORTED",
            message: format!(
                "POST /events takes the registry's events JSON, not {}",
                crate::text::for_message(&media_type)
            ),
            retry_after: None,
        });
    }
    let body = read_limited(request, MAX_EVENTS_BODY, app.config.limits.body_timeout()).await?;
    let sorted = crate::audit::events::sort(&body, now())
        .map_err(|error| ApiError::bad_request(format!("not a registry events envelope: {error}")))?;
    let skipped = sorted.skipped;
    let received = sorted.entries.len();
    let stored =
        blocking(&app.store, move |store| store.record_audit(&sorted.entries)).await.map_err(|error| {
            tracing::error!(%error, "registry events could not be stored; the registry will send them again");
            ApiError::unavailable("the events could not be stored now; send them again")
        })?;
    tracing::debug!(stored, duplicates = received - stored, skipped, "registry events");
    crate::metrics::metrics().registry_events(stored, received - stored, skipped);
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "stored": stored, "duplicates": received - stored, "skipped": skipped }),
    ))
}
