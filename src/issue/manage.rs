//! Managing existing keys: reading, rotating, revoking and updating, under the same attenuation
//! rule as issuing. See [`manage`](crate::manage()).

use core::fmt;

use crate::catalog::{Catalog, Permission};
use crate::decision::Deny;
use crate::issue::spec::{MAX_COMMENT_LEN, MAX_KEY_NAME_LEN, MAX_TAG_LEN, MAX_TAGS, check_text};
use crate::issue::{
    Escalation, Issuer, Reach, RoleBound, ValidationErrors, exceeds, key_management_permission,
    pattern_message,
};
use crate::key::{ApiKey, KeyId};
use crate::timestamp::Timestamp;

/// What a caller asks to do to an existing key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManageOp {
    /// See its record and usage.
    Read,
    /// Give it a new secret (the holder of the new token holds the key).
    Rotate,
    /// Revoke it (final).
    Revoke,
    /// Change it, only ever narrowing it.
    Update(KeyUpdate),
}

impl ManageOp {
    /// The op's name, for messages and logs: `read`, `rotate`, `revoke`, `update`.
    pub fn name(&self) -> &'static str {
        match self {
            ManageOp::Read => "read",
            ManageOp::Rotate => "rotate",
            ManageOp::Revoke => "revoke",
            ManageOp::Update(_) => "update",
        }
    }
}

/// A change to an existing key that can only narrow it: a new name, tags or comment, fewer
/// permissions, an earlier expiry. Fields left unset stay as they are.
///
/// ```
/// use keygate::{KeyUpdate, Timestamp};
/// let update = KeyUpdate::new()
///     .name("CI (read only)")
///     .permissions(["agents:read"])
///     .expires_at(Timestamp::from_unix_seconds(2_000_000_000));
/// assert_ne!(update, KeyUpdate::new());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyUpdate {
    name: Option<String>,
    tags: Option<Vec<String>>,
    comment: Option<String>,
    permissions: Option<Vec<String>>,
    expires_at: Option<Timestamp>,
}

impl KeyUpdate {
    /// An update that changes nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Renames the key (stored trimmed).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Replaces the tags.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    /// Replaces the comment.
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    /// Narrows the permissions to these names or patterns, which must lie within what the key
    /// holds now (a pattern keeps what the key holds of it).
    pub fn permissions<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.permissions = Some(patterns.into_iter().map(Into::into).collect());
        self
    }

    /// Moves the expiry earlier (or gives a key without one an expiry).
    pub fn expires_at(mut self, expires_at: Timestamp) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    /// The key as it will be: every malformed field (422) and every widening (403) refused.
    fn apply(
        &self,
        catalog: &Catalog,
        target: &ApiKey,
        now: Timestamp,
    ) -> Result<ApiKey, ManageError> {
        let mut errors = ValidationErrors::default();
        if let Some(name) = &self.name {
            check_text(&mut errors, "Name", name, MAX_KEY_NAME_LEN);
        }
        if let Some(tags) = &self.tags {
            if tags.len() > MAX_TAGS {
                errors.push(format!("Too many tags (maximum is {MAX_TAGS})"));
            }
            for tag in tags {
                check_text(&mut errors, "Tag", tag, MAX_TAG_LEN);
            }
        }
        if self
            .comment
            .as_ref()
            .is_some_and(|c| c.chars().count() > MAX_COMMENT_LEN)
        {
            errors.push(format!(
                "Comment is too long (maximum is {MAX_COMMENT_LEN} characters)"
            ));
        }
        if let Some(at) = self.expires_at {
            if at <= now {
                errors.push("Expiration date must be in the future");
            } else if !at.is_recordable() {
                errors.push("Expiration date must be no later than 9999-12-31T23:59:59Z");
            }
        }
        let mut narrowed = *target.permissions();
        let mut widened: Vec<String> = Vec::new();
        if let Some(patterns) = &self.permissions {
            if patterns.is_empty() {
                errors.push("Permissions can't be empty");
            }
            narrowed = crate::catalog::PermissionSet::EMPTY;
            for pattern in patterns {
                match catalog.expand([pattern]) {
                    Ok(set) => {
                        let held = set.intersection(target.permissions());
                        // An exact name the key lacks, or a pattern matching nothing it holds,
                        // would widen it: either way, nothing of it is held (an exact name
                        // expands to one permission).
                        if held.is_empty() {
                            widened.push(pattern.clone());
                        }
                        narrowed = narrowed.union(&held);
                    }
                    Err(e) => errors.push(pattern_message(&e)),
                }
            }
        }
        errors.into_result().map_err(ManageError::Invalid)?;

        let mut escalations = Vec::new();
        if !widened.is_empty() {
            escalations.push(Escalation::Permissions(widened));
        }
        if let (Some(requested), Some(limit)) = (self.expires_at, target.expires_at())
            && requested > limit
        {
            escalations.push(Escalation::Expiry { requested, limit });
        }
        if !escalations.is_empty() {
            return Err(ManageError::Widening(escalations));
        }

        let mut key = target.clone();
        if let Some(name) = &self.name {
            name.trim().clone_into(&mut key.name);
        }
        if let Some(tags) = &self.tags {
            key.tags = tags.iter().map(|t| t.trim().to_owned()).collect();
        }
        if let Some(comment) = &self.comment {
            key.comment = Some(comment.clone());
        }
        key.permissions = narrowed;
        if let Some(at) = self.expires_at {
            key.expires_at = Some(at).into();
        }
        Ok(key)
    }
}

/// Proof that a management operation on one key was decided and allowed: what
/// [`Keyring::revoke`](crate::Keyring::revoke), [`rotate`](crate::Keyring::rotate),
/// [`revoke_tree`](crate::Keyring::revoke_tree) and [`apply_update`](crate::Keyring::apply_update)
/// take, so that an unchecked change to a key does not type-check.
///
/// It comes from [`manage`](crate::manage()), or, for the operator's own tools (a migration, an
/// admin console, incident response — never a request path), from the explicitly named
/// `Permit::operator_*` constructors.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a permit does nothing until a keyring applies it"]
pub struct Permit {
    target: KeyId,
    granted: Granted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Granted {
    Read,
    Rotate,
    Revoke,
    Update(Box<ApiKey>),
}

impl Permit {
    /// The key the permit is for.
    pub fn target(&self) -> KeyId {
        self.target
    }

    /// The operation it allows: `read`, `rotate`, `revoke` or `update`.
    pub fn op_name(&self) -> &'static str {
        match self.granted {
            Granted::Read => "read",
            Granted::Rotate => "rotate",
            Granted::Revoke => "revoke",
            Granted::Update(_) => "update",
        }
    }

    /// For an update, the key as it will be once applied.
    pub fn updated_key(&self) -> Option<&ApiKey> {
        match &self.granted {
            Granted::Update(key) => Some(key),
            Granted::Read | Granted::Rotate | Granted::Revoke => None,
        }
    }

    /// A revocation decided by the operator, outside any request: no caller is checked.
    pub fn operator_revoke(target: KeyId) -> Self {
        Self {
            target,
            granted: Granted::Revoke,
        }
    }

    /// A rotation decided by the operator, outside any request: no caller is checked.
    pub fn operator_rotate(target: KeyId) -> Self {
        Self {
            target,
            granted: Granted::Rotate,
        }
    }

    /// A replacement of a key's record decided by the operator (a migration), outside any
    /// request: nothing is checked but that the id stays and a revocation is not undone.
    pub fn operator_update(key: ApiKey) -> Self {
        Self {
            target: key.id(),
            granted: Granted::Update(Box::new(key)),
        }
    }

    pub(crate) fn granted(&self) -> &Granted {
        &self.granted
    }
}

/// Why a management operation was refused. Nothing was changed.
///
/// As a [`Refusal`](crate::Refusal): 404 `{"error": "Not found"}` for a key out of the caller's
/// reach (never confirm that another tenant's key exists), 401 for an inactive calling key, 403
/// for a missing permission or an escalation (named), 422 for a malformed update, 409 for
/// rotating a revoked key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManageError {
    /// The target belongs to another account, or lies outside the caller's project. 404.
    #[error("API key not found")]
    NotFound,
    /// The calling key is revoked or expired (401), or lacks the permission the operation needs
    /// (403).
    #[error("calling key refused: {0}")]
    CallerKey(Deny),
    /// The catalog defines no permission that allows the operation, so no key may do it. 403.
    #[error("the catalog defines no key-management permission")]
    NoKeyManagementPermission,
    /// The target was created by someone else, and the caller lacks `api-keys:manage-others`. 403.
    #[error("managing another user's key requires {name}")]
    ManageOthers {
        /// The missing permission.
        permission: Permission,
        /// Its name.
        name: String,
    },
    /// The target holds more than the caller: managing it would hand the caller more than it has
    /// (a rotation hands over the key itself). 403, every way named.
    #[error("escalation refused: {}", manage_message(.0))]
    Escalation(Vec<Escalation>),
    /// The update would widen the key. 403, every way named.
    #[error("widening refused: {}", widening_message(.0))]
    Widening(Vec<Escalation>),
    /// The update is malformed. 422.
    #[error("invalid update: {0}")]
    Invalid(ValidationErrors),
    /// A revoked key cannot be rotated: revocation is final. 409.
    #[error("API key is revoked")]
    TargetRevoked,
}

/// The 403 message of a management escalation.
pub(crate) fn manage_message(escalations: &[Escalation]) -> String {
    escalations
        .iter()
        .map(|e| match e {
            Escalation::Permissions(names) => format!(
                "Cannot manage an API key holding permissions the caller does not hold: {}",
                names.join(", ")
            ),
            Escalation::Role { requested, .. } => {
                format!("Cannot manage an API key whose role {requested} exceeds the caller's")
            }
            Escalation::Scope { .. } => {
                "Cannot manage an API key that reaches beyond the caller's scope".to_owned()
            }
            Escalation::Expiry { limit, .. } => {
                format!(
                    "Cannot manage an API key that outlives the caller (which expires at {limit})"
                )
            }
            Escalation::RateLimit { .. } => {
                "Cannot manage an API key with a looser rate limit than the caller's".to_owned()
            }
            Escalation::AllowedAddresses { .. } => {
                "Cannot manage an API key usable from addresses outside the caller's".to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The 403 message of an update that would widen its key.
pub(crate) fn widening_message(escalations: &[Escalation]) -> String {
    escalations
        .iter()
        .map(|e| match e {
            Escalation::Permissions(names) => format!(
                "An update may only narrow a key: it does not hold {}",
                names.join(", ")
            ),
            Escalation::Expiry { limit, .. } => {
                format!("An update may only move the expiry earlier (it expires at {limit})")
            }
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl fmt::Display for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op_name(), self.target)
    }
}

/// The permission `op` needs from a calling key, if the catalog defines one: reading needs
/// `api-keys:read` (else coarse `read`), revoking `api-keys:delete` (else `delete`), rotating and
/// updating the [key-management permission](key_management_permission); each falls back to the
/// key-management permission when the catalog has neither name.
fn op_permission(catalog: &Catalog, op: &ManageOp) -> Option<Permission> {
    let by_name = |fine: &str, coarse: &str| {
        catalog
            .permission(fine)
            .or_else(|| catalog.permission(coarse))
    };
    match op {
        ManageOp::Read => by_name("api-keys:read", "read"),
        ManageOp::Revoke => by_name("api-keys:delete", "delete"),
        ManageOp::Rotate | ManageOp::Update(_) => None,
    }
    .or_else(|| key_management_permission(catalog))
}

/// Whether `caller` created `target`: a key caller issued it, or a user caller is its recorded
/// creator. Unknown creators are nobody's (deny by default).
fn created_by_caller(caller: &Issuer, target: &ApiKey) -> bool {
    match caller.key_id() {
        Some(id) => target.issued_by() == Some(id),
        None => caller
            .user_id()
            .is_some_and(|user| target.created_by() == Some(user)),
    }
}

/// May `caller` do `op` to `target` at `now`? The management decision: the answer is a [`Permit`]
/// the keyring takes, or why not.
///
/// The rules, in order (the first failing one answers):
/// 1. A calling key must be active at `now` (an [`Issuer`] is a snapshot: build it per request).
///    401.
/// 2. Same account, and the target lies within the caller's scope (a project key sees only its
///    project's keys). 404 otherwise: another tenant's key is never confirmed to exist.
/// 3. A key may always read and revoke itself.
/// 4. A calling key holds the op's permission: `api-keys:read` / `read` to read,
///    `api-keys:delete` / `delete` to revoke, `api-keys:write` / `write` to rotate or update.
///    (A user caller is trusted by the server to manage keys, as in [`issue`](crate::issue()).)
///    403.
/// 5. For a key the caller did not create (a key caller did not issue it; a user caller is not its
///    recorded creator), the caller also holds `api-keys:manage-others` where the catalog defines
///    it. 403.
/// 6. The target is dominated by the caller, exactly as a key the caller could issue: its
///    permissions are a subset of the caller's, its scope within, its role (or role ceiling)
///    ranked no higher, its expiry no later when the caller expires, its rate limit no looser when
///    the caller has one. 403, with every escalation named. Reading is held to this too: a key's
///    metadata is the caller's to see only if the key is the caller's to hold.
/// 7. An update only narrows (see [`KeyUpdate`]): 422 for a malformed one, 403 for a widening.
///    Rotating a revoked key is 409.
///
/// ```
/// use keygate::{issue, manage, AccountId, Catalog, Issuer, KeySpec, Keyring, ManageOp, Refusal,
///     Scope, Timestamp};
/// use rand::SeedableRng;
/// let catalog = Catalog::read_write_delete();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(7);
/// let now = Timestamp::from_unix_seconds(1_000);
/// let owner = Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all());
/// let bootstrap = issue(&catalog, &owner, KeySpec::named("Bootstrap"), now, &mut rng)?.key;
/// let writer = issue(&catalog, &owner, KeySpec::named("rw").permissions(["read", "write"]), now,
///     &mut rng)?.key;
///
/// // A read+write key may not take over the richer bootstrap key...
/// let caller = Issuer::key(&catalog, &writer, now)?;
/// let err = manage(&catalog, &caller, &bootstrap, ManageOp::Rotate, now).unwrap_err();
/// assert_eq!(err.status(), 403);
/// assert_eq!(err.body(&catalog).message(),
///     "Cannot manage an API key holding permissions the caller does not hold: delete");
///
/// // ...but the owner may, and the keyring acts only on a permit.
/// let mut keyring = Keyring::default();
/// keyring.insert(bootstrap.clone())?;
/// let permit = manage(&catalog, &owner, &bootstrap, ManageOp::Revoke, now)?;
/// keyring.revoke(&permit, now)?;
/// assert!(keyring.get(bootstrap.id()).is_some_and(|k| k.is_revoked()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn manage(
    catalog: &Catalog,
    caller: &Issuer,
    target: &ApiKey,
    op: ManageOp,
    now: Timestamp,
) -> Result<Permit, ManageError> {
    if caller.expires_at().is_some_and(|e| e <= now) {
        return Err(ManageError::CallerKey(Deny::Expired));
    }
    if caller.account() != target.account() || !target.scope().is_within(&caller.scope()) {
        return Err(ManageError::NotFound);
    }
    let itself = caller.key_id() == Some(target.id());
    let free_for_self = itself && matches!(op, ManageOp::Read | ManageOp::Revoke);
    if !free_for_self {
        if caller.key_id().is_some() {
            let needed =
                op_permission(catalog, &op).ok_or(ManageError::NoKeyManagementPermission)?;
            if !bool::from(caller.permissions().contains(needed)) {
                return Err(ManageError::CallerKey(Deny::MissingPermission(needed)));
            }
        }
        if !itself
            && !created_by_caller(caller, target)
            && let Some(others) = catalog.permission("api-keys:manage-others")
            && !bool::from(caller.permissions().contains(others))
        {
            return Err(ManageError::ManageOthers {
                permission: others,
                name: "api-keys:manage-others".to_owned(),
            });
        }
        let reach = Reach {
            permissions: *target.permissions(),
            role: target
                .role_ceiling()
                .map(|name| RoleBound::resolve(catalog, name)),
            scope: target.scope(),
            expires_at: target.expires_at(),
            rate_limit: target.rate_limit().copied(),
            allowed_addresses: target.allowed_addresses(),
        };
        let escalations = exceeds(catalog, caller, &reach);
        if !escalations.is_empty() {
            return Err(ManageError::Escalation(escalations));
        }
    }
    let granted = match op {
        ManageOp::Read => Granted::Read,
        ManageOp::Revoke => Granted::Revoke,
        ManageOp::Rotate if target.is_revoked() => return Err(ManageError::TargetRevoked),
        ManageOp::Rotate => Granted::Rotate,
        ManageOp::Update(update) => Granted::Update(Box::new(update.apply(catalog, target, now)?)),
    };
    Ok(Permit {
        target: target.id(),
        granted,
    })
}
