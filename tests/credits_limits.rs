//! Credits (after Unkey's `remaining` with refill), named limits per key and limits shared by an
//! account, all charged by `Keyring::admit` in one pass: agreement with a plain model built from
//! `RateLimit::check` and `Credits::spend`, all-or-none charging, the issuing chain, concurrency,
//! persistence through `KeyState` and replicas' flushes, records, key requests and the refusal's
//! status and body.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed unwrap is a failed test"
)]

use std::sync::Arc;

use keygate::{
    AccountId, ApiKey, ApiKeyRecord, Catalog, Credits, CreditsSpent, Issuer, KeyId, KeySpec,
    Keyring, NamedLimit, PermissionSet, RateLimit, RateLimitState, Refusal, Scope, SharedKeyring,
    Throttled, Timestamp, TokenHash, Usage, issue,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

const ACCOUNT: AccountId = AccountId::from_bytes([1; 16]);

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_seconds(seconds)
}

fn key(n: u8, account: AccountId) -> ApiKey {
    ApiKey::new(
        KeyId::from_bytes([n; 16]),
        "k",
        account,
        Scope::Account,
        PermissionSet::EMPTY,
        TokenHash::of(&format!("idc_{n:032}")),
        at(1_000),
    )
}

fn named(name: &str, requests: u32, period: u32) -> NamedLimit {
    NamedLimit::new(name, RateLimit::per_period(requests, period).unwrap()).unwrap()
}

/// A key issued by a user of `ACCOUNT` as `parent`, and one issued by that key as `child`.
fn parent_and_child(parent: KeySpec, child: KeySpec) -> (ApiKey, ApiKey) {
    let catalog = Catalog::read_write_delete();
    let mut rng = StdRng::seed_from_u64(9);
    let owner = Issuer::user(ACCOUNT, Scope::Account, catalog.all());
    let parent = issue(&catalog, &owner, parent, at(1_000), &mut rng)
        .unwrap()
        .key;
    let issuer = Issuer::key(&catalog, &parent, at(1_000)).unwrap();
    let child = issue(&catalog, &issuer, child, at(1_000), &mut rng)
        .unwrap()
        .key;
    (parent, child)
}

fn spent_of(keyring: &Keyring, id: KeyId) -> Option<CreditsSpent> {
    keyring.state(id).unwrap().usage.credits_spent()
}

/// The plain model: every limit checked in order on copies, committed only when all admit, then
/// the credits, committed only when they admit too.
struct Model {
    limits: Vec<(RateLimit, RateLimitState)>,
    credits: Credits,
    spent: CreditsSpent,
    created_at: Timestamp,
}

impl Model {
    fn admit(&mut self, cost: u32, now: Timestamp) -> Result<(), ()> {
        let mut limits = self.limits.clone();
        for (limit, state) in &mut limits {
            limit.check(state, now).map_err(|_| ())?;
        }
        let mut spent = self.spent;
        self.credits
            .spend(&mut spent, cost, self.created_at, now)
            .map_err(|_| ())?;
        self.limits = limits;
        self.spent = spent;
        Ok(())
    }
}

fn credits_strategy() -> impl Strategy<Value = Credits> {
    (0u32..6, prop::option::of((1u32..5, 1u32..4))).prop_map(|(remaining, refill)| match refill {
        Some((amount, period)) => Credits::new(remaining).with_refill(amount, period).unwrap(),
        None => Credits::new(remaining),
    })
}

proptest! {
    /// `Keyring::admit_costing` gives the model's answer on every request, and leaves the
    /// model's credit count, for any credits, any named limits and any (even backwards) clock.
    #[test]
    fn admit_agrees_with_the_model(
        credits in credits_strategy(),
        own in prop::option::of((1u32..4, 1u32..3)),
        limits in prop::collection::vec((1u32..4, 1u32..3), 0..=4),
        steps in prop::collection::vec((0u32..3, -1i64..3), 1..40),
    ) {
        let own = own.map(|(r, p)| RateLimit::per_period(r, p).unwrap());
        let named: Vec<NamedLimit> = limits
            .iter()
            .enumerate()
            .map(|(i, (r, p))| named(&format!("l{i}"), *r, *p))
            .collect();
        let mut k = key(1, ACCOUNT).with_credits(credits).with_limits(named.clone()).unwrap();
        if let Some(own) = own {
            k = k.with_rate_limit(own);
        }
        let keyring = Keyring::from_keys(Default::default(), [k.clone()]).unwrap();
        let mut model = Model {
            limits: own
                .into_iter()
                .chain(named.iter().map(|n| *n.limit()))
                .map(|l| (l, RateLimitState::default()))
                .collect(),
            credits,
            spent: CreditsSpent::default(),
            created_at: k.created_at(),
        };
        let mut now = 1_000;
        for (cost, step) in steps {
            now += step;
            let expected = model.admit(cost, at(now));
            let got = keyring.admit_costing(k.id(), cost, at(now));
            prop_assert_eq!(got.is_ok(), expected.is_ok(), "at {} cost {}: {:?}", now, cost, got);
            let spent = spent_of(&keyring, k.id()).unwrap_or_default();
            prop_assert_eq!(spent, model.spent);
        }
    }

    /// Usage deltas flushed by two replicas and summed by `Usage::absorb` hold every credit
    /// either spent: a store's total is never behind what was spent in the current period.
    #[test]
    fn flushed_credit_deltas_sum_across_replicas(
        steps in prop::collection::vec((any::<bool>(), 0i64..3, any::<bool>()), 1..30),
    ) {
        let credits = Credits::new(1_000).with_refill(1_000, 10).unwrap();
        let k = key(1, ACCOUNT).with_credits(credits);
        let replicas = [
            Keyring::from_keys(Default::default(), [k.clone()]).unwrap(),
            Keyring::from_keys(Default::default(), [k.clone()]).unwrap(),
        ];
        let mut store = Usage::default();
        let mut spent_now = CreditsSpent::default();
        let mut now = 1_000;
        for (which, step, flush) in steps {
            now += step;
            let replica = &replicas[usize::from(which)];
            replica.admit(k.id(), at(now)).unwrap();
            let period = credits.period_at(at(now));
            spent_now = if period == spent_now.period {
                CreditsSpent { period, spent: spent_now.spent + 1 }
            } else {
                CreditsSpent { period, spent: 1 }
            };
            if flush {
                for replica in &replicas {
                    for (_, delta) in replica.flush_usage() {
                        store.absorb(&delta);
                    }
                }
                prop_assert_eq!(store.credits_spent(), Some(spent_now));
            }
        }
    }
}

#[test]
fn a_refused_request_spends_nothing_and_credits_run_out() {
    let k = key(1, ACCOUNT)
        .with_credits(Credits::new(3))
        .with_limits(vec![named("per-second", 2, 1)])
        .unwrap();
    let keyring = Keyring::from_keys(Default::default(), [k.clone()]).unwrap();
    assert!(keyring.admit(k.id(), at(1_000)).is_ok());
    assert!(keyring.admit(k.id(), at(1_000)).is_ok());
    let refused = keyring.admit(k.id(), at(1_000)).unwrap_err();
    assert!(matches!(refused, Throttled::RateLimited(_)), "{refused:?}");
    assert_eq!(spent_of(&keyring, k.id()).unwrap().spent, 2);
    assert!(keyring.admit(k.id(), at(1_001)).is_ok());
    let refused = keyring.admit(k.id(), at(1_002)).unwrap_err();
    assert!(
        matches!(refused, Throttled::UsageExceeded(_)),
        "{refused:?}"
    );
    // The credits refused after the limit admitted: the limit's charge was given back, so a
    // second key-less check in the same second still has its whole burst.
    assert!(keyring.check_rate_limit(k.id(), at(1_002)).is_ok());
    assert!(keyring.check_rate_limit(k.id(), at(1_002)).is_ok());
    assert!(keyring.check_rate_limit(k.id(), at(1_002)).is_err());
    // check_rate_limit spends no credits.
    assert_eq!(spent_of(&keyring, k.id()).unwrap().spent, 3);
}

#[test]
fn usage_exceeded_is_a_429_with_unkeys_code() {
    let catalog = Catalog::read_write_delete();
    let once = key(1, ACCOUNT).with_credits(Credits::new(0));
    let daily = key(2, ACCOUNT).with_credits(Credits::new(0).with_refill(10, 86_400).unwrap());
    let keyring = Keyring::from_keys(Default::default(), [once.clone(), daily.clone()]).unwrap();

    let refused = keyring.admit(once.id(), at(1_000)).unwrap_err();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.retry_after(), None, "no refill will come");
    assert_eq!(
        serde_json::to_string(&refused.body(&catalog)).unwrap(),
        r#"{"error":"Usage exceeded","code":"USAGE_EXCEEDED"}"#
    );

    let refused = keyring.admit(daily.id(), at(86_400 - 30)).unwrap_err();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.retry_after(), Some(30));
    assert_eq!(
        serde_json::to_string(&refused.body(&catalog)).unwrap(),
        r#"{"error":"Usage exceeded","code":"USAGE_EXCEEDED","retry_after":30}"#
    );
    // At midnight UTC the balance is the refill's 10, set rather than added.
    for _ in 0..10 {
        keyring.admit(daily.id(), at(86_400)).unwrap();
    }
    assert!(keyring.admit(daily.id(), at(86_400 + 5)).is_err());
    // A clock that goes back does not refill again.
    assert!(keyring.admit(daily.id(), at(1_000)).is_err());
}

#[test]
fn children_spend_their_issuers_credits_and_limits() {
    // The child asks for more credits than its parent has: its own are no way around them.
    let (parent, child) = parent_and_child(
        KeySpec::named("parent")
            .credits(Credits::new(4))
            .limit(named("burst", 3, 60)),
        KeySpec::named("child").credits(Credits::new(100)),
    );
    assert_eq!(child.issued_by(), Some(parent.id()));
    let keyring = Keyring::from_keys(Default::default(), [parent.clone(), child.clone()]).unwrap();
    for _ in 0..3 {
        keyring.admit(child.id(), at(1_000)).unwrap();
    }
    // The parent's named limit (3 a minute) is spent by the child's requests.
    assert!(matches!(
        keyring.admit(parent.id(), at(1_000)),
        Err(Throttled::RateLimited(_))
    ));
    keyring.admit(parent.id(), at(1_100)).unwrap();
    // Four credits spent between them: the child is refused although its own budget is 100.
    assert!(matches!(
        keyring.admit(child.id(), at(1_200)),
        Err(Throttled::UsageExceeded(_))
    ));
    assert_eq!(spent_of(&keyring, parent.id()).unwrap().spent, 4);
    assert_eq!(spent_of(&keyring, child.id()).unwrap().spent, 3);
}

#[test]
fn account_limits_are_shared_by_the_accounts_keys_only() {
    let other = AccountId::from_bytes([2; 16]);
    let (a, b, c) = (key(1, ACCOUNT), key(2, ACCOUNT), key(3, other));
    let mut keyring =
        Keyring::from_keys(Default::default(), [a.clone(), b.clone(), c.clone()]).unwrap();
    keyring
        .set_account_limits(ACCOUNT, vec![named("account", 3, 60)])
        .unwrap();
    assert_eq!(keyring.account_limits(ACCOUNT).len(), 1);
    assert!(keyring.account_limits(other).is_empty());
    keyring.admit(a.id(), at(1_000)).unwrap();
    keyring.admit(b.id(), at(1_000)).unwrap();
    keyring.admit(a.id(), at(1_000)).unwrap();
    assert!(keyring.admit(b.id(), at(1_000)).is_err());
    assert!(keyring.check_rate_limit(a.id(), at(1_000)).is_err());
    for _ in 0..10 {
        keyring.admit(c.id(), at(1_000)).unwrap();
    }
    // Setting the same limit again keeps its state; a renamed one starts afresh; none lifts it.
    keyring
        .set_account_limits(ACCOUNT, vec![named("account", 3, 60)])
        .unwrap();
    assert!(keyring.admit(a.id(), at(1_000)).is_err());
    keyring
        .set_account_limits(ACCOUNT, vec![named("renamed", 3, 60)])
        .unwrap();
    keyring.admit(a.id(), at(1_000)).unwrap();
    keyring.set_account_limits(ACCOUNT, Vec::new()).unwrap();
    for _ in 0..10 {
        keyring.admit(a.id(), at(1_000)).unwrap();
    }
    // Sets are checked.
    let five = (0..5).map(|i| named(&format!("l{i}"), 1, 1)).collect();
    assert!(keyring.set_account_limits(ACCOUNT, five).is_err());
    let twice = vec![named("x", 1, 1), named("x", 2, 1)];
    assert!(keyring.set_account_limits(ACCOUNT, twice).is_err());
}

#[test]
fn concurrent_spending_admits_exactly_the_budget() {
    const BUDGET: u32 = 1_000;
    let k = key(1, ACCOUNT).with_credits(Credits::new(BUDGET));
    let shared = Arc::new(SharedKeyring::new(
        Keyring::from_keys(Default::default(), [k.clone()]).unwrap(),
    ));
    let id = k.id();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                (0..400)
                    .filter(|_| shared.snapshot().admit(id, at(1_000)).is_ok())
                    .count()
            })
        })
        .collect();
    let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(admitted, BUDGET as usize);
    let spent = shared
        .snapshot()
        .state(k.id())
        .unwrap()
        .usage
        .credits_spent();
    assert_eq!(spent.unwrap().spent, u64::from(BUDGET));
}

#[test]
fn spent_credits_survive_a_restore_and_a_store_round_trip() {
    let k = key(1, ACCOUNT).with_credits(Credits::new(5));
    let keyring = Keyring::from_keys(Default::default(), [k.clone()]).unwrap();
    for _ in 0..3 {
        keyring.admit(k.id(), at(1_000)).unwrap();
    }
    // What a store keeps: the settled usage, as JSON.
    let state = keyring.state(k.id()).unwrap();
    let json = serde_json::to_string(&state).unwrap();
    assert!(
        json.contains(r#""credits":{"period":0,"spent":3}"#),
        "{json}"
    );
    let restarted = Keyring::from_keys(Default::default(), [k.clone()]).unwrap();
    assert!(restarted.restore_state(k.id(), &serde_json::from_str(&json).unwrap()));
    restarted.admit(k.id(), at(1_000)).unwrap();
    restarted.admit(k.id(), at(1_000)).unwrap();
    assert!(restarted.admit(k.id(), at(1_000)).is_err());
    // Flushing moves the delta once: a second flush has nothing to add.
    let deltas = restarted.flush_usage();
    assert_eq!(deltas.len(), 1);
    assert_eq!(
        deltas[0].1.credits_spent(),
        Some(CreditsSpent {
            period: 0,
            spent: 2
        })
    );
    assert!(restarted.flush_usage().is_empty());
}

#[test]
fn records_carry_credits_and_limits_and_refuse_bad_sets() {
    let catalog = Catalog::read_write_delete();
    let k = key(1, ACCOUNT)
        .with_credits(Credits::new(7).with_refill(100, 3_600).unwrap())
        .with_limits(vec![named("a", 1, 1), named("b.c-d_e", 5, 60)])
        .unwrap();
    let json = serde_json::to_string(&k.to_record(&catalog)).unwrap();
    assert!(
        json.contains(r#""credits":{"remaining":7,"refill":{"amount":100,"period_seconds":3600}}"#),
        "{json}"
    );
    assert!(json.contains(r#""limits":[{"name":"a","requests":1,"period_seconds":1}"#));
    let record: ApiKeyRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(ApiKey::from_record(record.clone(), &catalog).unwrap(), k);
    // A record naming one limit twice, or five, does not load (never by dropping one).
    let mut twice = record.clone();
    twice.limits.push(named("a", 9, 9));
    assert!(ApiKey::from_record(twice, &catalog).is_err());
    let mut five = record;
    five.limits = (0..5).map(|i| named(&format!("l{i}"), 1, 1)).collect();
    assert!(ApiKey::from_record(five, &catalog).is_err());
    // Bad values are refused by serde.
    for bad in [
        r#"{"remaining": 1, "refill": {"amount": 0, "period_seconds": 1}}"#,
        r#"{"remaining": 1, "refill": {"amount": 1, "period_seconds": 0}}"#,
        r#"{"remaining": -1}"#,
        r#"{"remaining": 1, "extra": 1}"#,
    ] {
        assert!(serde_json::from_str::<Credits>(bad).is_err(), "{bad}");
    }
    for bad in [
        r#"{"name": "", "requests": 1, "period_seconds": 1}"#,
        r#"{"name": "UPPER", "requests": 1, "period_seconds": 1}"#,
        r#"{"name": "a", "requests": 0, "period_seconds": 1}"#,
        r#"{"name": "a", "requests": 1, "period_seconds": 1, "x": 1}"#,
    ] {
        assert!(serde_json::from_str::<NamedLimit>(bad).is_err(), "{bad}");
    }
}

#[test]
fn key_requests_take_credits_and_limits_and_refuse_bad_sets_with_422() {
    let catalog = Catalog::read_write_delete();
    let owner = Issuer::user(ACCOUNT, Scope::Account, catalog.all());
    let mut rng = StdRng::seed_from_u64(3);
    let spec: KeySpec = serde_json::from_str(
        r#"{"name": "metered",
            "credits": {"remaining": 1000, "refill": {"amount": 1000, "period_seconds": 86400}},
            "limits": [{"name": "per-second", "requests": 10, "period_seconds": 1}]}"#,
    )
    .unwrap();
    let issued = issue(&catalog, &owner, spec, at(1_000), &mut rng)
        .unwrap()
        .key;
    assert_eq!(issued.credits().map(Credits::remaining), Some(1_000));
    assert_eq!(issued.limits().len(), 1);
    let view = serde_json::to_value(issued.view(&catalog)).unwrap();
    assert_eq!(view["credits"]["refill"]["amount"], 1_000);
    assert_eq!(view["limits"][0]["name"], "per-second");

    let too_many = (0..5).fold(KeySpec::named("k"), |spec, i| {
        spec.limit(named(&format!("l{i}"), 1, 1))
    });
    let refused = issue(&catalog, &owner, too_many, at(1_000), &mut rng).unwrap_err();
    assert_eq!(refused.status(), 422);
    assert_eq!(
        refused.body(&catalog).message(),
        "Too many limits (maximum is 4)"
    );
    let twice = KeySpec::named("k")
        .limit(named("x", 1, 1))
        .limit(named("x", 2, 1));
    let refused = issue(&catalog, &owner, twice, at(1_000), &mut rng).unwrap_err();
    assert_eq!(
        refused.body(&catalog).message(),
        "Limit names must be unique"
    );
}

#[test]
fn default_account_limits_give_every_account_its_own_budget() {
    let other = AccountId::from_bytes([2; 16]);
    let (a, b) = (key(1, ACCOUNT), key(2, other));
    let shared =
        SharedKeyring::new(Keyring::from_keys(Default::default(), [a.clone(), b.clone()]).unwrap());
    let mut writer = shared.writer();
    writer
        .set_default_account_limits(vec![named("per-account", 2, 60)])
        .unwrap();
    // An account met later, by a key inserted after the default was set, gets it too.
    let third = AccountId::from_bytes([3; 16]);
    let c = key(3, third);
    writer.stage_insert(c.clone()).unwrap().apply();
    // One account with limits of its own: they replace the default for it.
    writer
        .set_account_limits(other, vec![named("own", 1, 60)])
        .unwrap();
    drop(writer);
    let ring = shared.snapshot();
    assert_eq!(ring.account_limits(ACCOUNT)[0].name(), "per-account");
    assert_eq!(ring.account_limits(other)[0].name(), "own");
    assert_eq!(ring.account_limits(third)[0].name(), "per-account");
    for (id, budget) in [(a.id(), 2), (b.id(), 1), (c.id(), 2)] {
        for _ in 0..budget {
            ring.admit(id, at(1_000)).unwrap();
        }
        assert!(ring.admit(id, at(1_000)).is_err(), "{id}");
    }
    // Back to the default for `other`, and the default lifted for everyone else.
    let mut writer = shared.writer();
    writer.set_account_limits(other, Vec::new()).unwrap();
    assert_eq!(
        writer.keyring().account_limits(other)[0].name(),
        "per-account"
    );
    writer.set_default_account_limits(Vec::new()).unwrap();
    drop(writer);
    let ring = shared.snapshot();
    assert!(ring.account_limits(other).is_empty());
    for _ in 0..5 {
        ring.admit(a.id(), at(1_000)).unwrap();
    }
}

/// The budgets a limiter kept elsewhere charges are every rate limit `admit` charges, in its
/// order, named apart: the key's own and named limits, its issuer's, then its account's.
#[test]
fn rate_limit_budgets_name_every_limit_admit_charges() {
    let (parent, child) = parent_and_child(
        KeySpec::named("parent")
            .rate_limit(RateLimit::per_period(9, 60).unwrap())
            .limit(named("daily", 1_000, 86_400)),
        KeySpec::named("child").limit(named("burst", 1, 1)),
    );
    let mut keyring =
        Keyring::from_keys(Default::default(), [parent.clone(), child.clone()]).unwrap();
    keyring
        .set_account_limits(ACCOUNT, vec![named("account", 100, 60)])
        .unwrap();
    let budgets: Vec<(String, u32)> = keyring
        .rate_limit_budgets(child.id())
        .unwrap()
        .map(|(budget, limit)| (budget.to_string(), limit.requests()))
        .collect();
    // The child inherits its parent's rate limit (a child asking for none gets its issuer's).
    let (c, p) = (child.id(), parent.id());
    assert_eq!(
        budgets,
        [
            (format!("{c}"), 9),
            (format!("{c}:burst"), 1),
            (format!("{p}"), 9),
            (format!("{p}:daily"), 1_000),
            (format!("account:{ACCOUNT}:account"), 100),
        ]
    );
    // The named `burst` of 1 a second is one of them: admit's second request in a second fails.
    keyring.admit(child.id(), at(2_000)).unwrap();
    assert!(keyring.admit(child.id(), at(2_000)).is_err());
    assert!(
        keyring
            .rate_limit_budgets(KeyId::from_bytes([9; 16]))
            .is_none()
    );
}

/// A replica takes in the store's count (every replica's flushed spending) and keeps what it
/// spent since its last flush on top: the balance then counts both replicas' spending, and the
/// next flushes neither lose nor repeat a credit.
#[test]
fn a_replica_syncs_the_stores_credit_count_without_losing_its_own() {
    let k = key(1, ACCOUNT).with_credits(Credits::new(8));
    let replica = || Keyring::from_keys(Default::default(), [k.clone()]).unwrap();
    let (a, b) = (replica(), replica());
    let mut store = Usage::default();
    let flush = |ring: &Keyring, store: &mut Usage| {
        for (_, delta) in ring.flush_usage() {
            store.absorb(&delta);
        }
    };
    for _ in 0..3 {
        a.admit(k.id(), at(1_000)).unwrap();
    }
    flush(&a, &mut store);
    b.admit(k.id(), at(1_000)).unwrap();
    b.admit(k.id(), at(1_000)).unwrap();
    // B has flushed nothing: the store's 3 plus its own 2.
    assert!(b.sync_credits(k.id(), &store));
    assert_eq!(spent_of(&b, k.id()).unwrap().spent, 5);
    flush(&b, &mut store);
    assert_eq!(
        store.credits_spent().unwrap().spent,
        5,
        "B's 2 counted once"
    );
    // A, which flushed everything, takes in B's 2; three credits are left between them.
    assert!(a.sync_credits(k.id(), &store));
    a.admit(k.id(), at(1_000)).unwrap();
    flush(&a, &mut store);
    b.sync_credits(k.id(), &store);
    b.admit(k.id(), at(1_000)).unwrap();
    b.admit(k.id(), at(1_000)).unwrap();
    assert!(b.admit(k.id(), at(1_000)).is_err());
    flush(&a, &mut store);
    flush(&b, &mut store);
    assert_eq!(store.credits_spent().unwrap().spent, 8);
    // A stale count (an earlier period) changes nothing; an unknown key is reported.
    let daily = key(2, ACCOUNT).with_credits(Credits::new(1).with_refill(1, 86_400).unwrap());
    let usage_at = |day: i64| {
        let ring = Keyring::from_keys(Default::default(), [daily.clone()]).unwrap();
        ring.admit(daily.id(), at(86_400 * day)).unwrap();
        ring.state(daily.id()).unwrap().usage
    };
    let ring = Keyring::from_keys(Default::default(), [daily.clone()]).unwrap();
    ring.admit(daily.id(), at(86_400 * 3)).unwrap();
    let before = spent_of(&ring, daily.id());
    assert!(ring.sync_credits(daily.id(), &usage_at(2)));
    assert_eq!(spent_of(&ring, daily.id()), before);
    assert!(!ring.sync_credits(KeyId::from_bytes([9; 16]), &usage_at(3)));
}
