//! The plain reference model of [`authorize`](crate::authorize()): DESIGN.md's rules written for a
//! reader, with `if`s and early returns.
//!
//! It is slow on purpose and not constant time. keygate's property tests and its `differential`
//! fuzz target hold the real, branch-free `keygate::authorize` to its answers; use it the same way
//! for your own decision code, or to say *why* a request is refused ([`explain`], re-exported
//! from [`keygate::explain`](crate::explain), which needs no feature).
//!
//! ```
//! use keygate::testing::reference;
//! use keygate::{authorize, AccountId, Action, ApiKey, Catalog, KeyId, ProjectId, Resource, Scope,
//!     Timestamp, TokenHash};
//! let catalog = Catalog::read_write_delete();
//! let acct = AccountId::from_u64(1);
//! let key = ApiKey::new(KeyId::from_bytes([1; 16]), "reader", acct,
//!     Scope::Project(ProjectId::from_u64(42)), catalog.expand(["read"])?, TokenHash::of("t"),
//!     Timestamp::EPOCH);
//! let write = Action::named(&catalog, "write")?;
//! let project = Resource::in_project(acct, ProjectId::from_u64(42));
//! let now = Timestamp::from_unix_seconds(10);
//! assert_eq!(reference::authorize(&key, write, &project, now), authorize(&key, write, &project, now));
//!
//! let why = reference::explain(&catalog, &key, write, &project, now);
//! assert_eq!(why.deciding_rule().map(|r| r.rule), Some(reference::Rule::HasPermission));
//! # Ok::<(), keygate::CatalogError>(())
//! ```

use crate::authorize::Action;
use crate::catalog::PermissionSet;
use crate::decision::{Decision, Deny};
pub use crate::explain::{Explanation, Rule, RuleOutcome, deny_name, explain, explain_capped};
use crate::explain::{address_allowed, missing_permission};
use crate::key::ApiKey;
use crate::scope::{Resource, Scope};
use crate::timestamp::Timestamp;

/// The rules, in order; the first that fails is the reason.
pub fn authorize(key: &ApiKey, action: Action, resource: &Resource, now: Timestamp) -> Decision {
    authorize_capped(key, &PermissionSet::ALL, action, resource, now)
}

/// The rules with the creator's current permissions as a cap on rule 5 (as
/// [`authorize_capped`](crate::authorize_capped()) applies them).
pub fn authorize_capped(
    key: &ApiKey,
    cap: &PermissionSet,
    action: Action,
    resource: &Resource,
    now: Timestamp,
) -> Decision {
    // 1. A revoked or expired key is no key at all (401).
    if key.revoked_at().is_some() {
        return Decision::Deny(Deny::Revoked);
    }
    if let Some(expires_at) = key.expires_at()
        && now >= expires_at
    {
        return Decision::Deny(Deny::Expired);
    }
    // Then a key restricted to address ranges is used from one of them (403); an unknown
    // address is refused by such a key.
    if !address_allowed(key, resource) {
        return Decision::Deny(Deny::AddressNotAllowed);
    }
    // 2. Another tenant's resource does not exist, as far as this key can tell (404).
    if key.account() != resource.account_id() {
        return Decision::Deny(Deny::OtherAccount);
    }
    // 3. Creating or destroying projects needs an account-wide key (403, seed 000).
    if action.is_account_level() && key.scope() != Scope::Account {
        return Decision::Deny(Deny::AccountLevelAction);
    }
    // 4. A project-scoped key sees its own project and cross-project listings, nothing else (404).
    if let Scope::Project(own) = key.scope() {
        let reachable = resource.is_listing() || resource.project() == Some(own);
        if !reachable {
            return Decision::Deny(Deny::OutOfScope);
        }
    }
    // 5. The frozen grant, and the creator as they are now, must hold the action's permissions
    //    (403): a key never does more than its creator can do now.
    if let Some(deny) = missing_permission(key, cap, action) {
        return Decision::Deny(deny);
    }
    Decision::Allow
}
