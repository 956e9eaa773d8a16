//! The command-line program (`cargo run --example server`, the `keygate-server` binary): options,
//! the store, the bootstrap print, serving.

use std::process::ExitCode;

use keygate_store::redis::{OnRedisError, RedisLimiterConfig, RedisRateLimiter};
use keygate_store::{PgOptions, PgStore, SqliteStore};

use crate::config::{Command, Config, Database, Env, RedisOnError};

/// `--help`.
pub(crate) const HELP: &str = "\
keygate reference API server: IdentityCall's public API subset (projects, recordings, API keys)
on keygate's embedded keyring. Keys, usage, projects and recordings are stored in SQLite
(keygate.db in the working directory unless --database says otherwise).

USAGE:
    cargo run --example server [-- OPTIONS]
    keygate-server [OPTIONS]

OPTIONS:
    --addr HOST:PORT          where to listen (default 127.0.0.1:8080; port 0 picks a free one)
    --demo-accounts N         accounts to create, each with its own key (default 1, at most 1000)
    --tier TIER               every account's seed 002 tier: free_starter (5 projects, 3 keys per
                              project), cloud_starter (20, 10) or cloud_premium (default: no tier cap)
    --max-projects N          projects per account, whatever the tier (default 1000)
    --max-keys N              keys stored per account, revoked and expired ones included until
                              purged (default 10000)
    --max-recordings N        recordings per account (default 10000)
    --key-retention SECONDS   how long revoked and expired keys are kept (default 2592000: 30 days)
    --purge-interval SECONDS  how often they are purged (default 60)
    --header-timeout SECONDS  time to send a request head (default and maximum 10)
    --idle-timeout SECONDS    an idle connection is closed after this (default 5, at most the
                              header timeout)
    --request-timeout SECONDS time to send a body and be answered, else 408 (default 30)
    --max-connections N       connections served at once (default 1024)
    --shutdown-grace SECONDS  on SIGINT/SIGTERM, time for in-flight requests (default 30)
    --trusted-proxy-header NAME
                              take the client address (for keys restricted to address ranges)
                              from this header's right-most entry, e.g. X-Forwarded-For, instead
                              of the TCP peer. Only behind a proxy that overwrites the header:
                              otherwise any client can claim any address
    --log-format text|json    request logs on standard error (default text)
    --database sqlite:PATH    where to store keys, usage, projects and recordings (default
                              sqlite:keygate.db); sqlite::memory: keeps everything in memory
                              postgres://USER@HOST:PORT/DB: a PostgreSQL database that several
                              replicas share, each applying the others' key changes as they commit
    --in-memory               the same as --database sqlite::memory: (gone when it stops)
    --resync-interval SECONDS on PostgreSQL, how often every key is reloaded whatever the change
                              notices said: the staleness bound should one be lost (default 30)
    --redis redis://HOST:PORT rate limits kept in Redis, so that a key's limit holds once across
                              every replica (default: each replica limits on its own)
    --redis-on-error closed|local
                              when Redis cannot be reached: refuse rate-limited requests with
                              503 (closed, the default) or let each replica limit on its own
    --account-limit NAME=REQUESTS/SECONDS
                              a rate limit every account's keys share, each account its own
                              budget (repeat for up to 4), e.g. per-minute=600/60; 429 once spent
    -h, --help                print this help

ENVIRONMENT:
    KEYGATE_ADDR              where to listen, if --addr is not given
    KEYGATE_DATABASE          the database, if --database is not given
    KEYGATE_REDIS             the Redis server, if --redis is not given

On its first start (a store with no keys) it creates one account-wide API key with read, write
and delete per account, and prints each once, on a line of its own, in account order; a restart
prints none and those keys keep working. A key change is on disk before it is answered; a crash
can lose at most the last 2 seconds of usage counts and rate-limit state.
Use a key as `Authorization: Bearer <key>` under /api/v1/public:
    POST|GET /projects, GET|PATCH|DELETE /projects/{id}
    POST|GET /recordings, GET|PATCH|DELETE /recordings/{id}, GET /recordings/{id}/transcription
    POST|GET /api_keys, GET /api_keys/me, GET|DELETE /api_keys/{id},
    POST /api_keys/{id}/regenerate, GET /api_keys/{id}/usage
Lists take ?limit=N (1-200, default 50) and ?cursor= from the previous page's next_cursor.
";

/// Runs the server as the command line `args` (without the program name) and the environment
/// (`KEYGATE_ADDR`, `KEYGATE_DATABASE`) say, until SIGINT or SIGTERM.
pub async fn run_cli(args: impl IntoIterator<Item = String>) -> ExitCode {
    let command = Command::parse_with_env(args, Env::from_process());
    let (addr, log_format, config) = match command {
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Serve {
            addr,
            log_format,
            config,
        }) => (addr, log_format, config),
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = crate::init_logging(log_format) {
        eprintln!("error: cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }
    match serve(addr, *config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    addr: std::net::SocketAddr,
    config: Config,
) -> Result<(), Box<dyn std::error::Error>> {
    let accounts = config.demo_accounts;
    let limiter = match &config.redis {
        Some(url) => {
            let mut options = RedisLimiterConfig::default();
            options.on_error = match config.redis_on_error {
                RedisOnError::FailClosed => OnRedisError::FailClosed,
                RedisOnError::FallBackToLocal => OnRedisError::FallBackToLocal,
            };
            // Lazy: a Redis that is down now is retried per request, under the policy above.
            Some(
                RedisRateLimiter::connect(url, options)
                    .await
                    .map_err(|e| format!("invalid Redis URL: {e}"))?,
            )
        }
        None => None,
    };
    let (state, tokens) = match &config.database {
        Database::Memory => {
            let store = Box::new(SqliteStore::open_in_memory()?);
            crate::App::open_with(config, store, None, limiter)?
        }
        Database::Sqlite(path) => {
            let store = SqliteStore::open(path)
                .map_err(|e| format!("cannot open the database {}: {e}", path.display()))?;
            crate::App::open_with(config, Box::new(store), None, limiter)?
        }
        Database::Postgres(url) => {
            let options = PgOptions::default().with_application_name("keygate-server");
            // The URL may hold a password: the error names the database, not the URL. Connecting
            // blocks (the store's own runtime does the work): off the async workers.
            let url = url.0.clone();
            let store = tokio::task::spawn_blocking(move || PgStore::connect_with(&url, options))
                .await?
                .map_err(|e| format!("cannot open the PostgreSQL database: {e}"))?;
            crate::App::open_replica(config, store, limiter)?
        }
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let shutdown = crate::shutdown_signal()?;
    let bound = listener.local_addr()?;
    println!("keygate reference server listening on http://{bound}/api/v1/public");
    if tokens.is_empty() {
        println!("keys loaded from the database: use the keys printed at its first start");
    } else if accounts == 1 {
        println!("bootstrap API key (account-wide: read, write, delete), shown once:");
    } else {
        println!(
            "bootstrap API keys (account-wide: read, write, delete), one per account 1 to {accounts}, shown once:"
        );
    }
    // Standard output, never the log: the one place these secrets are shown.
    for token in tokens {
        println!("{}", token.expose_secret());
    }
    crate::serve(listener, state, shutdown).await?;
    Ok(())
}
