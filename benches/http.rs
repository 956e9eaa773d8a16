//! In-process HTTP through `tower::ServiceExt::oneshot`: the same axum handler with and without
//! keygate's layer (authenticate the bearer token, charge its rate limit, count its usage, and an
//! `Allowed<Read>` extractor checking the permission). The difference is what keygate adds to a
//! request.
//!
//! Run with `cargo bench --bench http --features axum`.
#![expect(
    clippy::expect_used,
    reason = "bench setup on fixed, known-good inputs; a failure there is a bug to see at once"
)]

mod common;

use std::hint::black_box;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use keygate::axum::{Allowed, KeygateLayer};
use keygate::{
    AccountId, Catalog, Issuer, KeySpec, Keyring, RateLimit, Scope, SharedKeyring, Timestamp, issue,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tower::ServiceExt;

keygate::permission!(Read = "read";);

async fn plain() -> &'static str {
    "ok"
}

async fn guarded(_: Allowed<Read>) -> &'static str {
    "ok"
}

fn bench(c: &mut Criterion) {
    let catalog = Arc::new(Catalog::read_write_delete());
    let owner = Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all());
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let spec =
        KeySpec::named("bench").rate_limit(RateLimit::per_period(u32::MAX, 1).expect("valid"));
    let issued = issue(&catalog, &owner, spec, now, &mut StdRng::seed_from_u64(1)).expect("issued");
    let token = format!("Bearer {}", issued.token.expose_secret());
    let mut keyring = Keyring::default().with_endpoints(["GET /recordings"]);
    keyring.insert(issued.key).expect("inserted");
    let keys = Arc::new(SharedKeyring::new(keyring));

    let without: Router = Router::new().route("/recordings", get(plain));
    let with: Router = Router::new()
        .route("/recordings", get(guarded))
        .route_layer(KeygateLayer::new(keys, catalog));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let request = |authorization: &str| {
        Request::get("/recordings")
            .header("authorization", authorization)
            .body(Body::empty())
            .expect("a request")
    };
    let status = runtime
        .block_on(with.clone().oneshot(request(&token)))
        .expect("infallible")
        .status();
    assert_eq!(status, 200, "the bench must measure an allowed request");

    let mut group = c.benchmark_group("http_oneshot");
    group.bench_function("without keygate", |b| {
        b.iter(|| runtime.block_on(without.clone().oneshot(black_box(request(&token)))))
    });
    group.bench_function("with KeygateLayer", |b| {
        b.iter(|| runtime.block_on(with.clone().oneshot(black_box(request(&token)))))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench
}
criterion_main!(benches);
