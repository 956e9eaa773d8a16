//! The constant-time `authorize` (and `Keyring::authorize`, which runs it on the key a token finds)
//! against the plain reference model of `keygate::testing::reference`: the same decision, deny
//! reason included, on every input, with and without a creator cap (the creator's current
//! permissions, which the keyring applies to every key that creator made).
//!
//! Actions need one permission, all of several or any of several: straight from `Action`'s
//! `Arbitrary` (any of the 256 permissions), or over the first eight permissions, so that what an
//! action needs and what a key holds often overlap.
//!
//! Ids, times and scopes come either from a small pool (so that "same account", "own project"
//! and "expires exactly now" happen often) or straight from the library types' `Arbitrary`
//! implementations (feature `arbitrary`), chosen by the input. Keys carry up to
//! `MAX_ADDRESS_RANGES` address ranges, and the client address is often near one of them (a few
//! low bits flipped), sometimes anywhere, sometimes unknown.
#![no_main]

use arbitrary::Arbitrary;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use keygate::{
    AccountId, Action, AddressRange, ApiKey, Catalog, Decision, Deny, KeyId, Keyring,
    MAX_ADDRESS_RANGES, PermissionSet, ProjectId, Resource, Scope, Timestamp, TokenFormat,
    TokenHash, authorize, authorize_capped,
};
use libfuzzer_sys::fuzz_target;

/// The same model the property tests use, so there is one.
use keygate::testing::reference;

const TOKEN: &str = "idc_DiffDiffDiffDiffDiffDiffDiff0000";
const OTHER_TOKEN: &str = "idc_DiffDiffDiffDiffDiffDiffDiff0001";

/// A resource from the small pool.
#[derive(Arbitrary, Debug)]
enum SmallTarget {
    Account,
    Listing,
    Project(u8),
}

#[derive(Arbitrary, Debug)]
enum Ids {
    Small {
        key_account: u8,
        key_project: Option<u8>,
        resource_account: u8,
        target: SmallTarget,
        /// Times are `base + offset` microseconds, so they often coincide.
        base: i32,
        expires: Option<i8>,
        revoked: Option<i8>,
        now: i8,
    },
    Wide {
        key_account: AccountId,
        scope: Scope,
        resource: Resource,
        expires_at: Option<Timestamp>,
        revoked_at: Option<Timestamp>,
        now: Timestamp,
    },
}

/// An action from the library's `Arbitrary`, or over the small pool of permissions 0 to 7.
#[derive(Arbitrary, Debug)]
enum ActionShape {
    Wide(Action),
    Small {
        /// The permissions needed, as bits 0 to 7; `first` is always among them.
        needed: u8,
        first: u8,
        any_of: bool,
        account_level: bool,
    },
}

impl ActionShape {
    fn action(&self, catalog: &Catalog) -> Action {
        match *self {
            ActionShape::Wide(action) => action,
            ActionShape::Small {
                needed,
                first,
                any_of,
                account_level,
            } => {
                let names = (0..8)
                    .filter(|i| (needed | 1 << (first % 8)) & (1 << i) != 0)
                    .map(|i| format!("p{i}"));
                let set = catalog.resolve(names).expect("p0 to p7 are in the catalog");
                let action = if any_of {
                    Action::any_of(set)
                } else {
                    Action::all_of(set)
                }
                .expect("never empty");
                if account_level {
                    action.at_account_level()
                } else {
                    action
                }
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    ids: Ids,
    permissions: PermissionSet,
    /// The creator's current permissions, when the key records a creator.
    cap: Option<PermissionSet>,
    action: ActionShape,
    /// Present the key's own token to the keyring, or another.
    right_token: bool,
    addresses: Addresses,
}

/// The key's ranges and the client's address.
#[derive(Arbitrary, Debug)]
struct Addresses {
    /// (network bits, prefix, written as IPv4); the first `MAX_ADDRESS_RANGES` are used.
    ranges: Vec<(u128, u8, bool)>,
    /// The client: near range `which` (its network with the `bits` low bits of `noise` flipped),
    /// as IPv4 when mapped and `v4`; `None`: the address is unknown.
    client: Option<(u8, u128, u8, bool)>,
}

fn word_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => (0xffff_u128 << 32) | u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn low_bits(bits: u32) -> u128 {
    !u128::MAX.checked_shl(bits).unwrap_or(0)
}

fn build_addresses(addresses: &Addresses, resource: Resource) -> (Vec<AddressRange>, Resource) {
    let ranges: Vec<AddressRange> = addresses
        .ranges
        .iter()
        .take(MAX_ADDRESS_RANGES)
        .filter_map(|&(bits, prefix, v4)| {
            if v4 {
                let prefix = prefix % 33;
                let network = (bits as u32) & !(low_bits(32 - u32::from(prefix)) as u32);
                AddressRange::new(IpAddr::V4(Ipv4Addr::from(network)), prefix)
            } else {
                let prefix = prefix % 129;
                let network = bits & !low_bits(128 - u32::from(prefix));
                AddressRange::new(IpAddr::V6(Ipv6Addr::from(network)), prefix)
            }
        })
        .collect();
    let resource = match addresses.client {
        None => resource,
        Some((which, noise, bits, v4)) => {
            let base = ranges
                .get(usize::from(which) % ranges.len().max(1))
                .map_or(0, |r| word_of(r.network()));
            let word = base ^ (noise & low_bits(u32::from(bits % 129)));
            let v6 = Ipv6Addr::from(word);
            let ip = match v6.to_ipv4_mapped() {
                Some(mapped) if v4 => IpAddr::V4(mapped),
                _ => IpAddr::V6(v6),
            };
            resource.from_address(ip)
        }
    };
    (ranges, resource)
}

fn small_id(n: u8) -> u64 {
    u64::from(n % 4)
}

fn build(input: &Input) -> (ApiKey, Resource, Timestamp) {
    let (account, scope, resource, expires_at, revoked_at, now) = match input.ids {
        Ids::Small {
            key_account,
            key_project,
            resource_account,
            ref target,
            base,
            expires,
            revoked,
            now,
        } => {
            let at = |offset: i8| Timestamp::from_unix_micros(i64::from(base) + i64::from(offset));
            let resource_account = AccountId::from_u64(small_id(resource_account));
            let resource = match *target {
                SmallTarget::Account => Resource::account(resource_account),
                SmallTarget::Listing => Resource::listing(resource_account),
                SmallTarget::Project(p) => {
                    Resource::in_project(resource_account, ProjectId::from_u64(small_id(p)))
                }
            };
            (
                AccountId::from_u64(small_id(key_account)),
                key_project.map_or(Scope::Account, |p| {
                    Scope::Project(ProjectId::from_u64(small_id(p)))
                }),
                resource,
                expires.map(at),
                revoked.map(at),
                at(now),
            )
        }
        Ids::Wide {
            key_account,
            scope,
            resource,
            expires_at,
            revoked_at,
            now,
        } => (key_account, scope, resource, expires_at, revoked_at, now),
    };
    let (ranges, resource) = build_addresses(&input.addresses, resource);
    let mut key = ApiKey::new(
        KeyId::from_bytes([9; 16]),
        "differential",
        account,
        scope,
        input.permissions,
        TokenHash::of(TOKEN),
        Timestamp::EPOCH,
    )
    .with_allowed_addresses(&ranges)
    .expect("at most MAX_ADDRESS_RANGES");
    if let Some(at) = expires_at {
        key = key.with_expiry(at);
    }
    if let Some(at) = revoked_at {
        key.revoke(at);
    }
    if input.cap.is_some() {
        // Through a record: the only public way to set a creator on a hand-made key.
        let catalog = catalog();
        let mut record = key.to_record(catalog);
        record.created_by = Some("creator".to_owned());
        key = ApiKey::from_record(record, catalog).expect("its own record loads");
    }
    (key, resource, now)
}

/// A catalog naming all 256 permission slots, so any `PermissionSet` round-trips through a record.
/// Built once: every input uses it.
fn catalog() -> &'static Catalog {
    static CATALOG: std::sync::LazyLock<Catalog> = std::sync::LazyLock::new(|| {
        Catalog::new((0..256).map(|i| format!("p{i}"))).expect("256 names")
    });
    &CATALOG
}

fuzz_target!(|input: Input| {
    let (key, resource, now) = build(&input);
    let action = input.action.action(catalog());
    let cap = input.cap.unwrap_or(PermissionSet::ALL);
    let expected = reference::authorize_capped(&key, &cap, action, &resource, now);
    assert_eq!(
        authorize_capped(&key, &cap, action, &resource, now),
        expected,
        "{key:?} capped by {cap:?}: {action:?} {resource:?} at {now:?}"
    );
    if input.cap.is_none() {
        assert_eq!(authorize(&key, action, &resource, now), expected);
        assert_eq!(reference::authorize(&key, action, &resource, now), expected);
    }

    let mut ring = Keyring::from_keys(TokenFormat::default(), [key.clone()]).expect("one key");
    if let Some(cap) = input.cap {
        ring.set_creator_cap("creator", cap);
    }
    let (token, want) = if input.right_token {
        (TOKEN, expected)
    } else {
        (OTHER_TOKEN, Decision::Deny(Deny::UnknownKey))
    };
    assert_eq!(
        ring.authorize(token, action, &resource, now),
        want,
        "keyring, {key:?} {action:?} {resource:?} at {now:?}"
    );
});
