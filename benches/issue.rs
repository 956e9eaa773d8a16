//! Criterion benches of issuing: validation, the no-escalation checks, minting the token and
//! hashing it, for the coarse catalog and for seed 004's fine-grained one with patterns.
//!
//! Run with `cargo bench --bench issue`.
#![expect(
    clippy::expect_used,
    reason = "bench setup on fixed, known-good inputs; a failure there is a bug to see at once"
)]

mod common;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use keygate::{AccountId, Catalog, Issuer, KeySpec, ProjectId, Scope, Timestamp, issue};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn seed_004_catalog() -> Catalog {
    let text = include_str!("../tests/data/seed_004_permissions.json");
    let value: serde_json::Value = serde_json::from_str(text).expect("seed 004 list is JSON");
    let list = value.get("permissions").unwrap_or(&value).clone();
    let names: Vec<String> = serde_json::from_value(list).expect("an array of names");
    Catalog::new(names).expect("seed 004 names form a catalog")
}

fn bench_issue(c: &mut Criterion) {
    let acct = AccountId::from_u64(1);
    let project = ProjectId::from_u64(42);
    let now = Timestamp::from_unix_seconds(1_776_247_200);
    let mut rng = StdRng::seed_from_u64(4);
    let mut group = c.benchmark_group("issue");

    let coarse = Catalog::read_write_delete();
    let admin =
        Issuer::user_with_role(&coarse, acct, Scope::Account, "admin").expect("a known role");
    group.bench_function("coarse_project_key", |b| {
        b.iter(|| {
            let spec = KeySpec::named("Uploader")
                .project(project)
                .permissions(["read"])
                .ttl_seconds(86_400);
            issue(&coarse, black_box(&admin), spec, now, &mut rng)
        });
    });

    let fine = seed_004_catalog();
    let owner = Issuer::user(acct, Scope::Account, fine.all());
    group.bench_function("seed_004_patterns", |b| {
        b.iter(|| {
            let spec = KeySpec::named("Agent runner")
                .project(project)
                .permissions(["agents:*", "workflows:*", "*:read"])
                .ttl_seconds(86_400);
            issue(&fine, black_box(&owner), spec, now, &mut rng)
        });
    });
    group.bench_function("seed_004_escalation_refused", |b| {
        let scoped = Issuer::user(
            acct,
            Scope::Project(project),
            fine.expand(["agents:*"]).expect("matches"),
        );
        b.iter(|| {
            let spec = KeySpec::named("too much").permissions(["calls:*"]);
            issue(&fine, black_box(&scoped), spec, now, &mut rng)
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_issue
}
criterion_main!(benches);
