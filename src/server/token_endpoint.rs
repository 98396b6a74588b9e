//! The realm: `GET /token?service=..&scope=..` with optional Basic credentials, and the steps
//! it shares with the OAuth2 `POST /token` ([`super::oauth`]).
//!
//! The request's path through this file is the protocol's: check the service, parse the scopes,
//! authenticate, look up roles, sign. Asking for more than one may have is not an error: the
//! answer holds the intersection and the registry enforces it.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{HeaderMap, Request, Response, StatusCode};

use super::error::{json_response, ApiError};
use super::App;
use crate::authn::basic::{parse_basic, Credentials};
use crate::authn::{AuthnError, Identity};
use crate::authz::authorize;
use crate::token::scope::{parse_scopes, ResourceType, Scope, ScopeError};

/// A token request's parameters, from the GET query or the OAuth2 form.
#[derive(Debug)]
pub struct TokenParameters {
    /// The audience, checked against the configured services.
    pub service: String,
    /// Merged requested scopes; empty for `docker login`, which asks for none.
    pub scopes: Vec<Scope>,
    /// `offline_token=true`: the client would like a refresh token.
    pub offline_token: bool,
    /// The client's name for itself (`docker`, `containerd-client`); recorded with refresh
    /// tokens so that `portcullis token list` tells them apart. Free-form, never checked.
    pub client_id: String,
}

/// `GET /token`.
pub async fn get(app: &App, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, ApiError> {
    let query = request.uri().query().unwrap_or("");
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let parameters = parse_parameters(app, &pairs)?;
    let credentials = credentials_from(request.headers())?;
    let identity = authenticate(app, credentials).await?;
    let refresh_token = match parameters.offline_token {
        true => super::oauth::issue_refresh_token(app, &identity, &parameters).await?,
        false => None,
    };
    respond(app, &identity, &parameters, refresh_token, Flow::Get).await
}

/// How a token was asked for: the answer's shape and the log line depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// `GET /token` with Basic credentials or none.
    Get,
    /// `POST /token`, `grant_type=password`.
    PasswordGrant,
    /// `POST /token`, `grant_type=refresh_token`.
    RefreshGrant,
}

/// Grants, signs and answers: the end of every token request, GET or POST. `refresh_token` goes
/// into the answer as given; OAuth2 answers also carry the granted scopes as `scope`.
pub async fn respond(
    app: &App,
    identity: &Identity,
    parameters: &TokenParameters,
    refresh_token: Option<String>,
    flow: Flow,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let granted = grant(app, identity, &parameters.scopes).await?;
    let mut answer =
        app.issuer.issue(&identity.subject().name, &parameters.service, &granted).map_err(|error| {
            tracing::error!(%error, "signing a token failed");
            ApiError::unavailable("could not sign the token")
        })?;
    answer.refresh_token = refresh_token;
    if flow != Flow::Get {
        answer.scope = Some(granted.iter().map(Scope::to_string).collect::<Vec<_>>().join(" "));
    }
    tracing::debug!(
        subject = %identity.subject().name,
        service = %parameters.service,
        granted = granted.len(),
        requested = parameters.scopes.len(),
        ?flow,
        "token issued"
    );
    Ok(json_response(StatusCode::OK, &answer))
}

/// Reads `service`, `scope` (repeated, each possibly space-separated) and `offline_token` from
/// decoded name/value pairs. Unknown parameters (`account`, `client_id`) are hints and ignored.
pub fn parse_parameters(app: &App, pairs: &[(String, String)]) -> Result<TokenParameters, ApiError> {
    let mut service: Option<&str> = None;
    let mut scope_values = Vec::new();
    let mut offline_token = false;
    let mut client_id = String::new();
    for (name, value) in pairs {
        match name.as_str() {
            "service" => match service {
                Some(existing) if existing != value => {
                    return Err(ApiError::bad_request("conflicting service parameters"));
                }
                _ => service = Some(value),
            },
            "scope" => scope_values.push(value.as_str()),
            "offline_token" => offline_token = value.eq_ignore_ascii_case("true"),
            "client_id" => client_id = truncate(value).to_string(),
            _ => {}
        }
    }
    let service = match service {
        None | Some("") => return Err(ApiError::bad_request("missing service parameter")),
        Some(service) if !app.config.token.services.iter().any(|s| s == service) => {
            return Err(ApiError::bad_request(format!(
                "unknown service {:?}: this token server issues tokens for {}",
                truncate(service),
                app.config.token.services.join(", ")
            )));
        }
        Some(service) => service.to_string(),
    };
    let scopes = parse_scopes(scope_values, app.config.limits.max_scopes).map_err(|error| match error {
        ScopeError::InvalidName(_) => ApiError::name_invalid(error.to_string()),
        _ => ApiError::bad_request(error.to_string()),
    })?;
    Ok(TokenParameters { service, scopes, offline_token, client_id })
}

/// Basic credentials, if the request carries an `Authorization` header. A header that is there
/// but unreadable is an error, not an anonymous request.
pub fn credentials_from(headers: &HeaderMap) -> Result<Option<Credentials>, ApiError> {
    match headers.get(AUTHORIZATION) {
        None => Ok(None),
        Some(value) => {
            parse_basic(value.as_bytes()).map(Some).map_err(|e| ApiError::bad_request(e.to_string()))
        }
    }
}

/// Authenticates, mapping failures to the status clients expect.
pub async fn authenticate(app: &App, credentials: Option<Credentials>) -> Result<Identity, ApiError> {
    let name = credentials.as_ref().map(|c| c.username.clone());
    app.authenticator.authenticate(credentials).await.map_err(|error| match error {
        AuthnError::InvalidCredentials => {
            tracing::info!(user = name.as_deref().unwrap_or(""), "authentication failed");
            ApiError::unauthorized(error.to_string())
        }
        AuthnError::Store(error) => {
            tracing::error!(%error, "user lookup failed");
            ApiError::unavailable("the user database is unavailable")
        }
        // Logged with the directory's URL where it happened.
        AuthnError::Directory(_) => {
            ApiError::unavailable("the user directory (LDAP) is unavailable; try again later")
        }
    })
}

/// What `identity` may have of `requested`, with roles from the in-memory snapshot, brought up
/// to date first: a change the CLI made a moment ago applies, and so do the groups a directory
/// login recorded while authenticating this very request.
pub async fn grant(app: &App, identity: &Identity, requested: &[Scope]) -> Result<Vec<Scope>, ApiError> {
    let asks_for_a_project = requested.iter().any(|scope| scope.resource_type == ResourceType::Repository);
    if asks_for_a_project {
        app.access.refresh().await.map_err(|error| {
            tracing::error!(%error, "role lookup failed");
            ApiError::unavailable("the project database is unavailable")
        })?;
    }
    let user_id = identity.user_id();
    let snapshot = app.access.read();
    Ok(authorize(&identity.subject(), requested, |project| snapshot.project_access(project, user_id)))
}

fn truncate(text: &str) -> &str {
    let mut end = text.len().min(80);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
