//! Persistent storage for [`keygate`]: API key records, their usage and rate-limit state,
//! and a server's own documents, in SQLite.
//!
//! keygate itself does no I/O; this crate is where its keys meet a disk. The [`KeyStore`] trait
//! is what a server needs (load everything at start-up, persist each key change before applying
//! it, flush usage now and then); [`SqliteStore`] implements it in one SQLite file.
//!
//! ```
//! use keygate::{issue, Catalog, Issuer, KeySpec, Scope, AccountId, Timestamp, TokenFormat};
//! use keygate_store::{KeyStore, SqliteStore, load_keyring};
//! use rand::SeedableRng;
//!
//! let catalog = Catalog::read_write_delete();
//! let store = SqliteStore::open(":memory:")?; // a path in production
//! let mut keyring = load_keyring(&store, &catalog, TokenFormat::default())?;
//!
//! // Every change: stage it, persist it, then apply it. A failed save changes nothing.
//! let mut rng = rand::rngs::StdRng::seed_from_u64(1);
//! let now = Timestamp::from_unix_seconds(1_800_000_000);
//! let owner = Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all());
//! let issued = issue(&catalog, &owner, KeySpec::named("ci"), now, &mut rng)?;
//! let staged = keyring.stage_insert(issued.key)?;
//! store.persist(&catalog, staged.change())?; // durable when it returns
//! staged.apply();
//!
//! // The next start-up finds it.
//! let reloaded = load_keyring(&store, &catalog, TokenFormat::default())?;
//! assert!(reloaded.authenticate(issued.token.expose_secret(), now).is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is stored
//!
//! | table | holds |
//! |---|---|
//! | `keys` | one row per key: its id, and keygate's [`ApiKeyRecord`](keygate::ApiKeyRecord) as JSON text (permission *names*, so a catalog that grows never widens a key, and one that loses a name fails the load: [`StoreError::UnknownPermission`]) |
//! | `secrets` | every token hash a key holds, unique across all keys (below) |
//! | `usage` | each key's settled [`Usage`](keygate::Usage) as JSON |
//! | `rate_limits` | each rate-limited key's GCRA theoretical arrival time (µs) |
//! | `documents` | the server's own JSON documents by `(kind, id)` (projects, recordings, ...) |
//!
//! The schema is versioned in code ([`MIGRATIONS`]), applied in order by `PRAGMA user_version`
//! when a store opens; a database newer than the build is refused ([`StoreError::SchemaTooNew`]).
//!
//! **Secrets are unique, retired ones included.** The `secrets` table holds each key's current
//! token hash *and*, during a rotation grace period, its retired one, under one UNIQUE index. That
//! is the rule keygate's keyring enforces ([`KeyringError::DuplicateToken`](keygate::KeyringError)
//! covers retired secrets too), so a store never holds two keys sharing a secret, which
//! [`Keyring::from_keys`](keygate::Keyring::from_keys) would refuse to load together. (Two
//! different hashes sharing their first 8 bytes, about 2⁻⁶⁴ per pair, are the keyring's alone to
//! refuse: its staging does, before a change reaches the store.) A retired hash leaves the table when the key's record
//! is next written without it (the next rotation, or any change after a
//! [`Keyring::prune`](keygate::Keyring::prune)); until then it stays reserved, which costs
//! nothing (another key minting the same 256-bit hash is not a real event).
//!
//! # Durability, and what a crash can lose
//!
//! * **Key changes and documents** ([`KeyStore::commit`], [`KeyStore::persist`]) are written in
//!   one transaction with `synchronous=FULL`: once the call returns, the change survives a crash
//!   or a power loss. Follow *stage → persist → apply*: a change is published to requests only
//!   after it is on disk, and a failed save leaves both the store and the keyring as they were.
//!   A commit is idempotent: after a failure, the same commit may be retried.
//! * **Usage** lives in the keyring's atomic counters and reaches the store in batches of deltas
//!   ([`UsageFlusher`], every few seconds). A crash loses the counts since the last flush, and,
//!   because flushes commit with `synchronous=NORMAL`, a power loss can also lose the last
//!   flushes that no key change or checkpoint has synced since: the usage of the last seconds.
//!   Never a key change, and never a corrupt total: each flush is one transaction.
//! * **Rate limiters** are saved the same way ([`KeyStore::save_rate_limits`]): after a crash a
//!   key may get back the budget of its last seconds.
//!
//! Several replicas may share one SQLite file on one host: each flushes its own deltas, and the
//! store adds them (`total = total + delta`, read and written inside one write transaction).
//! Replicas do not see each other's key changes until they reload; for replicas on several hosts
//! that see each other's changes as they commit, use [`PgStore`] (feature `postgres`), which
//! announces every commit to [`PgStore::listen`]ers.
//!
//! # One rate limit across replicas (feature `redis`)
//!
//! Each replica's keyring limits requests in its own memory, so N replicas admit N times a
//! key's limit. With the `redis` feature, `RedisRateLimiter` keeps the limiters in one Redis and
//! makes exactly the decisions keygate's in-process limiter makes: see the module
//! `keygate_store::redis`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod commit;
mod error;
mod load;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
mod rows;
mod sqlite;
mod store;

#[cfg(feature = "redis")]
pub use crate::redis::{
    LimitRefusal, MAX_BUDGETS, OnRedisError, RedisLimitError, RedisLimiterConfig, RedisRateLimiter,
};
pub use commit::{Commit, Document, DocumentWrite, KeyWrite};
pub use error::StoreError;
pub use load::{UsageFlusher, load_keyring, rate_limit_states};
#[cfg(feature = "postgres")]
pub use postgres::{CHANNEL, Notice, PG_MIGRATIONS, PgListener, PgOptions, PgStore};
pub use sqlite::{MIGRATIONS, Migration, SCHEMA_VERSION, SqliteStore};
pub use store::{KeyStore, StoredKey};
