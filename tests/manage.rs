//! Managing existing keys: every rule of `manage`, the permits the keyring takes, cascading
//! revocation, creator caps, and the attenuation holes closed alongside (role ceilings, rate
//! limits, creators, expiry ranges, redaction, ids).
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed unwrap is a failed test"
)]

use std::time::Duration;

use keygate::{
    AccountId, Action, ApiKey, Catalog, Decision, Deny, Escalation, IssueError, Issuer, KeyId,
    KeySpec, KeyUpdate, Keyring, KeyringError, ManageError, ManageOp, Permit, ProjectId, RateLimit,
    Refusal, Resource, Scope, Timestamp, Token, issue, manage,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

const ACCT: AccountId = AccountId::from_bytes([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

fn now() -> Timestamp {
    Timestamp::from_unix_seconds(1_800_000_000)
}

fn p(n: u64) -> ProjectId {
    ProjectId::from_u64(n)
}

/// A fresh generator per call, so that every minted key has its own id and token.
fn rng() -> StdRng {
    static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(17);
    StdRng::seed_from_u64(SEED.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// The voice-agent platform's key-management names, and a little more, with ranked roles.
fn fine() -> Catalog {
    Catalog::new([
        "agents:read",
        "agents:write",
        "calls:read",
        "api-keys:read",
        "api-keys:write",
        "api-keys:delete",
        "api-keys:manage-others",
    ])
    .unwrap()
    .with_role(
        "member",
        [
            "*:read",
            "api-keys:read",
            "api-keys:write",
            "api-keys:delete",
        ],
    )
    .unwrap()
    .with_role("admin", ["*:read", "*:write", "api-keys:*"])
    .unwrap()
    .with_role("owner", ["*"])
    .unwrap()
}

fn owner(catalog: &Catalog) -> Issuer {
    Issuer::user(ACCT, Scope::Account, catalog.all()).with_user_id("owner")
}

fn mint(catalog: &Catalog, issuer: &Issuer, spec: KeySpec) -> (ApiKey, Token) {
    let issued = issue(catalog, issuer, spec, now(), &mut rng()).unwrap();
    (issued.key, issued.token)
}

fn key_caller(catalog: &Catalog, key: &ApiKey) -> Issuer {
    Issuer::key(catalog, key, now()).unwrap()
}

fn message(err: &ManageError, catalog: &Catalog) -> String {
    err.body(catalog).message().into_owned()
}

#[test]
fn a_read_write_key_cannot_take_over_or_revoke_the_bootstrap_key() {
    let catalog = Catalog::read_write_delete();
    let (bootstrap, _) = mint(&catalog, &owner(&catalog), KeySpec::named("Bootstrap"));
    let (writer, _) = mint(
        &catalog,
        &owner(&catalog),
        KeySpec::named("rw").permissions(["read", "write"]),
    );
    let caller = key_caller(&catalog, &writer);
    for op in [ManageOp::Rotate, ManageOp::Read] {
        let err = manage(&catalog, &caller, &bootstrap, op, now()).unwrap_err();
        assert_eq!(err.status(), 403);
        assert_eq!(
            message(&err, &catalog),
            "Cannot manage an API key holding permissions the caller does not hold: delete"
        );
    }
    // Revoking needs `delete`, which it lacks anyway.
    let err = manage(&catalog, &caller, &bootstrap, ManageOp::Revoke, now()).unwrap_err();
    assert_eq!(
        err,
        ManageError::CallerKey(Deny::MissingPermission(
            catalog.permission("delete").unwrap()
        ))
    );
    assert_eq!(message(&err, &catalog), "Delete permission required");

    // It still manages what it issued.
    let (child, _) = mint(
        &catalog,
        &caller,
        KeySpec::named("child").permissions(["read"]),
    );
    assert!(manage(&catalog, &caller, &child, ManageOp::Rotate, now()).is_ok());
    assert!(manage(&catalog, &caller, &child, ManageOp::Read, now()).is_ok());
}

#[test]
fn out_of_reach_is_404_and_confirms_nothing() {
    let catalog = Catalog::read_write_delete();
    let other = Issuer::user(AccountId::from_u64(2), Scope::Account, catalog.all());
    let (theirs, _) = mint(&catalog, &other, KeySpec::named("theirs"));
    let (project_key, _) = mint(
        &catalog,
        &owner(&catalog),
        KeySpec::named("p1").project(p(1)),
    );
    let (elsewhere, _) = mint(
        &catalog,
        &owner(&catalog),
        KeySpec::named("p2").project(p(2)),
    );
    let (account_wide, _) = mint(&catalog, &owner(&catalog), KeySpec::named("aw"));
    let me = owner(&catalog);
    for op in [ManageOp::Read, ManageOp::Rotate, ManageOp::Revoke] {
        let err = manage(&catalog, &me, &theirs, op, now()).unwrap_err();
        assert_eq!(err, ManageError::NotFound);
        assert_eq!(err.status(), 404);
        assert_eq!(
            serde_json::to_value(err.body(&catalog)).unwrap(),
            json!({"error": "Not found"})
        );
    }
    // A project key sees only its project's keys: the other project's and account-wide keys
    // are as absent as another tenant's.
    let scoped = key_caller(&catalog, &project_key);
    for target in [&elsewhere, &account_wide] {
        assert_eq!(
            manage(&catalog, &scoped, target, ManageOp::Read, now()),
            Err(ManageError::NotFound)
        );
    }
}

#[test]
fn each_op_needs_its_permission_from_a_key() {
    let catalog = fine();
    let (target, _) = mint(
        &catalog,
        &owner(&catalog),
        KeySpec::named("t").permissions(["agents:read"]),
    );
    let cases = [
        (ManageOp::Read, "api-keys:read"),
        (ManageOp::Rotate, "api-keys:write"),
        (
            ManageOp::Update(KeyUpdate::new().name("x")),
            "api-keys:write",
        ),
        (ManageOp::Revoke, "api-keys:delete"),
    ];
    for (op, needed) in cases {
        // Everything but the needed permission (manage-others included: the caller did not
        // issue the target).
        let all = catalog.all();
        let held: Vec<&str> = catalog.names(&all).filter(|n| *n != needed).collect();
        let (caller_key, _) = mint(
            &catalog,
            &owner(&catalog),
            KeySpec::named("c").permissions(held),
        );
        let err = manage(
            &catalog,
            &key_caller(&catalog, &caller_key),
            &target,
            op.clone(),
            now(),
        )
        .unwrap_err();
        assert_eq!(err.status(), 403, "{op:?}");
        assert_eq!(
            message(&err, &catalog),
            format!("Permission {needed} required")
        );
    }
    // A catalog with no such names at all: no key manages keys.
    let bare = Catalog::new(["agents:read"]).unwrap();
    let user = Issuer::user(ACCT, Scope::Account, bare.all());
    let (a, _) = mint(&bare, &user, KeySpec::named("a"));
    let (b, _) = mint(&bare, &user, KeySpec::named("b"));
    assert_eq!(
        manage(&bare, &key_caller(&bare, &a), &b, ManageOp::Read, now()),
        Err(ManageError::NoKeyManagementPermission)
    );
}

#[test]
fn a_key_may_always_read_and_revoke_itself() {
    let catalog = fine();
    let (reader, _) = mint(
        &catalog,
        &owner(&catalog),
        KeySpec::named("r").permissions(["agents:read"]),
    );
    let me = key_caller(&catalog, &reader);
    let read = manage(&catalog, &me, &reader, ManageOp::Read, now()).unwrap();
    assert_eq!((read.target(), read.op_name()), (reader.id(), "read"));
    let revoke = manage(&catalog, &me, &reader, ManageOp::Revoke, now()).unwrap();
    let mut keyring = Keyring::default();
    keyring.insert(reader.clone()).unwrap();
    keyring.revoke(&revoke, now()).unwrap();
    assert!(keyring.get(reader.id()).unwrap().is_revoked());
    // Rotating itself needs the write permission like any rotation.
    assert!(matches!(
        manage(&catalog, &me, &reader, ManageOp::Rotate, now()),
        Err(ManageError::CallerKey(Deny::MissingPermission(_)))
    ));
}

#[test]
fn others_keys_need_manage_others() {
    let catalog = fine();
    let member = *catalog.role("member").unwrap().permissions();
    let alice = Issuer::user(ACCT, Scope::Account, member).with_user_id("alice");
    let bob = Issuer::user(ACCT, Scope::Account, member).with_user_id("bob");
    let (alices, _) = mint(
        &catalog,
        &alice,
        KeySpec::named("a").permissions(["agents:read"]),
    );
    assert!(manage(&catalog, &alice, &alices, ManageOp::Revoke, now()).is_ok());
    let err = manage(&catalog, &bob, &alices, ManageOp::Revoke, now()).unwrap_err();
    assert_eq!(err.status(), 403);
    assert_eq!(
        message(&err, &catalog),
        "Permission api-keys:manage-others required"
    );
    // The owner holds it.
    assert!(manage(&catalog, &owner(&catalog), &alices, ManageOp::Revoke, now()).is_ok());
    // A key manages the keys it issued, not its siblings.
    let (manager, _) = mint(
        &catalog,
        &alice,
        KeySpec::named("m").permissions([
            "agents:read",
            "api-keys:read",
            "api-keys:write",
            "api-keys:delete",
        ]),
    );
    let as_key = key_caller(&catalog, &manager);
    let (child, _) = mint(&catalog, &as_key, KeySpec::named("c"));
    assert!(manage(&catalog, &as_key, &child, ManageOp::Rotate, now()).is_ok());
    assert!(matches!(
        manage(&catalog, &as_key, &alices, ManageOp::Rotate, now()),
        Err(ManageError::ManageOthers { .. })
    ));
}

#[test]
fn a_richer_target_is_an_escalation_named_each_way() {
    let catalog = fine();
    let end = now() + Duration::from_secs(3_600);
    let limit = RateLimit::per_period(10, 60).unwrap();
    // An admin key (admin and owner hold the same permissions here: only the rank differs),
    // expiring, rate-limited.
    let (caller_key, _) = mint(
        &catalog,
        &owner(&catalog),
        KeySpec::named("c")
            .role("admin")
            .expires_at(end)
            .rate_limit(limit),
    );
    let caller = key_caller(&catalog, &caller_key);
    let (rich, _) = mint(
        &catalog,
        &owner(&catalog),
        KeySpec::named("rich").role("owner"),
    );
    let err = manage(&catalog, &caller, &rich, ManageOp::Read, now()).unwrap_err();
    let ManageError::Escalation(found) = &err else {
        panic!("{err:?}");
    };
    assert!(
        found
            .iter()
            .any(|e| matches!(e, Escalation::Role { requested, .. } if requested == "owner"))
    );
    assert!(found.iter().any(|e| matches!(e, Escalation::Expiry { .. })));
    assert!(found.iter().any(|e| matches!(
        e,
        Escalation::RateLimit {
            requested: None,
            ..
        }
    )));
    let text = message(&err, &catalog);
    assert!(
        text.contains("Cannot manage an API key whose role owner exceeds the caller's"),
        "{text}"
    );
    assert!(text.contains("outlives the caller"), "{text}");
    assert!(text.contains("looser rate limit"), "{text}");

    // Dominated in every way: allowed.
    let (small, _) = mint(
        &catalog,
        &caller,
        KeySpec::named("small")
            .permissions(["agents:read"])
            .role("member")
            .permissions(["agents:read"]),
    );
    assert!(manage(&catalog, &caller, &small, ManageOp::Rotate, now()).is_ok());
}

#[test]
fn updates_only_narrow() {
    let catalog = fine();
    let end = now() + Duration::from_secs(3_600);
    let (target, _) = mint(
        &catalog,
        &owner(&catalog),
        KeySpec::named("t")
            .permissions(["agents:read", "agents:write"])
            .expires_at(end),
    );
    let me = owner(&catalog);
    let update = |u: KeyUpdate| manage(&catalog, &me, &target, ManageOp::Update(u), now());

    let permit = update(
        KeyUpdate::new()
            .name("  renamed ")
            .tags(["a"])
            .comment("c")
            .permissions(["agents:*"])
            .expires_at(now() + Duration::from_secs(60)),
    )
    .unwrap();
    let updated = permit.updated_key().unwrap();
    assert_eq!(updated.name(), "renamed");
    assert_eq!(updated.tags(), ["a"]);
    assert_eq!(updated.comment(), Some("c"));
    assert_eq!(
        updated.permissions(),
        target.permissions(),
        "agents:* keeps what it holds"
    );
    assert_eq!(updated.expires_at(), Some(now() + Duration::from_secs(60)));
    let narrowed = update(KeyUpdate::new().permissions(["agents:read"])).unwrap();
    assert_eq!(
        catalog
            .names(narrowed.updated_key().unwrap().permissions())
            .collect::<Vec<_>>(),
        ["agents:read"]
    );

    let err = update(KeyUpdate::new().permissions(["calls:read"])).unwrap_err();
    assert_eq!(err.status(), 403);
    assert_eq!(
        message(&err, &catalog),
        "An update may only narrow a key: it does not hold calls:read"
    );
    let err = update(KeyUpdate::new().expires_at(end + Duration::from_secs(1))).unwrap_err();
    assert_eq!(err.status(), 403);
    let err = update(KeyUpdate::new().name(" ").permissions(Vec::<String>::new())).unwrap_err();
    assert_eq!(err.status(), 422);
    assert_eq!(
        serde_json::to_value(err.body(&catalog)).unwrap(),
        json!({"errors": ["Name can't be blank", "Permissions can't be empty"]})
    );
    let err = update(KeyUpdate::new().expires_at(now())).unwrap_err();
    assert_eq!(err.status(), 422);

    // Applied through the keyring; a revocation is never undone by an update.
    let mut keyring = Keyring::default();
    keyring.insert(target.clone()).unwrap();
    keyring.apply_update(&narrowed).unwrap();
    assert_eq!(
        keyring.get(target.id()).unwrap().permissions(),
        narrowed.updated_key().unwrap().permissions()
    );
}

#[test]
fn permits_are_for_one_op_and_rotating_a_revoked_key_is_409() {
    let catalog = Catalog::read_write_delete();
    let (key, _) = mint(&catalog, &owner(&catalog), KeySpec::named("k"));
    let mut keyring = Keyring::default();
    keyring.insert(key.clone()).unwrap();
    let read = manage(&catalog, &owner(&catalog), &key, ManageOp::Read, now()).unwrap();
    assert_eq!(
        keyring.revoke(&read, now()),
        Err(KeyringError::WrongPermit {
            expected: "revoke",
            got: "read"
        })
    );
    assert!(keyring.rotate(&read, now(), None, &mut rng()).is_err());
    assert!(keyring.apply_update(&read).is_err());
    assert!(!keyring.get(key.id()).unwrap().is_revoked());

    keyring
        .revoke(&Permit::operator_revoke(key.id()), now())
        .unwrap();
    let revoked = keyring.get(key.id()).unwrap().clone();
    let err = manage(
        &catalog,
        &owner(&catalog),
        &revoked,
        ManageOp::Rotate,
        now(),
    )
    .unwrap_err();
    assert_eq!(
        (err.status(), message(&err, &catalog).as_str()),
        (409, "API key is revoked")
    );
}

#[test]
fn an_inactive_calling_key_is_401() {
    let catalog = Catalog::read_write_delete();
    let end = now() + Duration::from_secs(10);
    let (caller_key, _) = mint(
        &catalog,
        &owner(&catalog),
        KeySpec::named("c").expires_at(end),
    );
    let (target, _) = mint(
        &catalog,
        &key_caller(&catalog, &caller_key),
        KeySpec::named("t"),
    );
    let snapshot = key_caller(&catalog, &caller_key);
    let err = manage(&catalog, &snapshot, &target, ManageOp::Read, end).unwrap_err();
    assert_eq!(err, ManageError::CallerKey(Deny::Expired));
    assert_eq!(err.status(), 401);
    // The keyring's view counts a revocation made since the key was authenticated.
    let mut keyring = Keyring::from_keys(Default::default(), [caller_key.clone(), target]).unwrap();
    keyring
        .revoke(&Permit::operator_revoke(caller_key.id()), now())
        .unwrap();
    assert_eq!(
        keyring.issuer(&catalog, caller_key.id(), now()).map(|_| ()),
        Err(IssueError::IssuerKey(Deny::Revoked))
    );
    assert_eq!(
        keyring
            .issuer(&catalog, KeyId::from_bytes([9; 16]), now())
            .map(|_| ()),
        Err(IssueError::IssuerKey(Deny::UnknownKey))
    );
}

#[test]
fn revoking_a_key_can_revoke_its_tree_and_rotating_leaves_children_working() {
    let catalog = Catalog::read_write_delete();
    let (root, _) = mint(&catalog, &owner(&catalog), KeySpec::named("root"));
    let (child, child_token) = mint(
        &catalog,
        &key_caller(&catalog, &root),
        KeySpec::named("child"),
    );
    let (grandchild, _) = mint(
        &catalog,
        &key_caller(&catalog, &child),
        KeySpec::named("gc"),
    );
    let (sibling, _) = mint(&catalog, &owner(&catalog), KeySpec::named("sibling"));
    let mut keyring = Keyring::from_keys(
        Default::default(),
        [
            root.clone(),
            child.clone(),
            grandchild.clone(),
            sibling.clone(),
        ],
    )
    .unwrap();

    // Rotating the root keeps its children working.
    let rotate = manage(&catalog, &owner(&catalog), &root, ManageOp::Rotate, now()).unwrap();
    keyring.rotate(&rotate, now(), None, &mut rng()).unwrap();
    assert!(
        keyring
            .authenticate(child_token.expose_secret(), now())
            .is_ok()
    );

    let revoke = manage(&catalog, &owner(&catalog), &root, ManageOp::Revoke, now()).unwrap();
    let revoked = keyring.revoke_tree(&revoke, now()).unwrap();
    assert_eq!(revoked, [root.id(), child.id(), grandchild.id()]);
    assert_eq!(
        keyring
            .authenticate(child_token.expose_secret(), now())
            .err(),
        Some(Deny::Revoked)
    );
    assert!(!keyring.get(sibling.id()).unwrap().is_revoked());
    // Again: nothing left to revoke.
    assert!(keyring.revoke_tree(&revoke, now()).unwrap().is_empty());
}

#[test]
fn the_creator_cap_shrinks_keys_at_once_and_removal_disables_them() {
    let catalog = Catalog::read_write_delete();
    let alice = Issuer::user(ACCT, Scope::Account, catalog.all()).with_user_id("alice");
    let (direct, direct_token) = mint(&catalog, &alice, KeySpec::named("direct"));
    // A key's child acts for the same user, so the cap reaches it too.
    let (child, child_token) = mint(
        &catalog,
        &key_caller(&catalog, &direct),
        KeySpec::named("child"),
    );
    assert_eq!(child.created_by(), Some("alice"));
    let mut keyring = Keyring::from_keys(Default::default(), [direct.clone(), child]).unwrap();
    let action = |name| Action::named(&catalog, name).unwrap();
    let here = Resource::listing(ACCT);
    let decide = |ring: &Keyring, token: &Token, name| {
        ring.authorize(token.expose_secret(), action(name), &here, now())
    };

    assert_eq!(
        keyring.creator_cap("alice"),
        Some(&keygate::PermissionSet::ALL)
    );
    keyring.set_creator_cap("alice", catalog.expand(["read", "write"]).unwrap());
    for token in [&direct_token, &child_token] {
        assert_eq!(decide(&keyring, token, "read"), Decision::Allow);
        assert_eq!(
            decide(&keyring, token, "delete"),
            Decision::Deny(Deny::MissingPermission(action("delete").permission()))
        );
    }
    assert_eq!(
        keyring.effective_permissions(direct.id()),
        catalog.expand(["read", "write"]).unwrap()
    );
    // The keyring's issuer view is capped too: a demoted creator's key cannot issue or manage
    // beyond what the creator holds now.
    let capped = keyring.issuer(&catalog, direct.id(), now()).unwrap();
    assert_eq!(
        capped.permissions(),
        &catalog.expand(["read", "write"]).unwrap()
    );
    let key = keyring.get(direct.id()).unwrap();
    assert_eq!(
        keyring.authorize_key(key, action("delete"), &here, now()),
        Decision::Deny(Deny::MissingPermission(action("delete").permission()))
    );

    keyring.remove_creator("alice");
    for token in [&direct_token, &child_token] {
        assert!(!decide(&keyring, token, "read").is_allowed());
    }
    // Promoted back: the frozen sets return, never more.
    keyring.set_creator_cap("alice", catalog.all());
    assert_eq!(decide(&keyring, &direct_token, "delete"), Decision::Allow);
}

#[test]
fn a_role_ceiling_survives_a_role_less_key() {
    let catalog = fine();
    let admin = Issuer::user_with_role(&catalog, ACCT, Scope::Account, "admin").unwrap();
    // An admin mints a key without a role; it carries the admin ceiling...
    let (middle, _) = mint(&catalog, &admin, KeySpec::named("middle"));
    assert_eq!(middle.role(), None);
    assert_eq!(middle.role_ceiling(), Some("admin"));
    // ...so neither it nor its children can hand on `owner`, even holding its permissions.
    let err = issue(
        &catalog,
        &key_caller(&catalog, &middle),
        KeySpec::named("x").role("owner"),
        now(),
        &mut rng(),
    )
    .unwrap_err();
    assert!(
        matches!(err, IssueError::Escalation(ref e) if e.iter().any(|e| matches!(e, Escalation::Role { .. })))
    );
    let (grandchild, _) = mint(
        &catalog,
        &key_caller(&catalog, &middle),
        KeySpec::named("gc"),
    );
    assert_eq!(grandchild.role_ceiling(), Some("admin"));
    let record = grandchild.to_record(&catalog);
    assert_eq!(ApiKey::from_record(record, &catalog).unwrap(), grandchild);
}

#[test]
fn rate_limits_attenuate_and_children_share_the_budget() {
    let catalog = Catalog::read_write_delete();
    let limit = RateLimit::per_period(3, 60).unwrap();
    let (parent, _) = mint(
        &catalog,
        &owner(&catalog),
        KeySpec::named("p").rate_limit(limit),
    );
    let as_parent = key_caller(&catalog, &parent);
    let (inherits, _) = mint(&catalog, &as_parent, KeySpec::named("c"));
    assert_eq!(inherits.rate_limit(), Some(&limit));
    let tighter = RateLimit::per_period(1, 60).unwrap();
    let (narrow, _) = mint(
        &catalog,
        &as_parent,
        KeySpec::named("n").rate_limit(tighter),
    );
    assert_eq!(narrow.rate_limit(), Some(&tighter));
    let err = issue(
        &catalog,
        &as_parent,
        KeySpec::named("loose").rate_limit(RateLimit::per_period(4, 60).unwrap()),
        now(),
        &mut rng(),
    )
    .unwrap_err();
    assert_eq!(err.status(), 403);
    assert_eq!(
        err.body(&catalog).message(),
        "Cannot create an API key with a looser rate limit than its issuer's (3 requests per 60 \
         seconds, bursts of 3)"
    );

    // Three children, each with the full limit, still spend one budget of 3.
    let mut children = Vec::new();
    for i in 0..3 {
        children.push(mint(&catalog, &as_parent, KeySpec::named(format!("c{i}"))).0);
    }
    let keyring = Keyring::from_keys(
        Default::default(),
        children.iter().cloned().chain([parent.clone()]),
    )
    .unwrap();
    let admitted = children
        .iter()
        .cycle()
        .take(9)
        .filter(|c| keyring.check_rate_limit(c.id(), now()).is_ok())
        .count();
    assert_eq!(admitted, 3);
    assert!(keyring.check_rate_limit(parent.id(), now()).is_err());
    // A refusal by an ancestor charges no one: the child's own budget is untouched.
    let later = now() + Duration::from_secs(20);
    assert!(keyring.check_rate_limit(children[0].id(), later).is_ok());
    // Unknown keys are refused.
    assert!(
        keyring
            .check_rate_limit(KeyId::from_bytes([3; 16]), now())
            .is_err()
    );
}

#[test]
fn the_creator_is_the_authenticated_issuer() {
    let catalog = Catalog::read_write_delete();
    let (key, _) = mint(&catalog, &owner(&catalog), KeySpec::named("k"));
    assert_eq!(key.created_by(), Some("owner"));
    assert_eq!(key.issued_by(), None);
    let (child, _) = mint(&catalog, &key_caller(&catalog, &key), KeySpec::named("c"));
    assert_eq!(
        (child.created_by(), child.issued_by()),
        (Some("owner"), Some(key.id()))
    );
}

#[test]
fn every_accepted_expiry_is_storable_and_no_key_is_dead_at_birth() {
    let catalog = Catalog::read_write_delete();
    let me = owner(&catalog);
    for spec in [
        KeySpec::named("k").ttl_seconds(u64::MAX),
        KeySpec::named("k").ttl(Duration::MAX),
        KeySpec::named("k").ttl_seconds(300_000_000_000),
        KeySpec::named("k").expires_at(Timestamp::MAX),
        KeySpec::named("k").expires_at(Timestamp::from_unix_micros(
            Timestamp::LATEST_RECORDABLE.unix_micros() + 1,
        )),
    ] {
        let err = issue(&catalog, &me, spec.clone(), now(), &mut rng()).unwrap_err();
        assert_eq!(err.status(), 422, "{spec:?}");
    }
    let latest = issue(
        &catalog,
        &me,
        KeySpec::named("k").expires_at(Timestamp::LATEST_RECORDABLE),
        now(),
        &mut rng(),
    )
    .unwrap();
    assert!(serde_json::to_string(&latest.key.to_record(&catalog)).is_ok());
    // One nanosecond to live is one microsecond, not zero.
    let brief = issue(
        &catalog,
        &me,
        KeySpec::named("k").ttl(Duration::from_nanos(1)),
        now(),
        &mut rng(),
    )
    .unwrap();
    assert_eq!(
        brief.key.expires_at(),
        Some(Timestamp::from_unix_micros(now().unix_micros() + 1))
    );
    assert!(brief.key.is_active(now()));
}

proptest::proptest! {
    /// Whatever string is presented, redaction shows at most a format-like prefix (at most 17
    /// characters of `[A-Za-z0-9_-]` ending in '_') and then at most 4 characters.
    #[test]
    fn redaction_shows_the_prefix_and_at_most_four_characters(text in ".{0,80}") {
        let shown = format!("{}", Token::from_presented(text.clone()));
        let shown = shown.strip_suffix('…').unwrap();
        proptest::prop_assert!(text.starts_with(shown));
        let valid_prefix = |prefix: &str| {
            prefix.chars().count() <= 17
                && (prefix.is_empty() || prefix.ends_with('_'))
                && prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        let splits = shown.char_indices().map(|(i, _)| i).chain([shown.len()]);
        let explained = splits
            .map(|i| shown.split_at(i))
            .any(|(prefix, body)| valid_prefix(prefix) && body.chars().count() <= 4);
        proptest::prop_assert!(explained, "{text:?} shown as {shown:?}");
    }
}

#[test]
fn redaction_of_hostile_strings() {
    for (text, shown) in [
        ("secretsecretsecret_x", "secr…"),
        ("idc_AbCdEfGh", "idc_AbCd…"),
        ("sk_live_ABCDEFGH", "sk_live_ABCD…"),
        ("a_b_c_d_e_f_g_h_i_j_k", "a_b_c_d_e_f_g_h_i_j_…"),
        ("¡_secret", "¡_se…"),
        ("пароль_секрет", "паро…"),
        ("", "…"),
    ] {
        assert_eq!(
            format!("{}", Token::from_presented(text.to_owned())),
            shown,
            "{text}"
        );
    }
}

#[test]
fn integer_and_uuid_ids_never_alias() {
    assert!(
        "00000000-0000-0000-0000-00000000002a"
            .parse::<ProjectId>()
            .is_err()
    );
    assert!(
        "00000000-0000-0000-0000-000000000000"
            .parse::<AccountId>()
            .is_err()
    );
    assert_eq!("42".parse::<ProjectId>().unwrap(), ProjectId::from_u64(42));
    let uuid: ProjectId = "00000000-0000-0001-0000-00000000002a".parse().unwrap();
    assert_ne!(uuid, ProjectId::from_u64(42));
    assert!(serde_json::from_str::<ProjectId>("\"00000000-0000-0000-0000-00000000002a\"").is_err());
}
