//! One rate limit across every replica: keygate's GCRA on a shared Redis (feature `redis`).
//!
//! keygate's own limiter ([`Keyring::check_rate_limit`](keygate::Keyring::check_rate_limit))
//! keeps each key's state in the replica's memory, so N replicas admit N times a key's limit.
//! [`RedisRateLimiter`] keeps that state in Redis instead and makes the same decisions: the same
//! integer-microsecond arithmetic ([`RateLimit::check`]), the same budgets (the key's own limit
//! and named limits, those of every key up its `issued_by` chain, and its account's, charged all
//! or nothing: [`Keyring::rate_limit_budgets`](keygate::Keyring::rate_limit_budgets)), the same
//! [`RetryAfter`], so the 429 body and `Retry-After` header do not change. Credits are not rate
//! limits: each replica's keyring spends them, and the store sums what the replicas spent.
//!
//! # How
//!
//! One Lua script (`src/redis/gcra.lua`), run atomically by Redis: one round trip per request,
//! whatever the number of budgets. It is sent by its SHA-1 (`EVALSHA`) and loaded on a
//! `NOSCRIPT` reply (after a Redis restart or failover), by the `redis` crate's
//! [`redis::Script`]. Each budget's theoretical arrival time (TAT) is one Redis string, the
//! prefix and the budget's name ([`keygate::Budget`]: by default `keygate:rl:0123…` for a key's
//! own limit, `keygate:rl:0123…:per-day` for a named one, `keygate:rl:account:7:per-minute` for
//! an account's), holding the TAT as decimal microseconds since the epoch. Each write sets
//! an expiry for when the TAT has passed, plus [`RedisLimiterConfig::expiry_margin`]: by then
//! the budget is full again, exactly as if the key had never been used, so idle keys cost
//! nothing. (The script does its arithmetic on exact `(seconds, microseconds)` pairs, because
//! Lua's numbers are doubles and keygate's i64 microseconds, saturating at the ends, are not all
//! doubles.)
//!
//! # Time
//!
//! The caller passes `now`: each replica's own clock, the same instant the rest of the request
//! is decided at (key expiry, usage), and what tests need to replay time. Redis's `TIME` is not
//! used. Clock skew between replicas therefore shows in the limit: a replica whose clock is `d`
//! ahead sees every TAT `d` earlier, so it may admit a key's next requests up to `d` early (about
//! `d / interval` more than the limit in a window), and a replica `d` behind refuses for up to
//! `d` longer. Keep the replicas' clocks synchronised (NTP keeps them within milliseconds, far
//! below the interval of any per-second limit). Expiry runs on Redis's clock: the margin (60 s by
//! default) must exceed the skew between Redis and the replicas, or a key may expire, and get its
//! burst back, up to the skew early.
//!
//! # When Redis is unreachable
//!
//! Every check is bounded by [`RedisLimiterConfig::timeout`] (connecting included), so a dead
//! Redis never holds a request for longer. Then [`RedisLimiterConfig::on_error`] decides:
//!
//! * [`OnRedisError::FailClosed`] (the default): the request is refused,
//!   [`LimitRefusal::Unavailable`], which a server answers with 503. No budget is ever exceeded,
//!   and the API is down while Redis is.
//! * [`OnRedisError::FallBackToLocal`]: the replica's own limiter decides
//!   ([`Keyring::check_rate_limit`](keygate::Keyring::check_rate_limit)). The API stays up,
//!   but each replica then grants the whole budget by itself (N replicas: N times the limit),
//!   from a local state that has not seen the requests Redis counted.
//!   [`RedisRateLimiter::fallbacks`] counts these, for a metric or an alert.
//!
//! # Not supported
//!
//! Redis Cluster: the keys of one chain would live on different shards, and a script may only
//! touch keys of one hash slot. Use one Redis (with a replica for failover).

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::sync::Arc;

use keygate::{
    Catalog, ErrorBody, KeyId, MAX_RATE_LIMIT_CHAIN, RateLimit, Refusal, ResponseBody, RetryAfter,
    SharedKeyring, Timestamp,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// What a check does when Redis cannot answer in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum OnRedisError {
    /// Refuse the request ([`LimitRefusal::Unavailable`], a 503). No limit is ever exceeded.
    #[default]
    FailClosed,
    /// Let the replica's in-process limiter decide: the API stays up, but every replica grants
    /// the full budget on its own while Redis is away.
    FallBackToLocal,
}

/// How a [`RedisRateLimiter`] talks to Redis. `RedisLimiterConfig::default()`, then change what
/// differs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisLimiterConfig {
    /// Prepended to each key id (hex) to name its Redis key. Default `keygate:rl:`; give each
    /// deployment sharing a Redis its own.
    pub key_prefix: String,
    /// The most one check may take, connecting included; past it, [`on_error`](Self::on_error)
    /// decides. Default 250 ms: a healthy Redis nearby answers in well under a millisecond.
    pub timeout: Duration,
    /// What a check does when Redis fails or is too slow. Default: fail closed.
    pub on_error: OnRedisError,
    /// How long a key's state outlives its TAT before Redis drops it (the budget is full by
    /// then anyway): at least the clock skew between Redis and the replicas. Default 60 s.
    pub expiry_margin: Duration,
}

impl Default for RedisLimiterConfig {
    fn default() -> Self {
        Self {
            key_prefix: "keygate:rl:".to_owned(),
            timeout: Duration::from_millis(250),
            on_error: OnRedisError::FailClosed,
            expiry_margin: Duration::from_secs(60),
        }
    }
}

/// Redis could not decide.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisLimitError {
    /// The connection or the command failed (refused, reset, a script error, ...).
    #[error("redis rate limiter: {0}")]
    Redis(#[from] redis::RedisError),
    /// No answer within [`RedisLimiterConfig::timeout`].
    #[error("redis rate limiter: no answer within {0:?}")]
    Timeout(Duration),
    /// The script answered something it never returns (another program's script under the same
    /// SHA-1, or a version mismatch).
    #[error("redis rate limiter: unexpected reply {0:?}")]
    Reply(String),
}

/// Why [`RedisRateLimiter::check`] refused a request.
#[derive(Debug, thiserror::Error)]
pub enum LimitRefusal {
    /// A budget of the chain is spent: 429 with `Retry-After`, as keygate's own limiter.
    #[error(transparent)]
    RateLimited(#[from] RetryAfter),
    /// Redis could not decide and the limiter fails closed: 503.
    #[error(transparent)]
    Unavailable(RedisLimitError),
}

impl Refusal for LimitRefusal {
    /// 429 for a spent budget, 503 when the limiter is unavailable.
    fn status(&self) -> u16 {
        match self {
            LimitRefusal::RateLimited(retry) => retry.status(),
            LimitRefusal::Unavailable(_) => 503,
        }
    }

    /// keygate's 429 body, or `{"error": "Rate limiter unavailable"}` (the Redis error is for
    /// the server's log, not the client).
    fn body(&self, catalog: &Catalog) -> ResponseBody {
        match self {
            LimitRefusal::RateLimited(retry) => retry.body(catalog),
            LimitRefusal::Unavailable(_) => {
                ResponseBody::Error(ErrorBody::new("Rate limiter unavailable"))
            }
        }
    }

    /// The 429's; none for a 503.
    fn retry_after(&self) -> Option<u64> {
        match self {
            LimitRefusal::RateLimited(retry) => retry.retry_after(),
            LimitRefusal::Unavailable(_) => None,
        }
    }
}

/// keygate's per-key rate limits, shared by every replica through one Redis. Cheap to clone
/// (clones share the connection and the fallback count); every check is one round trip on one
/// multiplexed connection, reconnected when it drops.
///
/// ```no_run
/// use keygate::{SharedKeyring, Timestamp, Refusal};
/// use keygate_store::{RedisLimiterConfig, RedisRateLimiter, OnRedisError};
///
/// # async fn demo(keys: SharedKeyring, id: keygate::KeyId) -> Result<(), Box<dyn std::error::Error>> {
/// let mut config = RedisLimiterConfig::default();
/// config.on_error = OnRedisError::FailClosed; // the default: 503 while Redis is away
/// let limiter = RedisRateLimiter::connect("redis://127.0.0.1:6379", config).await?;
///
/// // Per request, once the key is authenticated:
/// let now = Timestamp::from_system_time(std::time::SystemTime::now());
/// match limiter.check(&keys, id, now).await {
///     Ok(()) => { /* go on */ }
///     Err(refusal) => {
///         // 429 with Retry-After, or 503: keygate's Refusal gives status, body and header.
///         let (status, retry_after) = (refusal.status(), refusal.retry_after());
///         # let _ = (status, retry_after);
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisRateLimiter {
    connection: ConnectionManager,
    script: redis::Script,
    config: RedisLimiterConfig,
    /// Shared by clones: one count per limiter, however many handles.
    fallbacks: Arc<AtomicU64>,
}

/// The script; see the file for its arguments and replies.
const GCRA_LUA: &str = include_str!("redis/gcra.lua");

impl RedisRateLimiter {
    /// A limiter on the Redis at `url` (`redis://host:port/db`, `rediss://` needs the `redis`
    /// crate's TLS features). Connects lazily: a replica may start while Redis is down, and its
    /// checks then follow [`RedisLimiterConfig::on_error`] until Redis is back. Only a malformed
    /// URL fails here. Call it inside a tokio runtime (the connection's driver is spawned on it).
    pub async fn connect(url: &str, config: RedisLimiterConfig) -> Result<Self, RedisLimitError> {
        let client = redis::Client::open(url)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            // A lost connection is retried a few times, quickly; each check is bounded by
            // `config.timeout` whatever the retries do.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_secs(1));
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config)?;
        Ok(Self {
            connection,
            script: redis::Script::new(GCRA_LUA),
            config,
            fallbacks: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &RedisLimiterConfig {
        &self.config
    }

    /// How many checks Redis could not decide and the local limiter did
    /// ([`OnRedisError::FallBackToLocal`]), by this limiter and its clones.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// The rate-limit decision for the key with this id at `now`: every budget the keyring
    /// names for it ([`Keyring::rate_limit_budgets`](keygate::Keyring::rate_limit_budgets): its
    /// own limit and named ones up its issuing chain, then its account's), charged in Redis all
    /// or nothing. A key with no limit anywhere is admitted without a round trip; an unknown id
    /// or a chain deeper than [`MAX_RATE_LIMIT_CHAIN`] is refused (retry in a second), as keygate
    /// refuses them. When Redis cannot decide, [`RedisLimiterConfig::on_error`] does:
    /// [`LimitRefusal::Unavailable`], or keygate's in-process limiter. Credits are not charged
    /// here: they stay in each replica's keyring
    /// ([`AuthenticatedKey::spend_credits`](keygate::AuthenticatedKey::spend_credits)).
    pub async fn check(
        &self,
        keys: &SharedKeyring,
        id: KeyId,
        now: Timestamp,
    ) -> Result<(), LimitRefusal> {
        // Copied out of the snapshot: the snapshot is not held across the round trip.
        let budgets = keys.read(|ring| ring.rate_limit_budgets(id).map(named_budgets));
        self.decide(budgets, now, || {
            keys.read(|ring| ring.check_rate_limit(id, now))
        })
        .await
    }

    /// [`check`](Self::check) for a key a [`SharedKeyring`] authenticated: its budgets are read
    /// from the snapshot it was found in, and a fallback to the local limiter
    /// ([`OnRedisError::FallBackToLocal`]) charges that snapshot's state.
    pub async fn check_key(
        &self,
        key: &keygate::AuthenticatedKey,
        now: Timestamp,
    ) -> Result<(), LimitRefusal> {
        // Copied out: nothing of the snapshot is read across the round trip.
        let budgets = key.rate_limit_budgets().map(named_budgets);
        self.decide(budgets, now, || key.check_rate_limit(now))
            .await
    }

    /// Charges `budgets` in Redis (`None`: a chain keygate refuses to check, refused too), with
    /// [`RedisLimiterConfig::on_error`] applied: `local` is the replica's own limiter.
    async fn decide(
        &self,
        budgets: Option<Vec<(String, RateLimit)>>,
        now: Timestamp,
        local: impl FnOnce() -> Result<(), RetryAfter>,
    ) -> Result<(), LimitRefusal> {
        let Some(budgets) = budgets else {
            return Err(RetryAfter::after(now, Duration::from_secs(1)).into());
        };
        match self.check_budgets(&budgets, now).await {
            Ok(decision) => decision.map_err(LimitRefusal::RateLimited),
            Err(error) => match self.config.on_error {
                OnRedisError::FailClosed => Err(LimitRefusal::Unavailable(error)),
                OnRedisError::FallBackToLocal => {
                    self.fallbacks.fetch_add(1, Ordering::Relaxed);
                    local().map_err(LimitRefusal::RateLimited)
                }
            },
        }
    }

    /// [`check_budgets`](Self::check_budgets) on a chain of keys' own limits, each budget named
    /// by its key id: the key's own limit first, then its ancestors', as
    /// [`Keyring::rate_limit_chain`](keygate::Keyring::rate_limit_chain) gives it. One longer
    /// than [`MAX_RATE_LIMIT_CHAIN`] is refused (retry in a second), as keygate refuses a chain
    /// it cannot check.
    pub async fn check_chain(
        &self,
        chain: &[(KeyId, RateLimit)],
        now: Timestamp,
    ) -> Result<Result<(), RetryAfter>, RedisLimitError> {
        if chain.len() > MAX_RATE_LIMIT_CHAIN {
            return Ok(Err(RetryAfter::after(now, Duration::from_secs(1))));
        }
        let budgets: Vec<(String, RateLimit)> = chain
            .iter()
            .map(|(id, limit)| (keygate::Budget::Key(*id).to_string(), *limit))
            .collect();
        self.check_budgets(&budgets, now).await
    }

    /// One all-or-nothing GCRA step on these budgets at `now`, in one round trip: `Ok(Ok(()))`
    /// when every budget admits the request (each is charged), `Ok(Err(retry))` when one refuses
    /// (none is charged; `retry` is the first refusing budget's, in order), `Err` when Redis
    /// could not decide (nothing is known to be charged; [`RedisLimiterConfig::on_error`] is not
    /// applied here, the caller decides).
    ///
    /// Each budget is named as [`keygate::Budget`] shows it (`<key id>`, `<key id>:<name>`,
    /// `account:<account id>:<name>`) and kept in Redis under the configured prefix and that
    /// name; a budget named twice is charged twice. An empty list is admitted without a round
    /// trip; one longer than keygate could ever ask for ([`MAX_BUDGETS`]) is refused (retry in a
    /// second).
    pub async fn check_budgets(
        &self,
        budgets: &[(String, RateLimit)],
        now: Timestamp,
    ) -> Result<Result<(), RetryAfter>, RedisLimitError> {
        if budgets.is_empty() {
            return Ok(Ok(()));
        }
        if budgets.len() > MAX_BUDGETS {
            return Ok(Err(RetryAfter::after(now, Duration::from_secs(1))));
        }
        let mut invocation = self.script.prepare_invoke();
        invocation
            .arg(now.unix_micros())
            .arg(u64::try_from(self.config.expiry_margin.as_millis()).unwrap_or(u64::MAX));
        for (name, limit) in budgets {
            invocation
                .key(format!("{}{name}", self.config.key_prefix))
                .arg(limit.interval_micros())
                .arg(limit.tolerance_micros());
        }
        let mut connection = self.connection.clone();
        let reply: Vec<redis::Value> = tokio::time::timeout(
            self.config.timeout,
            invocation.invoke_async(&mut connection),
        )
        .await
        .map_err(|_| RedisLimitError::Timeout(self.config.timeout))??;
        decode(&reply, now)
    }
}

/// The most budgets keygate charges one request to: a full chain of keys, each with its own
/// limit and a full set of named ones, and a full set of account limits.
pub const MAX_BUDGETS: usize =
    MAX_RATE_LIMIT_CHAIN * (1 + keygate::MAX_NAMED_LIMITS) + keygate::MAX_NAMED_LIMITS;

/// Budgets as the script names them.
fn named_budgets<'a>(
    budgets: impl Iterator<Item = (keygate::Budget<'a>, RateLimit)>,
) -> Vec<(String, RateLimit)> {
    budgets
        .map(|(budget, limit)| (budget.to_string(), limit))
        .collect()
}

/// The script's reply: `[1]`, or `[0, at]` with `at` decimal i64 microseconds.
fn decode(
    reply: &[redis::Value],
    now: Timestamp,
) -> Result<Result<(), RetryAfter>, RedisLimitError> {
    let unexpected = || RedisLimitError::Reply(format!("{reply:?}"));
    match reply {
        [redis::Value::Int(1)] => Ok(Ok(())),
        [redis::Value::Int(0), at] => {
            let at: i64 = redis::from_redis_value_ref(at).map_err(|_| unexpected())?;
            Ok(Err(RetryAfter::until(now, Timestamp::from_unix_micros(at))))
        }
        _ => Err(unexpected()),
    }
}
