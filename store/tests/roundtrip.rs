//! Every kind of key change, persisted through staged changes and reloaded into a fresh keyring:
//! the same keys, the same answers to every token ever minted; documents; the store's own
//! refusals (secrets shared between keys, names the catalog lost, corrupt rows).

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test bodies (run on every backend, so not #[test] functions themselves) and \
              helpers: a failure should fail the test at once"
)]

mod common;

use std::time::Duration;

use common::{World, assert_same_answers, assert_same_keys, now, persist_and_apply, reload};
use keygate::{
    ApiKey, Catalog, CatalogError, Deny, KeyUpdate, Keyring, ManageOp, Permit, TokenFormat, manage,
};
use keygate_store::{Commit, KeyStore, KeyWrite, SqliteStore, StoreError, load_keyring};

/// For each test body `name<S: KeyStore>(store: &S)`, a module `name` of two tests: `sqlite`, on
/// an in-memory SQLite store, and `postgres` (feature `postgres`), on a fresh PostgreSQL database
/// (see [`postgres`]).
macro_rules! on_every_backend {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name(&keygate_store::SqliteStore::open_in_memory().unwrap());
                }

                #[cfg(feature = "postgres")]
                #[test]
                fn postgres() {
                    if let Some(store) = super::common::postgres() {
                        super::$name(&store);
                    }
                }
            }
        )+
    };
}

// Each test below runs on every backend: SQLite in memory, and PostgreSQL when
// KEYGATE_TEST_POSTGRES names a server (a fresh database per test).
on_every_backend!(
    every_kind_of_change_survives_a_reload,
    a_reload_restores_usage_and_rate_limits,
    documents_round_trip_and_commit_with_key_changes,
    a_record_naming_a_permission_the_catalog_lost_is_a_clear_error,
    no_two_keys_share_a_secret_retired_ones_included,
    a_commit_can_be_retried,
    load_key_reads_one_key_and_its_state,
    creating_a_document_that_exists_fails_and_writes_nothing,
);

fn every_kind_of_change_survives_a_reload<S: KeyStore>(store: &S) {
    let mut world = World::new(1);
    let catalog = world.catalog.clone();
    let mut live = reload(store, &catalog);
    assert!(live.is_empty());

    // Insert: a chain a → b → c, a rate-limited project key d, and e, f, g of the owner's.
    let a = world.issue("a", None);
    let b = world.issue("b", Some(&a));
    let c = world.issue("c", Some(&b));
    let d = world.issue_limited("d");
    let e = world.issue("e", None);
    let f = world.issue("f", None);
    let g = world.issue("g", None);
    for key in [&a, &b, &c, &d, &e, &f, &g] {
        persist_and_apply(store, &catalog, live.stage_insert(key.clone()).unwrap());
    }
    let [a_token, b_token, c_token, d_token, e_token, _, g_token] =
        [0, 1, 2, 3, 4, 5, 6].map(|i| world.tokens[i].expose_secret().to_owned());

    // Rotate a at once, and e with a minute's grace.
    let stage = live.stage_rotate(
        &Permit::operator_rotate(a.id()),
        now(),
        None,
        &mut world.rng,
    );
    let a_new = persist_and_apply(store, &catalog, stage.unwrap()).unwrap();
    let grace = Some(Duration::from_secs(60));
    let stage = live.stage_rotate(
        &Permit::operator_rotate(e.id()),
        now(),
        grace,
        &mut world.rng,
    );
    let e_new = persist_and_apply(store, &catalog, stage.unwrap()).unwrap();
    world.tokens.extend([a_new, e_new]);

    // Revoke d; revoke b's tree (b and c); narrow f; remove g.
    let revoke = |id| Permit::operator_revoke(id);
    persist_and_apply(
        store,
        &catalog,
        live.stage_revoke(&revoke(d.id()), now()).unwrap(),
    );
    let tree = live.stage_revoke_tree(&revoke(b.id()), now()).unwrap();
    assert_eq!(
        tree.change().key_ids().collect::<Vec<_>>(),
        [b.id(), c.id()]
    );
    persist_and_apply(store, &catalog, tree);
    let update = KeyUpdate::new()
        .name("f, narrowed")
        .tags(["narrow"])
        .permissions(["read"]);
    let f_now = live.get(f.id()).unwrap().clone();
    let permit = manage(
        &catalog,
        &world.owner(),
        &f_now,
        ManageOp::Update(update),
        now(),
    )
    .unwrap();
    persist_and_apply(store, &catalog, live.stage_update(&permit).unwrap());
    persist_and_apply(store, &catalog, live.stage_remove(g.id()).unwrap());

    let loaded = reload(store, &catalog);
    assert_same_keys(&live, &loaded);
    let later = |s| now() + Duration::from_secs(s);
    let instants = [now(), later(59), later(60), later(86_400 * 2)];
    assert_same_answers(&live, &loaded, &world.tokens, &instants);

    // The answers the comparison covers, spelled out on the reloaded keyring.
    let answer = |token: &str, at| loaded.authenticate(token, at).map(ApiKey::id);
    assert_eq!(loaded.len(), 6);
    assert_eq!(
        answer(&a_token, now()),
        Err(Deny::UnknownKey),
        "rotated away"
    );
    assert_eq!(answer(world.tokens[7].expose_secret(), now()), Ok(a.id()));
    assert_eq!(answer(&b_token, now()), Err(Deny::Revoked));
    assert_eq!(
        answer(&c_token, now()),
        Err(Deny::Revoked),
        "revoked with its tree"
    );
    assert_eq!(answer(&d_token, now()), Err(Deny::Revoked));
    assert_eq!(answer(&e_token, later(59)), Ok(e.id()), "within its grace");
    assert_eq!(
        answer(&e_token, later(60)),
        Err(Deny::UnknownKey),
        "after its grace"
    );
    assert_eq!(
        answer(world.tokens[8].expose_secret(), later(60)),
        Ok(e.id())
    );
    assert_eq!(answer(&g_token, now()), Err(Deny::UnknownKey), "removed");
    let f_loaded = loaded.get(f.id()).unwrap();
    assert_eq!(f_loaded.name(), "f, narrowed");
    assert_eq!(f_loaded.tags(), ["narrow"]);
    assert_eq!(*f_loaded.permissions(), catalog.expand(["read"]).unwrap());
    assert_eq!(loaded.get(c.id()).unwrap().issued_by(), Some(b.id()));
}

fn a_reload_restores_usage_and_rate_limits<S: KeyStore>(store: &S) {
    let mut world = World::new(2);
    let catalog = world.catalog.clone();
    let mut live = reload(store, &catalog);
    let limited = world.issue_limited("limited");
    let plain = world.issue("plain", None);
    for key in [&limited, &plain] {
        persist_and_apply(store, &catalog, live.stage_insert(key.clone()).unwrap());
    }
    // The limit is 2 per minute: spend it.
    assert!(live.check_rate_limit(limited.id(), now()).is_ok());
    assert!(live.check_rate_limit(limited.id(), now()).is_ok());
    assert!(live.check_rate_limit(limited.id(), now()).is_err());
    live.record_usage(plain.id(), "GET /recordings", 200, now());
    live.record_usage(plain.id(), "GET /recordings", 404, now());
    live.record_usage(limited.id(), "POST /recordings", 503, now());

    let mut flusher = keygate_store::UsageFlusher::default();
    assert_eq!(flusher.flush(store, &live).unwrap(), 2);
    let states = keygate_store::rate_limit_states(&live);
    assert_eq!(
        states.len(),
        1,
        "only the rate-limited key that saw requests"
    );
    store.save_rate_limits(&states).unwrap();

    let loaded = reload(store, &catalog);
    for id in [limited.id(), plain.id()] {
        assert_eq!(loaded.state(id), live.state(id));
    }
    let usage = loaded.state(plain.id()).unwrap().usage;
    assert_eq!(usage.total_requests(), 2);
    assert_eq!(usage.errors_in_class("4xx"), 1);
    // A restart does not hand the key its budget back.
    assert!(loaded.check_rate_limit(limited.id(), now()).is_err());
    assert!(
        loaded
            .check_rate_limit(limited.id(), now() + Duration::from_secs(30))
            .is_ok()
    );
}

fn documents_round_trip_and_commit_with_key_changes<S: KeyStore>(store: &S) {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Project {
        name: String,
        retention_days: u32,
    }
    let mut world = World::new(3);
    let catalog = world.catalog.clone();
    let project = |name: &str| Project {
        name: name.to_owned(),
        retention_days: 30,
    };
    store.put_document("project", "2", &project("two")).unwrap();
    store
        .put_document("project", "10", &project("ten"))
        .unwrap();
    store
        .put_document("recording", "2", &serde_json::json!({"title": "call"}))
        .unwrap();
    store
        .put_document("project", "2", &project("two, renamed"))
        .unwrap();

    let projects = store.load_documents("project").unwrap();
    let ids: Vec<&str> = projects.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["10", "2"], "ordered by id as text, one per id");
    assert_eq!(
        projects[1].parse::<Project>().unwrap(),
        project("two, renamed")
    );
    assert!(matches!(
        projects[1].parse::<Vec<u8>>(),
        Err(StoreError::Document { .. })
    ));
    assert_eq!(store.load_documents("recording").unwrap().len(), 1);
    assert!(store.load_documents("nothing").unwrap().is_empty());
    store.delete_document("project", "10").unwrap();
    store.delete_document("project", "absent").unwrap();
    assert_eq!(store.load_documents("project").unwrap().len(), 1);

    // A key change and documents in one commit: both land.
    let mut live = Keyring::default();
    let key = world.issue("with a project", None);
    let staged = live.stage_insert(key.clone()).unwrap();
    let mut commit = Commit::of_change(&catalog, staged.change());
    commit
        .put_document("project", "3", &project("three"))
        .unwrap();
    commit.delete_document("recording", "2");
    store.commit(&commit).unwrap();
    staged.apply();
    assert_eq!(store.load_documents("project").unwrap().len(), 2);
    assert!(store.load_documents("recording").unwrap().is_empty());
    assert_same_keys(&live, &reload(store, &catalog));

    // ... and when the key write fails, the documents of the same commit do not land either.
    let mut clash = world.issue("clash", None);
    clash = ApiKey::new(
        clash.id(),
        clash.name(),
        clash.account(),
        clash.scope(),
        *clash.permissions(),
        key.token_hash(),
        clash.created_at(),
    );
    let mut commit = Commit::new();
    commit.add_key_write(KeyWrite::Put(Box::new(clash.to_record(&catalog))));
    commit
        .put_document("project", "4", &project("four"))
        .unwrap();
    let error = store.commit(&commit).unwrap_err();
    assert!(
        matches!(error, StoreError::DuplicateToken(id) if id == clash.id()),
        "{error}"
    );
    assert_eq!(store.load_documents("project").unwrap().len(), 2);
    assert_same_keys(&live, &reload(store, &catalog));
}

fn a_record_naming_a_permission_the_catalog_lost_is_a_clear_error<S: KeyStore>(store: &S) {
    let mut world = World::new(4);
    let catalog = world.catalog.clone();
    let mut live = Keyring::default();
    let owner = world.owner();
    let issued = keygate::issue(
        &catalog,
        &owner,
        keygate::KeySpec::named("agents").permissions(["agents:write"]),
        now(),
        &mut world.rng,
    )
    .unwrap();
    let id = issued.key.id();
    persist_and_apply(store, &catalog, live.stage_insert(issued.key).unwrap());

    let smaller =
        Catalog::new(["read", "write", "delete", "api-keys:write", "agents:read"]).unwrap();
    let error = load_keyring(store, &smaller, TokenFormat::default()).unwrap_err();
    match &error {
        StoreError::UnknownPermission { key, error } => {
            assert_eq!(*key, id);
            assert_eq!(
                *error,
                CatalogError::UnknownPermission("agents:write".to_owned())
            );
        }
        other => panic!("expected UnknownPermission, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(&id.to_string()) && message.contains("agents:write"),
        "{message}"
    );
    // The catalog it was written with still loads it.
    assert_same_keys(&live, &reload(store, &catalog));
}

fn no_two_keys_share_a_secret_retired_ones_included<S: KeyStore>(store: &S) {
    let mut world = World::new(5);
    let catalog = world.catalog.clone();
    let mut live = Keyring::default();
    let first = world.issue("first", None);
    let old_hash = first.token_hash();
    persist_and_apply(store, &catalog, live.stage_insert(first.clone()).unwrap());
    let grace = Some(Duration::from_secs(60));
    let stage = live.stage_rotate(
        &Permit::operator_rotate(first.id()),
        now(),
        grace,
        &mut world.rng,
    );
    persist_and_apply(store, &catalog, stage.unwrap());

    // Another key holding the retired secret: the keyring would refuse to load both, so the
    // store refuses to hold both.
    let other = world.issue("other", None);
    let twin = |hash| {
        ApiKey::new(
            other.id(),
            "twin",
            other.account(),
            other.scope(),
            *other.permissions(),
            hash,
            other.created_at(),
        )
    };
    let put = |key: &ApiKey| {
        let mut commit = Commit::new();
        commit.add_key_write(KeyWrite::Put(Box::new(key.to_record(&catalog))));
        store.commit(&commit)
    };
    assert!(
        matches!(put(&twin(old_hash)), Err(StoreError::DuplicateToken(id)) if id == other.id())
    );
    let current = live.get(first.id()).unwrap().token_hash();
    assert!(matches!(
        put(&twin(current)),
        Err(StoreError::DuplicateToken(_))
    ));
    assert_eq!(
        reload(store, &catalog).len(),
        1,
        "nothing of the refused writes"
    );

    // Rotating again without grace drops the retired secret from the record, and from the store.
    let stage = live.stage_rotate(
        &Permit::operator_rotate(first.id()),
        now(),
        None,
        &mut world.rng,
    );
    persist_and_apply(store, &catalog, stage.unwrap());
    put(&twin(old_hash)).unwrap();
    assert_eq!(reload(store, &catalog).len(), 2);
}

#[test]
fn a_corrupt_row_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let mut world = World::new(6);
    let catalog = world.catalog.clone();
    let store = SqliteStore::open(&path).unwrap();
    let key = world.issue("k", None);
    store.import(&catalog, [&key]).unwrap();

    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute("UPDATE keys SET record = '{\"id\": 1}'", [])
        .unwrap();
    let error = load_keyring(&store, &catalog, TokenFormat::default()).unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt { what } if what.contains(&key.id().to_string())),
        "{error}"
    );

    // A record moved under another id is caught too.
    let mut record = key.to_record(&catalog);
    record.id = keygate::KeyId::from_bytes([9; 16]);
    let json = serde_json::to_string(&record).unwrap();
    raw.execute("UPDATE keys SET record = ?1", [json]).unwrap();
    let error = load_keyring(&store, &catalog, TokenFormat::default()).unwrap_err();
    assert!(error.to_string().contains("holds the id"), "{error}");
}

#[test]
fn a_store_is_shared_across_threads_and_usable_as_a_trait_object() {
    fn shareable<T: Send + Sync>() {}
    shareable::<SqliteStore>();

    let mut world = World::new(7);
    let catalog = world.catalog.clone();
    let store = std::sync::Arc::new(SqliteStore::open_in_memory().unwrap());
    let key = world.issue("from another thread", None);
    let writer = std::sync::Arc::clone(&store);
    let records = {
        let mut live = Keyring::default();
        let staged = live.stage_insert(key.clone()).unwrap();
        let commit = Commit::of_change(&catalog, staged.change());
        staged.apply();
        commit
    };
    // As a server's spawn_blocking does: the write on another thread.
    std::thread::spawn(move || writer.commit(&records).unwrap())
        .join()
        .unwrap();

    let dynamic: &dyn KeyStore = store.as_ref();
    let loaded = load_keyring(dynamic, &catalog, TokenFormat::default()).unwrap();
    assert_eq!(loaded.get(key.id()), Some(&key));
    assert_eq!(dynamic.all_keys().unwrap().len(), 1);
}

fn a_commit_can_be_retried<S: KeyStore>(store: &S) {
    let mut world = World::new(8);
    let catalog = world.catalog.clone();
    let mut live = Keyring::default();
    let key = world.issue("retried", None);
    persist_and_apply(store, &catalog, live.stage_insert(key.clone()).unwrap());
    let grace = Some(Duration::from_secs(60));
    let staged = live
        .stage_rotate(
            &Permit::operator_rotate(key.id()),
            now(),
            grace,
            &mut world.rng,
        )
        .unwrap();
    let mut commit = Commit::of_change(&catalog, staged.change());
    commit
        .put_document("project", "1", &serde_json::json!({"n": 1}))
        .unwrap();
    // As after a failed flush whose outcome is unknown: the same commit, twice.
    store.commit(&commit).unwrap();
    store.commit(&commit).unwrap();
    staged.apply();
    assert_same_keys(&live, &reload(store, &catalog));
    assert_eq!(store.load_documents("project").unwrap().len(), 1);
}

fn load_key_reads_one_key_and_its_state<S: KeyStore>(store: &S) {
    let mut world = World::new(9);
    let catalog = world.catalog.clone();
    let mut live = Keyring::default().with_endpoints(common::ENDPOINTS);
    let key = world.issue_limited("one");
    let other = world.issue("other", None);
    for key in [&key, &other] {
        persist_and_apply(store, &catalog, live.stage_insert(key.clone()).unwrap());
    }
    assert!(store.load_key(key.id()).unwrap().unwrap().state == keygate::KeyState::default());
    live.record_usage(key.id(), "GET /a", 200, now());
    live.check_rate_limit(key.id(), now()).unwrap();
    keygate_store::UsageFlusher::default()
        .flush(store, &live)
        .unwrap();
    store
        .save_rate_limits(&keygate_store::rate_limit_states(&live))
        .unwrap();

    let stored = store.load_key(key.id()).unwrap().unwrap();
    assert_eq!(stored.record, key.to_record(&catalog));
    assert_eq!(stored.state, live.state(key.id()).unwrap());
    assert_eq!(stored.state.usage.total_requests(), 1);
    assert!(stored.state.rate_limit.tat().is_some());
    let plain = store.load_key(other.id()).unwrap().unwrap();
    assert_eq!(plain.state, keygate::KeyState::default());
    persist_and_apply(store, &catalog, live.stage_remove(key.id()).unwrap());
    assert!(store.load_key(key.id()).unwrap().is_none());
}

fn creating_a_document_that_exists_fails_and_writes_nothing<S: KeyStore>(store: &S) {
    let mut world = World::new(10);
    let catalog = world.catalog.clone();
    let mut live = Keyring::default();
    let mut first = Commit::new();
    first.create_document("project", "1", &"first").unwrap();
    store.commit(&first).unwrap();

    // A second replica picked the same id: its whole commit (a key with it) is refused.
    let key = world.issue("with the document", None);
    let staged = live.stage_insert(key.clone()).unwrap();
    let mut second = Commit::of_change(&catalog, staged.change());
    second.create_document("project", "1", &"second").unwrap();
    second.put_document("project", "2", &"also second").unwrap();
    assert!(matches!(
        store.commit(&second),
        Err(StoreError::DocumentExists { kind, id }) if kind == "project" && id == "1"
    ));
    drop(staged);
    let projects = store.load_documents("project").unwrap();
    assert_eq!(projects.len(), 1, "nothing of the refused commit");
    assert_eq!(projects[0].parse::<String>().unwrap(), "first");
    assert!(store.load_key(key.id()).unwrap().is_none());
}
