//! Random sequences of staged operations (issue, issue by a key, rotate with and without grace,
//! revoke, revoke a tree, narrow, remove, count requests, flush usage, reload, let time pass),
//! each persisted before it is applied: the store, loaded into a fresh keyring, always equals
//! the live keyring: the same keys, the same usage, the same answer to every token ever minted.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers and proptest bodies: a failure should fail the test at once"
)]

mod common;

use std::time::Duration;

use common::{ENDPOINTS, assert_same_answers, assert_same_keys, cases};
use keygate::{
    ApiKey, Catalog, IssuedKey, Issuer, KeyId, KeySpec, KeyUpdate, Keyring, ManageOp, Permit,
    RateLimit, Staged, Timestamp, Token, TokenFormat, issue, manage,
};
use keygate_store::{KeyStore, SqliteStore, UsageFlusher, load_keyring};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

#[derive(Debug, Clone)]
enum Op {
    /// Issue a key: by the owner, or by the `parent`-th key (when it may).
    Issue {
        parent: Option<usize>,
        limited: bool,
    },
    Rotate {
        target: usize,
        grace: Option<u64>,
    },
    Revoke {
        target: usize,
    },
    RevokeTree {
        target: usize,
    },
    Narrow {
        target: usize,
        to_read: bool,
    },
    Remove {
        target: usize,
    },
    Use {
        target: usize,
        endpoint: usize,
        status: u16,
    },
    Flush,
    /// Replace the live keyring by one loaded from the store (a restart).
    Reload,
    Wait {
        seconds: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let index = any::<usize>();
    prop_oneof![
        4 => (proptest::option::of(index), any::<bool>())
            .prop_map(|(parent, limited)| Op::Issue { parent, limited }),
        2 => (index, proptest::option::of(1u64..120)).prop_map(|(target, grace)| Op::Rotate { target, grace }),
        1 => index.prop_map(|target| Op::Revoke { target }),
        1 => index.prop_map(|target| Op::RevokeTree { target }),
        1 => (index, any::<bool>()).prop_map(|(target, to_read)| Op::Narrow { target, to_read }),
        1 => index.prop_map(|target| Op::Remove { target }),
        3 => (index, 0..ENDPOINTS.len() + 1, prop::sample::select(vec![200u16, 404, 503]))
            .prop_map(|(target, endpoint, status)| Op::Use { target, endpoint, status }),
        1 => Just(Op::Flush),
        1 => Just(Op::Reload),
        1 => (1u64..90).prop_map(|seconds| Op::Wait { seconds }),
    ]
}

struct Run {
    catalog: Catalog,
    store: SqliteStore,
    live: Keyring,
    flusher: UsageFlusher,
    rng: StdRng,
    tokens: Vec<Token>,
    clock: Timestamp,
}

impl Run {
    fn new(seed: u64) -> Self {
        let catalog = common::catalog();
        let store = SqliteStore::open_in_memory().unwrap();
        let live = Self::load(&store, &catalog);
        Self {
            catalog,
            store,
            live,
            flusher: UsageFlusher::default(),
            rng: StdRng::seed_from_u64(seed),
            tokens: Vec::new(),
            clock: common::now(),
        }
    }

    fn load(store: &SqliteStore, catalog: &Catalog) -> Keyring {
        load_keyring(store, catalog, TokenFormat::default())
            .unwrap()
            .with_endpoints(ENDPOINTS)
    }

    /// The `index`-th key by id, if there is any key.
    fn pick(&self, index: usize) -> Option<ApiKey> {
        let mut ids: Vec<KeyId> = self.live.iter().map(ApiKey::id).collect();
        ids.sort_unstable();
        let id = *ids.get(index % ids.len().max(1))?;
        self.live.get(id).cloned()
    }

    fn owner(&self) -> Issuer {
        Issuer::user(
            common::account(),
            keygate::Scope::Account,
            self.catalog.all(),
        )
        .with_user_id("alice")
    }

    /// Stage → persist → apply, as a server does; a token a rotation minted joins `tokens`.
    fn commit(store: &SqliteStore, catalog: &Catalog, tokens: &mut Vec<Token>, staged: Staged<'_>) {
        store.persist(catalog, staged.change()).unwrap();
        tokens.extend(staged.apply());
    }

    fn step(&mut self, op: Op) {
        let (store, catalog, now) = (&self.store, &self.catalog, self.clock);
        match op {
            Op::Issue { parent, limited } => {
                let issuer = match parent.and_then(|i| self.pick(i)) {
                    Some(parent) => match Issuer::key(catalog, &parent, now) {
                        Ok(issuer) => issuer,
                        Err(_) => return, // a revoked or expired key issues nothing
                    },
                    None => self.owner(),
                };
                let mut spec = KeySpec::named("k").tags(["t"]);
                if limited {
                    spec = spec.rate_limit(RateLimit::per_period(5, 60).unwrap());
                }
                let Ok(IssuedKey { key, token }) =
                    issue(catalog, &issuer, spec, now, &mut self.rng)
                else {
                    return; // refused for escalating (a limit looser than the issuer's)
                };
                self.tokens.push(token);
                let staged = self.live.stage_insert(key).unwrap();
                Self::commit(store, catalog, &mut self.tokens, staged);
            }
            Op::Rotate { target, grace } => {
                let Some(key) = self.pick(target) else { return };
                let grace = grace.map(Duration::from_secs);
                let permit = Permit::operator_rotate(key.id());
                // A revoked key cannot be rotated: refused at staging, nothing to persist.
                if let Ok(staged) = self.live.stage_rotate(&permit, now, grace, &mut self.rng) {
                    Self::commit(store, catalog, &mut self.tokens, staged);
                }
            }
            Op::Revoke { target } | Op::RevokeTree { target } => {
                let Some(key) = self.pick(target) else { return };
                let permit = Permit::operator_revoke(key.id());
                let staged = if matches!(op, Op::Revoke { .. }) {
                    self.live.stage_revoke(&permit, now)
                } else {
                    self.live.stage_revoke_tree(&permit, now)
                };
                Self::commit(store, catalog, &mut self.tokens, staged.unwrap());
            }
            Op::Narrow { target, to_read } => {
                let Some(key) = self.pick(target) else { return };
                let mut update = KeyUpdate::new()
                    .name(format!("n{target}"))
                    .tags(["narrowed"]);
                if to_read {
                    update = update.permissions(["read"]);
                }
                let owner = self.owner();
                let Ok(permit) = manage(catalog, &owner, &key, ManageOp::Update(update), now)
                else {
                    return; // not a narrowing for this key (it lacks `read`)
                };
                let staged = self.live.stage_update(&permit).unwrap();
                Self::commit(store, catalog, &mut self.tokens, staged);
            }
            Op::Remove { target } => {
                let Some(key) = self.pick(target) else { return };
                let staged = self.live.stage_remove(key.id()).unwrap();
                Self::commit(store, catalog, &mut self.tokens, staged);
            }
            Op::Use {
                target,
                endpoint,
                status,
            } => {
                let Some(key) = self.pick(target) else { return };
                let endpoint = ENDPOINTS.get(endpoint).copied().unwrap_or("GET /elsewhere");
                self.live.record_usage(key.id(), endpoint, status, now);
            }
            Op::Flush => {
                self.flusher.flush(store, &self.live).unwrap();
            }
            Op::Reload => {
                self.flusher.flush(store, &self.live).unwrap();
                let loaded = Self::load(store, catalog);
                self.check(&loaded);
                self.live = loaded;
            }
            Op::Wait { seconds } => self.clock = now + Duration::from_secs(seconds),
        }
    }

    /// The store, loaded afresh, equals the live keyring (whose usage was just flushed).
    fn check(&self, loaded: &Keyring) {
        assert_same_keys(&self.live, loaded);
        for key in self.live.iter() {
            assert_eq!(
                self.live.state(key.id()).map(|s| s.usage),
                loaded.state(key.id()).map(|s| s.usage),
                "usage of {}",
                key.id()
            );
        }
        let later = |s| self.clock + Duration::from_secs(s);
        let instants = [self.clock, later(30), later(61), later(121), later(86_400)];
        assert_same_answers(&self.live, loaded, &self.tokens, &instants);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn a_reloaded_store_equals_the_live_keyring(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let mut run = Run::new(seed);
        for op in ops {
            run.step(op);
        }
        run.flusher.flush(&run.store, &run.live).unwrap();
        let loaded = Run::load(&run.store, &run.catalog);
        run.check(&loaded);
    }
}
