//! The hot paths never touch the heap: `Keyring::authorize`, `Keyring::authenticate` and
//! `authorize`, on hits and on every kind of miss.
//!
//! `allocation_counter` installs a counting global allocator for this test binary only and counts
//! per thread, so tests running in parallel do not disturb each other's counts.

use std::hint::black_box;
use std::time::Duration;

use keygate::{
    AccountId, Action, ApiKey, Catalog, Decision, Deny, KeyId, Keyring, Permit, ProjectId,
    Resource, Scope, Timestamp, authorize,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn allocations(f: impl FnOnce()) -> u64 {
    allocation_counter::measure(f).count_total
}

#[test]
fn the_counter_sees_allocations() {
    // Guards against a silently disabled counter making the other tests pass vacuously.
    assert!(allocations(|| drop(black_box(vec![1u8; 16]))) >= 1);
}

#[test]
fn keyring_lookups_do_not_allocate_on_hit_or_miss() {
    let mut rng = StdRng::seed_from_u64(1);
    let catalog = Catalog::read_write_delete();
    let account = AccountId::from_u64(1);
    let mut ring = Keyring::default();
    let mut tokens = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..1_000 {
        let token = ring.format().mint(&mut rng);
        let key = ApiKey::new(
            KeyId::random(&mut rng),
            "k",
            account,
            Scope::Account,
            catalog.expand(["read"]).unwrap(),
            token.hash(),
            Timestamp::EPOCH,
        );
        ids.push(key.id());
        ring.insert(key).unwrap();
        tokens.push(token);
    }
    let now = Timestamp::from_unix_seconds(100);
    let retired = ring.format().mint(&mut rng);
    let retired_id = {
        let key = ApiKey::new(
            KeyId::random(&mut rng),
            "rotated",
            account,
            Scope::Account,
            catalog.all(),
            retired.hash(),
            Timestamp::EPOCH,
        );
        let id = key.id();
        ring.insert(key).unwrap();
        ring.rotate(
            &Permit::operator_rotate(id),
            now,
            Some(Duration::from_secs(1)),
            &mut rng,
        )
        .unwrap();
        id
    };
    ring.revoke(&Permit::operator_revoke(ids[1]), now).unwrap();

    let read = Action::named(&catalog, "read").unwrap();
    let resource = Resource::in_project(account, ProjectId::from_u64(9));
    let unknown = ring.format().mint(&mut rng);
    let long = "x".repeat(10_000);
    let cases: [(&str, Decision); 7] = [
        (tokens[0].expose_secret(), Decision::Allow),
        (tokens[1].expose_secret(), Decision::Deny(Deny::Revoked)),
        (retired.expose_secret(), Decision::Allow),
        (unknown.expose_secret(), Decision::Deny(Deny::UnknownKey)),
        ("idc_short", Decision::Deny(Deny::UnknownKey)),
        (&long, Decision::Deny(Deny::UnknownKey)),
        ("", Decision::Deny(Deny::UnknownKey)),
    ];
    for (token, expected) in cases {
        let mut decision = None;
        let count = allocations(|| {
            decision = Some(ring.authorize(black_box(token), read, &resource, now));
        });
        assert_eq!(decision, Some(expected));
        assert_eq!(count, 0, "Keyring::authorize allocated for {expected:?}");

        let count = allocations(|| {
            let _ = black_box(ring.authenticate(black_box(token), now));
        });
        assert_eq!(count, 0, "Keyring::authenticate allocated for {expected:?}");
    }
    // After the grace period the retired token is a miss, still without allocating.
    let later = now + Duration::from_secs(1);
    let count = allocations(|| {
        let decision = ring.authorize(retired.expose_secret(), read, &resource, later);
        assert_eq!(decision, Decision::Deny(Deny::UnknownKey));
    });
    assert_eq!(count, 0);
    assert!(ring.get(retired_id).is_some());
}

#[test]
fn authorize_does_not_allocate() {
    let catalog = Catalog::read_write_delete();
    let account = AccountId::from_u64(1);
    let project = ProjectId::from_u64(2);
    let key = ApiKey::new(
        KeyId::from_bytes([3; 16]),
        "k",
        account,
        Scope::Project(project),
        catalog.expand(["read"]).unwrap(),
        keygate::TokenHash::of("idc_x"),
        Timestamp::EPOCH,
    );
    let now = Timestamp::from_unix_seconds(1);
    let read = Action::named(&catalog, "read").unwrap();
    let write = Action::named(&catalog, "write").unwrap();
    for (action, resource) in [
        (read, Resource::in_project(account, project)),
        (write, Resource::in_project(account, project)),
        (read, Resource::in_project(account, ProjectId::from_u64(3))),
        (read, Resource::in_project(AccountId::from_u64(9), project)),
        (write.at_account_level(), Resource::account(account)),
    ] {
        let count = allocations(|| {
            let _ = black_box(authorize(black_box(&key), action, &resource, now));
        });
        assert_eq!(count, 0, "{action:?} on {resource:?}");
    }
}

/// The shared keyring's whole request path: authenticate, rate-limit (with a rate-limited
/// parent up the chain), record usage, authorize. No allocation, as for the plain keyring.
#[test]
fn the_shared_keyring_request_path_does_not_allocate() {
    let catalog = Catalog::read_write_delete();
    let mut rng = StdRng::seed_from_u64(8);
    let now = Timestamp::from_unix_seconds(100);
    let owner = keygate::Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all());
    let limit = keygate::RateLimit::per_period(1_000, 1).unwrap();
    let parent = keygate::issue(
        &catalog,
        &owner,
        keygate::KeySpec::named("p").rate_limit(limit),
        now,
        &mut rng,
    )
    .unwrap();
    let as_parent = keygate::Issuer::key(&catalog, &parent.key, now).unwrap();
    let child = keygate::issue(
        &catalog,
        &as_parent,
        keygate::KeySpec::named("c"),
        now,
        &mut rng,
    )
    .unwrap();
    let ring = Keyring::from_keys(Default::default(), [parent.key, child.key])
        .unwrap()
        .with_endpoints(["GET /recordings"]);
    let shared = keygate::SharedKeyring::new(ring);
    let read = Action::named(&catalog, "read").unwrap();
    let resource = Resource::in_project(AccountId::from_u64(1), ProjectId::from_u64(2));
    let token = child.token.expose_secret();
    // arc-swap registers each thread once, on its first load (one allocation per thread, ever).
    drop(shared.authenticate(token, now));
    let count = allocations(|| {
        let key = shared.authenticate(black_box(token), now).unwrap();
        key.check_rate_limit(now).unwrap();
        key.record_usage("GET /recordings", 200, now);
        assert_eq!(key.authorize(read, &resource, now), Decision::Allow);
        assert_eq!(
            shared.authorize(black_box(token), read, &resource, now),
            Decision::Allow
        );
    });
    assert_eq!(count, 0);
}
