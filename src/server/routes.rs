//! Routing: `/token` is the realm (GET, and POST for OAuth2), paced for addresses whose requests
//! keep being refused ([`super::pacing`]); `/healthz` and `/readyz` answer probes
//! ([`super::health`]); `POST /events` takes the registry's notifications ([`super::events`]);
//! `/.well-known/jwks.json` serves the trusted signing keys for tools that fetch them;
//! `/metrics` serves the metrics unless `[metrics] listen` moves them to
//! an address of their own ([`super::metrics_listener`]); everything else is 404.

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::client::{client_address, is_trusted};
use super::decision::Decision;
use super::error::ApiError;
use super::token_request::Flow;
use super::{events, get_token, health, oauth, App};

/// Answers one request that arrived from `peer`.
pub async fn route(
    app: &App,
    request: Request<Incoming>,
    peer: IpAddr,
    request_id: &hyper::header::HeaderValue,
) -> Response<Full<Bytes>> {
    let limit = app.config.limits.max_uri_bytes;
    let target_len = request.uri().path_and_query().map(|p| p.as_str().len()).unwrap_or(0);
    if target_len > limit {
        return ApiError::uri_too_long(limit).into_response();
    }
    let client = client_address(peer, request.headers(), &app.trusted_proxies, app.config.forwarded_header);
    // A trusted proxy named as the client (it forwarded no address) carries everyone behind it.
    let request_path_is_token = request.uri().path() == "/token";
    let is_token = request_path_is_token && !is_trusted(client, &app.trusted_proxies);
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
    let mut decision = Decision::new((request.method() == Method::GET).then_some(Flow::Get));
    if request_path_is_token && app.decisions.is_some() {
        decision.start_audit(request.headers(), request_id);
    }
    let result = match (request.method(), request.uri().path()) {
        // Boxed: the token pipeline's future is several kilobytes, and every future around it
        // would otherwise grow by as much and be copied whole each time it moves (callgrind
        // showed memcpy as the largest cost of a warm token).
        (&Method::GET, "/token") => Box::pin(get_token::get(app, request, client, &mut decision)).await,
        (&Method::POST, "/token") => Ok(Box::pin(oauth::post(app, request, client, &mut decision)).await),
        (_, "/token") => Err(ApiError::method_not_allowed("the token endpoint accepts GET and POST")),
        (&Method::POST, "/events") => events::receive(app, request, client).await,
        (_, "/events") => {
            Err(ApiError::method_not_allowed("the registry posts its notifications to /events"))
        }
        (&Method::GET, "/.well-known/jwks.json") => match super::token_request::current_keys(app).await {
            Ok(keys) => Ok(super::error::json_response(hyper::StatusCode::OK, &keys.jwks())),
            Err(error) => Err(error),
        },
        (&Method::GET, "/healthz") => Ok(health::live()),
        (&Method::GET, "/readyz") => Ok(Box::pin(health::ready(app)).await),
        (&Method::GET, "/metrics") if app.config.metrics.listen.is_none() => Ok(metrics_text()),
        _ => Err(ApiError::not_found("no such endpoint; the token realm is /token")),
    };
    let response = result.unwrap_or_else(|error| {
        decision.refused_because(&error.message);
        error.into_response()
    });
    if request_path_is_token {
        decision.finish(&response, app.decisions.as_deref(), client);
    }
    if is_token {
        app.pacing.record(client, response.status(), anonymous);
    }
    response
}

/// `GET /metrics`: every metric, as Prometheus scrapes it.
pub fn metrics_text() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(crate::metrics::metrics().encode())));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    response
}
