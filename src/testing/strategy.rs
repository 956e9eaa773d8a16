//! proptest strategies for keygate's values: catalogs, permission sets, keys, requests, key specs
//! and chains of them, and the operation sequences of the [escalation fuzzer](crate::testing::fuzz_escalation).
//!
//! Small id spaces (a few accounts and projects) and times close together make the interesting
//! cases common: the same account, one's own project, `now == expires_at`.
//!
//! ```
//! use keygate::testing::{reference, strategy};
//! use keygate::{authorize, AccountId, Catalog, ProjectId, Timestamp};
//! use proptest::prelude::*;
//! use proptest::test_runner::TestRunner;
//!
//! let catalog = Catalog::read_write_delete();
//! let accounts = vec![AccountId::from_u64(1), AccountId::from_u64(2)];
//! let projects = vec![ProjectId::from_u64(1), ProjectId::from_u64(2)];
//! let now = Timestamp::from_unix_seconds(1_000_000);
//! let cases = (
//!     strategy::keys(&catalog, &accounts, &projects, now),
//!     strategy::requests(&catalog, &accounts, &projects),
//!     strategy::instants(now),
//! );
//! TestRunner::default().run(&cases, |(key, (action, resource), at)| {
//!     prop_assert_eq!(authorize(&key, action, &resource, at),
//!         reference::authorize(&key, action, &resource, at));
//!     Ok(())
//! }).unwrap();
//! ```

use core::time::Duration;

use proptest::prelude::*;
use proptest::sample::{Index, select};

use crate::authorize::Action;
use crate::catalog::{Catalog, PermissionSet};
use crate::issue::KeySpec;
use crate::key::{ApiKey, KeyId};
use crate::scope::{AccountId, ProjectId, Resource, Scope};
use crate::timestamp::Timestamp;
use crate::token::TokenHash;

/// The actions fine-grained catalogs are built from.
const ACTIONS: [&str; 5] = ["read", "write", "delete", "sync", "test"];

/// How roles relate, so that rank and permissions sometimes agree and sometimes do not.
#[derive(Debug, Clone, Copy)]
enum RoleShape {
    /// Unrelated permission sets.
    Random,
    /// Each role holds the ones below it (member < admin < owner).
    Ascending,
    /// Each role holds a subset of the ones below it: only the rank keeps them apart.
    Descending,
}

/// Catalogs: a quarter the coarse `read`/`write`/`delete`, the rest fine-grained (`r0:read`,
/// `r1:sync`, …, always with `api-keys:write` so keys can issue keys), each with zero to three
/// ranked roles, and a third of them with implications (`write` implies `read`, `delete` implies
/// `write`, and now and then `read` implies `delete`, a cycle), declared before the roles.
pub fn catalogs() -> impl Strategy<Value = Catalog> {
    (
        prop::bool::weighted(0.25),
        prop::collection::vec(1u8..32, 1..=5),
        prop::collection::vec(any::<u64>(), 0..=3),
        prop_oneof![
            Just(RoleShape::Random),
            Just(RoleShape::Ascending),
            Just(RoleShape::Descending)
        ],
        prop_oneof![4 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
    )
        .prop_filter_map(
            "a valid catalog",
            |(coarse, resources, roles, shape, implications)| {
                build_catalog(coarse, &resources, &roles, shape, implications)
            },
        )
}

/// The implications of a generated catalog: none (0), `delete ⇒ write ⇒ read` (1), or that and
/// `read ⇒ delete`, a cycle (2). Wildcard-bound in fine-grained catalogs (`*:write ⇒ *:read`); an
/// implication naming an action no resource has is skipped.
fn add_implications(mut catalog: Catalog, coarse: bool, implications: u8) -> Catalog {
    let chain: &[(&str, &str)] = match implications {
        0 => &[],
        1 => &[("write", "read"), ("delete", "write")],
        _ => &[("write", "read"), ("delete", "write"), ("read", "delete")],
    };
    for (from, to) in chain {
        let (from, to) = if coarse {
            ((*from).to_owned(), (*to).to_owned())
        } else {
            (format!("*:{from}"), format!("*:{to}"))
        };
        // Fails only when a resource-less pattern matches nothing: then leave it out.
        if let Ok(with) = catalog.clone().with_implication(&from, [to]) {
            catalog = with;
        }
    }
    catalog
}

fn build_catalog(
    coarse: bool,
    resources: &[u8],
    roles: &[u64],
    shape: RoleShape,
    implications: u8,
) -> Option<Catalog> {
    let names: Vec<String> = if coarse {
        ACTIONS.iter().take(3).map(|a| (*a).to_owned()).collect()
    } else {
        let mut names = vec!["api-keys:write".to_owned()];
        for (r, mask) in resources.iter().enumerate() {
            for (a, action) in ACTIONS.iter().enumerate() {
                if mask & (1 << a) != 0 {
                    names.push(format!("r{r}:{action}"));
                }
            }
        }
        names
    };
    let mut catalog = add_implications(Catalog::new(names.clone()).ok()?, coarse, implications);
    let mut previous: Option<u64> = None;
    for (i, &mask) in roles.iter().enumerate() {
        let mask = match (shape, previous) {
            (RoleShape::Ascending, Some(p)) => mask | p,
            (RoleShape::Descending, Some(p)) => mask & p,
            _ => mask,
        };
        previous = Some(mask);
        let picked = names
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << (i % 64)) != 0)
            .map(|(_, n)| n);
        catalog = catalog.with_role(&format!("role{i}"), picked).ok()?;
    }
    Some(catalog)
}

/// The permissions of `catalog` whose index bit is set in `mask` (cycling past 64).
pub fn set_from_mask(catalog: &Catalog, mask: u64) -> PermissionSet {
    catalog
        .all()
        .iter()
        .filter(|p| mask & (1 << (p.index() % 64)) != 0)
        .collect()
}

/// Subsets of `catalog`'s permissions: now and then empty or full, usually a random subset.
pub fn permission_sets(catalog: &Catalog) -> impl Strategy<Value = PermissionSet> + use<> {
    let all = catalog.all();
    let catalog = catalog.clone();
    prop_oneof![
        1 => Just(PermissionSet::EMPTY),
        1 => Just(all),
        8 => any::<u64>().prop_map(move |mask| set_from_mask(&catalog, mask)),
    ]
}

/// Account-wide, or one of `projects`.
pub fn scopes(projects: &[ProjectId]) -> impl Strategy<Value = Scope> + use<> {
    let projects = projects.to_vec();
    prop_oneof![
        1 => Just(Scope::Account),
        2 => select(projects).prop_map(Scope::Project),
    ]
}

/// Instants around `around`: often exactly it or a microsecond either side, otherwise within a
/// day either way.
pub fn instants(around: Timestamp) -> impl Strategy<Value = Timestamp> {
    let micros = around.unix_micros();
    prop_oneof![
        (-2i64..=2).prop_map(move |d| Timestamp::from_unix_micros(micros.saturating_add(d))),
        (-86_400i64..86_400)
            .prop_map(move |s| Timestamp::from_unix_micros(micros.saturating_add(s * 1_000_000))),
    ]
}

/// Keys of `accounts` with permissions of `catalog`, scopes over `projects`, and expiry and
/// revocation around `around`.
pub fn keys(
    catalog: &Catalog,
    accounts: &[AccountId],
    projects: &[ProjectId],
    around: Timestamp,
) -> impl Strategy<Value = ApiKey> + use<> {
    (
        select(accounts.to_vec()),
        scopes(projects),
        permission_sets(catalog),
        prop::option::of(instants(around)),
        prop::bool::weighted(0.15),
        any::<[u8; 16]>(),
    )
        .prop_map(|(account, scope, permissions, expires_at, revoked, id)| {
            let mut key = ApiKey::new(
                KeyId::from_bytes(id),
                "generated",
                account,
                scope,
                permissions,
                TokenHash::of("generated"),
                Timestamp::EPOCH,
            );
            if let Some(e) = expires_at {
                key = key.with_expiry(e);
            }
            if revoked {
                key.revoke(Timestamp::EPOCH);
            }
            key
        })
}

/// The kinds of resource over `accounts` and `projects`: an account itself, a listing, a project.
pub fn resources(
    accounts: &[AccountId],
    projects: &[ProjectId],
) -> impl Strategy<Value = Resource> + use<> {
    (select(accounts.to_vec()), 0u8..3, select(projects.to_vec())).prop_map(
        |(account, kind, project)| match kind {
            0 => Resource::account(account),
            1 => Resource::listing(account),
            _ => Resource::in_project(account, project),
        },
    )
}

/// Actions on `catalog`'s permissions: mostly one permission, else all of or any of a random
/// non-empty subset.
pub fn actions(catalog: &Catalog) -> impl Strategy<Value = Action> + use<> {
    let permissions: Vec<_> = catalog.all().iter().collect();
    let catalog = catalog.clone();
    (select(permissions), 0u8..4, any::<u64>()).prop_map(move |(permission, kind, mask)| {
        // The chosen permission is always in, so the set is never empty.
        let mut set = set_from_mask(&catalog, mask);
        set.insert(permission);
        match kind {
            2 => Action::all_of(set).unwrap_or(Action::new(permission)),
            3 => Action::any_of(set).unwrap_or(Action::new(permission)),
            _ => Action::new(permission),
        }
    })
}

/// Requests: an action on `catalog`'s permissions ([`actions`]; sometimes account-level) and a
/// resource.
pub fn requests(
    catalog: &Catalog,
    accounts: &[AccountId],
    projects: &[ProjectId],
) -> impl Strategy<Value = (Action, Resource)> + use<> {
    (
        actions(catalog),
        prop::bool::weighted(0.3),
        resources(accounts, projects),
    )
        .prop_map(|(action, account_level, resource)| {
            let action = if account_level {
                action.at_account_level()
            } else {
                action
            };
            (action, resource)
        })
}

/// Key specs an issuer might send: names or patterns of `catalog` (sometimes one it lacks),
/// sometimes a role, a scope over `projects`, an expiry relative to `now` (sometimes invalid), and
/// now and then a blank name. Many are refused: that is the point.
pub fn key_specs(
    catalog: &Catalog,
    projects: &[ProjectId],
    now: Timestamp,
) -> impl Strategy<Value = KeySpec> + use<> {
    let mut patterns: Vec<String> = catalog.names(&catalog.all()).map(str::to_owned).collect();
    patterns.push("*".to_owned());
    patterns.push("not-in:catalog".to_owned());
    let roles: Vec<String> = catalog
        .roles()
        .iter()
        .map(|r| r.name().to_owned())
        .collect();
    let role = if roles.is_empty() {
        Just(None).boxed()
    } else {
        prop::option::weighted(0.2, select(roles)).boxed()
    };
    (
        prop::bool::weighted(0.03),
        prop::option::weighted(0.8, prop::collection::vec(select(patterns), 0..4)),
        role,
        prop::option::weighted(0.4, scopes(projects)),
        prop::option::weighted(0.4, -100i64..20_000),
    )
        .prop_map(move |(blank, permissions, role, scope, expiry)| {
            let mut spec = KeySpec::named(if blank { " " } else { "generated" });
            if let Some(p) = permissions {
                spec = spec.permissions(p);
            }
            if let Some(r) = role {
                spec = spec.role(r);
            }
            if let Some(s) = scope {
                spec = spec.scope(s);
            }
            match expiry {
                Some(offset) if offset >= 0 => {
                    spec.expires_at(now + Duration::from_secs(offset.unsigned_abs()))
                }
                Some(offset) => spec.expires_at(now - Duration::from_secs(offset.unsigned_abs())),
                None => spec,
            }
        })
}

/// Chains of up to `max_len` key specs: the first issued by a user, each next by the key before
/// it (see `tests/escalation.rs` in keygate for the property this feeds).
pub fn issue_chains(
    catalog: &Catalog,
    projects: &[ProjectId],
    now: Timestamp,
    max_len: usize,
) -> impl Strategy<Value = Vec<KeySpec>> + use<> {
    prop::collection::vec(key_specs(catalog, projects, now), 1..=max_len.max(1))
}

/// One operation of the escalation fuzzer. Callers, targets and probes are picked by [`Index`]
/// among what exists when the step runs, so every sequence is meaningful whatever came before.
#[derive(Debug, Clone)]
pub enum Step {
    /// A credential creates a key.
    Create {
        /// Which credential asks.
        caller: Index,
        /// `None`: the default (the caller's full set); else a mask over the catalog.
        permissions: Option<u64>,
        /// `None`: the default (the caller's scope); `Some(None)`: account-wide;
        /// `Some(Some(i))`: the `i`-th project (modulo).
        scope: Option<Option<Index>>,
        /// A time to live in seconds.
        ttl_seconds: Option<u64>,
    },
    /// A credential regenerates a key's secret.
    Rotate {
        /// Which credential asks.
        caller: Index,
        /// Which key.
        target: Index,
    },
    /// A credential revokes a key.
    Revoke {
        /// Which credential asks.
        caller: Index,
        /// Which key.
        target: Index,
    },
    /// A credential tries one request.
    Probe {
        /// Which credential.
        who: Index,
        /// Which request of the fuzzer's list.
        probe: Index,
    },
}

/// Sequences of 1 to `max_len` [`Step`]s: mostly creations and management operations.
pub fn steps(max_len: usize) -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        4 => (
            any::<Index>(),
            prop::option::weighted(0.8, any::<u64>()),
            prop::option::weighted(0.4, prop::option::weighted(0.7, any::<Index>())),
            prop::option::weighted(0.2, 60u64..86_400),
        )
            .prop_map(|(caller, permissions, scope, ttl_seconds)| Step::Create {
                caller,
                permissions,
                scope,
                ttl_seconds,
            }),
        3 => (any::<Index>(), any::<Index>())
            .prop_map(|(caller, target)| Step::Rotate { caller, target }),
        2 => (any::<Index>(), any::<Index>())
            .prop_map(|(caller, target)| Step::Revoke { caller, target }),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(who, probe)| Step::Probe { who, probe }),
    ];
    prop::collection::vec(step, 1..=max_len.max(1))
}

/// The networks [`client_addresses`] and [`address_range_lists`] gather around, so that an
/// address inside a key's range (and just outside it) is common: IPv4, IPv6, and an IPv4 address
/// written IPv4-mapped (`::ffff:10.0.0.0`), which must match IPv4 ranges.
const ADDRESS_BASES: [u128; 6] = [
    0xffff_0a00_0000,                          // 10.0.0.0
    0xffff_7f00_0001,                          // 127.0.0.1
    0xffff_c0a8_0100,                          // 192.168.1.0
    0x2001_0db8_0000_0000_0000_0000_0000_0000, // 2001:db8::
    1,                                         // ::1
    0xfe80_0000_0000_0000_0000_0000_0000_0000, // fe80::
];

/// An address word as an [`IpAddr`](std::net::IpAddr): IPv4 when it is IPv4-mapped and `as_v4`.
fn word_to_ip(word: u128, as_v4: bool) -> std::net::IpAddr {
    let v6 = std::net::Ipv6Addr::from(word);
    match v6.to_ipv4_mapped() {
        Some(v4) if as_v4 => std::net::IpAddr::V4(v4),
        _ => std::net::IpAddr::V6(v6),
    }
}

/// Client addresses, IPv4 and IPv6: one of a few networks with some of its low bits flipped
/// (often none or few, so the edges of ranges are hit), or any address at all.
pub fn client_addresses() -> impl Strategy<Value = std::net::IpAddr> {
    prop_oneof![
        4 => (select(ADDRESS_BASES.to_vec()), 0u32..=40, any::<u128>(), any::<bool>()).prop_map(
            |(base, bits, noise, as_v4)| {
                let flipped = noise & !u128::MAX.checked_shl(bits).unwrap_or(0);
                word_to_ip(base ^ flipped, as_v4)
            }
        ),
        1 => (any::<u128>(), any::<bool>()).prop_map(|(word, as_v4)| word_to_ip(word, as_v4)),
    ]
}

/// CIDR ranges around the same networks as [`client_addresses`], of every prefix length.
pub fn address_ranges() -> impl Strategy<Value = crate::AddressRange> {
    (client_addresses(), 0u8..=128).prop_filter_map(
        "the host bits are cleared, so every range is valid",
        |(address, prefix)| {
            let (prefix, word, width) = match address {
                std::net::IpAddr::V4(v4) => (prefix % 33, u128::from(u32::from(v4)), 32),
                std::net::IpAddr::V6(v6) => (prefix, u128::from(v6), 128),
            };
            let host_bits = width - u32::from(prefix);
            let network = word & u128::MAX.checked_shl(host_bits).unwrap_or(0);
            let network = match address {
                std::net::IpAddr::V4(_) => {
                    std::net::IpAddr::V4(u32::try_from(network).ok()?.into())
                }
                std::net::IpAddr::V6(_) => std::net::IpAddr::V6(network.into()),
            };
            crate::AddressRange::new(network, prefix)
        },
    )
}

/// A key's address ranges: half the time none (no restriction), else one to
/// [`MAX_ADDRESS_RANGES`](crate::MAX_ADDRESS_RANGES).
pub fn address_range_lists() -> impl Strategy<Value = Vec<crate::AddressRange>> {
    prop_oneof![
        Just(Vec::new()),
        prop::collection::vec(address_ranges(), 1..=crate::MAX_ADDRESS_RANGES),
    ]
}

/// A resource as requested from a client address, or (a quarter of the time) from an unknown one.
pub fn with_client_address(
    resources: impl Strategy<Value = Resource>,
) -> impl Strategy<Value = Resource> {
    (resources, prop::option::weighted(0.75, client_addresses())).prop_map(|(resource, address)| {
        match address {
            Some(address) => resource.from_address(address),
            None => resource,
        }
    })
}
