//! The Redis rate limiter against a real Redis (`KEYGATE_TEST_REDIS`, e.g. from
//! `.ci/services.sh start`): the same decisions and retry-afters as keygate's in-process limiter
//! over random arrivals, one budget across replicas, and a bounded, fail-closed answer when Redis
//! is unreachable.
//!
//! Without `KEYGATE_TEST_REDIS` the tests that need Redis say SKIPPED and pass, except under
//! `CI=true`, where they fail: CI must run them.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test bodies and helpers: a failure should fail the test at once"
)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keygate::{
    AccountId, ApiKey, Catalog, KeyId, Keyring, RateLimit, Refusal, RetryAfter, Scope,
    SharedKeyring, Timestamp, TokenHash,
};
use keygate_store::{
    LimitRefusal, OnRedisError, RedisLimitError, RedisLimiterConfig, RedisRateLimiter,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// The test Redis's URL; `None` (after a loud SKIPPED) when it is not configured, and a panic
/// under `CI=true`, where a skipped test would hide a missing service.
fn redis_url() -> Option<String> {
    match std::env::var("KEYGATE_TEST_REDIS") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => panic!(
            "KEYGATE_TEST_REDIS is not set and CI=true: the Redis tests must run in CI \
             (eval \"$(bash .ci/services.sh start)\" exports it)"
        ),
        _ => {
            eprintln!(
                "SKIPPED: KEYGATE_TEST_REDIS is not set (e.g. redis://127.0.0.1:6379); \
                 this Redis test did not run"
            );
            None
        }
    }
}

/// A key prefix no other test (or run) uses, so tests share one Redis without meeting.
fn unique_prefix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("keygate-test:{:016x}:", hasher.finish())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn config(prefix: &str) -> RedisLimiterConfig {
    let mut config = RedisLimiterConfig::default();
    config.key_prefix = prefix.to_owned();
    // Tests replay time far from the wall clock: keep the state for an hour of real time past
    // its (simulated) TAT, so no key expires under a test that still needs it.
    config.expiry_margin = Duration::from_secs(3600);
    // Generous for a loaded test machine; the unreachable tests set their own.
    config.timeout = Duration::from_secs(5);
    config
}

/// Removes every key under `prefix` (the far-future ones have no expiry).
async fn clean_up(url: &str, prefix: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
}

/// `keys[0]` is the root; `keys[i]` was issued by `keys[i - 1]`, with the limit given (if any).
fn chain_of_keys(limits: &[Option<RateLimit>]) -> Vec<ApiKey> {
    let catalog = Catalog::read_write_delete();
    let mut keys: Vec<ApiKey> = Vec::new();
    for (i, limit) in limits.iter().enumerate() {
        let byte = u8::try_from(i + 1).unwrap();
        let mut key = ApiKey::new(
            KeyId::from_bytes([byte; 16]),
            format!("k{i}"),
            AccountId::from_u64(1),
            Scope::Account,
            catalog.all(),
            TokenHash::of(&format!("idc_test_{i}")),
            Timestamp::EPOCH,
        );
        if let Some(limit) = limit {
            key = key.with_rate_limit(*limit);
        }
        let mut record = key.to_record(&catalog);
        record.issued_by = keys.last().map(ApiKey::id);
        keys.push(ApiKey::from_record(record, &catalog).unwrap());
    }
    keys
}

/// A limiter on the test Redis, its keys under `prefix`.
async fn limiter(url: &str, prefix: &str) -> RedisRateLimiter {
    RedisRateLimiter::connect(url, config(prefix))
        .await
        .unwrap()
}

fn shared(keys: &[ApiKey]) -> SharedKeyring {
    SharedKeyring::new(Keyring::from_keys(Default::default(), keys.iter().cloned()).unwrap())
}

fn limit(requests: u32, period: u32, burst: u32) -> RateLimit {
    RateLimit::per_period(requests, period)
        .unwrap()
        .with_burst(burst)
        .unwrap()
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_seconds(seconds)
}

// ---------------------------------------------------------------------------------------------
// The differential test: Redis against keygate's in-process limiter.

#[derive(Debug, Clone)]
struct Case {
    /// Root first; `None` is a key without a limit.
    limits: Vec<Option<RateLimit>>,
    start: i64,
    /// (which key of the chain asks, when)
    steps: Vec<(usize, Arrival)>,
}

#[derive(Debug, Clone, Copy)]
enum Arrival {
    /// This many microseconds after the previous request.
    After(u64),
    /// At the last refusal's retry instant plus this (-1, 0 or 1 µs): where off-by-ones show.
    AtRetry(i64),
}

fn any_limit() -> impl Strategy<Value = RateLimit> {
    prop_oneof![
        // Everyday limits, small bursts: refusals and refills within a few steps.
        8 => (1..=10u32, 1..=5u32, 1..=5u32),
        // Anything: huge intervals and tolerances that saturate (exactness past 2^53).
        1 => (1..=u32::MAX, 1..=u32::MAX, 1..=u32::MAX),
    ]
    .prop_map(|(requests, period, burst)| limit(requests, period, burst))
}

fn case() -> impl Strategy<Value = Case> {
    let limits = proptest::collection::vec(proptest::option::weighted(0.7, any_limit()), 1..=3);
    let start = prop_oneof![
        4 => 1_700_000_000_000_000..1_900_000_000_000_000i64,
        1 => -10_000_000..10_000_000i64,
        1 => (i64::MAX - 100_000_000)..=i64::MAX,
        1 => i64::MIN..=(i64::MIN + 100_000_000),
    ];
    let arrival = prop_oneof![
        3 => Just(Arrival::After(0)),
        6 => (0..400_000u64).prop_map(Arrival::After),
        1 => (0..1_000_000_000_000u64).prop_map(Arrival::After),
        2 => (-1..=1i64).prop_map(Arrival::AtRetry),
    ];
    let steps = proptest::collection::vec((0..3usize, arrival), 1..=50);
    (limits, start, steps).prop_map(|(limits, start, steps)| Case {
        limits,
        start,
        steps,
    })
}

async fn differential_case(url: &str, case: &Case) -> Result<(), TestCaseError> {
    let prefix = unique_prefix();
    let limiter = RedisRateLimiter::connect(url, config(&prefix))
        .await
        .unwrap();
    let keys = chain_of_keys(&case.limits);
    let ring = shared(&keys);
    let mut now = case.start;
    let mut last_retry: Option<i64> = None;
    let mut outcome = Ok(());
    for (step, &(which, arrival)) in case.steps.iter().enumerate() {
        // Time never goes back (the retry instant may be behind a later request's).
        now = match (arrival, last_retry) {
            (Arrival::After(delta), _) => now.saturating_add_unsigned(delta),
            (Arrival::AtRetry(offset), Some(at)) => now.max(at.saturating_add(offset)),
            (Arrival::AtRetry(_), None) => now,
        };
        let now = Timestamp::from_unix_micros(now);
        let id = keys[which % keys.len()].id();
        let from_redis = match limiter.check(&ring, id, now).await {
            Ok(()) => Ok(()),
            Err(LimitRefusal::RateLimited(retry)) => Err(retry),
            Err(LimitRefusal::Unavailable(error)) => panic!("redis failed: {error}"),
        };
        // The reference: keygate's own limiter on the same keyring (whose state only it moves).
        let reference = ring.read(|r| r.check_rate_limit(id, now));
        if let Err(retry) = reference {
            last_retry = Some(retry.at().unix_micros());
        }
        if from_redis != reference {
            outcome = Err(TestCaseError::fail(format!(
                "step {step} (key {which}, now {}): redis {from_redis:?}, keygate {reference:?}",
                now.unix_micros()
            )));
            break;
        }
    }
    clean_up(url, &prefix).await;
    outcome
}

#[test]
fn redis_decides_exactly_as_keygate_does() {
    let Some(url) = redis_url() else { return };
    let rt = runtime();
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case(), |case| rt.block_on(differential_case(&url, &case)));
    if let Err(error) = result {
        panic!("{error}");
    }
}

// ---------------------------------------------------------------------------------------------
// Decisions worked out by hand.

#[test]
fn replicas_share_one_budget() {
    let Some(url) = redis_url() else { return };
    runtime().block_on(async {
        let prefix = unique_prefix();
        let keys = chain_of_keys(&[Some(limit(3, 60, 3))]);
        let id = keys[0].id();
        // Two replicas: their own keyrings (and local limiters), one Redis.
        let (ring_a, ring_b) = (shared(&keys), shared(&keys));
        let a = limiter(&url, &prefix).await;
        let b = limiter(&url, &prefix).await;
        let now = at(1_800_000_000);
        assert!(a.check(&ring_a, id, now).await.is_ok());
        assert!(b.check(&ring_b, id, now).await.is_ok());
        assert!(a.check(&ring_a, id, now).await.is_ok());
        // The fourth is refused on either replica, though each has admitted at most two.
        for (limiter, ring) in [(&a, &ring_a), (&b, &ring_b)] {
            let Err(LimitRefusal::RateLimited(retry)) = limiter.check(ring, id, now).await else {
                panic!("the shared budget of 3 is spent");
            };
            // 60 s / 3 = 20 s until the first request's share comes back.
            assert_eq!(retry.wait(), Duration::from_secs(20));
            assert_eq!(retry.at(), at(1_800_000_020));
            assert_eq!(retry.seconds(), 20);
            let refusal = LimitRefusal::RateLimited(retry);
            assert_eq!(refusal.status(), 429);
            assert_eq!(refusal.retry_after(), Some(20));
        }
        assert!(b.check(&ring_b, id, at(1_800_000_020)).await.is_ok());
        assert!(a.check(&ring_a, id, at(1_800_000_020)).await.is_err());
        assert_eq!((a.fallbacks(), b.fallbacks()), (0, 0));
        clean_up(&url, &prefix).await;
    });
}

/// Named limits and account limits hold once across replicas too: every budget the keyring
/// names is charged in Redis, under its own name.
#[test]
fn named_and_account_limits_are_shared_by_replicas() {
    let Some(url) = redis_url() else { return };
    runtime().block_on(async {
        let prefix = unique_prefix();
        let named = |name: &str, requests: u32| {
            keygate::NamedLimit::new(name, limit(requests, 3_600, requests)).unwrap()
        };
        let mut keys = chain_of_keys(&[Some(limit(100, 60, 100)), None]);
        keys[0] = keys[0]
            .clone()
            .with_limits(vec![named("hourly", 3)])
            .unwrap();
        // Another key of the same account, with no limit of its own.
        let other = ApiKey::new(
            KeyId::from_bytes([42; 16]),
            "other",
            AccountId::from_u64(1),
            Scope::Account,
            Catalog::read_write_delete().all(),
            TokenHash::of("idc_test_other"),
            Timestamp::EPOCH,
        );
        let replica = |keys: &[ApiKey]| {
            let mut ring = Keyring::from_keys(Default::default(), keys.iter().cloned()).unwrap();
            ring.set_default_account_limits(vec![named("per-account", 5)])
                .unwrap();
            SharedKeyring::new(ring)
        };
        let (ring_a, ring_b) = (replica(&keys), replica(&keys));
        let a = limiter(&url, &prefix).await;
        let b = limiter(&url, &prefix).await;
        let now = at(1_800_000_000);
        let (parent, child) = (keys[0].id(), keys[1].id());
        // The parent's `hourly` of 3 holds across both replicas, charged by its child too.
        assert!(a.check(&ring_a, child, now).await.is_ok());
        assert!(b.check(&ring_b, parent, now).await.is_ok());
        assert!(a.check(&ring_a, parent, now).await.is_ok());
        for (limiter, ring) in [(&a, &ring_a), (&b, &ring_b)] {
            assert!(matches!(
                limiter.check(ring, child, now).await,
                Err(LimitRefusal::RateLimited(_))
            ));
        }
        // The account's 5 holds across both replicas: three spent above, refusals spent
        // nothing, so two more for a key with no limit of its own.
        let ring_c = replica(std::slice::from_ref(&other));
        assert!(b.check(&ring_c, other.id(), now).await.is_ok());
        assert!(a.check(&ring_c, other.id(), now).await.is_ok());
        assert!(matches!(
            b.check(&ring_c, other.id(), now).await,
            Err(LimitRefusal::RateLimited(_))
        ));
        clean_up(&url, &prefix).await;
    });
}

#[test]
fn a_chain_is_charged_all_or_nothing() {
    let Some(url) = redis_url() else { return };
    runtime().block_on(async {
        let prefix = unique_prefix();
        let limiter = limiter(&url, &prefix).await;
        // root: 2 per minute; middle: no limit; leaf: 1 per minute.
        let keys = chain_of_keys(&[Some(limit(2, 60, 2)), None, Some(limit(1, 60, 1))]);
        let ring = shared(&keys);
        let (root, middle, leaf) = (keys[0].id(), keys[1].id(), keys[2].id());
        let chain: Vec<_> = ring.read(|r| r.rate_limit_chain(leaf).unwrap().collect());
        assert_eq!(chain, [(leaf, limit(1, 60, 1)), (root, limit(2, 60, 2))]);

        let now = at(1_000);
        assert!(limiter.check(&ring, leaf, now).await.is_ok());
        // The leaf's own budget refuses; the root is not charged for it.
        let refused = limiter.check(&ring, leaf, now).await.unwrap_err();
        assert_eq!(refused.retry_after(), Some(60));
        // So the root still has one left, which the middle key (no limit of its own) spends.
        assert!(limiter.check(&ring, middle, now).await.is_ok());
        let Err(LimitRefusal::RateLimited(retry)) = limiter.check(&ring, root, now).await else {
            panic!("the root's budget of 2 is spent");
        };
        assert_eq!(retry.wait(), Duration::from_secs(30));
        // A minute on, the root spends its budget again; the leaf's own is back, but the root
        // refuses the leaf's request, so the leaf is not charged either: 30 s later, when the
        // root has room again, the leaf is admitted (had it been charged, it would wait 60 s).
        let later = at(1_060);
        assert!(limiter.check(&ring, root, later).await.is_ok());
        assert!(limiter.check(&ring, root, later).await.is_ok());
        let refused = limiter.check(&ring, leaf, later).await.unwrap_err();
        assert_eq!(refused.retry_after(), Some(30));
        assert!(limiter.check(&ring, leaf, at(1_090)).await.is_ok());

        // An unknown key is refused without asking Redis, as keygate refuses it.
        let unknown = limiter
            .check(&ring, KeyId::from_bytes([0xee; 16]), now)
            .await
            .unwrap_err();
        assert_eq!(unknown.retry_after(), Some(1));
        clean_up(&url, &prefix).await;
    });
}

#[test]
fn a_flushed_script_cache_is_reloaded() {
    let Some(url) = redis_url() else { return };
    runtime().block_on(async {
        let prefix = unique_prefix();
        let limiter = limiter(&url, &prefix).await;
        let chain = [(KeyId::from_bytes([1; 16]), limit(1, 60, 1))];
        assert_eq!(limiter.check_chain(&chain, at(0)).await.unwrap(), Ok(()));
        // As after a Redis restart or failover: EVALSHA answers NOSCRIPT, the script is loaded.
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut raw = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(
            limiter.check_chain(&chain, at(1)).await.unwrap(),
            Err(RetryAfter::until(at(1), at(60)))
        );
        // The state is an integer of microseconds, with an expiry: an hour (the margin) past the
        // TAT at 60 s, counted from now = 0 s.
        let key = format!("{prefix}{}", KeyId::from_bytes([1; 16]));
        let tat: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(tat, "60000000");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!((3_600_000..=3_660_000).contains(&ttl), "{ttl}");
        clean_up(&url, &prefix).await;
    });
}

// ---------------------------------------------------------------------------------------------
// Redis unreachable: no Redis needed.

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn unreachable_config(on_error: OnRedisError) -> RedisLimiterConfig {
    let mut config = RedisLimiterConfig::default();
    config.key_prefix = unique_prefix();
    config.timeout = Duration::from_millis(200);
    config.on_error = on_error;
    config
}

#[test]
fn an_unreachable_redis_fails_closed_by_default_and_quickly() {
    assert_eq!(
        RedisLimiterConfig::default().on_error,
        OnRedisError::FailClosed
    );
    runtime().block_on(async {
        let url = format!("redis://127.0.0.1:{}", closed_port());
        let limiter = RedisRateLimiter::connect(&url, unreachable_config(OnRedisError::default()))
            .await
            .unwrap();
        let keys = chain_of_keys(&[Some(limit(100, 60, 100)), None]);
        let ring = shared(&keys);
        for _ in 0..3 {
            let started = Instant::now();
            let refusal = limiter.check(&ring, keys[1].id(), at(0)).await.unwrap_err();
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{:?}",
                started.elapsed()
            );
            assert!(
                matches!(refusal, LimitRefusal::Unavailable(_)),
                "{refusal:?}"
            );
            assert_eq!(refusal.status(), 503);
            assert_eq!(refusal.retry_after(), None);
            assert_eq!(
                serde_json::to_string(&refusal.body(&Catalog::read_write_delete())).unwrap(),
                r#"{"error":"Rate limiter unavailable"}"#
            );
        }
        assert_eq!(limiter.fallbacks(), 0);
        // A key with no limit anywhere up its chain needs no Redis.
        let free = chain_of_keys(&[None]);
        assert!(
            limiter
                .check(&shared(&free), free[0].id(), at(0))
                .await
                .is_ok()
        );
    });
}

#[test]
fn an_unreachable_redis_can_fall_back_to_the_local_limiter() {
    runtime().block_on(async {
        let url = format!("redis://127.0.0.1:{}", closed_port());
        let limiter =
            RedisRateLimiter::connect(&url, unreachable_config(OnRedisError::FallBackToLocal))
                .await
                .unwrap();
        let keys = chain_of_keys(&[Some(limit(1, 60, 1))]);
        let ring = shared(&keys);
        let started = Instant::now();
        assert!(limiter.check(&ring, keys[0].id(), at(0)).await.is_ok());
        // The local limiter's decision, retry-after included.
        let Err(LimitRefusal::RateLimited(retry)) = limiter.check(&ring, keys[0].id(), at(0)).await
        else {
            panic!("the local budget of 1 is spent");
        };
        assert_eq!(retry, RetryAfter::until(at(0), at(60)));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(limiter.fallbacks(), 2);
    });
}

#[test]
fn a_redis_that_never_answers_times_out() {
    runtime().block_on(async {
        // Accepts connections (the kernel completes the handshake) and never replies.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let limiter = RedisRateLimiter::connect(&url, unreachable_config(OnRedisError::FailClosed))
            .await
            .unwrap();
        let chain = [(KeyId::from_bytes([1; 16]), limit(1, 60, 1))];
        let started = Instant::now();
        let error = limiter.check_chain(&chain, at(0)).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            matches!(
                error,
                RedisLimitError::Timeout(_) | RedisLimitError::Redis(_)
            ),
            "{error:?}"
        );
        drop(listener);
    });
}

#[test]
fn a_malformed_url_is_refused_at_once() {
    runtime().block_on(async {
        let error = RedisRateLimiter::connect("not a url", RedisLimiterConfig::default())
            .await
            .unwrap_err();
        assert!(matches!(error, RedisLimitError::Redis(_)), "{error:?}");
    });
}
