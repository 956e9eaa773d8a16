//! The keyring's changes to existing keys, each taking a [`Permit`] from
//! [`manage`](crate::manage()) so that an unchecked change does not type-check.

use core::time::Duration;

use rand::CryptoRng;

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
    /// [`revoke_tree`](Self::revoke_tree) revokes them too.
    pub fn revoke(&mut self, permit: &Permit, now: Timestamp) -> Result<(), KeyringError> {
        expect_op(permit, "revoke")?;
        self.replace_checked(permit.target(), |mut key| {
            key.revoke(now);
            key
        })
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
        expect_op(permit, "revoke")?;
        let root = permit.target();
        self.slot_of(root)?;
        let mut tree = vec![root];
        // Breadth first over `issued_by`; each key joins once, so this ends even on a
        // (malformed) cycle among loaded records.
        let mut next = 0;
        while let Some(&parent) = tree.get(next) {
            next += 1;
            let children: Vec<KeyId> = self
                .iter()
                .filter(|k| k.issued_by() == Some(parent) && !tree.contains(&k.id()))
                .map(ApiKey::id)
                .collect();
            tree.extend(children);
        }
        let mut revoked = Vec::new();
        for id in tree {
            if self.get(id).is_some_and(|k| !k.is_revoked()) {
                self.replace_checked(id, |mut key| {
                    key.revoke(now);
                    key
                })?;
                revoked.push(id);
            }
        }
        Ok(revoked)
    }

    /// Gives the permitted key a new secret, keeping its id, metadata and state, and returns the
    /// new token (show it once).
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
        expect_op(permit, "rotate")?;
        let id = permit.target();
        let slot = self.slot_of(id)?;
        let current = self.key_at(slot).ok_or(KeyringError::UnknownKeyId(id))?;
        let mut last_error = KeyringError::UnknownKeyId(id);
        for _ in 0..ROTATE_ATTEMPTS {
            let mut next = current.clone();
            let token = next.rotate(&self.format, now, grace, rng)?;
            match self.index.check(&next, slot) {
                Ok(()) => {
                    self.replace(slot, next);
                    return Ok(token);
                }
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// Applies a permitted update: the key becomes the version the permit carries
    /// ([`Permit::updated_key`]). A revocation is never undone, and the id never changes.
    pub fn apply_update(&mut self, permit: &Permit) -> Result<(), KeyringError> {
        let Granted::Update(updated) = permit.granted() else {
            return Err(KeyringError::WrongPermit {
                expected: "update",
                got: permit.op_name(),
            });
        };
        let updated = ApiKey::clone(updated);
        self.replace_checked(permit.target(), |_| updated)
    }

    /// Replaces a key by `f`'s version of it. The index follows any change of secret. Fails,
    /// changing nothing, if the new version's secrets clash with another key's. The id cannot
    /// change, and a revocation cannot be undone.
    fn replace_checked<F>(&mut self, id: KeyId, f: F) -> Result<(), KeyringError>
    where
        F: FnOnce(ApiKey) -> ApiKey,
    {
        let slot = self.slot_of(id)?;
        let current = self.key_at(slot).ok_or(KeyringError::UnknownKeyId(id))?;
        let revoked_at = current.revoked_at;
        let mut next = f(current.clone());
        next.id = id;
        next.revoked_at = revoked_at.or(next.revoked_at);
        self.index.check(&next, slot)?;
        self.replace(slot, next);
        Ok(())
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
