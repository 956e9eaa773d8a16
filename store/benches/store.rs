//! The store's two costs that matter: a durable key change (staged, persisted with
//! `synchronous=FULL`, applied), and the start-up load of a million keys.
//!
//! ```sh
//! cargo bench -p keygate-store                      # both groups (the million-key fixture takes a minute to build)
//! cargo bench -p keygate-store -- durable_change    # one group
//! KEYGATE_STORE_BENCH_KEYS=100000 cargo bench -p keygate-store -- startup
//! ```
//!
//! The databases live in temporary directories (on the same disk as `/tmp`) and are removed
//! at the end.
#![expect(
    clippy::expect_used,
    reason = "bench setup and bodies on known-good inputs; a failure there is a bug to see at once"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use keygate::{
    AccountId, ApiKey, Catalog, IssuedKey, Issuer, KeySpec, Keyring, Permit, ProjectId, RateLimit,
    Scope, Timestamp, TokenFormat, Usage, issue,
};
use keygate_store::{KeyStore, SqliteStore, load_keyring};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn catalog() -> Catalog {
    Catalog::read_write_delete()
}

fn now() -> Timestamp {
    Timestamp::from_unix_seconds(1_800_000_000)
}

/// A key as a server issues it: a name, tags, a creator, half of them project-scoped, one in
/// ten rate-limited.
fn issue_key(catalog: &Catalog, owner: &Issuer, i: u64, rng: &mut StdRng) -> ApiKey {
    let mut spec = KeySpec::named(format!("key {i}"))
        .permissions(["read", "write"])
        .tags(["bench"]);
    if i.is_multiple_of(2) {
        spec = spec.project(ProjectId::from_u64(i % 1_000));
    }
    if i.is_multiple_of(10) {
        spec = spec.rate_limit(RateLimit::per_period(100, 60).expect("a valid limit"));
    }
    let IssuedKey { key, .. } = issue(catalog, owner, spec, now(), rng).expect("issue");
    key
}

fn owner(catalog: &Catalog) -> Issuer {
    Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all()).with_user_id("owner")
}

fn durable_changes(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("changes.db")).expect("store");
    let catalog = catalog();
    let owner = owner(&catalog);
    let mut rng = StdRng::seed_from_u64(1);
    let mut keyring = Keyring::default();
    let mut i = 0u64;

    let mut group = c.benchmark_group("durable_change");
    group.throughput(Throughput::Elements(1));
    group.bench_function("insert", |b| {
        b.iter(|| {
            i += 1;
            let key = issue_key(&catalog, &owner, i, &mut rng);
            let staged = keyring.stage_insert(key).expect("stage");
            store.persist(&catalog, staged.change()).expect("persist");
            staged.apply();
        });
    });
    // The rotated key, inserted here so that the rotate bench also runs alone.
    let rotated = issue_key(&catalog, &owner, 0, &mut rng);
    let target = rotated.id();
    let staged = keyring.stage_insert(rotated).expect("stage");
    store.persist(&catalog, staged.change()).expect("persist");
    staged.apply();
    let permit = Permit::operator_rotate(target);
    group.bench_function("rotate", |b| {
        b.iter(|| {
            let staged = keyring
                .stage_rotate(&permit, now(), None, &mut rng)
                .expect("stage");
            store.persist(&catalog, staged.change()).expect("persist");
            black_box(staged.apply());
        });
    });
    group.finish();
}

/// How many keys the start-up bench loads: `KEYGATE_STORE_BENCH_KEYS`, or a million.
fn startup_keys() -> u64 {
    std::env::var("KEYGATE_STORE_BENCH_KEYS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000)
}

fn startup(c: &mut Criterion) {
    let n = startup_keys();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("startup.db");
    let catalog = catalog();
    {
        // The fixture: n keys in one transaction, usage for one key in ten and a limiter for
        // each rate-limited key that was used, as a server that has run a while leaves them.
        let owner = owner(&catalog);
        let mut rng = StdRng::seed_from_u64(2);
        let keys: Vec<ApiKey> = (0..n)
            .map(|i| issue_key(&catalog, &owner, i, &mut rng))
            .collect();
        let store = SqliteStore::open(&path).expect("store");
        let started = std::time::Instant::now();
        store.import(&catalog, &keys).expect("import");
        eprintln!(
            "startup fixture: {n} keys imported in {:.1?}",
            started.elapsed()
        );
        let ring = Keyring::from_keys(TokenFormat::default(), keys)
            .expect("store")
            .with_endpoints(["GET /recordings", "POST /recordings"]);
        for (i, key) in ring.iter().enumerate() {
            if i.is_multiple_of(10) {
                ring.record_usage(key.id(), "GET /recordings", 200, now());
                let _ = ring.check_rate_limit(key.id(), now());
            }
        }
        let deltas: Vec<(keygate::KeyId, Usage)> = ring.flush_usage();
        store.add_usage(&deltas).expect("store");
        let limiters = keygate_store::rate_limit_states(&ring);
        store.save_rate_limits(&limiters).expect("store");
        store.close().expect("store");
        eprintln!(
            "startup fixture: {} usage rows, {} limiter rows",
            deltas.len(),
            limiters.len()
        );
    }

    let mut group = c.benchmark_group("startup");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.bench_function(format!("open_and_load_{n}"), |b| {
        // Dropping a million keys (about half a second) is no part of a start-up.
        b.iter_with_large_drop(|| {
            let store = SqliteStore::open(&path).expect("store");
            let keyring = load_keyring(&store, &catalog, TokenFormat::default()).expect("load");
            assert_eq!(keyring.len() as u64, n);
            keyring
        });
    });
    // The share of the SQLite scan and the JSON parse in the above: every record read and
    // parsed, nothing built.
    group.bench_function(format!("scan_records_{n}"), |b| {
        b.iter(|| {
            let store = SqliteStore::open(&path).expect("store");
            let mut count = 0u64;
            store
                .load_keys(&mut |stored| {
                    black_box(stored);
                    count += 1;
                    Ok(())
                })
                .expect("scan");
            count
        });
    });
    group.finish();
}

criterion_group!(benches, durable_changes, startup);
criterion_main!(benches);
