//! What one token request came to, filled in along the pipeline and recorded once it is
//! answered: the metrics count every answer, whichever step ended it (a form that could not be
//! read, a wrong password, a partial grant), by its flow, the kind of credential presented and
//! the outcome; with `[audit] decisions` set, the decision trail gets its line
//! ([`crate::audit::decisions`]). What only the trail needs is gathered only when it is on.

use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, RETRY_AFTER, USER_AGENT};
use hyper::{HeaderMap, Response, StatusCode};

use super::token_request::{Flow, Presented, TokenParameters};
use crate::audit::decisions::{DecisionLine, DecisionLog};
use crate::authz::explain::Refusal;
use crate::authz::scope::Scope;
use crate::metrics::{metrics, CredentialKind, FlowLabel, Outcome};
use crate::text::clip;

/// One token request, as far as it got.
#[derive(Debug)]
pub struct Decision {
    started: Instant,
    /// How it was asked for, once known (a POST's form says).
    pub flow: Option<Flow>,
    /// What the caller presented; refined to what proved them once authenticated.
    pub credential: CredentialKind,
    /// Set when a token was signed ([`Decision::granted`]): how much of what was asked for it
    /// holds.
    grant: Option<Outcome>,
    /// What the decision trail needs beyond the metrics; `None` while it is off.
    audit: Option<Box<AuditFacts>>,
}

/// The request as the decision trail records it.
#[derive(Debug, Default)]
struct AuditFacts {
    request_id: String,
    user_agent: String,
    principal: String,
    service: String,
    requested: Vec<Scope>,
    granted: Vec<Scope>,
    /// Each refused part of the request and why ([`crate::authz::explain`]).
    refusals: Vec<Refusal>,
    reason: Option<String>,
}

/// Longest user agent, principal and scope recorded, in bytes.
const MAX_RECORDED: usize = 300;

/// Scopes of one request recorded at most (real clients ask for one to three). With the clip
/// above this bounds a line, and so the memory refusal aggregation holds, whatever a client
/// sends.
const MAX_SCOPES_RECORDED: usize = 16;

impl Decision {
    /// A request that just arrived; a GET's flow is known at once.
    pub fn new(flow: Option<Flow>) -> Decision {
        Decision { started: Instant::now(), flow, credential: CredentialKind::none, grant: None, audit: None }
    }

    /// Gathers what the decision trail records from here on.
    pub fn start_audit(&mut self, headers: &HeaderMap, request_id: &HeaderValue) {
        let user_agent = headers
            .get(USER_AGENT)
            .map(|value| String::from_utf8_lossy(value.as_bytes()))
            .unwrap_or_default();
        self.audit = Some(Box::new(AuditFacts {
            request_id: String::from_utf8_lossy(request_id.as_bytes()).into_owned(),
            user_agent: clip(&user_agent, MAX_RECORDED).to_string(),
            ..AuditFacts::default()
        }));
    }

    /// The request's parameters are read: its service, scopes and the name it gave.
    pub fn asked(&mut self, parameters: &TokenParameters, presented: &Presented) {
        self.credential = match presented {
            Presented::Nothing => CredentialKind::anonymous,
            Presented::Password(_) => CredentialKind::password,
            Presented::RefreshToken(_) => CredentialKind::refresh_token,
        };
        if let Some(audit) = &mut self.audit {
            audit.service = clip(&parameters.service, MAX_RECORDED).to_string();
            audit.requested = parameters.scopes.clone();
            if let Presented::Password(credentials) = presented {
                audit.principal = clip(&credentials.username, MAX_RECORDED).to_string();
            }
        }
    }

    /// Whether the decision trail wants this request's details (refusal reasons cost a little
    /// to put in words, so they are made only then).
    pub fn is_audited(&self) -> bool {
        self.audit.is_some()
    }

    /// A token was signed for `principal` with `granted` of `requested`; `refusals` says why
    /// the rest was not (when [`Decision::is_audited`]).
    pub fn granted(
        &mut self,
        principal: &str,
        requested: &[Scope],
        granted: &[Scope],
        refusals: Vec<Refusal>,
    ) {
        self.grant = Some(grant_outcome(requested, granted));
        if let Some(audit) = &mut self.audit {
            audit.principal = principal.to_string();
            audit.granted = granted.to_vec();
            audit.refusals = refusals;
        }
    }

    /// The request was refused with `message` (what the client is told).
    pub fn refused_because(&mut self, message: &str) {
        if let Some(audit) = &mut self.audit {
            audit.reason.get_or_insert_with(|| message.to_string());
        }
    }

    /// Records the request from `client`, answered with `response`: in the metrics, and in
    /// `trail` when the decision trail is on.
    pub fn finish(self, response: &Response<Full<Bytes>>, trail: Option<&DecisionLog>, client: IpAddr) {
        let outcome = self.grant.unwrap_or_else(|| refusal(response));
        let flow = match self.flow {
            Some(Flow::Get) => FlowLabel::get,
            Some(Flow::PasswordGrant) => FlowLabel::password_grant,
            Some(Flow::RefreshGrant) => FlowLabel::refresh_grant,
            None => FlowLabel::unknown,
        };
        metrics().token_request(outcome, flow, self.credential, self.started.elapsed().as_secs_f64());
        let (Some(trail), Some(audit)) = (trail, self.audit) else { return };
        let refused = bounded(
            audit.refusals.into_iter(),
            |refusal| Refusal {
                scope: clip(&refusal.scope, MAX_RECORDED).to_string(),
                reason: clip(&refusal.reason, MAX_RECORDED).to_string(),
            },
            |more| Refusal { scope: format!("... {more} more"), reason: String::new() },
        );
        trail.record(DecisionLine {
            time: crate::text::rfc3339(crate::store::now()),
            request_id: audit.request_id,
            client,
            user_agent: audit.user_agent,
            principal: audit.principal,
            credential: self.credential.as_str(),
            flow: flow.as_str(),
            service: audit.service,
            requested: recorded(audit.requested.iter().map(Scope::to_string)),
            granted: recorded(audit.granted.iter().map(Scope::to_string)),
            refused,
            outcome: outcome.as_str(),
            status: response.status().as_u16(),
            reason: audit.reason,
            count: None,
        });
    }
}

/// A list as the trail records it: the first [`MAX_SCOPES_RECORDED`] items, each clipped, then
/// how many more there were.
fn recorded(items: impl ExactSizeIterator<Item = String>) -> Vec<String> {
    bounded(items, |item| clip(&item, MAX_RECORDED).to_string(), |more| format!("... {more} more"))
}

/// The first [`MAX_SCOPES_RECORDED`] of `items`, each made small by `clip`, then what `more`
/// makes of the number left out, if any: the one bound every list of a line obeys.
fn bounded<T>(
    items: impl ExactSizeIterator<Item = T>,
    clip: impl Fn(T) -> T,
    more: impl FnOnce(usize) -> T,
) -> Vec<T> {
    let total = items.len();
    let mut kept: Vec<T> = items.take(MAX_SCOPES_RECORDED).map(clip).collect();
    if total > MAX_SCOPES_RECORDED {
        kept.push(more(total - MAX_SCOPES_RECORDED));
    }
    kept
}

/// How much of the `requested` scopes a token holds: everything (a login asks for nothing),
/// some actions, or none. `granted` is a subset of `requested` (scopes are merged by resource).
fn grant_outcome(requested: &[Scope], granted: &[Scope]) -> Outcome {
    let actions = |scopes: &[Scope]| scopes.iter().map(|scope| scope.actions.len()).sum::<usize>();
    match (actions(requested), actions(granted)) {
        (0, _) => Outcome::granted,
        (_, 0) => Outcome::denied,
        (asked, given) if given >= asked => Outcome::granted,
        _ => Outcome::partially_granted,
    }
}

/// The outcome of a request answered without a token: 401 is a credential refused, a
/// `Retry-After` marks the throttle or the full hashing queue, anything else is an error.
fn refusal(response: &Response<Full<Bytes>>) -> Outcome {
    match response.status() {
        StatusCode::UNAUTHORIZED => Outcome::unauthorized,
        _ if response.headers().contains_key(RETRY_AFTER) => Outcome::throttled,
        _ => Outcome::error,
    }
}
