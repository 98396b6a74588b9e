//! `GET /token?service=..&scope=..`, the registry's realm, with optional Basic credentials: reads
//! the query and the `Authorization` header, then hands over to [`super::token_request`].

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{HeaderMap, Request, Response};

use super::decision::Decision;
use super::error::ApiError;
use super::token_request::{answer, parse_parameters, Flow, Presented};
use super::App;
use crate::authn::basic::parse_basic;

pub async fn get(
    app: &App,
    request: Request<Incoming>,
    client: IpAddr,
    decision: &mut Decision,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let query = request.uri().query().unwrap_or("");
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let parameters = parse_parameters(&app.config, &pairs)?;
    let presented = presented(request.headers())?;
    answer(app, &parameters, presented, Flow::Get, client, decision).await
}

/// Basic credentials, if the request carries an `Authorization` header. A header that is there
/// but unreadable is an error, not an anonymous request.
fn presented(headers: &HeaderMap) -> Result<Presented, ApiError> {
    match headers.get(AUTHORIZATION) {
        None => Ok(Presented::Nothing),
        Some(value) => parse_basic(value.as_bytes())
            .map(Presented::Password)
            .map_err(|error| ApiError::bad_request(error.to_string())),
    }
}
