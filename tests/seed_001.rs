//! Seed 001, IdentityCall "Authentication": key format, read/write/delete mapped to methods,
//! project scoping, expiry, rotation, revocation, and the 401/403/429 bodies.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed unwrap is a failed test"
)]

use std::time::Duration;

use keygate::Refusal;
use keygate::{
    AccountId, Action, ApiKey, Catalog, Decision, Deny, IssuedKey, Issuer, KeySpec, ProjectId,
    RateLimit, RateLimitState, Resource, Scope, Timestamp, TokenFormat, TokenHash, authorize,
    issue,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

fn acct() -> AccountId {
    AccountId::from_u64(1)
}

fn now() -> Timestamp {
    "2026-04-15T10:00:00Z".parse().unwrap()
}

fn mint(catalog: &Catalog, spec: KeySpec, seed: u64) -> IssuedKey {
    let owner = Issuer::user_with_role(catalog, acct(), Scope::Account, "owner").unwrap();
    issue(
        catalog,
        &owner,
        spec,
        now(),
        &mut StdRng::seed_from_u64(seed),
    )
    .unwrap()
}

fn recordings() -> Resource {
    Resource::in_project(acct(), ProjectId::from_u64(7))
}

#[test]
fn keys_are_idc_and_32_alphanumerics_shown_once() {
    let catalog = Catalog::read_write_delete();
    for seed in 0..50 {
        let issued = mint(&catalog, KeySpec::named("Production Backend"), seed);
        let secret = issued.token.expose_secret();
        let body = secret.strip_prefix("idc_").unwrap();
        assert_eq!(body.len(), 32);
        assert!(body.bytes().all(|b| b.is_ascii_alphanumeric()), "{secret}");
        assert!(bool::from(TokenFormat::default().matches(secret)));
        // Only the hash is kept: the record and the logs never hold the secret.
        let record = serde_json::to_string(&issued.key.to_record(&catalog)).unwrap();
        assert!(!record.contains(body));
        assert!(!format!("{:?} {}", issued.token, issued.token).contains(body));
        assert_eq!(issued.key.token_hash(), TokenHash::of(secret));
    }
}

#[test]
fn methods_map_to_read_write_delete_with_the_seed_messages() {
    let catalog = Catalog::read_write_delete();
    // Built by hand: issuing refuses an explicitly empty permission list.
    let none = ApiKey::new(
        keygate::KeyId::from_bytes([1; 16]),
        "n",
        acct(),
        Scope::Account,
        keygate::PermissionSet::EMPTY,
        TokenHash::of("idc_none"),
        now(),
    );
    for (method, message) in [
        ("GET", "Read permission required"),
        ("POST", "Write permission required"),
        ("PATCH", "Write permission required"),
        ("DELETE", "Delete permission required"),
    ] {
        let action = Action::for_method(&catalog, method).unwrap();
        let Decision::Deny(deny) = authorize(&none, action, &recordings(), now()) else {
            panic!("{method} allowed without permissions");
        };
        assert_eq!(deny.status(), 403);
        assert_eq!(
            serde_json::to_value(deny.body(&catalog)).unwrap(),
            json!({ "error": message })
        );
    }
}

#[test]
fn the_permission_combinations_table() {
    let catalog = Catalog::read_write_delete();
    // Use case: (read, write, delete).
    let table: [(&str, [bool; 3]); 4] = [
        ("Analytics dashboard", [true, false, false]),
        ("Backend service (upload + read)", [true, true, false]),
        ("Full access", [true, true, true]),
        ("Upload only", [false, true, false]),
    ];
    for (seed, (name, grants)) in (0..).zip(table) {
        let wanted: Vec<&str> = ["read", "write", "delete"]
            .into_iter()
            .zip(grants)
            .filter_map(|(p, g)| g.then_some(p))
            .collect();
        let key = mint(&catalog, KeySpec::named(name).permissions(wanted), seed).key;
        for (method, granted) in [
            ("GET", grants[0]),
            ("POST", grants[1]),
            ("PATCH", grants[1]),
            ("DELETE", grants[2]),
        ] {
            let action = Action::for_method(&catalog, method).unwrap();
            assert_eq!(
                authorize(&key, action, &recordings(), now()).is_allowed(),
                granted,
                "{name}: {method}"
            );
        }
    }
}

#[test]
fn project_scoping() {
    let catalog = Catalog::read_write_delete();
    let read = Action::for_method(&catalog, "GET").unwrap();
    let (p1, p2) = (ProjectId::from_u64(1), ProjectId::from_u64(2));
    let wide = mint(&catalog, KeySpec::named("w").permissions(["read"]), 0).key;
    let scoped = mint(
        &catalog,
        KeySpec::named("s").permissions(["read"]).project(p1),
        1,
    )
    .key;
    for p in [p1, p2] {
        let r = Resource::in_project(acct(), p);
        assert!(authorize(&wide, read, &r, now()).is_allowed());
    }
    assert!(authorize(&scoped, read, &Resource::in_project(acct(), p1), now()).is_allowed());
    let other = authorize(&scoped, read, &Resource::in_project(acct(), p2), now());
    assert_eq!(other, Decision::Deny(Deny::OutOfScope));
    assert_eq!(
        serde_json::to_value(Deny::OutOfScope.body(&catalog)).unwrap(),
        json!({"error": "Not found"})
    );
    // GET /recordings lists across projects; the server filters by scope.
    assert!(authorize(&scoped, read, &Resource::listing(acct()), now()).is_allowed());
    assert!(scoped.scope().reaches(p1) && !scoped.scope().reaches(p2));
}

#[test]
fn an_expired_key_is_invalid_and_can_be_warned_about() {
    let catalog = Catalog::read_write_delete();
    let week = Duration::from_secs(7 * 86_400);
    let key = mint(&catalog, KeySpec::named("contractor").ttl(week), 0).key;
    let read = Action::for_method(&catalog, "GET").unwrap();
    assert!(authorize(&key, read, &recordings(), now()).is_allowed());
    assert!(key.expires_within(now(), week));
    assert!(!key.expires_within(now(), week / 2));
    let later = now() + week;
    assert_eq!(
        authorize(&key, read, &recordings(), later),
        Decision::Deny(Deny::Expired)
    );
    assert_eq!(
        serde_json::to_value(Deny::Expired.body(&catalog)).unwrap(),
        json!({"error": "Invalid or expired API key"})
    );
    assert_eq!(Deny::Expired.status(), 401);
}

#[test]
fn rotation_invalidates_the_old_key_at_once() {
    let catalog = Catalog::read_write_delete();
    let IssuedKey { mut key, token } = mint(&catalog, KeySpec::named("k"), 0);
    let old = token.expose_secret().to_owned();
    let new = key
        .rotate(
            &TokenFormat::default(),
            now(),
            None,
            &mut StdRng::seed_from_u64(9),
        )
        .unwrap();
    assert!(!bool::from(key.token_hash().verify(&old)));
    assert!(bool::from(key.token_hash().verify(new.expose_secret())));
    assert!(key.retired_secret().is_none());
}

#[test]
fn revocation_is_immediate() {
    let catalog = Catalog::read_write_delete();
    let mut key: ApiKey = mint(&catalog, KeySpec::named("k"), 0).key;
    let read = Action::for_method(&catalog, "GET").unwrap();
    key.revoke(now());
    let decision = authorize(&key, read, &recordings(), now());
    assert_eq!(decision, Decision::Deny(Deny::Revoked));
    assert_eq!(Deny::Revoked.status(), 401);
}

#[test]
fn rate_limiting_answers_429_with_retry_after() {
    let catalog = Catalog::read_write_delete();
    let limit = RateLimit::per_period(1, 60).unwrap();
    let key = mint(&catalog, KeySpec::named("k").rate_limit(limit), 0).key;
    let limit = key.rate_limit().unwrap();
    let mut state = RateLimitState::default();
    assert!(limit.check(&mut state, now()).is_ok());
    let refused = limit.check(&mut state, now()).unwrap_err();
    assert_eq!(refused.status(), 429);
    assert_eq!(
        serde_json::to_value(refused.body(&Catalog::read_write_delete())).unwrap(),
        json!({"error": "Rate limit exceeded", "retry_after": 60})
    );
    assert!(
        limit
            .check(&mut state, now() + Duration::from_secs(60))
            .is_ok()
    );
}
