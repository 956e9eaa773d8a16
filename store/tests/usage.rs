//! Usage deltas and rate limiters: replicas' flushes add up (also concurrently), a failed flush
//! loses nothing, state survives a rotation and goes with a removed key.

#![expect(
    clippy::unwrap_used,
    reason = "test bodies and helpers: a failure should fail the test at once"
)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{ENDPOINTS, World, now, persist_and_apply, reload};
use keygate::{ApiKey, Catalog, KeyId, Keyring, Permit, RateLimitState, Timestamp, Usage};
use keygate_store::{KeyStore, SqliteStore, UsageFlusher, rate_limit_states};

/// A store on `path` holding `keys`, and a fresh file.
fn seeded(path: &Path, catalog: &Catalog, keys: &[&ApiKey]) -> SqliteStore {
    let store = SqliteStore::open(path).unwrap();
    store.import(catalog, keys.iter().copied()).unwrap();
    store
}

/// The store loaded into a keyring counting usage per route of [`ENDPOINTS`].
fn counting(store: &SqliteStore, catalog: &Catalog) -> Keyring {
    reload(store, catalog).with_endpoints(ENDPOINTS)
}

fn usage_of(store: &SqliteStore, catalog: &Catalog, id: KeyId) -> Usage {
    reload(store, catalog).state(id).unwrap().usage
}

#[test]
fn deltas_from_two_replicas_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let mut world = World::new(20);
    let catalog = world.catalog.clone();
    let (a, b) = (world.issue("a", None), world.issue("b", None));
    seeded(&path, &catalog, &[&a, &b]);

    // Two replicas: each its own connection and its own keyring, loaded from the same file.
    let (store_1, store_2) = (
        SqliteStore::open(&path).unwrap(),
        SqliteStore::open(&path).unwrap(),
    );
    let (ring_1, ring_2) = (counting(&store_1, &catalog), counting(&store_2, &catalog));
    let (t1, t2) = (now(), now() + Duration::from_secs(5));
    for _ in 0..3 {
        ring_1.record_usage(a.id(), "GET /recordings", 200, t1);
    }
    ring_1.record_usage(a.id(), "POST /recordings", 500, t1);
    ring_2.record_usage(a.id(), "GET /recordings", 404, t2);
    ring_2.record_usage(b.id(), "GET /projects", 200, t2);
    let (mut flusher_1, mut flusher_2) = (UsageFlusher::default(), UsageFlusher::default());
    assert_eq!(flusher_1.flush(&store_1, &ring_1).unwrap(), 1);
    assert_eq!(flusher_2.flush(&store_2, &ring_2).unwrap(), 2);
    // A second flush with nothing new writes nothing, and adds nothing twice.
    assert_eq!(flusher_1.flush(&store_1, &ring_1).unwrap(), 0);

    let usage = usage_of(&store_1, &catalog, a.id());
    assert_eq!(usage.total_requests(), 5);
    assert_eq!(usage.requests_for("GET /recordings"), 4);
    assert_eq!(usage.requests_for("POST /recordings"), 1);
    assert_eq!(usage.errors_in_class("4xx"), 1);
    assert_eq!(usage.errors_in_class("5xx"), 1);
    assert_eq!(
        usage.last_used_at(),
        Some(t2),
        "the later of the two replicas'"
    );
    assert_eq!(usage_of(&store_2, &catalog, b.id()).total_requests(), 1);

    // Each replica's own view: what it loaded plus what it counted, not the other's counts.
    assert_eq!(ring_1.state(a.id()).unwrap().usage.total_requests(), 4);
}

#[test]
fn concurrent_flushes_from_two_replicas_lose_nothing() {
    const ROUNDS: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let mut world = World::new(21);
    let catalog = world.catalog.clone();
    let key = world.issue("busy", None);
    seeded(&path, &catalog, &[&key]);
    let id = key.id();

    std::thread::scope(|scope| {
        for replica in 1..=2u64 {
            let (path, catalog) = (&path, &catalog);
            scope.spawn(move || {
                let store = SqliteStore::open(path).unwrap();
                let ring = counting(&store, catalog);
                let mut flusher = UsageFlusher::default();
                for round in 0..ROUNDS {
                    // Replica 1 counts one request a round, replica 2 two.
                    for _ in 0..replica {
                        let at = Timestamp::from_unix_seconds(i64::try_from(round).unwrap());
                        ring.record_usage(id, "GET /recordings", 200, at);
                    }
                    flusher.flush(&store, &ring).unwrap();
                }
            });
        }
    });
    let store = SqliteStore::open(&path).unwrap();
    let usage = usage_of(&store, &catalog, key.id());
    assert_eq!(usage.total_requests(), 3 * ROUNDS);
    assert_eq!(usage.requests_for("GET /recordings"), 3 * ROUNDS);
}

#[test]
fn a_failed_flush_keeps_its_deltas_for_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let mut world = World::new(22);
    let catalog = world.catalog.clone();
    let key = world.issue("k", None);
    let store = seeded(&path, &catalog, &[&key]);
    let ring = counting(&store, &catalog);

    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "CREATE TRIGGER fail_usage BEFORE INSERT ON usage
         BEGIN SELECT RAISE(ABORT, 'usage refused by the test'); END;",
    )
    .unwrap();
    let mut flusher = UsageFlusher::default();
    ring.record_usage(key.id(), "GET /a", 200, now());
    ring.record_usage(key.id(), "GET /a", 200, now());
    assert!(flusher.flush(&store, &ring).is_err());
    assert_eq!(flusher.pending(), 1);
    assert_eq!(usage_of(&store, &catalog, key.id()).total_requests(), 0);

    raw.execute_batch("DROP TRIGGER fail_usage").unwrap();
    ring.record_usage(key.id(), "GET /b", 500, now());
    assert_eq!(flusher.flush(&store, &ring).unwrap(), 1);
    assert_eq!(flusher.pending(), 0);
    let usage = usage_of(&store, &catalog, key.id());
    assert_eq!(
        usage.total_requests(),
        3,
        "the failed flush's two and the next one's one"
    );
    assert_eq!(usage.requests_for("GET /a"), 2);
    assert_eq!(usage.errors_in_class("5xx"), 1);
}

#[test]
fn state_survives_a_rotation_and_goes_with_a_removed_key() {
    let mut world = World::new(23);
    let catalog = world.catalog.clone();
    let store = SqliteStore::open_in_memory().unwrap();
    let mut live = Keyring::default();
    let kept = world.issue_limited("kept");
    let removed = world.issue_limited("removed");
    for key in [&kept, &removed] {
        persist_and_apply(&store, &catalog, live.stage_insert(key.clone()).unwrap());
    }
    for key in [&kept, &removed] {
        live.record_usage(key.id(), "GET /a", 200, now());
        live.check_rate_limit(key.id(), now()).unwrap();
    }
    let mut flusher = UsageFlusher::default();
    flusher.flush(&store, &live).unwrap();
    store.save_rate_limits(&rate_limit_states(&live)).unwrap();

    // Rewriting a record (a rotation) keeps its usage and limiter rows.
    let stage = live.stage_rotate(
        &Permit::operator_rotate(kept.id()),
        now(),
        None,
        &mut world.rng,
    );
    persist_and_apply(&store, &catalog, stage.unwrap());
    let loaded = reload(&store, &catalog);
    assert_eq!(loaded.state(kept.id()), live.state(kept.id()));
    assert_eq!(loaded.state(kept.id()).unwrap().usage.total_requests(), 1);

    // Removing a key removes its state: a key inserted again under the same id starts afresh.
    let (removed_key, _) = live.remove(removed.id()).unwrap();
    store
        .commit(&{
            let mut commit = keygate_store::Commit::new();
            commit.add_key_write(keygate_store::KeyWrite::Delete(removed.id()));
            commit
        })
        .unwrap();
    // Deltas and limiters of a key removed meanwhile (a flush racing a removal) are dropped.
    store
        .add_usage(&[(removed.id(), Usage::default()), (kept.id(), one_request())])
        .unwrap();
    store
        .save_rate_limits(&[(removed.id(), live_state_at(now()))])
        .unwrap();
    store.import(&catalog, [&removed_key]).unwrap();
    let loaded = reload(&store, &catalog);
    assert_eq!(
        loaded.state(removed.id()),
        Some(keygate::KeyState::default())
    );
    assert_eq!(loaded.state(kept.id()).unwrap().usage.total_requests(), 2);
}

#[test]
fn a_saved_limiter_keeps_the_later_arrival_time() {
    let mut world = World::new(24);
    let catalog = world.catalog.clone();
    let store = SqliteStore::open_in_memory().unwrap();
    let key = world.issue_limited("k");
    store.import(&catalog, [&key]).unwrap();
    let (early, late) = (
        live_state_at(now()),
        live_state_at(now() + Duration::from_secs(90)),
    );
    assert!(early.tat() < late.tat());

    store.save_rate_limits(&[(key.id(), late)]).unwrap();
    store.save_rate_limits(&[(key.id(), early)]).unwrap();
    let loaded = reload(&store, &catalog);
    assert_eq!(loaded.state(key.id()).unwrap().rate_limit, late);
    // A state that saw no request is not saved at all.
    store
        .save_rate_limits(&[(key.id(), RateLimitState::default())])
        .unwrap();
    assert_eq!(
        reload(&store, &catalog).state(key.id()).unwrap().rate_limit,
        late
    );
}

/// The limiter state of a fresh 2-per-minute key after one request at `at`.
fn live_state_at(at: Timestamp) -> RateLimitState {
    let mut state = RateLimitState::default();
    keygate::RateLimit::per_period(2, 60)
        .unwrap()
        .check(&mut state, at)
        .unwrap();
    state
}

fn one_request() -> Usage {
    let mut usage = Usage::default();
    usage.record("GET /a", 200, now());
    usage
}
