//! cedar-policy's side: a schema, four policies and an entity store.
//!
//! Keys are `Key` entities carrying their account, scope, permission names, revocation and
//! expiry; every resource a request can name is a `Target` entity. One `permit` grants what a
//! key's account, scope and permissions reach; three `forbid`s carry revocation, expiry and the
//! account-level rule, as a Cedar author would write them. A key id that the store does not hold
//! makes every policy error on its attributes, and Cedar denies.

use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request, RestrictedExpression,
    Schema, ValidationMode, Validator,
};
use serde_json::json;

use crate::scenario::{Request as Req, Scenario, Target};

pub const VERSION: &str = "4.14";

const SCHEMA: &str = r#"
entity Account;
entity Project;
entity Target = {
  account: Account,
  is_listing: Bool,
  project?: Project,
};
entity Key = {
  account: Account,
  account_wide: Bool,
  project?: Project,
  permissions: Set<String>,
  revoked: Bool,
  expires_at?: Long,
};
action call appliesTo {
  principal: Key,
  resource: Target,
  context: { now: Long, permission: String, account_level: Bool },
};
"#;

const POLICIES: &str = r#"
// Rules 2, 4 and 5: the key's own account, within its scope, with the permission.
permit (principal is Key, action == Action::"call", resource is Target)
when {
  principal.account == resource.account &&
  principal.permissions.contains(context.permission) &&
  (principal.account_wide ||
   resource.is_listing ||
   (resource has project && principal has project && principal.project == resource.project))
};

// Rule 1: revoked keys do nothing.
forbid (principal is Key, action, resource) when { principal.revoked };

// Rule 1: expired keys do nothing (the expiry instant itself is already expired).
forbid (principal is Key, action, resource)
when { principal has expires_at && context.now >= principal.expires_at };

// Rule 3: only account-wide keys create or destroy projects.
forbid (principal is Key, action, resource)
when { context.account_level && !principal.account_wide };
"#;

pub struct Engine {
    authorizer: Authorizer,
    policies: PolicySet,
    entities: Entities,
    action: EntityUid,
}

/// One request as a Cedar server would hold it: parsed uids (cloned per decision) and the
/// values that go into the context.
pub struct Input {
    principal: EntityUid,
    resource: EntityUid,
    permission: String,
    account_level: bool,
    now: i64,
    /// The same request built ahead, for timing `is_authorized` alone.
    prebuilt: Request,
}

fn target_id(account: usize, target: Target) -> String {
    match target {
        Target::Account => format!("a{account}"),
        Target::Listing => format!("a{account}/projects"),
        Target::Project(p) => format!("a{account}/p{p}"),
    }
}

fn uid(ty: &str, id: &str) -> Result<EntityUid, String> {
    EntityUid::from_str(&format!("{ty}::{}", json!(id))).map_err(|e| e.to_string())
}

impl Engine {
    pub fn new(scenario: &Scenario) -> Result<Self, String> {
        let (schema, warnings) = Schema::from_cedarschema_str(SCHEMA).map_err(|e| e.to_string())?;
        if let Some(w) = warnings.into_iter().next() {
            return Err(format!("schema warning: {w}"));
        }
        let policies = PolicySet::from_str(POLICIES).map_err(|e| e.to_string())?;
        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if !validation.validation_passed() {
            return Err(format!("policies do not validate: {validation}"));
        }

        let mut entities = Vec::new();
        for a in 0..scenario.accounts {
            entities.push(json!({"uid": {"type": "Account", "id": format!("a{a}")}, "attrs": {}, "parents": []}));
        }
        for p in 0..scenario.projects.len() {
            entities.push(json!({"uid": {"type": "Project", "id": format!("p{p}")}, "attrs": {}, "parents": []}));
        }
        // Every (account, target) pair a request can name, including another account's project.
        for a in 0..scenario.accounts {
            let account = json!({"type": "Account", "id": format!("a{a}")});
            entities.push(
                json!({"uid": {"type": "Target", "id": target_id(a, Target::Account)},
                "attrs": {"account": account, "is_listing": false}, "parents": []}),
            );
            entities.push(
                json!({"uid": {"type": "Target", "id": target_id(a, Target::Listing)},
                "attrs": {"account": account, "is_listing": true}, "parents": []}),
            );
            for p in 0..scenario.projects.len() {
                entities.push(
                    json!({"uid": {"type": "Target", "id": target_id(a, Target::Project(p))},
                    "attrs": {"account": account, "is_listing": false,
                              "project": {"type": "Project", "id": format!("p{p}")}},
                    "parents": []}),
                );
            }
        }
        for key in &scenario.keys {
            let mut attrs = json!({
                "account": {"type": "Account", "id": format!("a{}", key.account)},
                "account_wide": key.project.is_none(),
                "permissions": key.permissions.iter().map(|&p| &scenario.permissions[p]).collect::<Vec<_>>(),
                "revoked": key.revoked,
            });
            if let Some(p) = key.project {
                attrs["project"] = json!({"type": "Project", "id": format!("p{p}")});
            }
            if let Some(at) = key.expires_at {
                attrs["expires_at"] = json!(at);
            }
            entities
                .push(json!({"uid": {"type": "Key", "id": key.id}, "attrs": attrs, "parents": []}));
        }
        let entities = Entities::from_json_value(serde_json::Value::Array(entities), Some(&schema))
            .map_err(|e| e.to_string())?;

        Ok(Self {
            authorizer: Authorizer::new(),
            policies,
            entities,
            action: uid("Action", "call")?,
        })
    }

    pub fn prepare(&self, scenario: &Scenario, mix: &[Req]) -> Vec<Input> {
        mix.iter()
            .map(|r| {
                let principal = uid("Key", &scenario.principal_id(r.key)).expect("valid uid");
                let resource = uid("Target", &target_id(r.account, r.target)).expect("valid uid");
                let permission = scenario.permissions[r.permission].clone();
                let prebuilt = self
                    .request(&principal, &resource, &permission, r.account_level, r.now)
                    .expect("a valid request");
                Input {
                    principal,
                    resource,
                    permission,
                    account_level: r.account_level,
                    now: r.now,
                    prebuilt,
                }
            })
            .collect()
    }

    /// `is_authorized` alone on a request built ahead: Cedar's evaluation without the per-request
    /// construction a server cannot skip. A lower bound on Cedar's cost, for reference.
    pub fn decide_prebuilt(&self, input: &Input) -> bool {
        self.authorizer
            .is_authorized(&input.prebuilt, &self.policies, &self.entities)
            .decision()
            == Decision::Allow
    }

    /// Builds the request's context and `Request` (as a server must, per request), then decides.
    pub fn decide(&self, input: &Input) -> Result<bool, String> {
        let request = self.request(
            &input.principal,
            &input.resource,
            &input.permission,
            input.account_level,
            input.now,
        )?;
        let response = self
            .authorizer
            .is_authorized(&request, &self.policies, &self.entities);
        Ok(response.decision() == Decision::Allow)
    }

    fn request(
        &self,
        principal: &EntityUid,
        resource: &EntityUid,
        permission: &str,
        account_level: bool,
        now: i64,
    ) -> Result<Request, String> {
        let context = Context::from_pairs([
            ("now".to_owned(), RestrictedExpression::new_long(now)),
            (
                "permission".to_owned(),
                RestrictedExpression::new_string(permission.to_owned()),
            ),
            (
                "account_level".to_owned(),
                RestrictedExpression::new_bool(account_level),
            ),
        ])
        .map_err(|e| e.to_string())?;
        Request::new(
            principal.clone(),
            self.action.clone(),
            resource.clone(),
            context,
            None,
        )
        .map_err(|e| e.to_string())
    }
}
