//! The scenario every engine encodes, and the seeded request mix they all decide.
//!
//! Plain data only: each engine turns it into its own keys, policies, entities or rules.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The moment the mix is centred on, in unix microseconds (2026-05-28).
pub const NOW: i64 = 1_780_000_000_000_000;
const DAY: i64 = 86_400_000_000;

/// How many accounts, and projects per account.
const ACCOUNTS: usize = 4;
const PROJECTS_PER_ACCOUNT: usize = 3;
/// Keys per account; a few more tokens that no key has.
const KEYS_PER_ACCOUNT: usize = 8;
const GHOSTS: usize = 4;

/// The coarse permissions of seed 001 come first, then seed 004's fine-grained names.
const COARSE: [&str; 3] = ["read", "write", "delete"];

/// Grants drawn for keys: coarse subsets, seed 004 patterns, and everything.
const GRANTS: &[&[&str]] = &[
    &["read"],
    &["read", "write"],
    &["read", "write", "delete"],
    &["agents:*"],
    &["*:read"],
    &["calls:*", "kb:read", "read"],
    &["agents:read", "workflows:*", "campaign:execute"],
    &["api-keys:write", "members:*", "write"],
    &["*"],
];

/// One key of the scenario.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// Its id, also its principal name in Cedar and casbin.
    pub id: String,
    /// The secret a client presents (keygate only: the peers are handed the identified key).
    pub token: String,
    /// Owning account, 0-based.
    pub account: usize,
    /// The project of a project-scoped key, an index into `Scenario::projects`.
    pub project: Option<usize>,
    /// Granted permissions, indices into `Scenario::permissions`, sorted.
    pub permissions: Vec<usize>,
    /// Expiry (exclusive) in unix microseconds.
    pub expires_at: Option<i64>,
    /// Revoked keys stay in every store, so each engine must deny them itself.
    pub revoked: bool,
}

/// A presented credential: a key of the scenario, or a token no key has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRef {
    Known(usize),
    Ghost(usize),
}

/// What a request targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The account itself (creating or destroying projects).
    Account,
    /// A listing of the account's projects.
    Listing,
    /// A resource inside this project (index into `Scenario::projects`).
    Project(usize),
}

/// One request of the mix.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub key: KeyRef,
    /// Index into `Scenario::permissions`.
    pub permission: usize,
    /// Whether the action is account-level (creating or destroying a project).
    pub account_level: bool,
    /// The account the resource belongs to, 0-based.
    pub account: usize,
    pub target: Target,
    /// The request time, unix microseconds.
    pub now: i64,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub accounts: usize,
    /// The owning account of each project.
    pub projects: Vec<usize>,
    /// Every permission name: the coarse three, then seed 004's list.
    pub permissions: Vec<String>,
    pub keys: Vec<KeySpec>,
    /// Tokens that no key has.
    pub ghost_tokens: Vec<String>,
}

fn seed_004() -> Vec<String> {
    let text = include_str!("../../../tests/data/seed_004_permissions.json");
    let value: serde_json::Value = serde_json::from_str(text).expect("seed 004 list is JSON");
    let list = value.get("permissions").unwrap_or(&value).clone();
    serde_json::from_value(list).expect("seed 004 list is an array of names")
}

/// A token in keygate's default format (`idc_` + 32 alphanumerics), from the scenario's seed.
fn token(rng: &mut StdRng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let body: String = (0..32)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("idc_{body}")
}

/// Expands a grant the way keygate's catalog does: exact names, `resource:*`, `*:action`, `*`.
fn expand(permissions: &[String], patterns: &[&str]) -> Vec<usize> {
    let mut out: Vec<usize> = permissions
        .iter()
        .enumerate()
        .filter(|(_, name)| {
            patterns.iter().any(|p| match p.split_once(':') {
                _ if *p == "*" => true,
                Some(("*", action)) => name.split_once(':').is_some_and(|(_, a)| a == action),
                Some((resource, "*")) => name.split_once(':').is_some_and(|(r, _)| r == resource),
                _ => name.as_str() == *p,
            })
        })
        .map(|(i, _)| i)
        .collect();
    out.sort_unstable();
    out
}

impl Scenario {
    pub fn generate(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut permissions: Vec<String> = COARSE.iter().map(|s| (*s).to_owned()).collect();
        permissions.extend(seed_004());
        let projects: Vec<usize> = (0..ACCOUNTS)
            .flat_map(|a| std::iter::repeat_n(a, PROJECTS_PER_ACCOUNT))
            .collect();
        let mut keys = Vec::new();
        for account in 0..ACCOUNTS {
            for n in 0..KEYS_PER_ACCOUNT {
                let project = if n % 2 == 0 {
                    None
                } else {
                    Some(account * PROJECTS_PER_ACCOUNT + rng.random_range(0..PROJECTS_PER_ACCOUNT))
                };
                let grant = GRANTS[rng.random_range(0..GRANTS.len())];
                let expires_at = match rng.random_range(0..10) {
                    0..=2 => None,
                    3..=4 => Some(NOW - rng.random_range(1..2 * DAY)),
                    5 => Some(NOW),
                    _ => Some(NOW + rng.random_range(1..2 * DAY)),
                };
                keys.push(KeySpec {
                    id: format!("k{account}-{n}"),
                    token: token(&mut rng),
                    account,
                    project,
                    permissions: expand(&permissions, grant),
                    expires_at,
                    revoked: rng.random_range(0..10) == 0,
                });
            }
        }
        let ghost_tokens = (0..GHOSTS).map(|_| token(&mut rng)).collect();
        Self {
            accounts: ACCOUNTS,
            projects,
            permissions,
            keys,
            ghost_tokens,
        }
    }

    pub fn key(&self, key: KeyRef) -> Option<&KeySpec> {
        match key {
            KeyRef::Known(i) => self.keys.get(i),
            KeyRef::Ghost(_) => None,
        }
    }

    /// The principal id Cedar and casbin are handed: the key's id, or an id no store has.
    pub fn principal_id(&self, key: KeyRef) -> String {
        match key {
            KeyRef::Known(i) => self.keys[i].id.clone(),
            KeyRef::Ghost(i) => format!("ghost-{i}"),
        }
    }

    /// The token keygate is handed.
    pub fn token(&self, key: KeyRef) -> &str {
        match key {
            KeyRef::Known(i) => &self.keys[i].token,
            KeyRef::Ghost(i) => &self.ghost_tokens[i],
        }
    }

    /// A fixed random mix, biased towards requests a key could plausibly make so that every
    /// rule, and allow, is well represented.
    pub fn requests(&self, seed: u64, count: usize) -> Vec<Request> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..count)
            .map(|_| {
                let key = if rng.random_range(0..100) < 4 {
                    KeyRef::Ghost(rng.random_range(0..self.ghost_tokens.len()))
                } else {
                    KeyRef::Known(rng.random_range(0..self.keys.len()))
                };
                let spec = self.key(key);
                let permission = match spec {
                    Some(k) if rng.random_range(0..10) < 6 && !k.permissions.is_empty() => {
                        k.permissions[rng.random_range(0..k.permissions.len())]
                    }
                    _ => rng.random_range(0..self.permissions.len()),
                };
                let account = match spec {
                    Some(k) if rng.random_range(0..100) < 85 => k.account,
                    _ => rng.random_range(0..self.accounts),
                };
                let target = match rng.random_range(0..100) {
                    0..=9 => Target::Account,
                    10..=24 => Target::Listing,
                    _ => match spec.and_then(|k| k.project) {
                        Some(p) if rng.random_range(0..10) < 6 => Target::Project(p),
                        _ if rng.random_range(0..10) < 7 => Target::Project(
                            account * PROJECTS_PER_ACCOUNT
                                + rng.random_range(0..PROJECTS_PER_ACCOUNT),
                        ),
                        _ => Target::Project(rng.random_range(0..self.projects.len())),
                    },
                };
                let account_level = match target {
                    Target::Account => rng.random_range(0..10) < 7,
                    _ => rng.random_range(0..20) == 0,
                };
                let now = match rng.random_range(0..10) {
                    0..=5 => NOW,
                    6 => NOW - 1,
                    7 => NOW + 1,
                    _ => NOW + rng.random_range(-2 * DAY..2 * DAY),
                };
                Request {
                    key,
                    permission,
                    account_level,
                    account,
                    target,
                    now,
                }
            })
            .collect()
    }
}
