//! What only the PostgreSQL store does: change notices to every listener, usage added up from
//! replicas flushing at once, migrations raced by replicas starting at once, a listener that
//! survives a lost connection, and an unreachable server failing fast. The store's contract
//! (round trips, refusals) runs on both backends in `roundtrip.rs`.
//!
//! Needs a server: `KEYGATE_TEST_POSTGRES=postgres://USER@HOST:PORT/DB` (`bash .ci/services.sh
//! start` prints one). Unset, each test says loudly that it skipped; under `CI=true` it fails.
#![cfg(feature = "postgres")]
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test bodies and helpers: a failure should fail the test at once"
)]

mod common;

use std::time::{Duration, Instant};

use common::{World, now, persist_and_apply};
use keygate::{KeyId, Keyring, Permit, Usage};
use keygate_store::{
    Commit, KeyStore, Notice, PgListener, PgOptions, PgStore, SCHEMA_VERSION, UsageFlusher,
};

/// The next notice, waiting at most `within`.
fn next(runtime: &tokio::runtime::Runtime, listener: &mut PgListener, within: Duration) -> Notice {
    runtime
        .block_on(async { tokio::time::timeout(within, listener.recv()).await })
        .expect("a notice in time")
        .expect("the listener is open")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn every_commit_is_announced_to_every_listener() {
    let Some(url) = common::postgres_database() else {
        return;
    };
    let writer = PgStore::connect(&url).unwrap();
    let reader = PgStore::connect(&url).unwrap();
    let runtime = runtime();
    let mut listener = reader.listen(Duration::from_millis(50));
    let second = Duration::from_secs(5);
    assert_eq!(
        next(&runtime, &mut listener, second),
        Notice::Resync,
        "first, a resync"
    );

    let mut world = World::new(20);
    let catalog = world.catalog.clone();
    let mut live = Keyring::default();
    let a = world.issue("a", None);
    let b = world.issue("b", Some(&a));
    persist_and_apply(&writer, &catalog, live.stage_insert(a.clone()).unwrap());
    persist_and_apply(&writer, &catalog, live.stage_insert(b.clone()).unwrap());
    assert_eq!(next(&runtime, &mut listener, second), Notice::Key(a.id()));
    assert_eq!(next(&runtime, &mut listener, second), Notice::Key(b.id()));

    // A tree revocation is one commit announcing both keys; a document comes with it.
    let staged = live
        .stage_revoke_tree(&Permit::operator_revoke(a.id()), now())
        .unwrap();
    let mut commit = Commit::of_change(&catalog, staged.change());
    commit.put_document("project", "7", &"Support").unwrap();
    writer.commit(&commit).unwrap();
    staged.apply();
    let mut got = [0; 3].map(|_| next(&runtime, &mut listener, second));
    got.sort_by_key(|notice| format!("{notice:?}"));
    let mut expected = [
        Notice::Key(a.id()),
        Notice::Key(b.id()),
        Notice::Document {
            kind: "project".to_owned(),
            id: "7".to_owned(),
        },
    ];
    expected.sort_by_key(|notice| format!("{notice:?}"));
    assert_eq!(got, expected);
    // What the notice says is in the store for the reader to load.
    assert!(
        reader
            .load_key(b.id())
            .unwrap()
            .unwrap()
            .record
            .revoked_at
            .is_some()
    );

    // A commit that fails announces nothing.
    let mut duplicate = Commit::new();
    let mut twin = b.to_record(&catalog);
    twin.id = KeyId::from_bytes([9; 16]);
    duplicate.add_key_write(keygate_store::KeyWrite::Put(Box::new(twin)));
    assert!(writer.commit(&duplicate).is_err());
    persist_and_apply(&writer, &catalog, live.stage_remove(a.id()).unwrap());
    assert_eq!(
        next(&runtime, &mut listener, second),
        Notice::Key(a.id()),
        "the removal, and nothing of the refused commit before it"
    );
}

#[test]
fn usage_flushed_by_replicas_at_once_adds_up() {
    let Some(url) = common::postgres_database() else {
        return;
    };
    let mut world = World::new(21);
    let catalog = world.catalog.clone();
    let first = PgStore::connect(&url).unwrap();
    let key = world.issue("shared", None);
    persist_and_apply(
        &first,
        &catalog,
        Keyring::default().stage_insert(key.clone()).unwrap(),
    );

    const REPLICAS: u64 = 4;
    const FLUSHES: u64 = 25;
    std::thread::scope(|scope| {
        for _ in 0..REPLICAS {
            let (url, key) = (&url, &key);
            scope.spawn(move || {
                let store = PgStore::connect(url).unwrap();
                let mut replica = Keyring::default();
                replica.insert(key.clone()).unwrap();
                let mut flusher = UsageFlusher::default();
                for _ in 0..FLUSHES {
                    replica.record_usage(key.id(), "GET /a", 200, now());
                    replica.record_usage(key.id(), "GET /b", 404, now());
                    assert_eq!(flusher.flush(&store, &replica).unwrap(), 1);
                }
            });
        }
    });
    let total: Usage = first.load_key(key.id()).unwrap().unwrap().state.usage;
    assert_eq!(total.total_requests(), 2 * REPLICAS * FLUSHES);
}

#[test]
fn replicas_starting_at_once_migrate_once() {
    let Some(url) = common::postgres_database() else {
        return;
    };
    let versions: Vec<i64> = std::thread::scope(|scope| {
        let starts: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| PgStore::connect(&url).unwrap().schema_version().unwrap()))
            .collect();
        starts
            .into_iter()
            .map(|start| start.join().unwrap())
            .collect()
    });
    assert_eq!(versions, [i64::from(SCHEMA_VERSION); 4]);
}

#[test]
fn a_listener_survives_a_lost_connection_and_asks_for_a_resync() {
    let Some(url) = common::postgres_database() else {
        return;
    };
    let name = "keygate-listener-under-test";
    let options = PgOptions::default().with_application_name(name);
    let store = PgStore::connect_with(&url, options).unwrap();
    let admin = PgStore::connect(&url).unwrap();
    let runtime = runtime();
    let mut listener = store.listen(Duration::from_millis(50));
    let second = Duration::from_secs(5);
    assert_eq!(next(&runtime, &mut listener, second), Notice::Resync);

    // Cut every connection of the store's, as a restart of the database or a network cut would.
    let killed = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    });
    assert!(killed >= 1, "the listener's connection was cut");
    assert_eq!(
        next(&runtime, &mut listener, second),
        Notice::Resync,
        "reconnected, and asks for a reload of what it may have missed"
    );

    // Notices flow again, and the store's own pool replaced its dead connection.
    let mut world = World::new(22);
    let key = world.issue("after", None);
    let staged_ring = &mut Keyring::default();
    persist_and_apply(
        &admin,
        &world.catalog,
        staged_ring.stage_insert(key.clone()).unwrap(),
    );
    assert_eq!(next(&runtime, &mut listener, second), Notice::Key(key.id()));
    assert!(store.load_key(key.id()).unwrap().is_some());
}

#[test]
fn an_unreachable_server_fails_within_the_deadline() {
    if common::postgres_database().is_none() {
        return;
    }
    // A loopback port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let options = PgOptions::default().with_timeout(Duration::from_secs(1));
    let error = PgStore::connect_with(&format!("postgres://keygate@127.0.0.1:{port}/x"), options)
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{error}");
}
