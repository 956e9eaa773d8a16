//! Creator caps: a key never does more than its creator can do now.

use std::collections::HashMap;

use crate::catalog::PermissionSet;

/// The cap of keys that record no creator: [`PermissionSet::ALL`].
pub(super) const NO_CREATOR_SLOT: u32 = 0;
/// A cap that is always empty, for when creator slots run out.
const EMPTY_SLOT: u32 = 1;

/// The current permissions of every creator the keyring has heard of, by cap slot.
#[derive(Debug, Clone)]
pub(super) struct CreatorCaps {
    caps: Vec<PermissionSet>,
    by_creator: HashMap<String, u32>,
}

impl Default for CreatorCaps {
    fn default() -> Self {
        Self {
            caps: vec![PermissionSet::ALL, PermissionSet::EMPTY],
            by_creator: HashMap::new(),
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
