//! Shared test support: a catalog, an issuer, the stage → persist → apply step, and the
//! comparisons a reload is held to. Each test file includes it with `mod common;`.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the shared support"
)]

use std::time::Duration;

use keygate::{
    AccountId, ApiKey, Catalog, IssuedKey, Issuer, KeySpec, Keyring, ProjectId, RateLimit, Scope,
    Staged, Timestamp, Token, TokenFormat, issue,
};
use keygate_store::{KeyStore, load_keyring};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Fine-grained enough for keys to issue keys (`api-keys:write`) and for a catalog to lose a
/// name (`agents:write`).
pub fn catalog() -> Catalog {
    Catalog::new([
        "read",
        "write",
        "delete",
        "api-keys:write",
        "agents:read",
        "agents:write",
    ])
    .unwrap()
}

pub fn now() -> Timestamp {
    Timestamp::from_unix_seconds(1_800_000_000)
}

pub fn account() -> AccountId {
    AccountId::from_u64(7)
}

/// A deployment under test: its catalog, a seeded RNG, and every token ever minted, kept so that
/// a reloaded keyring can be asked about each of them.
pub struct World {
    pub catalog: Catalog,
    pub rng: StdRng,
    pub tokens: Vec<Token>,
}

impl World {
    pub fn new(seed: u64) -> Self {
        Self {
            catalog: catalog(),
            rng: StdRng::seed_from_u64(seed),
            tokens: Vec::new(),
        }
    }

    /// The account owner, who may issue anything the catalog defines.
    pub fn owner(&self) -> Issuer {
        Issuer::user(account(), Scope::Account, self.catalog.all()).with_user_id("alice")
    }

    /// A key issued by the owner, or by `parent` when given; its token joins `tokens`.
    pub fn issue(&mut self, name: &str, parent: Option<&ApiKey>) -> ApiKey {
        let issuer = match parent {
            Some(parent) => Issuer::key(&self.catalog, parent, now()).unwrap(),
            None => self.owner(),
        };
        let spec = KeySpec::named(name)
            .permissions(["read", "write", "api-keys:write", "agents:read"])
            .tags(["t1", "t2"])
            .comment("made by a test");
        let IssuedKey { key, token } = issue(&self.catalog, &issuer, spec, now(), &mut self.rng)
            .or_else(|_| {
                // A child cannot be granted what its parent lacks (after a narrowing update):
                // then it gets what the parent has.
                issue(
                    &self.catalog,
                    &issuer,
                    KeySpec::named(name),
                    now(),
                    &mut self.rng,
                )
            })
            .unwrap();
        self.tokens.push(token);
        key
    }

    /// A project-scoped, rate-limited, expiring key of the owner's.
    pub fn issue_limited(&mut self, name: &str) -> ApiKey {
        let spec = KeySpec::named(name)
            .project(ProjectId::from_u64(3))
            .permissions(["read", "agents:*"])
            .rate_limit(RateLimit::per_period(2, 60).unwrap())
            .expires_at(now() + Duration::from_secs(86_400));
        let IssuedKey { key, token } =
            issue(&self.catalog, &self.owner(), spec, now(), &mut self.rng).unwrap();
        self.tokens.push(token);
        key
    }
}

/// Stage → persist → apply: the order a server follows. Returns the token a rotation minted.
pub fn persist_and_apply(
    store: &impl KeyStore,
    catalog: &Catalog,
    staged: Staged<'_>,
) -> Option<Token> {
    store.persist(catalog, staged.change()).unwrap();
    staged.apply()
}

/// The routes the usage tests count requests for (anything else counts as "other").
pub const ENDPOINTS: [&str; 4] = ["GET /a", "GET /b", "GET /recordings", "POST /recordings"];

/// The store loaded into a fresh keyring of the default format.
pub fn reload(store: &impl KeyStore, catalog: &Catalog) -> Keyring {
    load_keyring(store, catalog, TokenFormat::default()).unwrap()
}

/// Both keyrings hold the same keys, field for field.
pub fn assert_same_keys(live: &Keyring, loaded: &Keyring) {
    assert_eq!(live.len(), loaded.len(), "key count");
    for key in live.iter() {
        assert_eq!(Some(key), loaded.get(key.id()), "key {}", key.id());
    }
}

/// Both keyrings answer every token the same way (the same key, or the same refusal) at each of
/// `instants`.
pub fn assert_same_answers(
    live: &Keyring,
    loaded: &Keyring,
    tokens: &[Token],
    instants: &[Timestamp],
) {
    for token in tokens {
        for at in instants {
            let expected = live
                .authenticate(token.expose_secret(), *at)
                .map(ApiKey::id);
            let found = loaded
                .authenticate(token.expose_secret(), *at)
                .map(ApiKey::id);
            assert_eq!(expected, found, "a token at {at}");
        }
    }
}

/// The proptest case count: `PROPTEST_CASES` if set, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

/// A store on a new, empty PostgreSQL database of the server `KEYGATE_TEST_POSTGRES` names; `None`
/// (after saying so loudly) when it is unset, which under `CI=true` fails the test instead.
#[cfg(feature = "postgres")]
pub fn postgres() -> Option<keygate_store::PgStore> {
    let url = postgres_database()?;
    Some(keygate_store::PgStore::connect(&url).unwrap())
}

/// The URL of a new, empty database on the `KEYGATE_TEST_POSTGRES` server (see [`postgres`]).
#[cfg(feature = "postgres")]
pub fn postgres_database() -> Option<String> {
    let Ok(admin) = std::env::var("KEYGATE_TEST_POSTGRES") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "KEYGATE_TEST_POSTGRES is not set under CI=true: the PostgreSQL tests must run \
             (bash .ci/services.sh start prints it)"
        );
        eprintln!("SKIPPED: KEYGATE_TEST_POSTGRES is not set; no PostgreSQL test ran");
        return None;
    };
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let serial = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("keygate_test_{}_{nanos}_{serial}", std::process::id());
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
