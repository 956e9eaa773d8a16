//! Issuing keys: attenuation, checked once, frozen forever.

mod error;
mod issuer;
mod manage;
mod spec;

use rand::CryptoRng;

use crate::address::AddressRange;
use crate::catalog::{Catalog, PermissionSet, Role};
use crate::decision::Deny;
use crate::key::{ApiKey, KeyId};
use crate::ratelimit::RateLimit;
use crate::scope::Scope;
use crate::timestamp::Timestamp;

pub(crate) use error::join;
pub use error::{Escalation, IssueError, ValidationErrors};
use issuer::RoleCeiling;
pub use issuer::{Issuer, IssuerKind, key_management_permission};
pub(crate) use manage::{Granted, manage_message, widening_message};
pub use manage::{KeyUpdate, ManageError, ManageOp, Permit, manage};
pub(crate) use spec::echo;
pub use spec::{
    IssuedKey, KeySpec, MAX_COMMENT_LEN, MAX_CREATED_BY_LEN, MAX_KEY_NAME_LEN, MAX_TAG_LEN,
    MAX_TAGS,
};
use spec::{Request, pattern_message, too_many_ranges_message, validate};

/// What the key will be, if the request stays within the issuer.
struct Grant {
    permissions: PermissionSet,
    scope: Scope,
    expires_at: Option<Timestamp>,
    rate_limit: Option<RateLimit>,
    allowed_addresses: Vec<AddressRange>,
}

/// A role as a bound: one the catalog defines, or a name it no longer knows.
#[derive(Clone, Copy)]
enum RoleBound<'c> {
    Known(&'c Role),
    Unknown(&'c str),
}

impl<'c> RoleBound<'c> {
    fn resolve(catalog: &'c Catalog, name: &'c str) -> Self {
        catalog.role(name).map_or(Self::Unknown(name), Self::Known)
    }

    fn name(self) -> &'c str {
        match self {
            Self::Known(role) => role.name(),
            Self::Unknown(name) => name,
        }
    }
}

/// What a key holds, as far as domination goes.
struct Reach<'c> {
    permissions: PermissionSet,
    role: Option<RoleBound<'c>>,
    scope: Scope,
    expires_at: Option<Timestamp>,
    rate_limit: Option<RateLimit>,
    /// Empty: usable from anywhere.
    allowed_addresses: &'c [AddressRange],
}

/// Every way a key with `reach` exceeds `bound`: the attenuation rule, shared by issuing (the new
/// key against its issuer) and managing (the target against its caller). Deny by default: a role
/// the catalog no longer defines exceeds every ranked bound.
fn exceeds(catalog: &Catalog, bound: &Issuer, reach: &Reach<'_>) -> Vec<Escalation> {
    let mut escalations = Vec::new();
    let mut excess: Vec<&str> = reach
        .permissions
        .iter()
        .filter(|p| !bool::from(bound.permissions.contains(*p)))
        .filter_map(|p| catalog.name(p))
        .collect();
    if !excess.is_empty() {
        excess.sort_unstable();
        escalations.push(Escalation::Permissions(
            excess.into_iter().map(str::to_owned).collect(),
        ));
    }
    if let Some(role) = reach.role {
        let above = match (role, &bound.role) {
            (RoleBound::Known(role), RoleCeiling::Unranked) => {
                !role.permissions().is_subset(&bound.permissions)
            }
            (RoleBound::Known(role), RoleCeiling::Rank { rank, .. }) => {
                role.rank() > *rank || !role.permissions().is_subset(&bound.permissions)
            }
            (RoleBound::Unknown(_), RoleCeiling::Unranked) => false,
            (_, RoleCeiling::Unknown(_)) | (RoleBound::Unknown(_), RoleCeiling::Rank { .. }) => {
                true
            }
        };
        if above {
            escalations.push(Escalation::Role {
                requested: role.name().to_owned(),
                held: bound.role().map(str::to_owned),
            });
        }
    }
    if !reach.scope.is_within(&bound.scope) {
        escalations.push(Escalation::Scope {
            requested: reach.scope,
            held: bound.scope,
        });
    }
    if let Some(limit) = bound.expires_at
        && reach.expires_at.is_none_or(|e| e > limit)
    {
        escalations.push(Escalation::Expiry {
            requested: reach.expires_at.unwrap_or(Timestamp::MAX),
            limit,
        });
    }
    if let Some(limit) = bound.rate_limit
        && reach.rate_limit.is_none_or(|r| !r.is_within(&limit))
    {
        escalations.push(Escalation::RateLimit {
            requested: reach.rate_limit,
            limit,
        });
    }
    // A bound with ranges dominates only a reach whose every range lies inside one of its
    // ranges; an unrestricted reach (no ranges: anywhere) exceeds it.
    if !bound.allowed_addresses.is_empty()
        && (reach.allowed_addresses.is_empty()
            || !reach
                .allowed_addresses
                .iter()
                .all(|r| bound.allowed_addresses.iter().any(|b| r.is_within(b))))
    {
        escalations.push(Escalation::AllowedAddresses {
            requested: reach.allowed_addresses.to_vec(),
            held: bound.allowed_addresses.clone(),
        });
    }
    escalations
}

/// Every way `request` reaches beyond `issuer`, or the grant.
fn bound(
    catalog: &Catalog,
    issuer: &Issuer,
    spec: &KeySpec,
    request: &Request<'_>,
) -> Result<Grant, Vec<Escalation>> {
    let mut escalations = Vec::new();
    let permissions = match &request.permissions {
        // A pattern grants what the issuer holds of it (`agents:*` is "every agents permission I
        // hold"); one matching nothing the issuer holds is an escalation, named by the pattern.
        Some(requested) => {
            let mut set = requested.exact;
            for (pattern, expansion) in &requested.patterns {
                let held = expansion.intersection(&issuer.permissions);
                if held.is_empty() {
                    escalations.push(Escalation::Permissions(vec![(*pattern).to_owned()]));
                }
                set = set.union(&held);
            }
            set
        }
        None => request
            .role
            .map_or(issuer.permissions, |r| *r.permissions()),
    };
    // A child asking for no expiry or no rate limit inherits the issuer's; one asking for a later
    // expiry or a looser limit is refused rather than silently narrowed, so the caller learns of it.
    let reach = Reach {
        permissions,
        role: request.role.map(RoleBound::Known),
        scope: spec.scope.unwrap_or(issuer.scope),
        expires_at: request.expires_at.or(issuer.expires_at),
        rate_limit: spec.rate_limit.or(issuer.rate_limit),
        // Like expiry: a child asking for no ranges inherits its issuer's.
        allowed_addresses: request
            .allowed_addresses
            .as_deref()
            .unwrap_or(&issuer.allowed_addresses),
    };
    escalations.extend(exceeds(catalog, issuer, &reach));
    if escalations.is_empty() {
        Ok(Grant {
            permissions: reach.permissions,
            scope: reach.scope,
            expires_at: reach.expires_at,
            rate_limit: reach.rate_limit,
            allowed_addresses: reach.allowed_addresses.to_vec(),
        })
    } else {
        Err(escalations)
    }
}

/// Mints a new key for `issuer` as `spec` describes, if it is a well-formed attenuation of the
/// issuer (see below). Nothing is issued on error.
///
/// # Attenuation
///
/// An [`Issuer`] (a user holding a role or a set of permissions, or an existing [`ApiKey`] that
/// holds the [key-management permission](key_management_permission)) asks for a new key with a
/// [`KeySpec`]. [`issue`] grants it only if it is an *attenuation* of the issuer, in the sense of
/// biscuit's attenuated tokens: a derived key can only do less.
///
/// - **Permissions** default to the issuer's full set and must be a subset of it. A pattern
///   (`agents:*`, `*:read`, `*`) grants what the issuer holds of it; an exact name the issuer
///   lacks, or a pattern matching nothing it holds, is refused. The set is copied into the key at
///   issue time, so nothing done to the issuer later (a wider role, a grown catalog) widens the
///   key. An explicitly empty list is malformed: a key that can do nothing is a mistake.
/// - **Scope** defaults to the issuer's own scope and must lie within it: a project-scoped issuer
///   mints keys for its own project only; only an account-wide issuer mints account-wide keys.
///   The account is always the issuer's.
/// - **Roles** are ranked (`member` < `admin` < `owner`): a key never gets a role ranked above
///   its issuer's role ceiling, nor one holding permissions its issuer lacks. A key issued without
///   a role carries its issuer's ceiling ([`ApiKey::role_ceiling`]), so a role-less key in the
///   middle of a chain cannot be used to climb.
/// - **Expiry**: a key issued by a key never outlives it. A child that asks for no expiry gets the
///   issuer's; one that asks for a later expiry is refused. Every accepted expiry is one a record
///   can store (years up to 9999); a positive time to live rounds up to the next microsecond.
/// - **Rate limit**: a child of a rate-limited key gets a limit no looser (fewer or as many
///   requests per unit of time, a burst no larger); it inherits the issuer's when it asks for
///   none. Each of its requests is also charged to every rate-limited ancestor's budget by
///   [`Keyring::check_rate_limit`](crate::Keyring::check_rate_limit), so minting children is no
///   way around a limit.
/// - **Address ranges**: a child of a key restricted to client address ranges
///   ([`KeySpec::allowed_addresses`]) is restricted too, to ranges that each lie inside one of
///   its issuer's; it inherits the issuer's when it asks for none, so a restricted key never
///   issues an unrestricted one.
/// - **Creator and issuer** come from the authenticated issuer, never from the request: a user
///   issuer's id, or a key issuer's own creator, is the new key's `created_by`; a key issuer's id
///   is its `issued_by`.
///
/// Two kinds of refusal, checked in this order (after the issuing key, if any, is found to be
/// unexpired at `now` (401 otherwise) and to hold the key-management permission (403)), and
/// nothing is issued on either:
/// 1. [`IssueError::Invalid`], 422 `{"errors": [...]}`: every malformed part of the request, all
///    collected (blank or long name, expiry in the past or past year 9999, both expiry forms,
///    unknown permission or role, ...). Escalation is not judged on a request that is not well
///    formed: an unknown permission cannot be compared with the issuer's set.
/// 2. [`IssueError::Escalation`], 403 `{"error": "..."}`: every way the request reaches beyond
///    the issuer, all collected.
///
/// Tier quotas (keys per project) are the caller's check, with [`Tier`](crate::Tier), since only the
/// caller's store knows how many keys a project already has.
///
/// ```
/// use keygate::{authorize, issue, Refusal, AccountId, Action, Catalog, Issuer, KeySpec, ProjectId,
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
    // A user is trusted to create keys within what they hold; a key needs the permission to.
    if issuer.key_id().is_some() {
        let manage =
            key_management_permission(catalog).ok_or(IssueError::NoKeyManagementPermission)?;
        if !bool::from(issuer.permissions.contains(manage)) {
            return Err(IssueError::IssuerKey(Deny::MissingPermission(manage)));
        }
    }
    let request = validate(catalog, &spec, issuer.user_id(), now).map_err(IssueError::Invalid)?;
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
    key.rate_limit = grant.rate_limit;
    // Credits and named limits need no bound against the issuer's: a request is charged to every
    // key up the issuing chain (`Keyring::admit`), so a child's own can only narrow its issuer's.
    key.credits = spec.credits;
    key.limits = spec.limits;
    // At most MAX_ADDRESS_RANGES: validated for a request, and an issuer's came from a key.
    key.allowed_addresses = crate::address::AllowedAddresses::from_ranges(&grant.allowed_addresses)
        .ok_or_else(|| {
            IssueError::Invalid(ValidationErrors::from(vec![too_many_ranges_message()]))
        })?;
    // The issuer's ceiling travels with a role-less key, so a later child cannot be granted a
    // role above it.
    if role.is_none() {
        key.role_ceiling = issuer.role().map(str::to_owned);
    }
    key.role = role;
    key.tags = spec.tags.iter().map(|t| t.trim().to_owned()).collect();
    key.comment = spec.comment.clone();
    // From the authenticated issuer only: never from what the request says.
    key.created_by = issuer.user_id().map(|u| u.trim().to_owned());
    key.issued_by = issuer.key_id();
    Ok(IssuedKey { key, token })
}

#[cfg(test)]
mod tests {
    use super::spec::{ECHO_LEN, echo};
    use super::*;
    use crate::scope::AccountId;
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
