//! Request bodies: read whole within a size limit and a time limit, so that a client cannot
//! hold memory or a connection with a body that is too large or never finishes. `POST /token`
//! (a form) and `POST /events` (the registry's JSON) read theirs here.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::Request;

use super::error::ApiError;

/// The request's media type without parameters (`; charset=utf-8`), lower-cased; `None` when
/// no Content-Type was sent.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?;
    let text = value.to_str().unwrap_or("");
    Some(text.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

/// The whole body: 413 past `limit` bytes (declared or sent), 408 when it has not arrived within
/// `timeout`, 400 when the connection broke.
pub async fn read_limited(
    request: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared = request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    let body = Limited::new(request.into_body(), limit);
    match tokio::time::timeout(timeout, body.collect()).await {
        Err(_) => Err(ApiError::request_timeout(timeout.as_secs())),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::payload_too_large(limit))
        }
        Ok(Err(_)) => Err(ApiError::bad_request("the request body could not be read")),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}
