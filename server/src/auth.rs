//! The auth layer: every routed request is authenticated (401 with `WWW-Authenticate: Bearer`),
//! counted against its key's rate limit (429), then handled; handlers decide with
//! [`App::check`] (403/404). Usage is recorded per matched route and method.
//!
//! The request's log span (see [`crate::telemetry`]) gets the key id and the decision reason;
//! never the token.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keygate::axum::{ApiError, Authenticated, KeyLookup, bearer_token};
use keygate::{AccountId, Action, ApiKey, Decision, ProjectId, Resource, Scope, authorize};
use tracing::Span;
use tracing::field::display;

use crate::reply::Unrouted;
use crate::state::{App, AppState, now};

/// The prefix every route is nested under.
pub(crate) const API_PREFIX: &str = "/api/v1/public";

/// Runs before every route: 401 for a missing or bad key, 429 over the key's rate limit; then
/// hands the key to the handler (keygate's [`Authenticated`] extractor finds it in the request's
/// extensions) and records the request in the key's usage.
pub(crate) async fn authenticate(
    State(app): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let now = now();
    let span = Span::current();
    let key = match bearer_token(request.headers()) {
        None => {
            span.record("decision", "no bearer token");
            return ApiError::unauthorized().into_response();
        }
        Some(token) => match app.authenticate(token, now) {
            Ok(key) => key,
            Err(deny) => {
                span.record("decision", display(deny));
                return ApiError::unauthorized().into_response();
            }
        },
    };
    let id = key.id();
    span.record("key_id", display(id));
    // The route's template (`/projects/{id}`), never the raw path, so the map stays small.
    let endpoint = request.extensions().get::<MatchedPath>().map(|path| {
        let route = path.as_str();
        let route = route.strip_prefix(API_PREFIX).unwrap_or(route);
        format!("{} {route}", request.method())
    });
    let limited = key
        .rate_limit()
        .copied()
        .and_then(|limit| app.rate_limit(id, &limit, now).err());
    let response = match limited {
        Some(retry) => {
            span.record("decision", "rate limited");
            ApiError::from(retry).into_response()
        }
        None => {
            request.extensions_mut().insert(Authenticated(key));
            next.run(request).await
        }
    };
    // An unsupported method on a real path is no endpoint: counting it would let a client grow
    // the map with made-up methods.
    if let Some(endpoint) = endpoint.filter(|_| response.extensions().get::<Unrouted>().is_none()) {
        app.record_usage(id, &endpoint, response.status().as_u16(), now);
    }
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
        match authorize(key, action, &resource, now()) {
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

    /// Whether `key` may do `action` on `resource`: for filtering lists, not logged.
    pub(crate) fn allows(&self, key: &ApiKey, action: Action, resource: &Resource) -> bool {
        authorize(key, action, resource, now()).is_allowed()
    }
}

/// A resource inside project `id` of `account`.
pub(crate) fn project_resource(account: AccountId, id: u64) -> Resource {
    Resource::in_project(account, ProjectId::from_u64(id))
}

/// The resource a key record is, for authorizing access to it.
pub(crate) fn key_resource(key: &ApiKey) -> Resource {
    match key.scope() {
        Scope::Account => Resource::account(key.account()),
        Scope::Project(p) => Resource::in_project(key.account(), p),
    }
}
