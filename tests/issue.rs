//! Issuing: defaults, every validation message, every escalation, roles, expiry, frozen grants.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: a failed unwrap is a failed test"
)]

use std::time::Duration;

use keygate::Refusal;
use keygate::{
    AccountId, Action, ApiKey, Catalog, Deny, Escalation, IssueError, Issuer, IssuerKind, KeySpec,
    ProjectId, RateLimit, Resource, Scope, Timestamp, TokenFormat, authorize, issue,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

const ACCT: AccountId = AccountId::from_bytes([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

fn p(n: u64) -> ProjectId {
    ProjectId::from_u64(n)
}

fn now() -> Timestamp {
    "2026-04-15T10:00:00Z".parse().unwrap()
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

fn fine() -> Catalog {
    Catalog::new([
        "agents:read",
        "agents:write",
        "agents:delete",
        "calls:read",
        "calls:write",
        "api-keys:read",
        "api-keys:write",
    ])
    .unwrap()
    .with_role("member", ["*:read"])
    .unwrap()
    .with_role("admin", ["*:read", "*:write"])
    .unwrap()
    .with_role("owner", ["*"])
    .unwrap()
}

fn owner(catalog: &Catalog) -> Issuer {
    Issuer::user_with_role(catalog, ACCT, Scope::Account, "owner")
        .unwrap()
        .with_user_id("u_1")
}

fn invalid(err: IssueError) -> Vec<String> {
    match err {
        IssueError::Invalid(errors) => errors.errors,
        other => panic!("expected 422, got {other:?}"),
    }
}

fn escalations(err: IssueError) -> Vec<Escalation> {
    assert_eq!(err.status(), 403);
    match err {
        IssueError::Escalation(e) => e,
        other => panic!("expected escalation, got {other:?}"),
    }
}

fn names(catalog: &Catalog, key: &ApiKey) -> Vec<String> {
    catalog
        .names(key.permissions())
        .map(str::to_owned)
        .collect()
}

#[test]
fn defaults_are_the_issuers() {
    let catalog = fine();
    let issuer = owner(&catalog);
    let issued = issue(
        &catalog,
        &issuer,
        KeySpec::named("  CI  "),
        now(),
        &mut rng(),
    )
    .unwrap();
    let key = &issued.key;
    assert_eq!(key.permissions(), &catalog.all());
    assert_eq!(key.scope(), Scope::Account);
    assert_eq!(key.account(), ACCT);
    assert_eq!(key.name(), "CI", "the name is stored trimmed");
    assert_eq!(key.created_at(), now());
    assert_eq!(key.expires_at(), None);
    assert_eq!(key.created_by(), Some("u_1"));
    assert_eq!(key.role(), None);
    assert_eq!(key.rate_limit(), None);
    assert!(bool::from(
        TokenFormat::default().matches(issued.token.expose_secret())
    ));
    assert!(bool::from(
        key.token_hash().verify(issued.token.expose_secret())
    ));

    let scoped = Issuer::user(ACCT, Scope::Project(p(42)), catalog.all());
    let issued = issue(&catalog, &scoped, KeySpec::named("k"), now(), &mut rng()).unwrap();
    assert_eq!(
        issued.key.scope(),
        Scope::Project(p(42)),
        "a project-scoped issuer's key defaults to its project"
    );
}

#[test]
fn every_setting_is_stored() {
    let catalog = fine();
    let limit = RateLimit::per_period(100, 60).unwrap();
    let format = TokenFormat::new("sk_test_", 40).unwrap();
    let spec = KeySpec::named("Backend")
        .permissions(["agents:*", "calls:read"])
        .project(p(42))
        .ttl_seconds(3_600)
        .rate_limit(limit)
        .tag(" prod ")
        .tags(["eu", "backend"])
        .comment("deploy bot")
        .format(format.clone());
    let issued = issue(&catalog, &owner(&catalog), spec, now(), &mut rng()).unwrap();
    let key = &issued.key;
    assert_eq!(
        names(&catalog, key),
        ["agents:delete", "agents:read", "agents:write", "calls:read"]
    );
    assert_eq!(key.scope(), Scope::Project(p(42)));
    assert_eq!(key.expires_at(), Some(now() + Duration::from_secs(3_600)));
    assert_eq!(key.rate_limit(), Some(&limit));
    assert_eq!(key.tags(), ["prod", "eu", "backend"]);
    assert_eq!(key.comment(), Some("deploy bot"));
    assert_eq!(
        key.created_by(),
        owner(&catalog).user_id(),
        "the creator is the authenticated issuer, never the request"
    );
    assert!(bool::from(format.matches(issued.token.expose_secret())));

    let at = now() + Duration::from_secs(60);
    let issued = issue(
        &catalog,
        &owner(&catalog),
        KeySpec::named("k").expires_at(at),
        now(),
        &mut rng(),
    )
    .unwrap();
    assert_eq!(issued.key.expires_at(), Some(at));
}

#[test]
fn two_issues_get_different_ids_and_tokens() {
    let catalog = fine();
    let mut rng = rng();
    let a = issue(
        &catalog,
        &owner(&catalog),
        KeySpec::named("a"),
        now(),
        &mut rng,
    )
    .unwrap();
    let b = issue(
        &catalog,
        &owner(&catalog),
        KeySpec::named("b"),
        now(),
        &mut rng,
    )
    .unwrap();
    assert_ne!(a.key.id(), b.key.id());
    assert_ne!(a.token.expose_secret(), b.token.expose_secret());
}

#[test]
fn each_validation_message() {
    let catalog = fine();
    let issuer = owner(&catalog);
    let past = now() - Duration::from_secs(1);
    let cases: Vec<(KeySpec, &str)> = vec![
        (KeySpec::named(""), "Name can't be blank"),
        (KeySpec::named(" \t"), "Name can't be blank"),
        (
            KeySpec::named("x".repeat(101)),
            "Name is too long (maximum is 100 characters)",
        ),
        (
            KeySpec::named(format!(" {} ", "x".repeat(101))),
            "Name is too long (maximum is 100 characters)",
        ),
        (
            KeySpec::named("k").expires_at(past),
            "Expiration date must be in the future",
        ),
        (
            KeySpec::named("k").expires_at(now()),
            "Expiration date must be in the future",
        ),
        (
            KeySpec::named("k").ttl_seconds(0),
            "Time to live must be greater than 0 seconds",
        ),
        (
            KeySpec::named("k").permissions(["agents:fly"]),
            "Unknown permission: agents:fly",
        ),
        (
            KeySpec::named("k").permissions(["nope:*"]),
            "Permission pattern nope:* matches no permission",
        ),
        (
            KeySpec::named("k").permissions(["*:*"]),
            "Invalid permission pattern: *:*",
        ),
        (
            KeySpec::named("k").role("superuser"),
            "Unknown role: superuser",
        ),
        (
            KeySpec::named("k")
                .role("member")
                .permissions(["agents:write"]),
            "Permissions must lie within the role member",
        ),
        (
            KeySpec::named("k").comment("c".repeat(501)),
            "Comment is too long (maximum is 500 characters)",
        ),
        (KeySpec::named("k").tag(""), "Tag can't be blank"),
        (
            KeySpec::named("k").tag("t".repeat(65)),
            "Tag is too long (maximum is 64 characters)",
        ),
        (
            KeySpec::named("k").tags((0..21).map(|i| format!("t{i}"))),
            "Too many tags (maximum is 20)",
        ),
    ];
    for (spec, message) in cases {
        let err = issue(&catalog, &issuer, spec.clone(), now(), &mut rng()).unwrap_err();
        assert_eq!(err.status(), 422, "{spec:?}");
        assert_eq!(invalid(err), [message], "{spec:?}");
    }
    // Limits are inclusive.
    let ok = KeySpec::named(format!("  {}  ", "é".repeat(100)))
        .comment("c".repeat(500))
        .tags((0..20).map(|i| format!("{i:0>64}")));
    assert!(issue(&catalog, &issuer, ok, now(), &mut rng()).is_ok());
}

#[test]
fn validation_collects_every_problem() {
    let catalog = fine();
    let spec = KeySpec::named("")
        .expires_at(now() - Duration::from_secs(5))
        .ttl_seconds(60)
        .permissions(["agents:read", "agents:fly", "x:*"])
        .role("root")
        .comment("c".repeat(600));
    let err = issue(&catalog, &owner(&catalog), spec, now(), &mut rng()).unwrap_err();
    assert_eq!(
        serde_json::to_value(err.body(&catalog)).unwrap(),
        json!({"errors": [
            "Name can't be blank",
            "Specify an expiration date or a time to live, not both",
            "Expiration date must be in the future",
            "Unknown permission: agents:fly",
            "Permission pattern x:* matches no permission",
            "Unknown role: root",
            "Comment is too long (maximum is 500 characters)",
        ]})
    );
}

#[test]
fn echoed_input_is_capped() {
    let catalog = fine();
    let long = format!("agents:{}", "y".repeat(10_000));
    let err = issue(
        &catalog,
        &owner(&catalog),
        KeySpec::named("k").permissions([long]),
        now(),
        &mut rng(),
    )
    .unwrap_err();
    let message = &invalid(err)[0];
    assert!(message.len() < 200, "{message}");
}

#[test]
fn validation_comes_before_escalation() {
    let catalog = fine();
    let member = Issuer::user_with_role(&catalog, ACCT, Scope::Account, "member").unwrap();
    let err = issue(
        &catalog,
        &member,
        KeySpec::named("").permissions(["agents:write"]),
        now(),
        &mut rng(),
    )
    .unwrap_err();
    assert_eq!(invalid(err), ["Name can't be blank"]);
}

#[test]
fn permissions_beyond_the_issuer_are_escalation() {
    let catalog = fine();
    let member = Issuer::user_with_role(&catalog, ACCT, Scope::Account, "member").unwrap();
    let err = issue(
        &catalog,
        &member,
        KeySpec::named("k").permissions(["agents:delete", "agents:write", "calls:read"]),
        now(),
        &mut rng(),
    )
    .unwrap_err();
    assert_eq!(
        serde_json::to_value(err.body(&catalog)).unwrap(),
        json!({"error": "Cannot grant permissions the issuer does not hold: agents:delete, agents:write"})
    );
    // A pattern means "what I hold of it": `agents:*` from a member is agents:read alone.
    let narrowed = issue(
        &catalog,
        &member,
        KeySpec::named("k").permissions(["agents:*", "calls:read"]),
        now(),
        &mut rng(),
    )
    .unwrap();
    assert_eq!(
        names(&catalog, &narrowed.key),
        ["agents:read", "calls:read"]
    );
    // A pattern matching nothing the issuer holds reaches too far, and is named.
    let reader = Issuer::user(
        ACCT,
        Scope::Account,
        catalog.expand(["calls:read"]).unwrap(),
    );
    let err = issue(
        &catalog,
        &reader,
        KeySpec::named("k").permissions(["agents:*"]),
        now(),
        &mut rng(),
    )
    .unwrap_err();
    assert_eq!(
        serde_json::to_value(err.body(&catalog)).unwrap(),
        json!({"error": "Cannot grant permissions the issuer does not hold: agents:*"})
    );
    // An explicitly empty list is malformed: a key that can do nothing is a mistake.
    let err = issue(
        &catalog,
        &member,
        KeySpec::named("k").permissions(Vec::<String>::new()),
        now(),
        &mut rng(),
    )
    .unwrap_err();
    assert_eq!(invalid(err), ["Permissions can't be empty"]);
    // A subset is fine, and wildcards that land inside the issuer's set are too.
    let ok = issue(
        &catalog,
        &member,
        KeySpec::named("k").permissions(["*:read"]),
        now(),
        &mut rng(),
    )
    .unwrap();
    assert_eq!(ok.key.permissions(), member.permissions());
}

#[test]
fn scope_beyond_the_issuer_is_escalation() {
    let catalog = fine();
    let scoped = Issuer::user(ACCT, Scope::Project(p(1)), catalog.all());
    let err = issue(
        &catalog,
        &scoped,
        KeySpec::named("k").account_wide(),
        now(),
        &mut rng(),
    )
    .unwrap_err();
    assert_eq!(
        escalations(err.clone()),
        [Escalation::Scope {
            requested: Scope::Account,
            held: Scope::Project(p(1))
        }]
    );
    assert_eq!(
        serde_json::to_value(err.body(&catalog)).unwrap(),
        json!({"error": "Project-scoped issuers cannot create account-wide API keys"})
    );
    let err = issue(
        &catalog,
        &scoped,
        KeySpec::named("k").project(p(2)),
        now(),
        &mut rng(),
    )
    .unwrap_err();
    assert_eq!(
        serde_json::to_value(err.body(&catalog)).unwrap(),
        json!({"error": "Cannot create an API key for a project outside the issuer's scope"})
    );
    let ok = issue(
        &catalog,
        &scoped,
        KeySpec::named("k").project(p(1)),
        now(),
        &mut rng(),
    )
    .unwrap();
    assert_eq!(ok.key.scope(), Scope::Project(p(1)));
    // An account-wide issuer mints both kinds.
    for scope in [Scope::Account, Scope::Project(p(9))] {
        let ok = issue(
            &catalog,
            &owner(&catalog),
            KeySpec::named("k").scope(scope),
            now(),
            &mut rng(),
        )
        .unwrap();
        assert_eq!(ok.key.scope(), scope);
    }
}

#[test]
fn roles_are_ordered() {
    let catalog = fine();
    let admin = Issuer::user_with_role(&catalog, ACCT, Scope::Account, "admin").unwrap();
    for role in ["member", "admin"] {
        let ok = issue(
            &catalog,
            &admin,
            KeySpec::named("k").role(role),
            now(),
            &mut rng(),
        )
        .unwrap();
        assert_eq!(ok.key.role(), Some(role));
        assert_eq!(
            ok.key.permissions(),
            catalog.role(role).unwrap().permissions()
        );
    }
    let err = issue(
        &catalog,
        &admin,
        KeySpec::named("k").role("owner"),
        now(),
        &mut rng(),
    )
    .unwrap_err();
    let found = escalations(err.clone());
    assert!(found.contains(&Escalation::Role {
        requested: "owner".into(),
        held: Some("admin".into())
    }));
    assert!(
        err.body(&catalog)
            .message()
            .contains("Cannot grant role owner: it exceeds the issuer's role admin")
    );

    // A role narrowed by explicit permissions.
    let ok = issue(
        &catalog,
        &admin,
        KeySpec::named("k")
            .role("admin")
            .permissions(["agents:read"]),
        now(),
        &mut rng(),
    )
    .unwrap();
    assert_eq!(names(&catalog, &ok.key), ["agents:read"]);
    assert_eq!(ok.key.role(), Some("admin"));
}

#[test]
fn an_issuer_without_a_role_grants_only_roles_within_its_permissions() {
    let catalog = fine();
    let readers = Issuer::user(ACCT, Scope::Account, catalog.expand(["*:read"]).unwrap());
    assert!(
        issue(
            &catalog,
            &readers,
            KeySpec::named("k").role("member"),
            now(),
            &mut rng()
        )
        .is_ok()
    );
    let err = issue(
        &catalog,
        &readers,
        KeySpec::named("k")
            .role("admin")
            .permissions(["agents:read"]),
        now(),
        &mut rng(),
    )
    .unwrap_err();
    assert_eq!(
        escalations(err),
        [Escalation::Role {
            requested: "admin".into(),
            held: None
        }]
    );
}

#[test]
fn escalations_are_all_collected() {
    let catalog = fine();
    let member = Issuer::user_with_role(&catalog, ACCT, Scope::Project(p(1)), "member").unwrap();
    let err = issue(
        &catalog,
        &member,
        KeySpec::named("k").role("owner").account_wide(),
        now(),
        &mut rng(),
    )
    .unwrap_err();
    let found = escalations(err);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(matches!(found[0], Escalation::Permissions(_)));
    assert!(matches!(found[1], Escalation::Role { .. }));
    assert!(matches!(found[2], Escalation::Scope { .. }));
}

fn manager_key(catalog: &Catalog, expires_at: Option<Timestamp>) -> ApiKey {
    let spec = KeySpec::named("manager").permissions(["api-keys:write", "agents:read"]);
    let spec = match expires_at {
        Some(t) => spec.expires_at(t),
        None => spec,
    };
    issue(catalog, &owner(catalog), spec, now(), &mut rng())
        .unwrap()
        .key
}

#[test]
fn a_key_issuer_needs_the_management_permission_and_to_be_active() {
    let catalog = fine();
    let key = manager_key(&catalog, Some(now() + Duration::from_secs(3_600)));
    let issuer = Issuer::key(&catalog, &key, now()).unwrap();
    assert_eq!(issuer.kind(), IssuerKind::Key(key.id()));
    assert_eq!(issuer.permissions(), key.permissions());
    assert_eq!(issuer.expires_at(), key.expires_at());

    let later = now() + Duration::from_secs(3_600);
    let err = Issuer::key(&catalog, &key, later).unwrap_err();
    assert_eq!(err, IssueError::IssuerKey(Deny::Expired));
    assert_eq!(err.status(), 401);
    assert_eq!(
        serde_json::to_value(err.body(&catalog)).unwrap(),
        json!({"error": "Invalid or expired API key"})
    );

    let mut revoked = key.clone();
    revoked.revoke(now());
    assert_eq!(
        Issuer::key(&catalog, &revoked, now()),
        Err(IssueError::IssuerKey(Deny::Revoked))
    );

    let reader = issue(
        &catalog,
        &owner(&catalog),
        KeySpec::named("r").permissions(["agents:read"]),
        now(),
        &mut rng(),
    )
    .unwrap()
    .key;
    // Any active key is a caller (it may read and revoke itself); issuing needs the permission.
    let as_issuer = Issuer::key(&catalog, &reader, now()).unwrap();
    let err = issue(&catalog, &as_issuer, KeySpec::named("x"), now(), &mut rng()).unwrap_err();
    assert_eq!(err.status(), 403);
    assert_eq!(
        serde_json::to_value(err.body(&catalog)).unwrap(),
        json!({"error": "Permission api-keys:write required"})
    );

    let bare = Catalog::new(["agents:read"]).unwrap();
    let key = issue(
        &bare,
        &Issuer::user(ACCT, Scope::Account, bare.all()),
        KeySpec::named("k"),
        now(),
        &mut rng(),
    )
    .unwrap()
    .key;
    let as_issuer = Issuer::key(&bare, &key, now()).unwrap();
    let err = issue(&bare, &as_issuer, KeySpec::named("x"), now(), &mut rng()).unwrap_err();
    assert_eq!(err, IssueError::NoKeyManagementPermission);
    assert_eq!(err.status(), 403);
}

#[test]
fn a_key_issuers_child_never_outlives_it() {
    let catalog = fine();
    let end = now() + Duration::from_secs(3_600);
    let parent = manager_key(&catalog, Some(end));
    let issuer = Issuer::key(&catalog, &parent, now()).unwrap();

    let child = issue(&catalog, &issuer, KeySpec::named("c"), now(), &mut rng()).unwrap();
    assert_eq!(
        child.key.expires_at(),
        Some(end),
        "no expiry asked: the issuer's"
    );
    assert_eq!(
        child.key.created_by(),
        parent.created_by(),
        "a key's child acts for the same user"
    );
    assert_eq!(child.key.issued_by(), Some(parent.id()));

    let sooner = issue(
        &catalog,
        &issuer,
        KeySpec::named("c").ttl_seconds(60),
        now(),
        &mut rng(),
    )
    .unwrap();
    assert_eq!(
        sooner.key.expires_at(),
        Some(now() + Duration::from_secs(60))
    );
    let same = issue(
        &catalog,
        &issuer,
        KeySpec::named("c").expires_at(end),
        now(),
        &mut rng(),
    );
    assert!(same.is_ok());

    for spec in [
        KeySpec::named("c").ttl_seconds(3_601),
        KeySpec::named("c").expires_at(end + Duration::from_secs(1)),
    ] {
        let err = issue(&catalog, &issuer, spec, now(), &mut rng()).unwrap_err();
        let found = escalations(err.clone());
        assert!(matches!(found[..], [Escalation::Expiry { limit, .. }] if limit == end));
        assert_eq!(
            serde_json::to_value(err.body(&catalog)).unwrap(),
            json!({"error": "Cannot create an API key that outlives its issuer (which expires at 2026-04-15T11:00:00Z)"})
        );
    }

    // A key issuer without expiry lets its children choose.
    let forever = Issuer::key(&catalog, &manager_key(&catalog, None), now()).unwrap();
    let child = issue(&catalog, &forever, KeySpec::named("c"), now(), &mut rng()).unwrap();
    assert_eq!(child.key.expires_at(), None);
}

#[test]
fn an_issuer_snapshot_whose_key_has_since_expired_issues_nothing() {
    let catalog = fine();
    let end = now() + Duration::from_secs(60);
    let issuer = Issuer::key(&catalog, &manager_key(&catalog, Some(end)), now()).unwrap();
    // Without this check the child would inherit an expiry already past: born dead at best.
    let err = issue(&catalog, &issuer, KeySpec::named(""), end, &mut rng()).unwrap_err();
    assert_eq!(err, IssueError::IssuerKey(Deny::Expired));
    assert_eq!(err.status(), 401, "checked before the request is validated");
}

#[test]
fn a_key_issuers_permissions_bound_its_children() {
    let catalog = fine();
    let parent = manager_key(&catalog, None);
    let issuer = Issuer::key(&catalog, &parent, now()).unwrap();
    let child = issue(&catalog, &issuer, KeySpec::named("c"), now(), &mut rng()).unwrap();
    assert_eq!(
        names(&catalog, &child.key),
        ["agents:read", "api-keys:write"]
    );
    let err = issue(
        &catalog,
        &issuer,
        KeySpec::named("c").permissions(["agents:write"]),
        now(),
        &mut rng(),
    )
    .unwrap_err();
    assert_eq!(
        escalations(err),
        [Escalation::Permissions(vec!["agents:write".into()])]
    );
}

#[test]
fn a_key_issued_with_a_role_keeps_its_rank_when_it_issues() {
    let catalog = fine();
    let admin_key = issue(
        &catalog,
        &owner(&catalog),
        KeySpec::named("a").role("admin"),
        now(),
        &mut rng(),
    )
    .unwrap()
    .key;
    let issuer = Issuer::key(&catalog, &admin_key, now()).unwrap();
    assert_eq!(issuer.role(), Some("admin"));
    assert!(
        issue(
            &catalog,
            &issuer,
            KeySpec::named("m").role("member"),
            now(),
            &mut rng()
        )
        .is_ok()
    );
    assert!(
        issue(
            &catalog,
            &issuer,
            KeySpec::named("o").role("owner"),
            now(),
            &mut rng()
        )
        .is_err()
    );
}

#[test]
fn the_grant_is_frozen_at_issue_time() {
    let catalog = fine();
    let mut rng = rng();
    // The issuer is a snapshot: widening the user afterwards does not widen the child.
    let member = Issuer::user_with_role(&catalog, ACCT, Scope::Account, "member").unwrap();
    let child = issue(&catalog, &member, KeySpec::named("c"), now(), &mut rng).unwrap();
    let promoted = Issuer::user_with_role(&catalog, ACCT, Scope::Account, "owner").unwrap();
    let sibling = issue(&catalog, &promoted, KeySpec::named("s"), now(), &mut rng).unwrap();
    assert_eq!(sibling.key.permissions(), &catalog.all());
    assert_eq!(child.key.permissions(), member.permissions());
    let write = Action::named(&catalog, "agents:write").unwrap();
    assert_eq!(
        authorize(&child.key, write, &Resource::in_project(ACCT, p(1)), now()),
        keygate::Decision::Deny(Deny::MissingPermission(write.permission()))
    );

    // A child issued by a key keeps its grant when the parent is revoked or rotated...
    let mut parent = manager_key(&catalog, None);
    let issuer = Issuer::key(&catalog, &parent, now()).unwrap();
    let child = issue(&catalog, &issuer, KeySpec::named("c"), now(), &mut rng).unwrap();
    let before = child.key.clone();
    parent.revoke(now());
    assert_eq!(child.key, before);

    // ...and a catalog that grows later loads the stored record to the same grant.
    let record = child.key.to_record(&catalog);
    let grown = Catalog::new([
        "agents:read",
        "agents:write",
        "agents:delete",
        "calls:read",
        "calls:write",
        "api-keys:read",
        "api-keys:write",
        "agents:admin",
    ])
    .unwrap();
    let reloaded = ApiKey::from_record(record, &grown).unwrap();
    assert_eq!(
        grown.names(reloaded.permissions()).collect::<Vec<_>>(),
        ["agents:read", "api-keys:write"]
    );
}

#[test]
fn implications_widen_a_grant_but_never_past_the_issuer() {
    let catalog = Catalog::new(["agents:read", "agents:write", "calls:read", "calls:write"])
        .unwrap()
        .with_implication("*:write", ["*:read"])
        .unwrap();
    let everything = Issuer::user(ACCT, Scope::Account, catalog.all());
    let issued = issue(
        &catalog,
        &everything,
        KeySpec::named("k").permissions(["agents:write"]),
        now(),
        &mut rng(),
    )
    .unwrap();
    assert_eq!(
        names(&catalog, &issued.key),
        ["agents:read", "agents:write"]
    );

    // A parent issued `agents:write` before the implication existed holds only that (records
    // load frozen). Its child asking `agents:write` would also get `agents:read`, which the
    // parent lacks: refused, deny by default.
    let old = catalog.resolve(["agents:write"]).unwrap();
    let parent = Issuer::user(ACCT, Scope::Account, old);
    let err = issue(
        &catalog,
        &parent,
        KeySpec::named("k").permissions(["agents:write"]),
        now(),
        &mut rng(),
    )
    .unwrap_err();
    assert_eq!(
        serde_json::to_value(err.body(&catalog)).unwrap(),
        json!({"error": "Cannot grant permissions the issuer does not hold: agents:read"})
    );
    // A pattern is "what I hold of it", implications included: `agents:*` is agents:write alone.
    let narrowed = issue(
        &catalog,
        &parent,
        KeySpec::named("k").permissions(["agents:*"]),
        now(),
        &mut rng(),
    )
    .unwrap();
    assert_eq!(names(&catalog, &narrowed.key), ["agents:write"]);
    // And it stores, and loads back, exactly that.
    let record = narrowed.key.to_record(&catalog);
    assert_eq!(record.permissions, ["agents:write"]);
    let loaded = ApiKey::from_record(record, &catalog).unwrap();
    assert_eq!(names(&catalog, &loaded), ["agents:write"]);
}
