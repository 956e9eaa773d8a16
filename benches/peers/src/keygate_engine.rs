//! keygate's side: the keys in an embedded [`Keyring`]; a decision starts from the raw token the
//! client presented (SHA-256, constant-time search, `authorize`).

use keygate::{
    AccountId, Action, ApiKey, Catalog, Decision, KeyId, Keyring, Permission, ProjectId, Resource,
    Scope, Timestamp, TokenFormat, authorize,
};

use crate::scenario::{KeyRef, Request, Scenario, Target};

/// The scenario's `n`th key's id.
fn key_id(n: usize) -> KeyId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(n as u64).to_be_bytes());
    KeyId::from_bytes(id)
}

pub struct Engine {
    catalog: Catalog,
    ring: Keyring,
    /// Copies of the scenario's keys, for timing `authorize` alone on a key in hand.
    in_hand: Vec<ApiKey>,
}

/// One request in the form a server hands keygate: the presented token and typed values.
pub struct Input {
    token: String,
    /// The key's id, as the peers are handed it (a ghost gets an id no key has).
    id: KeyId,
    /// The key itself (an index into `in_hand`), for `authorize` alone (`None` for a ghost).
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
    pub fn new(scenario: &Scenario) -> Result<Self, String> {
        let catalog = Catalog::new(scenario.permissions.iter().map(String::as_str))
            .map_err(|e| e.to_string())?;
        let mut keys = Vec::new();
        for (n, spec) in scenario.keys.iter().enumerate() {
            let names = spec
                .permissions
                .iter()
                .map(|&p| scenario.permissions[p].as_str());
            let mut key = ApiKey::new(
                key_id(n),
                spec.id.clone(),
                account(spec.account),
                spec.project
                    .map_or(Scope::Account, |p| Scope::Project(project(p))),
                catalog.resolve(names).map_err(|e| e.to_string())?,
                keygate::TokenHash::of(&spec.token),
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
            keys.push(key);
        }
        let in_hand = keys.clone();
        let ring = Keyring::from_keys(TokenFormat::default(), keys)
            .map_err(|e| format!("keyring: {e}"))?;
        Ok(Self {
            catalog,
            ring,
            in_hand,
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
                    id: match r.key {
                        KeyRef::Known(n) => key_id(n),
                        KeyRef::Ghost(n) => key_id(usize::MAX - n),
                    },
                    key: match r.key {
                        KeyRef::Known(n) => Some(n),
                        KeyRef::Ghost(_) => None,
                    },
                    action,
                    resource,
                    now: Timestamp::from_unix_micros(r.now),
                }
            })
            .collect()
    }

    fn decision(&self, input: &Input) -> Decision {
        self.ring
            .authorize(&input.token, input.action, &input.resource, input.now)
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

    /// From the key's id, as the peers start: the keyring's id map, then `authorize`.
    pub fn decide_by_id(&self, input: &Input) -> bool {
        match self.ring.get(input.id) {
            Some(key) => {
                authorize(key, input.action, &input.resource, input.now) == Decision::Allow
            }
            None => false,
        }
    }

    /// `authorize` alone, on a key already in hand.
    pub fn decide_with_key_in_hand(&self, input: &Input) -> bool {
        match input.key.and_then(|n| self.in_hand.get(n)) {
            Some(key) => {
                authorize(key, input.action, &input.resource, input.now) == Decision::Allow
            }
            None => false,
        }
    }
}
