//! Creator caps: a key never does more than its creator can do now.

use super::Keyring;
use super::persistent::{PMap, PVec};
use crate::authorize::{Action, decision_for, reason_code};
use crate::catalog::PermissionSet;
use crate::decision::{Decision, Deny};
use crate::key::{ApiKey, KeyId};
use crate::scope::Resource;
use crate::timestamp::Timestamp;

/// The cap of keys that record no creator: [`PermissionSet::ALL`].
pub(super) const NO_CREATOR_SLOT: u32 = 0;
/// A cap that is always empty, for when creator slots run out.
const EMPTY_SLOT: u32 = 1;

/// The current permissions of every creator the keyring has heard of, by cap slot.
#[derive(Debug, Clone)]
pub(super) struct CreatorCaps {
    caps: PVec<PermissionSet>,
    by_creator: PMap<String, u32>,
}

impl Default for CreatorCaps {
    fn default() -> Self {
        Self {
            caps: [PermissionSet::ALL, PermissionSet::EMPTY]
                .into_iter()
                .collect(),
            by_creator: PMap::default(),
        }
    }
}

impl CreatorCaps {
    /// The cap slot of keys created by `creator`: slot 0 for none, else the creator's own, made
    /// uncapped ([`PermissionSet::ALL`]) when the creator is new, until a cap is set.
    pub(super) fn slot_for(&mut self, creator: Option<&str>) -> u32 {
        let Some(creator) = creator else {
            return NO_CREATOR_SLOT;
        };
        if let Some(&slot) = self.by_creator.get(creator) {
            return slot;
        }
        let Ok(slot) = u32::try_from(self.caps.len()) else {
            // Four billion creators: share the empty cap rather than widen anything.
            return EMPTY_SLOT;
        };
        self.caps.push(PermissionSet::ALL);
        self.by_creator.insert(creator.to_owned(), slot);
        slot
    }

    /// Sets `creator`'s current permissions.
    pub(super) fn set(&mut self, creator: &str, cap: PermissionSet) {
        let slot = self.slot_for(Some(creator));
        if let Some(entry) = usize::try_from(slot)
            .ok()
            .filter(|&s| s > EMPTY_SLOT as usize)
            .and_then(|s| self.caps.get_mut(s))
        {
            *entry = cap;
        }
    }

    /// The cap in `slot` (the empty set for a slot that does not exist: deny by default).
    pub(super) fn get(&self, slot: u32) -> &PermissionSet {
        usize::try_from(slot)
            .ok()
            .and_then(|s| self.caps.get(s))
            .unwrap_or(&PermissionSet::EMPTY)
    }

    /// `creator`'s cap, if one was set or a key of theirs was seen.
    pub(super) fn of(&self, creator: &str) -> Option<&PermissionSet> {
        let slot = *self.by_creator.get(creator)?;
        Some(self.get(slot))
    }
}

impl Keyring {
    /// Sets `creator`'s current permissions: from now on every key that records `creator` as its
    /// creator (issued by them, or by a key of theirs) authorizes only what it holds *and* `cap`
    /// holds. Demoting a user shrinks their keys at once; promoting them back restores the keys'
    /// frozen sets, never more.
    ///
    /// A creator whose cap was never set is uncapped (the keyring cannot know a user's rights
    /// unless told): give every creator's cap at start-up to have every key capped.
    ///
    /// ```
    /// use keygate::{issue, AccountId, Action, Catalog, Decision, Deny, Issuer, KeySpec, Keyring,
    ///     Resource, Scope, Timestamp};
    /// use rand::SeedableRng;
    /// let catalog = Catalog::read_write_delete();
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    /// let now = Timestamp::from_unix_seconds(1_000);
    /// let acct = AccountId::from_u64(1);
    /// let alice = Issuer::user(acct, Scope::Account, catalog.all()).with_user_id("alice");
    /// let issued = issue(&catalog, &alice, KeySpec::named("deploy"), now, &mut rng)?;
    /// let mut keyring = Keyring::default();
    /// keyring.insert(issued.key)?;
    /// let token = issued.token.expose_secret();
    /// let delete = Action::named(&catalog, "delete")?;
    /// let here = Resource::listing(acct);
    /// assert_eq!(keyring.authorize(token, delete, &here, now), Decision::Allow);
    ///
    /// keyring.set_creator_cap("alice", catalog.expand(["read"])?); // alice is demoted
    /// assert_eq!(keyring.authorize(token, delete, &here, now),
    ///     Decision::Deny(Deny::MissingPermission(delete.permission())));
    /// keyring.remove_creator("alice"); // alice leaves: her keys do nothing
    /// let read = Action::named(&catalog, "read")?;
    /// assert!(!keyring.authorize(token, read, &here, now).is_allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_creator_cap(&mut self, creator: &str, cap: PermissionSet) {
        self.caps.set(creator, cap);
    }

    /// Removes `creator`: every key they created, directly or through their keys, is disabled
    /// (its cap becomes empty, so every action is [`Deny::MissingPermission`]).
    pub fn remove_creator(&mut self, creator: &str) {
        self.caps.set(creator, PermissionSet::EMPTY);
    }

    /// `creator`'s current cap, if one was set or a key of theirs was seen (uncapped until set).
    pub fn creator_cap(&self, creator: &str) -> Option<&PermissionSet> {
        self.caps.of(creator)
    }

    /// The cap on the key with this id: its creator's current permissions
    /// ([`PermissionSet::ALL`] for a key that records no creator).
    pub fn cap_of(&self, id: KeyId) -> Option<&PermissionSet> {
        let slot = self.slot_of(id).ok()?;
        Some(self.caps.get(self.cap_slot_at(slot)))
    }

    /// What the key with this id can do now: its frozen set capped by its creator's current
    /// permissions. Nothing for a key this keyring does not hold.
    pub fn effective_permissions(&self, id: KeyId) -> PermissionSet {
        match self.slot_of(id) {
            Ok(slot) => self.effective_permissions_at(slot),
            Err(_) => PermissionSet::EMPTY,
        }
    }

    /// [`effective_permissions`](Self::effective_permissions) of the key in `slot`.
    pub(super) fn effective_permissions_at(&self, slot: u32) -> PermissionSet {
        self.key_at(slot).map_or(PermissionSet::EMPTY, |key| {
            key.permissions()
                .intersection(self.caps.get(self.cap_slot_at(slot)))
        })
    }

    /// [`authorize_capped`](crate::authorize_capped) for a key already in hand (from
    /// [`authenticate`](Self::authenticate)), with this keyring's cap on it. A key this keyring
    /// does not hold (removed since) is capped to nothing.
    pub fn authorize_key(
        &self,
        key: &ApiKey,
        action: Action,
        resource: &Resource,
        now: Timestamp,
    ) -> Decision {
        let cap = match self.slot_of(key.id()) {
            Ok(slot) => *self.caps.get(self.cap_slot_at(slot)),
            Err(_) => PermissionSet::EMPTY,
        };
        let (reason, missing) = reason_code(key, &cap, &action, resource, now);
        decision_for(reason, missing)
    }

    /// [`authorize_key`](Self::authorize_key) for `key`, found in `slot` of this very keyring: its
    /// cap without an id lookup.
    pub(super) fn authorize_at(
        &self,
        slot: u32,
        key: &ApiKey,
        action: Action,
        resource: &Resource,
        now: Timestamp,
    ) -> Decision {
        let cap = *self.caps.get(self.cap_slot_at(slot));
        let (reason, missing) = reason_code(key, &cap, &action, resource, now);
        decision_for(reason, missing)
    }

    /// The key with this id as the caller of [`issue`](crate::issue()) or
    /// [`manage`](crate::manage()): as this keyring holds it now (so a revocation since it was
    /// authenticated counts), active at `now`, and capped by its creator's current permissions,
    /// so that a demoted creator's keys can neither issue nor manage beyond what the creator can
    /// do now. A key this keyring does not hold is [`Deny::UnknownKey`] (401).
    pub fn issuer(
        &self,
        catalog: &crate::catalog::Catalog,
        id: KeyId,
        now: Timestamp,
    ) -> Result<crate::issue::Issuer, crate::issue::IssueError> {
        let key = self
            .get(id)
            .ok_or(crate::issue::IssueError::IssuerKey(Deny::UnknownKey))?;
        Ok(crate::issue::Issuer::key(catalog, key, now)?.capped(&self.effective_permissions(id)))
    }

    /// Why [`authorize`](Self::authorize) decides what it does for this request: every rule's
    /// outcome for the key `token` names, its creator cap included
    /// ([`explain_capped`](crate::explain::explain_capped)), or the refusal when the token names
    /// no key (the keyring's [`Deny::UnknownKey`], for a malformed, unknown or retired token).
    ///
    /// A diagnostic for logs and policy tests, apart from the decision: not constant time, and it
    /// allocates. Its decision is always `authorize`'s (a property test holds them together).
    ///
    /// ```
    /// use keygate::explain::Rule;
    /// use keygate::{issue, AccountId, Action, Catalog, Deny, Issuer, KeySpec, Keyring, Resource,
    ///     Scope, Timestamp};
    /// use rand::SeedableRng;
    /// let catalog = Catalog::read_write_delete();
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    /// let now = Timestamp::from_unix_seconds(1_000);
    /// let account = AccountId::from_u64(1);
    /// let alice = Issuer::user(account, Scope::Account, catalog.all()).with_user_id("alice");
    /// let issued = issue(&catalog, &alice, KeySpec::named("k"), now, &mut rng)?;
    /// let mut keys = Keyring::default();
    /// keys.insert(issued.key)?;
    /// keys.set_creator_cap("alice", catalog.expand(["read"])?); // alice is demoted
    /// let write = Action::named(&catalog, "write")?;
    /// let token = issued.token.expose_secret();
    /// let why = keys.authorize_explained(&catalog, token, write, &Resource::listing(account), now)?;
    /// assert_eq!(why.deciding_rule().map(|r| r.rule), Some(Rule::HasPermission));
    /// assert_eq!(why.decision, keys.authorize(token, write, &Resource::listing(account), now));
    /// assert_eq!(
    ///     keys.authorize_explained(&catalog, "idc_nope", write, &Resource::listing(account), now)
    ///         .err(),
    ///     Some(Deny::UnknownKey)
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn authorize_explained(
        &self,
        catalog: &crate::Catalog,
        token: &str,
        action: Action,
        resource: &Resource,
        now: Timestamp,
    ) -> Result<crate::explain::Explanation, Deny> {
        let (slot, found) = self.lookup(token, now);
        if !bool::from(found) {
            return Err(Deny::UnknownKey);
        }
        let key = self.key_at(slot).ok_or(Deny::UnknownKey)?;
        let cap = self.caps.get(self.cap_slot_at(slot));
        Ok(crate::explain::explain_capped(
            catalog, key, cap, action, resource, now,
        ))
    }
}
