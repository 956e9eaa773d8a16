//! Criterion benches of the embedded store: raw token to decision through [`Keyring::authorize`],
//! on a hit and on a miss, with 1,000 and 1,000,000 keys; and what a writer of a
//! [`SharedKeyring`] holds its lock for to create one key, with 1,000 to 1,000,000 keys stored.
//!
//! A hit cycles through 4,096 stored tokens and a miss through 4,096 well-formed tokens that no
//! key has, so successive lookups walk different paths of the index as real traffic would (one
//! token repeated would keep its whole search path in L1). The keyring is built with
//! [`Keyring::from_keys`], one sort for the million.
//!
//! Run with `cargo bench --bench keyring`.
#![expect(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "bench setup on fixed, known-good inputs; a failure there is a bug to see at once"
)]

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use keygate::{
    AccountId, Action, ApiKey, Catalog, Decision, KeyId, Keyring, ProjectId, Resource, Scope,
    SharedKeyring, Timestamp, TokenFormat,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// How many distinct tokens each hit or miss bench cycles through.
const SAMPLE: usize = 4_096;

struct Fixture {
    ring: Keyring,
    hits: Vec<String>,
    misses: Vec<String>,
}

/// `count` keys of 100 accounts, a third project-scoped, all holding read and write; returns the
/// keyring, tokens of `SAMPLE` stored keys spread over the table, and `SAMPLE` unknown tokens.
fn fixture(count: usize, catalog: &Catalog) -> Fixture {
    let format = TokenFormat::default();
    let mut rng = StdRng::seed_from_u64(count as u64);
    let permissions = catalog.expand(["read", "write"]).expect("known names");
    let created = Timestamp::from_unix_seconds(1_000);
    let stride = (count / SAMPLE).max(1);
    let mut hits = Vec::with_capacity(SAMPLE);
    let keys: Vec<ApiKey> = (0..count)
        .map(|n| {
            let token = format.mint(&mut rng);
            if n % stride == 0 && hits.len() < SAMPLE {
                hits.push(token.expose_secret().to_owned());
            }
            let account = AccountId::from_u64((n % 100) as u64);
            let scope = if n % 3 == 0 {
                Scope::Project(ProjectId::from_u64((n % 1_000) as u64))
            } else {
                Scope::Account
            };
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(n as u64).to_be_bytes());
            ApiKey::new(
                KeyId::from_bytes(id),
                "bench",
                account,
                scope,
                permissions,
                token.hash(),
                created,
            )
        })
        .collect();
    let ring = Keyring::from_keys(format.clone(), keys).expect("random tokens do not collide");
    let misses = (0..SAMPLE)
        .map(|_| format.mint(&mut rng).expose_secret().to_owned())
        .collect();
    Fixture { ring, hits, misses }
}

fn bench_keyring(c: &mut Criterion) {
    let catalog = Catalog::read_write_delete();
    let read = Action::named(&catalog, "read").expect("known");
    let now = Timestamp::from_unix_seconds(2_000);
    let mut group = c.benchmark_group("keyring_authorize");
    for count in [1_000usize, 1_000_000] {
        let fx = fixture(count, &catalog);
        // Each token's own account and an in-account listing: a hit is allowed.
        let resource = |token: &str| -> Resource {
            let key = fx.ring.authenticate(token, now).expect("a stored token");
            Resource::listing(key.account())
        };
        let hit_resources: Vec<Resource> = fx.hits.iter().map(|t| resource(t)).collect();
        assert!(
            fx.hits
                .iter()
                .zip(&hit_resources)
                .all(|(t, r)| fx.ring.authorize(t, read, r, now) == Decision::Allow)
        );
        let miss_resource = Resource::listing(AccountId::from_u64(1));

        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("hit", count), |b| {
            b.iter(|| {
                i = (i + 1) % fx.hits.len();
                fx.ring.authorize(
                    black_box(&fx.hits[i]),
                    read,
                    black_box(&hit_resources[i]),
                    now,
                )
            });
        });
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("miss", count), |b| {
            b.iter(|| {
                i = (i + 1) % fx.misses.len();
                fx.ring.authorize(
                    black_box(&fx.misses[i]),
                    read,
                    black_box(&miss_resource),
                    now,
                )
            });
        });
    }
    group.finish();
}

/// One key creation on a [`SharedKeyring`] of `count` keys: `stage_insert` and `apply`, the whole
/// time a server holds the writer lock for it (its store's save aside). Only the insert is timed;
/// each new key is removed again, untimed, so the keyring keeps its size.
fn bench_insert(c: &mut Criterion) {
    let catalog = Catalog::read_write_delete();
    let mut group = c.benchmark_group("shared_keyring_insert");
    for count in [1_000usize, 100_000, 1_000_000] {
        let keys = SharedKeyring::new(fixture(count, &catalog).ring);
        let format = TokenFormat::default();
        let mut rng = StdRng::seed_from_u64(99);
        let permissions = catalog.expand(["read"]).expect("known names");
        let mut serial = u64::MAX;
        group.bench_function(BenchmarkId::from_parameter(count), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    serial -= 1;
                    let mut id = [0u8; 16];
                    id[..8].copy_from_slice(&serial.to_be_bytes());
                    let id = KeyId::from_bytes(id);
                    let key = ApiKey::new(
                        id,
                        "new",
                        AccountId::from_u64(1),
                        Scope::Account,
                        permissions,
                        format.mint(&mut rng).hash(),
                        Timestamp::from_unix_seconds(1_000),
                    );
                    let mut writer = keys.writer();
                    let start = Instant::now();
                    writer.stage_insert(key).expect("a new key").apply();
                    spent += start.elapsed();
                    writer.stage_remove(id).expect("just inserted").apply();
                }
                spent
            });
        });
        assert_eq!(keys.snapshot().len(), count);
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_keyring, bench_insert
}
criterion_main!(benches);
