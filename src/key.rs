//! The API key record: who owns it, how far it reaches, what it may do, and its life cycle.
//!
//! [`ApiKey`] is the in-memory form, with permissions as a [`PermissionSet`] bitset ready for
//! [`authorize`](crate::authorize()). [`ApiKeyRecord`] is what a server stores: the same facts with
//! permission *names* (sorted), RFC 3339 timestamps and a base64url token hash. Names are resolved
//! against the catalog when a record is loaded, so a name the catalog no longer defines is an
//! error, never a panic and never a wider grant.

use core::fmt;
use core::time::Duration;

use rand::CryptoRng;
use serde::{Deserialize, Serialize};

use crate::address::{AddressRange, AllowedAddresses};
use crate::catalog::PermissionSet;
use crate::credits::Credits;
use crate::ct::Present;
use crate::limits::{LimitError, NamedLimit};
use crate::ratelimit::RateLimit;
use crate::scope::{AccountId, ProjectId, Scope};
use crate::timestamp::Timestamp;
use crate::token::{Token, TokenFormat, TokenHash};

mod record;
pub use record::{ApiKeyRecord, KeyView};

/// A key's public identifier: 16 random bytes, shown as 32 lowercase hex digits (Deepgram's
/// `api_key_id`). It is not a secret and does not authenticate anything.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 16]);

/// A key id string was not 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid key id: expected 32 hexadecimal digits")]
pub struct KeyIdError;

impl KeyId {
    /// A fresh random id.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// From raw bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl core::str::FromStr for KeyId {
    type Err = KeyIdError;
    fn from_str(s: &str) -> Result<Self, KeyIdError> {
        let bytes = s.as_bytes();
        if bytes.len() != 32 {
            return Err(KeyIdError);
        }
        let mut out = [0u8; 16];
        for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let text = core::str::from_utf8(pair).map_err(|_| KeyIdError)?;
            if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(KeyIdError);
            }
            *o = u8::from_str_radix(text, 16).map_err(|_| KeyIdError)?;
        }
        Ok(Self(out))
    }
}

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A secret replaced by rotation that keeps working until `valid_until` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredSecret {
    /// The old token's hash.
    pub token_hash: TokenHash,
    /// The first instant at which the old token no longer works.
    pub valid_until: Timestamp,
}

/// A life-cycle operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// A revoked key cannot be rotated: revocation is final.
    #[error("API key is revoked")]
    Revoked,
}

/// An API key as [`authorize`](crate::authorize()) sees it.
///
/// Built by `issue()` or loaded with [`ApiKey::from_record`]; [`ApiKey::new`]
/// builds one by hand (tests, migrations). `Debug` shows the token *hash*, never a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub(crate) id: KeyId,
    pub(crate) name: String,
    pub(crate) account: AccountId,
    /// The project of a project-scoped key; absent for an account-wide key.
    pub(crate) scope: Present<ProjectId>,
    pub(crate) permissions: PermissionSet,
    pub(crate) token_hash: TokenHash,
    pub(crate) retired: Option<RetiredSecret>,
    pub(crate) created_at: Timestamp,
    pub(crate) expires_at: Present<Timestamp>,
    pub(crate) revoked_at: Option<Timestamp>,
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) role: Option<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) comment: Option<String>,
    pub(crate) created_by: Option<String>,
    pub(crate) issued_by: Option<KeyId>,
    pub(crate) role_ceiling: Option<String>,
    /// The address ranges the key may be used from; none means anywhere.
    pub(crate) allowed_addresses: AllowedAddresses,
    /// The key's credit budget; `None`: unlimited.
    pub(crate) credits: Option<Credits>,
    /// Named rate limits, charged with `rate_limit` (at most `MAX_NAMED_LIMITS`, unique names).
    pub(crate) limits: Vec<NamedLimit>,
}

impl ApiKey {
    /// A key with the given essentials, no expiry, no rate limit, no metadata.
    ///
    /// ```
    /// use keygate::{AccountId, ApiKey, Catalog, KeyId, Scope, Timestamp, TokenHash};
    /// let catalog = Catalog::read_write_delete();
    /// let key = ApiKey::new(
    ///     KeyId::from_bytes([1; 16]),
    ///     "Analytics dashboard",
    ///     AccountId::from_u64(1),
    ///     Scope::Account,
    ///     catalog.expand(["read"])?,
    ///     TokenHash::of("idc_0123456789abcdef0123456789abcdef"),
    ///     Timestamp::from_unix_seconds(0),
    /// );
    /// assert!(key.is_active(Timestamp::from_unix_seconds(1)));
    /// # Ok::<(), keygate::CatalogError>(())
    /// ```
    pub fn new(
        id: KeyId,
        name: impl Into<String>,
        account: AccountId,
        scope: Scope,
        permissions: PermissionSet,
        token_hash: TokenHash,
        created_at: Timestamp,
    ) -> Self {
        Self {
            id,
            name: name.into(),
            account,
            scope: scope.into(),
            permissions,
            token_hash,
            retired: None,
            created_at,
            expires_at: None.into(),
            revoked_at: None,
            rate_limit: None,
            role: None,
            tags: Vec::new(),
            comment: None,
            created_by: None,
            issued_by: None,
            role_ceiling: None,
            allowed_addresses: AllowedAddresses::ANY,
            credits: None,
            limits: Vec::new(),
        }
    }

    /// Sets the expiry: the key works while `now < expires_at`.
    pub fn with_expiry(mut self, expires_at: Timestamp) -> Self {
        self.expires_at = Some(expires_at).into();
        self
    }

    /// Restricts the key to client addresses in `ranges` (at most
    /// [`MAX_ADDRESS_RANGES`](crate::MAX_ADDRESS_RANGES); `None` if more); an empty list lifts
    /// the restriction. [`KeySpec::allowed_addresses`](crate::KeySpec::allowed_addresses) is the
    /// checked way to issue one.
    pub fn with_allowed_addresses(mut self, ranges: &[AddressRange]) -> Option<Self> {
        self.allowed_addresses = AllowedAddresses::from_ranges(ranges)?;
        Some(self)
    }

    /// Sets the rate limit.
    pub fn with_rate_limit(mut self, rate_limit: RateLimit) -> Self {
        self.rate_limit = Some(rate_limit);
        self
    }

    /// Sets the credit budget ([`Keyring::admit`](crate::Keyring::admit) spends it).
    pub fn with_credits(mut self, credits: Credits) -> Self {
        self.credits = Some(credits);
        self
    }

    /// Sets the named rate limits: at most [`MAX_NAMED_LIMITS`](crate::MAX_NAMED_LIMITS), with
    /// unique names.
    pub fn with_limits(mut self, limits: Vec<NamedLimit>) -> Result<Self, LimitError> {
        NamedLimit::check_set(&limits)?;
        self.limits = limits;
        Ok(self)
    }

    /// The credit budget, if the key has one.
    pub fn credits(&self) -> Option<&Credits> {
        self.credits.as_ref()
    }

    /// The named rate limits.
    pub fn limits(&self) -> &[NamedLimit] {
        &self.limits
    }

    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }
    /// The key's display name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The owning account.
    pub fn account(&self) -> AccountId {
        self.account
    }
    /// Account-wide or project-scoped.
    pub fn scope(&self) -> Scope {
        self.scope.get().map_or(Scope::Account, Scope::Project)
    }
    /// The frozen grant.
    pub fn permissions(&self) -> &PermissionSet {
        &self.permissions
    }
    /// The hash of the current token.
    pub fn token_hash(&self) -> TokenHash {
        self.token_hash
    }
    /// The secret replaced by the last rotation, while its grace period lasts.
    pub fn retired_secret(&self) -> Option<&RetiredSecret> {
        self.retired.as_ref()
    }
    /// When the key was created.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
    /// When the key stops working, if ever.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expires_at.get()
    }
    /// When the key was revoked, if it was.
    pub fn revoked_at(&self) -> Option<Timestamp> {
        self.revoked_at
    }
    /// The key's rate limit, if any.
    pub fn rate_limit(&self) -> Option<&RateLimit> {
        self.rate_limit.as_ref()
    }
    /// The role the key was issued with, if any.
    pub fn role(&self) -> Option<&str> {
        self.role.as_deref()
    }
    /// Free-form tags (Deepgram's project keys).
    pub fn tags(&self) -> &[String] {
        &self.tags
    }
    /// A comment (Deepgram's project keys).
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }
    /// Who created the key (the voice-agent platform's user id), if recorded. A key issued by another key
    /// inherits its issuer's creator: the user on whose behalf the whole chain acts, and whose
    /// current permissions cap it (see [`Keyring::set_creator_cap`](crate::Keyring::set_creator_cap)).
    pub fn created_by(&self) -> Option<&str> {
        self.created_by.as_deref()
    }
    /// The key that issued this one, if a key did (revoking that key can revoke this one too:
    /// [`Keyring::revoke_tree`](crate::Keyring::revoke_tree)).
    pub fn issued_by(&self) -> Option<KeyId> {
        self.issued_by
    }
    /// The highest catalog role this key, and every key it issues, may be granted: its own role,
    /// or the role ceiling of whoever issued it. It survives a role-less key in the middle of a
    /// chain, so no descendant is ever granted a role ranked above every ancestor's.
    pub fn role_ceiling(&self) -> Option<&str> {
        self.role.as_deref().or(self.role_ceiling.as_deref())
    }

    /// The client address ranges the key may be used from; empty when it may be used from
    /// anywhere.
    pub fn allowed_addresses(&self) -> &[AddressRange] {
        self.allowed_addresses.ranges()
    }

    /// Whether a request from `address` (`None`: unknown) may use the key, by the address rule
    /// of [`authorize`](crate::authorize()) alone, in the same constant time: for a layer that
    /// refuses a disallowed address before any handler runs.
    pub fn allows_address(&self, address: Option<std::net::IpAddr>) -> bool {
        let known = subtle::Choice::from(u8::from(address.is_some()));
        let word = address.map_or(0, crate::address::address_word);
        bool::from(self.allowed_addresses.allows(word, known))
    }

    /// Whether the key was revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    /// Whether the key has expired at `now`: expiry is exclusive, so a key expiring at `t` is
    /// dead at `t`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at().is_some_and(|e| e <= now)
    }

    /// Neither revoked nor expired.
    pub fn is_active(&self, now: Timestamp) -> bool {
        !self.is_revoked() && !self.is_expired(now)
    }

    /// Whether an active key expires within `window` of `now`: the keys to warn their owners
    /// about.
    pub fn expires_within(&self, now: Timestamp, window: Duration) -> bool {
        self.is_active(now) && self.expires_at().is_some_and(|e| e <= now + window)
    }

    /// Revokes the key at once. Revoking again keeps the first time.
    pub fn revoke(&mut self, now: Timestamp) {
        self.revoked_at.get_or_insert(now);
    }

    /// Replaces the secret, keeping id and metadata, and returns the new token (shown once).
    ///
    /// With no grace (`None` or zero) the old token stops working at once, as IdentityCall's API says; with
    /// a grace period it keeps working until `now + grace`. Only the latest retired secret is
    /// kept: rotating twice ends the first one's grace.
    pub fn rotate<R: CryptoRng + ?Sized>(
        &mut self,
        format: &TokenFormat,
        now: Timestamp,
        grace: Option<Duration>,
        rng: &mut R,
    ) -> Result<Token, LifecycleError> {
        if self.is_revoked() {
            return Err(LifecycleError::Revoked);
        }
        let token = format.mint(rng);
        self.retired = grace.filter(|g| !g.is_zero()).map(|g| RetiredSecret {
            token_hash: self.token_hash,
            valid_until: now + g,
        });
        self.token_hash = token.hash();
        Ok(token)
    }
}
