use super::index::prefix_of;
use super::*;
use crate::catalog::Catalog;
use crate::issue::Permit;
use crate::ratelimit::RateLimit;
use crate::token::Token;
use rand::SeedableRng;
use rand::rngs::StdRng;

impl Keyring {
    /// Panics unless every invariant of the index holds.
    fn assert_consistent(&self) {
        assert!(
            self.keys.get(0).unwrap().is_revoked(),
            "slot 0 is the dummy"
        );
        assert_eq!(self.keys.len(), self.cells.len());
        assert_eq!(self.keys.len(), self.cap_slots.len());
        assert_eq!(self.slots.len(), self.len());
        assert!(
            self.index.well_formed(),
            "chunks sorted, bounded, in the directory"
        );
        let mut expected: Vec<IndexEntry> = Vec::new();
        for (slot, key) in self.keys.iter().enumerate().skip(1) {
            let slot = u32::try_from(slot).unwrap();
            assert_eq!(self.slots.get(&key.id()), Some(&slot));
            expected.extend(entries_for(key, slot));
        }
        expected.sort_unstable_by_key(|e| e.prefix);
        let mut indexed: Vec<IndexEntry> = self.index.entries().copied().collect();
        indexed.sort_unstable_by_key(|e| e.prefix);
        assert_eq!(indexed, expected);
        assert!(
            indexed.windows(2).all(|w| w[0].prefix < w[1].prefix),
            "unique prefixes"
        );
        for entry in &indexed {
            assert_eq!(entry.prefix, prefix_of(&entry.hash));
        }
    }
}

fn key(rng: &mut StdRng, token: &Token) -> ApiKey {
    let catalog = Catalog::read_write_delete();
    ApiKey::new(
        KeyId::random(rng),
        "k",
        AccountId::from_u64(1),
        Scope::Account,
        catalog.all(),
        token.hash(),
        Timestamp::EPOCH,
    )
}

#[test]
fn index_stays_consistent_through_every_operation() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut ring = Keyring::default();
    ring.assert_consistent();
    let mut ids = Vec::new();
    for _ in 0..50 {
        let token = ring.format().mint(&mut rng);
        let key = key(&mut rng, &token);
        ids.push(key.id());
        ring.insert(key).unwrap();
        ring.assert_consistent();
    }
    let now = Timestamp::from_unix_seconds(10);
    for (i, id) in ids.iter().enumerate() {
        let grace = (i % 2 == 0).then(|| Duration::from_secs(30));
        ring.rotate(&Permit::operator_rotate(*id), now, grace, &mut rng)
            .unwrap();
        ring.assert_consistent();
    }
    for id in ids.iter().step_by(3) {
        ring.remove(*id).unwrap();
        ring.assert_consistent();
    }
    for id in ids.iter().skip(1).step_by(3) {
        ring.revoke(&Permit::operator_revoke(*id), now).unwrap();
        ring.rotate(&Permit::operator_rotate(*id), now, None, &mut rng)
            .unwrap_err();
        ring.assert_consistent();
    }
    let rebuilt = Keyring::from_keys(TokenFormat::default(), ring.iter().cloned()).unwrap();
    rebuilt.assert_consistent();
    assert_eq!(rebuilt.len(), ring.len());
}

/// One step of a random life: what the model test does to a keyring.
#[derive(Debug, Clone)]
enum Op {
    Insert,
    Remove(usize),
    Revoke(usize),
    Rotate(usize, Option<u64>),
    Prune,
    Advance(u64),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        3 => Just(Op::Insert),
        1 => any::<usize>().prop_map(Op::Remove),
        1 => any::<usize>().prop_map(Op::Revoke),
        2 => (any::<usize>(), proptest::option::of(0u64..5)).prop_map(|(i, g)| Op::Rotate(i, g)),
        1 => Just(Op::Prune),
        1 => (0u64..4).prop_map(Op::Advance),
    ]
}

proptest::proptest! {
    /// After any sequence of operations the index is consistent, and every token ever
    /// handed out authenticates exactly when a plain model says it should.
    #[test]
    fn random_lives_agree_with_a_plain_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut rng = StdRng::seed_from_u64(99);
        let mut ring = Keyring::default();
        let mut now = Timestamp::from_unix_seconds(1);
        // Model: each token -> (key id, valid until); plus the set of revoked ids.
        let mut tokens: Vec<(Token, KeyId, Timestamp)> = Vec::new();
        let mut ids: Vec<KeyId> = Vec::new();
        let mut revoked: Vec<KeyId> = Vec::new();
        for op in ops {
            match op {
                Op::Insert => {
                    let token = ring.format().mint(&mut rng);
                    let key = key(&mut rng, &token);
                    ids.push(key.id());
                    tokens.push((token, key.id(), Timestamp::MAX));
                    ring.insert(key).unwrap();
                }
                Op::Remove(i) if !ids.is_empty() => {
                    let id = ids.remove(i % ids.len());
                    ring.remove(id).unwrap();
                    // A removed key's tokens are unknown from now on.
                    for (_, owner, until) in tokens.iter_mut() {
                        if *owner == id {
                            *until = Timestamp::from_unix_micros(i64::MIN);
                        }
                    }
                }
                Op::Revoke(i) if !ids.is_empty() => {
                    let id = ids[i % ids.len()];
                    ring.revoke(&Permit::operator_revoke(id), now).unwrap();
                    revoked.push(id);
                }
                Op::Rotate(i, grace) if !ids.is_empty() => {
                    let id = ids[i % ids.len()];
                    let grace = grace.map(Duration::from_secs);
                    match ring.rotate(&Permit::operator_rotate(id), now, grace, &mut rng) {
                        Ok(token) => {
                            let end = grace.filter(|g| !g.is_zero()).map(|g| now + g);
                            for (_, owner, until) in tokens.iter_mut() {
                                if *owner == id {
                                    // The current secret gets the grace period; an older
                                    // retired one ends now.
                                    *until = match (*until == Timestamp::MAX, end) {
                                        (true, Some(end)) => end,
                                        _ => (*until).min(now),
                                    };
                                }
                            }
                            tokens.push((token, id, Timestamp::MAX));
                        }
                        Err(error) => {
                            proptest::prop_assert!(revoked.contains(&id), "{error}");
                        }
                    }
                }
                Op::Prune => {
                    ring.prune(now);
                }
                Op::Advance(seconds) => now = now + Duration::from_secs(seconds),
                Op::Remove(_) | Op::Revoke(_) | Op::Rotate(..) => {}
            }
            ring.assert_consistent();
            proptest::prop_assert_eq!(ring.len(), ids.len());
            for (token, owner, until) in &tokens {
                let expected = if *until <= now {
                    Err(Deny::UnknownKey)
                } else if revoked.contains(owner) {
                    Err(Deny::Revoked)
                } else {
                    Ok(*owner)
                };
                let got = ring.authenticate(token.expose_secret(), now).map(ApiKey::id);
                proptest::prop_assert_eq!(got, expected);
            }
        }
    }
}

#[test]
fn prefix_collisions_are_refused() {
    let mut rng = StdRng::seed_from_u64(5);
    let token = TokenFormat::default().mint(&mut rng);
    let mut ring = Keyring::default();
    let first = key(&mut rng, &token);
    ring.insert(first.clone()).unwrap();
    // Same first 8 bytes, different rest.
    let mut bytes = *token.hash().as_bytes();
    bytes[31] ^= 1;
    let mut second = key(&mut rng, &token);
    second.token_hash = TokenHash::from_bytes(bytes);
    let id = second.id();
    assert_eq!(
        ring.insert(second.clone()),
        Err(KeyringError::PrefixCollision(id))
    );
    assert!(matches!(
        Keyring::from_keys(TokenFormat::default(), [first, second]),
        Err(KeyringError::PrefixCollision(_))
    ));
    ring.assert_consistent();
}

#[test]
fn stage_put_inserts_replaces_keeping_state_and_refuses_a_shared_secret() {
    let mut rng = StdRng::seed_from_u64(12);
    let mut ring = Keyring::default();
    let now = Timestamp::from_unix_seconds(1_000);
    let (first, second) = (ring.format().mint(&mut rng), ring.format().mint(&mut rng));
    let a = key(&mut rng, &first);
    let b = key(&mut rng, &second);
    ring.stage_put(a.clone()).unwrap().apply();
    ring.stage_put(b.clone()).unwrap().apply();
    assert_eq!(ring.len(), 2);
    ring.record_usage(a.id(), "GET /x", 200, now);

    // Another writer revoked `a`: the stored record replaces the live one, its usage stays.
    let mut revoked = a.clone();
    revoked.revoke(now);
    ring.stage_put(revoked.clone()).unwrap().apply();
    assert_eq!(ring.get(a.id()), Some(&revoked));
    assert!(ring.authenticate(first.expose_secret(), now).is_err());
    assert_eq!(ring.state(a.id()).unwrap().usage.total_requests(), 1);
    assert_eq!(ring.unflushed_usage(a.id()).unwrap().total_requests(), 1);
    assert!(ring.authenticate(second.expose_secret(), now).is_ok());

    // A record holding another key's secret is refused, changing nothing.
    let mut clash = b.clone();
    clash.id = a.id();
    assert_eq!(
        ring.stage_put(clash).unwrap_err(),
        KeyringError::DuplicateToken(a.id())
    );
    assert_eq!(ring.get(a.id()), Some(&revoked));
    ring.assert_consistent();

    // Flushed counts leave the unflushed usage, not the state.
    assert_eq!(ring.flush_usage().len(), 1);
    assert_eq!(ring.unflushed_usage(a.id()).unwrap().total_requests(), 0);
    assert_eq!(ring.state(a.id()).unwrap().usage.total_requests(), 1);
}

#[test]
fn a_batch_publishes_every_change_at_once() {
    let mut rng = StdRng::seed_from_u64(13);
    let shared = SharedKeyring::default();
    let tokens: Vec<Token> = (0..4)
        .map(|_| shared.read(|r| r.format().mint(&mut rng)))
        .collect();
    let keys: Vec<ApiKey> = tokens.iter().map(|t| key(&mut rng, t)).collect();
    let before = shared.snapshot();
    let applied = shared.writer().batch(|ring| {
        for key in &keys {
            ring.stage_put(key.clone()).unwrap().apply();
        }
        // Staged and dropped: not published.
        drop(ring.stage_remove(keys[0].id()).unwrap());
        ring.len()
    });
    assert_eq!(applied, 4);
    assert!(before.is_empty(), "an earlier snapshot never sees a batch");
    let now = Timestamp::from_unix_seconds(1);
    for token in &tokens {
        assert!(shared.authenticate(token.expose_secret(), now).is_ok());
    }
    shared.read(Keyring::assert_consistent);
}

#[test]
fn rate_limit_chain_is_what_check_rate_limit_charges() {
    let mut rng = StdRng::seed_from_u64(12);
    let mut ring = Keyring::default();
    // keys[0] is the root; keys[i] was issued by keys[i - 1]; every other key is limited.
    let mut keys: Vec<ApiKey> = Vec::new();
    for i in 0..=MAX_RATE_LIMIT_CHAIN {
        let token = ring.format().mint(&mut rng);
        let mut key = key(&mut rng, &token);
        key.issued_by = keys.last().map(ApiKey::id);
        if i % 2 == 0 {
            key.rate_limit =
                Some(RateLimit::per_period(u32::try_from(i + 1).unwrap(), 60).unwrap());
        }
        ring.insert(key.clone()).unwrap();
        keys.push(key);
    }
    let expected = |depth: usize| -> Vec<(KeyId, RateLimit)> {
        keys[..depth]
            .iter()
            .rev()
            .filter_map(|k| Some((k.id(), *k.rate_limit()?)))
            .collect()
    };
    for depth in 1..=MAX_RATE_LIMIT_CHAIN {
        let leaf = keys[depth - 1].id();
        let chain: Vec<_> = ring.rate_limit_chain(leaf).unwrap().collect();
        assert_eq!(chain, expected(depth), "depth {depth}");
    }
    // One key deeper than the bound: no chain, and check_rate_limit refuses it too.
    let too_deep = keys[MAX_RATE_LIMIT_CHAIN].id();
    assert!(ring.rate_limit_chain(too_deep).is_none());
    assert!(ring.check_rate_limit(too_deep, Timestamp::EPOCH).is_err());
    assert!(ring.rate_limit_chain(KeyId::from_bytes([9; 16])).is_none());

    // The chain is what gets charged: spending the root's budget of 1 through a grandchild
    // refuses the root next.
    let now = Timestamp::from_unix_seconds(5);
    assert!(ring.check_rate_limit(keys[2].id(), now).is_ok());
    assert!(ring.check_rate_limit(keys[0].id(), now).is_err());
    // An unlimited key with no limited ancestor has an empty chain: always admitted.
    let token = ring.format().mint(&mut rng);
    let free = key(&mut rng, &token);
    ring.insert(free.clone()).unwrap();
    assert_eq!(ring.rate_limit_chain(free.id()).unwrap().count(), 0);
}
