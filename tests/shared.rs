//! The concurrent keyring: staged changes (persist, then apply; a failed save changes nothing),
//! lock-free rate limits and usage, and concurrent readers and writers against a sequential
//! model.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use keygate::{
    AccountId, Action, ApiKey, Catalog, Decision, Deny, KeyId, Keyring, Permit, RateLimit,
    RateLimitState, RecordChange, Resource, Scope, SharedKeyring, Timestamp, Token, TokenFormat,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn now() -> Timestamp {
    Timestamp::from_unix_seconds(1_800_000_000)
}

fn key(rng: &mut StdRng, token: &Token) -> ApiKey {
    ApiKey::new(
        KeyId::random(rng),
        "k",
        AccountId::from_u64(1),
        Scope::Account,
        Catalog::read_write_delete().all(),
        token.hash(),
        Timestamp::EPOCH,
    )
}

/// A store that fails on demand: the failed save of the persistence issue, reproduced.
struct Store {
    fail: bool,
    saved: Vec<String>,
}

impl Store {
    fn persist<'a>(&mut self, records: impl Iterator<Item = RecordChange<'a>>) -> Result<(), ()> {
        if self.fail {
            return Err(());
        }
        for record in records {
            self.saved.push(format!("{record:?}"));
        }
        Ok(())
    }
}

#[test]
fn a_failed_save_leaves_the_live_keyring_unchanged() {
    let mut rng = StdRng::seed_from_u64(1);
    let catalog = Catalog::read_write_delete();
    let token = TokenFormat::default().mint(&mut rng);
    let k = key(&mut rng, &token);
    let shared =
        SharedKeyring::new(Keyring::from_keys(TokenFormat::default(), [k.clone()]).unwrap());
    let read = Action::named(&catalog, "read").unwrap();
    let here = Resource::listing(AccountId::from_u64(1));
    let mut store = Store {
        fail: true,
        saved: Vec::new(),
    };

    // Revocation, rotation, removal and insertion: each staged, the save fails, nothing changes.
    let mut writer = shared.writer();
    let revoke = Permit::operator_revoke(k.id());
    let staged = writer.stage_revoke(&revoke, now()).unwrap();
    assert!(store.persist(staged.records()).is_err());
    drop(staged);
    let rotate = Permit::operator_rotate(k.id());
    let staged = writer.stage_rotate(&rotate, now(), None, &mut rng).unwrap();
    assert!(store.persist(staged.records()).is_err());
    drop(staged);
    let staged = writer.stage_remove(k.id()).unwrap();
    assert!(store.persist(staged.records()).is_err());
    drop(staged);
    let other = TokenFormat::default().mint(&mut rng);
    let staged = writer.stage_insert(key(&mut rng, &other)).unwrap();
    assert!(store.persist(staged.records()).is_err());
    drop(staged);
    drop(writer);
    assert_eq!(
        shared.authorize(token.expose_secret(), read, &here, now()),
        Decision::Allow
    );
    assert_eq!(
        shared.authorize(other.expose_secret(), read, &here, now()),
        Decision::Deny(Deny::UnknownKey)
    );
    assert_eq!(shared.snapshot().len(), 1);

    // The same revocation, saved: applied, and the record written is the revoked key.
    store.fail = false;
    let mut writer = shared.writer();
    let staged = writer.stage_revoke(&revoke, now()).unwrap();
    store.persist(staged.records()).unwrap();
    staged.apply();
    drop(writer);
    assert_eq!(
        shared.authorize(token.expose_secret(), read, &here, now()),
        Decision::Deny(Deny::Revoked)
    );
    assert_eq!(store.saved.len(), 1);
    assert!(
        store.saved[0].contains("revoked_at: Some"),
        "{}",
        store.saved[0]
    );
}

#[test]
fn a_rotation_hands_its_token_back_once_applied() {
    let mut rng = StdRng::seed_from_u64(2);
    let token = TokenFormat::default().mint(&mut rng);
    let k = key(&mut rng, &token);
    let mut keyring = Keyring::from_keys(TokenFormat::default(), [k.clone()]).unwrap();
    let permit = Permit::operator_rotate(k.id());
    let staged = keyring
        .stage_rotate(&permit, now(), None, &mut rng)
        .unwrap();
    let written: Vec<KeyId> = staged.change().key_ids().collect();
    assert_eq!(written, [k.id()]);
    let new = staged.apply().unwrap();
    assert!(keyring.authenticate(new.expose_secret(), now()).is_ok());
    assert!(keyring.authenticate(token.expose_secret(), now()).is_err());
}

#[test]
fn state_survives_snapshots_and_flushes_as_deltas() {
    let mut rng = StdRng::seed_from_u64(3);
    let token = TokenFormat::default().mint(&mut rng);
    let k = key(&mut rng, &token).with_rate_limit(RateLimit::per_period(2, 60).unwrap());
    let ring = Keyring::from_keys(TokenFormat::default(), [k.clone()])
        .unwrap()
        .with_endpoints(["GET /a"]);
    let shared = SharedKeyring::new(ring);
    let auth = shared.authenticate(token.expose_secret(), now()).unwrap();
    assert!(auth.check_rate_limit(now()).is_ok());
    auth.record_usage("GET /a", 200, now());
    auth.record_usage("GET /b", 503, now());
    // A write publishes a new snapshot; the key's live state carries over.
    let mut writer = shared.writer();
    let other = TokenFormat::default().mint(&mut rng);
    writer.stage_insert(key(&mut rng, &other)).unwrap().apply();
    drop(writer);
    let again = shared.authenticate(token.expose_secret(), now()).unwrap();
    assert!(again.check_rate_limit(now()).is_ok());
    assert!(
        again.check_rate_limit(now()).is_err(),
        "two per minute, across snapshots"
    );
    let state = shared.snapshot().state(k.id()).unwrap();
    assert_eq!(state.usage.total_requests(), 2);
    assert_eq!(state.usage.requests_for("GET /a"), 1);
    assert_eq!(state.usage.requests_for("other"), 1);
    assert_eq!(state.usage.errors_in_class("5xx"), 1);
    assert!(state.rate_limit.tat().is_some());

    // Flushing returns the delta once; the settled usage keeps the total.
    let snapshot = shared.snapshot();
    let deltas = snapshot.flush_usage();
    assert_eq!(deltas.len(), 1);
    assert_eq!(deltas[0].1.total_requests(), 2);
    assert!(snapshot.flush_usage().is_empty());
    assert_eq!(snapshot.state(k.id()).unwrap().usage.total_requests(), 2);
    // A restored state (from a store) is what the key reports and limits by.
    let restored = keygate::KeyState {
        rate_limit: RateLimitState::default(),
        ..snapshot.state(k.id()).unwrap()
    };
    assert!(snapshot.restore_state(k.id(), &restored));
    assert!(again.check_rate_limit(now()).is_ok());
}

/// The atomic GCRA admits exactly what the pure one does, request by request, on one thread.
#[test]
fn the_atomic_limiter_decides_as_the_pure_one() {
    let mut rng = StdRng::seed_from_u64(4);
    for (requests, period, burst) in [(1, 1, 1), (3, 1, 1), (5, 60, 5), (100, 7, 20)] {
        let limit = RateLimit::per_period(requests, period)
            .unwrap()
            .with_burst(burst)
            .unwrap();
        let token = TokenFormat::default().mint(&mut rng);
        let k = key(&mut rng, &token).with_rate_limit(limit);
        let ring = Keyring::from_keys(TokenFormat::default(), [k.clone()]).unwrap();
        let mut model = RateLimitState::default();
        let mut at = now();
        for step in 0..500u64 {
            at = at + Duration::from_micros((step * 7_919) % 400_000);
            let want = limit.check(&mut model, at);
            let got = ring.check_rate_limit(k.id(), at);
            assert_eq!(got, want, "step {step} at {at}");
        }
    }
}

/// Readers on every core never see a half-applied change, and agree with a sequential model of
/// the writes: every inserted key works from the moment its change is applied, every revoked key
/// fails from then on, and a key's rate limit admits no more across threads than its budget.
#[test]
fn concurrent_readers_and_writers_agree_with_a_sequential_model() {
    let mut rng = StdRng::seed_from_u64(5);
    let catalog = Catalog::read_write_delete();
    let read = Action::named(&catalog, "read").unwrap();
    let here = Resource::listing(AccountId::from_u64(1));
    let shared = Arc::new(SharedKeyring::default());
    let tokens: Vec<(Token, ApiKey)> = (0..64)
        .map(|_| {
            let token = TokenFormat::default().mint(&mut rng);
            let k = key(&mut rng, &token);
            (token, k)
        })
        .collect();
    let tokens = Arc::new(tokens);
    // Phase markers: index i's key is inserted when `inserted[i]`, revoked when `revoked[i]`.
    let inserted: Arc<Vec<AtomicBool>> =
        Arc::new((0..64).map(|_| AtomicBool::new(false)).collect());
    let revoked: Arc<Vec<AtomicBool>> = Arc::new((0..64).map(|_| AtomicBool::new(false)).collect());
    let done = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (shared, tokens, inserted, revoked, done) = (
                Arc::clone(&shared),
                Arc::clone(&tokens),
                Arc::clone(&inserted),
                Arc::clone(&revoked),
                Arc::clone(&done),
            );
            std::thread::spawn(move || {
                let mut checks = 0u64;
                let mut round = 0usize;
                // At least 20,000 checks each, whether or not the writer is done by then.
                while round < 20_000 || !done.load(Ordering::Acquire) && round < 200_000 {
                    round += 1;
                    let i = (round * 7 + r) % 64;
                    let (token, _) = &tokens[i];
                    // Read the model before and after the decision: a key inserted before the
                    // decision started must be found; one revoked before it started must fail.
                    let was_inserted = inserted[i].load(Ordering::Acquire);
                    let was_revoked = revoked[i].load(Ordering::Acquire);
                    let decision = shared.authorize(token.expose_secret(), read, &here, now());
                    let is_inserted = inserted[i].load(Ordering::Acquire);
                    let is_revoked = revoked[i].load(Ordering::Acquire);
                    match decision {
                        Decision::Allow => assert!(is_inserted && !was_revoked),
                        Decision::Deny(Deny::UnknownKey) => assert!(!was_inserted),
                        Decision::Deny(Deny::Revoked) => assert!(is_revoked),
                        other => panic!("unexpected {other:?}"),
                    }
                    checks += 1;
                }
                checks
            })
        })
        .collect();

    for (i, (_, k)) in tokens.iter().enumerate() {
        let mut writer = shared.writer();
        writer.stage_insert(k.clone()).unwrap().apply();
        drop(writer);
        inserted[i].store(true, Ordering::Release);
        if i % 3 == 0 {
            let mut writer = shared.writer();
            writer
                .stage_revoke(&Permit::operator_revoke(k.id()), now())
                .unwrap()
                .apply();
            drop(writer);
            revoked[i].store(true, Ordering::Release);
        }
    }
    done.store(true, Ordering::Release);
    let checks: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(checks > 0);
    assert_eq!(shared.snapshot().len(), 64);

    // A shared budget: two threads spending one key's limit of 50 per hour admit 50 in all.
    let token = TokenFormat::default().mint(&mut rng);
    let limited = key(&mut rng, &token).with_rate_limit(RateLimit::per_period(50, 3_600).unwrap());
    shared
        .writer()
        .stage_insert(limited.clone())
        .unwrap()
        .apply();
    let admitted: usize = (0..2)
        .map(|_| {
            let shared = Arc::clone(&shared);
            let id = limited.id();
            std::thread::spawn(move || {
                (0..1_000)
                    .filter(|_| shared.snapshot().check_rate_limit(id, now()).is_ok())
                    .count()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .sum();
    assert_eq!(admitted, 50);
}
