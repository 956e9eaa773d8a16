//! The ctgrind check (Adam Langley's technique): run keygate's constant-time paths under valgrind
//! memcheck with the secret bytes marked *undefined*. Memcheck then reports every conditional
//! jump, and every memory address, that depends on them ("Conditional jump or move depends on
//! uninitialised value(s)", "Use of uninitialised value of size 8"). A constant-time function
//! produces no such report; its *result* is undefined too, and is declassified (marked defined)
//! before anything looks at it, since the caller is about to act on it anyway.
//!
//! ```text
//! cargo build --release --manifest-path ctgrind/Cargo.toml
//! valgrind --error-exitcode=1 --track-origins=yes ctgrind/target/release/keygate-ctgrind
//! valgrind --error-exitcode=1 ctgrind/target/release/keygate-ctgrind control   # must fail
//! valgrind ctgrind/target/release/keygate-ctgrind keyring                      # see below
//! ```
//!
//! The default run covers the format check (plain and checksummed), token verification and
//! `authorize` (every rule, both scope kinds, with and without expiry, and under full, partial
//! and empty creator caps), and
//! must report nothing. `control` is an early-exit
//! comparison, which must be reported. `keyring` runs `Keyring::authorize` and `authenticate` on a
//! secret token: their decisions are branch-free (both go through the same masked table), but the
//! search reads index and key memory at addresses derived from the token's SHA-256 (and the slice
//! bounds checks on those positions, always in range, are jumps on them), which memcheck reports
//! as "Use of uninitialised value of size 8". That is the
//! keyring's documented exception: the hash of a guess says nothing about any stored token.
//!
//! Outside valgrind the client requests do nothing and the program only checks its own answers.

use core::ffi::c_void;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crabgrind::memcheck::{MemState, mark_memory};
use keygate::{
    AccountId, Action, AddressRange, ApiKey, Catalog, Decision, KeyId, Keyring, PermissionSet,
    ProjectId, Resource, Scope, Timestamp, TokenFormat, TokenHash, authorize, authorize_capped,
};

/// Marks `len` bytes at `ptr` as secret (undefined) or public (defined).
fn mark<T: ?Sized>(value: &T, state: MemState) {
    // Outside valgrind this is a no-op that reports `NoValgrind`; nothing to do about it.
    let _ = mark_memory(
        (value as *const T).cast::<c_void>(),
        core::mem::size_of_val(value),
        state,
    );
}

/// Marks a string's bytes secret.
fn secret_str(s: &str) {
    mark(s.as_bytes(), MemState::Undefined);
}

/// Declassifies a result: the caller acts on it, so it may be looked at.
fn public<T: Copy>(value: T) -> T {
    mark(&value, MemState::Defined);
    value
}

const TOKEN: &str = "idc_0123456789abcdefABCDEF0123456789";

fn format_check() {
    let format = TokenFormat::default();
    for input in [TOKEN, "idc_0123456789abcdefABCDEF012345678_"] {
        let text = input.to_owned();
        secret_str(&text);
        let ok = public(format.matches(&text).unwrap_u8());
        assert_eq!(ok == 1, input == TOKEN);
    }
    println!("format check: done");
}

/// The checksummed format check: the CRC-32, its base-62 digits and their comparison must not
/// branch on, or index memory by, the token.
fn checksum_check() {
    let format = TokenFormat::checksummed();
    // idc_ + 26 random + the CRC-32 of "abcdefghijklmnopqrstuvwxyz" in base 62.
    let good = "idc_abcdefghijklmnopqrstuvwxyz1OSrpF";
    let bad = "idc_abcdefghijklmnopqrstuvwxyz1OSrpG";
    for input in [good, bad] {
        let text = input.to_owned();
        secret_str(&text);
        let ok = public(format.matches(&text).unwrap_u8());
        assert_eq!(ok == 1, input == good);
    }
    println!("checksum check: done");
}

fn token_verify() {
    let hash = TokenHash::of(TOKEN);
    for input in [
        TOKEN,
        "Xdc_0123456789abcdefABCDEF0123456789",
        "idc_0123456789abcdefABCDEF012345678X",
    ] {
        let text = input.to_owned();
        secret_str(&text);
        // The stored hash is secret too.
        let stored = hash;
        mark(&stored, MemState::Undefined);
        let ok = public(stored.verify(&text).unwrap_u8());
        assert_eq!(ok == 1, input == TOKEN);
    }
    println!("token verification: done");
}

fn authorize_all_rules() {
    let catalog = Catalog::read_write_delete();
    let account = AccountId::from_u64(1);
    let project = ProjectId::from_u64(42);
    let now = Timestamp::from_unix_seconds(1_000);
    let read = Action::named(&catalog, "read").expect("read");
    let keys = [
        // allowed, project-scoped, expiring
        ApiKey::new(
            KeyId::from_bytes([1; 16]),
            "a",
            account,
            Scope::Project(project),
            catalog.all(),
            TokenHash::of("a"),
            Timestamp::EPOCH,
        )
        .with_expiry(Timestamp::from_unix_seconds(2_000)),
        // allowed, account-wide, never expiring
        ApiKey::new(
            KeyId::from_bytes([2; 16]),
            "b",
            account,
            Scope::Account,
            catalog.all(),
            TokenHash::of("b"),
            Timestamp::EPOCH,
        ),
        // expired
        ApiKey::new(
            KeyId::from_bytes([3; 16]),
            "c",
            account,
            Scope::Account,
            catalog.all(),
            TokenHash::of("c"),
            Timestamp::EPOCH,
        )
        .with_expiry(Timestamp::from_unix_seconds(500)),
        // other project
        ApiKey::new(
            KeyId::from_bytes([4; 16]),
            "d",
            account,
            Scope::Project(ProjectId::from_u64(43)),
            catalog.all(),
            TokenHash::of("d"),
            Timestamp::EPOCH,
        ),
        // missing permission
        ApiKey::new(
            KeyId::from_bytes([5; 16]),
            "e",
            account,
            Scope::Account,
            catalog.expand(["write"]).expect("write"),
            TokenHash::of("e"),
            Timestamp::EPOCH,
        ),
    ];
    let resource = Resource::in_project(account, project);
    // Creator caps: everything, the permission alone, and nothing.
    let caps = [
        PermissionSet::ALL,
        catalog.expand(["read"]).expect("read"),
        PermissionSet::EMPTY,
    ];
    for key in &keys {
        // The whole key is secret while authorize runs; restored before it is dropped (its
        // String and Vec pointers must be defined for `free`).
        mark(key, MemState::Undefined);
        let decision: Decision = public(authorize(key, read, &resource, now));
        for cap in &caps {
            // The cap is per-key data too: secret while the capped decision runs.
            let cap = *cap;
            mark(&cap, MemState::Undefined);
            let capped: Decision = public(authorize_capped(key, &cap, read, &resource, now));
            mark(&cap, MemState::Defined);
            let _ = capped.is_allowed();
        }
        mark(key, MemState::Defined);
        let _ = decision.is_allowed();
    }
    println!("authorize: done");
}

/// Rule 5 with all-of and any-of actions over permissions in every word of the bitset: the key
/// (and cap) secret, the action public. Whether the key passes, and which permission a refusal
/// names (the lowest lacking, found by `trailing_zeros` per word and constant-time selection),
/// must not branch on or index by the key's bits.
fn authorize_all_any_of() {
    let catalog = Catalog::new((0..200).map(|i| format!("p{i}"))).expect("200 names");
    let account = AccountId::from_u64(1);
    let now = Timestamp::from_unix_seconds(1_000);
    let needed = ["p3", "p70", "p140", "p199"];
    let actions = [
        Action::all_of_named(&catalog, needed).expect("all of"),
        Action::any_of_named(&catalog, needed).expect("any of"),
    ];
    // Holding all four, each but one (a refusal naming each word in turn), one, and none.
    let held: Vec<Vec<&str>> = vec![
        needed.to_vec(),
        vec!["p70", "p140", "p199", "p5"],
        vec!["p3", "p140", "p199"],
        vec!["p3", "p70", "p199", "p150"],
        vec!["p3", "p70", "p140"],
        vec!["p140"],
        vec!["p0", "p64", "p128", "p192"],
    ];
    let resource = Resource::listing(account);
    let caps = [
        PermissionSet::ALL,
        catalog.resolve(["p3", "p140"]).expect("cap"),
    ];
    for (i, names) in held.iter().enumerate() {
        let key = ApiKey::new(
            KeyId::from_bytes([i as u8; 16]),
            "k",
            account,
            Scope::Account,
            catalog.resolve(names).expect("names"),
            TokenHash::of("k"),
            Timestamp::EPOCH,
        );
        for action in actions {
            mark(&key, MemState::Undefined);
            let decision: Decision = public(authorize(&key, action, &resource, now));
            for cap in &caps {
                let cap = *cap;
                mark(&cap, MemState::Undefined);
                let capped: Decision = public(authorize_capped(&key, &cap, action, &resource, now));
                mark(&cap, MemState::Defined);
                let _ = capped.is_allowed();
            }
            mark(&key, MemState::Defined);
            // The plain answer: the first needed name lacking (all of), or the first needed name
            // unless one is held (any of).
            let lacking = needed.iter().find(|n| !names.contains(n));
            let expected = match (action.is_any_of(), lacking) {
                (false, None) => None,
                (false, Some(n)) => Some(*n),
                (true, _) if needed.iter().any(|n| names.contains(n)) => None,
                (true, _) => Some(needed[0]),
            };
            let expected = expected
                .and_then(|n| catalog.permission(n))
                .map_or(Decision::Allow, |p| {
                    Decision::Deny(keygate::Deny::MissingPermission(p))
                });
            assert_eq!(decision, expected, "{names:?} {action:?}");
        }
    }
    println!("authorize all of / any of: done");
}

/// The address check: keys restricted to ranges of both families (and one unrestricted), requests
/// from inside, outside and an unknown address. The key (its ranges) and the request's address
/// are secret while `authorize` runs.
fn authorize_address() {
    let catalog = Catalog::read_write_delete();
    let account = AccountId::from_u64(1);
    let now = Timestamp::from_unix_seconds(1_000);
    let read = Action::named(&catalog, "read").expect("read");
    let ranges: Vec<AddressRange> = [
        "10.0.0.0/8",
        "192.168.1.0/24",
        "2001:db8::/32",
        "127.0.0.1",
        "fe80::/10",
        "172.16.0.0/12",
        "::1",
        "100.64.0.0/10",
    ]
    .iter()
    .map(|t| t.parse().expect("range"))
    .collect();
    let key = |ranges: &[AddressRange]| {
        ApiKey::new(
            KeyId::from_bytes([6; 16]),
            "f",
            account,
            Scope::Account,
            catalog.all(),
            TokenHash::of("f"),
            Timestamp::EPOCH,
        )
        .with_allowed_addresses(ranges)
        .expect("at most eight")
    };
    let keys = [key(&ranges), key(&ranges[..2]), key(&[])];
    let listing = Resource::listing(account);
    // Only the address is secret in a resource: its kind is public request data (and read with
    // a branch). So the address bits are marked before they go in: an `Ipv4Addr` or `Ipv6Addr` is
    // nothing but them, and memcheck follows them into the resource.
    let secret_v4 = |a: [u8; 4]| {
        let v4 = Ipv4Addr::from(a);
        mark(&v4, MemState::Undefined);
        listing.from_address(IpAddr::V4(v4))
    };
    let secret_v6 = |a: &str| {
        let v6: Ipv6Addr = a.parse().expect("address");
        mark(&v6, MemState::Undefined);
        listing.from_address(IpAddr::V6(v6))
    };
    let resources = [
        secret_v4([10, 1, 2, 3]),
        secret_v4([8, 8, 8, 8]),
        secret_v6("2001:db8::7"),
        secret_v6("2001:db9::1"),
        secret_v6("::1"),
        listing,
    ];
    for key in &keys {
        mark(key, MemState::Undefined);
        for resource in &resources {
            let decision: Decision = public(authorize(key, read, resource, now));
            let _ = decision.is_allowed();
        }
        mark(key, MemState::Defined);
    }
    println!("authorize (address ranges): done");
}

fn keyring_lookup() {
    let catalog = Catalog::read_write_delete();
    let account = AccountId::from_u64(1);
    let key = |i: u8, token: &str| {
        ApiKey::new(
            KeyId::from_bytes([i; 16]),
            "a",
            account,
            Scope::Account,
            catalog.all(),
            TokenHash::of(token),
            Timestamp::EPOCH,
        )
    };
    // Sixteen keys: several buckets, some empty, so the search runs over real entries.
    let others: Vec<String> = (0..15).map(|i| format!("idc_{i:0>32}")).collect();
    let keys =
        core::iter::once(key(1, TOKEN)).chain(others.iter().zip(2u8..).map(|(t, i)| key(i, t)));
    let ring = Keyring::from_keys(TokenFormat::default(), keys).expect("sixteen keys");
    let read = Action::named(&catalog, "read").expect("read");
    let resource = Resource::in_project(account, ProjectId::from_u64(1));
    for input in [TOKEN, "idc_0123456789abcdefABCDEF0123456780"] {
        let text = input.to_owned();
        secret_str(&text);
        let decision = public(ring.authorize(&text, read, &resource, Timestamp::EPOCH));
        assert_eq!(decision.is_allowed(), input == TOKEN);
        let authenticated = public(ring.authenticate(&text, Timestamp::EPOCH).is_ok());
        assert_eq!(authenticated, input == TOKEN);
    }
    println!("keyring: done");
}

/// The control: an early-exit comparison must be caught, or the check proves nothing (run with
/// `control`; valgrind must report errors and exit 1).
fn control() {
    let text = TOKEN.to_owned();
    secret_str(&text);
    let equal = public(
        text.as_bytes()
            .iter()
            .zip(TOKEN.as_bytes())
            .all(|(a, b)| a == b),
    );
    println!("control: equal = {equal}");
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).collect();
    let default = ["format", "checksum", "verify", "authorize", "all_any_of", "address"];
    let run = |name: &str| {
        which.iter().any(|w| w == name) || (which.is_empty() && default.contains(&name))
    };
    if run("format") {
        format_check();
    }
    if run("checksum") {
        checksum_check();
    }
    if run("verify") {
        token_verify();
    }
    if run("authorize") {
        authorize_all_rules();
    }
    if run("all_any_of") {
        authorize_all_any_of();
    }
    if run("address") {
        authorize_address();
    }
    if run("keyring") {
        keyring_lookup();
    }
    if run("control") {
        control();
    }
}
