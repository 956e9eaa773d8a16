//! The concurrent keyring: lookups on an immutable snapshot that never wait for a writer;
//! writers stage a change, persist it, and publish the next snapshot atomically.

use core::fmt;
use core::time::Duration;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::{ArcSwap, Guard};
use rand::CryptoRng;

use super::admit::Charge;
use super::change::Change;
use super::{Keyring, KeyringError, RecordChange};
use crate::authorize::Action;
use crate::catalog::PermissionSet;
use crate::decision::{Decision, Deny};
use crate::issue::Permit;
use crate::key::{ApiKey, KeyId};
use crate::limits::Throttled;
use crate::ratelimit::{RateLimit, RetryAfter};
use crate::scope::Resource;
use crate::timestamp::Timestamp;
use crate::token::Token;

/// A [`Keyring`] shared by every thread of a server: lookups take `&self` and never wait for a
/// writer, and per-key rate-limit and usage state are atomics, so no request takes a lock.
///
/// Readers see an immutable snapshot (held through `arc-swap`, without touching a shared
/// reference count); a writer builds the next snapshot beside it and swaps it in at once. A
/// change goes through three steps, so that a failed save never leaves memory and disk
/// disagreeing:
///
/// 1. [`writer`](Self::writer) takes the one writer lock (readers never take it) and
///    `stage_*` checks the change against the current keys, changing nothing;
/// 2. the caller persists [`SharedStaged::change`]'s records (or drops the staged change: nothing
///    happens);
/// 3. [`SharedStaged::apply`] publishes the next snapshot. It cannot fail.
///
/// Hold the [`Writer`] for the three steps only, and not across an `.await` (it is a
/// `std::sync::MutexGuard` inside, deliberately not `Send`): run a blocking store's save in
/// `spawn_blocking` with the writer, or give writes their own thread.
///
/// A write copies no table: the keyring's tables share their nodes between snapshots, so the next
/// snapshot copies one path through them (tens of microseconds at a million keys, paid by the
/// writer, never by a reader; see `docs/PERFORMANCE.md`).
///
/// ```
/// use keygate::{issue, AccountId, Action, Catalog, Decision, Issuer, KeySpec, Keyring, Resource,
///     Scope, SharedKeyring, Timestamp};
/// use rand::SeedableRng;
/// let catalog = Catalog::read_write_delete();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(4);
/// let now = Timestamp::from_unix_seconds(1_000);
/// let owner = Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all());
/// let keys = SharedKeyring::new(Keyring::default());
///
/// let issued = issue(&catalog, &owner, KeySpec::named("k"), now, &mut rng)?;
/// let mut writer = keys.writer();
/// let staged = writer.stage_insert(issued.key)?;
/// // ... persist staged.change().records() here; on failure, drop `staged` ...
/// staged.apply();
/// drop(writer);
///
/// let read = Action::named(&catalog, "read")?;
/// let listing = Resource::listing(AccountId::from_u64(1));
/// let token = issued.token.expose_secret();
/// assert_eq!(keys.authorize(token, read, &listing, now), Decision::Allow);
/// let key = keys.authenticate(token, now)?;
/// assert_eq!(key.key().name(), "k");
/// assert!(key.check_rate_limit(now).is_ok());
/// key.record_usage("GET /recordings", 200, now);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedKeyring {
    current: ArcSwap<Keyring>,
    writer: Mutex<()>,
}

impl fmt::Debug for SharedKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedKeyring")
            .field("current", &**self.current.load())
            .finish_non_exhaustive()
    }
}

impl Default for SharedKeyring {
    fn default() -> Self {
        Self::new(Keyring::default())
    }
}

impl SharedKeyring {
    /// Shares `keyring` (loaded at start-up, for example with [`Keyring::from_keys`]).
    pub fn new(keyring: Keyring) -> Self {
        Self {
            current: ArcSwap::from_pointee(keyring),
            writer: Mutex::new(()),
        }
    }

    /// The current snapshot: a consistent view of every key, for listings and management
    /// decisions. Later changes do not show in it.
    pub fn snapshot(&self) -> Arc<Keyring> {
        self.current.load_full()
    }

    /// Runs `f` on the current snapshot without taking a reference count: the way to read it on
    /// a hot path ([`snapshot`](Self::snapshot) increments a counter every thread shares). Keep
    /// `f` short: the snapshot stays alive while it runs.
    ///
    /// ```
    /// use keygate::SharedKeyring;
    /// let keys = SharedKeyring::default();
    /// assert_eq!(keys.read(|ring| ring.len()), 0);
    /// ```
    pub fn read<R>(&self, f: impl FnOnce(&Keyring) -> R) -> R {
        f(&self.current.load())
    }

    /// The active key a presented token belongs to, as [`Keyring::authenticate`] decides it (in
    /// constant time, allocation-free), handed out without copying the key.
    pub fn authenticate(&self, token: &str, now: Timestamp) -> Result<AuthenticatedKey, Deny> {
        let snapshot = self.current.load();
        let (slot, decision) = snapshot.authenticate_slot(token, now);
        decision.into_result()?;
        Ok(AuthenticatedKey {
            snapshot,
            slot,
            client_address: None,
        })
    }

    /// May the holder of `token` do `action` on `resource` at `now`? [`Keyring::authorize`] on
    /// the current snapshot, creator caps included.
    pub fn authorize(
        &self,
        token: &str,
        action: Action,
        resource: &Resource,
        now: Timestamp,
    ) -> Decision {
        self.current.load().authorize(token, action, resource, now)
    }

    /// [`Keyring::authorize_explained`] on the current snapshot: why `authorize` decides what it
    /// does, for logs and policy tests (not constant time).
    pub fn authorize_explained(
        &self,
        catalog: &crate::Catalog,
        token: &str,
        action: Action,
        resource: &Resource,
        now: Timestamp,
    ) -> Result<crate::explain::Explanation, Deny> {
        self.current
            .load()
            .authorize_explained(catalog, token, action, resource, now)
    }

    /// Takes the writer lock: one writer at a time, while readers go on. See the type docs.
    pub fn writer(&self) -> Writer<'_> {
        Writer {
            shared: self,
            // `()` holds nothing a panic could leave half-written: a poisoned lock is just a lock.
            _lock: self.writer.lock().unwrap_or_else(PoisonError::into_inner),
            next: None,
        }
    }
}

/// The one writer of a [`SharedKeyring`]: stages changes against the current keys. Each staged
/// change borrows the writer, so one is in flight at a time and none can go stale.
pub struct Writer<'s> {
    shared: &'s SharedKeyring,
    _lock: MutexGuard<'s, ()>,
    /// The next snapshot, copied from the current one on the first stage.
    next: Option<Keyring>,
}

impl fmt::Debug for Writer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl<'s> Writer<'s> {
    /// The keys as the writer sees them: the current snapshot.
    pub fn keyring(&self) -> Arc<Keyring> {
        self.shared.snapshot()
    }

    fn next(&mut self) -> &mut Keyring {
        let shared = self.shared;
        self.next
            .get_or_insert_with(|| Keyring::clone(&shared.current.load()))
    }

    fn staged(&mut self, change: Change) -> SharedStaged<'_, 's> {
        SharedStaged {
            writer: self,
            change,
        }
    }

    /// Stages [`Keyring::insert`].
    pub fn stage_insert(&mut self, key: ApiKey) -> Result<SharedStaged<'_, 's>, KeyringError> {
        let change = self.next().prepare_insert(key)?;
        Ok(self.staged(change))
    }

    /// Stages [`Keyring::stage_put`]: a record as another writer stored it.
    pub fn stage_put(&mut self, key: ApiKey) -> Result<SharedStaged<'_, 's>, KeyringError> {
        let change = self.next().prepare_put(key)?;
        Ok(self.staged(change))
    }

    /// Runs `f` on a private copy of the keys, then publishes everything it applied at once:
    /// readers see all of it or none of it. One snapshot for a batch, where staging and applying
    /// each change on its own publishes one per change: the way to apply many records at once (a
    /// replica resynchronising with its store). What `f` stages but does not apply is
    /// dropped as usual.
    ///
    /// ```
    /// use keygate::{AccountId, ApiKey, KeyId, PermissionSet, Scope, SharedKeyring, Timestamp,
    ///     TokenHash};
    /// let keys = SharedKeyring::default();
    /// let key = |n: u8| ApiKey::new(KeyId::from_bytes([n; 16]), "k", AccountId::from_u64(1),
    ///     Scope::Account, PermissionSet::EMPTY, TokenHash::of(&format!("idc_{n}")),
    ///     Timestamp::EPOCH);
    /// let put = keys.writer().batch(|ring| {
    ///     (1..=3).filter(|&n| ring.stage_put(key(n)).map(|staged| staged.apply()).is_ok()).count()
    /// });
    /// assert_eq!((put, keys.read(|ring| ring.len())), (3, 3));
    /// ```
    pub fn batch<R>(&mut self, f: impl FnOnce(&mut Keyring) -> R) -> R {
        let out = f(self.next());
        self.publish();
        out
    }

    /// Stages [`Keyring::remove`].
    pub fn stage_remove(&mut self, id: KeyId) -> Result<SharedStaged<'_, 's>, KeyringError> {
        let change = self.next().prepare_remove(id)?;
        Ok(self.staged(change))
    }

    /// Stages [`Keyring::revoke`].
    pub fn stage_revoke(
        &mut self,
        permit: &Permit,
        now: Timestamp,
    ) -> Result<SharedStaged<'_, 's>, KeyringError> {
        let change = self.next().prepare_revoke(permit, now, false)?;
        Ok(self.staged(change))
    }

    /// Stages [`Keyring::revoke_tree`].
    pub fn stage_revoke_tree(
        &mut self,
        permit: &Permit,
        now: Timestamp,
    ) -> Result<SharedStaged<'_, 's>, KeyringError> {
        let change = self.next().prepare_revoke(permit, now, true)?;
        Ok(self.staged(change))
    }

    /// Stages [`Keyring::rotate`]; the staged change carries the new token.
    pub fn stage_rotate<R: CryptoRng + ?Sized>(
        &mut self,
        permit: &Permit,
        now: Timestamp,
        grace: Option<Duration>,
        rng: &mut R,
    ) -> Result<SharedStaged<'_, 's>, KeyringError> {
        let change = self.next().prepare_rotate(permit, now, grace, rng)?;
        Ok(self.staged(change))
    }

    /// Stages [`Keyring::apply_update`].
    pub fn stage_update(&mut self, permit: &Permit) -> Result<SharedStaged<'_, 's>, KeyringError> {
        let change = self.next().prepare_update(permit)?;
        Ok(self.staged(change))
    }

    /// Sets a creator's cap ([`Keyring::set_creator_cap`]) and publishes it at once. Caps are
    /// the server's own data, not records: nothing to persist.
    pub fn set_creator_cap(&mut self, creator: &str, cap: PermissionSet) {
        self.next().set_creator_cap(creator, cap);
        self.publish();
    }

    /// Removes a creator ([`Keyring::remove_creator`]) and publishes it at once.
    pub fn remove_creator(&mut self, creator: &str) {
        self.next().remove_creator(creator);
        self.publish();
    }

    /// Sets an account's shared limits ([`Keyring::set_account_limits`]) and publishes them at
    /// once. Like creator caps, they are the server's own data: nothing to persist here.
    pub fn set_account_limits(
        &mut self,
        account: crate::scope::AccountId,
        limits: Vec<crate::limits::NamedLimit>,
    ) -> Result<(), crate::limits::LimitError> {
        self.next().set_account_limits(account, limits)?;
        self.publish();
        Ok(())
    }

    /// Sets the keyring's default account limits ([`Keyring::set_default_account_limits`])
    /// and publishes them at once.
    pub fn set_default_account_limits(
        &mut self,
        limits: Vec<crate::limits::NamedLimit>,
    ) -> Result<(), crate::limits::LimitError> {
        self.next().set_default_account_limits(limits)?;
        self.publish();
        Ok(())
    }

    fn publish(&mut self) {
        if let Some(next) = self.next.take() {
            self.shared.current.store(Arc::new(next));
        }
    }
}

/// A change staged by a [`Writer`]: persist [`change`](Self::change), then
/// [`apply`](Self::apply) to publish it; drop it to abandon it.
#[must_use = "a staged change does nothing until it is applied"]
pub struct SharedStaged<'w, 's> {
    writer: &'w mut Writer<'s>,
    change: Change,
}

impl fmt::Debug for SharedStaged<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedStaged")
            .field("change", &self.change)
            .finish_non_exhaustive()
    }
}

impl SharedStaged<'_, '_> {
    /// What will change: the records to persist.
    pub fn change(&self) -> &Change {
        &self.change
    }

    /// The records to persist, in order (shorthand for `change().records()`).
    pub fn records(&self) -> impl Iterator<Item = RecordChange<'_>> {
        self.change.records()
    }

    /// Publishes the change: every reader sees it from its next lookup on. Returns the token a
    /// rotation minted (show it once). Cannot fail.
    pub fn apply(self) -> Option<Token> {
        let Self { writer, change } = self;
        let token = writer.next().apply_change(change);
        writer.publish();
        token
    }
}

/// The key a token authenticated, with the snapshot it was found in: no copy of the key.
///
/// Its rate limit and usage act on the key's live state, which every snapshot shares.
pub struct AuthenticatedKey {
    snapshot: Guard<Arc<Keyring>>,
    slot: u32,
    /// Where the request came from, when the server said ([`Self::with_client_address`]).
    client_address: Option<std::net::IpAddr>,
}

/// The key itself: `caller.account()`, `caller.scope()`, as on an [`ApiKey`]. An
/// `AuthenticatedKey` is a guard over the snapshot the key was found in, as a `Ref` is over a
/// `RefCell`.
impl core::ops::Deref for AuthenticatedKey {
    type Target = ApiKey;

    fn deref(&self) -> &ApiKey {
        self.key()
    }
}

impl fmt::Debug for AuthenticatedKey {
    /// The key's id only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticatedKey")
            .field("id", &self.key().id())
            .finish_non_exhaustive()
    }
}

impl AuthenticatedKey {
    /// The key.
    pub fn key(&self) -> &ApiKey {
        // The slot came from this snapshot's own lookup, so it is in range; the dummy (revoked,
        // empty) stands in otherwise.
        self.snapshot.key_at(self.slot).unwrap_or(&super::DUMMY_KEY)
    }

    /// May this key do `action` on `resource` at `now`? [`authorize`](crate::authorize()) with
    /// the key's creator cap. (A revocation published since the lookup shows in the next one.)
    /// A resource that carries no client address is decided from
    /// [`client_address`](Self::client_address), if the key was given one.
    pub fn authorize(&self, action: Action, resource: &Resource, now: Timestamp) -> Decision {
        let resource = self.with_address(resource);
        self.snapshot
            .authorize_at(self.slot, self.key(), action, &resource, now)
    }

    /// The same key, presented from `address`: every [`authorize`](Self::authorize) of it then
    /// decides the address rule with it. [`KeygateLayer`](crate::axum::KeygateLayer) sets it
    /// from the request's [`ClientAddress`](crate::axum::ClientAddress).
    #[must_use]
    pub fn with_client_address(mut self, address: std::net::IpAddr) -> Self {
        self.client_address = Some(address);
        self
    }

    /// Where the request presenting the key came from, if the server said.
    pub fn client_address(&self) -> Option<std::net::IpAddr> {
        self.client_address
    }

    /// `resource`, with this key's client address when it carries none.
    pub fn with_address(&self, resource: &Resource) -> Resource {
        match (resource.address(), self.client_address) {
            (None, Some(address)) => resource.from_address(address),
            _ => *resource,
        }
    }

    /// What the key can do now: its frozen set capped by its creator's current permissions.
    pub fn effective_permissions(&self) -> PermissionSet {
        self.snapshot.effective_permissions_at(self.slot)
    }

    /// [`Keyring::check_rate_limit`] for this key: atomics, no lock.
    pub fn check_rate_limit(&self, now: Timestamp) -> Result<(), RetryAfter> {
        self.snapshot.check_rate_limit_at(self.slot, now)
    }

    /// [`Keyring::admit`] for this key: every rate limit and one credit, all or none; atomics,
    /// no lock.
    pub fn admit(&self, now: Timestamp) -> Result<(), Throttled> {
        self.snapshot.admit_at(self.slot, Charge::ALL, now)
    }

    /// [`Keyring::admit_costing`] for this key.
    pub fn admit_costing(&self, cost: u32, now: Timestamp) -> Result<(), Throttled> {
        let charge = Charge {
            cost: Some(cost),
            ..Charge::ALL
        };
        self.snapshot.admit_at(self.slot, charge, now)
    }

    /// [`admit`](Self::admit)'s credits alone: what is left to charge here once a limiter kept
    /// elsewhere (in Redis, say) has charged every rate limit
    /// ([`rate_limit_budgets`](Self::rate_limit_budgets)). Credits stay in each replica's
    /// keyring (summed across replicas by the store as usage).
    pub fn spend_credits(&self, now: Timestamp) -> Result<(), Throttled> {
        self.snapshot.admit_at(self.slot, Charge::CREDITS_ONLY, now)
    }

    /// [`Keyring::rate_limit_budgets`] for this key: every rate limit a request charges, named,
    /// for a limiter kept elsewhere. `None` where the keyring's own limiter refuses without
    /// charging (a chain deeper than [`MAX_RATE_LIMIT_CHAIN`](crate::MAX_RATE_LIMIT_CHAIN)):
    /// refuse too.
    pub fn rate_limit_budgets(
        &self,
    ) -> Option<impl Iterator<Item = (crate::limits::Budget<'_>, RateLimit)> + '_> {
        self.snapshot.budgets_at(self.slot)
    }

    /// [`Keyring::rate_limit_chain`] for this key: the budgets a request charges (its own limit
    /// and its rate-limited ancestors'), for a limiter kept elsewhere (in Redis, say). `None`
    /// where the keyring's own limiter refuses without charging (a chain deeper than
    /// [`MAX_RATE_LIMIT_CHAIN`](crate::MAX_RATE_LIMIT_CHAIN)): refuse too.
    pub fn rate_limit_chain(&self) -> Option<impl Iterator<Item = (KeyId, RateLimit)> + '_> {
        self.snapshot.rate_limit_chain(self.key().id())
    }

    /// [`Keyring::record_request`] for this key: atomics, no lock, no allocation.
    pub fn record_request(&self, method: &str, route: &str, status: u16, now: Timestamp) {
        self.snapshot
            .record_request_at(self.slot, method, route, status, now);
    }

    /// [`Keyring::record_usage`] for this key: atomics, no lock, no allocation.
    pub fn record_usage(&self, endpoint: &str, status: u16, now: Timestamp) {
        self.snapshot
            .record_usage_at(self.slot, endpoint, status, now);
    }
}
