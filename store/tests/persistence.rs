//! A file database across a close and a reopen, and a store made to fail: stage → persist →
//! apply then leaves both the live keyring and the store as they were.

#![expect(
    clippy::unwrap_used,
    reason = "test bodies and helpers: a failure should fail the test at once"
)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{World, assert_same_answers, assert_same_keys, now, persist_and_apply, reload};
use keygate::{ApiKey, Deny, KeyId, Keyring, Permit};
use keygate_store::{KeyStore, SCHEMA_VERSION, SqliteStore, StoreError};

/// A second connection to the database, as an operator's `sqlite3` shell would be.
fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

/// Makes every write of key `id`'s row fail, as a full disk or a broken replica would.
fn break_writes_of(path: &Path, id: KeyId) {
    let id = id.to_string();
    raw(path)
        .execute_batch(&format!(
            "CREATE TRIGGER fail_insert BEFORE INSERT ON keys WHEN hex(NEW.id) = upper('{id}')
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;
             CREATE TRIGGER fail_update BEFORE UPDATE ON keys WHEN hex(NEW.id) = upper('{id}')
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
        ))
        .unwrap();
}

#[test]
fn a_file_database_survives_a_clean_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let mut world = World::new(10);
    let catalog = world.catalog.clone();

    let store = SqliteStore::open(&path).unwrap();
    let mut live = reload(&store, &catalog);
    let keys: Vec<ApiKey> = (0..5)
        .map(|i| world.issue(&format!("k{i}"), None))
        .collect();
    for key in &keys {
        persist_and_apply(&store, &catalog, live.stage_insert(key.clone()).unwrap());
    }
    let grace = Some(Duration::from_secs(60));
    let stage = live.stage_rotate(
        &Permit::operator_rotate(keys[0].id()),
        now(),
        grace,
        &mut world.rng,
    );
    let token = persist_and_apply(&store, &catalog, stage.unwrap()).unwrap();
    world.tokens.push(token);
    persist_and_apply(
        &store,
        &catalog,
        live.stage_revoke(&Permit::operator_revoke(keys[1].id()), now())
            .unwrap(),
    );
    persist_and_apply(&store, &catalog, live.stage_remove(keys[2].id()).unwrap());
    store
        .put_document("project", "1", &serde_json::json!({"name": "p"}))
        .unwrap();

    // The file is in WAL mode while open; a clean close checkpoints and removes the WAL.
    let mode: String = raw(&path)
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    store.close().unwrap();
    assert!(!dir.path().join("keys.db-wal").exists());

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), i64::from(SCHEMA_VERSION));
    let loaded = reload(&store, &catalog);
    assert_eq!(loaded.len(), 4);
    assert_same_keys(&live, &loaded);
    let instants = [now(), now() + Duration::from_secs(60)];
    assert_same_answers(&live, &loaded, &world.tokens, &instants);
    assert_eq!(store.load_documents("project").unwrap().len(), 1);
    drop(store);
    drop(dir);
}

#[test]
fn a_failed_insert_publishes_nothing_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let mut world = World::new(11);
    let catalog = world.catalog.clone();
    let store = SqliteStore::open(&path).unwrap();
    let mut live = Keyring::default();
    let kept = world.issue("kept", None);
    persist_and_apply(&store, &catalog, live.stage_insert(kept).unwrap());

    let refused = world.issue("refused", None);
    break_writes_of(&path, refused.id());
    let staged = live.stage_insert(refused.clone()).unwrap();
    let error = store.persist(&catalog, staged.change()).unwrap_err();
    assert!(matches!(error, StoreError::Sqlite(_)), "{error}");
    assert!(error.to_string().contains("refused by the test"), "{error}");
    drop(staged); // the caller's side of the contract: a failed save is not applied

    assert!(live.get(refused.id()).is_none());
    let token = world.tokens[1].expose_secret();
    assert_eq!(
        live.authenticate(token, now()).err(),
        Some(Deny::UnknownKey)
    );
    let loaded = reload(&store, &catalog);
    assert_same_keys(&live, &loaded);
    assert_eq!(loaded.len(), 1);
}

#[test]
fn a_failed_revoke_tree_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let mut world = World::new(12);
    let catalog = world.catalog.clone();
    let store = SqliteStore::open(&path).unwrap();
    let mut live = Keyring::default();
    let root = world.issue("root", None);
    let child = world.issue("child", Some(&root));
    let grandchild = world.issue("grandchild", Some(&child));
    for key in [&root, &child, &grandchild] {
        persist_and_apply(&store, &catalog, live.stage_insert(key.clone()).unwrap());
    }

    // The third of the three records fails: the first two were written inside the same
    // transaction, and are rolled back with it.
    break_writes_of(&path, grandchild.id());
    let staged = live
        .stage_revoke_tree(&Permit::operator_revoke(root.id()), now())
        .unwrap();
    assert_eq!(staged.change().key_ids().count(), 3);
    assert!(store.persist(&catalog, staged.change()).is_err());
    drop(staged);

    let loaded = reload(&store, &catalog);
    assert_same_keys(&live, &loaded);
    assert!(
        loaded.iter().all(|key| !key.is_revoked()),
        "no revocation of the tree was kept"
    );
    assert_same_answers(&live, &loaded, &world.tokens, &[now()]);
    assert!(
        world
            .tokens
            .iter()
            .all(|t| live.authenticate(t.expose_secret(), now()).is_ok())
    );
}

#[test]
fn a_failed_rotation_keeps_the_old_token_and_never_shows_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let mut world = World::new(13);
    let catalog = world.catalog.clone();
    let store = SqliteStore::open(&path).unwrap();
    let mut live = Keyring::default();
    let key = world.issue("rotated", None);
    persist_and_apply(&store, &catalog, live.stage_insert(key.clone()).unwrap());

    break_writes_of(&path, key.id());
    let staged = live
        .stage_rotate(
            &Permit::operator_rotate(key.id()),
            now(),
            None,
            &mut world.rng,
        )
        .unwrap();
    assert!(store.persist(&catalog, staged.change()).is_err());
    drop(staged); // the new token is dropped unseen

    let old = world.tokens[0].expose_secret();
    assert_eq!(live.authenticate(old, now()).map(ApiKey::id), Ok(key.id()));
    let loaded = reload(&store, &catalog);
    assert_eq!(
        loaded.authenticate(old, now()).map(ApiKey::id),
        Ok(key.id())
    );
    assert_eq!(loaded.get(key.id()), Some(&key));
}

#[test]
fn a_shared_keyring_publishes_only_what_was_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let mut world = World::new(15);
    let catalog = world.catalog.clone();
    let store = SqliteStore::open(&path).unwrap();
    let shared = keygate::SharedKeyring::new(reload(&store, &catalog));
    let (saved, refused) = (world.issue("saved", None), world.issue("refused", None));
    break_writes_of(&path, refused.id());

    // The server's write path: the one writer, stage, persist, apply (or drop).
    let mut writer = shared.writer();
    let staged = writer.stage_insert(saved.clone()).unwrap();
    store.persist(&catalog, staged.change()).unwrap();
    staged.apply();
    let staged = writer.stage_insert(refused.clone()).unwrap();
    assert!(store.persist(&catalog, staged.change()).is_err());
    drop(staged);
    drop(writer);

    let snapshot = shared.snapshot();
    assert!(snapshot.get(saved.id()).is_some());
    assert!(snapshot.get(refused.id()).is_none());
    assert!(
        shared
            .authenticate(world.tokens[0].expose_secret(), now())
            .is_ok()
    );
    assert_eq!(
        shared
            .authenticate(world.tokens[1].expose_secret(), now())
            .err(),
        Some(Deny::UnknownKey)
    );
    assert_same_keys(&snapshot, &reload(&store, &catalog));
}
