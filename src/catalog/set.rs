//! Permissions and the fixed-width bitsets keys hold: every set operation the constant-time
//! decision uses.

use core::fmt;

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::{MAX_PERMISSIONS, WORDS};

/// One permission of a catalog: its index, `0..catalog.len()`.
///
/// Only meaningful together with the catalog that produced it.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permission(pub(crate) u8);

impl Permission {
    /// The permission at index 0: a placeholder where a value is needed but never read.
    pub(crate) const FIRST: Self = Self(0);

    /// The permission at `index`.
    pub(crate) const fn from_index(index: u8) -> Self {
        Self(index)
    }

    /// The index of this permission in its catalog.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// A set of permissions: a fixed 256-bit bitset, no heap, constant-time membership.
///
/// ```
/// use keygate::Catalog;
/// let catalog = Catalog::read_write_delete();
/// let read = catalog.permission("read").unwrap();
/// let rw = catalog.expand(["read", "write"])?;
/// assert!(bool::from(rw.contains(read)));
/// assert!(catalog.expand(["read"])?.is_subset(&rw));
/// assert_eq!(catalog.names(&rw).collect::<Vec<_>>(), ["read", "write"]);
/// # Ok::<(), keygate::CatalogError>(())
/// ```
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PermissionSet(pub(crate) [u64; WORDS]);

impl PermissionSet {
    /// No permissions.
    pub const EMPTY: PermissionSet = PermissionSet([0; WORDS]);
    /// Every permission index a catalog can define: as a cap, no restriction at all.
    pub const ALL: PermissionSet = PermissionSet([u64::MAX; WORDS]);

    /// The set holding exactly `permission`.
    pub const fn single(permission: Permission) -> Self {
        let index = permission.0 as usize;
        let bit = 1u64 << (index % 64);
        // A `u8` index over 64 is below 4 = WORDS (asserted below), so every index has its arm.
        Self(match index / 64 {
            0 => [bit, 0, 0, 0],
            1 => [0, bit, 0, 0],
            2 => [0, 0, bit, 0],
            _ => [0, 0, 0, bit],
        })
    }

    /// Adds a permission.
    pub fn insert(&mut self, permission: Permission) {
        let index = permission.index();
        if let Some(word) = self.0.get_mut(index / 64) {
            *word |= 1 << (index % 64);
        }
    }

    /// Whether `permission` is in the set, in time independent of the set's bits and of which
    /// permission is asked for: every word is read, and the wanted one is picked by mask.
    pub fn contains(&self, permission: Permission) -> Choice {
        let index = permission.index();
        let wanted_word = (index / 64) as u64;
        let mut word = 0u64;
        for (i, w) in self.0.iter().enumerate() {
            word.conditional_assign(w, (i as u64).ct_eq(&wanted_word));
        }
        Choice::from(((word >> (index % 64)) & 1) as u8)
    }

    /// Every permission in either set.
    pub fn union(&self, other: &Self) -> Self {
        let mut out = *self;
        for (o, b) in out.0.iter_mut().zip(other.0.iter()) {
            *o |= b;
        }
        out
    }

    /// The permissions in both sets.
    pub fn intersection(&self, other: &Self) -> Self {
        let mut out = *self;
        for (o, b) in out.0.iter_mut().zip(other.0.iter()) {
            *o &= b;
        }
        out
    }

    /// Whether every permission of `self` is in `other`, computed over all bits without early exit.
    pub fn ct_is_subset(&self, other: &Self) -> Choice {
        // self ⊆ other iff no bit is set in self and clear in other.
        let mut outside = 0u64;
        for (a, b) in self.0.iter().zip(other.0.iter()) {
            outside |= a & !b;
        }
        outside.ct_eq(&0)
    }

    /// The set's words, for the constant-time rules in `authorize`.
    pub(crate) const fn words(&self) -> &[u64; WORDS] {
        &self.0
    }

    /// The set's words, to fill.
    pub(crate) fn words_mut(&mut self) -> &mut [u64; WORDS] {
        &mut self.0
    }

    /// The lowest permission in the set, or [`Permission::FIRST`] when it is empty, without a
    /// branch or a memory index that depends on the bits: the trailing zeros of the whole
    /// 256-bit set, from each word's, by arithmetic alone.
    #[cfg(test)]
    pub(crate) fn ct_lowest(&self) -> Permission {
        // The barrier hides that each count is at most 64, so the compiler cannot see that
        // `count >> 6` in `lowest_of_counts` is a 0-or-1 "word is zero" flag and turn the
        // arithmetic into a select, or a branch. One barrier for all four words: per-word
        // `Choice` selection cost a dozen instructions a word more, on every `authorize`.
        Self::lowest_of_counts(core::hint::black_box(self.trailing_zero_counts()))
    }

    /// Each word's trailing zeros (64 for a zero word): `trailing_zeros` compiles to `tzcnt` (or
    /// `bsf` and a `cmov` for zero) on x86-64 and to `rbit` + `clz` on aarch64, no branch, and
    /// latency independent of the value on current cores. Put them through an optimization
    /// barrier before [`lowest_of_counts`](Self::lowest_of_counts).
    pub(crate) fn trailing_zero_counts(&self) -> [u32; WORDS] {
        let [w0, w1, w2, w3] = self.0;
        [
            w0.trailing_zeros(),
            w1.trailing_zeros(),
            w2.trailing_zeros(),
            w3.trailing_zeros(),
        ]
    }

    /// The lowest permission from [`trailing_zero_counts`](Self::trailing_zero_counts) that
    /// passed a barrier: the zeros of words 0..i, then those of word i only when every word
    /// before it is zero.
    pub(crate) fn lowest_of_counts([t0, t1, t2, t3]: [u32; WORDS]) -> Permission {
        // `(count >> 6)` is 1 exactly for a zero word, and `0 - 1` masks everything in. Wrapping
        // adds: the sum is at most 256, and a checked add would be a branch on the bits.
        let then =
            |count: u32, rest: u32| count.wrapping_add((0u32.wrapping_sub(count >> 6)) & rest);
        // At most 256 (an empty set), which truncates to 0: the documented answer.
        Permission(then(t0, then(t1, then(t2, t3))) as u8)
    }

    /// [`ct_is_subset`](Self::ct_is_subset) as a `bool`, for code that is not secret-dependent.
    pub fn is_subset(&self, other: &Self) -> bool {
        self.ct_is_subset(other).into()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// How many permissions the set holds.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The permissions in index order.
    pub fn iter(&self) -> impl Iterator<Item = Permission> + '_ {
        (0..MAX_PERMISSIONS).filter_map(move |i| {
            let p = Permission(u8::try_from(i).ok()?);
            bool::from(self.contains(p)).then_some(p)
        })
    }
}

impl ConditionallySelectable for PermissionSet {
    fn conditional_select(a: &Self, b: &Self, choice: Choice) -> Self {
        let mut out = *a;
        for (o, (x, y)) in out.0.iter_mut().zip(a.0.iter().zip(b.0.iter())) {
            *o = u64::conditional_select(x, y, choice);
        }
        out
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(|p| p.0)).finish()
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        let mut set = Self::EMPTY;
        for p in iter {
            set.insert(p);
        }
        set
    }
}
