//! `KeygateLayer` in process, through `tower::ServiceExt::oneshot`: usage counted under routes
//! without the nest prefix, a pluggable rate limiter (its refusal is the response, nothing
//! reaches the handler), and what the layer leaves in the response's extensions for logs.
#![cfg(feature = "axum")]
#![expect(clippy::unwrap_used, reason = "test bodies")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use keygate::axum::{ApiError, Caller, KeygateLayer, LimitFuture, RateLimiter};
use keygate::{
    AccountId, AuthenticatedKey, Catalog, Deny, Issuer, KeyId, KeySpec, Keyring, RateLimit, Scope,
    SharedKeyring, Timestamp, issue,
};
use tower::ServiceExt;

fn clock() -> Timestamp {
    Timestamp::from_unix_seconds(1_800_000_000)
}

/// Refuses every request with a 503 after counting it, and remembers the chains it was given.
#[derive(Default)]
struct Counts {
    calls: AtomicUsize,
    budgets: AtomicUsize,
}

struct Refusing(Arc<Counts>);

impl RateLimiter for Refusing {
    fn check(&self, key: Arc<AuthenticatedKey>, _now: Timestamp) -> LimitFuture {
        self.0.calls.fetch_add(1, Ordering::Relaxed);
        let budgets = key.rate_limit_chain().map_or(0, Iterator::count);
        self.0.budgets.fetch_add(budgets, Ordering::Relaxed);
        Box::pin(async {
            Err(ApiError::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Rate limiter unavailable",
            ))
        })
    }
}

async fn whoami(Caller(key): Caller) -> String {
    // Deref: the caller's key itself.
    key.name().to_owned()
}

fn setup() -> (Arc<SharedKeyring>, Arc<Catalog>, String, KeyId) {
    let catalog = Catalog::read_write_delete();
    let owner = Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all());
    let spec = KeySpec::named("limited").rate_limit(RateLimit::per_period(5, 60).unwrap());
    let issued = issue(&catalog, &owner, spec, clock(), &mut rand::rng()).unwrap();
    let id = issued.key.id();
    let mut ring = Keyring::default().with_endpoints(["GET /whoami"]);
    ring.insert(issued.key).unwrap();
    let token = issued.token.expose_secret().to_owned();
    (
        Arc::new(SharedKeyring::new(ring)),
        Arc::new(catalog),
        token,
        id,
    )
}

fn get_with(token: &str) -> Request<Body> {
    Request::get("/api/v1/whoami")
        .header("Authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn usage_is_counted_under_the_route_without_its_prefix_and_logs_get_the_key() {
    let (keys, catalog, token, id) = setup();
    let layer = KeygateLayer::new(Arc::clone(&keys), catalog)
        .with_clock(clock)
        .with_route_prefix("/api/v1");
    let api = Router::new()
        .route("/whoami", get(whoami))
        .route_layer(layer);
    let app = Router::new().nest("/api/v1", api);

    let response = app.clone().oneshot(get_with(&token)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.extensions().get::<KeyId>(), Some(&id));
    let usage = keys.read(|ring| ring.state(id)).unwrap().usage;
    assert_eq!(usage.total_requests(), 1);
    let by_endpoint = serde_json::to_value(&usage).unwrap()["requests_by_endpoint"].clone();
    assert_eq!(by_endpoint, serde_json::json!({"GET /whoami": 1}));

    let refused = app.oneshot(get_with("idc_wrong")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.extensions().get::<Deny>(), Some(&Deny::UnknownKey));
    assert!(refused.extensions().get::<KeyId>().is_none());
}

#[tokio::test]
async fn a_pluggable_limiter_decides_and_its_refusal_is_the_response() {
    let (keys, catalog, token, id) = setup();
    let limiter = Arc::new(Counts::default());
    let layer = KeygateLayer::new(Arc::clone(&keys), catalog)
        .with_clock(clock)
        .with_rate_limiter(Arc::new(Refusing(Arc::clone(&limiter))));
    let app = Router::new()
        .route("/whoami", get(whoami))
        .route_layer(layer);
    for _ in 0..3 {
        let request = Request::get("/whoami")
            .header("Authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(limiter.calls.load(Ordering::Relaxed), 3);
    assert_eq!(
        limiter.budgets.load(Ordering::Relaxed),
        3,
        "the key's own budget each time"
    );
    // The keyring's own limiter was not charged (5 per minute would admit these), and the
    // refusals were counted as the route's 5xx.
    let state = keys.read(|ring| ring.state(id)).unwrap();
    assert!(
        state.rate_limit.tat().is_none(),
        "the local limiter was never charged"
    );
    assert_eq!(state.usage.total_requests(), 3);
}
