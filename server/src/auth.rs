//! Authentication, rate limits and usage: keygate's own [`KeygateLayer`](keygate::axum::KeygateLayer)
//! wraps each supported method's handler (a `MethodRouter::route_layer`, which leaves out the
//! 405 fallback): 401 (with `WWW-Authenticate: Bearer`) for a missing or bad key, 429 over the
//! key's rate limit (in Redis with `--redis`), then the handler, with the key as keygate's
//! [`Caller`](keygate::axum::Caller), no copy of it; and the request counted in the key's usage
//! under its route and method. So an unsupported or made-up method is neither limited nor
//! counted, and the usage map holds only real endpoints; the 405 fallback authenticates by
//! itself ([`crate::reply::method_not_allowed`]), so a bad key is a 401 there too.
//!
//! Handlers decide with [`App::check`] (403/404). The request's log span (see
//! [`crate::telemetry`]) gets the key id and the decision; never the token.

use keygate::axum::ApiError;
use keygate::{AccountId, Action, AuthenticatedKey, Decision, ProjectId, Resource};
use tracing::Span;
use tracing::field::display;

use crate::state::App;

/// The prefix every route is nested under.
pub(crate) const API_PREFIX: &str = "/api/v1/public";

impl App {
    /// `authorize` for this request as a handler-ready result, with the decision in the log.
    /// The request's client address (which the layer put on `key`) reaches the decision here,
    /// so a key restricted to address ranges is decided from where the request came from.
    pub(crate) fn check(
        &self,
        key: &AuthenticatedKey,
        action: Action,
        resource: Resource,
    ) -> Result<(), ApiError> {
        match self.decide(key, action, &key.with_address(&resource)) {
            Decision::Allow => {
                Span::current().record("decision", "allow");
                Ok(())
            }
            Decision::Deny(deny) => {
                Span::current().record("decision", display(deny));
                Err(ApiError::deny(deny, &self.catalog))
            }
        }
    }
}

/// A resource inside project `id` of `account`.
pub(crate) fn project_resource(account: AccountId, id: u64) -> Resource {
    Resource::in_project(account, ProjectId::from_u64(id))
}
