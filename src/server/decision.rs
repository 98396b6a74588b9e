//! What one token request came to, filled in along the pipeline and recorded once it is
//! answered: the metrics count every answer, whichever step ended it (a form that could not be
//! read, a wrong password, a partial grant), by its flow, the kind of credential presented and
//! the outcome.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::RETRY_AFTER;
use hyper::{Response, StatusCode};

use super::token_request::Flow;
use crate::authz::scope::Scope;
use crate::metrics::{metrics, CredentialKind, FlowLabel, Outcome};

/// One token request, as far as it got.
#[derive(Debug)]
pub struct Decision {
    started: Instant,
    /// How it was asked for, once known (a POST's form says).
    pub flow: Option<Flow>,
    /// What the caller presented; refined to what proved them once authenticated.
    pub credential: CredentialKind,
    /// Set when a token was signed: how much of what was asked for it holds.
    pub granted: Option<Outcome>,
}

impl Decision {
    /// A request that just arrived; a GET's flow is known at once.
    pub fn new(flow: Option<Flow>) -> Decision {
        Decision { started: Instant::now(), flow, credential: CredentialKind::none, granted: None }
    }

    /// Records the request answered with `response`.
    pub fn finish(&self, response: &Response<Full<Bytes>>) {
        let outcome = self.granted.unwrap_or_else(|| refusal(response));
        let flow = match self.flow {
            Some(Flow::Get) => FlowLabel::get,
            Some(Flow::PasswordGrant) => FlowLabel::password_grant,
            Some(Flow::RefreshGrant) => FlowLabel::refresh_grant,
            None => FlowLabel::unknown,
        };
        metrics().token_request(outcome, flow, self.credential, self.started.elapsed().as_secs_f64());
    }
}

/// How much of the `requested` scopes a token holds: everything (a login asks for nothing),
/// some actions, or none. `granted` is a subset of `requested` (scopes are merged by resource).
pub fn grant_outcome(requested: &[Scope], granted: &[Scope]) -> Outcome {
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
