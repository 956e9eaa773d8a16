//! Two replicas of the real `keygate-server` binary, as two processes on one PostgreSQL database
//! (and one Redis): keys created on one work on the other, revocations reach the other within
//! milliseconds (measured over 200 of them), usage adds up across both, a rate limit holds once
//! across both, and a replica cut off from the database catches up when it is back.
//!
//! Needs `KEYGATE_TEST_POSTGRES` (and `KEYGATE_TEST_REDIS` for the rate limit), as
//! `bash .ci/services.sh start` prints them. Unset, the tests say loudly that they skipped; under
//! `CI=true` they fail.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a broken test fixture should stop the test loudly"
)]

use std::io::{BufRead, BufReader};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long a change may take to show on the other replica before the test fails: far above the
/// milliseconds it takes, so that a loaded machine does not fail it. The figures are printed.
const PATIENCE: Duration = Duration::from_secs(10);

/// The value of `name`, or `None` after saying loudly that the test is skipped (a failure under
/// `CI=true`).
fn service(name: &str) -> Option<String> {
    if let Ok(value) = std::env::var(name) {
        return Some(value);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{name} is not set under CI=true: the replica tests must run (bash .ci/services.sh start)"
    );
    eprintln!("SKIPPED: {name} is not set; the replica test did not run");
    None
}

/// A new, empty database on the `KEYGATE_TEST_POSTGRES` server: its URL.
fn fresh_database() -> Option<String> {
    let admin = service("KEYGATE_TEST_POSTGRES")?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("keygate_replicas_{}_{nanos}", std::process::id());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        drop(client);
        let _ = driver.await;
    });
    let base = admin.split('?').next().unwrap();
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    Some(format!("{server}/{name}"))
}

/// A running replica.
struct Replica {
    child: Child,
    base: String,
    /// The bootstrap token, when this replica printed one (the first on an empty database).
    bootstrap: Option<String>,
    agent: ureq::Agent,
}

impl Replica {
    fn start(database: &str, extra: &[&str]) -> Replica {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keygate-server"))
            .args([
                "--addr",
                "127.0.0.1:0",
                "--shutdown-grace",
                "2",
                "--database",
            ])
            .arg(database)
            .args(extra)
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
            assert!(line.starts_with("keys loaded"), "{line}");
            None
        };
        Replica {
            child,
            base,
            bootstrap,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(25)))
                .build()
                .into(),
        }
    }

    fn call(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {key}"));
        let bytes = match &body {
            Some(body) => {
                request = request.header("Content-Type", "application/json");
                serde_json::to_vec(body).unwrap()
            }
            None => Vec::new(),
        };
        let mut response = self.agent.run(request.body(bytes).unwrap()).unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, value)
    }

    /// The status `GET /api_keys/me` gets with `key`.
    fn me(&self, key: &str) -> u16 {
        self.call("GET", "/api_keys/me", key, None).0
    }

    /// Creates a key; its id and token.
    fn create_key(&self, root: &str, body: Value) -> (String, String) {
        let (status, body) = self.call("POST", "/api_keys", root, Some(body));
        assert_eq!(status, 201, "{body}");
        (
            body["data"]["id"].as_str().unwrap().to_owned(),
            body["data"]["key"].as_str().unwrap().to_owned(),
        )
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls until `done`, for at most [`PATIENCE`]: how long it took, or `None`.
fn wait_for(mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        if done() {
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_micros(200));
    }
    None
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[test]
fn two_replicas_share_keys_revocations_and_usage() {
    let Some(database) = fresh_database() else {
        return;
    };
    let a = Replica::start(&database, &[]);
    let root = a
        .bootstrap
        .clone()
        .expect("the first replica prints the bootstrap key");
    let b = Replica::start(&database, &[]);
    assert!(b.bootstrap.is_none(), "the second replica prints none");
    assert_eq!(b.me(&root), 200, "the bootstrap key works on B");

    // A key created on A works on B, and shows in B's listing.
    let (id, token) = a.create_key(&root, json!({"name": "made on A", "permissions": ["read"]}));
    wait_for(|| b.me(&token) == 200).expect("a key created on A works on B");
    let (_, listing) = b.call("GET", "/api_keys", &root, None);
    assert!(
        listing["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|key| key["id"] == id.as_str()),
        "{listing}"
    );

    // Usage on both replicas adds up, on either.
    for _ in 0..7 {
        assert_eq!(a.me(&token), 200);
    }
    for _ in 0..5 {
        assert_eq!(b.me(&token), 200);
    }
    // The poll on B above counted too: 7 + 5 and however many polls succeeded.
    let usage = |replica: &Replica| {
        let (status, body) = replica.call("GET", &format!("/api_keys/{id}/usage"), &root, None);
        assert_eq!(status, 200, "{body}");
        body["data"]["total_requests"].as_u64().unwrap()
    };
    let before_flush = usage(&a);
    wait_for(|| usage(&a) == usage(&b) && usage(&a) >= 12).expect("usage reaches both replicas");
    let total = usage(&a);
    assert!(total >= before_flush && total >= 12, "{total}");
    thread::sleep(Duration::from_millis(2_500)); // another flush: nothing more to add
    assert_eq!(
        (usage(&a), usage(&b)),
        (total, total),
        "counted once, not once per replica"
    );

    // Revocations on A, refused on B: 200 of them, timed from A's 204.
    let mut latencies = Vec::new();
    for n in 0..200 {
        let (id, token) = a.create_key(
            &root,
            json!({"name": format!("r{n}"), "permissions": ["read"]}),
        );
        wait_for(|| b.me(&token) == 200).expect("the new key reaches B");
        let (status, _) = a.call("DELETE", &format!("/api_keys/{id}"), &root, None);
        assert_eq!(status, 204);
        let took = wait_for(|| b.me(&token) == 401).expect("a revocation on A reaches B");
        latencies.push(took);
    }
    latencies.sort_unstable();
    eprintln!(
        "revocation on A refused on B: p50 {:?}, p99 {:?}, max {:?} over {} revocations",
        percentile(&latencies, 50),
        percentile(&latencies, 99),
        latencies.last().unwrap(),
        latencies.len()
    );
}

/// A loopback TCP proxy to PostgreSQL that can cut every connection and refuse new ones, as a
/// network partition between one replica and the database would.
struct Proxy {
    port: u16,
    state: Arc<Mutex<ProxyState>>,
}

#[derive(Default)]
struct ProxyState {
    cut: bool,
    open: Vec<TcpStream>,
}

impl Proxy {
    fn start(upstream: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let shared = Arc::clone(&state);
        // Lives as long as the test process; each accepted connection is bounded by its peers.
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let mut state = shared.lock().unwrap();
                if state.cut {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                state.open.push(client.try_clone().unwrap());
                state.open.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, state }
    }

    fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        state.cut = true;
        for stream in state.open.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.state.lock().unwrap().cut = false;
    }
}

/// `postgres://user@host:port/db` with host and port replaced by the proxy's.
fn through(database: &str, proxy: &Proxy) -> (String, std::net::SocketAddr) {
    let (scheme, rest) = database.split_once("://").unwrap();
    let (user, rest) = rest.split_once('@').unwrap();
    let (host_port, db) = rest.split_once('/').unwrap();
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(host_port)
        .unwrap()
        .next()
        .unwrap();
    (
        format!("{scheme}://{user}@127.0.0.1:{}/{db}", proxy.port),
        upstream,
    )
}

#[test]
fn a_replica_cut_off_from_the_database_catches_up_when_it_is_back() {
    let Some(database) = fresh_database() else {
        return;
    };
    let (_, upstream) = through(
        &database,
        &Proxy {
            port: 0,
            state: Arc::default(),
        },
    );
    let proxy = Proxy::start(upstream);
    let (via_proxy, _) = through(&database, &proxy);
    let a = Replica::start(&database, &[]);
    let root = a.bootstrap.clone().unwrap();
    let b = Replica::start(&via_proxy, &[]);
    let (id, token) = a.create_key(&root, json!({"name": "doomed", "permissions": ["read"]}));
    wait_for(|| b.me(&token) == 200).expect("the key reaches B");

    proxy.cut();
    let (status, _) = a.call("DELETE", &format!("/api_keys/{id}"), &root, None);
    assert_eq!(status, 204, "A revokes while B is cut off");
    // B cannot change keys meanwhile: 503, not a silent local change.
    let (status, body) = b.call(
        "POST",
        "/api_keys",
        &root,
        Some(json!({"name": "while cut off", "permissions": ["read"]})),
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "Service unavailable");

    proxy.restore();
    let took = wait_for(|| b.me(&token) == 401)
        .expect("after the connection is back, B resyncs and refuses the revoked key");
    eprintln!("B refused the key revoked while it was cut off {took:?} after the cut ended");
    // And B works as a replica again: its changes reach A.
    let (_, fresh) = b.create_key(&root, json!({"name": "after", "permissions": ["read"]}));
    wait_for(|| a.me(&fresh) == 200).expect("B's new key reaches A");
}

#[test]
fn replicas_creating_projects_at_once_lose_none() {
    let Some(database) = fresh_database() else {
        return;
    };
    let a = Replica::start(&database, &[]);
    let root = a.bootstrap.clone().unwrap();
    let b = Replica::start(&database, &[]);
    let per_replica = 20;
    let made: Vec<Vec<u64>> = thread::scope(|scope| {
        [&a, &b]
            .map(|replica| {
                let root = &root;
                scope.spawn(move || {
                    (0..per_replica)
                        .map(|n| {
                            let (status, body) = replica.call(
                                "POST",
                                "/projects",
                                root,
                                Some(json!({"name": format!("p{n}"), "language": "en"})),
                            );
                            assert_eq!(status, 201, "{body}");
                            body["data"]["id"].as_u64().unwrap()
                        })
                        .collect()
                })
            })
            .map(|made| made.join().unwrap())
            .into()
    });
    let mut ids: Vec<u64> = made.concat();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2 * per_replica, "every project has its own id");
    let count = |replica: &Replica| {
        let (status, body) = replica.call("GET", "/projects?limit=200", &root, None);
        assert_eq!(status, 200, "{body}");
        body["data"].as_array().unwrap().len()
    };
    wait_for(|| count(&a) == 2 * per_replica && count(&b) == 2 * per_replica)
        .expect("both replicas list every project");
}

/// Credits are spent in each replica's keyring; the store sums what the replicas flush, and each
/// replica takes the sum in when it resyncs, so a balance counts every replica's spending, late
/// by at most a flush and a resync.
#[test]
fn credits_spent_on_one_replica_count_on_the_other() {
    let Some(database) = fresh_database() else {
        return;
    };
    let quick = ["--resync-interval", "1"];
    let a = Replica::start(&database, &quick);
    let root = a.bootstrap.clone().unwrap();
    let b = Replica::start(&database, &quick);
    let (_, token) = a.create_key(
        &root,
        json!({"name": "metered", "permissions": ["read"], "credits": {"remaining": 6}}),
    );
    // B's probe spends the first credit once it knows the key; A spends two more.
    wait_for(|| b.me(&token) != 401).expect("the key reaches B");
    assert_eq!(a.me(&token), 200);
    assert_eq!(a.me(&token), 200);
    // Both flush every 2 s and resync every second: B then counts A's two.
    thread::sleep(Duration::from_secs(4));
    let admitted = (0..6).take_while(|_| b.me(&token) == 200).count();
    assert_eq!(
        admitted, 3,
        "6 credits, 3 spent before across both replicas"
    );
    let (status, body) = b.call("GET", "/api_keys/me", &token, None);
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "USAGE_EXCEEDED");
}

#[test]
fn a_rate_limit_holds_once_across_replicas_with_redis() {
    let Some(database) = fresh_database() else {
        return;
    };
    let Some(redis) = service("KEYGATE_TEST_REDIS") else {
        return;
    };
    let shared = ["--redis", redis.as_str()];
    let a = Replica::start(&database, &shared);
    let root = a.bootstrap.clone().unwrap();
    let b = Replica::start(&database, &shared);
    // 10 per hour: nothing refills during the test.
    let limit = 10;
    let (_, token) = a.create_key(
        &root,
        json!({"name": "limited", "rate_limit": {"requests": limit, "period_seconds": 3600}}),
    );
    // The first call B answers with anything but 401 is admitted: one of the `limit`.
    wait_for(|| b.me(&token) != 401).expect("the key reaches B");
    let mut admitted = 0;
    let mut refused = 0;
    for n in 0..(3 * limit) {
        let replica = if n % 2 == 0 { &a } else { &b };
        let (status, body) = replica.call("GET", "/api_keys/me", &token, None);
        match status {
            200 => admitted += 1,
            429 => {
                refused += 1;
                assert_eq!(body["error"], "Rate limit exceeded", "{body}");
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(
        (admitted, refused),
        (limit - 1, 2 * limit + 1),
        "the limit holds once across both replicas"
    );
    // A named limit holds once too: Redis charges every budget the keyring names.
    let (_, named) = a.create_key(
        &root,
        json!({"name": "named", "limits": [
            {"name": "hourly", "requests": limit, "period_seconds": 3600}
        ]}),
    );
    wait_for(|| b.me(&named) != 401).expect("the key reaches B");
    let named_admitted = (0..(3 * limit))
        .filter(|n| {
            let replica = if n % 2 == 0 { &a } else { &b };
            replica.me(&named) == 200
        })
        .count();
    assert_eq!(named_admitted + 1, usize::try_from(limit).unwrap());

    // Without Redis, each replica would have its own budget: the same spend admits more.
    let database = fresh_database().unwrap();
    let a = Replica::start(&database, &[]);
    let root = a.bootstrap.clone().unwrap();
    let b = Replica::start(&database, &[]);
    let (_, token) = a.create_key(
        &root,
        json!({"name": "limited", "rate_limit": {"requests": limit, "period_seconds": 3600}}),
    );
    wait_for(|| b.me(&token) != 401).expect("the key reaches B");
    let alone: u64 = (0..(3 * limit))
        .filter(|n| {
            let replica = if n % 2 == 0 { &a } else { &b };
            replica.me(&token) == 200
        })
        .map(|_| 1)
        .sum();
    // A admits its 10; B its 10 less the one its probe took.
    assert_eq!(alone, 2 * limit - 1, "each replica limits on its own");
}

#[test]
fn an_unreachable_redis_fails_closed_or_falls_back_as_configured() {
    // A loopback port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redis = format!("redis://127.0.0.1:{port}");
    let limited = json!({"name": "limited", "rate_limit": {"requests": 2, "period_seconds": 3600}});
    for (policy, expected) in [("closed", [503, 503, 503]), ("local", [200, 200, 429])] {
        let server = Replica::start(
            "sqlite::memory:",
            &["--redis", &redis, "--redis-on-error", policy],
        );
        let root = server.bootstrap.clone().unwrap();
        // A key without a rate limit never asks Redis.
        assert_eq!(server.me(&root), 200, "{policy}");
        let (_, token) = server.create_key(&root, limited.clone());
        let started = Instant::now();
        let got = [0; 3].map(|_| server.call("GET", "/api_keys/me", &token, None));
        assert_eq!(got.clone().map(|(status, _)| status), expected, "{policy}");
        if policy == "closed" {
            assert_eq!(got[0].1["error"], "Rate limiter unavailable");
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "each check is bounded by the limiter's timeout"
        );
    }
}
