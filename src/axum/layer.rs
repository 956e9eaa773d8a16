//! One tower layer that authenticates, rate-limits and records usage on a [`SharedKeyring`], and
//! the extractors that read what it found.

use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::sync::Arc;

use ::axum::extract::{FromRequestParts, MatchedPath, Request};
use ::axum::http::header::WWW_AUTHENTICATE;
use ::axum::http::request::Parts;
use ::axum::http::{Extensions, HeaderValue, StatusCode};
use ::axum::response::{IntoResponse, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{ApiError, bearer_token};
use crate::authorize::Action;
use crate::catalog::Catalog;
use crate::decision::{Decision, Deny};
use crate::keyring::{AuthenticatedKey, SharedKeyring};
use crate::scope::Resource;
use crate::timestamp::Timestamp;

/// Where a request came from, as the server determined it: put it in the request's extensions
/// (from the TCP peer address, or a trusted proxy's header) before [`KeygateLayer`] runs.
///
/// The layer refuses a key restricted to address ranges
/// ([`KeySpec::allowed_addresses`](crate::KeySpec::allowed_addresses)) with 403
/// [`Deny::AddressNotAllowed`] when the address lies outside them *or is missing* (deny by
/// default), before the rate limit and the handler; and it hands the address on with the
/// [`Caller`], whose [`authorize`](Caller::authorize) decides with it. Keys without ranges never
/// look at it. axum's `ConnectInfo` needs its `tokio` feature, which keygate does not enable:
/// insert this instead (a middleware can copy `ConnectInfo`'s peer into it).
///
/// ```
/// use axum::{extract::Request, middleware::Next, response::Response};
/// use keygate::axum::ClientAddress;
/// // Behind a proxy that overwrites the header, or from the accept loop's peer address.
/// async fn peer(mut request: Request, next: Next) -> Response {
///     request.extensions_mut().insert(ClientAddress([10, 0, 0, 7].into()));
///     next.run(request).await
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddress(pub std::net::IpAddr);

/// The clock the layer reads: the system clock unless a test gives its own.
pub type Clock = fn() -> Timestamp;

fn system_clock() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

/// Authenticates every request on a [`SharedKeyring`] (401 with `WWW-Authenticate: Bearer`),
/// charges its rate limits and credits with [`AuthenticatedKey::admit`] (429 with `Retry-After`;
/// spent credits add `"code": "USAGE_EXCEEDED"`), hands the key to the handler as
/// [`Caller`], and counts the request in the key's usage once the response is known. No lock, no
/// copy of the key, no `format!`.
///
/// Apply it with `Router::route_layer`, so that it runs after routing and counts usage per
/// matched route (`GET /recordings/{id}`), never per raw path; register the routes with
/// [`Keyring::with_endpoints`](crate::Keyring::with_endpoints). It is a plain tower layer over
/// `http` requests, so a tonic gRPC service (whose `authorization` metadata is this very header)
/// takes it the same way, through tonic's axum router (`Routes::into_axum_router`), and reads the
/// caller with [`Caller::from_extensions`]. A gRPC client wants its refusals as `grpc-status`,
/// not as a JSON body: see `grpc/` in keygate's repository (`grpc/tests/grpc.rs`) for the
/// working setup, with the small adapter that does that.
///
/// It also renders every [`ApiError`] made from a refusal with its catalog, so that a handler can
/// write `deny?` and the client reads `"Permission agents:write required"`.
///
/// ```
/// use std::sync::Arc;
/// use axum::{routing::get, Router};
/// use keygate::axum::{Caller, KeygateLayer};
/// use keygate::{Catalog, SharedKeyring};
///
/// async fn whoami(Caller(key): Caller) -> String { key.key().name().to_owned() }
///
/// let keys = Arc::new(SharedKeyring::default());
/// let catalog = Arc::new(Catalog::read_write_delete());
/// let app: Router = Router::new()
///     .route("/whoami", get(whoami))
///     .route_layer(KeygateLayer::new(keys, catalog));
/// ```
///
/// What it decided is left in the response's extensions, for request logs: the authenticated
/// key's [`KeyId`](crate::KeyId), or the [`Deny`] a request was refused with at authentication.
#[derive(Clone)]
pub struct KeygateLayer {
    keys: Arc<SharedKeyring>,
    catalog: Arc<Catalog>,
    clock: Clock,
    /// Cut from the front of the matched route before usage is counted: the prefix a router is
    /// nested under.
    prefix: Option<Arc<str>>,
    limiter: Option<Arc<dyn RateLimiter>>,
}

/// Where a [`KeygateLayer`] charges rate limits instead of the keyring's own per-replica state:
/// a limiter shared by every replica of a service (`keygate-store`'s Redis limiter, say).
///
/// ```
/// use std::sync::Arc;
/// use keygate::axum::{ApiError, RateLimiter};
/// use keygate::{AuthenticatedKey, Timestamp};
///
/// /// Admits everything and says so: a real limiter charges the key's budgets in its store.
/// struct Counting;
///
/// impl RateLimiter for Counting {
///     fn check(&self, key: Arc<AuthenticatedKey>, _now: Timestamp)
///         -> keygate::axum::LimitFuture {
///         // The budgets to charge, all or none; `None`: a chain too deep to check, refuse.
///         let budgets = key.rate_limit_budgets().map(Iterator::count);
///         Box::pin(async move { let _ = budgets; Ok::<(), ApiError>(()) })
///     }
/// }
/// ```
pub trait RateLimiter: Send + Sync + 'static {
    /// Charges every rate-limit budget of `key` ([`AuthenticatedKey::rate_limit_budgets`]: its
    /// own limit and named ones up its issuing chain, its account's) at `now`, all or none: `Ok`
    /// admits the request, an error is its response (429 with `Retry-After` for a spent budget,
    /// 503 when the limiter cannot decide and refuses rather than admit unchecked). The layer
    /// then spends the key's credits in the keyring ([`AuthenticatedKey::spend_credits`]).
    fn check(&self, key: Arc<AuthenticatedKey>, now: Timestamp) -> LimitFuture;
}

/// What [`RateLimiter::check`] returns.
pub type LimitFuture = Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'static>>;

impl core::fmt::Debug for KeygateLayer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeygateLayer").finish_non_exhaustive()
    }
}

impl KeygateLayer {
    /// A layer over `keys`, naming permissions with `catalog`, on the system clock.
    pub fn new(keys: Arc<SharedKeyring>, catalog: Arc<Catalog>) -> Self {
        Self {
            keys,
            catalog,
            clock: system_clock,
            prefix: None,
            limiter: None,
        }
    }

    /// The same layer, counting usage under routes without `prefix`: for a router nested under
    /// it (`Router::nest("/api/v1", api)`), whose matched routes include it, so that the
    /// endpoints registered with [`Keyring::with_endpoints`](crate::Keyring::with_endpoints)
    /// can be written without it (`GET /recordings`).
    pub fn with_route_prefix(mut self, prefix: &str) -> Self {
        self.prefix = Some(Arc::from(prefix));
        self
    }

    /// The same layer, charging rate limits in `limiter` instead of the keyring's own state.
    pub fn with_rate_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// The same layer on another clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

impl<S> Layer<S> for KeygateLayer {
    type Service = Keygate<S>;

    fn layer(&self, inner: S) -> Keygate<S> {
        Keygate {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`KeygateLayer`] wraps around a handler or router.
#[derive(Clone)]
pub struct Keygate<S> {
    inner: S,
    layer: KeygateLayer,
}

impl<S> core::fmt::Debug for Keygate<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Keygate").finish_non_exhaustive()
    }
}

/// What the layer hands a handler: the caller's key, its catalog and the request's instant.
#[derive(Clone)]
struct Found {
    key: Arc<AuthenticatedKey>,
    catalog: Arc<Catalog>,
    now: Timestamp,
}

impl<S> Service<Request> for Keygate<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let now = (self.layer.clock)();
        let found = bearer_token(request.headers())
            .ok_or(Deny::UnknownKey)
            .and_then(|token| self.layer.keys.authenticate(token, now));
        let address = request
            .extensions()
            .get::<ClientAddress>()
            .map(|ClientAddress(address)| *address);
        // The address rule first, before the rate limit: a key used from elsewhere spends no
        // budget, and no handler runs for it. Constant time over the key's ranges.
        let found = found.and_then(|key| {
            if key.key().allows_address(address) {
                Ok(match address {
                    Some(address) => key.with_client_address(address),
                    None => key,
                })
            } else {
                Err(Deny::AddressNotAllowed)
            }
        });
        let key = match found {
            Ok(key) => Arc::new(key),
            Err(Deny::AddressNotAllowed) => {
                let mut response = ApiError::refusal(&Deny::AddressNotAllowed, &self.layer.catalog)
                    .into_response();
                response.extensions_mut().insert(Deny::AddressNotAllowed);
                return Box::pin(async move { Ok(response) });
            }
            Err(deny) => {
                let mut response = unauthorized(ApiError::refusal(&deny, &self.layer.catalog));
                response.extensions_mut().insert(deny);
                return Box::pin(async move { Ok(response) });
            }
        };
        let method = request.method().clone();
        let route = request.extensions().get::<MatchedPath>().cloned();
        let prefix = self.layer.prefix.clone();
        let limit = match &self.layer.limiter {
            // The keyring's own limiters and credits: atomics, decided now.
            None => Limit::Decided(
                key.admit(now)
                    .map_err(|refused| ApiError::refusal(&refused, &self.layer.catalog)),
            ),
            Some(limiter) => Limit::Pending(limiter.check(Arc::clone(&key), now)),
        };
        request.extensions_mut().insert(Found {
            key: Arc::clone(&key),
            catalog: Arc::clone(&self.layer.catalog),
            now,
        });
        // The service that was polled ready is the one to call (tower's contract): swap a clone in.
        let clone = self.inner.clone();
        let mut inner = core::mem::replace(&mut self.inner, clone);
        let catalog = Arc::clone(&self.layer.catalog);
        Box::pin(async move {
            let admitted = match limit {
                Limit::Decided(admitted) => admitted,
                // The shared limiter charged the rate limits; the credits are this keyring's.
                // Refused here, the shared charge stays: over-charging, never under.
                Limit::Pending(check) => check.await.and_then(|()| {
                    key.spend_credits(now)
                        .map_err(|refused| ApiError::refusal(&refused, &catalog))
                }),
            };
            let mut response = match admitted {
                Ok(()) => inner.call(request).await?,
                Err(refusal) => refusal.into_response(),
            };
            // A refusal a handler (or the limiter) returned is rendered with the catalog, which
            // names permissions.
            if let Some(pending) = response.extensions_mut().remove::<super::Pending>() {
                response = pending.render(&catalog, response);
            }
            let route = route.as_ref().map_or("", MatchedPath::as_str);
            let route = prefix
                .as_deref()
                .and_then(|prefix| route.strip_prefix(prefix))
                .unwrap_or(route);
            key.record_request(method.as_str(), route, response.status().as_u16(), now);
            response.extensions_mut().insert(key.key().id());
            Ok(response)
        })
    }
}

/// A request's rate-limit check: decided at once by the keyring, or pending in a limiter.
enum Limit {
    Decided(Result<(), ApiError>),
    Pending(LimitFuture),
}

/// A 401 with `WWW-Authenticate: Bearer` (RFC 6750), and the API's body.
fn unauthorized(error: ApiError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The caller's key, as [`KeygateLayer`] authenticated it (a handler behind the layer only).
///
/// ```
/// # use keygate::axum::Caller;
/// async fn handler(Caller(key): Caller) -> String {
///     format!("hello, {}", key.key().name())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<AuthenticatedKey>);

impl Caller {
    /// The caller's key from a request's extensions, where [`KeygateLayer`] left it: for code
    /// behind the layer that is not an axum handler, such as a tonic service or interceptor
    /// (`request.extensions()`) or another tower layer. `None` if the layer did not run.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use axum::{extract::Request, routing::post, Router};
    /// use keygate::axum::{Caller, KeygateLayer};
    /// use keygate::{Catalog, SharedKeyring};
    ///
    /// // What a tonic method does with `request.extensions()`.
    /// async fn check(request: Request) -> String {
    ///     Caller::from_extensions(request.extensions())
    ///         .map_or_else(String::new, |Caller(key)| key.key().name().to_owned())
    /// }
    /// let app: Router = Router::new()
    ///     .route("/grpc.health.v1.Health/Check", post(check))
    ///     .route_layer(KeygateLayer::new(Arc::new(SharedKeyring::default()),
    ///         Arc::new(Catalog::read_write_delete())));
    /// assert!(Caller::from_extensions(&axum::http::Extensions::new()).is_none());
    /// ```
    pub fn from_extensions(extensions: &Extensions) -> Option<Self> {
        extensions
            .get::<Found>()
            .map(|found| Caller(Arc::clone(&found.key)))
    }

    /// May the caller do `action` on `resource`? With the key's creator cap, at the request's
    /// instant, from the request's [`ClientAddress`] unless `resource` carries one; `?` turns a
    /// refusal into its response.
    pub fn authorize(
        &self,
        action: Action,
        resource: &Resource,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        match self.0.authorize(action, resource, now) {
            Decision::Allow => Ok(()),
            Decision::Deny(deny) => Err(ApiError::from(deny)),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Caller::from_extensions(&parts.extensions).ok_or_else(ApiError::unauthorized)
    }
}

/// A permission named in a handler's signature: `Allowed<Read>` refuses (403, with the
/// permission named) a caller whose key, capped by its creator, lacks it. Declare one with
/// [`permission!`](crate::permission).
pub trait NeededPermission: Send + Sync + 'static {
    /// The catalog name of the permission (`"read"`, `"agents:write"`).
    const NAME: &'static str;
}

/// Declares [`NeededPermission`] types: `keygate::permission!(pub Read = "read");`.
#[macro_export]
macro_rules! permission {
    ($($vis:vis $name:ident = $permission:literal;)+) => {
        $(
            #[doc = concat!("The `", $permission, "` permission, for `keygate::axum::Allowed`.")]
            #[derive(Debug, Clone, Copy)]
            $vis struct $name;
            impl $crate::axum::NeededPermission for $name {
                const NAME: &'static str = $permission;
            }
        )+
    };
}

/// The caller, holding permission `P` (capped by its creator): the handler's signature states
/// what it needs. Resource checks (account, project) stay the handler's, with
/// [`Caller::authorize`] or [`AuthenticatedKey::authorize`].
///
/// ```
/// use keygate::axum::Allowed;
/// keygate::permission!(Write = "write";);
/// async fn upload(Allowed(key, _): Allowed<Write>) -> &'static str { "stored" }
/// ```
#[derive(Debug)]
pub struct Allowed<P>(pub Arc<AuthenticatedKey>, pub PhantomData<P>);

impl<P: NeededPermission, S: Send + Sync> FromRequestParts<S> for Allowed<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let found = parts
            .extensions
            .get::<Found>()
            .ok_or_else(ApiError::unauthorized)?;
        // A name the catalog lacks is a server bug; deny by default, and say nothing more.
        let permission = found
            .catalog
            .permission(P::NAME)
            .ok_or_else(|| ApiError::message(StatusCode::FORBIDDEN, "Permission required"))?;
        if bool::from(found.key.effective_permissions().contains(permission)) {
            Ok(Allowed(Arc::clone(&found.key), PhantomData))
        } else {
            Err(ApiError::refusal(
                &Deny::MissingPermission(permission),
                &found.catalog,
            ))
        }
    }
}

/// The instant the layer authenticated the request at (the same for every check of one request).
#[derive(Debug, Clone, Copy)]
pub struct RequestTime(pub Timestamp);

impl<S: Send + Sync> FromRequestParts<S> for RequestTime {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Found>()
            .map(|found| RequestTime(found.now))
            .ok_or_else(ApiError::unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use ::axum::Router;
    use ::axum::body::Body;
    use ::axum::routing::post;
    use tower::ServiceExt;

    use super::*;
    use crate::{AccountId, Issuer, KeySpec, Keyring, Scope};

    /// What code that is no axum handler (a tonic service) sees behind the layer.
    async fn caller_name(request: Request) -> String {
        Caller::from_extensions(request.extensions()).map_or_else(
            || "nobody".to_owned(),
            |Caller(key)| key.key().name().to_owned(),
        )
    }

    fn call(app: Router, token: &str) -> (StatusCode, String) {
        let request = Request::post("/grpc.health.v1.Health/Check")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let body = ::axum::body::to_bytes(response.into_body(), 64)
                .await
                .unwrap();
            (status, String::from_utf8(body.to_vec()).unwrap())
        })
    }

    #[test]
    fn a_restricted_key_is_refused_from_elsewhere_and_decides_from_its_address() {
        let catalog = Arc::new(Catalog::read_write_delete());
        let owner = Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all());
        let spec = KeySpec::named("office").allowed_addresses(["10.0.0.0/8"]);
        let issued =
            crate::issue(&catalog, &owner, spec, system_clock(), &mut rand::rng()).unwrap();
        let mut keyring = Keyring::default();
        keyring.insert(issued.key).unwrap();
        let keys = Arc::new(SharedKeyring::new(keyring));
        // The handler decides a listing without naming an address: the caller's is used.
        async fn list(Caller(key): Caller, RequestTime(now): RequestTime) -> StatusCode {
            let catalog = Catalog::read_write_delete();
            let read = Action::named(&catalog, "read").unwrap();
            let listing = Resource::listing(key.account());
            match Caller(key).authorize(read, &listing, now) {
                Ok(()) => StatusCode::OK,
                Err(error) => error.status(),
            }
        }
        let app = Router::new()
            .route("/grpc.health.v1.Health/Check", post(list))
            .route_layer(KeygateLayer::new(keys, catalog));
        let token = issued.token.expose_secret();
        let run = |address: Option<[u8; 4]>| {
            let mut request = Request::post("/grpc.health.v1.Health/Check")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            if let Some(address) = address {
                request
                    .extensions_mut()
                    .insert(ClientAddress(address.into()));
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(async {
                let response = app.clone().oneshot(request).await.unwrap();
                let status = response.status();
                let body = ::axum::body::to_bytes(response.into_body(), 256)
                    .await
                    .unwrap();
                (status, String::from_utf8(body.to_vec()).unwrap())
            })
        };
        assert_eq!(run(Some([10, 1, 2, 3])).0, StatusCode::OK);
        let refused = (
            StatusCode::FORBIDDEN,
            r#"{"error":"API key not allowed from this address"}"#.to_owned(),
        );
        assert_eq!(run(Some([127, 0, 0, 1])), refused);
        assert_eq!(run(None), refused);
    }

    #[test]
    fn code_behind_the_layer_reads_the_caller_from_the_extensions() {
        let catalog = Arc::new(Catalog::read_write_delete());
        let owner = Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all());
        let spec = KeySpec::named("grpc-client");
        let issued =
            crate::issue(&catalog, &owner, spec, system_clock(), &mut rand::rng()).unwrap();
        let mut keyring = Keyring::default();
        keyring.insert(issued.key).unwrap();
        let keys = Arc::new(SharedKeyring::new(keyring));
        let route = || Router::new().route("/grpc.health.v1.Health/Check", post(caller_name));

        let guarded = route().route_layer(KeygateLayer::new(keys, catalog));
        let token = issued.token.expose_secret();
        assert_eq!(
            call(guarded.clone(), token),
            (StatusCode::OK, "grpc-client".to_owned())
        );
        assert_eq!(call(guarded, "idc_nobody").0, StatusCode::UNAUTHORIZED);
        // Without the layer there is no caller, whatever the request claims.
        assert_eq!(call(route(), token), (StatusCode::OK, "nobody".to_owned()));
    }
}
