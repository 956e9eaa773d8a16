//! casbin's side: a model with a custom matcher over one policy row per key, and a grouping
//! (`g`) row per granted permission, loaded through casbin's in-memory adapter.
//!
//! Policy rows carry what a key is: `p, key, account, project-or-*, expires_at, revoked`. Expiry
//! is compared as a zero-padded 20-digit decimal string (casbin's policy values are strings, and
//! equal-width digit strings order like the numbers); a key without expiry gets the largest
//! value. The request names the key, the resource (account, kind, project), the permission,
//! whether the action is account-level, and `now`. A key id with no row matches nothing: deny.

use casbin::prelude::*;

use crate::scenario::{Request as Req, Scenario, Target};

pub const VERSION: &str = "2.20";

const MODEL: &str = r#"
[request_definition]
r = key, acct, kind, proj, perm, level, now

[policy_definition]
p = key, acct, proj, exp, revoked

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = r.key == p.key && p.revoked == "no" && r.now < p.exp && r.acct == p.acct && (p.proj == "*" || r.level == "no") && (p.proj == "*" || r.kind == "listing" || (r.kind == "project" && r.proj == p.proj)) && g(r.key, r.perm)
"#;

pub struct Engine {
    enforcer: Enforcer,
}

/// One request as casbin is handed it: seven strings.
pub struct Input {
    key: String,
    acct: String,
    kind: &'static str,
    proj: String,
    perm: String,
    level: &'static str,
    now: String,
}

fn time(micros: i64) -> String {
    // Every instant of the scenario is positive; 20 digits hold any positive i64.
    format!("{micros:020}")
}

impl Engine {
    pub fn new(scenario: &Scenario) -> std::result::Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let model = DefaultModel::from_str(MODEL)
                .await
                .map_err(|e| e.to_string())?;
            let mut enforcer = Enforcer::new(model, MemoryAdapter::default())
                .await
                .map_err(|e| e.to_string())?;
            let rows: Vec<Vec<String>> = scenario
                .keys
                .iter()
                .map(|k| {
                    vec![
                        k.id.clone(),
                        format!("a{}", k.account),
                        k.project
                            .map_or_else(|| "*".to_owned(), |p| format!("p{p}")),
                        time(k.expires_at.unwrap_or(i64::MAX)),
                        if k.revoked { "yes" } else { "no" }.to_owned(),
                    ]
                })
                .collect();
            enforcer
                .add_policies(rows)
                .await
                .map_err(|e| e.to_string())?;
            let grants: Vec<Vec<String>> = scenario
                .keys
                .iter()
                .flat_map(|k| {
                    k.permissions
                        .iter()
                        .map(|&p| vec![k.id.clone(), scenario.permissions[p].clone()])
                })
                .collect();
            enforcer
                .add_grouping_policies(grants)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Self { enforcer })
        })
    }

    pub fn prepare(&self, scenario: &Scenario, mix: &[Req]) -> Vec<Input> {
        mix.iter()
            .map(|r| {
                let (kind, proj) = match r.target {
                    Target::Account => ("account", String::new()),
                    Target::Listing => ("listing", String::new()),
                    Target::Project(p) => ("project", format!("p{p}")),
                };
                Input {
                    key: scenario.principal_id(r.key),
                    acct: format!("a{}", r.account),
                    kind,
                    proj,
                    perm: scenario.permissions[r.permission].clone(),
                    level: if r.account_level { "yes" } else { "no" },
                    now: time(r.now),
                }
            })
            .collect()
    }

    pub fn decide(&self, input: &Input) -> std::result::Result<bool, String> {
        self.enforcer
            .enforce((
                input.key.as_str(),
                input.acct.as_str(),
                input.kind,
                input.proj.as_str(),
                input.perm.as_str(),
                input.level,
                input.now.as_str(),
            ))
            .map_err(|e| e.to_string())
    }
}
