//! What an operator can set: accounts, tier limits, key retention, connection limits and
//! timeouts, logging. [`Config::default`] is what `cargo run --example server` runs with;
//! [`Command::parse`] reads the command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use keygate::{LimitError, NamedLimit, RateLimit, Tier};

/// The longest header-read timeout accepted: slow clients must not hold sockets for longer.
pub const MAX_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The most demo accounts `--demo-accounts` creates (each prints a key at start-up).
pub const MAX_DEMO_ACCOUNTS: u32 = 1_000;

/// The whole server configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Accounts created at start-up, numbered from 1, each with its own bootstrap key.
    pub demo_accounts: u32,
    /// Per-account limits on stored state.
    pub limits: Limits,
    /// How long revoked and expired keys are kept (listed, with their usage) before they are
    /// removed.
    pub key_retention: Duration,
    /// How often the purge of revoked and expired keys runs.
    pub purge_interval: Duration,
    /// Connections, timeouts and sizes.
    pub http: HttpConfig,
    /// Where keys, usage, projects and recordings are stored.
    pub database: Database,
    /// A Redis server (`redis://HOST:PORT`) holding every replica's rate limiters, so that a
    /// key's limit holds once across all of them; `None`: each replica limits on its own.
    pub redis: Option<String>,
    /// What a request gets when Redis cannot be reached: refused (503, the default), or
    /// decided by this replica's own limiter.
    pub redis_on_error: RedisOnError,
    /// On a shared PostgreSQL store: how often a replica reloads every key, whatever notices it
    /// got. The bound on staleness should a notice ever be lost (see the README's "Running
    /// several replicas").
    pub resync_interval: Duration,
    /// Rate limits every account's keys share, each account its own budget
    /// (`--account-limit NAME=REQUESTS/SECONDS`, at most 4): keygate's
    /// `Keyring::set_default_account_limits`.
    pub account_limits: Vec<NamedLimit>,
}

/// Where the server stores its state (`--database`, `KEYGATE_DATABASE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (`sqlite:PATH`), created if missing: state survives restarts and crashes.
    Sqlite(PathBuf),
    /// An in-memory SQLite database (`sqlite::memory:`, `--in-memory`): gone when it stops.
    Memory,
    /// A PostgreSQL database (`postgres://USER[:PASSWORD]@HOST:PORT/DB`) that several replicas
    /// share.
    Postgres(PostgresUrl),
}

/// What a rate-limited request gets when Redis cannot be reached (`--redis-on-error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisOnError {
    /// Refused with 503: no request goes past a limit nobody can check (`closed`).
    #[default]
    FailClosed,
    /// Decided by this replica's own limiter: each replica then admits up to the whole limit,
    /// so a key may get up to N times its limit across N replicas while Redis is away (`local`).
    FallBackToLocal,
}

/// A PostgreSQL URL; its `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(pub String);

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // postgres://user:secret@host/db -> postgres://user:***@host/db
        let shown = match self.0.split_once("://") {
            Some((scheme, rest)) => match rest.split_once('@') {
                Some((user, host)) => match user.split_once(':') {
                    Some((name, _)) => format!("{scheme}://{name}:***@{host}"),
                    None => self.0.clone(),
                },
                None => self.0.clone(),
            },
            None => "(a PostgreSQL connection string)".to_owned(),
        };
        f.debug_tuple("PostgresUrl").field(&shown).finish()
    }
}

/// The database used when neither `--database` nor `KEYGATE_DATABASE` says another: a file in
/// the working directory, so that a plain `cargo run --example server` keeps its keys.
pub const DEFAULT_DATABASE: &str = "sqlite:keygate.db";

impl Database {
    /// Parses `sqlite:PATH`, `sqlite::memory:` or `postgres://...` (`postgresql://` too).
    pub fn parse(text: &str) -> Result<Database, String> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Database::Postgres(PostgresUrl(text.to_owned())));
        }
        match text.strip_prefix("sqlite:") {
            Some(":memory:") => Ok(Database::Memory),
            Some(path) if !path.is_empty() => Ok(Database::Sqlite(PathBuf::from(path))),
            _ => Err(format!(
                "--database is sqlite:PATH, sqlite::memory: or postgres://USER@HOST:PORT/DB; got {text:?}"
            )),
        }
    }
}

impl Default for Database {
    fn default() -> Self {
        Database::Sqlite(PathBuf::from("keygate.db"))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            demo_accounts: 1,
            limits: Limits::default(),
            key_retention: Duration::from_secs(30 * 24 * 3600),
            purge_interval: Duration::from_secs(60),
            http: HttpConfig::default(),
            database: Database::default(),
            redis: None,
            redis_on_error: RedisOnError::FailClosed,
            resync_interval: Duration::from_secs(30),
            account_limits: Vec::new(),
        }
    }
}

/// Per-account caps. The tier's caps (seed 002: projects per account, keys per project) apply
/// first; the `max_*` caps bound what any account may store, whatever its tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The seed 002 tier every account is on.
    pub tier: Tier,
    /// Projects per account.
    pub max_projects: u32,
    /// Keys stored per account, counting revoked and expired keys until they are purged: this
    /// bounds memory, where the tier's per-project cap counts active keys only.
    pub max_keys: u32,
    /// Recordings per account.
    pub max_recordings: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            tier: Tier::CloudPremium,
            max_projects: 1_000,
            max_keys: 10_000,
            max_recordings: 10_000,
        }
    }
}

/// Connection handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// A client must send a request's whole head within this time of starting to wait for it, or
    /// its connection is closed. At most [`MAX_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// A connection with no bytes in either direction for this long is closed. hyper's
    /// header-read timer also runs while a kept-alive connection waits for its next request, so
    /// this is at most `header_read_timeout`.
    pub idle_timeout: Duration,
    /// A request (reading its body, handling it) taking longer is answered 408.
    pub request_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// On shutdown, how long in-flight requests get to finish.
    pub shutdown_grace: Duration,
    /// Where a request's client address comes from, for keys restricted to address ranges:
    /// `None` (the default), the TCP peer; a header such as `X-Forwarded-For`, its right-most
    /// address, the one the nearest proxy appended. Only behind a proxy that sets or overwrites
    /// that header: a client reaching the server directly can write any address there. A request
    /// without a parseable address in it has no known address (a restricted key refuses it).
    pub trusted_proxy_header: Option<axum::http::HeaderName>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: MAX_HEADER_READ_TIMEOUT,
            idle_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_connections: 1_024,
            shutdown_grace: Duration::from_secs(30),
            trusted_proxy_header: None,
        }
    }
}

impl Config {
    /// Every problem with the configuration, one message each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=MAX_DEMO_ACCOUNTS).contains(&self.demo_accounts) {
            problems.push(format!(
                "demo accounts must be between 1 and {MAX_DEMO_ACCOUNTS}"
            ));
        }
        let http = &self.http;
        if http.header_read_timeout.is_zero() || http.header_read_timeout > MAX_HEADER_READ_TIMEOUT
        {
            problems.push("header read timeout must be more than 0 and at most 10 s".to_owned());
        }
        if http.idle_timeout.is_zero() || http.idle_timeout > http.header_read_timeout {
            problems.push(
                "idle timeout must be more than 0 and at most the header read timeout".to_owned(),
            );
        }
        if http.request_timeout.is_zero() {
            problems.push("request timeout must be more than 0".to_owned());
        }
        if http.max_connections == 0 || u32::try_from(http.max_connections).is_err() {
            problems.push("max connections must be between 1 and 4294967295".to_owned());
        }
        if self.purge_interval.is_zero() {
            problems.push("purge interval must be more than 0".to_owned());
        }
        if self.resync_interval.is_zero() {
            problems.push("resync interval must be more than 0".to_owned());
        }
        match NamedLimit::check_set(&self.account_limits) {
            Ok(()) => {}
            Err(LimitError::TooMany) => problems.push(format!(
                "at most {} account limits",
                keygate::MAX_NAMED_LIMITS
            )),
            Err(_) => problems.push("account limit names must be unique".to_owned()),
        }
        problems
    }
}

/// How the logs are written (to standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Print the help text.
    Help,
    /// Serve.
    Serve {
        /// Where to listen.
        addr: SocketAddr,
        /// The log format.
        log_format: LogFormat,
        /// Everything else.
        config: Box<Config>,
    },
}

/// The address used when neither `--addr` nor `KEYGATE_ADDR` says another.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

impl Command {
    /// Parses the arguments (without the program name); `env_addr` is `KEYGATE_ADDR`, if set.
    pub fn parse<I>(args: I, env_addr: Option<String>) -> Result<Command, String>
    where
        I: IntoIterator<Item = String>,
    {
        Self::parse_with_env(
            args,
            Env {
                addr: env_addr,
                ..Env::default()
            },
        )
    }

    /// [`Command::parse`], with the environment's settings under the command line's.
    pub fn parse_with_env<I>(args: I, env: Env) -> Result<Command, String>
    where
        I: IntoIterator<Item = String>,
    {
        let mut addr = env.addr;
        let mut log_format = LogFormat::Text;
        let mut config = Config::default();
        if let Some(text) = env.database {
            config.database =
                Database::parse(&text).map_err(|e| format!("KEYGATE_DATABASE: {e}"))?;
        }
        if let Some(text) = env.redis {
            config.redis = Some(parse_redis(&text).map_err(|e| format!("KEYGATE_REDIS: {e}"))?);
        }
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(Command::Help);
            }
            // The one flag without a value.
            if arg == "--in-memory" {
                config.database = Database::Memory;
                continue;
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value)),
                _ => (arg.clone(), None),
            };
            let value = match inline {
                Some(value) => value.to_owned(),
                None if flag.starts_with("--") => args
                    .next()
                    .ok_or_else(|| format!("{flag} needs a value; try --help"))?,
                None => return Err(format!("unknown argument {arg:?}; try --help")),
            };
            apply(&mut config, &mut addr, &mut log_format, &flag, &value)?;
        }
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let text = addr.unwrap_or_else(|| DEFAULT_ADDR.to_owned());
        let addr = text.parse().map_err(|_| {
            format!("invalid address {text:?}: expected HOST:PORT, e.g. 127.0.0.1:8080")
        })?;
        Ok(Command::Serve {
            addr,
            log_format,
            config: Box::new(config),
        })
    }
}

/// The settings the environment may give (each under the command line's flag).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    /// `KEYGATE_ADDR`.
    pub addr: Option<String>,
    /// `KEYGATE_DATABASE`.
    pub database: Option<String>,
    /// `KEYGATE_REDIS`.
    pub redis: Option<String>,
}

impl Env {
    /// The process's environment.
    pub fn from_process() -> Self {
        Self {
            addr: std::env::var("KEYGATE_ADDR").ok(),
            database: std::env::var("KEYGATE_DATABASE").ok(),
            redis: std::env::var("KEYGATE_REDIS").ok(),
        }
    }
}

/// `NAME=REQUESTS/SECONDS`, as `--account-limit` takes it.
fn parse_account_limit(text: &str) -> Result<NamedLimit, String> {
    let usage = || {
        format!("--account-limit is NAME=REQUESTS/SECONDS, such as per-minute=600/60; got {text:?}")
    };
    let (name, rate) = text.split_once('=').ok_or_else(usage)?;
    let (requests, seconds) = rate.split_once('/').ok_or_else(usage)?;
    let requests = requests.parse::<u32>().map_err(|_| usage())?;
    let seconds = seconds.parse::<u32>().map_err(|_| usage())?;
    let limit = RateLimit::per_period(requests, seconds)
        .map_err(|error| format!("--account-limit {text:?}: {error}"))?;
    NamedLimit::new(name, limit).map_err(|error| format!("--account-limit {text:?}: {error}"))
}

fn parse_redis(text: &str) -> Result<String, String> {
    if text.starts_with("redis://") && text.len() > "redis://".len() {
        Ok(text.to_owned())
    } else {
        Err(format!("--redis is redis://HOST:PORT; got {text:?}"))
    }
}

fn apply(
    config: &mut Config,
    addr: &mut Option<String>,
    log_format: &mut LogFormat,
    flag: &str,
    value: &str,
) -> Result<(), String> {
    let number = || {
        value
            .parse::<u64>()
            .map_err(|_| format!("{flag} needs a whole number, got {value:?}"))
    };
    let small = || u32::try_from(number()?).map_err(|_| format!("{flag} is too large"));
    let seconds = || number().map(Duration::from_secs);
    match flag {
        "--addr" => *addr = Some(value.to_owned()),
        "--demo-accounts" => config.demo_accounts = small()?,
        "--tier" => {
            config.limits.tier = match value {
                "free_starter" => Tier::FreeStarter,
                "cloud_starter" => Tier::CloudStarter,
                "cloud_premium" => Tier::CloudPremium,
                _ => {
                    return Err(format!(
                        "--tier is one of free_starter, cloud_starter, cloud_premium; got {value:?}"
                    ));
                }
            }
        }
        "--max-projects" => config.limits.max_projects = small()?,
        "--max-keys" => config.limits.max_keys = small()?,
        "--max-recordings" => config.limits.max_recordings = small()?,
        "--key-retention" => config.key_retention = seconds()?,
        "--purge-interval" => config.purge_interval = seconds()?,
        "--header-timeout" => config.http.header_read_timeout = seconds()?,
        "--idle-timeout" => config.http.idle_timeout = seconds()?,
        "--request-timeout" => config.http.request_timeout = seconds()?,
        "--max-connections" => {
            config.http.max_connections =
                usize::try_from(number()?).map_err(|_| format!("{flag} is too large"))?
        }
        "--shutdown-grace" => config.http.shutdown_grace = seconds()?,
        "--trusted-proxy-header" => {
            config.http.trusted_proxy_header = Some(
                axum::http::HeaderName::try_from(value)
                    .map_err(|_| format!("{flag} takes a header name; got {value:?}"))?,
            );
        }
        "--database" => config.database = Database::parse(value)?,
        "--redis" => config.redis = Some(parse_redis(value)?),
        "--redis-on-error" => {
            config.redis_on_error = match value {
                "closed" => RedisOnError::FailClosed,
                "local" => RedisOnError::FallBackToLocal,
                _ => {
                    return Err(format!(
                        "--redis-on-error is closed or local; got {value:?}"
                    ));
                }
            }
        }
        "--resync-interval" => config.resync_interval = seconds()?,
        "--account-limit" => config.account_limits.push(parse_account_limit(value)?),
        "--log-format" => {
            *log_format = match value {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(format!("--log-format is text or json; got {value:?}")),
            }
        }
        _ => return Err(format!("unknown option {flag}; try --help")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        Command::parse(args.iter().map(|a| (*a).to_owned()), None)
    }

    #[test]
    fn defaults_and_options() {
        let Ok(Command::Serve {
            addr,
            log_format,
            config,
        }) = parse(&[])
        else {
            panic!("no arguments serve");
        };
        assert_eq!(addr.to_string(), DEFAULT_ADDR);
        assert_eq!(log_format, LogFormat::Text);
        assert_eq!(*config, Config::default());
        assert!(config.problems().is_empty());

        let Ok(Command::Serve { config, addr, .. }) = parse(&[
            "--demo-accounts",
            "3",
            "--tier=free_starter",
            "--max-keys",
            "7",
            "--header-timeout",
            "4",
            "--idle-timeout=2",
            "--addr",
            "127.0.0.1:0",
        ]) else {
            panic!("options parse");
        };
        assert_eq!(addr.port(), 0);
        assert_eq!(config.demo_accounts, 3);
        assert_eq!(config.limits.tier, Tier::FreeStarter);
        assert_eq!(config.limits.max_keys, 7);
        assert_eq!(config.http.header_read_timeout, Duration::from_secs(4));
        assert_eq!(config.http.idle_timeout, Duration::from_secs(2));
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
        let Ok(Command::Serve { config, .. }) = parse(&[
            "--account-limit",
            "per-minute=600/60",
            "--account-limit=burst=10/1",
        ]) else {
            panic!("account limits parse");
        };
        let names: Vec<&str> = config.account_limits.iter().map(NamedLimit::name).collect();
        assert_eq!(names, ["per-minute", "burst"]);
        assert_eq!(config.account_limits[0].limit().requests(), 600);
        assert!(config.problems().is_empty());
        for bad in ["x", "x=1", "x=0/60", "x=1/0", "Bad=1/1", "x=-1/1"] {
            assert!(parse(&["--account-limit", bad]).is_err(), "{bad}");
        }
        let twice = parse(&["--account-limit", "a=1/1", "--account-limit", "a=2/1"]);
        assert!(
            twice
                .as_ref()
                .is_err_and(|e| e.contains("account limit names must be unique")),
            "{twice:?}"
        );
        let Ok(Command::Serve { config, .. }) = parse(&["--in-memory", "--demo-accounts", "2"])
        else {
            panic!("--in-memory takes no value");
        };
        assert_eq!(config.database, Database::Memory);
        assert_eq!(config.demo_accounts, 2);
        let Ok(Command::Serve { config, .. }) = parse(&["--database", "sqlite:/tmp/k.db"]) else {
            panic!("--database parses");
        };
        assert_eq!(
            config.database,
            Database::Sqlite(PathBuf::from("/tmp/k.db"))
        );
        assert_eq!(Database::parse(DEFAULT_DATABASE), Ok(Database::default()));
    }

    #[test]
    fn replicas_take_postgres_and_redis_from_flags_or_the_environment() {
        let url = "postgres://keygate:hunter2@db:5432/keys";
        let args = ["--database", url, "--redis", "redis://cache:6379"];
        let Ok(Command::Serve { config, .. }) = parse(&args) else {
            panic!("postgres and redis parse");
        };
        assert_eq!(
            config.database,
            Database::Postgres(PostgresUrl(url.to_owned()))
        );
        assert_eq!(config.redis.as_deref(), Some("redis://cache:6379"));
        assert_eq!(config.redis_on_error, RedisOnError::FailClosed);
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://keygate:***@db:5432/keys"),
            "{shown}"
        );

        let env = Env {
            database: Some(url.to_owned()),
            redis: Some("redis://env:1".to_owned()),
            ..Env::default()
        };
        let flags = ["--redis", "redis://flag:2", "--redis-on-error", "local"];
        let Ok(Command::Serve { config, .. }) =
            Command::parse_with_env(flags.map(str::to_owned), env)
        else {
            panic!("the environment parses");
        };
        assert!(matches!(config.database, Database::Postgres(_)));
        assert_eq!(
            config.redis.as_deref(),
            Some("redis://flag:2"),
            "the flag wins"
        );
        assert_eq!(config.redis_on_error, RedisOnError::FallBackToLocal);
        let bad = Env {
            redis: Some("cache:6379".to_owned()),
            ..Env::default()
        };
        assert!(Command::parse_with_env(Vec::<String>::new(), bad).is_err());
    }

    #[test]
    fn refusals() {
        for args in [
            &["--header-timeout", "11"][..],
            &["--idle-timeout", "20"],
            &["--demo-accounts", "0"],
            &["--demo-accounts", "1001"],
            &["--max-connections", "0"],
            &["--tier", "gold"],
            &["--max-keys", "-1"],
            &["--max-keys", "99999999999"],
            &["--addr", "nowhere"],
            &["--addr"],
            &["--bogus", "1"],
            &["--database", "mysql://x"],
            &["--redis", "localhost:6379"],
            &["--redis-on-error", "open"],
            &["--resync-interval", "0"],
            &["--database", "sqlite:"],
            &["stray"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }
}
