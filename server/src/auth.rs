//! The auth layer, in two middlewares:
//!
//! - [`authenticate`] wraps every route, supported method or not: 401 (with
//!   `WWW-Authenticate: Bearer`, added by the JSON error layer) for a missing or bad key, else
//!   the key goes into the request's extensions, where keygate's [`Authenticated`] extractor
//!   finds it.
//! - [`meter`] wraps each supported method's handler only (a `MethodRouter::route_layer`, which
//!   leaves out the 405 fallback): the key's rate limit (429), then its usage under the route
//!   and method. So an unsupported or made-up method is neither limited nor counted, and the
//!   usage map holds only real endpoints.
//!
//! Handlers decide with [`App::check`] (403/404). The request's log span (see
//! [`crate::telemetry`]) gets the key id and the decision reason; never the token.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keygate::axum::{ApiError, Authenticated, KeyLookup, bearer_token};
use keygate::{AccountId, Action, ApiKey, Decision, ProjectId, Resource};
use tracing::Span;
use tracing::field::display;

use crate::state::{App, AppState, now};

/// The prefix every route is nested under.
pub(crate) const API_PREFIX: &str = "/api/v1/public";

/// Runs before every route: 401 for a missing or bad key, else hands the key on.
pub(crate) async fn authenticate(
    State(app): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let span = Span::current();
    let key = match bearer_token(request.headers()) {
        None => {
            span.record("decision", "no bearer token");
            return ApiError::unauthorized().into_response();
        }
        Some(token) => match app.authenticate(token, now()) {
            Ok(key) => key,
            Err(deny) => {
                span.record("decision", display(deny));
                return ApiError::unauthorized().into_response();
            }
        },
    };
    span.record("key_id", display(key.id()));
    request.extensions_mut().insert(Authenticated(key));
    next.run(request).await
}

/// Runs before each supported method's handler: 429 over the key's rate limit, then records
/// the request in the key's usage under its route template (`GET /projects/{id}`).
pub(crate) async fn meter(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let Some(id) = request
        .extensions()
        .get::<Authenticated>()
        .map(|Authenticated(key)| key.id())
    else {
        // `authenticate` runs first on every route; without it, refuse rather than serve.
        return ApiError::unauthorized().into_response();
    };
    let now = now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("?", MatchedPath::as_str);
    let route = route.strip_prefix(API_PREFIX).unwrap_or(route).to_owned();
    let method = request.method().clone();
    // The key's own limit and every rate-limited ancestor's: children share their parents'.
    let limited = app.rate_limit(id, now).await.err();
    let response = match limited {
        Some(refusal) => {
            Span::current().record("decision", "rate limited");
            refusal.into_response()
        }
        None => next.run(request).await,
    };
    app.record_usage(id, method.as_str(), &route, response.status().as_u16(), now);
    response
}

impl App {
    /// `authorize` for this request as a handler-ready result, with the decision in the log.
    pub(crate) fn check(
        &self,
        key: &ApiKey,
        action: Action,
        resource: Resource,
    ) -> Result<(), ApiError> {
        match self.decide(key, action, &resource) {
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
