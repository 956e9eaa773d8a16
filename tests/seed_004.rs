//! Seed 004, a voice-agent platform's "Create API key": the fine-grained permission list as a
//! catalog, a key's permissions as a frozen subset of its creator's (defaulting to the full set),
//! expiry, rate-limit configuration, and the key value returned once.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed unwrap is a failed test"
)]

use std::time::Duration;

use keygate::Refusal;
use keygate::{
    AccountId, Action, ApiKey, ApiKeyRecord, Catalog, Decision, Deny, Escalation, IssueError,
    Issuer, KeySpec, ProjectId, RateLimit, Resource, Scope, Timestamp, authorize, issue,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

/// Seed 004's "Available options", verbatim, shared with other tests and the benches.
const PERMISSIONS_JSON: &str = include_str!("data/seed_004_permissions.json");

fn names() -> Vec<String> {
    serde_json::from_str(PERMISSIONS_JSON).unwrap()
}

fn catalog() -> Catalog {
    Catalog::new(names()).unwrap()
}

fn acct() -> AccountId {
    AccountId::from_u64(1)
}

fn now() -> Timestamp {
    "2026-04-15T10:00:00Z".parse().unwrap()
}

fn in_project() -> Resource {
    Resource::in_project(acct(), ProjectId::from_u64(1))
}

#[test]
fn the_permission_list_loads_as_a_catalog() {
    let names = names();
    assert_eq!(names.len(), 101);
    assert_eq!(names.first().map(String::as_str), Some("agents:read"));
    assert_eq!(
        names.last().map(String::as_str),
        Some("speech-filter:preview")
    );
    let catalog = catalog();
    assert_eq!(catalog.len(), names.len());
    for name in &names {
        let p = catalog.permission(name).unwrap();
        assert_eq!(catalog.name(p), Some(name.as_str()));
    }
    // Through serde as a server would configure it.
    let from_json: Catalog =
        serde_json::from_value(json!({ "permissions": names.clone() })).unwrap();
    assert_eq!(from_json, catalog);

    let expand = |pattern: &str| -> Vec<String> {
        let set = catalog.expand([pattern]).unwrap();
        catalog.names(&set).map(str::to_owned).collect()
    };
    assert_eq!(
        expand("agents:*"),
        [
            "agents:delete",
            "agents:read",
            "agents:sync",
            "agents:test",
            "agents:write"
        ]
    );
    assert_eq!(
        expand("api-keys:*"),
        [
            "api-keys:delete",
            "api-keys:manage-others",
            "api-keys:read",
            "api-keys:write"
        ]
    );
    let reads = expand("*:read");
    assert!(reads.contains(&"calls:read".to_owned()) && reads.contains(&"chat:read".to_owned()));
    assert!(reads.iter().all(|n| n.ends_with(":read")));
    assert_eq!(expand("*").len(), 101);
}

#[test]
fn no_permission_list_means_the_creators_full_set() {
    let catalog = catalog();
    let creator_grant = catalog
        .expand(["agents:*", "calls:*", "api-keys:write"])
        .unwrap();
    let creator = Issuer::user(acct(), Scope::Account, creator_grant).with_user_id("user_123");
    let issued = issue(
        &catalog,
        &creator,
        KeySpec::named("Voice bot"),
        now(),
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap();
    assert_eq!(issued.key.permissions(), &creator_grant);
    assert_eq!(issued.key.created_by(), Some("user_123"));
}

#[test]
fn a_subset_is_granted_and_a_request_outside_it_refused() {
    let catalog = catalog();
    let creator = Issuer::user(
        acct(),
        Scope::Account,
        catalog.expand(["agents:*", "calls:read"]).unwrap(),
    );
    let mut rng = StdRng::seed_from_u64(0);
    let key = issue(
        &catalog,
        &creator,
        KeySpec::named("Reader").permissions(["agents:read", "calls:read"]),
        now(),
        &mut rng,
    )
    .unwrap()
    .key;
    let read = Action::named(&catalog, "agents:read").unwrap();
    let write = Action::named(&catalog, "agents:write").unwrap();
    assert_eq!(authorize(&key, read, &in_project(), now()), Decision::Allow);
    let Decision::Deny(deny) = authorize(&key, write, &in_project(), now()) else {
        panic!("a key outside its grant was allowed");
    };
    assert_eq!(deny.status(), 403);
    assert_eq!(
        serde_json::to_value(deny.body(&catalog)).unwrap(),
        json!({"error": "Permission agents:write required"})
    );

    let err = issue(
        &catalog,
        &creator,
        KeySpec::named("Too wide").permissions(["agents:read", "billing:manage", "calls:*"]),
        now(),
        &mut rng,
    )
    .unwrap_err();
    assert_eq!(err.status(), 403);
    // The exact name the creator lacks is refused; the pattern grants what the creator holds of
    // it (calls:read), never the rest of calls:*.
    assert_eq!(
        err,
        IssueError::Escalation(vec![Escalation::Permissions(vec!["billing:manage".into()])])
    );
    let narrowed = issue(
        &catalog,
        &creator,
        KeySpec::named("Calls").permissions(["calls:*"]),
        now(),
        &mut rng,
    )
    .unwrap()
    .key;
    assert_eq!(
        catalog.names(narrowed.permissions()).collect::<Vec<_>>(),
        ["calls:read"]
    );
}

#[test]
fn the_subset_is_frozen_at_creation() {
    let catalog = catalog();
    let mut rng = StdRng::seed_from_u64(0);
    // The creator is an API key holding api-keys:write.
    let owner = Issuer::user(acct(), Scope::Account, catalog.all());
    let mut creator = issue(
        &catalog,
        &owner,
        KeySpec::named("Creator").permissions(["agents:*", "api-keys:write"]),
        now(),
        &mut rng,
    )
    .unwrap()
    .key;
    let issuer = Issuer::key(&catalog, &creator, now()).unwrap();
    let child = issue(&catalog, &issuer, KeySpec::named("Child"), now(), &mut rng)
        .unwrap()
        .key;
    let frozen = *child.permissions();
    assert_eq!(&frozen, creator.permissions());

    // Whatever happens to the creator afterwards, the child's grant stays as it was.
    creator.revoke(now());
    assert_eq!(child.permissions(), &frozen);
    let agents_read = Action::named(&catalog, "agents:read").unwrap();
    assert!(authorize(&child, agents_read, &in_project(), now()).is_allowed());

    // A catalog that later gains permissions loads the stored record to the same grant.
    let record = child.to_record(&catalog);
    let mut grown_names = names();
    grown_names.push("agents:clone".into());
    let grown = Catalog::new(grown_names).unwrap();
    let reloaded = ApiKey::from_record(record.clone(), &grown).unwrap();
    let clone = Action::named(&grown, "agents:clone").unwrap();
    assert!(!authorize(&reloaded, clone, &in_project(), now()).is_allowed());
    assert_eq!(
        grown.names(reloaded.permissions()).collect::<Vec<_>>(),
        record.permissions
    );

    // A catalog that drops one of its names refuses to load it, rather than narrowing silently.
    let shrunk = Catalog::new(names().into_iter().filter(|n| n != "agents:sync")).unwrap();
    assert!(ApiKey::from_record(record, &shrunk).is_err());
}

#[test]
fn only_a_key_holding_api_keys_write_creates_keys() {
    let catalog = catalog();
    let mut rng = StdRng::seed_from_u64(0);
    let owner = Issuer::user(acct(), Scope::Account, catalog.all());
    let reader = issue(
        &catalog,
        &owner,
        KeySpec::named("Reader").permissions(["*:read"]),
        now(),
        &mut rng,
    )
    .unwrap()
    .key;
    let as_issuer = Issuer::key(&catalog, &reader, now()).unwrap();
    let err = issue(&catalog, &as_issuer, KeySpec::named("x"), now(), &mut rng).unwrap_err();
    assert_eq!(err.status(), 403);
    assert_eq!(
        serde_json::to_value(err.body(&catalog)).unwrap(),
        json!({"error": "Permission api-keys:write required"})
    );
    // A key issued *with* api-keys:write cannot hand on what it lacks.
    let manager = issue(
        &catalog,
        &owner,
        KeySpec::named("Manager").permissions(["api-keys:write", "agents:read"]),
        now(),
        &mut rng,
    )
    .unwrap()
    .key;
    let issuer = Issuer::key(&catalog, &manager, now()).unwrap();
    let err = issue(
        &catalog,
        &issuer,
        KeySpec::named("x").permissions(["api-keys:manage-others"]),
        now(),
        &mut rng,
    )
    .unwrap_err();
    assert_eq!(
        serde_json::to_value(err.body(&catalog)).unwrap(),
        json!({"error": "Cannot grant permissions the issuer does not hold: api-keys:manage-others"})
    );
}

#[test]
fn name_and_user_id_need_at_least_one_character() {
    let catalog = catalog();
    // The user id comes from the authenticated issuer, never from the request body.
    let nobody = Issuer::user(acct(), Scope::Account, catalog.all()).with_user_id("");
    let err = issue(
        &catalog,
        &nobody,
        KeySpec::named(""),
        now(),
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap_err();
    assert_eq!(
        serde_json::to_value(err.body(&catalog)).unwrap(),
        json!({"errors": ["Name can't be blank", "Created by can't be blank"]})
    );
    let owner = Issuer::user(acct(), Scope::Account, catalog.all()).with_user_id("u");
    let ok = issue(
        &catalog,
        &owner,
        KeySpec::named("k"),
        now(),
        &mut StdRng::seed_from_u64(0),
    );
    assert!(ok.is_ok());
}

#[test]
fn expiry_and_rate_limit_are_stored_in_the_record() {
    let catalog = catalog();
    let owner = Issuer::user(acct(), Scope::Account, catalog.all());
    let expires: Timestamp = "2026-12-31T23:59:59Z".parse().unwrap();
    let limit = RateLimit::per_period(600, 60).unwrap();
    let issued = issue(
        &catalog,
        &owner,
        KeySpec::named("Limited")
            .permissions(["calls:read"])
            .expires_at(expires)
            .rate_limit(limit),
        now(),
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap();
    let record = serde_json::to_value(issued.key.to_record(&catalog)).unwrap();
    assert_eq!(record["expires_at"], json!("2026-12-31T23:59:59Z"));
    assert_eq!(
        record["rate_limit"],
        json!({"requests": 600, "period_seconds": 60})
    );
    assert_eq!(record["permissions"], json!(["calls:read"]));
    let back: ApiKeyRecord = serde_json::from_value(record).unwrap();
    let loaded = ApiKey::from_record(back, &catalog).unwrap();
    assert_eq!(loaded, issued.key);

    let read = Action::named(&catalog, "calls:read").unwrap();
    assert_eq!(
        authorize(&loaded, read, &in_project(), expires),
        Decision::Deny(Deny::Expired)
    );
    assert!(
        authorize(
            &loaded,
            read,
            &in_project(),
            expires - Duration::from_secs(1)
        )
        .is_allowed()
    );
}
