//! `POST /token`: OAuth2's password and refresh-token grants (distribution's `oauth.md`), and the
//! refresh tokens `offline_token=true` / `access_type=offline` ask for.
//!
//! containerd POSTs first with the password grant; docker POSTs the refresh grant with the
//! identity token it got at login. Both read the answer's `access_token`, so the answer is the
//! GET one plus OAuth2's `scope` string. Status codes follow what clients do with them:
//! containerd falls back to GET on 400, 401, 404 and 405 but gives up on 403 or 5xx, so every
//! client mistake here is a 400 or 401 (413 for an oversized body, 408 for one never finished).

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::body::{media_type, read_limited};
use super::decision::Decision;
use super::error::ApiError;
use super::token_request::{answer, parse_parameters, Flow, Presented, TokenParameters};
use super::App;
use crate::authn::basic::Credentials;
use crate::config::Config;
use crate::text::for_message;

/// An OAuth2 refusal: the registry's error JSON plus OAuth2's `error` code, which OAuth2
/// libraries read, and its `error_description`.
#[derive(Debug)]
pub struct OAuthError {
    pub api: ApiError,
    /// RFC 6749 section 5.2: `invalid_request`, `invalid_grant`, `unsupported_grant_type`, ...
    pub error: &'static str,
}

impl From<ApiError> for OAuthError {
    fn from(api: ApiError) -> Self {
        let error = match (api.status, api.code) {
            (StatusCode::UNAUTHORIZED, _) => "invalid_grant",
            (_, "NAME_INVALID") => "invalid_scope",
            (StatusCode::SERVICE_UNAVAILABLE, _) => "temporarily_unavailable",
            _ => "invalid_request",
        };
        OAuthError { api, error }
    }
}

impl OAuthError {
    fn unsupported_grant(message: String) -> Self {
        OAuthError { api: ApiError::bad_request(message), error: "unsupported_grant_type" }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        self.api.into_response_with(Some(self.error))
    }
}

/// `POST /token`. Always answers; refusals carry both error formats.
pub async fn post(
    app: &App,
    request: Request<Incoming>,
    client: IpAddr,
    decision: &mut Decision,
) -> Response<Full<Bytes>> {
    match handle(app, request, client, decision).await {
        Ok(response) => response,
        Err(error) => {
            decision.refused_because(&error.api.message);
            error.into_response()
        }
    }
}

async fn handle(
    app: &App,
    request: Request<Incoming>,
    client: IpAddr,
    decision: &mut Decision,
) -> Result<Response<Full<Bytes>>, OAuthError> {
    let body = read_body(app, request).await?;
    let form = parse_form(&app.config, &body)?;
    decision.flow = Some(form.flow);
    Ok(answer(app, &form.parameters, form.presented, form.flow, client, decision).await?)
}

/// A `POST /token` form, read: the grant, the request's parameters and what was presented.
#[derive(Debug)]
pub struct Form {
    pub flow: Flow,
    pub parameters: TokenParameters,
    pub presented: Presented,
}

/// Reads a `POST /token` body (an `application/x-www-form-urlencoded` form, already within the
/// size limit) into the grant and its fields, or the client's mistake. Pure: the fuzz target
/// `oauth_form` calls it with arbitrary bytes.
pub fn parse_form(config: &Config, body: &[u8]) -> Result<Form, OAuthError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let flow = match single(&pairs, "grant_type")? {
        Some("password") => Flow::PasswordGrant,
        Some("refresh_token") => Flow::RefreshGrant,
        Some(other) => {
            return Err(OAuthError::unsupported_grant(format!(
                "unsupported grant_type {:?}: use password or refresh_token",
                for_message(other)
            )))
        }
        None => return Err(ApiError::bad_request("missing grant_type (password or refresh_token)").into()),
    };
    let mut parameters = parse_parameters(config, &pairs)?;
    parameters.offline_token |= single(&pairs, "access_type")? == Some("offline");
    let presented = if flow == Flow::PasswordGrant {
        // User name and password (or a robot's name and secret, or a person's name and personal
        // access token) in the form.
        let username =
            single(&pairs, "username")?.ok_or_else(|| ApiError::bad_request("missing username"))?;
        let password =
            single(&pairs, "password")?.ok_or_else(|| ApiError::bad_request("missing password"))?;
        Presented::Password(Credentials { username: username.to_string(), password: password.to_string() })
    } else {
        // The token from an earlier offline answer.
        let token = single(&pairs, "refresh_token")?
            .filter(|token| !token.is_empty())
            .ok_or_else(|| ApiError::bad_request("missing refresh_token"))?;
        Presented::RefreshToken(token.to_string())
    };
    Ok(Form { flow, parameters, presented })
}

/// Reads the request body of an `application/x-www-form-urlencoded` form, within
/// `limits.max_body_bytes` and `limits.header_read_timeout`; [`parse_form`] reads the form.
async fn read_body(app: &App, request: Request<Incoming>) -> Result<Bytes, ApiError> {
    // Parameters such as `; charset=utf-8` (containerd sends it) are fine. Another type is a
    // 400, not a 415: containerd falls back to GET on 400 only.
    if media_type(request.headers())
        .is_some_and(|media_type| media_type != "application/x-www-form-urlencoded")
    {
        return Err(ApiError::bad_request("POST /token takes an application/x-www-form-urlencoded form"));
    }
    let limits = &app.config.limits;
    read_limited(request, limits.max_body_bytes, limits.body_timeout()).await
}

/// The value of a field that may appear once (or repeated with the same value).
fn single<'a>(pairs: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, ApiError> {
    let mut found: Option<&str> = None;
    for (key, value) in pairs.iter().filter(|(key, _)| key == name) {
        match found {
            Some(existing) if existing != value => {
                return Err(ApiError::bad_request(format!("conflicting {key} fields")));
            }
            _ => found = Some(value),
        }
    }
    Ok(found)
}
