//! Seed 000, IdentityCall "Create Project": account-wide versus project-scoped keys, the write
//! permission, and the 401/403/422 bodies, reproduced through the crate.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed unwrap is a failed test"
)]

use std::time::Duration;

use keygate::Refusal;
use keygate::validate_project;
use keygate::{
    AccountId, Action, ApiKey, Catalog, Decision, Deny, Escalation, IssueError, Issuer, KeySpec,
    ProjectId, Resource, Scope, Timestamp, authorize, issue,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

fn acct() -> AccountId {
    AccountId::from_u64(1)
}

fn now() -> Timestamp {
    "2026-04-15T10:00:00Z".parse().unwrap()
}

/// Keys as the dashboard would issue them: an owner signed in, minting with these settings.
fn key(catalog: &Catalog, permissions: &[&str], scope: Scope) -> ApiKey {
    let owner = Issuer::user_with_role(catalog, acct(), Scope::Account, "owner").unwrap();
    let spec = KeySpec::named("k")
        .permissions(permissions.to_vec())
        .scope(scope);
    issue(catalog, &owner, spec, now(), &mut StdRng::seed_from_u64(0))
        .unwrap()
        .key
}

/// `POST /projects` and `DELETE /projects/:id`: account-level actions needing write or delete.
fn create_project(catalog: &Catalog) -> Action {
    Action::named(catalog, "write").unwrap().at_account_level()
}

fn body(deny: Deny, catalog: &Catalog) -> Value {
    serde_json::to_value(deny.body(catalog)).unwrap()
}

#[test]
fn an_account_wide_key_with_write_creates_projects() {
    let catalog = Catalog::read_write_delete();
    let key = key(&catalog, &["read", "write"], Scope::Account);
    assert_eq!(
        authorize(
            &key,
            create_project(&catalog),
            &Resource::account(acct()),
            now()
        ),
        Decision::Allow
    );
}

#[test]
fn a_project_scoped_key_gets_403_with_the_seed_message() {
    let catalog = Catalog::read_write_delete();
    let scoped = key(
        &catalog,
        &["read", "write", "delete"],
        Scope::Project(ProjectId::from_u64(42)),
    );
    for action in [
        create_project(&catalog),
        Action::named(&catalog, "delete")
            .unwrap()
            .at_account_level(),
    ] {
        let Decision::Deny(deny) = authorize(&scoped, action, &Resource::account(acct()), now())
        else {
            panic!("a project-scoped key created or destroyed a project");
        };
        assert_eq!(deny, Deny::AccountLevelAction);
        assert_eq!(deny.status(), 403);
        assert_eq!(
            body(deny, &catalog),
            json!({"error": "Project-scoped API keys cannot create or destroy projects"})
        );
    }
    // The same key still works inside its own project.
    let write = Action::named(&catalog, "write").unwrap();
    let own = Resource::in_project(acct(), ProjectId::from_u64(42));
    assert_eq!(authorize(&scoped, write, &own, now()), Decision::Allow);
}

#[test]
fn a_key_without_write_gets_403() {
    let catalog = Catalog::read_write_delete();
    let reader = key(&catalog, &["read"], Scope::Account);
    let Decision::Deny(deny) = authorize(
        &reader,
        create_project(&catalog),
        &Resource::account(acct()),
        now(),
    ) else {
        panic!("a read-only key created a project");
    };
    assert_eq!(deny.status(), 403);
    assert_eq!(
        body(deny, &catalog),
        json!({"error": "Write permission required"})
    );
}

#[test]
fn a_missing_or_invalid_key_gets_401() {
    let catalog = Catalog::read_write_delete();
    assert_eq!(Deny::UnknownKey.status(), 401);
    assert_eq!(
        body(Deny::UnknownKey, &catalog),
        json!({"error": "Invalid or expired API key"})
    );
    let mut revoked = key(&catalog, &["write"], Scope::Account);
    revoked.revoke(now());
    let decision = authorize(
        &revoked,
        create_project(&catalog),
        &Resource::account(acct()),
        now(),
    );
    assert_eq!(decision, Decision::Deny(Deny::Revoked));
    assert_eq!(Deny::Revoked.status(), 401);
}

#[test]
fn a_blank_name_is_422_with_an_errors_array() {
    let errors = validate_project("", None).unwrap_err();
    assert_eq!(errors.status(), 422);
    assert_eq!(
        serde_json::to_value(&errors).unwrap(),
        json!({"errors": ["Name can't be blank"]})
    );
    assert!(validate_project("Customer Support EN", None).is_ok());

    // Issuing a key with a blank name answers the same way.
    let catalog = Catalog::read_write_delete();
    let owner = Issuer::user_with_role(&catalog, acct(), Scope::Account, "owner").unwrap();
    let err = issue(
        &catalog,
        &owner,
        KeySpec::named(""),
        now(),
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap_err();
    assert_eq!(err.status(), 422);
    assert_eq!(
        serde_json::to_value(err.body(&catalog)).unwrap(),
        json!({"errors": ["Name can't be blank"]})
    );
}

#[test]
fn the_seed_response_ids_and_timestamps_fit_the_crate_types() {
    let id: ProjectId = serde_json::from_value(json!(42)).unwrap();
    assert_eq!(id, ProjectId::from_u64(42));
    assert_eq!(serde_json::to_value(id).unwrap(), json!(42));
    let created: Timestamp = serde_json::from_value(json!("2026-04-15T10:00:00Z")).unwrap();
    assert_eq!(created, now());
    assert_eq!(
        serde_json::to_value(created).unwrap(),
        json!("2026-04-15T10:00:00Z")
    );
}

#[test]
fn only_account_wide_issuers_mint_account_wide_keys() {
    let catalog = Catalog::read_write_delete();
    let p42 = ProjectId::from_u64(42);
    let mut rng = StdRng::seed_from_u64(1);
    let scoped_user = Issuer::user(acct(), Scope::Project(p42), catalog.all());
    let err = issue(
        &catalog,
        &scoped_user,
        KeySpec::named("k").account_wide(),
        now(),
        &mut rng,
    )
    .unwrap_err();
    assert_eq!(err.status(), 403);
    let err = issue(
        &catalog,
        &scoped_user,
        KeySpec::named("k").project(ProjectId::from_u64(43)),
        now(),
        &mut rng,
    )
    .unwrap_err();
    assert!(
        matches!(err, IssueError::Escalation(ref e) if matches!(e[..], [Escalation::Scope { .. }]))
    );

    // A project-scoped key with write issues keys, for its own project only.
    let scoped_key = key(&catalog, &["read", "write"], Scope::Project(p42));
    let issuer = Issuer::key(&catalog, &scoped_key, now()).unwrap();
    let child = issue(&catalog, &issuer, KeySpec::named("child"), now(), &mut rng).unwrap();
    assert_eq!(child.key.scope(), Scope::Project(p42));
    let err = issue(
        &catalog,
        &issuer,
        KeySpec::named("k").account_wide(),
        now(),
        &mut rng,
    )
    .unwrap_err();
    assert_eq!(
        serde_json::to_value(err.body(&catalog)).unwrap(),
        json!({"error": "Project-scoped issuers cannot create account-wide API keys"})
    );
    // And its child cannot create projects either.
    assert_eq!(
        authorize(
            &child.key,
            create_project(&catalog),
            &Resource::account(acct()),
            now()
        ),
        Decision::Deny(Deny::AccountLevelAction)
    );
}

#[test]
fn a_key_issuers_child_expires_no_later_than_it() {
    let catalog = Catalog::read_write_delete();
    let owner = Issuer::user_with_role(&catalog, acct(), Scope::Account, "owner").unwrap();
    let mut rng = StdRng::seed_from_u64(2);
    let day = Duration::from_secs(86_400);
    let parent = issue(
        &catalog,
        &owner,
        KeySpec::named("p").expires_at(now() + day),
        now(),
        &mut rng,
    )
    .unwrap()
    .key;
    let issuer = Issuer::key(&catalog, &parent, now()).unwrap();
    let child = issue(&catalog, &issuer, KeySpec::named("c"), now(), &mut rng).unwrap();
    assert_eq!(child.key.expires_at(), parent.expires_at());
    let err = issue(
        &catalog,
        &issuer,
        KeySpec::named("c").ttl(day * 2),
        now(),
        &mut rng,
    )
    .unwrap_err();
    assert_eq!(err.status(), 403);
}
