//! Tenancy: who owns a key or a resource, and how far a key reaches.
//!
//! Ids are 16 bytes so that both integer ids (IdentityCall's `"id": 42`) and UUIDs (the AI-app platform and Deepgram)
//! fit one fixed-size, constant-time comparable type. An integer id is stored big-endian in the low
//! eight bytes with the high eight bytes zero; no version-4 UUID has eight leading zero bytes (its
//! version nibble sits in byte 6), and a UUID string with eight leading zero bytes is refused when
//! parsed, so the two forms never collide and each prints and serializes back the way it came in:
//! integers as JSON numbers, UUIDs as hyphenated strings.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::{Choice, ConstantTimeEq};

/// An id string was neither a decimal integer nor a UUID (a UUID whose first eight bytes are zero
/// is refused too: that is the integer form's space, so write the integer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid id {input:?}: expected a non-negative integer or a hyphenated UUID")]
pub struct IdError {
    input: String,
}

impl IdError {
    fn new(input: &str) -> Self {
        // Cap what we echo back: the input may be attacker-chosen and arbitrarily long.
        Self {
            input: input.chars().take(64).collect(),
        }
    }
}

/// The 16 raw bytes behind [`AccountId`] and [`ProjectId`].
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct RawId([u8; 16]);

impl RawId {
    fn from_u64(value: u64) -> Self {
        let mut bytes = [0u8; 16];
        let (_, low) = bytes.split_at_mut(8);
        low.copy_from_slice(&value.to_be_bytes());
        Self(bytes)
    }

    /// The integer this id was made from, if it was made from one.
    fn as_u64(&self) -> Option<u64> {
        let (high, low) = self.0.split_at(8);
        if high.iter().any(|&b| b != 0) {
            return None;
        }
        let mut buf = [0u8; 8];
        buf.copy_from_slice(low);
        Some(u64::from_be_bytes(buf))
    }

    fn parse(input: &str) -> Result<Self, IdError> {
        if !input.is_empty() && input.bytes().all(|b| b.is_ascii_digit()) {
            return input
                .parse::<u64>()
                .map(Self::from_u64)
                .map_err(|_| IdError::new(input));
        }
        Self::parse_uuid(input).ok_or_else(|| IdError::new(input))
    }

    /// Parses the hyphenated 8-4-4-4-12 form, either case.
    fn parse_uuid(input: &str) -> Option<Self> {
        let bytes = input.as_bytes();
        if bytes.len() != 36 {
            return None;
        }
        let mut out = [0u8; 16];
        let mut nibbles = bytes.iter().enumerate().filter_map(|(i, &c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                None
            } else {
                Some(c)
            }
        });
        for (i, &c) in bytes.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) && c != b'-' {
                return None;
            }
        }
        for byte in &mut out {
            let high = hex_value(nibbles.next()?)?;
            let low = hex_value(nibbles.next()?)?;
            *byte = (high << 4) | low;
        }
        let id = Self(out);
        // Eight leading zero bytes are the integer form's space: refusing them here keeps the two
        // spaces disjoint, so "42" and "00000000-0000-0000-0000-00000000002a" are never one id
        // reached two ways. (No versioned UUID has them: its version nibble sits in byte 6.)
        id.as_u64().is_none().then_some(id)
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for RawId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.as_u64() {
            return write!(f, "{n}");
        }
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl Serialize for RawId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.as_u64() {
            Some(n) => serializer.serialize_u64(n),
            None => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for RawId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer or a UUID string")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawId, E> {
                Ok(RawId::from_u64(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawId, E> {
                u64::try_from(v)
                    .map(RawId::from_u64)
                    .map_err(|_| E::custom("id must not be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawId, E> {
                RawId::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(RawId);

        impl $name {
            /// The id for an integer, as APIs with numeric ids use (`42`).
            pub fn from_u64(value: u64) -> Self {
                Self(RawId::from_u64(value))
            }

            /// The id from its 16 raw bytes (for example a UUID's bytes).
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(RawId(bytes))
            }

            /// The 16 raw bytes.
            pub const fn as_bytes(&self) -> &[u8; 16] {
                &self.0 .0
            }

            /// The integer this id was made from, or `None` for a UUID-style id.
            pub fn as_u64(&self) -> Option<u64> {
                self.0.as_u64()
            }
        }

        impl ConstantTimeEq for $name {
            fn ct_eq(&self, other: &Self) -> Choice {
                self.0 .0.ct_eq(&other.0 .0)
            }
        }

        impl From<u64> for $name {
            fn from(value: u64) -> Self {
                Self::from_u64(value)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            /// Parses a decimal integer (`"42"`) or a hyphenated UUID.
            fn from_str(s: &str) -> Result<Self, IdError> {
                RawId::parse(s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }
    };
}

id_type!(
    /// The tenant that owns keys and projects. No key ever reaches another account.
    ///
    /// ```
    /// use keygate::AccountId;
    /// let a: AccountId = "7".parse()?;
    /// assert_eq!(a, AccountId::from_u64(7));
    /// let b: AccountId = "3f2c1a9e-8b7d-4c6e-9a1f-2b3c4d5e6f70".parse()?;
    /// assert_eq!(b.to_string(), "3f2c1a9e-8b7d-4c6e-9a1f-2b3c4d5e6f70");
    /// assert_eq!(b.as_u64(), None);
    /// # Ok::<(), keygate::IdError>(())
    /// ```
    AccountId
);

id_type!(
    /// A project inside an account: the container a project-scoped key is confined to.
    ///
    /// ```
    /// use keygate::ProjectId;
    /// let p = ProjectId::from_u64(42);
    /// assert_eq!(serde_json::to_string(&p)?, "42");
    /// assert_eq!(serde_json::from_str::<ProjectId>("42")?, p);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    ProjectId
);

/// How far a key reaches inside its account.
///
/// ```
/// use keygate::{ProjectId, Scope};
/// let p = ProjectId::from_u64(1);
/// assert!(Scope::Account.reaches(p));
/// assert!(Scope::Project(p).reaches(p));
/// assert!(!Scope::Project(p).reaches(ProjectId::from_u64(2)));
/// ```
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Account-wide: every project of the account, and account-level actions.
    Account,
    /// Project-scoped: resources of this one project only, never account-level actions.
    Project(ProjectId),
}

impl Scope {
    /// Whether a key with this scope may see resources of `project`. Use it to filter listings.
    pub fn reaches(&self, project: ProjectId) -> bool {
        match self {
            Scope::Account => true,
            Scope::Project(own) => *own == project,
        }
    }

    /// Whether this scope lies within `outer`: the rule for issuing (a project-scoped issuer mints
    /// keys for its own project only).
    pub fn is_within(&self, outer: &Scope) -> bool {
        match (outer, self) {
            (Scope::Account, _) => true,
            (Scope::Project(o), Scope::Project(s)) => o == s,
            (Scope::Project(_), Scope::Account) => false,
        }
    }

    /// The project of a project-scoped key.
    pub fn project(&self) -> Option<ProjectId> {
        match self {
            Scope::Account => None,
            Scope::Project(p) => Some(*p),
        }
    }
}

/// What a request touches: always an account, and usually a project inside it.
///
/// ```
/// use keygate::{AccountId, ProjectId, Resource};
/// let acct = AccountId::from_u64(1);
/// let recording = Resource::in_project(acct, ProjectId::from_u64(42));
/// assert_eq!(recording.project(), Some(ProjectId::from_u64(42)));
/// assert_eq!(Resource::account(acct).project(), None);
/// ```
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Resource {
    account: AccountId,
    target: Target,
    /// The client's address as a 128-bit word (IPv4 mapped), read only with `has_address`:
    /// kept as plain data so the address check needs no branch on it.
    address: u128,
    /// Whether the caller said where the request came from ([`Resource::from_address`]).
    has_address: bool,
}

/// The three kinds of resource. Kept private so the encoding used by the constant-time path
/// cannot be built inconsistently.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    Account,
    Listing,
    Project(ProjectId),
}

impl Resource {
    /// The account itself: where projects are created, and account settings live. A
    /// project-scoped key never reaches it.
    pub fn account(account: AccountId) -> Self {
        Self {
            account,
            target: Target::Account,
            address: 0,
            has_address: false,
        }
    }

    /// A collection that spans projects (`GET /projects`, `GET /recordings`). Every key of the
    /// account reaches it; the server must filter the items with [`Scope::reaches`].
    pub fn listing(account: AccountId) -> Self {
        Self {
            account,
            target: Target::Listing,
            address: 0,
            has_address: false,
        }
    }

    /// Anything inside one project: the project itself, its recordings, its keys.
    pub fn in_project(account: AccountId, project: ProjectId) -> Self {
        Self {
            account,
            target: Target::Project(project),
            address: 0,
            has_address: false,
        }
    }

    /// The owning account.
    pub fn account_id(&self) -> AccountId {
        self.account
    }

    /// The project, for a resource inside one.
    pub fn project(&self) -> Option<ProjectId> {
        match self.target {
            Target::Project(p) => Some(p),
            Target::Account | Target::Listing => None,
        }
    }

    /// Whether this is a cross-project listing.
    pub fn is_listing(&self) -> bool {
        self.target == Target::Listing
    }

    /// The same resource, requested from `address`: the client's address, for keys restricted
    /// to address ranges ([`KeySpec::allowed_addresses`](crate::KeySpec::allowed_addresses)).
    ///
    /// Without it the address is unknown, and a key with ranges refuses the request
    /// ([`Deny::AddressNotAllowed`](crate::Deny::AddressNotAllowed)): deny by default. A key
    /// without ranges allows every address, known or not.
    ///
    /// ```
    /// use keygate::{AccountId, Resource};
    /// let at = Resource::listing(AccountId::from_u64(1)).from_address("10.1.2.3".parse()?);
    /// assert_eq!(at.address(), Some("10.1.2.3".parse()?));
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    #[must_use]
    pub fn from_address(mut self, address: std::net::IpAddr) -> Self {
        self.address = crate::address::address_word(address);
        self.has_address = true;
        self
    }

    /// The client's address, if the caller gave it, as IPv6 (IPv4 mapped into `::ffff:0:0/96`
    /// shown back as IPv4).
    pub fn address(&self) -> Option<std::net::IpAddr> {
        self.has_address.then(|| {
            let v6 = std::net::Ipv6Addr::from(self.address);
            v6.to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4)
        })
    }

    pub(crate) fn target(&self) -> Target {
        self.target
    }

    /// The address as the constant-time path reads it: (is known, 128-bit word).
    pub(crate) fn address_bits(&self) -> (u8, u128) {
        (u8::from(self.has_address), self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_and_uuid_ids_round_trip_through_text_and_json() {
        for text in [
            "0",
            "42",
            "18446744073709551615",
            "3f2c1a9e-8b7d-4c6e-9a1f-2b3c4d5e6f70",
        ] {
            let id: ProjectId = text.parse().unwrap();
            assert_eq!(id.to_string(), text);
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(serde_json::from_str::<ProjectId>(&json).unwrap(), id);
        }
        assert_eq!(
            serde_json::to_string(&ProjectId::from_u64(42)).unwrap(),
            "42"
        );
    }

    #[test]
    fn uppercase_uuid_is_accepted_and_printed_lowercase() {
        let id: AccountId = "3F2C1A9E-8B7D-4C6E-9A1F-2B3C4D5E6F70".parse().unwrap();
        assert_eq!(id.to_string(), "3f2c1a9e-8b7d-4c6e-9a1f-2b3c4d5e6f70");
    }

    #[test]
    fn malformed_ids_are_errors() {
        for bad in [
            "",
            "-1",
            "18446744073709551616",
            "4x",
            "3f2c1a9e-8b7d-4c6e-9a1f-2b3c4d5e6f7",
            "3f2c1a9e08b7d-4c6e-9a1f-2b3c4d5e6f70",
            "3f2c1a9e-8b7d-4c6e-9a1f-2b3c4d5e6fzz",
            "é",
        ] {
            assert!(bad.parse::<ProjectId>().is_err(), "{bad:?} parsed");
        }
        assert!(serde_json::from_str::<ProjectId>("-3").is_err());
        assert!(serde_json::from_str::<ProjectId>("1.5").is_err());
        assert!(serde_json::from_str::<ProjectId>("null").is_err());
    }

    #[test]
    fn scope_containment() {
        let p1 = ProjectId::from_u64(1);
        let p2 = ProjectId::from_u64(2);
        assert!(Scope::Project(p1).is_within(&Scope::Account));
        assert!(Scope::Project(p1).is_within(&Scope::Project(p1)));
        assert!(!Scope::Project(p2).is_within(&Scope::Project(p1)));
        assert!(!Scope::Account.is_within(&Scope::Project(p1)));
        assert!(Scope::Account.is_within(&Scope::Account));
    }
}
