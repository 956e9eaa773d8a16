//! Issuing keys: attenuation, checked once, frozen forever.
//!
//! An [`Issuer`] (a user holding a role or a set of permissions, or an existing [`ApiKey`] that
//! holds the key-management permission) asks for a new key with a [`KeySpec`]. [`issue`] grants
//! it only if it is an *attenuation* of the issuer, in the sense of biscuit's attenuated tokens: a
//! derived key can only do less.
//!
//! - **Permissions** default to the issuer's full set and must be a subset of it. The set is
//!   copied into the key at issue time, so nothing done to the issuer later (a wider role, a
//!   grown catalog) widens the key.
//! - **Scope** defaults to the issuer's own scope and must lie within it: a project-scoped issuer
//!   mints keys for its own project only; only an account-wide issuer mints account-wide keys.
//!   The account is always the issuer's.
//! - **Roles** are ranked (`member` < `admin` < `owner`): a key never gets a role ranked above
//!   its creator's, nor one holding permissions its creator lacks.
//! - **Expiry**: a key issued by a key never outlives it. A child that asks for no expiry gets the
//!   issuer's; one that asks for a later expiry is refused.
//!
//! Two kinds of refusal, checked in this order (after the issuing key, if any, is found to be
//! unexpired at `now`: 401 otherwise), and nothing is issued on either:
//! 1. [`IssueError::Invalid`], 422 `{"errors": [...]}`: every malformed part of the request, all
//!    collected (blank or long name, expiry in the past, both expiry forms, unknown permission or
//!    role, ...). Escalation is not judged on a request that is not well formed: an unknown
//!    permission cannot be compared with the issuer's set.
//! 2. [`IssueError::Escalation`], 403 `{"error": "..."}`: every way the request reaches beyond
//!    the issuer, all collected.
//!
//! Tier quotas (keys per project) are the caller's check, with [`crate::quota`], since only the
//! caller's store knows how many keys a project already has.

use core::fmt;
use core::time::Duration;

use rand::CryptoRng;
use serde::Serialize;

use crate::catalog::{Catalog, CatalogError, Permission, PermissionSet, Role};
use crate::decision::{Deny, ErrorBody};
use crate::key::{ApiKey, KeyId};
use crate::ratelimit::RateLimit;
use crate::scope::{AccountId, Scope};
use crate::timestamp::Timestamp;
use crate::token::{Token, TokenFormat};

/// The longest key name accepted, in characters.
pub const MAX_KEY_NAME_LEN: usize = 100;
/// The longest comment accepted, in characters.
pub const MAX_COMMENT_LEN: usize = 500;
/// The most tags one key may carry.
pub const MAX_TAGS: usize = 20;
/// The longest tag accepted, in characters.
pub const MAX_TAG_LEN: usize = 64;
/// The longest `created_by` accepted, in characters.
pub const MAX_CREATED_BY_LEN: usize = 255;

/// How much of a caller's input a message echoes back: the input may be arbitrarily long.
const ECHO_LEN: usize = 64;

/// The permission a key must hold to issue keys: `api-keys:write` if the catalog defines it (a
/// fine-grained catalog such as seed 004's), else `write` (seed 001's coarse catalog), else none,
/// and then no key may issue keys.
///
/// ```
/// use keygate::{issue::key_management_permission, Catalog};
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
enum RoleCeiling {
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
/// its key ([`issue`] does re-check its expiry against `now`).
///
/// The fields are private so that a key issuer can only come from [`Issuer::key`], which checks
/// that the key is active and holds the key-management permission.
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
    kind: IssuerKind,
    account: AccountId,
    scope: Scope,
    permissions: PermissionSet,
    role: RoleCeiling,
    expires_at: Option<Timestamp>,
    user_id: Option<String>,
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

    /// Records the user's id: the new key's `created_by` unless the spec names one.
    pub fn with_user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// An existing key as issuer. It must be active at `now` and hold the
    /// [key-management permission](key_management_permission).
    ///
    /// Refusals: a revoked or expired key is [`IssueError::IssuerKey`] with [`Deny::Revoked`] or
    /// [`Deny::Expired`] (401); a key without the permission is `IssuerKey` with
    /// [`Deny::MissingPermission`] (403); a catalog with no such permission is
    /// [`IssueError::NoKeyManagementPermission`] (403).
    ///
    /// The issuer keeps the key's account, scope, permissions, expiry and role (if the key was
    /// issued with one the catalog still defines) as they are now.
    ///
    /// ```
    /// use keygate::{issue, AccountId, Catalog, Issuer, KeySpec, Scope, Timestamp};
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
    ///
    /// let reader = issue(&catalog, &owner, KeySpec::named("r").permissions(["agents:read"]), now,
    ///     &mut rng)?.key;
    /// let err = Issuer::key(&catalog, &reader, now).unwrap_err();
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
        let manage =
            key_management_permission(catalog).ok_or(IssueError::NoKeyManagementPermission)?;
        if !bool::from(key.permissions().contains(manage)) {
            return Err(IssueError::IssuerKey(Deny::MissingPermission(manage)));
        }
        let role = match key.role() {
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
            user_id: None,
        })
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
    /// The user's id, if recorded.
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }
}

/// What the new key should be. Everything but the name is optional, and the defaults are the
/// issuer's: its full permission set, its scope, and (for a key issuer) its expiry.
///
/// ```
/// use keygate::{KeySpec, ProjectId, RateLimit};
/// use std::time::Duration;
/// let spec = KeySpec::named("CI")
///     .permissions(["agents:*", "calls:read"])
///     .project(ProjectId::from_u64(42))
///     .ttl(Duration::from_secs(86_400))
///     .rate_limit(RateLimit::per_period(100, 60)?)
///     .tag("ci")
///     .comment("nightly build");
/// assert_eq!(spec.name(), "CI");
/// # Ok::<(), keygate::RateLimitError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    name: String,
    permissions: Option<Vec<String>>,
    role: Option<String>,
    scope: Option<Scope>,
    expires_at: Option<Timestamp>,
    ttl: Option<Duration>,
    rate_limit: Option<RateLimit>,
    tags: Vec<String>,
    comment: Option<String>,
    created_by: Option<String>,
    format: TokenFormat,
}

impl KeySpec {
    /// A key called `name` (stored trimmed), with every other setting at its default.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            permissions: None,
            role: None,
            scope: None,
            expires_at: None,
            ttl: None,
            rate_limit: None,
            tags: Vec::new(),
            comment: None,
            created_by: None,
            format: TokenFormat::default(),
        }
    }

    /// Permission names or patterns (`agents:*`, `*:read`, `*`), expanded against the catalog.
    /// Without this the key gets its role's permissions, or else the issuer's full set.
    pub fn permissions<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.permissions = Some(patterns.into_iter().map(Into::into).collect());
        self
    }

    /// A catalog role (seed 003's scopes, such as `member`). The key gets the role's permissions,
    /// narrowed to [`permissions`](Self::permissions) if those are given too (they must then lie
    /// within the role).
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// Confines the key to one project.
    pub fn project(self, project: crate::scope::ProjectId) -> Self {
        self.scope(Scope::Project(project))
    }

    /// Asks for an account-wide key (only an account-wide issuer may grant it).
    pub fn account_wide(self) -> Self {
        self.scope(Scope::Account)
    }

    /// Sets the scope. Without this the key gets the issuer's scope: account-wide from an
    /// account-wide issuer, the issuer's project from a project-scoped one.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = Some(scope);
        self
    }

    /// Expires at this instant (exclusive). Not together with [`ttl`](Self::ttl).
    pub fn expires_at(mut self, expires_at: Timestamp) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    /// Expires this long after it is issued. Not together with [`expires_at`](Self::expires_at).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// [`ttl`](Self::ttl) in whole seconds, as request bodies carry it.
    pub fn ttl_seconds(self, seconds: u64) -> Self {
        self.ttl(Duration::from_secs(seconds))
    }

    /// The key's rate limit (seed 004's rate-limit configuration).
    pub fn rate_limit(mut self, rate_limit: RateLimit) -> Self {
        self.rate_limit = Some(rate_limit);
        self
    }

    /// Adds a tag (seed 003).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Adds tags (seed 003).
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// A comment stored on the key (seed 003).
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    /// Who creates the key (seed 004's user id). Without this, a user issuer's id is recorded.
    pub fn created_by(mut self, user_id: impl Into<String>) -> Self {
        self.created_by = Some(user_id.into());
        self
    }

    /// The token format; [`TokenFormat::default`] (`idc_` + 32 alphanumerics) if not set.
    pub fn format(mut self, format: TokenFormat) -> Self {
        self.format = format;
        self
    }

    /// The requested name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A freshly issued key and its token. The token is the only copy of the secret: show it once,
/// store only [`ApiKey::token_hash`].
#[derive(Debug)]
pub struct IssuedKey {
    /// The record to store.
    pub key: ApiKey,
    /// The secret to hand to the caller, once.
    pub token: Token,
}

/// Malformed request parts, as the 422 body `{"errors": ["Name can't be blank", ...]}`.
///
/// ```
/// use keygate::ValidationErrors;
/// let errors = ValidationErrors::from(vec!["Name can't be blank".to_owned()]);
/// assert_eq!(errors.status(), 422);
/// assert_eq!(serde_json::to_string(&errors)?, r#"{"errors":["Name can't be blank"]}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}", errors.join("; "))]
pub struct ValidationErrors {
    /// Human-readable messages, in the order the fields were checked.
    pub errors: Vec<String>,
}

impl ValidationErrors {
    /// HTTP 422.
    pub fn status(&self) -> u16 {
        422
    }

    /// The messages.
    pub fn messages(&self) -> &[String] {
        &self.errors
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub(crate) fn push(&mut self, message: impl Into<String>) {
        self.errors.push(message.into());
    }

    /// `Ok` if there are none, else `Err(self)`.
    pub(crate) fn into_result(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl From<Vec<String>> for ValidationErrors {
    fn from(errors: Vec<String>) -> Self {
        Self { errors }
    }
}

/// One way a request reaches beyond its issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Escalation {
    /// Permissions the issuer does not hold, by name, sorted.
    Permissions(Vec<String>),
    /// A role the issuer may not hand on: ranked above the issuer's role, or holding permissions
    /// the issuer lacks.
    Role {
        /// The role asked for.
        requested: String,
        /// The issuer's role, if it holds one.
        held: Option<String>,
    },
    /// A scope outside the issuer's.
    Scope {
        /// The scope asked for.
        requested: Scope,
        /// The issuer's scope.
        held: Scope,
    },
    /// An expiry after the key issuer's own.
    Expiry {
        /// The expiry asked for.
        requested: Timestamp,
        /// The issuer's expiry.
        limit: Timestamp,
    },
}

impl fmt::Display for Escalation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Escalation::Permissions(names) => write!(
                f,
                "Cannot grant permissions the issuer does not hold: {}",
                names.join(", ")
            ),
            Escalation::Role {
                requested,
                held: Some(held),
            } => write!(
                f,
                "Cannot grant role {requested}: it exceeds the issuer's role {held}"
            ),
            Escalation::Role {
                requested,
                held: None,
            } => write!(
                f,
                "Cannot grant role {requested}: it exceeds the issuer's permissions"
            ),
            Escalation::Scope {
                requested: Scope::Account,
                ..
            } => f.write_str("Project-scoped issuers cannot create account-wide API keys"),
            Escalation::Scope { .. } => {
                f.write_str("Cannot create an API key for a project outside the issuer's scope")
            }
            Escalation::Expiry { limit, .. } => write!(
                f,
                "Cannot create an API key that outlives its issuer (which expires at {limit})"
            ),
        }
    }
}

/// Why no key was issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The request is malformed: 422 with every problem found.
    #[error("invalid key request: {0}")]
    Invalid(ValidationErrors),
    /// The request reaches beyond the issuer: 403 with every way it does.
    #[error("escalation refused: {}", join(.0))]
    Escalation(Vec<Escalation>),
    /// The issuing key may not issue: revoked or expired (401), or lacking the key-management
    /// permission (403). From [`Issuer::key`].
    #[error("issuing key refused: {0}")]
    IssuerKey(Deny),
    /// The catalog defines neither `api-keys:write` nor `write`, so no key may issue keys. 403.
    #[error("the catalog defines no key-management permission")]
    NoKeyManagementPermission,
}

fn join(escalations: &[Escalation]) -> String {
    escalations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The JSON body of an [`IssueError`]: `{"errors": [...]}` for 422, `{"error": "..."}` otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum IssueErrorBody {
    /// `{"error": "..."}`.
    Error(ErrorBody),
    /// `{"errors": [...]}`.
    Errors(ValidationErrors),
}

impl IssueError {
    /// The HTTP status: 422 for [`Invalid`](Self::Invalid), 401 for an inactive issuing key, 403
    /// otherwise.
    pub fn status(&self) -> u16 {
        match self {
            IssueError::Invalid(_) => 422,
            IssueError::IssuerKey(deny) => deny.status(),
            IssueError::Escalation(_) | IssueError::NoKeyManagementPermission => 403,
        }
    }

    /// The JSON body. The catalog names the missing permission of an [`IssuerKey`](Self::IssuerKey)
    /// refusal (`"Permission api-keys:write required"`, `"Write permission required"`).
    ///
    /// ```
    /// use keygate::{issue, AccountId, Catalog, Issuer, KeySpec, Scope, Timestamp};
    /// use rand::SeedableRng;
    /// let catalog = Catalog::read_write_delete();
    /// let member = Issuer::user_with_role(&catalog, AccountId::from_u64(1), Scope::Account, "member")?;
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    /// let now = Timestamp::from_unix_seconds(1_000);
    ///
    /// let err = issue(&catalog, &member, KeySpec::named(" ").permissions(["fly"]), now, &mut rng)
    ///     .unwrap_err();
    /// assert_eq!(err.status(), 422);
    /// assert_eq!(
    ///     serde_json::to_string(&err.body(&catalog))?,
    ///     r#"{"errors":["Name can't be blank","Unknown permission: fly"]}"#
    /// );
    ///
    /// let err = issue(&catalog, &member, KeySpec::named("w").permissions(["write"]), now, &mut rng)
    ///     .unwrap_err();
    /// assert_eq!(err.status(), 403);
    /// assert_eq!(
    ///     serde_json::to_string(&err.body(&catalog))?,
    ///     r#"{"error":"Cannot grant permissions the issuer does not hold: write"}"#
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn body(&self, catalog: &Catalog) -> IssueErrorBody {
        let error = |message: String| {
            IssueErrorBody::Error(ErrorBody {
                error: message.into(),
            })
        };
        match self {
            IssueError::Invalid(errors) => IssueErrorBody::Errors(errors.clone()),
            IssueError::Escalation(escalations) => error(join(escalations)),
            IssueError::IssuerKey(deny) => IssueErrorBody::Error(deny.body(catalog)),
            IssueError::NoKeyManagementPermission => {
                error("API key management permission required".to_owned())
            }
        }
    }
}

/// Caps an echoed input at [`ECHO_LEN`] characters.
fn echo(input: &str) -> String {
    let mut out: String = input.chars().take(ECHO_LEN).collect();
    if input.chars().nth(ECHO_LEN).is_some() {
        out.push('…');
    }
    out
}

/// The message for a permission pattern the catalog refused.
fn pattern_message(error: &CatalogError) -> String {
    match error {
        CatalogError::UnknownPermission(p) => format!("Unknown permission: {}", echo(p)),
        CatalogError::NoMatch(p) => format!("Permission pattern {} matches no permission", echo(p)),
        CatalogError::InvalidPattern(p) => format!("Invalid permission pattern: {}", echo(p)),
        other => echo(&other.to_string()),
    }
}

/// Checks a text field that is stored trimmed: not blank, at most `max` characters.
fn check_text(errors: &mut ValidationErrors, field: &str, value: &str, max: usize) {
    let value = value.trim();
    if value.is_empty() {
        errors.push(format!("{field} can't be blank"));
    } else if value.chars().count() > max {
        errors.push(format!("{field} is too long (maximum is {max} characters)"));
    }
}

/// A request that passed validation: what it asks for, resolved against the catalog.
struct Request<'c> {
    /// The explicit permissions, expanded.
    permissions: Option<PermissionSet>,
    role: Option<&'c Role>,
    expires_at: Option<Timestamp>,
}

/// Every malformed part of `spec`, or what it resolves to.
fn validate<'c>(
    catalog: &'c Catalog,
    spec: &KeySpec,
    now: Timestamp,
) -> Result<Request<'c>, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    check_text(&mut errors, "Name", &spec.name, MAX_KEY_NAME_LEN);

    if spec.expires_at.is_some() && spec.ttl.is_some() {
        errors.push("Specify an expiration date or a time to live, not both");
    }
    if spec.expires_at.is_some_and(|e| e <= now) {
        errors.push("Expiration date must be in the future");
    }
    if spec.ttl.is_some_and(|t| t.is_zero()) {
        errors.push("Time to live must be greater than 0 seconds");
    }

    let mut permissions = PermissionSet::EMPTY;
    for pattern in spec.permissions.iter().flatten() {
        match catalog.expand([pattern]) {
            Ok(set) => permissions = permissions.union(&set),
            Err(e) => errors.push(pattern_message(&e)),
        }
    }
    let role = match &spec.role {
        None => None,
        Some(name) => {
            let found = catalog.role(name);
            if found.is_none() {
                errors.push(format!("Unknown role: {}", echo(name)));
            }
            found
        }
    };
    if let Some(role) = role
        && spec.permissions.is_some()
        && !permissions.is_subset(role.permissions())
    {
        errors.push(format!(
            "Permissions must lie within the role {}",
            role.name()
        ));
    }

    if spec.tags.len() > MAX_TAGS {
        errors.push(format!("Too many tags (maximum is {MAX_TAGS})"));
    }
    for tag in &spec.tags {
        check_text(&mut errors, "Tag", tag, MAX_TAG_LEN);
    }
    if let Some(comment) = &spec.comment
        && comment.chars().count() > MAX_COMMENT_LEN
    {
        errors.push(format!(
            "Comment is too long (maximum is {MAX_COMMENT_LEN} characters)"
        ));
    }
    if let Some(created_by) = &spec.created_by {
        check_text(&mut errors, "Created by", created_by, MAX_CREATED_BY_LEN);
    }

    errors.into_result()?;
    Ok(Request {
        permissions: spec.permissions.is_some().then_some(permissions),
        role,
        expires_at: spec
            .expires_at
            .or_else(|| spec.ttl.map(|ttl| now.saturating_add(ttl))),
    })
}

/// What the key will be, if the request stays within the issuer.
struct Grant {
    permissions: PermissionSet,
    scope: Scope,
    expires_at: Option<Timestamp>,
}

/// Every way `request` reaches beyond `issuer`, or the grant.
fn bound(
    catalog: &Catalog,
    issuer: &Issuer,
    spec: &KeySpec,
    request: &Request<'_>,
) -> Result<Grant, Vec<Escalation>> {
    let mut escalations = Vec::new();
    let permissions = request
        .permissions
        .or_else(|| request.role.map(|r| *r.permissions()))
        .unwrap_or(issuer.permissions);

    let mut excess: Vec<&str> = permissions
        .iter()
        .filter(|p| !bool::from(issuer.permissions.contains(*p)))
        .filter_map(|p| catalog.name(p))
        .collect();
    if !excess.is_empty() {
        excess.sort_unstable();
        escalations.push(Escalation::Permissions(
            excess.into_iter().map(str::to_owned).collect(),
        ));
    }

    if let Some(role) = request.role {
        let above_rank = match &issuer.role {
            RoleCeiling::Unranked => false,
            RoleCeiling::Rank { rank, .. } => role.rank() > *rank,
            RoleCeiling::Unknown(_) => true,
        };
        if above_rank || !role.permissions().is_subset(&issuer.permissions) {
            escalations.push(Escalation::Role {
                requested: role.name().to_owned(),
                held: issuer.role().map(str::to_owned),
            });
        }
    }

    let scope = spec.scope.unwrap_or(issuer.scope);
    if !scope.is_within(&issuer.scope) {
        escalations.push(Escalation::Scope {
            requested: scope,
            held: issuer.scope,
        });
    }

    // Only key issuers carry an expiry. A child asking for none inherits the issuer's; one asking
    // for a later one is refused rather than silently shortened, so the caller learns of it.
    let expires_at = match (request.expires_at, issuer.expires_at) {
        (None, limit) => limit,
        (Some(requested), Some(limit)) if requested > limit => {
            escalations.push(Escalation::Expiry { requested, limit });
            Some(requested)
        }
        (Some(requested), _) => Some(requested),
    };

    if escalations.is_empty() {
        Ok(Grant {
            permissions,
            scope,
            expires_at,
        })
    } else {
        Err(escalations)
    }
}

/// Mints a new key for `issuer` as `spec` describes, if it is a well-formed attenuation of the
/// issuer (see the [module docs](self)). Nothing is issued on error.
///
/// ```
/// use keygate::{authorize, issue, AccountId, Action, Catalog, Issuer, KeySpec, ProjectId,
///     Resource, Scope, Timestamp};
/// use rand::SeedableRng;
/// let catalog = Catalog::read_write_delete();
/// let acct = AccountId::from_u64(1);
/// let project = ProjectId::from_u64(42);
/// let admin = Issuer::user_with_role(&catalog, acct, Scope::Account, "admin")?;
/// let now = Timestamp::from_unix_seconds(1_000);
/// let mut rng = rand::rngs::StdRng::seed_from_u64(1);
///
/// let issued = issue(&catalog, &admin, KeySpec::named("Uploader").project(project), now, &mut rng)?;
/// assert!(issued.token.expose_secret().starts_with("idc_"));
/// assert_eq!(issued.key.permissions(), admin.permissions()); // the issuer's full set by default
/// let write = Action::named(&catalog, "write")?;
/// assert!(authorize(&issued.key, write, &Resource::in_project(acct, project), now).is_allowed());
///
/// // A key never gets more than its issuer holds.
/// let err = issue(&catalog, &admin, KeySpec::named("x").role("owner"), now, &mut rng).unwrap_err();
/// assert_eq!(err.status(), 403);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn issue<R: CryptoRng + ?Sized>(
    catalog: &Catalog,
    issuer: &Issuer,
    spec: KeySpec,
    now: Timestamp,
    rng: &mut R,
) -> Result<IssuedKey, IssueError> {
    // An Issuer is a snapshot; a key issuer that has expired since it was built issues nothing
    // (and its children could not inherit a live expiry from it anyway).
    if issuer.expires_at.is_some_and(|e| e <= now) {
        return Err(IssueError::IssuerKey(Deny::Expired));
    }
    let request = validate(catalog, &spec, now).map_err(IssueError::Invalid)?;
    let grant = bound(catalog, issuer, &spec, &request).map_err(IssueError::Escalation)?;
    let role = request.role.map(|r| r.name().to_owned());

    let token = spec.format.mint(rng);
    let mut key = ApiKey::new(
        KeyId::random(rng),
        spec.name.trim(),
        issuer.account,
        grant.scope,
        grant.permissions,
        token.hash(),
        now,
    );
    key.expires_at = grant.expires_at.into();
    key.rate_limit = spec.rate_limit;
    key.role = role;
    key.tags = spec.tags.iter().map(|t| t.trim().to_owned()).collect();
    key.comment = spec.comment;
    key.created_by = spec
        .created_by
        .map(|c| c.trim().to_owned())
        .or_else(|| issuer.user_id.clone());
    Ok(IssuedKey { key, token })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn now() -> Timestamp {
        Timestamp::from_unix_seconds(1_000_000)
    }

    #[test]
    fn echo_caps_long_input() {
        let long = "x".repeat(1_000);
        let echoed = echo(&long);
        assert_eq!(echoed.chars().count(), ECHO_LEN + 1);
        assert_eq!(echo("short"), "short");
    }

    #[test]
    fn unknown_issuer_role_grants_no_role() {
        let catalog = Catalog::read_write_delete();
        let mut issuer = Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all());
        issuer.role = RoleCeiling::Unknown("retired".into());
        let mut rng = StdRng::seed_from_u64(0);
        let err = issue(
            &catalog,
            &issuer,
            KeySpec::named("k").role("member"),
            now(),
            &mut rng,
        )
        .unwrap_err();
        assert!(
            matches!(err, IssueError::Escalation(ref e) if matches!(e[..], [Escalation::Role { .. }]))
        );
        assert!(issue(&catalog, &issuer, KeySpec::named("k"), now(), &mut rng).is_ok());
    }
}
