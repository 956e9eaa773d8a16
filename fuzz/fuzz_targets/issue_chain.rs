//! Arbitrary sequences of issue / rotate / revoke / wait from a root user: no key ever exceeds any
//! of its ancestors (the issuer and the issuer's issuers) in permissions, scope, account or
//! expiry, and nothing a key is allowed to do at its birth is denied to its issuer.
//!
//! Failed issues are fine (the request may be malformed or escalating); only what `issue` grants
//! is checked. Rotation must not change what a key may do; revocation must end it.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use keygate::{
    AccountId, Action, ApiKey, Catalog, Decision, Issuer, KeySpec, ProjectId, Resource, Scope,
    Timestamp, TokenFormat, authorize, issue,
};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;

const NAMES: [&str; 6] = [
    "agents:read",
    "agents:write",
    "calls:read",
    "calls:write",
    "api-keys:read",
    "api-keys:write",
];
/// What a spec may ask for: names, patterns, and a name the catalog lacks.
const PATTERNS: [&str; 11] = [
    "agents:read",
    "agents:write",
    "calls:read",
    "calls:write",
    "api-keys:read",
    "api-keys:write",
    "*",
    "*:read",
    "agents:*",
    "api-keys:*",
    "billing:read",
];
const ROLES: [&str; 4] = ["member", "admin", "owner", "ghost"];

fn catalog() -> Catalog {
    Catalog::new(NAMES)
        .and_then(|c| c.with_role("member", ["*:read"]))
        .and_then(|c| c.with_role("admin", ["*:read", "agents:write", "api-keys:write"]))
        .and_then(|c| c.with_role("owner", ["*"]))
        .expect("a valid catalog")
}

const ACCOUNT: u64 = 1;

#[derive(Arbitrary, Debug)]
enum Root {
    All,
    Role(u8),
    Project(u8),
}

#[derive(Arbitrary, Debug)]
enum Expiry {
    At(i16),
    Ttl(u16),
    Both(i16, u16),
}

#[derive(Arbitrary, Debug)]
struct Spec {
    permissions: Option<Vec<u8>>,
    role: Option<u8>,
    /// `None`: the issuer's scope; `Some(None)`: account-wide; `Some(Some(p))`: project `p`.
    scope: Option<Option<u8>>,
    expiry: Option<Expiry>,
}

#[derive(Arbitrary, Debug)]
enum Target {
    Account,
    Listing,
    Project(u8),
}

#[derive(Arbitrary, Debug)]
struct Probe {
    permission: u8,
    account_level: bool,
    other_account: bool,
    target: Target,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Issue from the root (`parent % (keys + 1) == 0`) or from a key.
    Issue {
        parent: u8,
        spec: Spec,
        probes: Vec<Probe>,
    },
    Rotate {
        key: u8,
        grace: Option<u16>,
    },
    Revoke {
        key: u8,
    },
    Wait(u16),
}

#[derive(Arbitrary, Debug)]
struct Input {
    root: Root,
    ops: Vec<Op>,
}

/// A key and the indices of its ancestor keys (the root user is not a key).
struct Node {
    key: ApiKey,
    ancestors: Vec<usize>,
}

fn project(p: u8) -> ProjectId {
    ProjectId::from_u64(u64::from(p % 3))
}

fn build_spec(spec: &Spec, now: Timestamp) -> KeySpec {
    let mut out = KeySpec::named("child");
    if let Some(picks) = &spec.permissions {
        out = out.permissions(
            picks
                .iter()
                .take(4)
                .map(|&i| PATTERNS[usize::from(i) % PATTERNS.len()]),
        );
    }
    if let Some(r) = spec.role {
        out = out.role(ROLES[usize::from(r) % ROLES.len()]);
    }
    match spec.scope {
        None => {}
        Some(None) => out = out.account_wide(),
        Some(Some(p)) => out = out.project(project(p)),
    }
    let at = |offset: i16| Timestamp::from_unix_seconds(now.unix_seconds() + i64::from(offset));
    match spec.expiry {
        None => {}
        Some(Expiry::At(offset)) => out = out.expires_at(at(offset)),
        Some(Expiry::Ttl(secs)) => out = out.ttl(Duration::from_secs(u64::from(secs))),
        Some(Expiry::Both(offset, secs)) => {
            out = out
                .expires_at(at(offset))
                .ttl(Duration::from_secs(u64::from(secs)));
        }
    }
    out
}

fn probe_request(catalog: &Catalog, probe: &Probe) -> (Action, Resource) {
    let name = NAMES[usize::from(probe.permission) % NAMES.len()];
    let mut action = Action::named(catalog, name).expect("a catalog name");
    if probe.account_level {
        action = action.at_account_level();
    }
    let account = AccountId::from_u64(if probe.other_account { 2 } else { ACCOUNT });
    let resource = match probe.target {
        Target::Account => Resource::account(account),
        Target::Listing => Resource::listing(account),
        Target::Project(p) => Resource::in_project(account, project(p)),
    };
    (action, resource)
}

/// `child` stays within `ancestor`: permissions, scope, account, expiry.
fn within(
    child: &ApiKey,
    ancestor_permissions: &keygate::PermissionSet,
    scope: Scope,
    expires_at: Option<Timestamp>,
) {
    assert!(
        child.permissions().is_subset(ancestor_permissions),
        "permissions {:?} beyond {:?}",
        child.permissions(),
        ancestor_permissions
    );
    assert!(
        child.scope().is_within(&scope),
        "scope {:?} beyond {scope:?}",
        child.scope()
    );
    assert_eq!(child.account(), AccountId::from_u64(ACCOUNT));
    if let Some(limit) = expires_at {
        let own = child
            .expires_at()
            .expect("a child of an expiring key expires");
        assert!(own <= limit, "expiry {own:?} after {limit:?}");
    }
}

fuzz_target!(|input: Input| {
    let catalog = catalog();
    let account = AccountId::from_u64(ACCOUNT);
    let root = match input.root {
        Root::All => Issuer::user(account, Scope::Account, catalog.all()),
        Root::Role(r) => {
            let role = ROLES[usize::from(r) % 3];
            Issuer::user_with_role(&catalog, account, Scope::Account, role).expect("a role")
        }
        Root::Project(p) => Issuer::user(account, Scope::Project(project(p)), catalog.all()),
    };
    let format = TokenFormat::default();
    let mut rng = StdRng::seed_from_u64(0);
    let mut now = Timestamp::from_unix_seconds(1_000_000);
    let mut nodes: Vec<Node> = Vec::new();

    for op in input.ops.iter().take(48) {
        match op {
            Op::Issue {
                parent,
                spec,
                probes,
            } => {
                let choice = usize::from(*parent) % (nodes.len() + 1);
                let (issuer, ancestors) = if choice == 0 {
                    (root.clone(), Vec::new())
                } else {
                    let index = choice - 1;
                    let node = &nodes[index];
                    let Ok(issuer) = Issuer::key(&catalog, &node.key, now) else {
                        // Refused issuers are inactive or lack api-keys:write.
                        assert!(
                            !node.key.is_active(now)
                                || !bool::from(node.key.permissions().contains(
                                    catalog.permission("api-keys:write").expect("defined")
                                ))
                        );
                        continue;
                    };
                    let mut ancestors = node.ancestors.clone();
                    ancestors.push(index);
                    (issuer, ancestors)
                };
                let Ok(issued) = issue(&catalog, &issuer, build_spec(spec, now), now, &mut rng)
                else {
                    continue;
                };
                let child = issued.key;
                // Against the issuer as it stood, and every ancestor key as it stands.
                within(
                    &child,
                    issuer.permissions(),
                    issuer.scope(),
                    issuer.expires_at(),
                );
                within(&child, root.permissions(), root.scope(), None);
                for &a in &ancestors {
                    let anc = &nodes[a].key;
                    within(&child, anc.permissions(), anc.scope(), anc.expires_at());
                }
                assert!(child.expires_at().is_none_or(|e| e > now), "born expired");
                if let (Some(r), Some(held)) = (child.role(), issuer.role()) {
                    let rank = |n: &str| catalog.role(n).map(|x| x.rank());
                    assert!(rank(r) <= rank(held), "role {r} above {held}");
                }
                // What the child may do at birth, its issuing key may do too.
                if let Some(&parent_index) = ancestors.last() {
                    let parent_key = &nodes[parent_index].key;
                    for probe in probes.iter().take(8) {
                        let (action, resource) = probe_request(&catalog, probe);
                        if authorize(&child, action, &resource, now) == Decision::Allow {
                            assert_eq!(
                                authorize(parent_key, action, &resource, now),
                                Decision::Allow,
                                "child allowed {action:?} on {resource:?}, parent not"
                            );
                        }
                    }
                }
                nodes.push(Node {
                    key: child,
                    ancestors,
                });
            }
            Op::Rotate { key, grace } => {
                if nodes.is_empty() {
                    continue;
                }
                let index = usize::from(*key) % nodes.len();
                let node = &mut nodes[index];
                let before = node.key.clone();
                let grace = grace.map(|s| Duration::from_secs(u64::from(s)));
                match node.key.rotate(&format, now, grace, &mut rng) {
                    Ok(token) => {
                        assert!(bool::from(
                            node.key.token_hash().verify(token.expose_secret())
                        ));
                        assert_ne!(node.key.token_hash(), before.token_hash());
                    }
                    Err(_) => assert!(before.is_revoked()),
                }
                // Rotation changes the secret only.
                assert_eq!(node.key.permissions(), before.permissions());
                assert_eq!(node.key.scope(), before.scope());
                assert_eq!(node.key.expires_at(), before.expires_at());
                assert_eq!(node.key.revoked_at(), before.revoked_at());
            }
            Op::Revoke { key } => {
                if nodes.is_empty() {
                    continue;
                }
                let index = usize::from(*key) % nodes.len();
                let key = &mut nodes[index].key;
                key.revoke(now);
                assert!(!key.is_active(now));
                assert!(Issuer::key(&catalog, key, now).is_err());
            }
            Op::Wait(secs) => now = now + Duration::from_secs(u64::from(*secs)),
        }
    }
});
