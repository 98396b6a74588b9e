//! Routing: `/token` is the realm (GET, and POST for OAuth2), paced for addresses whose requests
//! keep being refused ([`super::pacing`]); `/healthz` and `/readyz` answer probes
//! ([`super::health`]); everything else is 404.

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::client::{client_address, is_trusted};
use super::error::ApiError;
use super::{get_token, health, oauth, App};

/// Answers one request that arrived from `peer`.
pub async fn route(app: &App, request: Request<Incoming>, peer: IpAddr) -> Response<Full<Bytes>> {
    let limit = app.config.limits.max_uri_bytes;
    let target_len = request.uri().path_and_query().map(|p| p.as_str().len()).unwrap_or(0);
    if target_len > limit {
        return ApiError::uri_too_long(limit).into_response();
    }
    let client = client_address(peer, request.headers(), &app.trusted_proxies, app.config.forwarded_header);
    // A trusted proxy named as the client (it forwarded no address) carries everyone behind it.
    let is_token = request.uri().path() == "/token" && !is_trusted(client, &app.trusted_proxies);
    // A GET without credentials; a POST carries its credentials in the form.
    let anonymous =
        request.method() == Method::GET && !request.headers().contains_key(hyper::header::AUTHORIZATION);
    if is_token {
        // An address whose requests keep being refused is answered at a slower pace.
        let delay = app.pacing.delay_for(client);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    let result = match (request.method(), request.uri().path()) {
        (&Method::GET, "/token") => get_token::get(app, request, client).await,
        (&Method::POST, "/token") => Ok(oauth::post(app, request, client).await),
        (_, "/token") => Err(ApiError::method_not_allowed("the token endpoint accepts GET and POST")),
        (&Method::GET, "/healthz") => Ok(health::live()),
        (&Method::GET, "/readyz") => Ok(health::ready(app).await),
        _ => Err(ApiError::not_found("no such endpoint; the token realm is /token")),
    };
    let response = result.unwrap_or_else(ApiError::into_response);
    if is_token {
        app.pacing.record(client, response.status(), anonymous);
    }
    response
}
