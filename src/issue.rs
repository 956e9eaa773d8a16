//! Issuing keys: attenuation, checked once, frozen forever.

mod error;
mod issuer;
mod spec;

use rand::CryptoRng;

use crate::catalog::{Catalog, PermissionSet};
use crate::decision::Deny;
use crate::key::{ApiKey, KeyId};
use crate::scope::Scope;
use crate::timestamp::Timestamp;

pub(crate) use error::join;
pub use error::{Escalation, IssueError, ValidationErrors};
use issuer::RoleCeiling;
pub use issuer::{Issuer, IssuerKind, key_management_permission};
pub use spec::{
    IssuedKey, KeySpec, MAX_COMMENT_LEN, MAX_CREATED_BY_LEN, MAX_KEY_NAME_LEN, MAX_TAG_LEN,
    MAX_TAGS,
};
use spec::{Request, validate};

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
/// issuer (see below). Nothing is issued on error.
///
/// # Attenuation
///
/// Issuing keys: attenuation, checked once, frozen forever.
///
/// An [`Issuer`] (a user holding a role or a set of permissions, or an existing [`ApiKey`] that
/// holds the key-management permission) asks for a new key with a [`KeySpec`]. [`issue`] grants
/// it only if it is an *attenuation* of the issuer, in the sense of biscuit's attenuated tokens: a
/// derived key can only do less.
///
/// - **Permissions** default to the issuer's full set and must be a subset of it. The set is
///   copied into the key at issue time, so nothing done to the issuer later (a wider role, a
///   grown catalog) widens the key.
/// - **Scope** defaults to the issuer's own scope and must lie within it: a project-scoped issuer
///   mints keys for its own project only; only an account-wide issuer mints account-wide keys.
///   The account is always the issuer's.
/// - **Roles** are ranked (`member` < `admin` < `owner`): a key never gets a role ranked above
///   its creator's, nor one holding permissions its creator lacks.
/// - **Expiry**: a key issued by a key never outlives it. A child that asks for no expiry gets the
///   issuer's; one that asks for a later expiry is refused.
///
/// Two kinds of refusal, checked in this order (after the issuing key, if any, is found to be
/// unexpired at `now`: 401 otherwise), and nothing is issued on either:
/// 1. [`IssueError::Invalid`], 422 `{"errors": [...]}`: every malformed part of the request, all
///    collected (blank or long name, expiry in the past, both expiry forms, unknown permission or
///    role, ...). Escalation is not judged on a request that is not well formed: an unknown
///    permission cannot be compared with the issuer's set.
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
