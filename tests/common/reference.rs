//! The reference model of `authorize`: DESIGN.md's rules written for a reader, with plain `if`s
//! and early returns. It is slow on purpose and not constant time; the property tests and the
//! `differential` fuzz target hold the real, branch-free `keygate::authorize` to its answers.

use keygate::{Action, ApiKey, Decision, Deny, PermissionSet, Resource, Scope, Timestamp};

/// The rules, in order; the first that fails is the reason.
pub fn authorize(key: &ApiKey, action: Action, resource: &Resource, now: Timestamp) -> Decision {
    authorize_capped(key, &PermissionSet::ALL, action, resource, now)
}

/// The rules with the creator's current permissions as a cap on rule 5.
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
    // 5. The frozen grant, and the creator as they are now, must hold the action's permission
    //    (403): a key never does more than its creator can do now.
    let granted = key.permissions().iter().any(|p| p == action.permission());
    let creator_may = cap.iter().any(|p| p == action.permission());
    if !granted || !creator_may {
        return Decision::Deny(Deny::MissingPermission(action.permission()));
    }
    Decision::Allow
}
