//! Criterion benches of keygate's per-request hot paths and of the work done once per key.
//!
//! `authorize` is timed once for Allow, once for every deny reason it can return, and for actions
//! needing all of or any of several permissions, and with every restriction at once (scope, expiry,
//! a full set of address ranges, all of two permissions): the function is constant time, so all should
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
use std::net::IpAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use keygate::{
    AccountId, Action, AddressRange, ApiKey, ApiKeyRecord, Catalog, Credits, KeyId, Keyring,
    MAX_ADDRESS_RANGES, MAX_NAMED_LIMITS, NamedLimit, ProjectId, RateLimit, Resource, Scope,
    Timestamp, TokenFormat, TokenHash, authorize,
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
    // Every restriction at once: a project scope, an expiry, a full set of address ranges (the
    // client in the last one), and an action needing all of two permissions.
    let ranges: Vec<AddressRange> = (0..MAX_ADDRESS_RANGES)
        .map(|i| format!("10.{i}.0.0/16").parse().expect("valid range"))
        .collect();
    let restricted = scoped
        .clone()
        .with_allowed_addresses(&ranges)
        .expect("at most MAX_ADDRESS_RANGES");
    let inside: IpAddr = format!("10.{}.1.2", MAX_ADDRESS_RANGES - 1)
        .parse()
        .expect("valid address");
    let outside: IpAddr = "192.0.2.1".parse().expect("valid address");
    let cases: [(&str, &ApiKey, Action, Resource); 12] = [
        (
            "allow_every_restriction",
            &restricted,
            read_and_write,
            own.from_address(inside),
        ),
        (
            "deny_address_every_restriction",
            &restricted,
            read_and_write,
            own.from_address(outside),
        ),
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

/// `Keyring::admit` on a key charged to every budget it can carry alone: its own rate limit, a
/// full set of named limits, a full set of account limits, and credits with a refill. The
/// limits are loose enough that every request is admitted (the refusal path only adds refunds).
fn bench_admit(c: &mut Criterion) {
    let account = AccountId::from_u64(1);
    let loose = RateLimit::per_period(u32::MAX, 1).expect("valid");
    let named: Vec<NamedLimit> = (0..MAX_NAMED_LIMITS)
        .map(|i| NamedLimit::new(format!("l{i}"), loose).expect("valid"))
        .collect();
    let key = ApiKey::new(
        KeyId::from_bytes([7; 16]),
        "bench",
        account,
        Scope::Account,
        Default::default(),
        TokenHash::of("idc_bench"),
        Timestamp::from_unix_seconds(1_000),
    )
    .with_rate_limit(loose)
    .with_credits(
        Credits::new(u32::MAX)
            .with_refill(u32::MAX, 1)
            .expect("valid"),
    )
    .with_limits(named.clone())
    .expect("at most MAX_NAMED_LIMITS");
    let id = key.id();
    let mut keyring = Keyring::from_keys(TokenFormat::default(), [key]).expect("one key");
    keyring
        .set_account_limits(account, named)
        .expect("at most MAX_NAMED_LIMITS");
    let mut micros = 2_000_000_000;
    c.bench_function("admit/every_budget", |b| {
        b.iter(|| {
            // A microsecond on per request: every budget stays far from its limit.
            micros += 1;
            keyring.admit(black_box(id), Timestamp::from_unix_micros(micros))
        });
    });
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_authorize, bench_admit, bench_token_hash, bench_catalog, bench_record_serde
}
criterion_main!(benches);
