//! The server's state, and the only module that touches keygate's keyring and the store.
//!
//! **Keys.** A [`SharedKeyring`]: lookups, rate limits and usage read a snapshot and take no
//! lock. A key change (create, regenerate, revoke, purge) takes the keyring's writer, stages the
//! change, commits it to the store, and only then applies it: a change is durable before any
//! response says it happened, and a failed commit (503) leaves the live keyring as it was.
//!
//! **Locks.** The keyring's writer (one key change at a time), the per-account id index and the
//! data (projects and recordings). No guard leaves this module, none is held across an `.await`,
//! and every critical section is a keyring call, a map operation or a store commit (about a
//! millisecond in SQLite, called directly from the handler: the writer is not `Send`). The one
//! policy for a poisoned lock is to recover it ([`read`], [`write`], [`lock`]): a poison could
//! then only come from a bug in keygate or std, and refusing every later request would turn that
//! bug into an outage without making anything safer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::{Bound, Deref};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use axum::http::StatusCode;
use keygate::axum::{ApiError, KeygateLayer};
use keygate::{
    AccountId, Action, ApiKey, AuthenticatedKey, Catalog, Decision, Deny, IssueError, Issuer,
    KeyId, KeySpec, Keyring, KeyringError, Permit, ProjectId, QuotaError, Resource, Scope,
    SharedKeyring, Timestamp, Token, TokenFormat, Usage, issue,
};
use keygate_store::{Commit, KeyStore, SqliteStore, StoredKey, UsageFlusher};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::projects::Project;
use crate::recordings::Recording;

/// How many keys one purge step removes while holding the keys' write lock. Each removal is
/// linear in the keyring's size, so a step at 100,000 keys stays in the tens of milliseconds and
/// requests get the lock between steps.
pub(crate) const PURGE_BATCH: usize = 32;

/// How many ids a new project or recording tries when other replicas sharing the store took
/// them first (each try is one commit that writes nothing).
const NEW_ID_ATTEMPTS: usize = 64;

/// Everything the server holds.
#[derive(Debug)]
pub struct App {
    pub(crate) config: Config,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) read: Action,
    pub(crate) write: Action,
    pub(crate) delete: Action,
    keys: Arc<SharedKeyring>,
    /// The format of the tokens this server mints and accepts (see [`load_keys`]).
    pub(crate) format: TokenFormat,
    /// Every stored key's id, per account, in id order: the listing order and cursor. Updated
    /// only after a change is applied, under the keyring's writer.
    by_account: RwLock<HashMap<AccountId, BTreeSet<KeyId>>>,
    data: Mutex<Data>,
    store: Box<dyn KeyStore + Send + Sync>,
    /// Usage counted but not yet in the store (kept across a failed flush, retried next time).
    usage: Mutex<UsageFlusher>,
    /// Other replicas' changes, on a shared PostgreSQL store: taken by [`serve`](crate::serve),
    /// which applies them as they come (see [`crate::replica`]).
    pub(crate) changes: Mutex<Option<keygate_store::PgListener>>,
    /// Every replica's rate limiters in one Redis (`--redis`); `None`: this replica's own.
    limiter: Option<keygate_store::redis::RedisRateLimiter>,
}

/// The document kind of a project in the store.
const PROJECT: &str = "project";
/// The document kind of a recording in the store.
const RECORDING: &str = "recording";

/// A project as stored: its account is not among its fields.
#[derive(Debug, Serialize, Deserialize)]
struct StoredProject {
    account: AccountId,
    project: Project,
}

/// A recording as stored, with its transcription (which its API view leaves out).
#[derive(Debug, Serialize, Deserialize)]
struct StoredRecording {
    account: AccountId,
    recording: Recording,
    transcription: String,
}

/// Projects and recordings. Ids are global (as a database's would be) and each account holds
/// its own, so another account's id is simply not found.
#[derive(Debug)]
pub(crate) struct Data {
    next_project: u64,
    next_recording: u64,
    accounts: HashMap<AccountId, Records>,
}

/// One account's projects and recordings, in id order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Records {
    pub(crate) projects: BTreeMap<u64, Project>,
    pub(crate) recordings: BTreeMap<u64, Recording>,
}

/// The router's state: the shared [`App`].
#[derive(Debug, Clone)]
pub struct AppState(Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl App {
    /// The layer that authenticates every supported route's requests, charges their rate limit
    /// (in Redis with `--redis`) and counts their usage: keygate's own, on this server's keys.
    pub(crate) fn keygate_layer(&self) -> KeygateLayer {
        let layer = KeygateLayer::new(Arc::clone(&self.keys), Arc::clone(&self.catalog))
            .with_route_prefix(crate::auth::API_PREFIX);
        match &self.limiter {
            Some(limiter) => layer.with_rate_limiter(Arc::new(SharedLimit(limiter.clone()))),
            None => layer,
        }
    }

    /// The key a token belongs to, as the layer would find it: for the routes the layer does
    /// not wrap (the 405 fallback, the planted router).
    pub(crate) fn authenticate(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<AuthenticatedKey, Deny> {
        self.keys.authenticate(token, now)
    }
}

/// Every replica's rate limits in Redis, as the layer's limiter.
struct SharedLimit(keygate_store::redis::RedisRateLimiter);

impl keygate::axum::RateLimiter for SharedLimit {
    fn check(&self, key: Arc<AuthenticatedKey>, now: Timestamp) -> keygate::axum::LimitFuture {
        let limiter = self.0.clone();
        Box::pin(async move {
            limiter.check_key(&key, now).await.map_err(|refusal| {
                if let keygate_store::redis::LimitRefusal::Unavailable(error) = &refusal {
                    tracing::error!(%error, "the Redis rate limiter is unavailable");
                }
                ApiError::from(refusal)
            })
        })
    }
}

/// The time now, as keygate takes it.
pub(crate) fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

/// Why a key could not be stored.
#[derive(Debug)]
pub(crate) enum StoreError {
    /// A configured or tier limit: 403.
    Quota(QuotaError),
    /// The keyring refused it (a hash-prefix collision, about 2⁻⁶⁴): 500.
    Keyring(KeyringError),
    /// The store failed to commit it: 503, nothing changed.
    Unavailable,
}

/// Why a key change (regenerate, revoke) did not happen.
#[derive(Debug)]
pub(crate) enum ChangeError {
    /// The keyring refused it.
    Keyring(KeyringError),
    /// The store failed to commit it: 503, nothing changed.
    Unavailable,
}

impl From<ChangeError> for ApiError {
    fn from(error: ChangeError) -> Self {
        match error {
            ChangeError::Keyring(error) => error.into(),
            ChangeError::Unavailable => unavailable(),
        }
    }
}

/// 503 `{"error": "Service unavailable"}`: the store failed (a disk, not the client's input).
pub(crate) fn unavailable() -> ApiError {
    ApiError::message(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable")
}

/// A document that does not serialize (a bug, not the client's input): logged, 503.
fn unserializable(error: keygate_store::StoreError) -> ApiError {
    store_failed("serialize a document", &error);
    unavailable()
}

/// Logs a failed store commit (never a secret: store errors carry ids and SQLite messages).
fn store_failed(what: &str, error: &keygate_store::StoreError) {
    tracing::error!(%error, "the store failed to {what}");
}

/// A page of items after a cursor, and whether more follow.
#[derive(Debug)]
pub(crate) struct Slice<T> {
    pub(crate) items: Vec<T>,
    pub(crate) more: bool,
}

impl<T> Slice<T> {
    /// The same page with each item turned into another.
    pub(crate) fn map<U>(self, f: impl FnMut(T) -> U) -> Slice<U> {
        Slice {
            items: self.items.into_iter().map(f).collect(),
            more: self.more,
        }
    }
}

/// Takes up to `limit` items from `iter` that pass `keep`, noting whether another would follow.
/// Linear in the items looked at, which the caller bounds (one account's).
pub(crate) fn take_page<T>(
    iter: impl Iterator<Item = T>,
    limit: usize,
    mut keep: impl FnMut(&T) -> bool,
) -> Slice<T> {
    let mut items = Vec::with_capacity(limit);
    let mut more = false;
    for item in iter.filter(|item| keep(item)) {
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(item);
    }
    Slice { items, more }
}

impl App {
    /// A server on a new in-memory store: `config.demo_accounts` accounts (ids 1, 2, ...), each
    /// with one bootstrap key (account-wide; every permission). Returns the state and the
    /// bootstrap tokens' plaintext, in account order, to be shown once.
    pub fn bootstrap(config: Config) -> Result<(AppState, Vec<Token>), Box<dyn std::error::Error>> {
        Self::open(config, SqliteStore::open_in_memory()?)
    }

    /// A server on `store`: its keys, usage, rate limiters, projects and recordings as stored.
    /// Only when the store holds no key at all are `config.demo_accounts` accounts bootstrapped
    /// (as [`App::bootstrap`] does) and their tokens returned; a restart returns none, and the
    /// keys it printed before still work.
    pub fn open(
        config: Config,
        store: impl KeyStore + Send + Sync + 'static,
    ) -> Result<(AppState, Vec<Token>), Box<dyn std::error::Error>> {
        Self::open_with(config, Box::new(store), None, None)
    }

    /// A replica on a PostgreSQL store that other replicas share: [`App::open`], and once served,
    /// it applies every key, project and recording change another replica commits, within
    /// milliseconds (the store's notices), and reloads everything after a lost connection and
    /// every `config.resync_interval` (see the README's "Running several replicas").
    ///
    /// With `limiter`, every rate limit is checked in that Redis, so that it holds once across
    /// all the replicas.
    pub fn open_replica(
        config: Config,
        store: keygate_store::PgStore,
        limiter: Option<keygate_store::redis::RedisRateLimiter>,
    ) -> Result<(AppState, Vec<Token>), Box<dyn std::error::Error>> {
        // Listening before loading: a change committed meanwhile is noticed (and the listener's
        // first notice is a resync anyway).
        let changes = store.listen(crate::replica::RECONNECT_EVERY);
        Self::open_with(config, Box::new(store), Some(changes), limiter)
    }

    /// [`App::open`] on any store, with other replicas' changes and a shared rate limiter.
    pub(crate) fn open_with(
        config: Config,
        store: Box<dyn KeyStore + Send + Sync>,
        changes: Option<keygate_store::PgListener>,
        limiter: Option<keygate_store::redis::RedisRateLimiter>,
    ) -> Result<(AppState, Vec<Token>), Box<dyn std::error::Error>> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(problems.join("; ").into());
        }
        let catalog = Catalog::read_write_delete();
        let read = Action::named(&catalog, "read")?;
        let write = Action::named(&catalog, "write")?;
        let delete = Action::named(&catalog, "delete")?;
        // Usage is counted per route: an index into per-key atomic counters, no string built.
        let mut ring = load_keys(&*store, &catalog)?.with_endpoints(crate::ENDPOINTS);
        ring.set_default_account_limits(config.account_limits.clone())?;
        let format = ring.format().clone();
        let mut by_account: HashMap<AccountId, BTreeSet<KeyId>> = HashMap::new();
        for key in ring.iter() {
            by_account
                .entry(key.account())
                .or_default()
                .insert(key.id());
        }
        let empty = ring.is_empty();
        let data = load_data(&*store)?;
        let app = App {
            config,
            catalog: Arc::new(catalog),
            read,
            write,
            delete,
            format,
            keys: Arc::new(SharedKeyring::new(ring)),
            by_account: RwLock::new(by_account),
            data: Mutex::new(data),
            store,
            usage: Mutex::new(UsageFlusher::default()),
            changes: Mutex::new(changes),
            limiter,
        };
        let mut tokens = Vec::new();
        if empty {
            for n in 1..=u64::from(app.config.demo_accounts) {
                let account = AccountId::from_u64(n);
                let owner = Issuer::user(account, Scope::Account, app.catalog.all());
                let spec = KeySpec::named("Bootstrap").format(app.format.clone());
                let issued = issue(&app.catalog, &owner, spec, now(), &mut rand::rng())?;
                app.insert_key(issued.key, now())
                    .map_err(|e| format!("cannot store a bootstrap key: {e:?}"))?;
                tokens.push(issued.token);
            }
        }
        Ok((AppState(Arc::new(app)), tokens))
    }

    // --- keys --------------------------------------------------------------------------------

    /// A stored key by id.
    pub(crate) fn key(&self, id: KeyId) -> Option<ApiKey> {
        self.keys.snapshot().get(id).cloned()
    }

    /// Up to `limit` of `account`'s keys with ids after `after`, in id order, that pass `keep`.
    pub(crate) fn key_page(
        &self,
        account: AccountId,
        after: Option<KeyId>,
        limit: usize,
        keep: impl Fn(&ApiKey) -> bool,
    ) -> Slice<ApiKey> {
        let ring = self.keys.snapshot();
        let index = read(&self.by_account);
        let Some(ids) = index.get(&account) else {
            return Slice {
                items: Vec::new(),
                more: false,
            };
        };
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let page = take_page(
            ids.range((start, Bound::Unbounded))
                .filter_map(|id| ring.get(*id)),
            limit,
            |key| keep(key),
        );
        // Copied out, so the index's lock is released before anything is serialized.
        Slice {
            items: page.items.into_iter().cloned().collect(),
            more: page.more,
        }
    }

    /// Stores a newly issued key, if its account is within its limits: durable before this
    /// returns. The count and the insert happen under the keyring's writer, so concurrent
    /// creations cannot overshoot.
    pub(crate) fn insert_key(&self, key: ApiKey, now: Timestamp) -> Result<(), StoreError> {
        let limits = self.config.limits;
        let mut writer = self.keys.writer();
        let ring = writer.keyring();
        let account = key.account();
        {
            let index = read(&self.by_account);
            let stored = index.get(&account);
            let count = stored.map_or(0, BTreeSet::len);
            if count >= usize::try_from(limits.max_keys).unwrap_or(usize::MAX) {
                return Err(StoreError::Quota(QuotaError::KeyLimit {
                    limit: limits.max_keys,
                }));
            }
            if let Scope::Project(project) = key.scope()
                && limits.tier.limits().keys_per_project.is_some()
            {
                let active = stored.into_iter().flatten().filter(|id| {
                    ring.get(**id)
                        .is_some_and(|k| k.scope() == Scope::Project(project) && k.is_active(now))
                });
                let active = u32::try_from(active.count()).unwrap_or(u32::MAX);
                limits
                    .tier
                    .check_new_key(active)
                    .map_err(StoreError::Quota)?;
            }
        }
        let id = key.id();
        let staged = writer.stage_insert(key).map_err(StoreError::Keyring)?;
        if let Err(error) = self.store.persist(&self.catalog, staged.change()) {
            store_failed("store a new key", &error);
            return Err(StoreError::Unavailable);
        }
        let _ = staged.apply();
        write(&self.by_account)
            .entry(account)
            .or_default()
            .insert(id);
        Ok(())
    }

    /// The key with this id as the caller of `issue` or `manage`: as the keyring holds it now,
    /// capped by its creator's current permissions.
    pub(crate) fn issuer(&self, id: KeyId, now: Timestamp) -> Result<Issuer, IssueError> {
        self.keys.snapshot().issuer(&self.catalog, id, now)
    }

    /// Gives the permitted key a new secret (the old one is refused at once, as IdentityCall's
    /// API says), durably, and returns the key as it now is, with the new token.
    pub(crate) fn rotate_key(
        &self,
        permit: &Permit,
        now: Timestamp,
    ) -> Result<(ApiKey, Token), ChangeError> {
        let mut writer = self.keys.writer();
        let staged = writer
            .stage_rotate(permit, now, None, &mut rand::rng())
            .map_err(ChangeError::Keyring)?;
        if let Err(error) = self.store.persist(&self.catalog, staged.change()) {
            store_failed("store a regenerated key", &error);
            return Err(ChangeError::Unavailable);
        }
        let id = permit.target();
        let token = staged
            .apply()
            .ok_or(ChangeError::Keyring(KeyringError::UnknownKeyId(id)))?;
        let key = writer
            .keyring()
            .get(id)
            .cloned()
            .ok_or(ChangeError::Keyring(KeyringError::UnknownKeyId(id)))?;
        Ok((key, token))
    }

    /// Revokes the permitted key, and every key it issued down the tree, from `now` on, durably.
    pub(crate) fn revoke_key(&self, permit: &Permit, now: Timestamp) -> Result<(), ChangeError> {
        let mut writer = self.keys.writer();
        let staged = writer
            .stage_revoke_tree(permit, now)
            .map_err(ChangeError::Keyring)?;
        if let Err(error) = self.store.persist(&self.catalog, staged.change()) {
            store_failed("store a revocation", &error);
            return Err(ChangeError::Unavailable);
        }
        let _ = staged.apply();
        Ok(())
    }

    /// A key's usage so far, counted by every replica sharing the store: the store's total, plus
    /// what this replica counted and has not yet written (a failed flush keeps it pending).
    /// Another replica's last seconds of counts show once it flushes them. `None`: no such key;
    /// `Err`: the store could not be read (503).
    pub(crate) fn usage(&self, id: KeyId) -> Result<Option<Usage>, ApiError> {
        // Under the flusher's lock, counts are in exactly one place: the store's total, the
        // flusher's pending deltas, or the keyring's counters.
        let flusher = lock(&self.usage);
        let Some(mut usage) = self.keys.read(|ring| ring.unflushed_usage(id)) else {
            return Ok(None);
        };
        if let Some(pending) = flusher.pending_usage(id) {
            usage.absorb(pending);
        }
        match self.store.load_key(id) {
            Ok(Some(StoredKey { state, .. })) => usage.absorb(&state.usage),
            // Removed from the store an instant ago: what is counted here is all there is.
            Ok(None) => {}
            Err(error) => {
                store_failed("read a key's usage", &error);
                return Err(unavailable());
            }
        }
        Ok(Some(usage))
    }

    // --- replication -------------------------------------------------------------------------

    /// Makes the keys with these ids what the store holds (another replica changed them):
    /// loaded under the keyring's writer, so that no local change can come between the read and
    /// the apply, and applied in one batch. Returns how many keys changed here.
    pub(crate) fn sync_keys(&self, ids: &[KeyId]) -> Result<usize, keygate_store::StoreError> {
        let mut writer = self.keys.writer();
        let current = writer.keyring();
        let mut changes = Vec::new();
        let mut credits = Vec::new();
        for id in ids {
            let stored = match self.store.load_key(*id)? {
                Some(stored) => {
                    if stored.state.usage.credits_spent().is_some() {
                        credits.push((*id, stored.state.usage.clone()));
                    }
                    Some(self.key_of(stored)?)
                }
                None => None,
            };
            if current.get(*id) != stored.as_ref() {
                changes.push((*id, stored));
            }
        }
        let applied = self.apply_synced(&mut writer, changes);
        sync_credits(&writer.keyring(), &credits);
        Ok(applied)
    }

    /// Makes every key what the store holds: after a lost connection, and periodically, in case
    /// a notice was lost. Returns how many keys changed here.
    pub(crate) fn resync_keys(&self) -> Result<usize, keygate_store::StoreError> {
        let mut writer = self.keys.writer();
        let current = writer.keyring();
        let mut changes = Vec::new();
        let mut seen = std::collections::HashSet::with_capacity(current.len());
        let mut credits = Vec::new();
        let catalog = &self.catalog;
        self.store.load_keys(&mut |stored| {
            let id = stored.record.id;
            if stored.state.usage.credits_spent().is_some() {
                credits.push((id, stored.state.usage.clone()));
            }
            let key = ApiKey::from_record(stored.record, catalog)
                .map_err(|error| keygate_store::StoreError::UnknownPermission { key: id, error })?;
            seen.insert(id);
            if current.get(id) != Some(&key) {
                changes.push((id, Some(key)));
            }
            Ok(())
        })?;
        changes.extend(
            current
                .iter()
                .filter(|key| !seen.contains(&key.id()))
                .map(|key| (key.id(), None)),
        );
        let applied = self.apply_synced(&mut writer, changes);
        sync_credits(&writer.keyring(), &credits);
        Ok(applied)
    }

    fn key_of(&self, stored: StoredKey) -> Result<ApiKey, keygate_store::StoreError> {
        let id = stored.record.id;
        ApiKey::from_record(stored.record, &self.catalog)
            .map_err(|error| keygate_store::StoreError::UnknownPermission { key: id, error })
    }

    /// Applies stored versions (`None`: removed) in one batch, and the id index with them.
    fn apply_synced(
        &self,
        writer: &mut keygate::Writer<'_>,
        changes: Vec<(KeyId, Option<ApiKey>)>,
    ) -> usize {
        if changes.is_empty() {
            return 0;
        }
        let (applied, index) = writer.batch(|ring| {
            let mut applied = 0usize;
            let mut index = Vec::new();
            for (id, stored) in changes {
                let before = ring.get(id).map(ApiKey::account);
                let staged = match &stored {
                    Some(key) => ring.stage_put(key.clone()),
                    None => ring.stage_remove(id),
                };
                match staged {
                    Ok(staged) => {
                        let _ = staged.apply();
                        applied = applied.saturating_add(1);
                        index.push((id, before, stored.as_ref().map(ApiKey::account)));
                    }
                    // The store refuses what the keyring would (shared secrets), so this is a
                    // store changed by hand: keep the key as it was here, and say so.
                    Err(error) => {
                        tracing::error!(key = %id, %error, "a stored key cannot be applied here");
                    }
                }
            }
            (applied, index)
        });
        let mut by_account = write(&self.by_account);
        for (id, before, after) in index {
            if let Some(account) = before
                && let Some(ids) = by_account.get_mut(&account)
            {
                ids.remove(&id);
            }
            if let Some(account) = after {
                by_account.entry(account).or_default().insert(id);
            }
        }
        applied
    }

    /// Reloads every project and recording from the store (another replica changed one).
    pub(crate) fn reload_documents(&self) -> Result<(), keygate_store::StoreError> {
        let mut data = lock(&self.data);
        let fresh = load_data(&*self.store)?;
        // Ids stay ahead of every id this replica handed out, even one whose commit is not back.
        let (next_project, next_recording) = (data.next_project, data.next_recording);
        *data = fresh;
        data.next_project = data.next_project.max(next_project);
        data.next_recording = data.next_recording.max(next_recording);
        Ok(())
    }

    /// `authorize` with the key's creator cap.
    pub(crate) fn decide(&self, key: &ApiKey, action: Action, resource: &Resource) -> Decision {
        self.keys
            .read(|ring| ring.authorize_key(key, action, resource, now()))
    }

    /// Removes up to [`PURGE_BATCH`] keys revoked or expired for longer than the configured
    /// retention, each removal committed to the store before it is applied. Returns how many keys
    /// it removed: call again while that is the whole batch (a store failure ends the batch
    /// early; the next purge retries).
    pub(crate) fn purge_step(&self, now: Timestamp) -> usize {
        let cutoff = now.saturating_sub(self.config.key_retention);
        let mut writer = self.keys.writer();
        let dead: Vec<(AccountId, KeyId)> = writer
            .keyring()
            .iter()
            .filter(|k| {
                k.revoked_at().is_some_and(|at| at <= cutoff)
                    || k.expires_at().is_some_and(|at| at <= cutoff)
            })
            .take(PURGE_BATCH)
            .map(|k| (k.account(), k.id()))
            .collect();
        let mut removed = 0usize;
        for (account, id) in &dead {
            let Ok(staged) = writer.stage_remove(*id) else {
                continue;
            };
            if let Err(error) = self.store.persist(&self.catalog, staged.change()) {
                store_failed("remove a purged key", &error);
                break;
            }
            let _ = staged.apply();
            if let Some(ids) = write(&self.by_account).get_mut(account) {
                ids.remove(id);
            }
            removed = removed.saturating_add(1);
        }
        // A batch cut short by a store failure must not look like the last one.
        if removed < dead.len() { 0 } else { removed }
    }

    /// Moves the usage counted since the last flush, and the rate limiters' states, to the
    /// store. A crash loses what was counted since the last flush, never a key change.
    pub(crate) fn flush_usage(&self) -> Result<usize, keygate_store::StoreError> {
        let ring = self.keys.snapshot();
        let flushed = lock(&self.usage).flush(&*self.store, &ring)?;
        self.store
            .save_rate_limits(&keygate_store::rate_limit_states(&ring))?;
        Ok(flushed)
    }

    // --- projects and recordings -------------------------------------------------------------

    /// Runs `f` on `account`'s projects and recordings, to read them.
    pub(crate) fn records<T>(&self, account: AccountId, f: impl FnOnce(&Records) -> T) -> T {
        let mut data = lock(&self.data);
        f(data.accounts.entry(account).or_default())
    }

    /// Runs `f` on a copy of `account`'s projects and recordings and, if it succeeds, commits
    /// what it changed to the store before the copy replaces them: a failed commit (503)
    /// changes nothing. The copy costs one account's records, which its limits bound.
    pub(crate) fn change_records<T>(
        &self,
        account: AccountId,
        f: impl FnOnce(&mut Records) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut data = lock(&self.data);
        let old = data.accounts.entry(account).or_default();
        let mut new = old.clone();
        let value = f(&mut new)?;
        let commit = diff(account, old, &new).map_err(unserializable)?;
        if !commit.is_empty() {
            self.store.commit(&commit).map_err(|error| {
                store_failed("store projects or recordings", &error);
                unavailable()
            })?;
        }
        *old = new;
        Ok(value)
    }

    /// Adds a project made by `make` from its new id, if the account is within its limits.
    pub(crate) fn add_project(
        &self,
        account: AccountId,
        make: impl FnOnce(u64) -> Project,
    ) -> Result<Project, ApiError> {
        let limits = self.config.limits;
        let mut data = lock(&self.data);
        let data = &mut *data;
        let records = data.accounts.entry(account).or_default();
        let count = u32::try_from(records.projects.len()).unwrap_or(u32::MAX);
        limits.tier.check_new_project(count)?;
        if count >= limits.max_projects {
            return Err(QuotaError::ProjectLimit {
                limit: limits.max_projects,
            }
            .into());
        }
        let mut project = make(data.next_project);
        for _ in 0..NEW_ID_ATTEMPTS {
            let mut commit = Commit::new();
            put_project(&mut commit, account, &project, true).map_err(unserializable)?;
            match self.store.commit(&commit) {
                Ok(()) => {
                    // 2⁶⁴ projects are out of reach; saturating keeps the arithmetic panic-free.
                    data.next_project = project.id.saturating_add(1);
                    records.projects.insert(project.id, project.clone());
                    return Ok(project);
                }
                // Another replica took the id an instant ago (its notice is on the way).
                Err(keygate_store::StoreError::DocumentExists { .. }) => {
                    project.id = project.id.saturating_add(1);
                }
                Err(error) => {
                    store_failed("store a project", &error);
                    return Err(unavailable());
                }
            }
        }
        tracing::error!("no free project id after {NEW_ID_ATTEMPTS} attempts");
        Err(unavailable())
    }

    /// Adds a recording made by `make` from its new id to an existing project of the account:
    /// `Ok(None)` when there is no such project.
    pub(crate) fn add_recording(
        &self,
        account: AccountId,
        project: ProjectId,
        make: impl FnOnce(u64) -> Recording,
    ) -> Result<Option<Recording>, ApiError> {
        let max = self.config.limits.max_recordings;
        let mut data = lock(&self.data);
        let data = &mut *data;
        let records = data.accounts.entry(account).or_default();
        let Some(project) = project
            .as_u64()
            .and_then(|id| records.projects.get_mut(&id))
        else {
            return Ok(None);
        };
        if records.recordings.len() >= usize::try_from(max).unwrap_or(usize::MAX) {
            return Err(ApiError::message(
                StatusCode::FORBIDDEN,
                "Recording limit reached",
            ));
        }
        let mut recording = make(data.next_recording);
        let mut counted = project.clone();
        counted.recordings_count = counted.recordings_count.saturating_add(1);
        for _ in 0..NEW_ID_ATTEMPTS {
            let mut commit = Commit::new();
            put_project(&mut commit, account, &counted, false).map_err(unserializable)?;
            put_recording(&mut commit, account, &recording, true).map_err(unserializable)?;
            match self.store.commit(&commit) {
                Ok(()) => {
                    *project = counted;
                    data.next_recording = recording.id.saturating_add(1);
                    records.recordings.insert(recording.id, recording.clone());
                    return Ok(Some(recording));
                }
                // Another replica took the id an instant ago (its notice is on the way).
                Err(keygate_store::StoreError::DocumentExists { .. }) => {
                    recording.id = recording.id.saturating_add(1);
                }
                Err(error) => {
                    store_failed("store a recording", &error);
                    return Err(unavailable());
                }
            }
        }
        tracing::error!("no free recording id after {NEW_ID_ATTEMPTS} attempts");
        Err(unavailable())
    }
}

/// The store's writes that turn `old` into `new`: every added or changed project and recording
/// put, every missing one deleted.
fn diff(
    account: AccountId,
    old: &Records,
    new: &Records,
) -> Result<Commit, keygate_store::StoreError> {
    let mut commit = Commit::new();
    for (id, project) in &new.projects {
        if old.projects.get(id) != Some(project) {
            put_project(&mut commit, account, project, false)?;
        }
    }
    for id in old
        .projects
        .keys()
        .filter(|id| !new.projects.contains_key(id))
    {
        commit.delete_document(PROJECT, &id.to_string());
    }
    for (id, recording) in &new.recordings {
        if old.recordings.get(id) != Some(recording) {
            put_recording(&mut commit, account, recording, false)?;
        }
    }
    for id in old
        .recordings
        .keys()
        .filter(|id| !new.recordings.contains_key(id))
    {
        commit.delete_document(RECORDING, &id.to_string());
    }
    Ok(commit)
}

/// Writes a project: a new one (`new`) only if no replica created one with its id first.
fn put_project(
    commit: &mut Commit,
    account: AccountId,
    project: &Project,
    new: bool,
) -> Result<(), keygate_store::StoreError> {
    let stored = StoredProject {
        account,
        project: project.clone(),
    };
    let id = project.id.to_string();
    if new {
        commit.create_document(PROJECT, &id, &stored)
    } else {
        commit.put_document(PROJECT, &id, &stored)
    }
}

/// Writes a recording: a new one (`new`) only if no replica created one with its id first.
fn put_recording(
    commit: &mut Commit,
    account: AccountId,
    recording: &Recording,
    new: bool,
) -> Result<(), keygate_store::StoreError> {
    let stored = StoredRecording {
        account,
        recording: recording.clone(),
        transcription: recording.transcription.clone(),
    };
    let id = recording.id.to_string();
    if new {
        commit.create_document(RECORDING, &id, &stored)
    } else {
        commit.put_document(RECORDING, &id, &stored)
    }
}

/// The settings document naming the token format of a store's keys.
const SETTINGS: &str = "settings";
const TOKEN_FORMAT: &str = "token_format";

/// Every stored key, in a keyring of the format the store's tokens have: checksummed
/// ([`TokenFormat::checksummed`], which `keygate scan` recognises once leaked) for a store this
/// version started, the plain format for one that held keys before, whose tokens must keep
/// working. The choice is stored with the keys, so it is made once, and every replica of a shared
/// store makes the same.
fn load_keys(
    store: &dyn KeyStore,
    catalog: &Catalog,
) -> Result<Keyring, keygate_store::StoreError> {
    let stored = store
        .load_documents(SETTINGS)?
        .into_iter()
        .find(|document| document.id == TOKEN_FORMAT)
        .map(|document| document.parse::<String>())
        .transpose()?;
    let load = |format| keygate_store::load_keyring(store, catalog, format);
    match stored.as_deref() {
        Some("checksummed") => load(TokenFormat::checksummed()),
        Some("plain") => load(TokenFormat::default()),
        Some(other) => Err(keygate_store::StoreError::Corrupt {
            what: format!("unknown token format {other:?} in the settings"),
        }),
        None => {
            let ring = load(TokenFormat::checksummed())?;
            let (ring, name) = if ring.is_empty() {
                (ring, "checksummed")
            } else {
                (load(TokenFormat::default())?, "plain")
            };
            let mut commit = Commit::new();
            commit.put_document(SETTINGS, TOKEN_FORMAT, name)?;
            store.commit(&commit)?;
            Ok(ring)
        }
    }
}

/// The stored projects and recordings, and the next ids: one past the largest stored.
fn load_data(store: &dyn KeyStore) -> Result<Data, keygate_store::StoreError> {
    let mut data = Data {
        next_project: 1,
        next_recording: 1,
        accounts: HashMap::new(),
    };
    for document in store.load_documents(PROJECT)? {
        let stored: StoredProject = document.parse()?;
        let id = stored.project.id;
        data.next_project = data.next_project.max(id.saturating_add(1));
        data.accounts
            .entry(stored.account)
            .or_default()
            .projects
            .insert(id, stored.project);
    }
    for document in store.load_documents(RECORDING)? {
        let stored: StoredRecording = document.parse()?;
        let mut recording = stored.recording;
        recording.transcription = stored.transcription;
        let id = recording.id;
        data.next_recording = data.next_recording.max(id.saturating_add(1));
        data.accounts
            .entry(stored.account)
            .or_default()
            .recordings
            .insert(id, recording);
    }
    Ok(data)
}

// The poisoned-lock policy (see the module docs), in one place.

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn lock<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Takes every replica's flushed credit spending into this keyring's balances: the store's
/// counts, with what this replica spent since its last flush kept on top.
fn sync_credits(ring: &Keyring, credits: &[(KeyId, Usage)]) {
    for (id, usage) in credits {
        ring.sync_credits(*id, usage);
    }
}
