//! The server's state, and the only module that touches keygate's keyring: swap the store here
//! and nothing else changes.
//!
//! **Locks.** Two locks, both private to this module: the keys (the keyring and an index of key
//! ids by account) and the data (projects and recordings). No guard leaves this module, none is
//! held across an `.await`, and every critical section is a keyring call or a map operation
//! with no code that the workspace lints let panic. The one policy for a poisoned lock is to
//! recover it ([`read`], [`write`], [`lock`]): a poison could then only come from a bug in
//! keygate or std, and refusing every later request would turn that bug into an outage without
//! making anything safer (a keyring left half-updated denies: its index would point at a missing
//! slot, which `authenticate` treats as an unknown key).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::{Bound, Deref};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use axum::extract::FromRef;
use keygate::axum::KeyLookup;
use keygate::{
    AccountId, Action, ApiKey, Catalog, Decision, Deny, IssueError, Issuer, KeyId, KeySpec,
    Keyring, KeyringError, Permit, ProjectId, QuotaError, Resource, RetryAfter, Scope, Timestamp,
    Token, Usage, issue,
};

use crate::config::Config;
use crate::projects::Project;
use crate::recordings::Recording;

/// How many keys one purge step removes while holding the keys' write lock. Each removal is
/// linear in the keyring's size, so a step at 100,000 keys stays in the tens of milliseconds and
/// requests get the lock between steps.
pub(crate) const PURGE_BATCH: usize = 32;

/// Everything the server holds.
#[derive(Debug)]
pub struct App {
    pub(crate) config: Config,
    pub(crate) catalog: Catalog,
    pub(crate) read: Action,
    pub(crate) write: Action,
    pub(crate) delete: Action,
    keys: RwLock<Keys>,
    data: Mutex<Data>,
}

#[derive(Debug)]
struct Keys {
    ring: Keyring,
    /// Every stored key's id, per account, in id order: the listing order and cursor.
    by_account: HashMap<AccountId, BTreeSet<KeyId>>,
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
#[derive(Debug, Default)]
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

impl FromRef<AppState> for Arc<dyn KeyLookup> {
    fn from_ref(state: &AppState) -> Self {
        state.0.clone()
    }
}

impl KeyLookup for App {
    fn authenticate(&self, token: &str, now: Timestamp) -> Result<ApiKey, Deny> {
        read(&self.keys).ring.authenticate(token, now).cloned()
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
    /// A server for `config.demo_accounts` accounts (ids 1, 2, ...), each with one bootstrap key
    /// (account-wide; every permission). Returns the state and the bootstrap tokens' plaintext,
    /// in account order, to be shown once.
    pub fn bootstrap(config: Config) -> Result<(AppState, Vec<Token>), Box<dyn std::error::Error>> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(problems.join("; ").into());
        }
        let catalog = Catalog::read_write_delete();
        let read = Action::named(&catalog, "read")?;
        let write = Action::named(&catalog, "write")?;
        let delete = Action::named(&catalog, "delete")?;
        let mut keys = Keys {
            // Usage is counted per route: an index into per-key atomic counters, no string built.
            ring: Keyring::default().with_endpoints(crate::ENDPOINTS),
            by_account: HashMap::new(),
        };
        let mut tokens = Vec::new();
        for n in 1..=u64::from(config.demo_accounts) {
            let account = AccountId::from_u64(n);
            let owner = Issuer::user(account, Scope::Account, catalog.all());
            let spec = KeySpec::named("Bootstrap");
            let issued = issue(&catalog, &owner, spec, now(), &mut rand::rng())?;
            keys.by_account
                .entry(account)
                .or_default()
                .insert(issued.key.id());
            keys.ring.insert(issued.key)?;
            tokens.push(issued.token);
        }
        let app = App {
            config,
            catalog,
            read,
            write,
            delete,
            keys: RwLock::new(keys),
            data: Mutex::new(Data {
                next_project: 1,
                next_recording: 1,
                accounts: HashMap::new(),
            }),
        };
        Ok((AppState(Arc::new(app)), tokens))
    }

    // --- keys --------------------------------------------------------------------------------

    /// A stored key by id.
    pub(crate) fn key(&self, id: KeyId) -> Option<ApiKey> {
        read(&self.keys).ring.get(id).cloned()
    }

    /// Up to `limit` of `account`'s keys with ids after `after`, in id order, that pass `keep`.
    pub(crate) fn key_page(
        &self,
        account: AccountId,
        after: Option<KeyId>,
        limit: usize,
        keep: impl Fn(&ApiKey) -> bool,
    ) -> Slice<ApiKey> {
        let keys = read(&self.keys);
        let Some(ids) = keys.by_account.get(&account) else {
            return Slice {
                items: Vec::new(),
                more: false,
            };
        };
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let page = take_page(
            ids.range((start, Bound::Unbounded))
                .filter_map(|id| keys.ring.get(*id)),
            limit,
            |key| keep(key),
        );
        // Copied out, so the lock is released before anything is serialized.
        Slice {
            items: page.items.into_iter().cloned().collect(),
            more: page.more,
        }
    }

    /// Stores a newly issued key, if its account is within its limits. The count and the insert
    /// happen under one lock, so concurrent creations cannot overshoot.
    pub(crate) fn insert_key(&self, key: ApiKey, now: Timestamp) -> Result<(), StoreError> {
        let limits = self.config.limits;
        let mut keys = write(&self.keys);
        let keys = &mut *keys;
        let account = key.account();
        let stored = keys.by_account.get(&account);
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
                keys.ring
                    .get(**id)
                    .is_some_and(|k| k.scope() == Scope::Project(project) && k.is_active(now))
            });
            let active = u32::try_from(active.count()).unwrap_or(u32::MAX);
            limits
                .tier
                .check_new_key(active)
                .map_err(StoreError::Quota)?;
        }
        let id = key.id();
        keys.ring.insert(key).map_err(StoreError::Keyring)?;
        keys.by_account.entry(account).or_default().insert(id);
        Ok(())
    }

    /// The key with this id as the caller of `issue` or `manage`: as the keyring holds it now,
    /// capped by its creator's current permissions.
    pub(crate) fn issuer(&self, id: KeyId, now: Timestamp) -> Result<Issuer, IssueError> {
        read(&self.keys).ring.issuer(&self.catalog, id, now)
    }

    /// Gives the permitted key a new secret (the old one is refused at once, as IdentityCall's
    /// API says) and returns the key as it now is, with the new token.
    pub(crate) fn rotate_key(
        &self,
        permit: &Permit,
        now: Timestamp,
    ) -> Result<(ApiKey, Token), KeyringError> {
        let mut keys = write(&self.keys);
        let token = keys.ring.rotate(permit, now, None, &mut rand::rng())?;
        let id = permit.target();
        let key = keys
            .ring
            .get(id)
            .cloned()
            .ok_or(KeyringError::UnknownKeyId(id))?;
        Ok((key, token))
    }

    /// Revokes the permitted key, and every key it issued down the tree, from `now` on.
    pub(crate) fn revoke_key(&self, permit: &Permit, now: Timestamp) -> Result<(), KeyringError> {
        write(&self.keys).ring.revoke_tree(permit, now).map(|_| ())
    }

    /// A key's usage so far.
    pub(crate) fn usage(&self, id: KeyId) -> Option<Usage> {
        read(&self.keys).ring.state(id).map(|s| s.usage)
    }

    /// Counts a request against the key's rate limit and every rate-limited ancestor's (atomic
    /// per-key state: a read lock suffices).
    pub(crate) fn rate_limit(&self, id: KeyId, now: Timestamp) -> Result<(), RetryAfter> {
        read(&self.keys).ring.check_rate_limit(id, now)
    }

    /// Records a request in a key's usage under its method and route, without building the
    /// endpoint's name.
    pub(crate) fn record_usage(
        &self,
        id: KeyId,
        method: &str,
        route: &str,
        status: u16,
        now: Timestamp,
    ) {
        read(&self.keys)
            .ring
            .record_request(id, method, route, status, now);
    }

    /// `authorize` with the key's creator cap.
    pub(crate) fn decide(&self, key: &ApiKey, action: Action, resource: &Resource) -> Decision {
        read(&self.keys)
            .ring
            .authorize_key(key, action, resource, now())
    }

    /// Removes up to [`PURGE_BATCH`] keys revoked or expired for longer than the configured
    /// retention, and forgets retired secrets past their grace period. Returns how many keys it
    /// removed: call again while that is the whole batch.
    pub(crate) fn purge_step(&self, now: Timestamp) -> usize {
        let cutoff = now.saturating_sub(self.config.key_retention);
        let mut keys = write(&self.keys);
        let keys = &mut *keys;
        let dead: Vec<(AccountId, KeyId)> = keys
            .ring
            .iter()
            .filter(|k| {
                k.revoked_at().is_some_and(|at| at <= cutoff)
                    || k.expires_at().is_some_and(|at| at <= cutoff)
            })
            .take(PURGE_BATCH)
            .map(|k| (k.account(), k.id()))
            .collect();
        for (account, id) in &dead {
            keys.ring.remove(*id);
            if let Some(ids) = keys.by_account.get_mut(account) {
                ids.remove(id);
            }
        }
        keys.ring.prune(now);
        dead.len()
    }

    // --- projects and recordings -------------------------------------------------------------

    /// Runs `f` on `account`'s projects and recordings.
    pub(crate) fn records<T>(&self, account: AccountId, f: impl FnOnce(&mut Records) -> T) -> T {
        let mut data = lock(&self.data);
        f(data.accounts.entry(account).or_default())
    }

    /// Adds a project made by `make` from its new id, if the account is within its limits.
    pub(crate) fn add_project(
        &self,
        account: AccountId,
        make: impl FnOnce(u64) -> Project,
    ) -> Result<Project, QuotaError> {
        let limits = self.config.limits;
        let mut data = lock(&self.data);
        let data = &mut *data;
        let records = data.accounts.entry(account).or_default();
        let count = u32::try_from(records.projects.len()).unwrap_or(u32::MAX);
        limits.tier.check_new_project(count)?;
        if count >= limits.max_projects {
            return Err(QuotaError::ProjectLimit {
                limit: limits.max_projects,
            });
        }
        let id = data.next_project;
        // 2⁶⁴ projects are out of reach; saturating keeps the arithmetic panic-free.
        data.next_project = id.saturating_add(1);
        let project = make(id);
        records.projects.insert(id, project.clone());
        Ok(project)
    }

    /// Adds a recording made by `make` from its new id to an existing project of the account:
    /// `Ok(None)` when there is no such project.
    pub(crate) fn add_recording(
        &self,
        account: AccountId,
        project: ProjectId,
        make: impl FnOnce(u64) -> Recording,
    ) -> Result<Option<Recording>, RecordingLimit> {
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
            return Err(RecordingLimit);
        }
        project.recordings_count = project.recordings_count.saturating_add(1);
        let id = data.next_recording;
        data.next_recording = id.saturating_add(1);
        let recording = make(id);
        records.recordings.insert(id, recording.clone());
        Ok(Some(recording))
    }
}

/// The account has its configured maximum of recordings: 403.
#[derive(Debug)]
pub(crate) struct RecordingLimit;

// The poisoned-lock policy (see the module docs), in one place.

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}
