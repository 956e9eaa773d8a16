//! Why a decision is what it is: every rule's outcome for one request, with the facts each rule
//! looked at, for logs and for policy tests.
//!
//! A diagnostic path beside the decision, not the decision: written plainly, with branches and
//! allocation, and not constant time. [`authorize`](crate::authorize()) is unchanged by it, and a
//! property test holds the two to the same answer. From a raw token, through the keyring and its
//! creator caps: [`Keyring::authorize_explained`](crate::Keyring::authorize_explained).
//!
//! ```
//! use keygate::explain::{explain, Rule};
//! use keygate::{AccountId, Action, ApiKey, Catalog, KeyId, ProjectId, Resource, Scope, Timestamp,
//!     TokenHash};
//! let catalog = Catalog::read_write_delete();
//! let acct = AccountId::from_u64(1);
//! let key = ApiKey::new(KeyId::from_bytes([1; 16]), "reader", acct,
//!     Scope::Project(ProjectId::from_u64(42)), catalog.expand(["read"])?, TokenHash::of("t"),
//!     Timestamp::EPOCH);
//! let write = Action::named(&catalog, "write")?;
//! let project = Resource::in_project(acct, ProjectId::from_u64(42));
//! let why = explain(&catalog, &key, write, &project, Timestamp::from_unix_seconds(10));
//! assert_eq!(why.deciding_rule().map(|r| r.rule), Some(Rule::HasPermission));
//! println!("{why}"); // one line per rule, then the decision
//! # Ok::<(), keygate::CatalogError>(())
//! ```

use core::fmt;

use serde::Serialize;

use crate::authorize::Action;
use crate::catalog::{Catalog, Permission, PermissionSet};
use crate::decision::{Decision, Deny};
use crate::key::ApiKey;
use crate::scope::{Resource, Scope};
use crate::timestamp::Timestamp;

/// Rule 5 on its own: `None` when the key (capped) may, else the refusal naming a permission.
pub(crate) fn missing_permission(
    key: &ApiKey,
    cap: &PermissionSet,
    action: Action,
) -> Option<Deny> {
    let holds =
        |p: &Permission| key.permissions().iter().any(|k| k == *p) && cap.iter().any(|c| c == *p);
    let needed: Vec<Permission> = action.permissions().iter().collect();
    if action.is_any_of() {
        // Any one will do; a refusal names the first alternative.
        if needed.iter().any(holds) {
            return None;
        }
        return needed.first().map(|p| Deny::MissingPermission(*p));
    }
    // Every one is needed; a refusal names the first one lacking.
    for p in &needed {
        if !holds(p) {
            return Some(Deny::MissingPermission(*p));
        }
    }
    None
}

/// The address rule, plainly: no ranges allows anything; otherwise the address must be known and
/// in one of them.
pub(crate) fn address_allowed(key: &ApiKey, resource: &Resource) -> bool {
    if key.allowed_addresses().is_empty() {
        return true;
    }
    match resource.address() {
        None => false,
        Some(address) => key.allowed_addresses().iter().any(|r| r.contains(address)),
    }
}

/// One of the five rules of [`authorize`](crate::authorize()), in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// 1. The key is neither revoked nor expired.
    Live,
    /// Checked after [`Rule::Live`]: a key restricted to address ranges is used from one of them.
    FromAllowedAddress,
    /// 2. The key's account owns the resource.
    SameAccount,
    /// 3. An account-level action needs an account-wide key.
    AccountLevel,
    /// 4. A project-scoped key reaches only its project and listings.
    InScope,
    /// 5. The key holds the action's permission.
    HasPermission,
}

impl Rule {
    /// All five, in order.
    pub const ALL: [Rule; 6] = [
        Rule::Live,
        Rule::FromAllowedAddress,
        Rule::SameAccount,
        Rule::AccountLevel,
        Rule::InScope,
        Rule::HasPermission,
    ];

    /// The rule as DESIGN.md states it.
    pub fn statement(self) -> &'static str {
        match self {
            Rule::Live => "not revoked, not expired (now < expires_at)",
            Rule::FromAllowedAddress => "a key with address ranges is used from one of them",
            Rule::SameAccount => "the key's account owns the resource",
            Rule::AccountLevel => "an account-level action needs an account-wide key",
            Rule::InScope => "a project-scoped key reaches only its project (and listings)",
            Rule::HasPermission => "the key holds the action's permission",
        }
    }

    /// The rule's number, 1 to 5; the address rule shares rule 1's number (it is checked right
    /// after it, and like it concerns the key's use, not the resource).
    pub fn number(self) -> usize {
        match self {
            Rule::Live | Rule::FromAllowedAddress => 1,
            Rule::SameAccount => 2,
            Rule::AccountLevel => 3,
            Rule::InScope => 4,
            Rule::HasPermission => 5,
        }
    }
}

/// How one rule came out for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleOutcome {
    /// Which rule.
    pub rule: Rule,
    /// The deny reason it gives when it fails; `None` when it passes.
    #[serde(serialize_with = "serialize_deny")]
    pub fails_with: Option<Deny>,
    /// The facts it looked at, for a person.
    pub detail: String,
}

impl RuleOutcome {
    /// Whether the rule holds.
    pub fn passed(&self) -> bool {
        self.fails_with.is_none()
    }
}

fn serialize_deny<S: serde::Serializer>(deny: &Option<Deny>, s: S) -> Result<S::Ok, S::Error> {
    match deny {
        None => s.serialize_none(),
        Some(d) => s.serialize_some(deny_name(d)),
    }
}

/// The snake_case name of a deny reason, as policy files write it (`missing_permission`).
pub fn deny_name(deny: &Deny) -> &'static str {
    match deny {
        Deny::UnknownKey => "unknown_key",
        Deny::Revoked => "revoked",
        Deny::Expired => "expired",
        Deny::AddressNotAllowed => "address_not_allowed",
        Deny::OtherAccount => "other_account",
        Deny::AccountLevelAction => "account_level_action",
        Deny::OutOfScope => "out_of_scope",
        Deny::MissingPermission(_) => "missing_permission",
    }
}

/// Every rule's outcome for one request, in order, and the decision they make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The five rules, in order. Every rule is evaluated, as the constant-time code does.
    pub rules: Vec<RuleOutcome>,
    /// The decision: the first failing rule's reason, or allow.
    #[serde(skip)]
    pub decision: Decision,
}

impl Explanation {
    /// The first rule that fails: the one that decides a denial.
    pub fn deciding_rule(&self) -> Option<&RuleOutcome> {
        self.rules.iter().find(|r| !r.passed())
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let deciding = self.deciding_rule().map(|r| r.rule);
        for outcome in &self.rules {
            let mark = match (&outcome.fails_with, Some(outcome.rule) == deciding) {
                (None, _) => "pass".to_owned(),
                (Some(deny), true) => format!("FAIL {} (decides)", deny_name(deny)),
                (Some(deny), false) => {
                    format!("fail {} (after the deciding rule)", deny_name(deny))
                }
            };
            writeln!(
                f,
                "{}. {:<52} {mark}\n   {}",
                outcome.rule.number(),
                outcome.rule.statement(),
                outcome.detail
            )?;
        }
        match self.decision {
            Decision::Allow => write!(f, "decision: allow"),
            Decision::Deny(deny) => write!(f, "decision: deny {}", deny_name(&deny)),
        }
    }
}

/// Every rule's outcome for this request, in order, with the facts each looked at.
///
/// The decision is the same as [`authorize`](crate::authorize())'s (a property test holds them
/// together).
pub fn explain(
    catalog: &Catalog,
    key: &ApiKey,
    action: Action,
    resource: &Resource,
    now: Timestamp,
) -> Explanation {
    explain_capped(catalog, key, &PermissionSet::ALL, action, resource, now)
}

/// [`explain`] with the key's creator's current permissions as a cap on rule 5, as
/// [`authorize_capped`](crate::authorize_capped()) applies them: the decision is the same as its
/// (a property test holds them together), and rule 5's detail names what the cap takes away.
pub fn explain_capped(
    catalog: &Catalog,
    key: &ApiKey,
    cap: &PermissionSet,
    action: Action,
    resource: &Resource,
    now: Timestamp,
) -> Explanation {
    let scope_text = |scope: Scope| match scope {
        Scope::Account => "account-wide".to_owned(),
        Scope::Project(p) => format!("project {p}"),
    };
    let resource_text = match (resource.is_listing(), resource.project()) {
        (true, _) => format!("a listing of account {}", resource.account_id()),
        (false, Some(p)) => format!("project {p} of account {}", resource.account_id()),
        (false, None) => format!("account {} itself", resource.account_id()),
    };
    let needed: Vec<&str> = action
        .permissions()
        .iter()
        .map(|p| catalog.name(p).unwrap_or("(not in the catalog)"))
        .collect();
    let needs = match (needed.as_slice(), action.is_any_of()) {
        ([one], _) => (*one).to_owned(),
        (many, false) => format!("all of {}", many.join(", ")),
        (many, true) => format!("any of {}", many.join(", ")),
    };

    let live = match (key.revoked_at(), key.expires_at()) {
        (Some(at), _) => RuleOutcome {
            rule: Rule::Live,
            fails_with: Some(Deny::Revoked),
            detail: format!("revoked at {at}"),
        },
        (None, Some(expires_at)) if now >= expires_at => RuleOutcome {
            rule: Rule::Live,
            fails_with: Some(Deny::Expired),
            detail: format!("expired at {expires_at}; now is {now}"),
        },
        (None, expires_at) => RuleOutcome {
            rule: Rule::Live,
            fails_with: None,
            detail: match expires_at {
                Some(e) => format!("not revoked; expires at {e}, after now ({now})"),
                None => "not revoked; never expires".to_owned(),
            },
        },
    };
    let ranges: Vec<String> = key
        .allowed_addresses()
        .iter()
        .map(ToString::to_string)
        .collect();
    let from_address = RuleOutcome {
        rule: Rule::FromAllowedAddress,
        fails_with: (!address_allowed(key, resource)).then_some(Deny::AddressNotAllowed),
        detail: format!(
            "key allows {}; request from {}",
            listed(&ranges, "any address"),
            resource
                .address()
                .map_or_else(|| "an unknown address".to_owned(), |a| a.to_string())
        ),
    };
    let same_account = RuleOutcome {
        rule: Rule::SameAccount,
        fails_with: (key.account() != resource.account_id()).then_some(Deny::OtherAccount),
        detail: format!(
            "key of account {}, resource: {resource_text}",
            key.account()
        ),
    };
    let account_level = RuleOutcome {
        rule: Rule::AccountLevel,
        fails_with: (action.is_account_level() && key.scope() != Scope::Account)
            .then_some(Deny::AccountLevelAction),
        detail: format!(
            "action is {}account-level; key is {}",
            if action.is_account_level() {
                ""
            } else {
                "not "
            },
            scope_text(key.scope())
        ),
    };
    let in_scope = RuleOutcome {
        rule: Rule::InScope,
        fails_with: match key.scope() {
            Scope::Project(own) if !resource.is_listing() && resource.project() != Some(own) => {
                Some(Deny::OutOfScope)
            }
            Scope::Account | Scope::Project(_) => None,
        },
        detail: format!(
            "key is {}, resource: {resource_text}",
            scope_text(key.scope())
        ),
    };
    let held: Vec<&str> = catalog.names(key.permissions()).collect();
    let taken: PermissionSet = key
        .permissions()
        .iter()
        .filter(|p| !bool::from(cap.contains(*p)))
        .collect();
    let capped: Vec<&str> = catalog.names(&taken).collect();
    let has_permission = RuleOutcome {
        rule: Rule::HasPermission,
        fails_with: missing_permission(key, cap, action),
        detail: format!(
            "action needs {needs}; key holds {}{}",
            listed(&held, "nothing"),
            if capped.is_empty() {
                String::new()
            } else {
                format!(" (its creator no longer holds {})", capped.join(", "))
            }
        ),
    };
    let rules = vec![
        live,
        from_address,
        same_account,
        account_level,
        in_scope,
        has_permission,
    ];
    let decision = rules
        .iter()
        .find_map(|r| r.fails_with)
        .map_or(Decision::Allow, Decision::Deny);
    Explanation { rules, decision }
}

/// `items` joined with commas, or `none` when there are none: how a detail names a list.
fn listed<S: AsRef<str>>(items: &[S], none: &str) -> String {
    if items.is_empty() {
        none.to_owned()
    } else {
        items
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(", ")
    }
}
