//! Seed 002, an AI-app platform's "Create Project": projects hold keys and end users, tier
//! limits, name 3-100 characters, description at most 500, and the 403/422 bodies.

use keygate::Refusal;
use keygate::{AccountId, Catalog, Issuer, KeySpec, ProjectId, Scope, Timestamp, issue};
use keygate::{
    Limits, MAX_PROJECT_DESCRIPTION_LEN, MAX_PROJECT_NAME_LEN, MIN_PROJECT_NAME_LEN, QuotaError,
    Tier, validate_project,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

/// The seed's table, columns as printed: Max Projects | End Users per Project | API Keys per
/// Project.
#[test]
fn the_tier_table() {
    let table = [
        (Tier::FreeStarter, Some(5), Some(100), Some(3)),
        (Tier::CloudStarter, Some(20), Some(10_000), Some(10)),
        (Tier::CloudPremium, None, None, None),
    ];
    for (tier, projects, end_users, keys) in table {
        assert_eq!(
            tier.limits(),
            Limits {
                projects,
                end_users_per_project: end_users,
                keys_per_project: keys,
            },
            "{tier:?}"
        );
    }
}

#[test]
fn free_tier_developers_create_up_to_5_projects() {
    for current in 0..5 {
        assert!(Tier::FreeStarter.check_new_project(current).is_ok());
    }
    let err = Tier::FreeStarter.check_new_project(5).unwrap_err();
    assert_eq!(err, QuotaError::ProjectLimit { limit: 5 });
    assert_eq!(err.status(), 403);
    assert_eq!(
        serde_json::to_value(err.body(&Catalog::read_write_delete())).unwrap(),
        json!({"error": "Project limit reached"})
    );
    assert!(Tier::CloudStarter.check_new_project(19).is_ok());
    assert!(Tier::CloudStarter.check_new_project(20).is_err());
    assert!(Tier::CloudPremium.check_new_project(1_000_000).is_ok());
}

#[test]
fn keys_per_project_are_capped_when_issuing() {
    // The server counts a project's keys and asks the tier before issuing another.
    let catalog = Catalog::read_write_delete();
    let acct = AccountId::from_u64(1);
    let project = ProjectId::from_u64(1);
    let developer = Issuer::user(acct, Scope::Account, catalog.all());
    let now = Timestamp::from_unix_seconds(1_800_000_000);
    let mut rng = StdRng::seed_from_u64(0);
    let mut keys = Vec::new();
    let refusal = loop {
        let count = u32::try_from(keys.len()).unwrap();
        if let Err(e) = Tier::FreeStarter.check_new_key(count) {
            break e;
        }
        let spec = KeySpec::named(format!("key {count}")).project(project);
        keys.push(
            issue(&catalog, &developer, spec, now, &mut rng)
                .unwrap()
                .key,
        );
    };
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k.scope() == Scope::Project(project)));
    assert_eq!(refusal.status(), 403);
    assert_eq!(
        serde_json::to_value(refusal.body(&Catalog::read_write_delete())).unwrap(),
        json!({"error": "API key limit reached"})
    );
    assert!(Tier::CloudStarter.check_new_key(9).is_ok());
    assert!(Tier::CloudStarter.check_new_key(10).is_err());
}

#[test]
fn end_users_per_project_are_capped() {
    assert!(Tier::FreeStarter.check_new_end_user(99).is_ok());
    let err = Tier::FreeStarter.check_new_end_user(100).unwrap_err();
    assert_eq!(err.status(), 403);
    assert_eq!(
        serde_json::to_value(err.body(&Catalog::read_write_delete())).unwrap(),
        json!({"error": "End user limit reached"})
    );
    assert!(Tier::CloudStarter.check_new_end_user(10_000).is_err());
    assert!(Tier::CloudPremium.check_new_end_user(u32::MAX).is_ok());
}

#[test]
fn project_names_are_3_to_100_characters() {
    assert_eq!((MIN_PROJECT_NAME_LEN, MAX_PROJECT_NAME_LEN), (3, 100));
    for ok in [
        "Production API",
        "My SaaS App",
        "Customer Portal",
        "E-Commerce Platform",
        "abc",
    ] {
        assert!(validate_project(ok, None).is_ok(), "{ok}");
    }
    assert!(validate_project(&"n".repeat(100), None).is_ok());
    let short = validate_project("ab", None).unwrap_err();
    assert_eq!(short.status(), 422);
    assert_eq!(
        serde_json::to_value(&short).unwrap(),
        json!({"errors": ["Name is too short (minimum is 3 characters)"]})
    );
    let long = validate_project(&"n".repeat(101), None).unwrap_err();
    assert_eq!(
        serde_json::to_value(&long).unwrap(),
        json!({"errors": ["Name is too long (maximum is 100 characters)"]})
    );
}

#[test]
fn descriptions_are_at_most_500_characters() {
    assert_eq!(MAX_PROJECT_DESCRIPTION_LEN, 500);
    let description = "AI-powered image generation platform for e-commerce product photography";
    assert!(validate_project("Production API", Some(description)).is_ok());
    assert!(validate_project("Production API", Some(&"d".repeat(500))).is_ok());
    let err = validate_project("Production API", Some(&"d".repeat(501))).unwrap_err();
    assert_eq!(err.status(), 422);
    assert_eq!(
        serde_json::to_value(&err).unwrap(),
        json!({"errors": ["Description is too long (maximum is 500 characters)"]})
    );
    // Both problems at once are both reported.
    let both = validate_project("x", Some(&"d".repeat(501))).unwrap_err();
    assert_eq!(both.messages().len(), 2);
}

#[test]
fn projects_keep_their_keys_apart() {
    // "Never share API keys between production and development": a key for one project never
    // reaches the other.
    let catalog = Catalog::read_write_delete();
    let acct = AccountId::from_u64(1);
    let (prod, dev) = (ProjectId::from_u64(1), ProjectId::from_u64(2));
    let developer = Issuer::user(acct, Scope::Account, catalog.all());
    let now = Timestamp::from_unix_seconds(1_800_000_000);
    let key = issue(
        &catalog,
        &developer,
        KeySpec::named("Production").project(prod),
        now,
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap()
    .key;
    let read = keygate::Action::named(&catalog, "read").unwrap();
    assert!(
        keygate::authorize(&key, read, &keygate::Resource::in_project(acct, prod), now)
            .is_allowed()
    );
    assert!(
        !keygate::authorize(&key, read, &keygate::Resource::in_project(acct, dev), now)
            .is_allowed()
    );
}
