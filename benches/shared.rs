//! Decisions per second on a keyring shared by threads, with rate limiting and usage recording on:
//! keygate's `SharedKeyring` (arc-swap snapshot, atomic per-key state) beside an
//! `RwLock<Keyring>` doing the same work under a read lock.
//!
//! Each request is the whole hot path a server runs: authenticate the raw token, charge its rate
//! limit (and its parent's: half the keys are children of a rate-limited key), count its usage,
//! authorize the action. Each thread cycles through its own 512 keys of a 4,096-key ring, as
//! distinct clients would. Timed with `iter_custom`: every thread does `iters` requests and the
//! wall time of the slowest is the sample, so the throughput is the sum over the threads.
//!
//! Run with `cargo bench --bench shared`.
#![expect(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "bench setup on fixed, known-good inputs; a failure there is a bug to see at once"
)]

mod common;

use std::hint::black_box;
use std::sync::{Arc, Barrier, RwLock};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use keygate::{
    AccountId, Action, Catalog, Decision, Issuer, KeySpec, Keyring, RateLimit, Resource, Scope,
    SharedKeyring, Timestamp, issue,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

const KEYS: usize = 4_096;
const PER_THREAD: usize = 512;
const ENDPOINT: &str = "GET /recordings";

struct Fixture {
    keyring: Keyring,
    tokens: Vec<String>,
    read: Action,
    resource: Resource,
}

fn fixture() -> Fixture {
    let catalog = Catalog::read_write_delete();
    let mut rng = StdRng::seed_from_u64(7);
    let now = Timestamp::from_unix_seconds(1_000);
    let account = AccountId::from_u64(1);
    let owner = Issuer::user(account, Scope::Account, catalog.all()).with_user_id("owner");
    // A limit no bench run exhausts: the work of checking it is what is measured.
    let generous = RateLimit::per_period(u32::MAX, 1).expect("a valid limit");
    let mut keys = Vec::with_capacity(KEYS);
    let mut tokens = Vec::with_capacity(KEYS);
    while keys.len() < KEYS {
        let parent = issue(
            &catalog,
            &owner,
            KeySpec::named("p").rate_limit(generous),
            now,
            &mut rng,
        )
        .expect("issued");
        let as_parent = Issuer::key(&catalog, &parent.key, now).expect("an issuer");
        let child =
            issue(&catalog, &as_parent, KeySpec::named("c"), now, &mut rng).expect("issued");
        tokens.push(parent.token.expose_secret().to_owned());
        tokens.push(child.token.expose_secret().to_owned());
        keys.push(parent.key);
        keys.push(child.key);
    }
    let keyring = Keyring::from_keys(Default::default(), keys)
        .expect("distinct keys")
        .with_endpoints([ENDPOINT]);
    Fixture {
        keyring,
        tokens,
        read: Action::named(&catalog, "read").expect("read"),
        resource: Resource::listing(account),
    }
}

/// One request on the shared keyring.
fn shared_request(keys: &SharedKeyring, f: &Fixture, token: &str, now: Timestamp) -> Decision {
    let Ok(key) = keys.authenticate(token, now) else {
        return Decision::Deny(keygate::Deny::UnknownKey);
    };
    if key.check_rate_limit(now).is_err() {
        return Decision::Deny(keygate::Deny::UnknownKey);
    }
    let decision = key.authorize(f.read, &f.resource, now);
    key.record_usage(ENDPOINT, 200, now);
    decision
}

/// The same request inside one [`SharedKeyring::read`]: one snapshot load for the whole request,
/// no guard handed out, the way a server's middleware can run it.
fn shared_read_request(keys: &SharedKeyring, f: &Fixture, token: &str, now: Timestamp) -> Decision {
    keys.read(|ring| {
        let Ok(key) = ring.authenticate(token, now) else {
            return Decision::Deny(keygate::Deny::UnknownKey);
        };
        let id = key.id();
        if ring.check_rate_limit(id, now).is_err() {
            return Decision::Deny(keygate::Deny::UnknownKey);
        }
        let decision = ring.authorize_key(key, f.read, &f.resource, now);
        ring.record_usage(id, ENDPOINT, 200, now);
        decision
    })
}

/// The same request under a read lock of an `RwLock<Keyring>`.
fn locked_request(keys: &RwLock<Keyring>, f: &Fixture, token: &str, now: Timestamp) -> Decision {
    let ring = keys.read().expect("not poisoned");
    let Ok(key) = ring.authenticate(token, now) else {
        return Decision::Deny(keygate::Deny::UnknownKey);
    };
    let id = key.id();
    if ring.check_rate_limit(id, now).is_err() {
        return Decision::Deny(keygate::Deny::UnknownKey);
    }
    let decision = ring.authorize_key(key, f.read, &f.resource, now);
    ring.record_usage(id, ENDPOINT, 200, now);
    decision
}

/// Runs `iters` requests on each of `threads` threads at once; the slowest thread's time.
fn run_threads<F>(threads: usize, iters: u64, f: &Arc<Fixture>, request: F) -> Duration
where
    F: Fn(&Fixture, &str, Timestamp) -> Decision + Send + Sync + 'static + Clone,
{
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (barrier, f, request) = (Arc::clone(&barrier), Arc::clone(f), request.clone());
            std::thread::spawn(move || {
                let mine = &f.tokens[t * PER_THREAD % KEYS..][..PER_THREAD];
                let now = Timestamp::from_unix_seconds(2_000);
                barrier.wait();
                let start = Instant::now();
                for i in 0..iters {
                    let token = &mine[(i as usize) % PER_THREAD];
                    let _ = black_box(request(&f, black_box(token), now));
                }
                start.elapsed()
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("a bench thread"))
        .max()
        .unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let mut counts = vec![1, 2];
    if cores > 2 {
        counts.push(cores);
    }
    let base = fixture();
    let shared = Arc::new(SharedKeyring::new(base.keyring.clone()));
    let locked = Arc::new(RwLock::new(base.keyring.clone()));
    let f = Arc::new(base);
    let mut group = c.benchmark_group("shared_keyring");
    for &threads in &counts {
        group.throughput(Throughput::Elements(threads as u64));
        let keys = Arc::clone(&shared);
        group.bench_with_input(
            BenchmarkId::new("SharedKeyring", threads),
            &threads,
            |b, &n| {
                b.iter_custom(|iters| {
                    let keys = Arc::clone(&keys);
                    run_threads(n, iters, &f, move |f, token, now| {
                        shared_request(&keys, f, token, now)
                    })
                });
            },
        );
        let keys = Arc::clone(&shared);
        group.bench_with_input(
            BenchmarkId::new("SharedKeyring::read", threads),
            &threads,
            |b, &n| {
                b.iter_custom(|iters| {
                    let keys = Arc::clone(&keys);
                    run_threads(n, iters, &f, move |f, token, now| {
                        shared_read_request(&keys, f, token, now)
                    })
                });
            },
        );
        let keys = Arc::clone(&locked);
        group.bench_with_input(
            BenchmarkId::new("RwLock<Keyring>", threads),
            &threads,
            |b, &n| {
                b.iter_custom(|iters| {
                    let keys = Arc::clone(&keys);
                    run_threads(n, iters, &f, move |f, token, now| {
                        locked_request(&keys, f, token, now)
                    })
                });
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench
}
criterion_main!(benches);
