//! A token request, whichever way it came (`GET /token`, OAuth2's password or refresh grant):
//! the one pipeline every answer goes through. The adapters ([`super::get_token`],
//! [`super::oauth`]) only read their inputs into [`TokenParameters`] and [`Presented`].
//!
//! The path is the protocol's: check the service and parse the scopes, authenticate (or redeem a
//! refresh token), issue a refresh token if one was asked for, look up roles, sign. Asking for
//! more than one may have is not an error: the answer holds the intersection and the registry
//! enforces it.

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use super::decision::Decision;
use super::error::{json_response, ApiError};
use super::App;
use crate::access::AccessSnapshot;
use crate::authn::basic::Credentials;
use crate::authn::{refresh, Attempt, AuthnError, Identity, Unusable};
use crate::authz::explain::Refusal;
use crate::authz::scope::{parse_scopes, Scope, ScopeError};
use crate::authz::{authorize, Subject};
use crate::config::Config;
use crate::metrics::CredentialKind;
use crate::store::blocking;
use crate::text::{clip, for_message};

/// A token request's parameters, from the GET query or the OAuth2 form.
#[derive(Debug)]
pub struct TokenParameters {
    /// The audience, checked against the configured services.
    pub service: String,
    /// Merged requested scopes; empty for `docker login`, which asks for none.
    pub scopes: Vec<Scope>,
    /// `offline_token=true` (or OAuth2's `access_type=offline`): the client would like a refresh
    /// token.
    pub offline_token: bool,
    /// The client's name for itself (`docker`, `containerd-client`); recorded with refresh
    /// tokens so that `portcullis refresh-token list` tells them apart. Free-form, never checked.
    pub client_id: String,
}

/// What the client presented to prove who it is.
#[derive(Debug)]
pub enum Presented {
    /// Nothing: anonymous.
    Nothing,
    /// A name and a password, robot secret or personal access token (Basic, or the password
    /// grant's form).
    Password(Credentials),
    /// The refresh token of an earlier offline answer (the refresh grant).
    RefreshToken(String),
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

/// How long `client_id` may be when stored.
const MAX_CLIENT_ID: usize = 80;

/// Reads `service`, `scope` (repeated, each possibly space-separated), `offline_token` and
/// `client_id` from decoded name/value pairs. Other parameters (`account`) are hints and ignored.
pub fn parse_parameters(config: &Config, pairs: &[(String, String)]) -> Result<TokenParameters, ApiError> {
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
            "client_id" => client_id = clip(value, MAX_CLIENT_ID).to_string(),
            _ => {}
        }
    }
    let service = match service {
        None | Some("") => return Err(ApiError::bad_request("missing service parameter")),
        Some(service) if !config.token.services.iter().any(|s| s == service) => {
            return Err(ApiError::bad_request(format!(
                "unknown service {:?}: this token server issues tokens for {}",
                for_message(service),
                config.token.services.join(", ")
            )));
        }
        Some(service) => service.to_string(),
    };
    let scopes = parse_scopes(scope_values, config.limits.max_scopes).map_err(|error| match error {
        ScopeError::InvalidName(_) => ApiError::name_invalid(error.to_string()),
        _ => ApiError::bad_request(error.to_string()),
    })?;
    Ok(TokenParameters { service, scopes, offline_token, client_id })
}

/// Answers a token request: who is asking, a refresh token if one was asked for, what they may
/// have, signed. `refresh_token` goes into the answer as given; OAuth2 answers also carry the
/// granted scopes as `scope`.
pub async fn answer(
    app: &App,
    parameters: &TokenParameters,
    presented: Presented,
    flow: Flow,
    client: IpAddr,
    decision: &mut Decision,
) -> Result<Response<Full<Bytes>>, ApiError> {
    // A refusal's reason is taken where the error becomes the answer (routes, oauth).
    decision.asked(parameters, &presented);
    let (identity, refresh_token) = match presented {
        Presented::Nothing => (Identity::Anonymous, None),
        Presented::Password(credentials) => {
            let (identity, credential) = authenticate(app, credentials, client).await?;
            decision.credential = credential;
            let refresh_token = match parameters.offline_token {
                true => issue_refresh_token(app, &identity, parameters).await?,
                false => None,
            };
            (identity, refresh_token)
        }
        // Answered with the same token: docker keeps the first one and ignores a new one.
        Presented::RefreshToken(token) => (redeem_refresh_token(app, &token, parameters).await?, Some(token)),
    };
    let (granted, refusals) = grant(app, &identity, &parameters.scopes, decision.is_audited()).await?;
    // `grant` brought the snapshot up to date.
    let key = taken_up_keys(app).await?.current().clone();
    let mut answer =
        app.issuer.issue(&key, identity.name(), &parameters.service, &granted).map_err(|error| {
            tracing::error!(%error, "signing a token failed");
            ApiError::unavailable("could not sign the token")
        })?;
    answer.refresh_token = refresh_token;
    decision.granted(identity.name(), &parameters.scopes, &granted, refusals);
    if flow != Flow::Get {
        answer.scope = Some(granted.iter().map(Scope::to_string).collect::<Vec<_>>().join(" "));
    }
    tracing::debug!(
        subject = %identity.name(),
        service = %parameters.service,
        granted = granted.len(),
        requested = parameters.scopes.len(),
        ?flow,
        "token issued"
    );
    Ok(json_response(StatusCode::OK, &answer))
}

/// Authenticates a name and secret; refusals are logged with the (clipped) name.
async fn authenticate(
    app: &App,
    credentials: Credentials,
    client: IpAddr,
) -> Result<(Identity, CredentialKind), ApiError> {
    let attempt = Attempt { credentials, client };
    let (identity, credential) = app.authenticator.authenticate(Some(attempt), &app.access).await?;
    // A password change matters to identity tokens only; a password or personal token that
    // just authenticated is not one.
    revalidate(app, &identity).await?;
    Ok((identity, credential))
}

/// `identity`, once the directory was asked again whether it still vouches for a directory user
/// whose credential it did not see (a personal token, an identity token): offboarding in the
/// directory reaches those too. `true` when a password change revoked identity tokens.
async fn revalidate(app: &App, identity: &Identity) -> Result<bool, ApiError> {
    Ok(app.authenticator.revalidate(identity, &app.access).await?)
}

/// The person a refresh token stands for.
async fn redeem_refresh_token(
    app: &App,
    token: &str,
    parameters: &TokenParameters,
) -> Result<Identity, ApiError> {
    let lifetimes = refresh::Lifetimes::from(&app.config.refresh_tokens);
    let redeem = || {
        let (token, service) = (token.to_string(), parameters.service.clone());
        blocking(&app.store, move |store| {
            refresh::redeem(store, &token, &service, lifetimes, crate::store::now())
        })
    };
    let refused = || {
        tracing::info!(service = %parameters.service, "refresh token refused");
        ApiError::unauthorized(
            "invalid refresh token: it was revoked or has expired, or the account changed; log in again",
        )
    };
    let identity = redeem().await?.ok_or_else(refused)?;
    // A password change in the directory revoked the tokens made before it: this one too?
    if revalidate(app, &identity).await? {
        redeem().await?.ok_or_else(refused)?;
    }
    Ok(identity)
}

/// A refresh token for a person who asked for one. Robots and personal access tokens get none:
/// their own secret is already the revocable credential to store, and a refresh token would
/// have to carry their limits. Anonymous callers have nothing to refresh.
async fn issue_refresh_token(
    app: &App,
    identity: &Identity,
    parameters: &TokenParameters,
) -> Result<Option<String>, ApiError> {
    let Identity::User { id, .. } = identity else { return Ok(None) };
    if !app.refresh_issuance.allow(*id, crate::store::now()) {
        tracing::info!(user = %identity.name(), "refresh token not issued: too many for this user in the last minute");
        return Ok(None);
    }
    let lifetimes = refresh::Lifetimes::from(&app.config.refresh_tokens);
    let (user_id, service, client_id) = (*id, parameters.service.clone(), parameters.client_id.clone());
    let token = blocking(&app.store, move |store| {
        refresh::issue(store, user_id, &service, &client_id, lifetimes, crate::store::now())
    })
    .await?;
    Ok(Some(token))
}

/// The keys as stored now: the snapshot brought up to date, then [`taken_up_keys`]
/// (`/.well-known/jwks.json` shows a prepared key at once).
pub async fn current_keys(app: &App) -> Result<std::sync::Arc<crate::token::key_set::KeySet>, ApiError> {
    app.access.refresh().await?;
    taken_up_keys(app).await
}

/// The keyring's set, after it took up any key change the snapshot has seen, so that a key
/// promoted before the snapshot's last refresh signs: one atomic load when nothing changed.
async fn taken_up_keys(app: &App) -> Result<std::sync::Arc<crate::token::key_set::KeySet>, ApiError> {
    let generation = app.access.read().key_generation();
    if !app.keyring.is_at(generation) {
        let keyring = app.keyring.clone();
        crate::store::blocking(&app.store, move |store| {
            keyring.follow(store, generation);
            Ok(())
        })
        .await?;
    }
    if app.keyring.is_withdrawn() {
        return Err(ApiError::unavailable(
            "the signing key was withdrawn and this server cannot use the new one yet; see its log",
        ));
    }
    Ok(app.keyring.set())
}

/// What `identity` may have of `requested`, with account facts and roles from the in-memory
/// snapshot, brought up to date first: a change the CLI made a moment ago applies, and so do the
/// groups a directory login recorded while authenticating this very request. An identity whose
/// account was disabled or removed meanwhile (say, during a long wait for a password verifier)
/// gets 401, as its credentials would now. With `explain`, also why each refused part was.
async fn grant(
    app: &App,
    identity: &Identity,
    requested: &[Scope],
    explain: bool,
) -> Result<(Vec<Scope>, Vec<Refusal>), ApiError> {
    app.access.refresh().await?;
    let snapshot = app.access.read();
    let decided = decide(&snapshot, identity, requested, crate::store::now(), explain).map_err(|why| {
        tracing::info!(user = %identity.name(), %why, "credentials no longer usable");
        ApiError::from(AuthnError::InvalidCredentials)
    })?;
    Ok((decided.granted, decided.refusals))
}

/// What one identity gets of the scopes it asked for.
#[derive(Debug)]
pub struct Decided {
    /// The identity as authorization saw it (admin, ceiling).
    pub subject: Subject,
    pub granted: Vec<Scope>,
    /// Why each refused part was refused; empty unless asked for.
    pub refusals: Vec<Refusal>,
}

/// What `identity` gets of `requested` by the account facts of `snapshot` at `now` (`Err`: it
/// may have no token at all), and with `explain` why each refused part was refused: the decision
/// the token endpoint signs, and the one `portcullis access check` prints.
pub fn decide(
    snapshot: &AccessSnapshot,
    identity: &Identity,
    requested: &[Scope],
    now: i64,
    explain: bool,
) -> Result<Decided, Unusable> {
    let subject = identity.subject(snapshot, now)?;
    let user_id = identity.user_id();
    let lookup = |project: &str| snapshot.project_access(project, user_id);
    let granted = authorize(&subject, requested, lookup);
    let refusals = match explain {
        true => crate::authz::explain::refusals(&subject, requested, &granted, lookup),
        false => Vec::new(),
    };
    Ok(Decided { subject, granted, refusals })
}
