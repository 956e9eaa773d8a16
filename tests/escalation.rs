//! No escalation through any chain of issues.
//!
//! A property builds random catalogs (`keygate::testing::strategy::catalogs`: fine-grained or the
//! coarse read/write/delete, with random ranked roles) and random chains of up to six issued keys: a user issues the first key, and each
//! key then issues the next (when it may); refused attempts are checked and the chain goes on. At every step it checks the result against a plain model of
//! the rules: what should be refused (422 or 403) is refused, what should be issued is issued,
//! and every issued key stays within its issuer: permissions a subset, scope within, same account,
//! never outliving a key issuer. It then probes random actions, resources and times: whenever a
//! descendant is allowed, every ancestor is too.
//!
//! A second property runs random sequences of every operation across several actors (users with
//! ranked roles who are demoted and removed, keys issuing keys, every management operation) in
//! the simulated world of `tests/common/world.rs`, whose oracle is: no key ever authorizes an
//! action that some ancestor, or its creator's current cap, could not; no management operation
//! succeeds on a key the caller could not have issued.
//!
//! The case count follows `PROPTEST_CASES` (default 256).
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: a failed unwrap is a failed test"
)]

use std::time::Duration;

use keygate::testing::strategy;
use keygate::{
    AccountId, Action, ApiKey, Catalog, Deny, IssueError, Issuer, KeyId, KeySpec, PermissionSet,
    ProjectId, Resource, Scope, Timestamp, TokenHash, authorize, issue,
};
use proptest::prelude::*;

mod common;
use rand::SeedableRng;
use rand::rngs::StdRng;

const ACCT: u64 = 1;
const OTHER_ACCT: u64 = 2;
const PROJECTS: u64 = 3;
/// The longest chain of issued keys.
const MAX_DEPTH: usize = 6;

#[derive(Debug, Clone)]
enum PermPlan {
    /// No list: the role's or the issuer's set.
    Default,
    /// Exact names from a mask, optionally cut down to the issuer's set, optionally with the
    /// key-management permission added (so the chain can go on).
    Mask {
        mask: u64,
        within_issuer: bool,
        manage: bool,
    },
    /// The `*` pattern.
    Everything,
}

#[derive(Debug, Clone)]
enum ScopePlan {
    Default,
    Account,
    Project(u64),
}

#[derive(Debug, Clone)]
enum ExpiryPlan {
    None,
    /// Seconds to live (0 is invalid).
    Ttl(u64),
    /// Seconds from now (<= 0 is invalid).
    At(i64),
    /// Both forms (invalid).
    Both,
}

#[derive(Debug, Clone)]
struct StepPlan {
    advance: u64,
    blank_name: bool,
    permissions: PermPlan,
    role: Option<usize>,
    scope: ScopePlan,
    expiry: ExpiryPlan,
    probes: Vec<Probe>,
}

#[derive(Debug, Clone)]
struct Probe {
    permission: usize,
    account_level: bool,
    resource: u8,
    after: u64,
}

fn step_plan() -> impl Strategy<Value = StepPlan> {
    let permissions = prop_oneof![
        2 => Just(PermPlan::Default),
        8 => (any::<u64>(), prop::bool::weighted(0.85), prop::bool::weighted(0.85)).prop_map(
            |(mask, within_issuer, manage)| PermPlan::Mask { mask, within_issuer, manage }
        ),
        1 => Just(PermPlan::Everything),
    ];
    let scope = prop_oneof![
        5 => Just(ScopePlan::Default),
        1 => Just(ScopePlan::Account),
        2 => (0..PROJECTS).prop_map(ScopePlan::Project),
    ];
    let expiry = prop_oneof![
        8 => Just(ExpiryPlan::None),
        4 => (0u64..20_000).prop_map(ExpiryPlan::Ttl),
        4 => (-100i64..20_000).prop_map(ExpiryPlan::At),
        1 => Just(ExpiryPlan::Both),
    ];
    let probe = (any::<usize>(), any::<bool>(), 0u8..6, 0u64..30_000).prop_map(
        |(permission, account_level, resource, after)| Probe {
            permission,
            account_level,
            resource,
            after,
        },
    );
    (
        0u64..2_000,
        prop::bool::weighted(0.03),
        permissions,
        prop::option::weighted(0.2, any::<usize>()),
        scope,
        expiry,
        prop::collection::vec(probe, 8),
    )
        .prop_map(
            |(advance, blank_name, permissions, role, scope, expiry, probes)| StepPlan {
                advance,
                blank_name,
                permissions,
                role,
                scope,
                expiry,
                probes,
            },
        )
}

/// The root user: a permission mask (usually with key management), a scope, and maybe a role.
#[derive(Debug, Clone)]
struct RootPlan {
    mask: u64,
    manage: bool,
    project: Option<u64>,
    role: Option<usize>,
}

fn root_plan() -> impl Strategy<Value = RootPlan> {
    (
        any::<u64>(),
        prop::bool::weighted(0.85),
        prop::option::weighted(0.4, 0..PROJECTS),
        prop::option::weighted(0.3, any::<usize>()),
    )
        .prop_map(|(mask, manage, project, role)| RootPlan {
            mask,
            manage,
            project,
            role,
        })
}

fn scope_of(project: Option<u64>) -> Scope {
    project.map_or(Scope::Account, |p| Scope::Project(ProjectId::from_u64(p)))
}

fn resource(code: u8) -> Resource {
    let acct = AccountId::from_u64(ACCT);
    match code {
        0 => Resource::account(acct),
        1 => Resource::listing(acct),
        2..=4 => Resource::in_project(acct, ProjectId::from_u64(u64::from(code - 2))),
        _ => Resource::in_project(AccountId::from_u64(OTHER_ACCT), ProjectId::from_u64(0)),
    }
}

/// What the model expects of one issue.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    Issued,
    IssuerExpired,
    Invalid,
    Escalation,
}

/// The rules, written plainly: what should happen when `issuer` (its permissions, scope, role
/// rank, expiry) asks for this spec.
#[expect(
    clippy::too_many_arguments,
    reason = "the model reads every input plainly"
)]
fn model(
    issuer_perms: &PermissionSet,
    issuer_scope: Scope,
    issuer_rank: Option<usize>,
    issuer_expiry: Option<Timestamp>,
    step: &StepPlan,
    explicit: Option<PermissionSet>,
    role: Option<&keygate::Role>,
    now: Timestamp,
) -> Expected {
    if issuer_expiry.is_some_and(|e| e <= now) {
        return Expected::IssuerExpired;
    }
    let expiry_ok = match step.expiry {
        ExpiryPlan::None => true,
        ExpiryPlan::Ttl(s) => s > 0,
        ExpiryPlan::At(off) => off > 0,
        ExpiryPlan::Both => false,
    };
    let role_fits = match (role, explicit) {
        (Some(r), Some(e)) => e.is_subset(r.permissions()),
        _ => true,
    };
    let explicitly_empty =
        matches!(step.permissions, PermPlan::Mask { .. }) && explicit.is_some_and(|e| e.is_empty());
    if step.blank_name || !expiry_ok || !role_fits || explicitly_empty {
        return Expected::Invalid;
    }
    // `*` grants what the issuer holds; it reaches too far only when the issuer holds nothing.
    if matches!(step.permissions, PermPlan::Everything) && issuer_perms.is_empty() {
        return Expected::Escalation;
    }
    let grant = match step.permissions {
        PermPlan::Everything => Some(*issuer_perms),
        PermPlan::Default | PermPlan::Mask { .. } => explicit,
    }
    .or_else(|| role.map(|r| *r.permissions()))
    .unwrap_or(*issuer_perms);
    let role_ok = role.is_none_or(|r| {
        r.permissions().is_subset(issuer_perms) && issuer_rank.is_none_or(|rank| r.rank() <= rank)
    });
    let scope = match step.scope {
        ScopePlan::Default => issuer_scope,
        ScopePlan::Account => Scope::Account,
        ScopePlan::Project(p) => Scope::Project(ProjectId::from_u64(p)),
    };
    let requested_expiry = match step.expiry {
        ExpiryPlan::Ttl(s) => Some(now + Duration::from_secs(s)),
        ExpiryPlan::At(off) => Some(now + Duration::from_secs(off.unsigned_abs())),
        ExpiryPlan::None | ExpiryPlan::Both => None,
    };
    let expiry_within = match (requested_expiry, issuer_expiry) {
        (Some(r), Some(limit)) => r <= limit,
        _ => true,
    };
    if grant.is_subset(issuer_perms) && role_ok && scope.is_within(&issuer_scope) && expiry_within {
        Expected::Issued
    } else {
        Expected::Escalation
    }
}

/// A key equivalent to a user issuer: same account, scope and permissions, no expiry. Whatever a
/// descendant may do, this must be allowed too.
fn user_as_key(perms: PermissionSet, scope: Scope) -> ApiKey {
    ApiKey::new(
        KeyId::from_bytes([0; 16]),
        "root",
        AccountId::from_u64(ACCT),
        scope,
        perms,
        TokenHash::of("root"),
        Timestamp::EPOCH,
    )
}

fn run_chain(catalog: &Catalog, root: &RootPlan, steps: &[StepPlan], seed: u64) {
    let catalog = catalog.clone();
    let names: Vec<String> = catalog.names(&catalog.all()).map(str::to_owned).collect();
    let manage = catalog
        .permission("api-keys:write")
        .or_else(|| catalog.permission("write"))
        .unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut now = Timestamp::from_unix_seconds(1_800_000_000);

    let acct = AccountId::from_u64(ACCT);
    let root_scope = scope_of(root.project);
    let root_role = root
        .role
        .and_then(|i| catalog.roles().get(i % catalog.roles().len().max(1)));
    let mut issuer = match root_role {
        Some(role) => Issuer::user_with_role(&catalog, acct, root_scope, role.name()).unwrap(),
        None => {
            let mut perms = strategy::set_from_mask(&catalog, root.mask);
            if root.manage {
                perms.insert(manage);
            }
            Issuer::user(acct, root_scope, perms)
        }
    };
    // Every ancestor as a key: the root user's equivalent, then each issued key.
    let mut ancestors: Vec<ApiKey> = vec![user_as_key(*issuer.permissions(), root_scope)];

    for step in steps {
        if ancestors.len() > MAX_DEPTH {
            break;
        }
        now = now + Duration::from_secs(step.advance);
        let issuer_rank = issuer.role().map(|name| catalog.role(name).unwrap().rank());

        let explicit = match step.permissions {
            PermPlan::Default => None,
            PermPlan::Everything => Some(catalog.all()),
            PermPlan::Mask {
                mask,
                within_issuer,
                manage: add_manage,
            } => {
                let mut set = strategy::set_from_mask(&catalog, mask);
                if within_issuer {
                    set = set.intersection(issuer.permissions());
                }
                if add_manage {
                    set.insert(manage);
                }
                Some(set)
            }
        };
        let role = step
            .role
            .and_then(|i| catalog.roles().get(i % catalog.roles().len().max(1)));

        let mut spec = KeySpec::named(if step.blank_name { " " } else { "k" });
        spec = match step.permissions {
            PermPlan::Default => spec,
            PermPlan::Everything => spec.permissions(["*"]),
            PermPlan::Mask { .. } => spec.permissions(
                catalog
                    .names(&explicit.unwrap())
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            ),
        };
        if let Some(role) = role {
            spec = spec.role(role.name());
        }
        spec = match step.scope {
            ScopePlan::Default => spec,
            ScopePlan::Account => spec.account_wide(),
            ScopePlan::Project(p) => spec.project(ProjectId::from_u64(p)),
        };
        let at = |off: i64| {
            if off > 0 {
                now + Duration::from_secs(off.unsigned_abs())
            } else {
                now - Duration::from_secs(off.unsigned_abs())
            }
        };
        spec = match step.expiry {
            ExpiryPlan::None => spec,
            ExpiryPlan::Ttl(s) => spec.ttl_seconds(s),
            ExpiryPlan::At(off) => spec.expires_at(at(off)),
            ExpiryPlan::Both => spec.ttl_seconds(60).expires_at(at(120)),
        };

        // Issuing grants what the names imply too (catalogs may declare implications).
        let expected = model(
            issuer.permissions(),
            issuer.scope(),
            issuer_rank,
            issuer.expires_at(),
            step,
            explicit.map(|e| catalog.implied(&e)),
            role,
            now,
        );
        let result = issue(&catalog, &issuer, spec, now, &mut rng);
        let child = match (result, expected) {
            (Ok(issued), Expected::Issued) => issued.key,
            (Err(IssueError::IssuerKey(Deny::Expired)), Expected::IssuerExpired) => break,
            (Err(IssueError::Invalid(_)), Expected::Invalid)
            | (Err(IssueError::Escalation(_)), Expected::Escalation) => continue,
            (got, want) => panic!("expected {want:?}, got {got:?} (names {names:?})"),
        };

        // The child stays within its issuer...
        assert!(child.permissions().is_subset(issuer.permissions()));
        assert!(child.scope().is_within(&issuer.scope()));
        assert_eq!(child.account(), issuer.account());
        if let Some(limit) = issuer.expires_at() {
            assert!(child.expires_at().is_some_and(|e| e <= limit));
        }
        // ...and within every ancestor.
        for ancestor in &ancestors {
            assert!(child.permissions().is_subset(ancestor.permissions()));
            assert!(child.scope().is_within(&ancestor.scope()));
            if let Some(limit) = ancestor.expires_at() {
                assert!(child.expires_at().is_some_and(|e| e <= limit));
            }
        }
        // Whatever the child may do, every ancestor may do.
        for probe in &step.probes {
            let permission = catalog
                .all()
                .iter()
                .nth(probe.permission % catalog.len())
                .unwrap();
            let mut action = Action::new(permission);
            if probe.account_level {
                action = action.at_account_level();
            }
            let target = resource(probe.resource);
            let when = now + Duration::from_secs(probe.after);
            if authorize(&child, action, &target, when).is_allowed() {
                for ancestor in &ancestors {
                    assert!(
                        authorize(ancestor, action, &target, when).is_allowed(),
                        "child allowed {action:?} on {target:?} at {when}, ancestor {ancestor:?} not"
                    );
                }
            }
        }

        // The child issues next, if it may: any active key is a caller, but only one holding
        // the key-management permission issues.
        let next = Issuer::key(&catalog, &child, now).unwrap();
        if !bool::from(child.permissions().contains(manage)) {
            assert_eq!(
                issue(&catalog, &next, KeySpec::named("k"), now, &mut rng).map(|_| ()),
                Err(IssueError::IssuerKey(Deny::MissingPermission(manage)))
            );
            break;
        }
        issuer = next;
        ancestors.push(child);
    }
    // An ancestor that expired is refused as issuer, as 401.
    if let Some(last) = ancestors.last()
        && let Some(end) = last.expires_at()
    {
        assert_eq!(
            Issuer::key(&catalog, last, end).map(|_| ()),
            Err(IssueError::IssuerKey(Deny::Expired))
        );
    }
}

proptest! {
    #[test]
    fn no_chain_of_issues_escalates(
        catalog in strategy::catalogs(),
        root in root_plan(),
        // Up to 12 attempts, of which up to MAX_DEPTH succeed: refused attempts do not end a chain.
        steps in prop::collection::vec(step_plan(), 1..=12),
        seed in any::<u64>(),
    ) {
        run_chain(&catalog, &root, &steps, seed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(256)))]

    #[test]
    fn no_sequence_of_operations_escalates(bytes in prop::collection::vec(any::<u8>(), 0..1_500)) {
        common::world::World::run(&bytes);
    }
}

/// The property above must exercise what it claims: over a fixed set of random byte strings,
/// issues, management operations and allowed requests all happen.
#[test]
fn the_simulation_reaches_every_kind_of_operation() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut totals = [0u64; 3];
    for _ in 0..64 {
        let bytes: Vec<u8> = (0..1_500).map(|_| RngExt::random(&mut rng)).collect();
        let counts = common::world::World::run(&bytes);
        for (total, count) in totals.iter_mut().zip(counts) {
            *total += count;
        }
    }
    assert!(
        totals.iter().all(|&t| t > 50),
        "issues, manages, allowed probes: {totals:?}"
    );
}
