//! The keyring's changes to existing keys, each taking a [`Permit`] from
//! [`manage`](crate::manage()) so that an unchecked change does not type-check.

use core::time::Duration;

use rand::CryptoRng;

use super::change::{Change, Op, Staged};
use super::{Keyring, KeyringError};
use crate::issue::{Granted, Permit};
use crate::key::{ApiKey, KeyId};
use crate::timestamp::Timestamp;
use crate::token::Token;

/// How many tokens [`Keyring::rotate`] mints before giving up on an index collision. One is
/// enough with a working RNG; a few more make a 2⁻⁶⁴ accident invisible.
const ROTATE_ATTEMPTS: usize = 4;

impl Keyring {
    /// Revokes the permitted key now: every one of its tokens, current or in a grace period, is
    /// refused from `now` on. Revoking again keeps the first time. Keys it issued keep working:
    /// [`revoke_tree`](Self::revoke_tree) revokes them too. ([`stage_revoke`](Self::stage_revoke)
    /// is the same, persisted before it is applied.)
    pub fn revoke(&mut self, permit: &Permit, now: Timestamp) -> Result<(), KeyringError> {
        self.stage_revoke(permit, now)?.apply();
        Ok(())
    }

    /// Stages [`revoke`](Self::revoke).
    pub fn stage_revoke(
        &mut self,
        permit: &Permit,
        now: Timestamp,
    ) -> Result<Staged<'_>, KeyringError> {
        let change = self.prepare_revoke(permit, now, false)?;
        Ok(Staged::new(self, change))
    }

    /// Revokes the permitted key and every key it issued, and every key those issued, and so on
    /// (by [`ApiKey::issued_by`]); returns the ids revoked now, the permitted key first. Each
    /// descendant is dominated by the permitted key (issuing only ever attenuates), so a caller
    /// allowed to revoke it may revoke them.
    ///
    /// Rotating a key, by contrast, leaves its children working: a rotation replaces a secret,
    /// it does not withdraw the authority the children were issued under.
    pub fn revoke_tree(
        &mut self,
        permit: &Permit,
        now: Timestamp,
    ) -> Result<Vec<KeyId>, KeyringError> {
        let staged = self.stage_revoke_tree(permit, now)?;
        let ids = staged.change().key_ids().collect();
        staged.apply();
        Ok(ids)
    }

    /// Stages [`revoke_tree`](Self::revoke_tree): one change with every key it revokes.
    pub fn stage_revoke_tree(
        &mut self,
        permit: &Permit,
        now: Timestamp,
    ) -> Result<Staged<'_>, KeyringError> {
        let change = self.prepare_revoke(permit, now, true)?;
        Ok(Staged::new(self, change))
    }

    pub(super) fn prepare_revoke(
        &self,
        permit: &Permit,
        now: Timestamp,
        tree: bool,
    ) -> Result<Change, KeyringError> {
        expect_op(permit, "revoke")?;
        let root = permit.target();
        self.slot_of(root)?;
        let mut ids = vec![root];
        // Breadth first over `issued_by`; each key joins once, so this ends even on a
        // (malformed) cycle among loaded records.
        let mut next = 0;
        while tree && let Some(&parent) = ids.get(next) {
            next += 1;
            let children: Vec<KeyId> = self
                .iter()
                .filter(|k| k.issued_by() == Some(parent) && !ids.contains(&k.id()))
                .map(ApiKey::id)
                .collect();
            ids.extend(children);
        }
        let ops = ids
            .into_iter()
            .filter_map(|id| self.get(id))
            // Revoking a revoked key again changes nothing (the first time stays): no record.
            .filter(|key| !key.is_revoked())
            .map(|key| {
                let mut key = key.clone();
                key.revoke(now);
                Op::Replace(key)
            })
            .collect();
        Ok(Change::new(ops, None))
    }

    /// Gives the permitted key a new secret, keeping its id, metadata and state, and returns the
    /// new token (show it once). ([`stage_rotate`](Self::stage_rotate) is the same, persisted
    /// before it is applied.)
    ///
    /// Without a grace period (`None` or zero) the old token is refused at once, as IdentityCall's
    /// API says; with one, it keeps working until `now + grace` (exclusive). Only the latest
    /// retired secret is kept, so rotating again ends an earlier grace period.
    ///
    /// ```
    /// use keygate::{AccountId, ApiKey, Deny, KeyId, Keyring, PermissionSet, Permit, Scope,
    ///     Timestamp};
    /// use rand::SeedableRng;
    /// use std::time::Duration;
    ///
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    /// let mut keyring = Keyring::default();
    /// let old = keyring.format().mint(&mut rng);
    /// let id = KeyId::random(&mut rng);
    /// keyring.insert(ApiKey::new(id, "ci", AccountId::from_u64(1), Scope::Account,
    ///     PermissionSet::EMPTY, old.hash(), Timestamp::EPOCH))?;
    ///
    /// let now = Timestamp::from_unix_seconds(100);
    /// let permit = Permit::operator_rotate(id); // a request path gets its permit from `manage`
    /// let new = keyring.rotate(&permit, now, Some(Duration::from_secs(60)), &mut rng)?;
    /// assert!(keyring.authenticate(new.expose_secret(), now).is_ok());
    /// assert!(keyring.authenticate(old.expose_secret(), now).is_ok());
    /// let later = now + Duration::from_secs(60);
    /// assert_eq!(keyring.authenticate(old.expose_secret(), later).err(), Some(Deny::UnknownKey));
    /// # Ok::<(), keygate::KeyringError>(())
    /// ```
    pub fn rotate<R: CryptoRng + ?Sized>(
        &mut self,
        permit: &Permit,
        now: Timestamp,
        grace: Option<Duration>,
        rng: &mut R,
    ) -> Result<Token, KeyringError> {
        let staged = self.stage_rotate(permit, now, grace, rng)?;
        staged
            .apply()
            .ok_or(KeyringError::UnknownKeyId(permit.target()))
    }

    /// Stages [`rotate`](Self::rotate): the change carries the new token, which
    /// [`Staged::apply`] hands back.
    pub fn stage_rotate<R: CryptoRng + ?Sized>(
        &mut self,
        permit: &Permit,
        now: Timestamp,
        grace: Option<Duration>,
        rng: &mut R,
    ) -> Result<Staged<'_>, KeyringError> {
        let change = self.prepare_rotate(permit, now, grace, rng)?;
        Ok(Staged::new(self, change))
    }

    pub(super) fn prepare_rotate<R: CryptoRng + ?Sized>(
        &self,
        permit: &Permit,
        now: Timestamp,
        grace: Option<Duration>,
        rng: &mut R,
    ) -> Result<Change, KeyringError> {
        expect_op(permit, "rotate")?;
        let id = permit.target();
        let slot = self.slot_of(id)?;
        let current = self.key_at(slot).ok_or(KeyringError::UnknownKeyId(id))?;
        let mut last_error = KeyringError::UnknownKeyId(id);
        for _ in 0..ROTATE_ATTEMPTS {
            let mut next = current.clone();
            let token = next.rotate(&self.format, now, grace, rng)?;
            match self.index.check(&next, slot) {
                Ok(()) => return Ok(Change::new(vec![Op::Replace(next)], Some(token))),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// Applies a permitted update: the key becomes the version the permit carries
    /// ([`Permit::updated_key`]). A revocation is never undone, and the id never changes.
    pub fn apply_update(&mut self, permit: &Permit) -> Result<(), KeyringError> {
        self.stage_update(permit)?.apply();
        Ok(())
    }

    /// Stages [`apply_update`](Self::apply_update).
    pub fn stage_update(&mut self, permit: &Permit) -> Result<Staged<'_>, KeyringError> {
        let change = self.prepare_update(permit)?;
        Ok(Staged::new(self, change))
    }

    pub(super) fn prepare_update(&self, permit: &Permit) -> Result<Change, KeyringError> {
        let Granted::Update(updated) = permit.granted() else {
            return Err(KeyringError::WrongPermit {
                expected: "update",
                got: permit.op_name(),
            });
        };
        let id = permit.target();
        let slot = self.slot_of(id)?;
        let current = self.key_at(slot).ok_or(KeyringError::UnknownKeyId(id))?;
        let mut next = ApiKey::clone(updated);
        next.id = id;
        next.revoked_at = current.revoked_at.or(next.revoked_at);
        self.index.check(&next, slot)?;
        Ok(Change::new(vec![Op::Replace(next)], None))
    }
}

fn expect_op(permit: &Permit, expected: &'static str) -> Result<(), KeyringError> {
    if permit.op_name() == expected {
        Ok(())
    } else {
        Err(KeyringError::WrongPermit {
            expected,
            got: permit.op_name(),
        })
    }
}
