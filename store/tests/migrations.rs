//! Schema migrations: from an empty file and from every older version (keeping the data), to
//! the same schema a new file gets; a newer database is refused; a failed migration changes
//! nothing.

#![expect(
    clippy::unwrap_used,
    reason = "test bodies and helpers: a failure should fail the test at once"
)]

mod common;

use std::path::Path;

use common::{World, catalog, reload};
use keygate::ApiKey;
use keygate_store::{KeyStore, MIGRATIONS, SCHEMA_VERSION, SqliteStore, StoreError};
use rusqlite::Connection;

/// A database at `version`, built by hand from the first `version` migrations, as an older
/// build of this crate left it.
fn database_at(path: &Path, version: u32) -> Connection {
    let conn = Connection::open(path).unwrap();
    for step in MIGRATIONS.iter().take(usize::try_from(version).unwrap()) {
        conn.execute_batch(step.sql).unwrap();
        conn.pragma_update(None, "user_version", step.version)
            .unwrap();
    }
    conn
}

/// Writes a key the way version 1 and every later version store it.
fn insert_key_v1(conn: &Connection, key: &ApiKey) {
    let record = serde_json::to_string(&key.to_record(&catalog())).unwrap();
    conn.execute(
        "INSERT INTO keys (id, record) VALUES (?1, ?2)",
        rusqlite::params![key.id().as_bytes(), record],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO secrets (hash, key_id) VALUES (?1, ?2)",
        rusqlite::params![key.token_hash().as_bytes(), key.id().as_bytes()],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO usage (key_id, usage) VALUES (?1, '{\"total_requests\": 7}')",
        [key.id().as_bytes()],
    )
    .unwrap();
}

/// Every table, index and trigger, as SQLite stores their definitions.
fn schema_of(path: &Path) -> Vec<(String, Option<String>)> {
    let conn = Connection::open(path).unwrap();
    let mut statement = conn
        .prepare("SELECT name, sql FROM sqlite_schema ORDER BY name")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn migrations_are_numbered_one_by_one() {
    assert!(!MIGRATIONS.is_empty());
    for (i, step) in MIGRATIONS.iter().enumerate() {
        assert_eq!(
            usize::try_from(step.version).unwrap(),
            i + 1,
            "{}",
            step.description
        );
    }
    assert_eq!(SCHEMA_VERSION, MIGRATIONS.last().unwrap().version);
}

#[test]
fn an_empty_file_gets_every_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), i64::from(SCHEMA_VERSION));
    store.close().unwrap();
    let names: Vec<String> = schema_of(&path).into_iter().map(|(name, _)| name).collect();
    for table in ["documents", "keys", "rate_limits", "secrets", "usage"] {
        assert!(
            names.iter().any(|name| name == table),
            "{table} in {names:?}"
        );
    }
    // Reopening finds nothing to do.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), i64::from(SCHEMA_VERSION));
}

#[test]
fn every_older_version_migrates_keeps_its_data_and_matches_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.db");
    SqliteStore::open(&fresh).unwrap().close().unwrap();
    let expected = schema_of(&fresh);

    for version in 0..SCHEMA_VERSION {
        let path = dir.path().join(format!("v{version}.db"));
        let mut world = World::new(30 + u64::from(version));
        let old_key = world.issue("from an older version", None);
        let conn = database_at(&path, version);
        if version >= 1 {
            insert_key_v1(&conn, &old_key);
        }
        drop(conn);

        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.schema_version().unwrap(),
            i64::from(SCHEMA_VERSION),
            "from {version}"
        );
        let loaded = reload(&store, &world.catalog);
        if version >= 1 {
            assert_eq!(loaded.get(old_key.id()), Some(&old_key), "from {version}");
            assert_eq!(
                loaded.state(old_key.id()).unwrap().usage.total_requests(),
                7
            );
        } else {
            assert!(loaded.is_empty());
        }
        // Everything works on the migrated file: keys and documents.
        let new_key = world.issue("after the migration", None);
        store.import(&world.catalog, [&new_key]).unwrap();
        store
            .put_document("project", "1", &serde_json::json!({"n": 1}))
            .unwrap();
        assert_eq!(store.load_documents("project").unwrap().len(), 1);
        assert!(reload(&store, &world.catalog).get(new_key.id()).is_some());
        store.close().unwrap();
        assert_eq!(
            schema_of(&path),
            expected,
            "the schema migrated from version {version}"
        );
    }
}

#[test]
fn a_database_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.db");
    let conn = database_at(&path, SCHEMA_VERSION);
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    match SqliteStore::open(&path) {
        Err(StoreError::SchemaTooNew { found, known }) => {
            assert_eq!(found, i64::from(SCHEMA_VERSION + 1));
            assert_eq!(known, SCHEMA_VERSION);
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn a_failed_migration_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clash.db");
    // An empty database with a table in the way of the last step: every step before it
    // succeeds, then the last one fails.
    let conn = database_at(&path, 0);
    conn.execute_batch("CREATE TABLE documents (unrelated INTEGER)")
        .unwrap();
    drop(conn);
    assert!(SqliteStore::open(&path).is_err());
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 0, "no step of the failed migration was kept");
    let names: Vec<String> = schema_of(&path).into_iter().map(|(name, _)| name).collect();
    assert_eq!(
        names,
        ["documents"],
        "the earlier steps' tables were rolled back"
    );
}
