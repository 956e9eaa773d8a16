//! The permission names a server defines, the roles built from them, and the bitsets keys hold.
//!
//! A [`Catalog`] is built once at start-up. Permission names are `resource:action`
//! (`agents:read`, the voice-agent platform's) or a bare action (`read`, IdentityCall's coarse model). Patterns
//! (`agents:*`, `*:read`, `*`) are input syntax only: they expand against the catalog when a key is
//! issued, and what a key stores is the expanded set. Adding a permission to the catalog later
//! therefore never widens an existing key.

use core::fmt;

use serde::{Deserialize, Serialize};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// The most permissions one catalog may define: the width of [`PermissionSet`].
pub const MAX_PERMISSIONS: usize = 256;
/// The longest permission or role name accepted.
pub const MAX_NAME_LEN: usize = 64;

const WORDS: usize = MAX_PERMISSIONS / 64;

/// Why a catalog, a role or a permission list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// A permission or role name is empty, too long, or uses characters outside
    /// `A-Z a-z 0-9 - _ .` (with at most one `:` between two non-empty parts for permissions).
    #[error(
        "invalid name {0:?}: use letters, digits, '-', '_' or '.', as `resource:action` or `action`, at most 64 characters"
    )]
    InvalidName(String),
    /// The same permission or role name was given twice.
    #[error("duplicate name {0:?}")]
    Duplicate(String),
    /// More than [`MAX_PERMISSIONS`] permissions.
    #[error("too many permissions: {0} (at most 256)")]
    TooMany(usize),
    /// A name the catalog does not define.
    #[error("unknown permission {0:?}")]
    UnknownPermission(String),
    /// A role the catalog does not define.
    #[error("unknown role {0:?}")]
    UnknownRole(String),
    /// A pattern that is not `name`, `resource:*`, `*:action` or `*`.
    #[error("invalid permission pattern {0:?}")]
    InvalidPattern(String),
    /// A well-formed pattern that matches no permission of the catalog.
    #[error("permission pattern {0:?} matches no permission")]
    NoMatch(String),
    /// A key record with more than [`MAX_ADDRESS_RANGES`](crate::MAX_ADDRESS_RANGES) address
    /// ranges: loading it must neither drop a range nor lift the restriction.
    #[error("too many address ranges (at most {})", crate::MAX_ADDRESS_RANGES)]
    TooManyAddressRanges,
}

/// One permission of a catalog: its index, `0..catalog.len()`.
///
/// Only meaningful together with the catalog that produced it.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permission(u8);

impl Permission {
    /// The permission at index 0: a placeholder where a value is needed but never read.
    pub(crate) const FIRST: Self = Self(0);

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
pub struct PermissionSet([u64; WORDS]);

impl PermissionSet {
    /// No permissions.
    pub const EMPTY: PermissionSet = PermissionSet([0; WORDS]);
    /// Every permission index a catalog can define: as a cap, no restriction at all.
    pub const ALL: PermissionSet = PermissionSet([u64::MAX; WORDS]);

    /// The set holding exactly `permission`.
    pub fn single(permission: Permission) -> Self {
        let mut set = Self::EMPTY;
        set.insert(permission);
        set
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

/// A named permission set, such as `member`, `admin` or `owner`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    name: String,
    permissions: PermissionSet,
    rank: usize,
}

impl Role {
    /// The role's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the role grants.
    pub fn permissions(&self) -> &PermissionSet {
        &self.permissions
    }

    /// Its place in the catalog's order, lowest first: a key never gets a role ranked above its
    /// creator's.
    pub fn rank(&self) -> usize {
        self.rank
    }
}

/// The permissions a server defines, and its named roles.
///
/// Build it from names in code, or deserialize it (JSON, TOML, anything serde reads):
///
/// ```
/// use keygate::Catalog;
/// let catalog: Catalog = serde_json::from_str(r#"{
///     "permissions": ["agents:read", "agents:write", "calls:read"],
///     "roles": [
///         {"name": "viewer", "permissions": ["*:read"]},
///         {"name": "editor", "permissions": ["*"]}
///     ]
/// }"#)?;
/// let set = catalog.expand(["agents:*"])?;
/// assert_eq!(catalog.names(&set).collect::<Vec<_>>(), ["agents:read", "agents:write"]);
/// assert_eq!(catalog.role("viewer").unwrap().permissions().len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CatalogSpec", into = "CatalogSpec")]
pub struct Catalog {
    names: Vec<String>,
    roles: Vec<Role>,
}

/// The serialized form of a [`Catalog`]: the permission names, and roles in ascending rank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSpec {
    /// Every permission name, in the order that fixes their indices.
    pub permissions: Vec<String>,
    /// Named roles, lowest rank first, each a list of names or patterns.
    #[serde(default)]
    pub roles: Vec<RoleSpec>,
}

/// The serialized form of a [`Role`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// The role's name.
    pub name: String,
    /// Permission names or patterns.
    pub permissions: Vec<String>,
}

impl TryFrom<CatalogSpec> for Catalog {
    type Error = CatalogError;
    fn try_from(spec: CatalogSpec) -> Result<Self, CatalogError> {
        let mut catalog = Catalog::new(spec.permissions)?;
        for role in spec.roles {
            catalog = catalog.with_role(&role.name, role.permissions)?;
        }
        Ok(catalog)
    }
}

impl From<Catalog> for CatalogSpec {
    fn from(catalog: Catalog) -> Self {
        let roles = catalog
            .roles
            .iter()
            .map(|r| RoleSpec {
                name: r.name.clone(),
                permissions: catalog.names(&r.permissions).map(str::to_owned).collect(),
            })
            .collect();
        CatalogSpec {
            permissions: catalog.names,
            roles,
        }
    }
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn valid_permission_name(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN
        && match name.split_once(':') {
            Some((resource, action)) => valid_segment(resource) && valid_segment(action),
            None => valid_segment(name),
        }
}

impl Catalog {
    /// A catalog with no permissions: what a refusal that names no permission is rendered with.
    #[cfg(any(feature = "axum", test))]
    pub(crate) const EMPTY: Self = Self {
        names: Vec::new(),
        roles: Vec::new(),
    };

    /// A catalog of these permission names, in this order. Names must be valid, distinct and at
    /// most [`MAX_PERMISSIONS`].
    pub fn new<I, S>(names: I) -> Result<Self, CatalogError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        if names.len() > MAX_PERMISSIONS {
            return Err(CatalogError::TooMany(names.len()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in &names {
            if !valid_permission_name(name) {
                return Err(CatalogError::InvalidName(name.clone()));
            }
            if !seen.insert(name.as_str()) {
                return Err(CatalogError::Duplicate(name.clone()));
            }
        }
        Ok(Self {
            names,
            roles: Vec::new(),
        })
    }

    /// Adds a role ranked above every role added before it. Its permissions are names or patterns.
    pub fn with_role<I, S>(mut self, name: &str, patterns: I) -> Result<Self, CatalogError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        if !valid_segment(name) || name.len() > MAX_NAME_LEN {
            return Err(CatalogError::InvalidName(name.to_owned()));
        }
        if self.role(name).is_some() {
            return Err(CatalogError::Duplicate(name.to_owned()));
        }
        let permissions = self.expand(patterns)?;
        let rank = self.roles.len();
        self.roles.push(Role {
            name: name.to_owned(),
            permissions,
            rank,
        });
        Ok(self)
    }

    /// The coarse model of IdentityCall's API: `read`, `write`, `delete`, with roles `member` (read),
    /// `admin` (read, write) and `owner` (everything).
    pub fn read_write_delete() -> Self {
        let set = |names: &[&str]| -> PermissionSet {
            names
                .iter()
                .filter_map(|n| ["read", "write", "delete"].iter().position(|k| k == n))
                .filter_map(|i| u8::try_from(i).ok().map(Permission))
                .collect()
        };
        let member = set(&["read"]);
        let admin = set(&["read", "write"]);
        let owner = set(&["read", "write", "delete"]);
        let role = |name: &str, permissions, rank| Role {
            name: name.to_owned(),
            permissions,
            rank,
        };
        Self {
            names: vec!["read".into(), "write".into(), "delete".into()],
            roles: vec![
                role("member", member, 0),
                role("admin", admin, 1),
                role("owner", owner, 2),
            ],
        }
    }

    /// How many permissions the catalog defines.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the catalog defines no permissions.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The permission called `name`.
    pub fn permission(&self, name: &str) -> Option<Permission> {
        let index = self.names.iter().position(|n| n == name)?;
        u8::try_from(index).ok().map(Permission)
    }

    /// The name of a permission, if it belongs to this catalog.
    pub fn name(&self, permission: Permission) -> Option<&str> {
        self.names.get(permission.index()).map(String::as_str)
    }

    /// Every permission of the catalog.
    pub fn all(&self) -> PermissionSet {
        (0..self.names.len())
            .filter_map(|i| u8::try_from(i).ok().map(Permission))
            .collect()
    }

    /// The roles, lowest rank first.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// The role called `name`.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// The names of a set's permissions, sorted: the form records store.
    pub fn names<'a>(&'a self, set: &'a PermissionSet) -> impl Iterator<Item = &'a str> + 'a {
        let mut names: Vec<&str> = set.iter().filter_map(|p| self.name(p)).collect();
        names.sort_unstable();
        names.into_iter()
    }

    /// The union of what each name or pattern matches. Every pattern must be well formed and match
    /// at least one permission: a typo is an error, never an empty grant.
    pub fn expand<I, S>(&self, patterns: I) -> Result<PermissionSet, CatalogError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = PermissionSet::EMPTY;
        for pattern in patterns {
            set = set.union(&self.expand_one(pattern.as_ref())?);
        }
        Ok(set)
    }

    /// Resolves exact names only (no patterns): how stored records are loaded, so that a name the
    /// catalog no longer defines is an error.
    pub fn resolve<I, S>(&self, names: I) -> Result<PermissionSet, CatalogError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = PermissionSet::EMPTY;
        for name in names {
            let name = name.as_ref();
            let p = self
                .permission(name)
                .ok_or_else(|| CatalogError::UnknownPermission(name.to_owned()))?;
            set.insert(p);
        }
        Ok(set)
    }

    fn expand_one(&self, pattern: &str) -> Result<PermissionSet, CatalogError> {
        if pattern == "*" {
            return if self.is_empty() {
                Err(CatalogError::NoMatch(pattern.to_owned()))
            } else {
                Ok(self.all())
            };
        }
        let invalid = || CatalogError::InvalidPattern(pattern.to_owned());
        let (resource, action) = match pattern.split_once(':') {
            Some((r, a)) => (Some(r), a),
            None => (None, pattern),
        };
        let wildcard_ok = |s: &str| s == "*" || valid_segment(s);
        if pattern.len() > MAX_NAME_LEN
            || !wildcard_ok(action)
            || !resource.is_none_or(wildcard_ok)
            || (resource.is_none() && action == "*")
            || (resource == Some("*") && action == "*")
        {
            return Err(invalid());
        }
        if resource != Some("*") && action != "*" {
            return self
                .permission(pattern)
                .map(PermissionSet::single)
                .ok_or_else(|| CatalogError::UnknownPermission(pattern.to_owned()));
        }
        let set: PermissionSet = self
            .names
            .iter()
            .enumerate()
            .filter(|(_, name)| match name.split_once(':') {
                Some((r, a)) => {
                    (resource == Some("*") || resource == Some(r)) && (action == "*" || action == a)
                }
                None => false,
            })
            .filter_map(|(i, _)| u8::try_from(i).ok().map(Permission))
            .collect();
        if set.is_empty() {
            return Err(CatalogError::NoMatch(pattern.to_owned()));
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests;
