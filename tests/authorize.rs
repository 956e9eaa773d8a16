//! Each rule of DESIGN.md's `authorize` section, each deny reason with its HTTP status and body,
//! in the order the rules are checked.

#![expect(
    clippy::unwrap_used,
    reason = "a broken test fixture should stop the test loudly"
)]

mod common;

use std::time::Duration;

use keygate::Refusal;
use keygate::{
    AccountId, Action, ApiKey, Catalog, Decision, Deny, KeyId, ProjectId, Resource, Scope,
    Timestamp, TokenHash, authorize,
};

const ACCOUNT: AccountId = AccountId::from_bytes([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
const OTHER_ACCOUNT: AccountId =
    AccountId::from_bytes([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);

fn project(n: u64) -> ProjectId {
    ProjectId::from_u64(n)
}

fn now() -> Timestamp {
    "2026-04-15T10:00:00Z".parse().unwrap()
}

fn key(catalog: &Catalog, scope: Scope, permissions: &[&str]) -> ApiKey {
    ApiKey::new(
        KeyId::from_bytes([9; 16]),
        "test key",
        ACCOUNT,
        scope,
        catalog.expand(permissions).unwrap(),
        TokenHash::of("idc_00000000000000000000000000000000"),
        Timestamp::from_unix_seconds(0),
    )
}

fn action(catalog: &Catalog, name: &str) -> Action {
    Action::named(catalog, name).unwrap()
}

/// The decision, checked against the reference model, as (status, body) — or (200, "") for allow.
fn respond(catalog: &Catalog, key: &ApiKey, action: Action, resource: Resource) -> (u16, String) {
    let decision = authorize(key, action, &resource, now());
    assert_eq!(
        decision,
        keygate::testing::reference::authorize(key, action, &resource, now())
    );
    match decision {
        Decision::Allow => (200, String::new()),
        Decision::Deny(deny) => (
            deny.status(),
            serde_json::to_string(&deny.body(catalog)).unwrap(),
        ),
    }
}

#[test]
fn account_wide_key_with_the_permission_is_allowed_everywhere_in_its_account() {
    let c = Catalog::read_write_delete();
    let k = key(&c, Scope::Account, &["read", "write"]);
    for resource in [
        Resource::account(ACCOUNT),
        Resource::listing(ACCOUNT),
        Resource::in_project(ACCOUNT, project(1)),
        Resource::in_project(ACCOUNT, project(99)),
    ] {
        assert_eq!(
            authorize(&k, action(&c, "read"), &resource, now()),
            Decision::Allow
        );
    }
    let create_project = action(&c, "write").at_account_level();
    assert_eq!(
        authorize(&k, create_project, &Resource::account(ACCOUNT), now()),
        Decision::Allow
    );
}

#[test]
fn rule_1_revoked_and_expired_keys_are_401() {
    let c = Catalog::read_write_delete();
    let read = action(&c, "read");
    let resource = Resource::in_project(ACCOUNT, project(1));
    let body = r#"{"error":"Invalid or expired API key"}"#.to_owned();

    let mut revoked = key(&c, Scope::Account, &["read"]);
    revoked.revoke(now() - Duration::from_secs(5));
    assert_eq!(
        authorize(&revoked, read, &resource, now()),
        Decision::Deny(Deny::Revoked)
    );
    assert_eq!(respond(&c, &revoked, read, resource), (401, body.clone()));

    let expires_at = now();
    let expiring = key(&c, Scope::Account, &["read"]).with_expiry(expires_at);
    let just_before = expires_at - Duration::from_micros(1);
    assert_eq!(
        authorize(&expiring, read, &resource, just_before),
        Decision::Allow
    );
    assert_eq!(
        authorize(&expiring, read, &resource, expires_at),
        Decision::Deny(Deny::Expired),
        "expiry is exclusive: at expires_at the key is dead"
    );
    assert_eq!(respond(&c, &expiring, read, resource), (401, body));
}

#[test]
fn rule_1_comes_first_even_when_everything_else_fails_too() {
    let c = Catalog::read_write_delete();
    let mut k = key(&c, Scope::Project(project(1)), &["read"]).with_expiry(now());
    let foreign = Resource::in_project(OTHER_ACCOUNT, project(2));
    let delete = action(&c, "delete").at_account_level();
    assert_eq!(
        authorize(&k, delete, &foreign, now()),
        Decision::Deny(Deny::Expired)
    );
    k.revoke(now());
    assert_eq!(
        authorize(&k, delete, &foreign, now()),
        Decision::Deny(Deny::Revoked)
    );
}

#[test]
fn rule_2_another_accounts_resource_is_404_not_found() {
    let c = Catalog::read_write_delete();
    let k = key(&c, Scope::Account, &["read", "write", "delete"]);
    for resource in [
        Resource::account(OTHER_ACCOUNT),
        Resource::listing(OTHER_ACCOUNT),
        Resource::in_project(OTHER_ACCOUNT, project(1)),
    ] {
        let got = respond(&c, &k, action(&c, "read"), resource);
        assert_eq!(got, (404, r#"{"error":"Not found"}"#.to_owned()));
    }
    // Checked before the scope and permission rules: a foreign resource never yields a 403 that
    // would confirm it exists.
    let reader = key(&c, Scope::Project(project(1)), &["read"]);
    let got = authorize(
        &reader,
        action(&c, "delete").at_account_level(),
        &Resource::in_project(OTHER_ACCOUNT, project(1)),
        now(),
    );
    assert_eq!(got, Decision::Deny(Deny::OtherAccount));
}

#[test]
fn rule_3_seed_000_project_scoped_key_cannot_create_or_destroy_projects() {
    let c = Catalog::read_write_delete();
    let k = key(
        &c,
        Scope::Project(project(42)),
        &["read", "write", "delete"],
    );
    let seed_body =
        r#"{"error":"Project-scoped API keys cannot create or destroy projects"}"#.to_owned();
    let create = action(&c, "write").at_account_level();
    assert_eq!(
        respond(&c, &k, create, Resource::account(ACCOUNT)),
        (403, seed_body.clone())
    );
    // Destroying its own project is account-level too.
    let destroy = action(&c, "delete").at_account_level();
    let own = Resource::in_project(ACCOUNT, project(42));
    assert_eq!(respond(&c, &k, destroy, own), (403, seed_body));
    // The same key may still write inside its project.
    assert_eq!(
        authorize(&k, action(&c, "write"), &own, now()),
        Decision::Allow
    );
}

#[test]
fn rule_4_project_scoped_key_reaches_only_its_project() {
    let c = Catalog::read_write_delete();
    let k = key(&c, Scope::Project(project(1)), &["read"]);
    let read = action(&c, "read");
    assert_eq!(
        authorize(&k, read, &Resource::in_project(ACCOUNT, project(1)), now()),
        Decision::Allow
    );
    assert_eq!(
        authorize(&k, read, &Resource::listing(ACCOUNT), now()),
        Decision::Allow
    );
    let not_found = (404, r#"{"error":"Not found"}"#.to_owned());
    assert_eq!(
        respond(&c, &k, read, Resource::in_project(ACCOUNT, project(2))),
        not_found
    );
    assert_eq!(respond(&c, &k, read, Resource::account(ACCOUNT)), not_found);
    // Scope is checked before permissions: no 403 leaks that another project exists.
    let got = authorize(
        &k,
        action(&c, "delete"),
        &Resource::in_project(ACCOUNT, project(2)),
        now(),
    );
    assert_eq!(got, Decision::Deny(Deny::OutOfScope));
}

#[test]
fn rule_5_seed_001_missing_permission_messages() {
    let c = Catalog::read_write_delete();
    let resource = Resource::in_project(ACCOUNT, project(1));
    for (granted, method, body) in [
        (
            &["write", "delete"][..],
            "GET",
            r#"{"error":"Read permission required"}"#,
        ),
        (
            &["read"][..],
            "POST",
            r#"{"error":"Write permission required"}"#,
        ),
        (
            &["read"][..],
            "PATCH",
            r#"{"error":"Write permission required"}"#,
        ),
        (
            &["read", "write"][..],
            "DELETE",
            r#"{"error":"Delete permission required"}"#,
        ),
    ] {
        let k = key(&c, Scope::Account, granted);
        let act = Action::for_method(&c, method).unwrap();
        assert_eq!(
            respond(&c, &k, act, resource),
            (403, body.to_owned()),
            "{method}"
        );
    }
    assert!(Action::for_method(&c, "TRACE").is_err());
}

#[test]
fn seed_001_method_mapping() {
    let c = Catalog::read_write_delete();
    for (method, permission) in [
        ("GET", "read"),
        ("HEAD", "read"),
        ("POST", "write"),
        ("PUT", "write"),
        ("PATCH", "write"),
        ("DELETE", "delete"),
    ] {
        let act = Action::for_method(&c, method).unwrap();
        assert_eq!(c.name(act.permission()), Some(permission), "{method}");
        assert!(!act.is_account_level());
    }
}

#[test]
fn seed_001_permission_combinations() {
    // The use cases of seed 001's table, each against the four endpoint kinds.
    let c = Catalog::read_write_delete();
    let resource = Resource::in_project(ACCOUNT, project(1));
    for (use_case, granted, allowed_methods) in [
        ("analytics dashboard", &["read"][..], &["GET"][..]),
        (
            "backend service",
            &["read", "write"][..],
            &["GET", "POST", "PATCH"][..],
        ),
        (
            "full access",
            &["read", "write", "delete"][..],
            &["GET", "POST", "PATCH", "DELETE"][..],
        ),
        ("upload only", &["write"][..], &["POST", "PATCH"][..]),
    ] {
        let k = key(&c, Scope::Account, granted);
        for method in ["GET", "POST", "PATCH", "DELETE"] {
            let act = Action::for_method(&c, method).unwrap();
            let allowed = authorize(&k, act, &resource, now()).is_allowed();
            assert_eq!(
                allowed,
                allowed_methods.contains(&method),
                "{use_case} {method}"
            );
        }
    }
}

#[test]
fn fine_grained_permission_message_names_the_permission() {
    let c = Catalog::new(["agents:read", "agents:write"]).unwrap();
    let k = key(&c, Scope::Account, &["agents:read"]);
    let got = respond(
        &c,
        &k,
        action(&c, "agents:write"),
        Resource::listing(ACCOUNT),
    );
    assert_eq!(
        got,
        (
            403,
            r#"{"error":"Permission agents:write required"}"#.to_owned()
        )
    );
}

#[test]
fn unknown_key_is_401_with_the_same_body() {
    let c = Catalog::read_write_delete();
    assert_eq!(Deny::UnknownKey.status(), 401);
    assert_eq!(
        serde_json::to_string(&Deny::UnknownKey.body(&c)).unwrap(),
        r#"{"error":"Invalid or expired API key"}"#
    );
}

#[test]
fn decision_into_result() {
    assert_eq!(Decision::Allow.into_result(), Ok(()));
    assert_eq!(
        Decision::Deny(Deny::Revoked).into_result(),
        Err(Deny::Revoked)
    );
    assert!(!Decision::Deny(Deny::Revoked).is_allowed());
}

#[test]
fn all_of_needs_every_permission_and_names_the_first_lacking() {
    let catalog =
        Catalog::new(["agents:read", "agents:write", "calls:read", "billing:read"]).unwrap();
    let report =
        Action::all_of_named(&catalog, ["billing:read", "agents:read", "calls:read"]).unwrap();
    let listing = Resource::listing(ACCOUNT);
    let all = key(
        &catalog,
        Scope::Account,
        &["agents:read", "calls:read", "billing:read"],
    );
    assert_eq!(
        respond(&catalog, &all, report, listing),
        (200, String::new())
    );
    // Lacking two: the lower-index one (agents:read, index 0) is named.
    let some = key(&catalog, Scope::Account, &["calls:read"]);
    assert_eq!(
        respond(&catalog, &some, report, listing),
        (
            403,
            r#"{"error":"Permission agents:read required"}"#.to_owned()
        )
    );
    // Lacking one, past the first: that one.
    let most = key(
        &catalog,
        Scope::Account,
        &["agents:read", "billing:read", "agents:write"],
    );
    assert_eq!(
        respond(&catalog, &most, report, listing),
        (
            403,
            r#"{"error":"Permission calls:read required"}"#.to_owned()
        )
    );
    // `permission()` is the first needed one, as it was for one-permission actions.
    assert_eq!(
        report.permission(),
        catalog.permission("agents:read").unwrap()
    );
    assert!(!report.is_any_of());
}

#[test]
fn any_of_needs_one_permission_and_names_the_first() {
    let catalog = Catalog::new(["calls:read", "calls:admin", "billing:read"]).unwrap();
    let view = Action::any_of_named(&catalog, ["calls:admin", "calls:read"]).unwrap();
    assert!(view.is_any_of());
    let listing = Resource::listing(ACCOUNT);
    for held in [
        &["calls:read"][..],
        &["calls:admin"],
        &["calls:read", "calls:admin"],
    ] {
        let k = key(&catalog, Scope::Account, held);
        assert_eq!(
            respond(&catalog, &k, view, listing),
            (200, String::new()),
            "{held:?}"
        );
    }
    let neither = key(&catalog, Scope::Account, &["billing:read"]);
    assert_eq!(
        respond(&catalog, &neither, view, listing),
        (
            403,
            r#"{"error":"Permission calls:read required"}"#.to_owned()
        )
    );
    // The other rules come first, as for any action.
    let scoped = key(&catalog, Scope::Project(project(1)), &["calls:read"]);
    assert_eq!(
        respond(
            &catalog,
            &scoped,
            view,
            Resource::in_project(ACCOUNT, project(2))
        )
        .0,
        404
    );
}

#[test]
fn an_action_needing_nothing_is_refused() {
    use keygate::{CatalogError, PermissionSet};
    assert_eq!(
        Action::all_of(PermissionSet::EMPTY),
        Err(CatalogError::EmptyAction)
    );
    assert_eq!(
        Action::any_of(PermissionSet::EMPTY),
        Err(CatalogError::EmptyAction)
    );
    let catalog = Catalog::read_write_delete();
    assert_eq!(
        Action::all_of_named(&catalog, Vec::<&str>::new()),
        Err(CatalogError::EmptyAction)
    );
    // Exact names only: a pattern is not a name.
    assert!(Action::any_of_named(&catalog, ["*"]).is_err());
    // One permission, as `all_of`, is the same action as `new`.
    let read = catalog.permission("read").unwrap();
    assert_eq!(
        Action::all_of(PermissionSet::single(read)),
        Ok(Action::new(read))
    );
}
