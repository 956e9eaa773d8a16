//! A replica that applies what a shared store holds (`Writer::stage_put` / `stage_remove`, in
//! `Writer::batch`es) converges on the writer's keyring, whatever the order, duplication and
//! batching of the change notices, and a resync repairs lost ones: the same keys, and the same
//! answer to every token ever minted. This is the core of the reference server's replication
//! (server/src/replica.rs), without the database.

#![expect(clippy::unwrap_used, reason = "test bodies")]

use std::collections::BTreeMap;
use std::time::Duration;

use keygate::{
    AccountId, ApiKey, Catalog, KeyId, Keyring, Permit, Scope, SharedKeyring, Timestamp, Token,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn now() -> Timestamp {
    Timestamp::from_unix_seconds(1_800_000_000)
}

#[derive(Debug, Clone)]
enum Op {
    Insert,
    Revoke(usize),
    Rotate(usize),
    Remove(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Insert),
        1 => any::<usize>().prop_map(Op::Revoke),
        1 => any::<usize>().prop_map(Op::Rotate),
        1 => any::<usize>().prop_map(Op::Remove),
    ]
}

/// What a notice delivery does to the ids of one change.
#[derive(Debug, Clone, Copy)]
enum Delivery {
    /// Delivered now, in its own batch.
    Now,
    /// Held back, delivered with the next batch (reordered after later changes).
    Late,
    /// Delivered twice.
    Twice,
    /// Lost: only a resync repairs it.
    Lost,
}

fn delivery() -> impl Strategy<Value = Delivery> {
    prop_oneof![
        4 => Just(Delivery::Now),
        2 => Just(Delivery::Late),
        1 => Just(Delivery::Twice),
        1 => Just(Delivery::Lost),
    ]
}

/// The store: every key's record as last committed (the writer's keyring is the store here).
fn stored(primary: &Keyring, id: KeyId) -> Option<ApiKey> {
    primary.get(id).cloned()
}

/// A replica's reaction to a batch of notices: reload each named key from the store and apply
/// what changed, in one batch (as `App::sync_keys` does).
fn sync(replica: &SharedKeyring, primary: &Keyring, ids: &[KeyId]) {
    let mut writer = replica.writer();
    writer.batch(|ring| {
        for id in ids {
            match stored(primary, *id) {
                Some(key) if ring.get(*id) != Some(&key) => {
                    ring.stage_put(key).unwrap().apply();
                }
                Some(_) => {}
                None => {
                    if ring.get(*id).is_some() {
                        ring.stage_remove(*id).unwrap().apply();
                    }
                }
            }
        }
    });
}

/// A full resync: every stored key put, every key the store lost removed (`App::resync_keys`).
fn resync(replica: &SharedKeyring, primary: &Keyring) {
    let ids: Vec<KeyId> = replica
        .read(|ring| ring.iter().map(ApiKey::id).collect::<Vec<_>>())
        .into_iter()
        .chain(primary.iter().map(ApiKey::id))
        .collect();
    sync(replica, primary, &ids);
}

fn assert_converged(replica: &SharedKeyring, primary: &Keyring, tokens: &[Token]) {
    let replica = replica.snapshot();
    let ids = |ring: &Keyring| {
        ring.iter()
            .map(|key| (key.id(), key.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(ids(&replica), ids(primary), "the same keys");
    for at in [now(), now() + Duration::from_secs(120)] {
        for token in tokens {
            assert_eq!(
                replica
                    .authenticate(token.expose_secret(), at)
                    .map(ApiKey::id),
                primary
                    .authenticate(token.expose_secret(), at)
                    .map(ApiKey::id),
                "the same answer"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_replica_converges_on_the_store_whatever_the_notices_do(
        ops in proptest::collection::vec((op(), delivery()), 1..40),
        seed in any::<u64>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let catalog = Catalog::read_write_delete();
        let mut primary = Keyring::default();
        let replica = SharedKeyring::default();
        let mut tokens = Vec::new();
        let mut late: Vec<KeyId> = Vec::new();
        let mut lost = false;
        for (op, delivery) in ops {
            let ids: Vec<KeyId> = primary.iter().map(ApiKey::id).collect();
            let pick = |n: usize| ids.get(n % ids.len().max(1)).copied();
            let change: Vec<KeyId> = match op {
                Op::Insert => {
                    let token = primary.format().mint(&mut rng);
                    let key = ApiKey::new(KeyId::random(&mut rng), "k", AccountId::from_u64(1),
                        Scope::Account, catalog.all(), token.hash(), now());
                    tokens.push(token);
                    let staged = primary.stage_insert(key).unwrap();
                    let ids = staged.change().key_ids().collect();
                    staged.apply();
                    ids
                }
                Op::Revoke(n) => match pick(n) {
                    Some(id) => {
                        let staged = primary.stage_revoke(&Permit::operator_revoke(id), now());
                        let Ok(staged) = staged else { continue };
                        let ids = staged.change().key_ids().collect();
                        staged.apply();
                        ids
                    }
                    None => continue,
                },
                Op::Rotate(n) => match pick(n) {
                    Some(id) => {
                        let grace = Some(Duration::from_secs(60));
                        let staged = primary.stage_rotate(
                            &Permit::operator_rotate(id), now(), grace, &mut rng);
                        // A revoked key cannot be rotated: nothing changed.
                        let Ok(staged) = staged else { continue };
                        let ids = staged.change().key_ids().collect();
                        if let Some(token) = staged.apply() {
                            tokens.push(token);
                        }
                        ids
                    }
                    None => continue,
                },
                Op::Remove(n) => match pick(n) {
                    Some(id) => {
                        let staged = primary.stage_remove(id).unwrap();
                        let ids = staged.change().key_ids().collect();
                        staged.apply();
                        ids
                    }
                    None => continue,
                },
            };
            match delivery {
                Delivery::Now => {
                    let mut batch = std::mem::take(&mut late);
                    batch.extend(&change);
                    sync(&replica, &primary, &batch);
                }
                Delivery::Late => late.extend(change),
                Delivery::Twice => {
                    sync(&replica, &primary, &change);
                    sync(&replica, &primary, &change);
                }
                Delivery::Lost => lost = true,
            }
        }
        // Whatever was held back arrives in the end.
        sync(&replica, &primary, &late);
        if lost {
            // A lost notice leaves the replica behind until the resync; then it has caught up.
            resync(&replica, &primary);
        }
        assert_converged(&replica, &primary, &tokens);
    }
}

#[test]
fn a_resync_alone_catches_up_from_nothing() {
    let mut rng = StdRng::seed_from_u64(7);
    let catalog = Catalog::read_write_delete();
    let mut primary = Keyring::default();
    let mut tokens = Vec::new();
    for _ in 0..20 {
        let token = primary.format().mint(&mut rng);
        primary
            .insert(ApiKey::new(
                KeyId::random(&mut rng),
                "k",
                AccountId::from_u64(1),
                Scope::Account,
                catalog.all(),
                token.hash(),
                now(),
            ))
            .unwrap();
        tokens.push(token);
    }
    let first = primary.iter().next().unwrap().id();
    primary
        .revoke(&Permit::operator_revoke(first), now())
        .unwrap();
    let replica = SharedKeyring::default();
    resync(&replica, &primary);
    assert_converged(&replica, &primary, &tokens);
}
