//! Copy-on-write tables for the keyring's snapshots, so that a change copies a path, not a table.
//!
//! A [`SharedKeyring`](super::SharedKeyring) publishes a new snapshot per change while readers
//! keep the old one. With plain `Vec`s and `HashMap`s the writer copied every table per change:
//! linear in the number of keys (a server measured 94 ms for one key creation at 100,000 keys).
//! These tables share their nodes between snapshots behind `Arc`s: cloning one is a reference
//! count, and a change copies only the nodes on its path (at most 256 entries per level), so a
//! write costs O(log n) whatever the keyring's size.
//!
//! They are the classic persistent vector (a trie of 256-way nodes indexed by the position's
//! bits, as in Clojure's `PersistentVector`) and a hash trie (16-way nodes indexed by a keyed
//! SipHash of the key, leaves of a few entries). Nothing here is on the constant-time path except
//! [`PVec::get`], whose steps depend only on the table's height.

use core::fmt;
use core::hash::{BuildHasher, Hash};
use std::collections::hash_map::RandomState;
use std::sync::Arc;

/// Bits of a position consumed per level of a [`PVec`]. Wide nodes keep lookups shallow (two
/// levels up to 65,536 elements, three up to 16 million, the upper ones staying in cache) at the
/// price of copying up to 256 elements per level on a change: 64-way nodes made a lookup at a
/// million keys about 1.5x slower for a change about 2x cheaper.
const BITS: u32 = 8;
/// Children per node.
const WIDTH: usize = 1 << BITS;
const MASK: usize = WIDTH - 1;

/// A node holds its children or elements inline behind one `Arc`, so that a lookup costs one
/// dependent load per level (not two, as `Arc<Vec<_>>` would).
enum Node<T> {
    Leaf(Arc<[T]>),
    Branch(Arc<[Node<T>]>),
}

impl<T> Clone for Node<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Leaf(items) => Self::Leaf(Arc::clone(items)),
            Self::Branch(children) => Self::Branch(Arc::clone(children)),
        }
    }
}

impl<T> Node<T> {
    fn empty(height: u32) -> Self {
        if height == 0 {
            Self::Leaf(Arc::from([]))
        } else {
            Self::Branch(Arc::from([]))
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Self::Leaf(items) => items.is_empty(),
            Self::Branch(children) => children.is_empty(),
        }
    }
}

/// `slice` with `value` appended: a new allocation of at most [`WIDTH`] elements.
fn appended<T: Clone>(slice: &Arc<[T]>, value: T) -> Arc<[T]> {
    slice
        .iter()
        .cloned()
        .chain(core::iter::once(value))
        .collect()
}

/// `slice` without its last element, which is returned.
fn truncated<T: Clone>(slice: &Arc<[T]>) -> Option<(Arc<[T]>, T)> {
    let (last, rest) = slice.split_last()?;
    Some((rest.iter().cloned().collect(), last.clone()))
}

/// A persistent vector: `Vec`'s `get`, `push`, `pop` and `swap_remove`, with O(1) clones that
/// share every node, and O(log₂₅₆ n) changes that copy the nodes on one path.
pub(super) struct PVec<T> {
    len: usize,
    /// Levels above the leaves: the root covers `64^(height + 1)` positions.
    height: u32,
    root: Node<T>,
}

impl<T> Clone for PVec<T> {
    fn clone(&self) -> Self {
        Self {
            len: self.len,
            height: self.height,
            root: self.root.clone(),
        }
    }
}

impl<T> Default for PVec<T> {
    fn default() -> Self {
        Self {
            len: 0,
            height: 0,
            root: Node::empty(0),
        }
    }
}

impl<T> fmt::Debug for PVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PVec").field("len", &self.len).finish()
    }
}

impl<T: Clone> PVec<T> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// How many positions a root of `height` covers (saturating: past `usize`, all of them).
    fn capacity(height: u32) -> usize {
        1usize
            .checked_shl(BITS * (height + 1))
            .unwrap_or(usize::MAX)
    }

    /// The element at `index`: `height + 1` reads, one per level.
    pub(super) fn get(&self, index: usize) -> Option<&T> {
        if index >= self.len {
            return None;
        }
        let mut node = &self.root;
        let mut shift = BITS * self.height;
        loop {
            match node {
                Node::Branch(children) => {
                    node = children.get((index >> shift) & MASK)?;
                    shift = shift.checked_sub(BITS)?;
                }
                Node::Leaf(items) => return items.get(index & MASK),
            }
        }
    }

    /// The element at `index`, made unique to this vector first (copying the nodes on its path
    /// that another clone shares).
    pub(super) fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        if index >= self.len {
            return None;
        }
        let mut node = &mut self.root;
        let mut shift = BITS * self.height;
        loop {
            match node {
                Node::Branch(children) => {
                    node = Arc::make_mut(children).get_mut((index >> shift) & MASK)?;
                    shift = shift.checked_sub(BITS)?;
                }
                Node::Leaf(items) => return Arc::make_mut(items).get_mut(index & MASK),
            }
        }
    }

    pub(super) fn push(&mut self, value: T) {
        if self.len == Self::capacity(self.height) {
            // Full: the old root becomes the first child of a taller one.
            let old = core::mem::replace(&mut self.root, Node::empty(0));
            self.root = Node::Branch(Arc::from([old]));
            self.height += 1;
        }
        let index = self.len;
        let mut node = &mut self.root;
        let mut height = self.height;
        loop {
            match node {
                Node::Branch(children) => {
                    let Some(below) = height.checked_sub(1) else {
                        return;
                    };
                    let at = (index >> (BITS * height)) & MASK;
                    if at == children.len() {
                        *children = appended(children, Node::empty(below));
                    }
                    let Some(child) = Arc::make_mut(children).get_mut(at) else {
                        return;
                    };
                    node = child;
                    height = below;
                }
                Node::Leaf(items) => {
                    *items = appended(items, value);
                    self.len += 1;
                    return;
                }
            }
        }
    }

    /// Removes and returns the last element.
    pub(super) fn pop(&mut self) -> Option<T> {
        let index = self.len.checked_sub(1)?;
        let value = pop_at(&mut self.root, self.height, index)?;
        self.len = index;
        // Drop levels the remaining elements no longer need.
        while self.height > 0 && self.len <= Self::capacity(self.height - 1) {
            let Node::Branch(children) = &self.root else {
                break;
            };
            let first = children
                .first()
                .cloned()
                .unwrap_or_else(|| Node::empty(self.height - 1));
            self.root = first;
            self.height -= 1;
        }
        Some(value)
    }

    /// Removes the element at `index`, moving the last one into its place, as
    /// `Vec::swap_remove` does.
    pub(super) fn swap_remove(&mut self, index: usize) -> Option<T> {
        if index >= self.len {
            return None;
        }
        let last = self.pop()?;
        if index == self.len {
            return Some(last);
        }
        self.get_mut(index)
            .map(|place| core::mem::replace(place, last))
    }

    /// Every element, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        let mut stack: Vec<core::slice::Iter<'_, Node<T>>> = Vec::new();
        let mut leaf: core::slice::Iter<'_, T> = [].iter();
        match &self.root {
            Node::Leaf(items) => leaf = items.iter(),
            Node::Branch(children) => stack.push(children.iter()),
        }
        core::iter::from_fn(move || {
            loop {
                if let Some(item) = leaf.next() {
                    return Some(item);
                }
                let top = stack.last_mut()?;
                match top.next() {
                    None => {
                        stack.pop();
                    }
                    Some(Node::Leaf(items)) => leaf = items.iter(),
                    Some(Node::Branch(children)) => stack.push(children.iter()),
                }
            }
        })
    }

    /// Calls `f` on every element, made unique to this vector (a whole-table pass: pruning).
    pub(super) fn update_all(&mut self, mut f: impl FnMut(&mut T)) {
        fn visit<T: Clone>(node: &mut Node<T>, f: &mut impl FnMut(&mut T)) {
            match node {
                Node::Leaf(items) => Arc::make_mut(items).iter_mut().for_each(f),
                Node::Branch(children) => {
                    for child in Arc::make_mut(children) {
                        visit(child, f);
                    }
                }
            }
        }
        visit(&mut self.root, &mut f);
    }
}

impl<T: Clone> FromIterator<T> for PVec<T> {
    /// Built bottom-up, full leaves first, into the shape pushes would give: one allocation per
    /// node, where pushing one by one would copy each leaf as it fills.
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut items = items.into_iter();
        let mut len = 0;
        let mut level: Vec<Node<T>> = Vec::new();
        loop {
            let leaf: Arc<[T]> = items.by_ref().take(WIDTH).collect();
            if leaf.is_empty() {
                break;
            }
            len += leaf.len();
            level.push(Node::Leaf(leaf));
        }
        let mut height = 0;
        while level.len() > 1 {
            let mut nodes = level.into_iter();
            level = Vec::new();
            loop {
                let branch: Arc<[Node<T>]> = nodes.by_ref().take(WIDTH).collect();
                if branch.is_empty() {
                    break;
                }
                level.push(Node::Branch(branch));
            }
            height += 1;
        }
        match level.pop() {
            Some(root) => Self { len, height, root },
            None => Self::default(),
        }
    }
}

fn pop_at<T: Clone>(node: &mut Node<T>, height: u32, index: usize) -> Option<T> {
    match node {
        Node::Leaf(items) => {
            let (rest, last) = truncated(items)?;
            *items = rest;
            Some(last)
        }
        Node::Branch(children) => {
            let at = (index >> (BITS * height)) & MASK;
            let child = Arc::make_mut(children).get_mut(at)?;
            let value = pop_at(child, height.checked_sub(1)?, index)?;
            if child.is_empty() {
                *children = truncated(children)?.0;
            }
            Some(value)
        }
    }
}

/// Bits of a key's hash consumed per level of a [`PMap`].
const MAP_BITS: u32 = 4;
const MAP_WIDTH: usize = 1 << MAP_BITS;
/// Entries a leaf holds before it splits (unless every hash bit is used up).
const MAP_LEAF: usize = 8;

#[derive(Clone)]
enum MapNode<K, V> {
    Leaf(Vec<(u64, K, V)>),
    /// `MAP_WIDTH` children, `None` for an empty one.
    Branch(Vec<Option<Arc<MapNode<K, V>>>>),
}

/// A persistent hash map: `HashMap`'s `get`, `insert` and `remove`, with O(1) clones and
/// O(log₁₆ n) changes. Keys are hashed with a per-map random SipHash key (std's `RandomState`,
/// shared by its clones), so no one can pick ids that pile into one leaf.
#[derive(Clone)]
pub(super) struct PMap<K, V> {
    len: usize,
    hasher: RandomState,
    root: Arc<MapNode<K, V>>,
}

impl<K, V> Default for PMap<K, V> {
    fn default() -> Self {
        Self {
            len: 0,
            hasher: RandomState::new(),
            root: Arc::new(MapNode::Leaf(Vec::new())),
        }
    }
}

impl<K, V> fmt::Debug for PMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PMap").field("len", &self.len).finish()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> PMap<K, V> {
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    pub(super) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: core::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let mut node = &*self.root;
        let mut shift = 0u32;
        loop {
            match node {
                MapNode::Leaf(entries) => {
                    return entries
                        .iter()
                        .find(|(h, k, _)| *h == hash && k.borrow() == key)
                        .map(|(_, _, v)| v);
                }
                MapNode::Branch(children) => {
                    let at =
                        usize::try_from(hash.checked_shr(shift)? & (MAP_WIDTH as u64 - 1)).ok()?;
                    node = children.get(at)?.as_deref()?;
                    shift += MAP_BITS;
                }
            }
        }
    }

    pub(super) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: core::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Inserts, returning the value the key had.
    pub(super) fn insert(&mut self, key: K, value: V) -> Option<V> {
        let hash = self.hash(&key);
        let old = map_insert(Arc::make_mut(&mut self.root), 0, hash, key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes, returning the value the key had.
    pub(super) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: core::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // Look first, so that a miss copies nothing.
        self.get(key)?;
        let hash = self.hash(key);
        let old = map_remove(Arc::make_mut(&mut self.root), 0, hash, key);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }
}

fn map_slot(hash: u64, shift: u32) -> usize {
    usize::try_from(hash.checked_shr(shift).unwrap_or(0) & (MAP_WIDTH as u64 - 1)).unwrap_or(0)
}

fn map_insert<K: Eq + Clone, V: Clone>(
    node: &mut MapNode<K, V>,
    shift: u32,
    hash: u64,
    key: K,
    value: V,
) -> Option<V> {
    match node {
        MapNode::Leaf(entries) => {
            if let Some(entry) = entries.iter_mut().find(|(h, k, _)| *h == hash && *k == key) {
                return Some(core::mem::replace(&mut entry.2, value));
            }
            entries.push((hash, key, value));
            // A full leaf splits into a branch, unless the hash has no bits left to split by
            // (then it holds full-hash collisions, which only a broken hasher would make many of).
            if entries.len() > MAP_LEAF && shift < u64::BITS {
                let mut children: Vec<Option<Arc<MapNode<K, V>>>> = vec![None; MAP_WIDTH];
                for (h, k, v) in entries.drain(..) {
                    let child = children
                        .get_mut(map_slot(h, shift))
                        .map(|c| c.get_or_insert_with(|| Arc::new(MapNode::Leaf(Vec::new()))));
                    if let Some(MapNode::Leaf(leaf)) = child.map(Arc::make_mut) {
                        leaf.push((h, k, v));
                    }
                }
                *node = MapNode::Branch(children);
            }
            None
        }
        MapNode::Branch(children) => {
            let child = children
                .get_mut(map_slot(hash, shift))?
                .get_or_insert_with(|| Arc::new(MapNode::Leaf(Vec::new())));
            map_insert(Arc::make_mut(child), shift + MAP_BITS, hash, key, value)
        }
    }
}

fn map_remove<K: Eq + Clone + core::borrow::Borrow<Q>, V: Clone, Q: Eq + ?Sized>(
    node: &mut MapNode<K, V>,
    shift: u32,
    hash: u64,
    key: &Q,
) -> Option<V> {
    match node {
        MapNode::Leaf(entries) => {
            let at = entries
                .iter()
                .position(|(h, k, _)| *h == hash && k.borrow() == key)?;
            Some(entries.swap_remove(at).2)
        }
        MapNode::Branch(children) => {
            let slot = children.get_mut(map_slot(hash, shift))?;
            let child = Arc::make_mut(slot.as_mut()?);
            let old = map_remove(child, shift + MAP_BITS, hash, key);
            if matches!(child, MapNode::Leaf(entries) if entries.is_empty()) {
                *slot = None;
            }
            old
        }
    }
}

#[cfg(test)]
mod tests;
