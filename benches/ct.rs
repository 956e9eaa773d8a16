//! Timing-leak tests for keygate's constant-time claims, with DudeCT's method (Welch's t-test on
//! cropped runtime distributions, `dudect-bencher`).
//!
//! Each test times one operation on two classes of inputs that differ only in secret data (the
//! presented token, the key's fields), interleaved in random order, exactly `KEYGATE_CT_SAMPLES`
//! samples per class (default 1,000,000). A claim holds while the reported `max t` stays below
//! 4.5 in absolute value; `leaky_control` is an early-exit comparison that must be caught.
//!
//! ```text
//! cargo bench --bench ct                       # every test
//! cargo bench --bench ct -- authorize_expired  # tests whose name contains the word
//! cargo bench --bench ct -- --continuous token_verify_first_byte
//! KEYGATE_CT_SAMPLES=100000 cargo bench --bench ct   # a quick look
//! ```
//!
//! `dudect-bencher`'s own `ctbench_main!` parses its arguments with clap and rejects the `--bench`
//! flag `cargo bench` always passes, so `main` below reads the few options itself.

#![expect(
    clippy::indexing_slicing,
    reason = "a measurement harness: indices are in range by construction, and a panic only stops the bench"
)]

use std::hint::black_box;

use dudect_bencher::ctbench::{BenchMetadata, BenchName, BenchOpts, run_benches_console};
use dudect_bencher::rand::seq::SliceRandom;
use dudect_bencher::rand::{Rng, RngExt};
use dudect_bencher::{BenchRng, Class, CtRunner};
use std::net::IpAddr;

use keygate::{
    AccountId, Action, AddressRange, ApiKey, Catalog, Decision, KeyId, Keyring, MAX_ADDRESS_RANGES,
    Permission, PermissionSet, ProjectId, Resource, Scope, Timestamp, TokenFormat, TokenHash,
    authorize_capped,
};
use subtle::ConstantTimeEq;

/// Samples per class, from `KEYGATE_CT_SAMPLES`.
fn samples_per_class() -> usize {
    std::env::var("KEYGATE_CT_SAMPLES")
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(1_000_000)
}

/// Inputs are made and timed in batches of this many per class, to bound memory.
const BATCH_PER_CLASS: usize = 50_000;

/// Times `op` on exactly `samples_per_class()` inputs of each class. Inputs come from `make`,
/// the classes of a batch are shuffled together so that slow drift of the machine (frequency,
/// other processes) falls on both classes alike.
fn measure<T, R>(
    runner: &mut CtRunner,
    rng: &mut BenchRng,
    mut make: impl FnMut(Class, &mut BenchRng) -> T,
    op: impl Fn(&T) -> R,
) {
    let mut remaining = samples_per_class();
    while remaining > 0 {
        let n = remaining.min(BATCH_PER_CLASS);
        remaining -= n;
        let mut classes: Vec<bool> = std::iter::repeat_n(true, n)
            .chain(std::iter::repeat_n(false, n))
            .collect();
        classes.shuffle(rng);
        let inputs: Vec<(Class, T)> = classes
            .into_iter()
            .map(|left| {
                let class = if left { Class::Left } else { Class::Right };
                (class, make(class, rng))
            })
            .collect();
        for (class, input) in &inputs {
            runner.run_one(*class, || op(black_box(input)));
        }
    }
}

fn is_left(class: Class) -> bool {
    matches!(class, Class::Left)
}

/// A fresh random token of the default format, as bytes.
fn random_token(rng: &mut BenchRng) -> Vec<u8> {
    TokenFormat::default()
        .mint(rng)
        .expose_secret()
        .as_bytes()
        .to_vec()
}

/// An alphanumeric other than `c`, so a changed token keeps its format and length.
fn other_alnum(c: u8, rng: &mut BenchRng) -> u8 {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    loop {
        let pick = ALNUM[rng.random_range(0..ALNUM.len())];
        if pick != c {
            return pick;
        }
    }
}

/// (stored hash, presented token): Left presents the right token, Right a token whose byte at
/// `index` differs.
fn verify_inputs(index: usize) -> impl FnMut(Class, &mut BenchRng) -> (TokenHash, String) {
    move |class, rng| {
        let token = random_token(rng);
        let hash = TokenHash::of(std::str::from_utf8(&token).unwrap_or_default());
        let mut presented = token;
        if !is_left(class) {
            presented[index] = other_alnum(presented[index], rng);
        }
        (hash, String::from_utf8(presented).unwrap_or_default())
    }
}

/// Token verification: the right token vs one differing in its first byte.
fn token_verify_first_byte(runner: &mut CtRunner, rng: &mut BenchRng) {
    measure(runner, rng, verify_inputs(0), |(hash, token)| {
        hash.verify(token)
    });
}

/// Token verification: the right token vs one differing in its last byte.
fn token_verify_last_byte(runner: &mut CtRunner, rng: &mut BenchRng) {
    let last = TokenFormat::default().token_len() - 1;
    measure(runner, rng, verify_inputs(last), |(hash, token)| {
        hash.verify(token)
    });
}

/// The digest comparison inside verification, without SHA-256 in front of it scrambling where the
/// difference lies: equal digests vs digests differing in byte `index`.
fn hash_eq_inputs(index: usize) -> impl FnMut(Class, &mut BenchRng) -> (TokenHash, TokenHash) {
    move |class, rng| {
        let mut a = [0u8; 32];
        rng.fill_bytes(&mut a);
        let mut b = a;
        if !is_left(class) {
            b[index] ^= 1 << rng.random_range(0..8);
        }
        (TokenHash::from_bytes(a), TokenHash::from_bytes(b))
    }
}

/// Digest comparison: equal vs differing in the first byte.
fn hash_eq_first_byte(runner: &mut CtRunner, rng: &mut BenchRng) {
    measure(runner, rng, hash_eq_inputs(0), |(a, b)| a.ct_eq(b));
}

/// Digest comparison: equal vs differing in the last byte.
fn hash_eq_last_byte(runner: &mut CtRunner, rng: &mut BenchRng) {
    measure(runner, rng, hash_eq_inputs(31), |(a, b)| a.ct_eq(b));
}

/// The token format check: a well-formed token vs one with a single character outside the
/// alphabet (same length, random position in the body, random printable non-alphanumeric).
fn format_check(runner: &mut CtRunner, rng: &mut BenchRng) {
    const BAD: &[u8] = b" !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    let format = TokenFormat::default();
    let prefix_len = format.prefix().len();
    measure(
        runner,
        rng,
        |class, rng| {
            let mut token = random_token(rng);
            if !is_left(class) {
                let at = rng.random_range(prefix_len..token.len());
                token[at] = BAD[rng.random_range(0..BAD.len())];
            }
            String::from_utf8(token).unwrap_or_default()
        },
        |token| format.matches(token),
    );
}

/// The checksummed format check: a minted token (checksum holds) vs one with a random
/// alphanumeric body of the same shape (checksum fails but for one in 62^6). The CRC-32 and the
/// comparison run whatever the token, so the two classes must take the same time.
fn checksum_check(runner: &mut CtRunner, rng: &mut BenchRng) {
    let format = TokenFormat::checksummed();
    let prefix_len = format.prefix().len();
    measure(
        runner,
        rng,
        |class, rng| {
            let mut token = format.mint(rng).expose_secret().as_bytes().to_vec();
            if !is_left(class) {
                for at in prefix_len..token.len() {
                    token[at] = other_alnum(token[at], rng);
                }
            }
            String::from_utf8(token).unwrap_or_default()
        },
        |token| format.matches(token),
    );
}

/// What the `authorize` tests share: a catalog large enough for random permission sets, and the
/// permission every request asks for.
struct World {
    all: Vec<Permission>,
    needed: Permission,
}

impl World {
    fn new() -> Self {
        let catalog = Catalog::new((0..200).map(|i| format!("p{i}"))).unwrap_or_else(|e| {
            eprintln!("catalog: {e}");
            std::process::exit(2)
        });
        let all: Vec<Permission> = (0..200)
            .filter_map(|i| catalog.permission(&format!("p{i}")))
            .collect();
        let needed = all[137];
        Self { all, needed }
    }

    /// A random set of permissions holding `needed`, or not.
    fn permissions(&self, rng: &mut BenchRng, with_needed: bool) -> PermissionSet {
        let mut set = PermissionSet::EMPTY;
        for &p in &self.all {
            if p != self.needed && rng.random::<bool>() {
                set.insert(p);
            }
        }
        if with_needed {
            set.insert(self.needed);
        }
        set
    }

    /// An active, account-wide key of `account` holding the needed permission, with random id,
    /// hash and other permissions, expiring after `now`.
    fn key(&self, rng: &mut BenchRng, account: AccountId, scope: Scope, now: Timestamp) -> ApiKey {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let mut hash = [0u8; 32];
        rng.fill_bytes(&mut hash);
        ApiKey::new(
            KeyId::from_bytes(id),
            "bench key",
            account,
            scope,
            self.permissions(rng, true),
            TokenHash::from_bytes(hash),
            Timestamp::EPOCH,
        )
        .with_expiry(Timestamp::from_unix_micros(
            now.unix_micros() + rng.random_range(1..1_000_000_000),
        ))
    }
}

/// One `authorize` call's inputs.
struct Request {
    key: ApiKey,
    /// The creator's current permissions ([`PermissionSet::ALL`] unless a test sets one).
    cap: PermissionSet,
    action: Action,
    resource: Resource,
    now: Timestamp,
}

/// Times `authorize` on requests that are allowed (Left) vs denied for one reason (Right). Every
/// request starts as a project-scoped key acting in its own project, then `base` shapes both
/// classes alike, `deny` turns a Right request into a denied one by changing the key only, and
/// `check` asserts the reason so that a wrong setup cannot pass silently.
fn authorize_classes(
    runner: &mut CtRunner,
    rng: &mut BenchRng,
    base: impl Fn(&World, &mut Request, &mut BenchRng),
    deny: impl Fn(&World, &mut Request, &mut BenchRng),
    check: impl Fn(Decision) -> bool,
) {
    let world = World::new();
    let needed = world.needed;
    measure(
        runner,
        rng,
        |class, rng| {
            let account = AccountId::from_u64(rng.random());
            let project = ProjectId::from_u64(rng.random());
            let now = Timestamp::from_unix_micros(rng.random_range(0..i64::MAX / 2));
            let mut request = Request {
                key: world.key(rng, account, Scope::Project(project), now),
                cap: PermissionSet::ALL,
                action: Action::new(needed),
                resource: Resource::in_project(account, project),
                now,
            };
            base(&world, &mut request, rng);
            if !is_left(class) {
                deny(&world, &mut request, rng);
            }
            let decision = authorize_capped(
                &request.key,
                &request.cap,
                request.action,
                &request.resource,
                now,
            );
            let ok = if is_left(class) {
                decision == Decision::Allow
            } else {
                check(decision)
            };
            if !ok {
                eprintln!("bench setup produced {decision:?} for the wrong class");
                std::process::exit(2)
            }
            request
        },
        |r| authorize_capped(&r.key, &r.cap, r.action, &r.resource, r.now),
    );
}

fn no_base(_: &World, _: &mut Request, _: &mut BenchRng) {}

fn denied(reason: keygate::Deny) -> impl Fn(Decision) -> bool {
    move |d| d == Decision::Deny(reason)
}

/// Allowed vs denied by the creator cap: both keys hold the permission and both have a random
/// cap (the creator's current permissions); only the right class's cap lacks the permission.
fn authorize_creator_cap(runner: &mut CtRunner, rng: &mut BenchRng) {
    authorize_classes(
        runner,
        rng,
        |w, r, rng| r.cap = w.permissions(rng, true),
        |w, r, rng| r.cap = w.permissions(rng, false),
        |d| matches!(d, Decision::Deny(keygate::Deny::MissingPermission(_))),
    );
}

/// A random range: IPv4 with a prefix of 8 to 32 or IPv6 with 16 to 128, random network bits.
fn random_range(rng: &mut BenchRng) -> AddressRange {
    loop {
        let range = if rng.random::<bool>() {
            let prefix: u8 = rng.random_range(8..=32);
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            AddressRange::new(IpAddr::V4((rng.random::<u32>() & mask).into()), prefix)
        } else {
            let prefix: u8 = rng.random_range(16..=128);
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            AddressRange::new(IpAddr::V6((rng.random::<u128>() & mask).into()), prefix)
        };
        if let Some(range) = range {
            return range;
        }
    }
}

/// A random address inside `range`.
fn address_in(range: &AddressRange, rng: &mut BenchRng) -> IpAddr {
    match range.network() {
        IpAddr::V4(net) => {
            let host = u32::MAX.checked_shr(u32::from(range.prefix())).unwrap_or(0);
            IpAddr::V4((u32::from(net) | (rng.random::<u32>() & host)).into())
        }
        IpAddr::V6(net) => {
            let host = u128::MAX
                .checked_shr(u32::from(range.prefix()))
                .unwrap_or(0);
            IpAddr::V6((u128::from(net) | (rng.random::<u128>() & host)).into())
        }
    }
}

/// A key restricted to `MAX_ADDRESS_RANGES` random ranges of both families.
fn restrict(r: &mut Request, rng: &mut BenchRng) -> Vec<AddressRange> {
    let ranges: Vec<AddressRange> = (0..MAX_ADDRESS_RANGES).map(|_| random_range(rng)).collect();
    r.key = r
        .key
        .clone()
        .with_allowed_addresses(&ranges)
        .unwrap_or_else(|| std::process::exit(2));
    ranges
}

/// Allowed from an address inside one of the key's eight ranges (a random one, so the matching
/// slot varies) vs denied from an address outside all of them: the ranges and the address are
/// secret-dependent inputs of the same constant-time check.
fn authorize_address(runner: &mut CtRunner, rng: &mut BenchRng) {
    authorize_classes(
        runner,
        rng,
        |_, r, rng| {
            let ranges = restrict(r, rng);
            let inside = address_in(&ranges[rng.random_range(0..ranges.len())], rng);
            r.resource = r.resource.from_address(inside);
        },
        |_, r, rng| loop {
            let address = if rng.random::<bool>() {
                IpAddr::V4(rng.random::<u32>().into())
            } else {
                IpAddr::V6(rng.random::<u128>().into())
            };
            if !r
                .key
                .allowed_addresses()
                .iter()
                .any(|x| x.contains(address))
            {
                r.resource = r.resource.from_address(address);
                break;
            }
        },
        denied(keygate::Deny::AddressNotAllowed),
    );
}

/// The same allowed request from a key restricted to eight ranges, the address inside one (Left),
/// vs an unrestricted key (Right): whether a key is restricted at all is key data too.
fn authorize_address_kind(runner: &mut CtRunner, rng: &mut BenchRng) {
    authorize_classes(
        runner,
        rng,
        |_, r, rng| {
            let ranges = restrict(r, rng);
            let inside = address_in(&ranges[rng.random_range(0..ranges.len())], rng);
            r.resource = r.resource.from_address(inside);
        },
        |_, r, _| {
            r.key = r
                .key
                .clone()
                .with_allowed_addresses(&[])
                .unwrap_or_else(|| std::process::exit(2));
        },
        |d| d == Decision::Allow,
    );
}

/// Allowed vs revoked (revoked some time before `now`).
fn authorize_revoked(runner: &mut CtRunner, rng: &mut BenchRng) {
    authorize_classes(
        runner,
        rng,
        no_base,
        |_, r, rng| {
            let at = Timestamp::from_unix_micros(r.now.unix_micros() - rng.random_range(0..1000));
            r.key.revoke(at);
        },
        denied(keygate::Deny::Revoked),
    );
}

/// Allowed vs expired (expiry at or before `now`).
fn authorize_expired(runner: &mut CtRunner, rng: &mut BenchRng) {
    authorize_classes(
        runner,
        rng,
        no_base,
        |_, r, rng| {
            let at = r.now.unix_micros() - rng.random_range(0..1_000_000_000);
            r.key = r.key.clone().with_expiry(Timestamp::from_unix_micros(at));
        },
        denied(keygate::Deny::Expired),
    );
}

/// Allowed vs a key of another account.
fn authorize_other_account(runner: &mut CtRunner, rng: &mut BenchRng) {
    authorize_classes(
        runner,
        rng,
        no_base,
        |world, r, rng| {
            let mut other = AccountId::from_u64(rng.random());
            while other == r.resource.account_id() {
                other = AccountId::from_u64(rng.random());
            }
            r.key = rekey(world, r, rng, other, r.key.scope());
        },
        denied(keygate::Deny::OtherAccount),
    );
}

/// An account-level action: an account-wide key (allowed) vs a project-scoped one.
fn authorize_account_level(runner: &mut CtRunner, rng: &mut BenchRng) {
    authorize_classes(
        runner,
        rng,
        |world, r, rng| {
            let account = r.resource.account_id();
            r.key = rekey(world, r, rng, account, Scope::Account);
            r.action = r.action.at_account_level();
            r.resource = Resource::account(account);
        },
        |world, r, rng| {
            let account = r.resource.account_id();
            let project = ProjectId::from_u64(rng.random());
            r.key = rekey(world, r, rng, account, Scope::Project(project));
        },
        denied(keygate::Deny::AccountLevelAction),
    );
}

/// Allowed vs a key scoped to another project of the same account.
fn authorize_out_of_scope(runner: &mut CtRunner, rng: &mut BenchRng) {
    authorize_classes(
        runner,
        rng,
        no_base,
        |world, r, rng| {
            let own = r.resource.project();
            let mut other = ProjectId::from_u64(rng.random());
            while Some(other) == own {
                other = ProjectId::from_u64(rng.random());
            }
            let account = r.resource.account_id();
            r.key = rekey(world, r, rng, account, Scope::Project(other));
        },
        denied(keygate::Deny::OutOfScope),
    );
}

/// Allowed vs a key lacking the needed permission (its other permissions random either way).
fn authorize_missing_permission(runner: &mut CtRunner, rng: &mut BenchRng) {
    authorize_classes(
        runner,
        rng,
        no_base,
        |world, r, rng| {
            let key = &r.key;
            let mut fresh = ApiKey::new(
                key.id(),
                key.name(),
                key.account(),
                key.scope(),
                world.permissions(rng, false),
                key.token_hash(),
                key.created_at(),
            );
            if let Some(at) = key.expires_at() {
                fresh = fresh.with_expiry(at);
            }
            r.key = fresh;
        },
        |d| matches!(d, Decision::Deny(keygate::Deny::MissingPermission(_))),
    );
}

/// `key` with `permissions` instead of its own, everything else kept.
fn with_permissions(key: &ApiKey, permissions: PermissionSet) -> ApiKey {
    let mut fresh = ApiKey::new(
        key.id(),
        key.name(),
        key.account(),
        key.scope(),
        permissions,
        key.token_hash(),
        key.created_at(),
    );
    if let Some(at) = key.expires_at() {
        fresh = fresh.with_expiry(at);
    }
    fresh
}

/// Four random permissions other than the needed one, and the needed one: what the all-of and
/// any-of tests ask for.
fn needed_set(world: &World, rng: &mut BenchRng) -> Vec<Permission> {
    let mut set = vec![world.needed];
    while set.len() < 5 {
        let p = world.all[rng.random_range(0..world.all.len())];
        if !set.contains(&p) {
            set.push(p);
        }
    }
    set
}

/// An all-of action: allowed to a key holding all five needed permissions (Left) vs denied to
/// one lacking a random one of them (Right), which the refusal names; other permissions random.
fn authorize_all_of(runner: &mut CtRunner, rng: &mut BenchRng) {
    authorize_classes(
        runner,
        rng,
        |world, r, rng| {
            let needed = needed_set(world, rng);
            let set: PermissionSet = needed.iter().copied().collect();
            r.action = Action::all_of(set).unwrap_or(Action::new(world.needed));
            r.key = with_permissions(&r.key, r.key.permissions().union(&set));
        },
        |_, r, rng| {
            let needed: Vec<Permission> = r.action.permissions().iter().collect();
            let lacking = needed[rng.random_range(0..needed.len())];
            let held: PermissionSet = r
                .key
                .permissions()
                .iter()
                .filter(|p| *p != lacking)
                .collect();
            r.key = with_permissions(&r.key, held);
        },
        |d| matches!(d, Decision::Deny(keygate::Deny::MissingPermission(_))),
    );
}

/// An any-of action over five permissions: allowed to a key holding a random one of them (Left)
/// vs denied to one holding none (Right); other permissions random.
fn authorize_any_of(runner: &mut CtRunner, rng: &mut BenchRng) {
    authorize_classes(
        runner,
        rng,
        |world, r, rng| {
            let needed = needed_set(world, rng);
            let set: PermissionSet = needed.iter().copied().collect();
            r.action = Action::any_of(set).unwrap_or(Action::new(world.needed));
            let one = needed[rng.random_range(0..needed.len())];
            let mut held: PermissionSet = r
                .key
                .permissions()
                .iter()
                .filter(|p| !needed.contains(p))
                .collect();
            held.insert(one);
            r.key = with_permissions(&r.key, held);
        },
        |_, r, _| {
            let needed = *r.action.permissions();
            let held: PermissionSet = r
                .key
                .permissions()
                .iter()
                .filter(|p| !bool::from(needed.contains(*p)))
                .collect();
            r.key = with_permissions(&r.key, held);
        },
        |d| matches!(d, Decision::Deny(keygate::Deny::MissingPermission(_))),
    );
}

/// The same request allowed to an account-wide key (Left) vs a key scoped to the project
/// (Right): the scope's kind is key data too, and is read through an enum match.
fn authorize_scope_kind(runner: &mut CtRunner, rng: &mut BenchRng) {
    authorize_classes(
        runner,
        rng,
        no_base,
        |world, r, rng| {
            let account = r.resource.account_id();
            r.key = rekey(world, r, rng, account, Scope::Account);
        },
        |d| d == Decision::Allow,
    );
}

/// The same allowed request from a key with a (future) expiry (Left) vs one that never expires
/// (Right): whether a key expires at all is key data too, held in an `Option`.
fn authorize_expiry_kind(runner: &mut CtRunner, rng: &mut BenchRng) {
    authorize_classes(
        runner,
        rng,
        no_base,
        |_, r, _| {
            let key = &r.key;
            r.key = ApiKey::new(
                key.id(),
                key.name(),
                key.account(),
                key.scope(),
                *key.permissions(),
                key.token_hash(),
                key.created_at(),
            );
        },
        |d| d == Decision::Allow,
    );
}

/// A fresh key like `r.key` (needed permission held, random others, expiring after now) for
/// `account` and `scope`.
fn rekey(
    world: &World,
    r: &Request,
    rng: &mut BenchRng,
    account: AccountId,
    scope: Scope,
) -> ApiKey {
    world.key(rng, account, scope, r.now)
}

/// `Keyring::authorize` from a presented token: a stored token (hit, allowed) vs a well-formed
/// token that is not stored (miss, `UnknownKey`), over a keyring of `KEYGATE_CT_KEYRING` keys
/// (default 1,000).
///
/// The keyring's search lands on an index entry chosen by the hash of the token (its module docs
/// say so: which memory is touched depends on the hash of the guess), and a miss is judged on the
/// key of the entry it landed on. Misses land on entries with probability proportional to the gap
/// below the next stored hash, hits wherever their users are. On this machine (AMD EPYC) that
/// difference in *which* lines are read shows up by itself (|t| 20 to 80 even with 2 keys, all in
/// L1: the L1 way predictor favours repeated lines). So that the test asks the question the
/// keyring answers, "given the same entry, does a hit cost what a miss costs?", both classes pick
/// an entry uniformly, the hit presents its token and the miss presents an unstored token that
/// lands on it ([`Keyring::landing_key`] says which entry a token lands on).
fn keyring_hit_miss(runner: &mut CtRunner, rng: &mut BenchRng) {
    keyring_classes(
        runner,
        rng,
        "keyring_hit_miss",
        |ring, token, action, resource, now| ring.authorize(token, action, resource, now),
    );
}

/// `Keyring::authenticate`, hit vs miss, on the same footing as [`keyring_hit_miss`]: the
/// authenticated key (or why there is none) as a decision.
fn authenticate_hit_miss(runner: &mut CtRunner, rng: &mut BenchRng) {
    keyring_classes(
        runner,
        rng,
        "authenticate_hit_miss",
        |ring, token, _, _, now| match ring.authenticate(token, now) {
            Ok(_) => Decision::Allow,
            Err(deny) => Decision::Deny(deny),
        },
    );
}

/// One keyring lookup through `judge`, a stored token vs an unstored one landing on the same entry.
fn keyring_classes(
    runner: &mut CtRunner,
    rng: &mut BenchRng,
    name: &str,
    judge: fn(&Keyring, &str, Action, &Resource, Timestamp) -> Decision,
) {
    let keyring_size: usize = std::env::var("KEYGATE_CT_KEYRING")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    let format = TokenFormat::default();
    let world = World::new();
    let account = AccountId::from_u64(7);
    let project = ProjectId::from_u64(42);
    let now = Timestamp::from_unix_seconds(1_000_000);
    let mut stored: Vec<(KeyId, String)> = Vec::with_capacity(keyring_size);
    let mut keys = Vec::with_capacity(keyring_size);
    for _ in 0..keyring_size {
        let token = format.mint(rng);
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let id = KeyId::from_bytes(id);
        keys.push(ApiKey::new(
            id,
            "bench key",
            account,
            Scope::Project(project),
            world.permissions(rng, true),
            token.hash(),
            Timestamp::EPOCH,
        ));
        stored.push((id, token.expose_secret().to_owned()));
    }
    let ring = match Keyring::from_keys(format.clone(), keys) {
        Ok(ring) => ring,
        Err(e) => {
            eprintln!("keyring: {e}");
            std::process::exit(2)
        }
    };
    // For each stored key, unstored tokens whose search lands on its entry: the keyring says which
    // (the entry with the largest prefix not above the token's in its chunk, or the chunk's first).
    let position: std::collections::HashMap<KeyId, usize> = stored
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i))
        .collect();
    let mut misses: Vec<Vec<String>> = vec![Vec::new(); stored.len()];
    let mut uncovered = stored.len();
    let mut minted = 0usize;
    // Keys no unstored token lands on in `20 * len` tries are left out of both classes.
    while uncovered > 0 && minted < 20 * stored.len() {
        minted += 1;
        let token = format.mint(rng);
        let Some(&at) = position.get(&ring.landing_key(token.expose_secret())) else {
            continue;
        };
        if misses[at].len() < 4 {
            if misses[at].is_empty() {
                uncovered -= 1;
            }
            misses[at].push(token.expose_secret().to_owned());
        }
    }
    let covered: Vec<usize> = (0..stored.len())
        .filter(|&i| !misses[i].is_empty())
        .collect();
    eprintln!(
        "{name}: {} keys, {} with a landing miss token ({minted} minted)",
        stored.len(),
        covered.len()
    );
    let action = Action::new(world.needed);
    let resource = Resource::in_project(account, project);
    measure(
        runner,
        rng,
        |class, rng| {
            let entry = covered[rng.random_range(0..covered.len())];
            let pool = &misses[entry];
            let miss = &pool[rng.random_range(0..pool.len())];
            // Both classes build their string the same way, so heap placement cannot differ.
            let mut token = String::with_capacity(format.token_len());
            let want = if is_left(class) {
                token.push_str(&stored[entry].1);
                Decision::Allow
            } else {
                token.push_str(miss);
                Decision::Deny(keygate::Deny::UnknownKey)
            };
            if judge(&ring, &token, action, &resource, now) != want {
                eprintln!("bench setup: wrong keyring decision");
                std::process::exit(2)
            }
            token
        },
        |token| judge(&ring, token, action, &resource, now),
    );
}

/// The control: a comparison that returns at the first differing byte, as `==` on secrets
/// would. Equal tokens vs tokens differing in the first byte. It must be caught (|t| > 4.5),
/// or the measurement is too blunt to mean anything.
fn leaky_control(runner: &mut CtRunner, rng: &mut BenchRng) {
    fn leaky_eq(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        for (x, y) in a.iter().zip(b) {
            // black_box keeps the compiler from turning the loop into a vectorised memcmp, which
            // would leak too, but less visibly.
            if black_box(*x) != black_box(*y) {
                return false;
            }
        }
        true
    }
    measure(
        runner,
        rng,
        |class, rng| {
            let stored = random_token(rng);
            let mut presented = stored.clone();
            if !is_left(class) {
                presented[0] = other_alnum(presented[0], rng);
            }
            (stored, presented)
        },
        |(a, b)| leaky_eq(a, b),
    );
}

fn main() {
    let benches: Vec<(&'static str, dudect_bencher::ctbench::BenchFn)> = vec![
        ("token_verify_first_byte", token_verify_first_byte),
        ("token_verify_last_byte", token_verify_last_byte),
        ("hash_eq_first_byte", hash_eq_first_byte),
        ("hash_eq_last_byte", hash_eq_last_byte),
        ("format_check", format_check),
        ("checksum_check", checksum_check),
        ("authorize_revoked", authorize_revoked),
        ("authorize_expired", authorize_expired),
        ("authorize_other_account", authorize_other_account),
        ("authorize_account_level", authorize_account_level),
        ("authorize_out_of_scope", authorize_out_of_scope),
        ("authorize_missing_permission", authorize_missing_permission),
        ("authorize_scope_kind", authorize_scope_kind),
        ("authorize_expiry_kind", authorize_expiry_kind),
        ("authorize_creator_cap", authorize_creator_cap),
        ("authorize_all_of", authorize_all_of),
        ("authorize_any_of", authorize_any_of),
        ("authorize_address", authorize_address),
        ("authorize_address_kind", authorize_address_kind),
        ("keyring_hit_miss", keyring_hit_miss),
        ("authenticate_hit_miss", authenticate_hit_miss),
        ("leaky_control", leaky_control),
    ];
    let mut opts = BenchOpts::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // Passed by `cargo bench` to every bench binary.
            "--bench" => {}
            "--continuous" => {
                opts.continuous = true;
                opts.filter = args.next();
            }
            "--filter" => opts.filter = args.next(),
            "--out" => opts.file_out = args.next().map(Into::into),
            name if !name.starts_with('-') => opts.filter = Some(name.to_owned()),
            other => {
                eprintln!(
                    "unknown option {other}; use [NAME] [--filter NAME] [--continuous NAME] [--out FILE]"
                );
                std::process::exit(2)
            }
        }
    }
    let benches = benches
        .into_iter()
        .map(|(name, benchfn)| BenchMetadata {
            name: BenchName(name),
            seed: None,
            benchfn,
        })
        .collect();
    if let Err(e) = run_benches_console(opts, benches) {
        eprintln!("{e}");
        std::process::exit(1)
    }
}
