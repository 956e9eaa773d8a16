//! The permission names a server defines, the roles built from them, and the bitsets keys hold.
//!
//! A [`Catalog`] is built once at start-up. Permission names are `resource:action`
//! (`agents:read`, the voice-agent platform's) or a bare action (`read`, IdentityCall's coarse model). Patterns
//! (`agents:*`, `*:read`, `*`) are input syntax only: they expand against the catalog when a key is
//! issued, and what a key stores is the expanded set. Adding a permission to the catalog later
//! therefore never widens an existing key.

use serde::{Deserialize, Serialize};

/// The most permissions one catalog may define: the width of [`PermissionSet`].
pub const MAX_PERMISSIONS: usize = 256;
/// The longest permission or role name accepted.
pub const MAX_NAME_LEN: usize = 64;

pub(crate) const WORDS: usize = MAX_PERMISSIONS / 64;
// `PermissionSet::single` spells the four words out; `Permission` is a `u8`.
const _: () = assert!(WORDS == 4 && MAX_PERMISSIONS == u8::MAX as usize + 1);

mod set;

pub use set::{Permission, PermissionSet};

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
    /// An implication whose `then` list is empty: it would say nothing, so it is likely a mistake.
    #[error("implication {0:?} implies nothing")]
    EmptyImplication(String),
    /// An action needing no permission at all, which an all-of check would pass vacuously.
    #[error("an action must need at least one permission")]
    EmptyAction,
    /// A key record with more than [`MAX_ADDRESS_RANGES`](crate::MAX_ADDRESS_RANGES) address
    /// ranges: loading it must neither drop a range nor lift the restriction.
    #[error("too many address ranges (at most {})", crate::MAX_ADDRESS_RANGES)]
    TooManyAddressRanges,
    /// A key record whose named limits are too many or share a name: loading it must not drop
    /// one.
    #[error("invalid named limits: {0}")]
    InvalidLimits(#[from] crate::limits::LimitError),
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
    /// The implications as declared, for serialization.
    implications: Vec<ImplicationSpec>,
    /// Per permission index, everything it implies, itself included, to a fixpoint. Empty when
    /// the catalog declares no implication (every closure is then the permission alone).
    closure: Vec<PermissionSet>,
}

/// The serialized form of a [`Catalog`]: the permission names, roles in ascending rank, and the
/// implications between permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSpec {
    /// Every permission name, in the order that fixes their indices.
    pub permissions: Vec<String>,
    /// Named roles, lowest rank first, each a list of names or patterns.
    #[serde(default)]
    pub roles: Vec<RoleSpec>,
    /// Permissions that imply others (`*:write` implies `*:read`), applied when patterns are
    /// expanded (issuing, roles), never to stored keys. Omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub implications: Vec<ImplicationSpec>,
}

/// One implication: whoever is granted what `if` matches is granted what `then` matches too.
///
/// A `*` resource segment in `if` binds: `{"if": "*:write", "then": ["*:read"]}` means
/// `agents:write` implies `agents:read`, `calls:write` implies `calls:read`, and so on for every
/// resource; a bound `then` pattern may match nothing for some resources (a resource with
/// `write` but no `read`), though it must match for at least one. Without the binding, `then`
/// patterns are plain patterns and must each match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImplicationSpec {
    /// A permission name or pattern.
    #[serde(rename = "if")]
    pub if_: String,
    /// Names or patterns implied by it.
    pub then: Vec<String>,
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
        // Implications first, so roles are expanded with them.
        for implication in spec.implications {
            catalog = catalog.with_implication(&implication.if_, &implication.then)?;
        }
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
            implications: catalog.implications,
        }
    }
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// 1 when `word` is non-zero, else 0, by arithmetic: the sign bit of `word | -word` is set
/// exactly when some bit is. Cheaper than `!word.ct_eq(&0)`, which passes two optimization
/// barriers where the `Choice` built from this passes one.
pub(crate) fn nonzero(word: u64) -> u8 {
    ((word | word.wrapping_neg()) >> 63) as u8
}

/// A pattern other than `*`, checked and split into (resource, action).
fn check_pattern(pattern: &str) -> Result<(Option<&str>, &str), CatalogError> {
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
        return Err(CatalogError::InvalidPattern(pattern.to_owned()));
    }
    Ok((resource, action))
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
        implications: Vec::new(),
        closure: Vec::new(),
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
            implications: Vec::new(),
            closure: Vec::new(),
        })
    }

    /// Declares that whoever is granted what `if_pattern` matches is granted what `then`
    /// matches too. [`expand`](Self::expand) (issuing keys, roles) applies implications,
    /// transitively (cycles are fine); [`resolve`](Self::resolve) (loading stored keys) does not,
    /// so adding an implication never widens a key already issued. Roles already added are
    /// widened by it, as if declared after it.
    ///
    /// A `*` resource segment in `if_pattern` binds, as in [`ImplicationSpec`]: `*:write`
    /// implying `*:read` means `agents:write` implies `agents:read`, and so on per resource.
    ///
    /// ```
    /// use keygate::Catalog;
    /// let catalog = Catalog::new(["agents:read", "agents:write", "calls:read", "calls:write"])?
    ///     .with_implication("*:write", ["*:read"])?
    ///     .with_role("agent-editor", ["agents:write"])?;
    /// let set = catalog.expand(["agents:write"])?;
    /// assert_eq!(catalog.names(&set).collect::<Vec<_>>(), ["agents:read", "agents:write"]);
    /// let role = catalog.role("agent-editor").unwrap().permissions();
    /// assert_eq!(role, &set);
    /// // Stored keys load as they were issued: exact names, no implication.
    /// assert_eq!(catalog.resolve(["agents:write"])?.len(), 1);
    /// # Ok::<(), keygate::CatalogError>(())
    /// ```
    pub fn with_implication<I, S>(mut self, if_pattern: &str, then: I) -> Result<Self, CatalogError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let then: Vec<String> = then.into_iter().map(|t| t.as_ref().to_owned()).collect();
        if then.is_empty() {
            return Err(CatalogError::EmptyImplication(if_pattern.to_owned()));
        }
        // Plain matches, before any implication: the edges are what was declared.
        let sources = self.expand_one(if_pattern)?;
        let mut closure = if self.closure.is_empty() {
            self.all().iter().map(PermissionSet::single).collect()
        } else {
            core::mem::take(&mut self.closure)
        };
        let bound = if_pattern.starts_with("*:");
        let mut matched = vec![false; then.len()];
        for source in sources.iter() {
            let implied = if bound {
                // The resource `*` stood for; every name `*:action` matched has one.
                let resource = self
                    .name(source)
                    .and_then(|n| n.split_once(':'))
                    .map_or("", |(r, _)| r);
                let mut implied = PermissionSet::EMPTY;
                for (pattern, hit) in then.iter().zip(matched.iter_mut()) {
                    let Some(action) = pattern.strip_prefix("*:") else {
                        implied = implied.union(&self.expand_one(pattern)?);
                        *hit = true;
                        continue;
                    };
                    // Well-formed whatever the resource: `*:x` is checked as written.
                    check_pattern(pattern)?;
                    if let Some(p) = self.permission(&format!("{resource}:{action}")) {
                        implied.insert(p);
                        *hit = true;
                    }
                }
                implied
            } else {
                matched.iter_mut().for_each(|hit| *hit = true);
                self.expand_plain(&then)?
            };
            if let Some(set) = closure.get_mut(source.index()) {
                *set = set.union(&implied);
            }
        }
        if let Some((pattern, _)) = then.iter().zip(&matched).find(|(_, hit)| !**hit) {
            return Err(CatalogError::NoMatch(pattern.clone()));
        }
        // To a fixpoint: each pass adds what the permissions implied so far imply, and the sets
        // only grow within at most 256 bits, so it ends.
        loop {
            let mut changed = false;
            for i in 0..closure.len() {
                let current = closure.get(i).copied().unwrap_or_default();
                let widened = current
                    .iter()
                    .filter_map(|p| closure.get(p.index()))
                    .fold(current, |all, set| all.union(set));
                if widened != current
                    && let Some(set) = closure.get_mut(i)
                {
                    *set = widened;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        self.closure = closure;
        self.implications.push(ImplicationSpec {
            if_: if_pattern.to_owned(),
            then,
        });
        let widened: Vec<PermissionSet> = self
            .roles
            .iter()
            .map(|r| self.implied(&r.permissions))
            .collect();
        for (role, permissions) in self.roles.iter_mut().zip(widened) {
            role.permissions = permissions;
        }
        Ok(self)
    }

    /// The implications as declared, in order.
    pub fn implications(&self) -> &[ImplicationSpec] {
        &self.implications
    }

    /// `set` with everything its permissions imply, transitively: what [`expand`](Self::expand)
    /// grants. Without implications, `set` itself.
    pub fn implied(&self, set: &PermissionSet) -> PermissionSet {
        set.iter()
            .filter_map(|p| self.closure.get(p.index()))
            .fold(*set, |all, implied| all.union(implied))
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
            implications: Vec::new(),
            closure: Vec::new(),
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
    ///
    /// The result holds everything those permissions imply ([`implied`](Self::implied)).
    pub fn expand<I, S>(&self, patterns: I) -> Result<PermissionSet, CatalogError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(self.implied(&self.expand_plain(patterns)?))
    }

    /// [`expand`](Self::expand) without the implications.
    fn expand_plain<I, S>(&self, patterns: I) -> Result<PermissionSet, CatalogError>
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

    /// Resolves exact names only (no patterns, no implications): how stored records are loaded,
    /// so that a name the catalog no longer defines is an error, and a key holds exactly what it
    /// was issued even after an implication is added.
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
        let (resource, action) = check_pattern(pattern)?;
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
