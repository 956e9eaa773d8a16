//! The constant-time helpers, in one file so that the audit surface is one file.
//!
//! Everything here runs in time independent of its arguments' values: no branch, no memory index
//! and no early exit depends on them. The rest of the crate reaches secret or per-key data on its
//! hot paths only through these helpers and `subtle`'s own types.
//!
//! Why hand-rolled helpers beside `subtle`: every `subtle::Choice` operation passes through an
//! optimization barrier, and `authorize` was mostly those barriers. Each helper below does one
//! comparison in a few arithmetic instructions and at most one barrier, where a chain of
//! `Choice`s or `subtle`'s generic `ct_gt` would take many; the `_bit` forms take none, for
//! `authorize`, which puts all its flags through one barrier together.

use core::fmt;

use subtle::Choice;

use crate::scope::{ProjectId, Scope};
use crate::timestamp::Timestamp;

/// An optional value laid out for the constant-time path: a presence flag beside a value that is
/// always initialised (a fixed fill when absent), so reading both needs no branch.
///
/// `Option<T>` leaves the payload of `None` undefined, so every read of it is a `match`, and the
/// compiler turned the ones in `authorize` into branches on whether a key expires and on whether it
/// is project-scoped: `benches/ct.rs` measured both (|t| 6.5 and 4.5 at 300,000 samples per
/// class). The fill is fixed per type, so derived equality agrees with `Option`'s.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Present<T> {
    present: u8,
    value: T,
}

impl<T: Copy> Present<T> {
    fn with_fill(value: Option<T>, fill: T) -> Self {
        match value {
            Some(value) => Self { present: 1, value },
            None => Self {
                present: 0,
                value: fill,
            },
        }
    }

    /// Whether a value is there, as a [`subtle::Choice`].
    pub(crate) fn is_present(&self) -> Choice {
        Choice::from(self.present)
    }

    /// Whether a value is there, as a 0/1 flag (no optimization barrier: for code that puts its
    /// flags through one barrier together, as `authorize` does).
    pub(crate) fn present_bit(&self) -> u8 {
        self.present
    }

    /// The value, or the fill when absent: read it only masked by [`Self::is_present`].
    pub(crate) fn value_or_fill(&self) -> &T {
        &self.value
    }

    /// Back to an `Option` (branches: not for the constant-time path).
    pub(crate) fn get(&self) -> Option<T> {
        (self.present == 1).then_some(self.value)
    }
}

impl From<Option<Timestamp>> for Present<Timestamp> {
    fn from(value: Option<Timestamp>) -> Self {
        Self::with_fill(value, Timestamp::MAX)
    }
}

/// A scope is a project or none (account-wide).
impl From<Scope> for Present<ProjectId> {
    fn from(scope: Scope) -> Self {
        Self::with_fill(scope.project(), ProjectId::from_bytes([0; 16]))
    }
}

/// Shown as the `Option` it stands for.
impl fmt::Debug for Present<Timestamp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.get(), f)
    }
}

/// Shown as the [`Scope`] it stands for.
impl fmt::Debug for Present<ProjectId> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.get().map_or(Scope::Account, Scope::Project), f)
    }
}

/// A 16-byte id as one integer, so that comparing two ids is a single constant-time `u128`
/// comparison (one optimization barrier) instead of sixteen byte comparisons (sixteen barriers).
pub(crate) fn id_word(bytes: &[u8; 16]) -> u128 {
    u128::from_ne_bytes(*bytes)
}

/// `a <= b`, in constant time: `b - a` computed in `i128` (which cannot overflow) is negative
/// exactly when `a > b`, so the answer is its sign bit, flipped. A few arithmetic instructions and
/// one barrier, where subtle's generic `ct_gt` smears bits through a dozen dependent shifts.
pub(crate) fn at_or_before(a: Timestamp, b: Timestamp) -> Choice {
    Choice::from(at_or_before_bit(a, b))
}

/// [`at_or_before`] as a 0/1 flag, without the barrier.
pub(crate) fn at_or_before_bit(a: Timestamp, b: Timestamp) -> u8 {
    let difference = i128::from(b.unix_micros()) - i128::from(a.unix_micros());
    (((difference >> 127) & 1) ^ 1) as u8
}

/// 1 if `a == b`, else 0, by arithmetic: the sign bit of `x | -x` is set exactly when `x != 0`.
pub(crate) fn equal_bit(a: u128, b: u128) -> u8 {
    let differs = a ^ b;
    (((differs | differs.wrapping_neg()) >> 127) as u8) ^ 1
}

/// `code` when `flag` is 1, else `current` (`flag` must be 0 or 1), by a mask: no branch once
/// the flag has passed an optimization barrier, since the compiler then cannot tell it is a
/// boolean.
pub(crate) fn select_code(current: u8, code: u8, flag: u8) -> u8 {
    current ^ ((current ^ code) & flag.wrapping_neg())
}

/// `a > b`, in constant time: the negation of [`at_or_before`].
pub(crate) fn after(a: Timestamp, b: Timestamp) -> Choice {
    !at_or_before(a, b)
}

/// 1 if `a > b`, else 0, without a branch: the borrow of `b - a` in 128 bits, where it cannot
/// wrap into the low bits. One instruction pattern, cheaper than a chain of `Choice`s.
pub(crate) fn above_u64(a: u64, b: u64) -> u8 {
    ((u128::from(b).wrapping_sub(u128::from(a))) >> 127) as u8
}

/// 1 if `lo <= c <= hi`, else 0, without a branch: in 32 bits, `c - lo` wraps to a value with
/// the top bit set exactly when `c < lo`, and `hi - c` exactly when `c > hi`.
pub(crate) fn in_range(c: u8, lo: u8, hi: u8) -> u32 {
    let c = u32::from(c);
    let below = c.wrapping_sub(u32::from(lo)) >> 31;
    let above = u32::from(hi).wrapping_sub(c) >> 31;
    (below | above) ^ 1
}

/// The CRC-32 of `bytes` (IEEE 802.3, reflected, polynomial `0xEDB88320`: zlib's, PNG's and
/// GitHub's token checksum), bit by bit without a table: a table lookup would be a memory address
/// derived from the token. Each bit is a mask and an XOR; the running value goes through
/// `black_box` once per byte so that the optimizer cannot turn the masks into branches. The loop
/// length is the slice's, which is public.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
        crc = core::hint::black_box(crc);
    }
    !crc
}

/// The base-62 digit `d` (below 62) as a character of `0-9A-Za-z`, by arithmetic instead of a
/// table: `'0' + d`, plus the 7 characters between `'9'` and `'A'` once `d > 9`, plus the 6
/// between `'Z'` and `'a'` once `d > 35`.
fn base62_digit(d: u32) -> u8 {
    let past_9 = 9u32.wrapping_sub(d) >> 31;
    let past_z = 35u32.wrapping_sub(d) >> 31;
    (u32::from(b'0') + d + 7 * past_9 + 6 * past_z) as u8
}

/// `value` in base 62 (`0-9A-Za-z`, GitHub's order), most significant digit first, left-padded
/// with `'0'` to six digits: 62^6 > 2^32, so every `u32` fits. Division by the constant 62
/// compiles to a multiplication, whose time does not depend on its operands.
pub(crate) fn base62_u32(mut value: u32) -> [u8; 6] {
    let mut out = [b'0'; 6];
    for digit in out.iter_mut().rev() {
        *digit = base62_digit(value % 62);
        value /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_agree_with_the_plain_operators() {
        let samples = [i64::MIN, i64::MIN + 1, -1, 0, 1, 7, i64::MAX - 1, i64::MAX];
        for &a in &samples {
            for &b in &samples {
                let (ta, tb) = (
                    Timestamp::from_unix_micros(a),
                    Timestamp::from_unix_micros(b),
                );
                assert_eq!(bool::from(at_or_before(ta, tb)), a <= b, "{a} <= {b}");
                assert_eq!(bool::from(after(ta, tb)), a > b, "{a} > {b}");
                let (ua, ub) = (a as u64, b as u64);
                assert_eq!(above_u64(ua, ub) == 1, ua > ub, "{ua} > {ub}");
            }
        }
        for c in 0..=255u8 {
            assert_eq!(in_range(c, b'a', b'z') == 1, c.is_ascii_lowercase());
        }
    }

    #[test]
    fn crc32_matches_the_standard_check_values() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b"a"), 0xE8B7_BE43);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    #[test]
    fn base62_is_positional_in_github_order() {
        let alphabet = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        for (d, &c) in (0u32..).zip(alphabet.iter()) {
            assert_eq!(base62_digit(d), c, "{d}");
        }
        assert_eq!(&base62_u32(0), b"000000");
        assert_eq!(&base62_u32(61), b"00000z");
        assert_eq!(&base62_u32(62), b"000010");
        // u32::MAX = 4·62^5 + 42·62^4 + 41·62^3 + 15·62^2 + 12·62 + 3.
        assert_eq!(&base62_u32(u32::MAX), b"4gfFC3");
    }
}
