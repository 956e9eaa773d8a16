//! The decision every request asks for, computed in constant time.
//!
//! [`authorize`] evaluates all five rules of the design on every call, as [`subtle::Choice`]s,
//! and picks the deny reason by constant-time selection: no early return, no branch and no memory
//! index that depends on the key's bits, scope, ids, expiry or revocation, and no allocation. The
//! test tree holds a plain `if`-and-return model of the same rules; a property test holds the two
//! to the same answer on random inputs.

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::catalog::{Catalog, CatalogError, Permission, PermissionSet};
use crate::ct::{Present, at_or_before, id_word};
use crate::decision::{Decision, Deny};
use crate::key::ApiKey;
use crate::scope::{ProjectId, Resource, Target};
use crate::timestamp::Timestamp;

/// What a request wants to do: the permission it needs, and whether it is account-level.
///
/// Account-level actions are the ones that change the set of projects (creating or destroying
/// one, IdentityCall's Create Project): only account-wide keys may do them. A listing is *not* account-level: it uses
/// [`Resource::listing`] and the server filters the items by the key's scope.
///
/// ```
/// use keygate::{Action, Catalog};
/// let catalog = Catalog::read_write_delete();
/// let create_project = Action::named(&catalog, "write")?.at_account_level();
/// assert!(create_project.is_account_level());
/// assert_eq!(Action::for_method(&catalog, "PATCH")?, Action::named(&catalog, "write")?);
/// # Ok::<(), keygate::CatalogError>(())
/// ```
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Action {
    permission: Permission,
    account_level: bool,
}

impl Action {
    /// An action needing `permission`, inside a project or on a listing.
    pub const fn new(permission: Permission) -> Self {
        Self {
            permission,
            account_level: false,
        }
    }

    /// The action needing the permission called `name`.
    pub fn named(catalog: &Catalog, name: &str) -> Result<Self, CatalogError> {
        catalog
            .permission(name)
            .map(Self::new)
            .ok_or_else(|| CatalogError::UnknownPermission(name.to_owned()))
    }

    /// IdentityCall's mapping for the coarse catalog: `GET`/`HEAD` need `read`, `POST`/`PUT`/`PATCH`
    /// need `write`, `DELETE` needs `delete`. Any other method is an error.
    pub fn for_method(catalog: &Catalog, method: &str) -> Result<Self, CatalogError> {
        let name = match method {
            "GET" | "HEAD" => "read",
            "POST" | "PUT" | "PATCH" => "write",
            "DELETE" => "delete",
            other => return Err(CatalogError::UnknownPermission(other.to_owned())),
        };
        Self::named(catalog, name)
    }

    /// The same action, marked account-level (creating or destroying a project).
    pub const fn at_account_level(mut self) -> Self {
        self.account_level = true;
        self
    }

    /// The permission the action needs.
    pub const fn permission(&self) -> Permission {
        self.permission
    }

    /// Whether only account-wide keys may do it.
    pub const fn is_account_level(&self) -> bool {
        self.account_level
    }
}

/// Deny reasons as selectable codes, in rule order. `ALLOW` is the starting value.
///
/// Shared with [`Keyring`](crate::keyring::Keyring), which selects `UNKNOWN_KEY` over the result
/// of the same rules when the token matched no key.
pub(crate) mod code {
    pub const ALLOW: u8 = 0;
    pub const REVOKED: u8 = 1;
    pub const EXPIRED: u8 = 2;
    pub const OTHER_ACCOUNT: u8 = 3;
    pub const ACCOUNT_LEVEL_ACTION: u8 = 4;
    pub const OUT_OF_SCOPE: u8 = 5;
    pub const MISSING_PERMISSION: u8 = 6;
    pub const UNKNOWN_KEY: u8 = 7;
    /// After `UNKNOWN_KEY` so no other code moves; checked second, after liveness.
    pub const ADDRESS_NOT_ALLOWED: u8 = 8;
}

/// A key's scope as plain data the constant-time path can mix: (is account-wide, project id
/// word). The key stores it as a flag and always-present bytes, so this reads both without a
/// branch.
fn scope_parts(scope: &Present<ProjectId>) -> (Choice, u128) {
    (
        !scope.is_present(),
        id_word(scope.value_or_fill().as_bytes()),
    )
}

/// A resource target as (is not the account itself, is a listing, project id word). Rule 4 only
/// ever asks whether the target is *not* the account, so that is the fact taken.
fn target_parts(target: Target) -> (Choice, Choice, u128) {
    let not_account = Choice::from(u8::from(target != Target::Account));
    let is_listing = Choice::from(u8::from(target == Target::Listing));
    let project = match target {
        Target::Project(p) => id_word(p.as_bytes()),
        Target::Account | Target::Listing => 0,
    };
    (not_account, is_listing, project)
}

/// May `key` do `action` on `resource` at `now`?
///
/// Allowed exactly when all hold; when denied, the reason is the first failing check:
/// 1. the key is not revoked ([`Deny::Revoked`]) and has not expired, `now < expires_at`
///    ([`Deny::Expired`]);
///
///    then, a key restricted to address ranges is used from one of them
///    ([`Deny::AddressNotAllowed`]): the request's [`Resource::from_address`], and an unknown
///    address is refused (deny by default); a key without ranges allows every address;
/// 2. the key's account owns the resource ([`Deny::OtherAccount`]);
/// 3. an account-level action needs an account-wide key ([`Deny::AccountLevelAction`]);
/// 4. a project-scoped key reaches only its own project's resources and listings
///    ([`Deny::OutOfScope`]);
/// 5. the key holds the action's permission ([`Deny::MissingPermission`]); with
///    [`authorize_capped`], its creator holds it too.
///
/// The time taken does not depend on the key's data or on which rule fails.
///
/// ```
/// use keygate::{authorize, AccountId, Action, ApiKey, Catalog, Decision, Deny, KeyId, ProjectId,
///     Resource, Scope, Timestamp, TokenHash};
/// let catalog = Catalog::read_write_delete();
/// let acct = AccountId::from_u64(1);
/// let project = ProjectId::from_u64(42);
/// let key = ApiKey::new(KeyId::from_bytes([7; 16]), "uploader", acct, Scope::Project(project),
///     catalog.expand(["read", "write"])?, TokenHash::of("idc_x"), Timestamp::EPOCH);
/// let now = Timestamp::from_unix_seconds(1_000);
/// let write = Action::named(&catalog, "write")?;
///
/// assert_eq!(authorize(&key, write, &Resource::in_project(acct, project), now), Decision::Allow);
/// assert_eq!(
///     authorize(&key, write.at_account_level(), &Resource::account(acct), now),
///     Decision::Deny(Deny::AccountLevelAction)
/// );
/// let other = Resource::in_project(acct, ProjectId::from_u64(43));
/// assert_eq!(authorize(&key, write, &other, now), Decision::Deny(Deny::OutOfScope));
/// # Ok::<(), keygate::CatalogError>(())
/// ```
pub fn authorize(key: &ApiKey, action: Action, resource: &Resource, now: Timestamp) -> Decision {
    authorize_capped(key, &PermissionSet::ALL, action, resource, now)
}

/// [`authorize`] with the key's permissions capped by `cap`: its creator's current permissions,
/// since a key never does more than its creator can do now. Rule 5 then needs the permission in
/// the key's frozen set *and* in the cap (one more bitset AND, still constant time); an empty cap
/// (a removed creator) denies every action with [`Deny::MissingPermission`].
///
/// [`Keyring::authorize`](crate::Keyring::authorize) applies the caps it was given
/// ([`Keyring::set_creator_cap`](crate::Keyring::set_creator_cap)) by itself.
///
/// ```
/// use keygate::{authorize_capped, AccountId, Action, ApiKey, Catalog, Decision, Deny, KeyId,
///     Resource, Scope, Timestamp, TokenHash};
/// let catalog = Catalog::read_write_delete();
/// let acct = AccountId::from_u64(1);
/// let key = ApiKey::new(KeyId::from_bytes([7; 16]), "k", acct, Scope::Account,
///     catalog.all(), TokenHash::of("idc_x"), Timestamp::EPOCH);
/// let write = Action::named(&catalog, "write")?;
/// let now = Timestamp::from_unix_seconds(1);
/// let demoted = catalog.expand(["read"])?; // the creator can only read now
/// assert_eq!(authorize_capped(&key, &demoted, write, &Resource::listing(acct), now),
///     Decision::Deny(Deny::MissingPermission(write.permission())));
/// # Ok::<(), keygate::CatalogError>(())
/// ```
pub fn authorize_capped(
    key: &ApiKey,
    cap: &PermissionSet,
    action: Action,
    resource: &Resource,
    now: Timestamp,
) -> Decision {
    decision_for(
        reason_code(key, cap, action, resource, now),
        action.permission,
    )
}

/// Rule 1's two failures, (revoked, expired), in constant time.
fn liveness(key: &ApiKey, now: Timestamp) -> (Choice, Choice) {
    let revoked = Choice::from(u8::from(key.revoked_at.is_some()));
    // Both read without a branch on whether the key expires: see `Present`.
    let has_expiry = key.expires_at.is_present();
    // Expired when `expires_at <= now`, i.e. not `now < expires_at`.
    let expired = has_expiry & at_or_before(*key.expires_at.value_or_fill(), now);
    (revoked, expired)
}

/// Rule 1 alone, as a code: `ALLOW`, `REVOKED` or `EXPIRED`, in constant time.
pub(crate) fn liveness_code(key: &ApiKey, now: Timestamp) -> u8 {
    let (revoked, expired) = liveness(key, now);
    let mut reason = code::ALLOW;
    reason.conditional_assign(&code::EXPIRED, expired);
    reason.conditional_assign(&code::REVOKED, revoked);
    reason
}

/// All five rules, as the code of the first failing one (or `ALLOW`), in constant time.
pub(crate) fn reason_code(
    key: &ApiKey,
    cap: &PermissionSet,
    action: Action,
    resource: &Resource,
    now: Timestamp,
) -> u8 {
    let (key_account_wide, key_project) = scope_parts(&key.scope);
    let (not_at_account, at_listing, resource_project) = target_parts(resource.target());
    let account_level_action = Choice::from(u8::from(action.account_level));

    // Every `Choice` operation passes through an optimization barrier, so the rules are
    // written as *failure* conditions with as few operations as possible: the cost of
    // `authorize` is mostly those barriers.
    let (revoked, expired) = liveness(key, now);
    let (has_address, address) = resource.address_parts();
    let address_allowed = key.allowed_addresses.allows(address, has_address);
    let same_account =
        id_word(key.account.as_bytes()).ct_eq(&id_word(resource.account_id().as_bytes()));
    let account_level_denied = account_level_action & !key_account_wide;
    // A listing is reachable by any key of the account; a project only by account-wide keys and
    // keys of that project; the account itself only by account-wide keys.
    let in_own_project = not_at_account & key_project.ct_eq(&resource_project);
    let in_scope = key_account_wide | at_listing | in_own_project;
    let has_permission = key
        .permissions
        .intersection(cap)
        .contains(action.permission);

    // Assign from the last rule to the first, so the first failing rule's code is what remains.
    // `conditional_select(a, b, c)` is `b` when `c` holds, else `a`: selecting on a rule that
    // *passes* keeps the reason so far, and saves negating the Choice.
    let mut reason = code::ALLOW;
    reason = u8::conditional_select(&code::MISSING_PERMISSION, &reason, has_permission);
    reason = u8::conditional_select(&code::OUT_OF_SCOPE, &reason, in_scope);
    reason.conditional_assign(&code::ACCOUNT_LEVEL_ACTION, account_level_denied);
    reason = u8::conditional_select(&code::OTHER_ACCOUNT, &reason, same_account);
    reason = u8::conditional_select(&code::ADDRESS_NOT_ALLOWED, &reason, address_allowed);
    reason.conditional_assign(&code::EXPIRED, expired);
    reason.conditional_assign(&code::REVOKED, revoked);
    reason
}

/// Turns the selected code into the public enum, after every rule was evaluated.
///
/// Masking the code to `0..=7` makes the match total over exactly eight values, which the compiler
/// turns into one shift of a constant table, with no branch. Without the mask the open `_` arm
/// compiled to a branch for `UNKNOWN_KEY`, so `Keyring::authorize` took one path for a hit and
/// another for a miss: valgrind (ctgrind/) flagged it, and `benches/ct.rs` measured it
/// (`keyring_hit_miss`). The caller acts on the outcome anyway, but the claim is "no branch on
/// secrets inside", and the outcome of a keyring lookup is derived from the token.
///
/// `ADDRESS_NOT_ALLOWED` (8) is the ninth outcome: one match over sixteen codes compiled to a jump
/// table indexed by the code (ctgrind flagged it), so the eight keep their table and bit 3 picks
/// the address refusal over it, which compiles to a conditional move.
pub(crate) fn decision_for(reason: u8, permission: Permission) -> Decision {
    let first_eight = match reason & 7 {
        code::ALLOW => Decision::Allow,
        code::REVOKED => Decision::Deny(Deny::Revoked),
        code::EXPIRED => Decision::Deny(Deny::Expired),
        code::OTHER_ACCOUNT => Decision::Deny(Deny::OtherAccount),
        code::ACCOUNT_LEVEL_ACTION => Decision::Deny(Deny::AccountLevelAction),
        code::OUT_OF_SCOPE => Decision::Deny(Deny::OutOfScope),
        code::MISSING_PERMISSION => Decision::Deny(Deny::MissingPermission(permission)),
        // `UNKNOWN_KEY` (7); the mask leaves no other value.
        _ => Decision::Deny(Deny::UnknownKey),
    };
    if reason & code::ADDRESS_NOT_ALLOWED != 0 {
        Decision::Deny(Deny::AddressNotAllowed)
    } else {
        first_eight
    }
}
