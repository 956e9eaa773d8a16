//! The plain model of `authorize`: the design's five rules as `if`s with early returns, written
//! from the rule text and nothing else, over the public API only.

use keygate::{Action, ApiKey, Decision, Deny, Resource, Scope, Timestamp};

/// What `keygate::authorize` must answer.
pub fn authorize(key: &ApiKey, action: Action, resource: &Resource, now: Timestamp) -> Decision {
    if key.revoked_at().is_some() {
        return Decision::Deny(Deny::Revoked);
    }
    if let Some(expires_at) = key.expires_at()
        && now >= expires_at
    {
        return Decision::Deny(Deny::Expired);
    }
    if key.account() != resource.account_id() {
        return Decision::Deny(Deny::OtherAccount);
    }
    if action.is_account_level() && key.scope() != Scope::Account {
        return Decision::Deny(Deny::AccountLevelAction);
    }
    if let Scope::Project(own) = key.scope()
        && !resource.is_listing()
        && resource.project() != Some(own)
    {
        return Decision::Deny(Deny::OutOfScope);
    }
    if !key.permissions().iter().any(|p| p == action.permission()) {
        return Decision::Deny(Deny::MissingPermission(action.permission()));
    }
    Decision::Allow
}
