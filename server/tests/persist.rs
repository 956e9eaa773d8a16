//! The server's persistence, end to end through the real `keygate-server` binary on a temporary
//! SQLite database and a loopback port: what a clean restart keeps, what a SIGKILL at a random
//! moment keeps (every change a client saw acknowledged, and no secret it saw revoked or
//! rotated away), and what a failing store does (503, nothing changed).
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a broken test fixture should stop the test loudly"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A running `keygate-server` process.
struct Server {
    child: Child,
    base: String,
    /// The bootstrap token, when this start printed one (a first start only).
    bootstrap: Option<String>,
    agent: ureq::Agent,
}

fn agent() -> ureq::Agent {
    // Long enough for a commit behind a blocked usage flush (SQLite's busy timeout, 5 s, twice)
    // on a busy machine, in the failing-store test.
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(25)))
        .build()
        .into()
}

impl Server {
    /// Starts the binary on `db` and a free loopback port, and reads its start-up lines.
    fn start(db: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keygate-server"))
            .args([
                "--addr",
                "127.0.0.1:0",
                "--shutdown-grace",
                "2",
                "--database",
            ])
            .arg(format!("sqlite:{}", db.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let base = line.trim().rsplit(' ').next().unwrap().to_owned();
        assert!(base.starts_with("http://127.0.0.1:"), "{line}");
        line.clear();
        out.read_line(&mut line).unwrap();
        let bootstrap = if line.starts_with("bootstrap") {
            let mut key = String::new();
            out.read_line(&mut key).unwrap();
            Some(key.trim().to_owned())
        } else {
            None
        };
        Server {
            child,
            base,
            bootstrap,
            agent: agent(),
        }
    }

    /// SIGTERM (a graceful shutdown: the drain and the last usage flush), and wait.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "{exit:?}");
    }

    /// SIGKILL: no drain, no flush.
    fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn call(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
        call(&self.agent, &self.base, method, path, key, body).unwrap()
    }
}

/// One request; `Err` when no answer came (the server is gone).
fn call(
    agent: &ureq::Agent,
    base: &str,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> Result<(u16, Value), ureq::Error> {
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("Authorization", format!("Bearer {key}"));
    let bytes = match &body {
        Some(body) => {
            request = request.header("Content-Type", "application/json");
            serde_json::to_vec(body).unwrap()
        }
        None => Vec::new(),
    };
    let mut response = agent.run(request.body(bytes).unwrap())?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string()?;
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Ok((status, value))
}

fn create_key(server: &Server, key: &str, name: &str) -> (String, String) {
    let (status, body) = server.call(
        "POST",
        "/api_keys",
        key,
        Some(json!({"name": name, "permissions": ["read"]})),
    );
    assert_eq!(status, 201, "{body}");
    (
        body["data"]["id"].as_str().unwrap().to_owned(),
        body["data"]["key"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn a_clean_restart_keeps_keys_revocations_rotations_data_and_usage() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keygate.db");
    let server = Server::start(&db);
    let root = server
        .bootstrap
        .clone()
        .expect("a first start prints a key");

    let (_, kept) = create_key(&server, &root, "kept");
    let (revoked_id, revoked) = create_key(&server, &root, "revoked");
    let (rotated_id, old_secret) = create_key(&server, &root, "rotated");
    let (status, _) = server.call("DELETE", &format!("/api_keys/{revoked_id}"), &root, None);
    assert_eq!(status, 204);
    let (status, body) = server.call(
        "POST",
        &format!("/api_keys/{rotated_id}/regenerate"),
        &root,
        None,
    );
    assert_eq!(status, 201, "{body}");
    let new_secret = body["data"]["key"].as_str().unwrap().to_owned();
    let (status, project) = server.call(
        "POST",
        "/projects",
        &root,
        Some(json!({"name": "Kept", "language": "en"})),
    );
    assert_eq!(status, 201, "{project}");
    let project_id = project["data"]["id"].as_u64().unwrap();
    let (status, recording) = server.call(
        "POST",
        "/recordings",
        &root,
        Some(json!({"project_id": project_id, "title": "Call", "transcription": "hello"})),
    );
    assert_eq!(status, 201, "{recording}");
    let recording_id = recording["data"]["id"].as_u64().unwrap();
    for _ in 0..3 {
        assert_eq!(server.call("GET", "/projects", &kept, None).0, 200);
    }
    let (_, me) = server.call("GET", "/api_keys/me", &kept, None);
    let kept_id = me["data"]["id"].as_str().unwrap().to_owned();
    server.stop();

    let server = Server::start(&db);
    assert_eq!(server.bootstrap, None, "a restart prints no key");
    assert_eq!(server.call("GET", "/projects", &root, None).0, 200);
    assert_eq!(server.call("GET", "/projects", &kept, None).0, 200);
    assert_eq!(server.call("GET", "/projects", &revoked, None).0, 401);
    assert_eq!(server.call("GET", "/projects", &old_secret, None).0, 401);
    assert_eq!(server.call("GET", "/projects", &new_secret, None).0, 200);
    let (status, body) = server.call("GET", &format!("/projects/{project_id}"), &root, None);
    assert_eq!(status, 200);
    assert_eq!(body["data"]["name"], "Kept");
    assert_eq!(body["data"]["recordings_count"], 1);
    let (status, body) = server.call(
        "GET",
        &format!("/recordings/{recording_id}/transcription"),
        &root,
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("hello"), "{body}");
    // New ids continue past the stored ones.
    let (status, next) = server.call(
        "POST",
        "/projects",
        &root,
        Some(json!({"name": "Next", "language": "en"})),
    );
    assert_eq!(status, 201);
    assert!(next["data"]["id"].as_u64().unwrap() > project_id);
    // The usage before the restart (flushed at shutdown: three GET /projects and one GET /me),
    // and the GET /projects since.
    let (status, usage) = server.call("GET", &format!("/api_keys/{kept_id}/usage"), &root, None);
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["data"]["total_requests"], 5, "{usage}");
    server.stop();

    // A second restart: restored usage is not counted again.
    let server = Server::start(&db);
    let (_, usage) = server.call("GET", &format!("/api_keys/{kept_id}/usage"), &root, None);
    assert_eq!(usage["data"]["total_requests"], 5, "{usage}");
    server.stop();
}

/// A small seeded generator (xorshift64*): the same moments and operations on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the client knows after a trial.
#[derive(Default, Clone)]
struct Known {
    /// Key id → its current secret: acknowledged created (201) and, if regenerated, the secret of
    /// the acknowledged regeneration.
    live: BTreeMap<String, String>,
    /// Secrets that must never work again: revoked keys' (204) and rotated-away ones (201).
    dead: BTreeSet<String>,
    /// Keys whose last request got no answer: their state is either, so they are left alone.
    unknown: BTreeSet<String>,
    /// Acknowledged changes, for the report.
    acknowledged: usize,
}

/// Creates, regenerates and revokes keys until a request gets no answer (the server was
/// killed), recording what each acknowledged answer established.
fn drive(base: String, root: String, mut known: Known, seed: u64) -> Known {
    let agent = agent();
    let mut rng = Rng(seed | 1);
    loop {
        let ids: Vec<String> = known.live.keys().cloned().collect();
        let pick = (!ids.is_empty()).then(|| {
            let n = u64::try_from(ids.len()).unwrap();
            ids[usize::try_from(rng.below(n)).unwrap()].clone()
        });
        match (rng.below(4), pick) {
            (0, Some(id)) => {
                let path = format!("/api_keys/{id}/regenerate");
                match call(&agent, &base, "POST", &path, &root, None) {
                    Ok((201, body)) => {
                        let secret = body["data"]["key"].as_str().unwrap().to_owned();
                        let old = known.live.insert(id, secret).unwrap();
                        known.dead.insert(old);
                        known.acknowledged += 1;
                    }
                    Ok((status, body)) => panic!("regenerate: {status} {body}"),
                    Err(_) => {
                        known.live.remove(&id);
                        known.unknown.insert(id);
                        return known;
                    }
                }
            }
            (1, Some(id)) => match call(
                &agent,
                &base,
                "DELETE",
                &format!("/api_keys/{id}"),
                &root,
                None,
            ) {
                Ok((204, _)) => {
                    let old = known.live.remove(&id).unwrap();
                    known.dead.insert(old);
                    known.acknowledged += 1;
                }
                Ok((status, body)) => panic!("revoke: {status} {body}"),
                Err(_) => {
                    known.live.remove(&id);
                    known.unknown.insert(id);
                    return known;
                }
            },
            _ => {
                let body = json!({"name": "crash", "permissions": ["read"]});
                match call(&agent, &base, "POST", "/api_keys", &root, Some(body)) {
                    Ok((201, body)) => {
                        let id = body["data"]["id"].as_str().unwrap().to_owned();
                        let secret = body["data"]["key"].as_str().unwrap().to_owned();
                        known.live.insert(id, secret);
                        known.acknowledged += 1;
                    }
                    Ok((status, body)) => panic!("create: {status} {body}"),
                    // A key that may or may not exist: its secret was never seen, so nothing
                    // can be checked about it.
                    Err(_) => return known,
                }
            }
        }
    }
}

/// SIGKILL at seeded random moments under a create/regenerate/revoke load, restarting on the
/// same database: after each restart every acknowledged change is there and no revoked or
/// rotated-away secret works.
#[test]
fn a_crash_loses_no_acknowledged_key_change() {
    const TRIALS: u64 = 25;
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keygate.db");
    let first = Server::start(&db);
    let root = first.bootstrap.clone().expect("a first start prints a key");
    first.crash();
    let mut rng = Rng(0x6b65_7967_6174_6531);
    let mut known = Known::default();
    let mut checked = 0usize;
    for trial in 0..TRIALS {
        let server = Server::start(&db);
        assert_eq!(
            server.bootstrap, None,
            "trial {trial}: a restart prints no key"
        );
        // Everything established so far, after the previous crash.
        assert_eq!(server.call("GET", "/api_keys/me", &root, None).0, 200);
        for (id, secret) in &known.live {
            let (status, body) = server.call("GET", "/api_keys/me", secret, None);
            assert_eq!(
                status, 200,
                "trial {trial}: acknowledged key {id} lost: {body}"
            );
            assert_eq!(body["data"]["id"], id.as_str());
            checked += 1;
        }
        for secret in &known.dead {
            let (status, _) = server.call("GET", "/api_keys/me", secret, None);
            assert_eq!(
                status, 401,
                "trial {trial}: a revoked or rotated-away secret works"
            );
            checked += 1;
        }
        let (tx, rx) = mpsc::channel();
        let base = server.base.clone();
        let token = root.clone();
        let snapshot = known.clone();
        let seed = rng.next();
        let client = thread::spawn(move || {
            let known = drive(base, token, snapshot, seed);
            tx.send(()).ok();
            known
        });
        let delay = Duration::from_millis(5 + rng.below(296));
        thread::sleep(delay);
        server.crash();
        rx.recv_timeout(Duration::from_secs(20)).unwrap();
        known = client.join().unwrap();
    }
    // The last crash too.
    let server = Server::start(&db);
    for secret in known.live.values() {
        assert_eq!(server.call("GET", "/api_keys/me", secret, None).0, 200);
        checked += 1;
    }
    for secret in &known.dead {
        assert_eq!(server.call("GET", "/api_keys/me", secret, None).0, 401);
        checked += 1;
    }
    server.stop();
    eprintln!(
        "{TRIALS} crashes, {} acknowledged changes, {checked} checks after restarts, {} keys of unknown outcome, {:?}",
        known.acknowledged,
        known.unknown.len(),
        started.elapsed()
    );
    assert!(known.acknowledged > 0);
    assert!(started.elapsed() < Duration::from_secs(120));
}

/// A store that cannot write (another connection holds SQLite's write lock, so the server's
/// commits time out as on a failing disk) answers 503 and changes nothing in the live keyring.
#[test]
fn a_failing_store_answers_503_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keygate.db");
    let server = Server::start(&db);
    let root = server.bootstrap.clone().unwrap();
    let (id, secret) = create_key(&server, &root, "target");

    let blocker = rusqlite::Connection::open(&db).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let (status, body) = server.call(
        "POST",
        "/api_keys",
        &root,
        Some(json!({"name": "never", "permissions": ["read"]})),
    );
    assert_eq!(
        (status, body),
        (503, json!({"error": "Service unavailable"}))
    );
    let (status, _) = server.call("POST", &format!("/api_keys/{id}/regenerate"), &root, None);
    assert_eq!(status, 503);
    // Neither rotated nor revoked: the old secret still works.
    assert_eq!(server.call("GET", "/api_keys/me", &secret, None).0, 200);
    let (status, _) = server.call(
        "POST",
        "/projects",
        &root,
        Some(json!({"name": "Never", "language": "en"})),
    );
    assert_eq!(status, 503);

    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    let (_, listed) = server.call("GET", "/api_keys", &root, None);
    assert_eq!(listed["data"].as_array().unwrap().len(), 2, "{listed}");
    let (_, projects) = server.call("GET", "/projects", &root, None);
    assert_eq!(projects["data"], json!([]));
    assert_eq!(server.call("GET", "/api_keys/me", &secret, None).0, 200);
    // And the store works again.
    assert_eq!(
        server
            .call("DELETE", &format!("/api_keys/{id}"), &root, None)
            .0,
        204
    );
    assert_eq!(server.call("GET", "/api_keys/me", &secret, None).0, 401);
    server.stop();
}

#[test]
fn a_database_from_before_checksummed_tokens_keeps_its_tokens_working() {
    use keygate::{AccountId, Catalog, Issuer, KeySpec, Scope, Timestamp, TokenFormat, issue};
    use keygate_store::{KeyStore, SqliteStore};

    // A store written by an earlier version: a key with a plain (checksum-less) token, and no
    // record of the token format.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keygate.db");
    let catalog = Catalog::read_write_delete();
    let owner = Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all());
    let issued = issue(
        &catalog,
        &owner,
        KeySpec::named("old"),
        Timestamp::from_system_time(std::time::SystemTime::now()),
        &mut rand::rng(),
    )
    .unwrap();
    let old = issued.token.expose_secret().to_owned();
    assert!(!bool::from(TokenFormat::checksummed().matches(&old)));
    {
        let store = SqliteStore::open(&db).unwrap();
        let mut ring = keygate::Keyring::default();
        store
            .persist(&catalog, ring.stage_insert(issued.key).unwrap().change())
            .unwrap();
    }
    for _ in 0..2 {
        let server = Server::start(&db);
        assert!(server.bootstrap.is_none());
        let (status, body) = server.call("GET", "/api_keys/me", &old, None);
        assert_eq!(status, 200, "the old token still works: {body}");
        // The keys it creates now are of the store's format too, and work.
        let (_, new) = create_key(&server, &old, "new");
        assert_eq!(server.call("GET", "/api_keys/me", &new, None).0, 200);
        assert!(!bool::from(TokenFormat::checksummed().matches(&new)));
        server.stop();
    }

    // A new database gets checksummed tokens.
    let fresh = dir.path().join("fresh.db");
    let server = Server::start(&fresh);
    let root = server.bootstrap.clone().unwrap();
    assert!(bool::from(TokenFormat::checksummed().matches(&root)));
    server.stop();
}

/// Spent credits are usage: flushed with it every few seconds and at shutdown, so neither a
/// clean restart nor a crash after a flush hands a key its budget again.
#[test]
fn spent_credits_survive_a_restart_and_a_crash_after_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keygate.db");
    let server = Server::start(&db);
    let root = server.bootstrap.clone().unwrap();
    let (status, body) = server.call(
        "POST",
        "/api_keys",
        &root,
        Some(json!({"name": "metered", "permissions": ["read"], "credits": {"remaining": 5}})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["credits"], json!({"remaining": 5}));
    let token = body["data"]["key"].as_str().unwrap().to_owned();
    let spend = |server: &Server| server.call("GET", "/projects", &token, None);
    for _ in 0..3 {
        assert_eq!(spend(&server).0, 200);
    }
    server.stop();

    let server = Server::start(&db);
    assert_eq!(spend(&server).0, 200);
    // Past the 2 s flush interval: the fourth credit is in the store before the crash.
    thread::sleep(Duration::from_secs(3));
    server.crash();

    let server = Server::start(&db);
    assert_eq!(spend(&server).0, 200);
    let (status, body) = spend(&server);
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        body,
        json!({"error": "Usage exceeded", "code": "USAGE_EXCEEDED"})
    );
    server.stop();
}
