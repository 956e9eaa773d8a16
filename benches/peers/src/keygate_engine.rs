//! keygate's side: keys in an embedded store keyed by token hash; a decision starts from the raw
//! token the client presented.

use std::collections::HashMap;

use keygate::{
    AccountId, Action, ApiKey, Catalog, Decision, KeyId, Permission, ProjectId, Resource, Scope,
    Timestamp, TokenHash, authorize,
};

use crate::scenario::{Request, Scenario, Target};

pub struct Engine {
    catalog: Catalog,
    by_hash: HashMap<TokenHash, usize>,
    keys: Vec<ApiKey>,
}

/// One request in the form a server hands keygate: the presented token and typed values.
pub struct Input {
    token: String,
    /// The key the token belongs to, resolved ahead: only the "key in hand" variant uses it.
    key: Option<usize>,
    action: Action,
    resource: Resource,
    now: Timestamp,
}

fn account(i: usize) -> AccountId {
    AccountId::from_u64(i as u64 + 1)
}

fn project(i: usize) -> ProjectId {
    ProjectId::from_u64(i as u64 + 100)
}

impl Engine {
    pub fn new(scenario: &Scenario) -> Result<Self, keygate::CatalogError> {
        let catalog = Catalog::new(scenario.permissions.iter().map(String::as_str))?;
        let mut by_hash = HashMap::new();
        let mut keys = Vec::new();
        for (n, spec) in scenario.keys.iter().enumerate() {
            let names = spec
                .permissions
                .iter()
                .map(|&p| scenario.permissions[p].as_str());
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(n as u64).to_be_bytes());
            let mut key = ApiKey::new(
                KeyId::from_bytes(id),
                spec.id.clone(),
                account(spec.account),
                spec.project
                    .map_or(Scope::Account, |p| Scope::Project(project(p))),
                catalog.resolve(names)?,
                TokenHash::of(&spec.token),
                Timestamp::from_unix_micros(crate::scenario::NOW - 30 * 86_400_000_000),
            );
            if let Some(at) = spec.expires_at {
                key = key.with_expiry(Timestamp::from_unix_micros(at));
            }
            if spec.revoked {
                key.revoke(Timestamp::from_unix_micros(
                    crate::scenario::NOW - 86_400_000_000,
                ));
            }
            by_hash.insert(key.token_hash(), keys.len());
            keys.push(key);
        }
        Ok(Self {
            catalog,
            by_hash,
            keys,
        })
    }

    pub fn prepare(&self, scenario: &Scenario, mix: &[Request]) -> Vec<Input> {
        mix.iter()
            .map(|r| {
                let permission: Permission = self
                    .catalog
                    .permission(&scenario.permissions[r.permission])
                    .expect("the catalog holds every scenario permission");
                let mut action = Action::new(permission);
                if r.account_level {
                    action = action.at_account_level();
                }
                let resource = match r.target {
                    Target::Account => Resource::account(account(r.account)),
                    Target::Listing => Resource::listing(account(r.account)),
                    Target::Project(p) => Resource::in_project(account(r.account), project(p)),
                };
                Input {
                    token: scenario.token(r.key).to_owned(),
                    key: self
                        .by_hash
                        .get(&TokenHash::of(scenario.token(r.key)))
                        .copied(),
                    action,
                    resource,
                    now: Timestamp::from_unix_micros(r.now),
                }
            })
            .collect()
    }

    fn decision(&self, input: &Input) -> Decision {
        match self.by_hash.get(&TokenHash::of(&input.token)) {
            Some(&i) => authorize(&self.keys[i], input.action, &input.resource, input.now),
            None => Decision::Deny(keygate::Deny::UnknownKey),
        }
    }

    /// Raw token to decision.
    pub fn decide(&self, input: &Input) -> bool {
        self.decision(input) == Decision::Allow
    }

    /// The decision and keygate's reason, for the differential check's summary.
    pub fn decide_explained(&self, input: &Input) -> (bool, String) {
        let decision = self.decision(input);
        let reason = match decision {
            Decision::Allow => "Allow".to_owned(),
            Decision::Deny(keygate::Deny::MissingPermission(_)) => "MissingPermission".to_owned(),
            Decision::Deny(d) => format!("{d:?}"),
        };
        (decision == Decision::Allow, reason)
    }

    /// `authorize` alone, on a key already looked up: what the peers are handed.
    pub fn decide_with_key_in_hand(&self, input: &Input) -> bool {
        match input.key {
            Some(i) => {
                authorize(&self.keys[i], input.action, &input.resource, input.now)
                    == Decision::Allow
            }
            None => false,
        }
    }
}
