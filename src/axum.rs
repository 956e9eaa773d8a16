//! axum integration (feature `axum`): read `Authorization: Bearer …`, authenticate, and turn every
//! refusal into the seeds' status and JSON body.
//!
//! This is the only part of keygate that touches the outside world, and it is opt-in. It reads the
//! system clock (through [`KeyLookup::now`], which tests override) and nothing else.
//!
//! - [`KeyLookup`]: where keys come from. Implemented for `RwLock<Keyring>`; implement it for your
//!   own store (hash the token with [`TokenHash::of`](crate::TokenHash::of), look the hash up,
//!   compare in constant time).
//! - [`Authenticated`]: an extractor yielding the caller's [`ApiKey`], or a 401 with
//!   `{"error": "Invalid or expired API key"}`.
//! - [`ApiError`]: a response for every refusal keygate can produce: [`Deny`] (401/403/404),
//!   [`RetryAfter`](crate::RetryAfter) (429 with a `Retry-After` header), [`IssueError`] (403/422), and quota errors.
//!
//! ```no_run
//! use std::sync::{Arc, RwLock};
//! use axum::{routing::get, Router, extract::FromRef};
//! use keygate::axum::{Authenticated, KeyLookup};
//! use keygate::Keyring;
//!
//! #[derive(Clone)]
//! struct AppState { keys: Arc<dyn KeyLookup> }
//! impl FromRef<AppState> for Arc<dyn KeyLookup> {
//!     fn from_ref(state: &AppState) -> Self { state.keys.clone() }
//! }
//!
//! async fn whoami(Authenticated(key): Authenticated) -> String { key.name().to_owned() }
//!
//! let state = AppState { keys: Arc::new(RwLock::new(Keyring::default())) };
//! let app: Router = Router::new().route("/whoami", get(whoami)).with_state(state);
//! ```

use std::sync::{Arc, RwLock};

use ::axum::extract::rejection::JsonRejection;
use ::axum::extract::{FromRef, FromRequestParts};
use ::axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use ::axum::http::request::Parts;
use ::axum::http::{HeaderMap, HeaderValue, StatusCode};
use ::axum::response::{IntoResponse, Response};
use serde_json::json;

mod layer;
pub use layer::{
    Allowed, Caller, ClientAddress, Clock, Keygate, KeygateLayer, LimitFuture, NeededPermission,
    RateLimiter, RequestTime,
};

use crate::catalog::Catalog;
use crate::decision::Deny;
use crate::issue::IssueError;
use crate::key::ApiKey;
use crate::keyring::Keyring;
use crate::response::Refusal;
use crate::timestamp::Timestamp;

/// Where the extractor finds keys.
pub trait KeyLookup: Send + Sync {
    /// The key for a presented token, or why there is none (always a 401 reason).
    fn authenticate(&self, token: &str, now: Timestamp) -> Result<ApiKey, Deny>;

    /// The current time. The default reads the system clock; tests override it.
    fn now(&self) -> Timestamp {
        Timestamp::from_system_time(std::time::SystemTime::now())
    }
}

impl KeyLookup for RwLock<Keyring> {
    fn authenticate(&self, token: &str, now: Timestamp) -> Result<ApiKey, Deny> {
        // A poisoned lock means a writer panicked mid-update: refuse rather than trust the state.
        let keyring = self.read().map_err(|_| Deny::UnknownKey)?;
        keyring.authenticate(token, now).cloned()
    }
}

/// The token from an `Authorization: Bearer <token>` header (scheme case-insensitive), if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The authenticated caller's key.
///
/// Extracted from the request extensions if a middleware already authenticated the request, else
/// from the `Authorization` header through the state's `Arc<dyn KeyLookup>`. A missing, malformed,
/// unknown, revoked or expired key is refused with 401 before the handler runs.
#[derive(Debug, Clone)]
pub struct Authenticated(pub ApiKey);

impl<S> FromRequestParts<S> for Authenticated
where
    S: Send + Sync,
    Arc<dyn KeyLookup>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if let Some(done) = parts.extensions.get::<Authenticated>() {
            return Ok(done.clone());
        }
        let lookup = <Arc<dyn KeyLookup>>::from_ref(state);
        let token = bearer_token(&parts.headers).ok_or(ApiError::unauthorized())?;
        lookup
            .authenticate(token, lookup.now())
            .map(Authenticated)
            .map_err(|_| ApiError::unauthorized())
    }
}

/// An error response: a status, a JSON body in the API's shape, and for 429 a `Retry-After`
/// header.
///
/// Every keygate refusal converts into one with `?` ([`From`] any [`Refusal`]). A refusal that
/// names a permission needs the catalog for its message: behind [`KeygateLayer`] the layer
/// renders it with its catalog; elsewhere the message says "Permission required" (use
/// [`ApiError::refusal`] with the catalog in hand).
#[derive(Clone)]
pub struct ApiError {
    status: StatusCode,
    body: serde_json::Value,
    retry_after: Option<u64>,
    pending: Option<Arc<dyn Refusal + Send + Sync>>,
}

impl core::fmt::Debug for ApiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ApiError")
            .field("status", &self.status)
            .field("body", &self.body)
            .field("retry_after", &self.retry_after)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ApiError {
    /// Equal responses: status, body and `Retry-After`.
    fn eq(&self, other: &Self) -> bool {
        (self.status, &self.body, self.retry_after)
            == (other.status, &other.body, other.retry_after)
    }
}

impl ApiError {
    /// 401 `{"error": "Invalid or expired API key"}`.
    pub fn unauthorized() -> Self {
        Self::message(StatusCode::UNAUTHORIZED, "Invalid or expired API key")
    }

    /// 404 `{"error": "Not found"}`.
    pub fn not_found() -> Self {
        Self::message(StatusCode::NOT_FOUND, "Not found")
    }

    /// Any status with `{"error": message}`.
    pub fn message(status: StatusCode, message: &str) -> Self {
        Self {
            status,
            body: json!({ "error": message }),
            retry_after: None,
            pending: None,
        }
    }

    /// 422 `{"errors": [...]}`.
    pub fn validation(errors: Vec<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({ "errors": errors }),
            retry_after: None,
            pending: None,
        }
    }

    /// The response for any keygate [`Refusal`]: its status, its JSON body and, for a rate
    /// limit, a `Retry-After` header. The catalog names a missing permission.
    pub fn refusal(refusal: &(impl Refusal + ?Sized), catalog: &Catalog) -> Self {
        Self {
            status: StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::FORBIDDEN),
            body: json!(refusal.body(catalog)),
            retry_after: refusal.retry_after(),
            pending: None,
        }
    }

    /// The response for a [`Deny`]: [`ApiError::refusal`].
    pub fn deny(deny: Deny, catalog: &Catalog) -> Self {
        Self::refusal(&deny, catalog)
    }

    /// The response for an [`IssueError`]: 422 with every validation message, 403 for an
    /// escalation, 401 for an issuing key that is no longer active ([`ApiError::refusal`]).
    pub fn issue(error: IssueError, catalog: &Catalog) -> Self {
        Self::refusal(&error, catalog)
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The JSON body.
    pub fn body(&self) -> &serde_json::Value {
        &self.body
    }
}

impl<R: Refusal + Send + Sync + 'static> From<R> for ApiError {
    /// The refusal's response, rendered without a catalog for now and again with the catalog by
    /// [`KeygateLayer`] on the way out.
    fn from(refusal: R) -> Self {
        let mut error = Self::refusal(&refusal, &Catalog::EMPTY);
        error.pending = Some(Arc::new(refusal));
        error
    }
}

impl From<JsonRejection> for ApiError {
    /// A body that is not the expected JSON: 415 without `Content-Type: application/json`, 422
    /// for JSON of the wrong shape (with serde's message, capped), 400 for malformed JSON, 413 for
    /// too large a body; always in the API's JSON shape.
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let text = rejection.body_text();
        let message: String = text.chars().take(200).collect();
        match status {
            StatusCode::UNPROCESSABLE_ENTITY => Self::validation(vec![message]),
            _ => Self::message(status, &message),
        }
    }
}

/// A refusal waiting for [`KeygateLayer`]'s catalog to render its body.
#[derive(Clone)]
pub(crate) struct Pending(Arc<dyn Refusal + Send + Sync>);

impl Pending {
    /// `response` with the refusal's body rendered with `catalog` (status and headers kept).
    pub(crate) fn render(self, catalog: &Catalog, response: Response) -> Response {
        let (parts, _) = response.into_parts();
        let body = ::axum::Json(self.0.body(catalog))
            .into_response()
            .into_body();
        Response::from_parts(parts, body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, ::axum::Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(pending) = self.pending {
            response.extensions_mut().insert(Pending(pending));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        for (value, want) in [
            ("Bearer idc_abc", Some("idc_abc")),
            ("bearer idc_abc", Some("idc_abc")),
            ("Token idc_abc", None),
            ("Bearer ", None),
            ("Bearer", None),
        ] {
            headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer_token(&headers), want, "{value:?}");
        }
    }
}
