//! Every refusal the token endpoint sends, in the registry's error JSON.
//!
//! Clients print the `message` of the first error (docker shows `unauthorized: <message>`), so
//! messages say what to fix. Status codes follow what clients do with them: 401 for credentials
//! (containerd then falls back to GET), 400 for malformed requests, never 403 or 5xx for a
//! client's mistake (containerd treats those as fatal). A fault of ours (the database, the
//! password verifiers, the directory) is always 503 `UNAVAILABLE`, never 401: the `From`
//! conversions at the end of this file are the one place internal failures are mapped.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};

use crate::authn::AuthnError;
use crate::store::StoreError;

/// A refusal: status, registry error code and a message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// A distribution errcode (`UNAUTHORIZED`, `UNSUPPORTED`, `NAME_INVALID`, `UNAVAILABLE`, ...).
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header: when a 429 or 503 may be tried again.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    /// Bad credentials. Never downgraded to anonymous.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    /// A malformed or unsupported request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "UNSUPPORTED", message)
    }

    /// A scope naming a repository the registry could never hold.
    pub fn name_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "NAME_INVALID", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "UNSUPPORTED", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", message)
    }

    pub fn uri_too_long(limit: usize) -> Self {
        Self::new(
            StatusCode::URI_TOO_LONG,
            "UNSUPPORTED",
            format!("request target longer than {limit} bytes"),
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "UNSUPPORTED",
            format!("request body larger than {limit} bytes"),
        )
    }

    /// A body that did not arrive within `seconds`.
    pub fn request_timeout(seconds: u64) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "UNSUPPORTED",
            format!("the request body did not arrive within {seconds} s"),
        )
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED", message)
    }

    /// Our own fault (database unreachable, signing failed). Logged where it happens; the client
    /// learns only that it may retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        self.into_response_with(None)
    }

    /// The registry's error JSON; with `oauth_error`, also OAuth2's `error` code (which OAuth2
    /// libraries read) and `error_description` (RFC 6749 section 5.2).
    pub fn into_response_with(self, oauth_error: Option<&'static str>) -> Response<Full<Bytes>> {
        let mut body = serde_json::json!({
            "errors": [{ "code": self.code, "message": self.message, "detail": null }]
        });
        if let Some(error) = oauth_error {
            body["error"] = error.into();
            body["error_description"] = self.message.clone().into();
        }
        let mut response = json_response(self.status, &body);
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"portcullis\""));
        }
        response
    }
}

/// A JSON response with the right content type.
pub fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Bearer and refresh tokens must not be kept by any cache on the way (RFC 6749 section 5.1).
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

impl From<StoreError> for ApiError {
    /// Whatever the store could not do, the client could not have caused: logged, then 503.
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "database failure");
        ApiError::unavailable("the user database is unavailable; try again later")
    }
}

impl From<AuthnError> for ApiError {
    fn from(error: AuthnError) -> Self {
        match error {
            AuthnError::InvalidCredentials => ApiError::unauthorized(error.to_string()),
            AuthnError::Store(error) => error.into(),
            // Logged with the directory's URL where it happened.
            AuthnError::Directory(_) => {
                ApiError::unavailable("the user directory (LDAP) is unavailable; try again later")
            }
            AuthnError::Verifier(error) => {
                tracing::error!(%error, "password verification failed");
                ApiError::unavailable("password verification is unavailable; try again later")
            }
            AuthnError::Busy => ApiError {
                retry_after: Some(1),
                ..ApiError::unavailable("too many logins are waiting to be checked; try again shortly")
            },
            AuthnError::Throttled { retry_after } => {
                let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                ApiError {
                    retry_after: Some(seconds),
                    ..ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "TOOMANYREQUESTS",
                        format!("too many failed logins for this account from this address; try again in {seconds} s"),
                    )
                }
            }
        }
    }
}
