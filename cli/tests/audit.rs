//! `keygate audit` on a real SQLite store: a key wider than its issuer, or than its creator's
//! current permissions, is listed with its reasons and the exit code is 1; a clean store is 0.
#![expect(
    clippy::unwrap_used,
    reason = "a broken test fixture should stop the test loudly"
)]

use std::path::PathBuf;
use std::process::Command;

use keygate::{AccountId, ApiKey, Catalog, Issuer, KeySpec, Scope, Timestamp, issue};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// A fresh database path in the temp dir, removed (with its WAL files) on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("keygate-audit-{}-{name}.db", std::process::id()));
        let db = Self(path);
        db.clean();
        db
    }
    fn clean(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
    fn url(&self) -> String {
        format!("sqlite:{}", self.0.display())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.clean();
    }
}

fn keygate(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

/// A parent issued by "alice" (read, write) and its child (read): a clean chain.
fn chain(catalog: &Catalog) -> (ApiKey, ApiKey) {
    let now = Timestamp::from_unix_seconds(1_800_000_000);
    let mut rng = StdRng::seed_from_u64(3);
    let alice =
        Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all()).with_user_id("alice");
    let parent = issue(
        catalog,
        &alice,
        KeySpec::named("parent").permissions(["read", "write"]),
        now,
        &mut rng,
    )
    .unwrap()
    .key;
    let as_parent = Issuer::key(catalog, &parent, now).unwrap();
    let child = issue(
        catalog,
        &as_parent,
        KeySpec::named("child").permissions(["read"]),
        now,
        &mut rng,
    )
    .unwrap()
    .key;
    (parent, child)
}

#[test]
fn a_clean_store_passes() {
    let catalog = Catalog::read_write_delete();
    let (parent, child) = chain(&catalog);
    let db = TempDb::new("clean");
    let store = keygate_store::SqliteStore::open(&db.0).unwrap();
    store.import(&catalog, [&parent, &child]).unwrap();
    store.close().unwrap();
    let (code, out) = keygate(&["audit", "--database", &db.url()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("audited 2 keys: 0 exceed"), "{out}");
}

#[test]
fn a_key_beyond_its_issuer_or_its_creator_is_listed() {
    let catalog = Catalog::read_write_delete();
    let (parent, child) = chain(&catalog);
    // A record tampered with (or written by a buggy server): the child holds delete, which its
    // issuer never had.
    let mut record = child.to_record(&catalog);
    record.permissions.push("delete".to_owned());
    let wide = ApiKey::from_record(record, &catalog).unwrap();
    let db = TempDb::new("wide");
    let store = keygate_store::SqliteStore::open(&db.0).unwrap();
    store.import(&catalog, [&parent, &wide]).unwrap();
    store.close().unwrap();

    let (code, out) = keygate(&["audit", "--database", &db.url()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("key {} (child)", wide.id())), "{out}");
    assert!(out.contains("holds delete that ancestor"), "{out}");
    assert!(
        !out.contains("(parent):"),
        "the parent is within its creator: {out}"
    );

    // Alice demoted to read: the parent's write is beyond her now, and so is the child's.
    let (code, out) = keygate(&["audit", "--database", &db.url(), "--cap", "alice=read"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("(parent):"), "{out}");
    assert!(
        out.contains("holds write beyond its creator's current permissions"),
        "{out}"
    );

    let (code, out) = keygate(&["audit", "--database", "sqlite:/nonexistent/dir/x.db"]);
    assert_eq!(code, 1);
    assert!(out.contains("no database at"), "{out}");
}
