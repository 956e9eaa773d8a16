//! Address restrictions: the CIDR ranges a key may be used from, and the constant-time check.
//!
//! Every address is 128 bits: IPv6 as is, IPv4 mapped into `::ffff:0:0/96`, so one check covers
//! both families and an IPv4 range never matches an IPv6 client outside the mapped block. A key
//! holds at most [`MAX_ADDRESS_RANGES`] ranges in a fixed array, and the check visits every slot,
//! present or not, so its time depends on neither the ranges nor the address.

use core::fmt;
use core::str::FromStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use subtle::Choice;

/// The most address ranges one key may carry. Fixed so the check is a fixed loop over an array
/// (no allocation, no length-dependent time); eight covers an office, a VPN and a few cloud
/// egress blocks, as Unkey's and Stripe's restricted keys are typically used.
pub const MAX_ADDRESS_RANGES: usize = 8;

/// The IPv4-mapped IPv6 block, `::ffff:0:0/96`, where IPv4 addresses live as 128-bit words.
const V4_MAPPED: u128 = 0xffff_u128 << 32;

/// An address as one 128-bit word: IPv4 mapped into `::ffff:0:0/96`.
pub(crate) fn address_word(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => V4_MAPPED | u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// A CIDR range of client addresses, IPv4 (`10.0.0.0/8`) or IPv6 (`2001:db8::/32`).
///
/// Parsed strictly: the address part must have no bits set below the prefix (`10.0.0.1/8` is
/// refused, so a typo cannot silently widen or move a range), and a bare address is a range of
/// one (`/32` or `/128`). Shown and serialized in the family it was written in.
///
/// ```
/// use keygate::AddressRange;
/// let office: AddressRange = "10.0.0.0/8".parse()?;
/// assert!(office.contains("10.1.2.3".parse()?));
/// assert!(!office.contains("11.0.0.1".parse()?));
/// assert!(!office.contains("::a01:203".parse()?)); // IPv4 ranges hold only IPv4 clients
/// assert_eq!(office.to_string(), "10.0.0.0/8");
/// assert!("10.0.0.1/8".parse::<AddressRange>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressRange {
    /// The network, as a 128-bit word (IPv4 mapped), with no bits outside `mask`.
    network: u128,
    /// The prefix as a mask of leading ones over the 128-bit word.
    mask: u128,
    /// Written as IPv4: shown back as IPv4 with a prefix 96 shorter.
    v4: bool,
}

/// A CIDR range did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address range {0:?}: expected a CIDR range such as 10.0.0.0/8 or 2001:db8::/32")]
pub struct AddressRangeError(String);

/// `prefix` leading ones in 128 bits (`prefix <= 128`).
fn mask_of(prefix: u32) -> u128 {
    u128::MAX.checked_shl(128 - prefix).unwrap_or(0)
}

impl AddressRange {
    /// The range `address/prefix`, if the prefix fits the family and no host bits are set.
    pub fn new(address: IpAddr, prefix: u8) -> Option<Self> {
        let (v4, prefix) = match address {
            IpAddr::V4(_) if prefix <= 32 => (true, u32::from(prefix) + 96),
            IpAddr::V6(_) if prefix <= 128 => (false, u32::from(prefix)),
            IpAddr::V4(_) | IpAddr::V6(_) => return None,
        };
        let network = address_word(address);
        let mask = mask_of(prefix);
        (network & !mask == 0).then_some(Self { network, mask, v4 })
    }

    /// Whether `address` lies in the range (not constant time: for issuing and tests).
    pub fn contains(&self, address: IpAddr) -> bool {
        address_word(address) & self.mask == self.network
    }

    /// Whether every address of `self` lies in `outer`.
    pub fn is_within(&self, outer: &AddressRange) -> bool {
        // `outer` is no narrower, and `self`'s network lies in it.
        self.mask & outer.mask == outer.mask && self.network & outer.mask == outer.network
    }

    /// The prefix length, in the family the range was written in.
    pub fn prefix(&self) -> u8 {
        let bits = self.mask.leading_ones();
        let bits = if self.v4 {
            bits.saturating_sub(96)
        } else {
            bits
        };
        u8::try_from(bits).unwrap_or(u8::MAX)
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        if self.v4 {
            // The low 32 bits of a mapped word are the IPv4 address.
            IpAddr::V4(Ipv4Addr::from(self.network as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.network))
        }
    }
}

impl FromStr for AddressRange {
    type Err = AddressRangeError;
    fn from_str(text: &str) -> Result<Self, AddressRangeError> {
        let error = || AddressRangeError(crate::issue::echo(text));
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => {
                // `u8::from_str` takes a leading `+`; a CIDR prefix is digits only.
                if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(error());
                }
                (address, Some(prefix.parse::<u8>().map_err(|_| error())?))
            }
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| error())?;
        let prefix = prefix.unwrap_or(match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        });
        Self::new(address, prefix).ok_or_else(error)
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix())
    }
}

impl fmt::Debug for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AddressRange({self})")
    }
}

impl Serialize for AddressRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AddressRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A slot that holds no range and matches no address: masked by 0 every address is 0, which is
/// not the network 1. (No real range has a bit of its network outside its mask.) So the check
/// needs no presence flag per slot.
const EMPTY: AddressRange = AddressRange {
    network: 1,
    mask: 0,
    v4: false,
};

/// A key's ranges as the constant-time path reads them: a fixed array, unused slots filled with
/// [`EMPTY`], and a count. No ranges means no restriction.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AllowedAddresses {
    slots: [AddressRange; MAX_ADDRESS_RANGES],
    len: u8,
}

impl AllowedAddresses {
    /// No restriction.
    pub(crate) const ANY: Self = Self {
        slots: [EMPTY; MAX_ADDRESS_RANGES],
        len: 0,
    };

    /// The ranges, if there are at most [`MAX_ADDRESS_RANGES`]; `None` otherwise.
    pub(crate) fn from_ranges(ranges: &[AddressRange]) -> Option<Self> {
        if ranges.len() > MAX_ADDRESS_RANGES {
            return None;
        }
        let mut out = Self::ANY;
        for (slot, range) in out.slots.iter_mut().zip(ranges) {
            *slot = *range;
        }
        out.len = u8::try_from(ranges.len()).ok()?;
        Some(out)
    }

    /// The ranges, in the order given.
    pub(crate) fn ranges(&self) -> &[AddressRange] {
        self.slots.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Whether a request from `address` (a 128-bit word; `has_address` false when unknown) may
    /// use the key, in constant time: every slot is evaluated, used or not, and the answer is
    /// `!has_ranges | (has_address & any(address & mask_i == network_i))`. An
    /// unknown address is refused by a restricted key (deny by default) and allowed by an
    /// unrestricted one.
    ///
    /// Plain arithmetic on every slot and one optimization barrier at the end: a `Choice` per
    /// slot, as first written, passed some thirty barriers and made `authorize` cost almost
    /// twice as much. Empty slots need no presence flag, as they match nothing ([`EMPTY`]).
    pub(crate) fn allows(&self, address: u128, has_address: Choice) -> Choice {
        Choice::from(self.allows_bit(address, has_address.unwrap_u8()))
    }

    /// [`allows`](Self::allows) as a 0/1 flag, without the barrier, for `authorize`, which puts
    /// all its flags through one.
    pub(crate) fn allows_bit(&self, address: u128, has_address: u8) -> u8 {
        let mut matched = 0u8;
        for slot in &self.slots {
            matched |= crate::ct::equal_bit(address & slot.mask, slot.network);
        }
        // `len != 0` as the borrow of `0 - len`.
        let has_ranges = (0u32.wrapping_sub(u32::from(self.len)) >> 31) as u8;
        (has_ranges ^ 1) | (has_address & matched)
    }
}

impl fmt::Debug for AllowedAddresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ranges()).finish()
    }
}

impl Default for AllowedAddresses {
    fn default() -> Self {
        Self::ANY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> AddressRange {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_both_families() {
        for text in [
            "10.0.0.0/8",
            "0.0.0.0/0",
            "192.168.1.7/32",
            "2001:db8::/32",
            "::/0",
            "::1/128",
        ] {
            assert_eq!(range(text).to_string(), text);
        }
        assert_eq!(range("127.0.0.1").to_string(), "127.0.0.1/32");
        assert_eq!(range("::1").to_string(), "::1/128");
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.1/8",
            "10.0.0.0/+8",
            "10.0.0/8",
            "2001:db8::/129",
            "2001:db8::1/32",
            "x/8",
            "10.0.0.0/8/8",
        ] {
            assert!(bad.parse::<AddressRange>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn ipv4_ranges_hold_only_ipv4_and_mapped_clients() {
        let v4 = range("10.0.0.0/8");
        assert!(v4.contains(ip("10.255.0.1")));
        assert!(!v4.contains(ip("11.0.0.0")));
        // The same bits outside the mapped block are another address.
        assert!(!v4.contains(ip("::a00:1")));
        assert!(v4.contains(ip("::ffff:10.0.0.1")));
        assert!(range("0.0.0.0/0").contains(ip("1.2.3.4")));
        assert!(!range("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(range("::/0").contains(ip("1.2.3.4")));
    }

    #[test]
    fn containment_of_ranges() {
        assert!(range("10.1.0.0/16").is_within(&range("10.0.0.0/8")));
        assert!(range("10.0.0.0/8").is_within(&range("10.0.0.0/8")));
        assert!(!range("10.0.0.0/8").is_within(&range("10.1.0.0/16")));
        assert!(!range("11.0.0.0/16").is_within(&range("10.0.0.0/8")));
        assert!(range("10.0.0.0/8").is_within(&range("::/0")));
        assert!(!range("2001:db8::/32").is_within(&range("0.0.0.0/0")));
    }

    #[test]
    fn constant_time_check_agrees_with_contains() {
        let ranges = [range("10.0.0.0/8"), range("2001:db8::/32")];
        let allowed = AllowedAddresses::from_ranges(&ranges).unwrap();
        for text in ["10.0.0.1", "11.0.0.1", "2001:db8::5", "2001:db9::", "::"] {
            let want = ranges.iter().any(|r| r.contains(ip(text)));
            let got = allowed.allows(address_word(ip(text)), Choice::from(1));
            assert_eq!(bool::from(got), want, "{text}");
        }
        // No address: refused when restricted, allowed when not.
        assert!(!bool::from(allowed.allows(0, Choice::from(0))));
        assert!(bool::from(AllowedAddresses::ANY.allows(0, Choice::from(0))));
        assert!(bool::from(AllowedAddresses::ANY.allows(5, Choice::from(1))));
        assert!(AllowedAddresses::from_ranges(&[range("::/0"); MAX_ADDRESS_RANGES + 1]).is_none());
    }
}
