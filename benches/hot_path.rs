//! Criterion benches of keygate's per-request hot paths and of the work done once per key.
//!
//! `authorize` is timed once for Allow, once for every deny reason it can return, and for actions
//! needing all of or any of several permissions: the function is constant time, so all ten should
//! read the same. `TokenHash::of` is the SHA-256 every
//! presented token costs. Catalog construction and pattern expansion use seed 004's 101
//! fine-grained permission names; record serde is a seed-004 key to and from JSON.
//!
//! Run with `cargo bench --bench hot_path`.
#![expect(
    clippy::expect_used,
    reason = "bench setup on fixed, known-good inputs; a failure there is a bug to see at once"
)]

mod common;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use keygate::{
    AccountId, Action, ApiKey, ApiKeyRecord, Catalog, KeyId, ProjectId, Resource, Scope, Timestamp,
    TokenFormat, TokenHash, authorize,
};

/// Seed 004's permission names, verbatim. Accepts a bare JSON array or a catalog spec object
/// (`{"permissions": [...]}`), so the bench reads whichever form the test data settles on.
fn seed_004_names() -> Vec<String> {
    let text = include_str!("../tests/data/seed_004_permissions.json");
    let value: serde_json::Value = serde_json::from_str(text).expect("seed 004 list is JSON");
    let list = value.get("permissions").unwrap_or(&value).clone();
    serde_json::from_value(list).expect("seed 004 list is an array of names")
}

fn seed_004_catalog() -> Catalog {
    Catalog::new(seed_004_names()).expect("seed 004 names form a catalog")
}

fn bench_authorize(c: &mut Criterion) {
    let catalog = Catalog::read_write_delete();
    let acct = AccountId::from_u64(1);
    let project = ProjectId::from_u64(42);
    let read_write = catalog.expand(["read", "write"]).expect("known names");
    let created = Timestamp::from_unix_seconds(1_000);
    let now = Timestamp::from_unix_seconds(2_000);
    let scoped = ApiKey::new(
        KeyId::from_bytes([7; 16]),
        "bench",
        acct,
        Scope::Project(project),
        read_write,
        TokenHash::of("idc_bench"),
        created,
    )
    .with_expiry(Timestamp::from_unix_seconds(10_000));
    let mut revoked = scoped.clone();
    revoked.revoke(created);
    let expired = scoped.clone().with_expiry(now);

    let write = Action::named(&catalog, "write").expect("known");
    let delete = Action::named(&catalog, "delete").expect("known");
    let own = Resource::in_project(acct, project);
    // Several permissions: all of read and write (held), any of write and delete (write held),
    // all of write and delete (delete lacking).
    let read_and_write = Action::all_of_named(&catalog, ["read", "write"]).expect("known");
    let write_or_delete = Action::any_of_named(&catalog, ["write", "delete"]).expect("known");
    let write_and_delete = Action::all_of_named(&catalog, ["write", "delete"]).expect("known");
    let cases: [(&str, &ApiKey, Action, Resource); 10] = [
        ("allow", &scoped, write, own),
        ("deny_revoked", &revoked, write, own),
        ("deny_expired", &expired, write, own),
        (
            "deny_other_account",
            &scoped,
            write,
            Resource::in_project(AccountId::from_u64(2), project),
        ),
        (
            "deny_account_level_action",
            &scoped,
            write.at_account_level(),
            Resource::account(acct),
        ),
        (
            "deny_out_of_scope",
            &scoped,
            write,
            Resource::in_project(acct, ProjectId::from_u64(43)),
        ),
        ("deny_missing_permission", &scoped, delete, own),
        ("allow_all_of", &scoped, read_and_write, own),
        ("allow_any_of", &scoped, write_or_delete, own),
        ("deny_all_of", &scoped, write_and_delete, own),
    ];

    let mut group = c.benchmark_group("authorize");
    for (name, key, action, resource) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| {
                authorize(
                    black_box(key),
                    black_box(*action),
                    black_box(resource),
                    black_box(now),
                )
            });
        });
    }
    group.finish();
}

fn bench_token_hash(c: &mut Criterion) {
    // A default-format token: `idc_` and 32 alphanumerics, 36 bytes, one SHA-256 block.
    let token = "idc_0123456789abcdefghijABCDEFGHIJ01";
    c.bench_function("token_hash/of", |b| {
        b.iter(|| TokenHash::of(black_box(token)));
    });
    let format = TokenFormat::default();
    c.bench_function("token_format/matches", |b| {
        b.iter(|| bool::from(format.matches(black_box(token))));
    });
    let hash = TokenHash::of(token);
    c.bench_function("token_hash/verify", |b| {
        b.iter(|| bool::from(black_box(&hash).verify(black_box(token))));
    });
}

fn bench_catalog(c: &mut Criterion) {
    let names = seed_004_names();
    let catalog = seed_004_catalog();
    let mut group = c.benchmark_group("catalog_seed_004");
    group.bench_function("new_101_names", |b| {
        b.iter(|| Catalog::new(black_box(&names).iter().map(String::as_str)));
    });
    group.bench_function("expand_star", |b| {
        b.iter(|| catalog.expand(black_box(["*"])));
    });
    group.bench_function("expand_resource_wildcards", |b| {
        b.iter(|| catalog.expand(black_box(["agents:*", "calls:*", "kb:*"])));
    });
    group.bench_function("expand_action_wildcard", |b| {
        b.iter(|| catalog.expand(black_box(["*:read"])));
    });
    group.bench_function("expand_exact_names", |b| {
        b.iter(|| {
            catalog.expand(black_box([
                "agents:read",
                "calls:recording-download",
                "speech-filter:preview",
            ]))
        });
    });
    group.bench_function("resolve_all_101", |b| {
        b.iter(|| catalog.resolve(black_box(&names)));
    });
    group.finish();
}

fn bench_record_serde(c: &mut Criterion) {
    let catalog = seed_004_catalog();
    let key = ApiKey::new(
        KeyId::from_bytes([9; 16]),
        "Backend",
        AccountId::from_u64(7),
        Scope::Project(ProjectId::from_u64(42)),
        catalog
            .expand(["agents:*", "calls:*", "*:read"])
            .expect("patterns match"),
        TokenHash::of("idc_0123456789abcdefghijABCDEFGHIJ01"),
        Timestamp::from_unix_seconds(1_776_247_200),
    )
    .with_expiry(Timestamp::from_unix_seconds(1_807_783_200));
    let record = key.to_record(&catalog);
    let json = serde_json::to_string(&record).expect("records serialize");

    let mut group = c.benchmark_group("record_seed_004");
    group.bench_function("to_record", |b| {
        b.iter(|| black_box(&key).to_record(&catalog));
    });
    group.bench_function("serialize_json", |b| {
        b.iter(|| serde_json::to_string(black_box(&record)));
    });
    group.bench_function("deserialize_json", |b| {
        b.iter(|| serde_json::from_str::<ApiKeyRecord>(black_box(&json)));
    });
    group.bench_function("from_record", |b| {
        b.iter(|| ApiKey::from_record(black_box(record.clone()), &catalog));
    });
    group.bench_function("json_to_key", |b| {
        b.iter(|| {
            let record: ApiKeyRecord =
                serde_json::from_str(black_box(&json)).expect("record parses");
            ApiKey::from_record(record, &catalog)
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_authorize, bench_token_hash, bench_catalog, bench_record_serde
}
criterion_main!(benches);
