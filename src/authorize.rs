//! The decision every request asks for, computed in constant time.
//!
//! [`authorize`] evaluates all five rules of the design on every call, as 0/1 flags that pass
//! through one optimization barrier together, and picks the deny reason by constant-time
//! selection: no early return, no branch and no memory index that depends on the key's bits,
//! scope, ids, expiry or revocation, and no allocation. The test tree holds a plain
//! `if`-and-return model of the same rules; a property test holds the two to the same answer on
//! random inputs.

use subtle::{Choice, ConditionallySelectable};

use crate::catalog::{Catalog, CatalogError, Permission, PermissionSet, nonzero};
use crate::ct::{at_or_before, at_or_before_bit, equal_bit, id_word, select_code};
use crate::decision::{Decision, Deny};
use crate::key::ApiKey;
use crate::scope::{Resource, Target};
use crate::timestamp::Timestamp;

/// What a request wants to do: the permissions it needs, and whether it is account-level.
///
/// Most actions need one permission ([`new`](Self::new), [`named`](Self::named)); an action may
/// also need several ([`all_of`](Self::all_of)) or accept any of several
/// ([`any_of`](Self::any_of)). Rule 5 checks every form in the same constant time.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Action {
    /// Never empty: the constructors refuse an empty set, which all-of would pass vacuously.
    needed: PermissionSet,
    /// The lowest needed permission: what [`permission`](Self::permission) answers, and the one
    /// an any-of refusal names.
    first: Permission,
    /// Any of `needed` suffices; otherwise all of it is needed.
    any: bool,
    account_level: bool,
}

impl Action {
    /// An action needing `permission`, inside a project or on a listing.
    pub const fn new(permission: Permission) -> Self {
        Self {
            needed: PermissionSet::single(permission),
            first: permission,
            any: false,
            account_level: false,
        }
    }

    /// An action needing every permission of `needed`. A refusal names the lowest-index one the
    /// key lacks. An empty set is an error ([`CatalogError::EmptyAction`]).
    ///
    /// Build the set with [`Catalog::resolve`] (exact names) or
    /// [`all_of_named`](Self::all_of_named): [`Catalog::expand`] adds what the names imply, which
    /// an action needing `agents:write` should not also need.
    pub fn all_of(needed: PermissionSet) -> Result<Self, CatalogError> {
        Self::of(needed, false)
    }

    /// An action any one permission of `alternatives` allows. A refusal names the lowest-index
    /// one. An empty set is an error ([`CatalogError::EmptyAction`]).
    ///
    /// Build the set with [`Catalog::resolve`] (exact names) or
    /// [`any_of_named`](Self::any_of_named), not [`Catalog::expand`]: that adds what the names
    /// imply, so `any_of(expand(["agents:write"]))` would also accept `agents:read`.
    ///
    /// ```
    /// use keygate::{authorize, AccountId, Action, ApiKey, Catalog, Decision, Deny, KeyId,
    ///     Resource, Scope, Timestamp, TokenHash};
    /// let catalog = Catalog::new(["calls:read", "calls:admin", "billing:read"])?;
    /// let acct = AccountId::from_u64(1);
    /// let key = ApiKey::new(KeyId::from_bytes([1; 16]), "k", acct, Scope::Account,
    ///     catalog.resolve(["calls:admin"])?, TokenHash::of("t"), Timestamp::EPOCH);
    /// let now = Timestamp::from_unix_seconds(1);
    /// let listing = Resource::listing(acct);
    ///
    /// let view_calls = Action::any_of_named(&catalog, ["calls:read", "calls:admin"])?;
    /// assert_eq!(authorize(&key, view_calls, &listing, now), Decision::Allow);
    ///
    /// let report = Action::all_of_named(&catalog, ["calls:read", "billing:read"])?;
    /// let calls_read = catalog.permission("calls:read").unwrap();
    /// assert_eq!(authorize(&key, report, &listing, now),
    ///     Decision::Deny(Deny::MissingPermission(calls_read)));
    /// # Ok::<(), keygate::CatalogError>(())
    /// ```
    pub fn any_of(alternatives: PermissionSet) -> Result<Self, CatalogError> {
        Self::of(alternatives, true)
    }

    /// [`all_of`](Self::all_of) the permissions with these exact names.
    pub fn all_of_named<I, S>(catalog: &Catalog, names: I) -> Result<Self, CatalogError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::all_of(catalog.resolve(names)?)
    }

    /// [`any_of`](Self::any_of) the permissions with these exact names.
    pub fn any_of_named<I, S>(catalog: &Catalog, names: I) -> Result<Self, CatalogError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::any_of(catalog.resolve(names)?)
    }

    fn of(needed: PermissionSet, any: bool) -> Result<Self, CatalogError> {
        let first = needed.iter().next().ok_or(CatalogError::EmptyAction)?;
        Ok(Self {
            needed,
            first,
            any,
            account_level: false,
        })
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

    /// The permission the action needs: for one needing several, or accepting alternatives, the
    /// lowest-index of them (what a single-permission action always answered).
    pub const fn permission(&self) -> Permission {
        self.first
    }

    /// Every permission the action needs, or accepts one of.
    pub const fn permissions(&self) -> &PermissionSet {
        &self.needed
    }

    /// Whether any one of [`permissions`](Self::permissions) suffices (built with
    /// [`any_of`](Self::any_of)); otherwise all of them are needed.
    pub const fn is_any_of(&self) -> bool {
        self.any
    }

    /// Whether only account-wide keys may do it.
    pub const fn is_account_level(&self) -> bool {
        self.account_level
    }
}

/// Built through the constructors, so that fuzzing never makes an action needing nothing.
#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for Action {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let first = <Permission as arbitrary::Arbitrary>::arbitrary(u)?;
        let action = match <u8 as arbitrary::Arbitrary>::arbitrary(u)? % 3 {
            0 => Self::new(first),
            kind => {
                let mut needed = <PermissionSet as arbitrary::Arbitrary>::arbitrary(u)?;
                needed.insert(first);
                Self::of(needed, kind == 2).unwrap_or(Self::new(first))
            }
        };
        Ok(if <bool as arbitrary::Arbitrary>::arbitrary(u)? {
            action.at_account_level()
        } else {
            action
        })
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
/// 5. the key holds the action's permission ([`Deny::MissingPermission`]): every one of an
///    [`all_of`](Action::all_of) action's (the refusal names the lowest-index one missing), at
///    least one of an [`any_of`](Action::any_of) action's (the refusal names the lowest-index
///    one); with [`authorize_capped`], its creator holds them too.
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
    let (reason, missing) = reason_code(key, cap, &action, resource, now);
    decision_for(reason, missing)
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

/// All five rules, as the code of the first failing one (or `ALLOW`) and the permission a
/// `MISSING_PERMISSION` refusal names, in constant time.
///
/// Each rule is first a 0/1 flag computed by plain arithmetic (no comparison the compiler could
/// make a branch of: sign bits and masks), then all the flags pass through *one* optimization
/// barrier together, and the code is selected from them by masks. Past the barrier the compiler
/// cannot tell the flags are booleans, so it cannot turn the selection into branches. A
/// `subtle::Choice` per operation, as first written, passed some twenty barriers, which were
/// most of the cost of `authorize`; ctgrind (`ctgrind/`) checks the result by instruction.
pub(crate) fn reason_code(
    key: &ApiKey,
    cap: &PermissionSet,
    action: &Action,
    resource: &Resource,
    now: Timestamp,
) -> (u8, Permission) {
    // The key's scope is stored as a flag beside always-present bytes (see `Present`), so both
    // are read without a branch.
    let key_account_wide = key.scope.present_bit() ^ 1;
    let key_project = id_word(key.scope.value_or_fill().as_bytes());
    // The target's kind is public request data; only its ids are compared in constant time.
    let target = resource.target();
    let not_at_account = u8::from(target != Target::Account);
    let at_listing = u8::from(target == Target::Listing);
    let resource_project = match target {
        Target::Project(p) => id_word(p.as_bytes()),
        Target::Account | Target::Listing => 0,
    };

    let revoked = u8::from(key.revoked_at.is_some());
    // Expired when `expires_at <= now`, i.e. not `now < expires_at`.
    let expired =
        key.expires_at.present_bit() & at_or_before_bit(*key.expires_at.value_or_fill(), now);
    let (has_address, address) = resource.address_bits();
    let address_allowed = key.allowed_addresses.allows_bit(address, has_address);
    let same_account = equal_bit(
        id_word(key.account.as_bytes()),
        id_word(resource.account_id().as_bytes()),
    );
    let account_level_denied = u8::from(action.account_level) & (key_account_wide ^ 1);
    // A listing is reachable by any key of the account; a project only by account-wide keys and
    // keys of that project; the account itself only by account-wide keys.
    let in_own_project = not_at_account & equal_bit(key_project, resource_project);
    let in_scope = key_account_wide | at_listing | in_own_project;
    let (has_permission, [t0, t1, t2, t3]) = permission_rule(&key.permissions, cap, action);

    let [
        revoked,
        expired,
        address_allowed,
        same_account,
        account_level_denied,
        in_scope,
        has_permission,
        t0,
        t1,
        t2,
        t3,
    ] = core::hint::black_box([
        u32::from(revoked),
        u32::from(expired),
        u32::from(address_allowed),
        u32::from(same_account),
        u32::from(account_level_denied),
        u32::from(in_scope),
        u32::from(has_permission),
        t0,
        t1,
        t2,
        t3,
    ]);
    // All of names the lowest needed permission lacking; any of, the lowest needed (public).
    let lowest_lacking = PermissionSet::lowest_of_counts([t0, t1, t2, t3]).index() as u8;
    let named = select_code(
        lowest_lacking,
        action.first.index() as u8,
        u8::from(action.any),
    );
    let missing = Permission::from_index(named);
    // The flags are 0 or 1: truncating them is exact.
    let flag = |bit: u32| bit as u8;
    let (revoked, expired, address_allowed, same_account) = (
        flag(revoked),
        flag(expired),
        flag(address_allowed),
        flag(same_account),
    );
    let (account_level_denied, in_scope, has_permission) = (
        flag(account_level_denied),
        flag(in_scope),
        flag(has_permission),
    );
    // Assign from the last rule to the first, so the first failing rule's code is what remains.
    let mut reason = code::ALLOW;
    reason = select_code(reason, code::MISSING_PERMISSION, has_permission ^ 1);
    reason = select_code(reason, code::OUT_OF_SCOPE, in_scope ^ 1);
    reason = select_code(reason, code::ACCOUNT_LEVEL_ACTION, account_level_denied);
    reason = select_code(reason, code::OTHER_ACCOUNT, same_account ^ 1);
    reason = select_code(reason, code::ADDRESS_NOT_ALLOWED, address_allowed ^ 1);
    reason = select_code(reason, code::EXPIRED, expired);
    reason = select_code(reason, code::REVOKED, revoked);
    (reason, missing)
}

/// Rule 5: whether the key, capped, holds what the action needs (a 0/1 flag), and the trailing
/// zero counts of what it lacks, for [`reason_code`] to put through its barrier and turn into
/// the permission a refusal names. Both forms are computed over every word; the action's kind
/// (public) picks one after the barrier.
fn permission_rule(
    permissions: &PermissionSet,
    cap: &PermissionSet,
    action: &Action,
) -> (u8, [u32; 4]) {
    let mut lacking = PermissionSet::EMPTY;
    let mut lacking_any = 0u64;
    let mut held_any = 0u64;
    for (((out, p), c), n) in lacking
        .words_mut()
        .iter_mut()
        .zip(permissions.words())
        .zip(cap.words())
        .zip(action.needed.words())
    {
        let held = p & c;
        *out = n & !held;
        lacking_any |= *out;
        held_any |= n & held;
    }
    // All of: nothing needed is lacking. Any of: something needed is held.
    let all_of_holds = nonzero(lacking_any) ^ 1;
    let any_of_holds = nonzero(held_any);
    let has_permission = select_code(all_of_holds, any_of_holds, u8::from(action.any));
    (has_permission, lacking.trailing_zero_counts())
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
///
/// Never inlined: compiled on its own, the match is the one shift of a constant table above. In
/// its callers, the compiler sank the work computing the permission (rule 5's lowest lacking
/// one, read only by the `MISSING_PERMISSION` arm) into that arm, or returned the code itself
/// from the arms where it equals the enum's tag; an arm that does either cannot be a table entry,
/// and the match became a jump table indexed by the secret code, which ctgrind reported (in
/// `authorize`, then in `Keyring::authorize`). A call costs about a nanosecond.
#[inline(never)]
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
