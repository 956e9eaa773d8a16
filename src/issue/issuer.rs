//! Who issues or manages keys: a user with a role or permission set, or an existing key.

use crate::address::AddressRange;
use crate::catalog::{Catalog, CatalogError, Permission, PermissionSet};
use crate::decision::Deny;
use crate::issue::IssueError;
use crate::key::{ApiKey, KeyId};
use crate::ratelimit::RateLimit;
use crate::scope::{AccountId, Scope};
use crate::timestamp::Timestamp;

/// The permission a key must hold to issue keys, and to rotate or update existing ones:
/// `api-keys:write` if the catalog defines it (a fine-grained catalog such as the voice-agent
/// platform's), else `write` (IdentityCall's coarse catalog), else none, and then no key may issue
/// keys.
///
/// ```
/// use keygate::{key_management_permission, Catalog};
/// let coarse = Catalog::read_write_delete();
/// assert_eq!(key_management_permission(&coarse), coarse.permission("write"));
/// let fine = Catalog::new(["agents:read", "api-keys:write", "write"])?;
/// assert_eq!(key_management_permission(&fine), fine.permission("api-keys:write"));
/// # Ok::<(), keygate::CatalogError>(())
/// ```
pub fn key_management_permission(catalog: &Catalog) -> Option<Permission> {
    catalog
        .permission("api-keys:write")
        .or_else(|| catalog.permission("write"))
}

/// The most an issuer may hand on by role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RoleCeiling {
    /// No role: only the permission set limits which roles may be granted.
    Unranked,
    /// A catalog role: no role ranked above it may be granted.
    Rank { name: String, rank: usize },
    /// A role the catalog no longer defines: no role may be granted (deny by default).
    Unknown(String),
}

/// What kind of principal an [`Issuer`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssuerKind {
    /// A signed-in user (the server authenticated them; keygate trusts what it is told).
    User,
    /// An existing API key, checked by [`Issuer::key`].
    Key(KeyId),
}

/// Who asks for a new key, and everything that bounds what they may grant: a snapshot taken when
/// the issuer is built. Build it for each request: a snapshot does not see a later revocation of
/// its key ([`issue`](crate::issue()) does re-check its expiry against `now`).
///
/// The fields are private so that a key issuer can only come from [`Issuer::key`], which checks
/// that the key is active and copies everything that bounds it. Whether it may issue or manage
/// keys at all (the key-management permission) is checked by [`issue`](crate::issue()) and
/// [`manage`](crate::manage()), since a key without it may still read and revoke itself.
///
/// ```
/// use keygate::{AccountId, Catalog, Issuer, ProjectId, Scope};
/// let catalog = Catalog::read_write_delete();
/// let acct = AccountId::from_u64(1);
/// let admin = Issuer::user_with_role(&catalog, acct, Scope::Account, "admin")?.with_user_id("u_7");
/// assert_eq!(admin.permissions(), catalog.role("admin").unwrap().permissions());
/// assert_eq!(admin.role(), Some("admin"));
/// let scoped = Issuer::user(acct, Scope::Project(ProjectId::from_u64(42)), catalog.all());
/// assert_eq!(scoped.role(), None);
/// # Ok::<(), keygate::CatalogError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    pub(super) kind: IssuerKind,
    pub(super) account: AccountId,
    pub(super) scope: Scope,
    pub(super) permissions: PermissionSet,
    pub(super) role: RoleCeiling,
    pub(super) expires_at: Option<Timestamp>,
    pub(super) user_id: Option<String>,
    pub(super) rate_limit: Option<RateLimit>,
    /// Empty: the issuer may act from anywhere, and so may its keys.
    pub(super) allowed_addresses: Vec<AddressRange>,
}

impl Issuer {
    /// A user holding `permissions` (and no role) in `account`, reaching `scope`.
    pub fn user(account: AccountId, scope: Scope, permissions: PermissionSet) -> Self {
        Self {
            kind: IssuerKind::User,
            account,
            scope,
            permissions,
            role: RoleCeiling::Unranked,
            expires_at: None,
            user_id: None,
            rate_limit: None,
            allowed_addresses: Vec::new(),
        }
    }

    /// A user holding the catalog's role `role`: its permissions, and its rank as the ceiling for
    /// roles they hand on.
    pub fn user_with_role(
        catalog: &Catalog,
        account: AccountId,
        scope: Scope,
        role: &str,
    ) -> Result<Self, CatalogError> {
        let found = catalog
            .role(role)
            .ok_or_else(|| CatalogError::UnknownRole(role.to_owned()))?;
        Ok(Self {
            role: RoleCeiling::Rank {
                name: found.name().to_owned(),
                rank: found.rank(),
            },
            ..Self::user(account, scope, *found.permissions())
        })
    }

    /// Records the user's id: the new key's `created_by`.
    pub fn with_user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// An existing key as issuer or caller. It must be active at `now`: a revoked or expired key
    /// is [`IssueError::IssuerKey`] with [`Deny::Revoked`] or [`Deny::Expired`] (401).
    ///
    /// The issuer keeps the key's account, scope, permissions, expiry, rate limit, role ceiling
    /// (its role, or the ceiling it inherited, if the catalog still defines it) and creator as they
    /// are now. To apply the creator's current cap, narrow it with [`Issuer::capped`].
    ///
    /// ```
    /// use keygate::{issue, AccountId, Catalog, Issuer, KeySpec, Refusal, Scope, Timestamp};
    /// use rand::SeedableRng;
    /// let catalog = Catalog::new(["agents:read", "agents:write", "api-keys:write"])?;
    /// let owner = Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all());
    /// let now = Timestamp::from_unix_seconds(1_000);
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    ///
    /// let ci = issue(&catalog, &owner, KeySpec::named("CI").permissions(["agents:read", "api-keys:write"])
    ///     .ttl_seconds(3_600), now, &mut rng)?.key;
    /// let as_issuer = Issuer::key(&catalog, &ci, now)?;
    /// let child = issue(&catalog, &as_issuer, KeySpec::named("job 17"), now, &mut rng)?.key;
    /// assert_eq!(child.permissions(), ci.permissions());
    /// assert_eq!(child.expires_at(), ci.expires_at()); // never outlives its issuer
    /// assert_eq!(child.issued_by(), Some(ci.id()));
    ///
    /// // A key without the key-management permission issues nothing.
    /// let reader = issue(&catalog, &owner, KeySpec::named("r").permissions(["agents:read"]), now,
    ///     &mut rng)?.key;
    /// let as_issuer = Issuer::key(&catalog, &reader, now)?;
    /// let err = issue(&catalog, &as_issuer, KeySpec::named("x"), now, &mut rng).unwrap_err();
    /// assert_eq!(serde_json::to_string(&err.body(&catalog))?,
    ///     r#"{"error":"Permission api-keys:write required"}"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn key(catalog: &Catalog, key: &ApiKey, now: Timestamp) -> Result<Self, IssueError> {
        if key.is_revoked() {
            return Err(IssueError::IssuerKey(Deny::Revoked));
        }
        if key.is_expired(now) {
            return Err(IssueError::IssuerKey(Deny::Expired));
        }
        let role = match key.role_ceiling() {
            None => RoleCeiling::Unranked,
            Some(name) => match catalog.role(name) {
                Some(role) => RoleCeiling::Rank {
                    name: role.name().to_owned(),
                    rank: role.rank(),
                },
                None => RoleCeiling::Unknown(name.to_owned()),
            },
        };
        Ok(Self {
            kind: IssuerKind::Key(key.id()),
            account: key.account(),
            scope: key.scope(),
            permissions: *key.permissions(),
            role,
            expires_at: key.expires_at(),
            user_id: key.created_by().map(str::to_owned),
            rate_limit: key.rate_limit().copied(),
            allowed_addresses: key.allowed_addresses().to_vec(),
        })
    }

    /// The same issuer, holding only what it holds *and* `cap` holds: for a key, its creator's
    /// current permissions (a key never does more than its creator can do now).
    ///
    /// ```
    /// use keygate::{AccountId, Catalog, Issuer, Scope};
    /// let catalog = Catalog::read_write_delete();
    /// let user = Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all());
    /// let demoted = user.capped(&catalog.expand(["read"])?);
    /// assert_eq!(demoted.permissions(), &catalog.expand(["read"])?);
    /// # Ok::<(), keygate::CatalogError>(())
    /// ```
    pub fn capped(mut self, cap: &PermissionSet) -> Self {
        self.permissions = self.permissions.intersection(cap);
        self
    }

    /// A user or a key.
    pub fn kind(&self) -> IssuerKind {
        self.kind
    }
    /// The account every key this issuer mints belongs to.
    pub fn account(&self) -> AccountId {
        self.account
    }
    /// How far the issuer reaches, and so how far its keys may.
    pub fn scope(&self) -> Scope {
        self.scope
    }
    /// What the issuer holds: the most a new key may get, and what it gets by default.
    pub fn permissions(&self) -> &PermissionSet {
        &self.permissions
    }
    /// The issuer's role, if it holds one.
    pub fn role(&self) -> Option<&str> {
        match &self.role {
            RoleCeiling::Unranked => None,
            RoleCeiling::Rank { name, .. } | RoleCeiling::Unknown(name) => Some(name),
        }
    }
    /// For a key issuer, its expiry: the latest any key it mints may expire.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expires_at
    }
    /// The user's id, if recorded; for a key issuer, the user who created the key. Every key
    /// this issuer mints records it as its creator.
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }
    /// For a key issuer, its rate limit: the loosest any key it mints may have.
    pub fn rate_limit(&self) -> Option<&RateLimit> {
        self.rate_limit.as_ref()
    }
    /// For a key issuer, its client address ranges: every key it mints is confined within them
    /// (empty: anywhere).
    pub fn allowed_addresses(&self) -> &[AddressRange] {
        &self.allowed_addresses
    }
    /// The key issuer's id, if the issuer is a key.
    pub fn key_id(&self) -> Option<KeyId> {
        match self.kind {
            IssuerKind::Key(id) => Some(id),
            IssuerKind::User => None,
        }
    }
}
