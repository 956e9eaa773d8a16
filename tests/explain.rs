//! `Keyring::authorize_explained` (and `SharedKeyring`'s) decides as `Keyring::authorize` for any
//! keyring, creator caps and request: a stored token's explanation carries the decision, its
//! deciding rule gives that decision's reason, and a token naming no key is `UnknownKey`.

#![expect(
    clippy::unwrap_used,
    reason = "a broken test fixture should stop the test loudly"
)]

use keygate::explain::Rule;
use keygate::{
    AccountId, Action, ApiKey, Catalog, Decision, Deny, KeyId, Keyring, PermissionSet, ProjectId,
    Resource, Scope, SharedKeyring, Timestamp, TokenFormat,
};
use proptest::prelude::*;
use rand::SeedableRng;

const CREATORS: [&str; 2] = ["alice", "bob"];

fn subset(catalog: &Catalog, bits: u8) -> PermissionSet {
    let names = ["read", "write", "delete"];
    catalog
        .expand(
            names
                .iter()
                .zip(0..)
                .filter(|(_, i)| bits & (1 << i) != 0)
                .map(|(n, _)| *n),
        )
        .unwrap()
}

#[derive(Debug, Clone)]
struct KeyPlan {
    account: u64,
    project: Option<u64>,
    permissions: u8,
    revoked: bool,
    expires_in: Option<i64>,
    creator: Option<usize>,
}

fn key_plan() -> impl Strategy<Value = KeyPlan> {
    (
        0u64..2,
        prop::option::of(0u64..2),
        0u8..8,
        any::<bool>(),
        prop::option::of(-2i64..3),
        prop::option::of(0usize..CREATORS.len()),
    )
        .prop_map(
            |(account, project, permissions, revoked, expires_in, creator)| KeyPlan {
                account,
                project,
                permissions,
                revoked,
                expires_in,
                creator,
            },
        )
}

proptest! {
    #[test]
    fn explained_decisions_are_the_keyrings(
        plans in prop::collection::vec(key_plan(), 1..6),
        caps in prop::collection::vec(prop::option::of(0u8..8), CREATORS.len()),
        seed in any::<u64>(),
    ) {
        let catalog = Catalog::read_write_delete();
        let format = TokenFormat::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let now = Timestamp::from_unix_seconds(100);
        let mut tokens = Vec::new();
        let mut keys = Vec::new();
        for (n, plan) in plans.iter().enumerate() {
            let token = format.mint(&mut rng);
            let scope = plan.project.map_or(Scope::Account, |p| Scope::Project(ProjectId::from_u64(p)));
            let mut key = ApiKey::new(
                KeyId::from_bytes([u8::try_from(n).unwrap() + 1; 16]),
                "k",
                AccountId::from_u64(plan.account),
                scope,
                subset(&catalog, plan.permissions),
                token.hash(),
                Timestamp::EPOCH,
            );
            if let Some(seconds) = plan.expires_in {
                key = key.with_expiry(Timestamp::from_unix_seconds(100 + seconds));
            }
            if plan.revoked {
                key.revoke(Timestamp::from_unix_seconds(50));
            }
            if let Some(creator) = plan.creator {
                let mut record = key.to_record(&catalog);
                record.created_by = Some(CREATORS[creator].to_owned());
                key = ApiKey::from_record(record, &catalog).unwrap();
            }
            tokens.push(token.expose_secret().to_owned());
            keys.push(key);
        }
        let mut ring = Keyring::from_keys(format.clone(), keys).unwrap();
        for (creator, cap) in CREATORS.iter().zip(&caps) {
            if let Some(bits) = cap {
                ring.set_creator_cap(creator, subset(&catalog, *bits));
            }
        }
        let shared = SharedKeyring::new(ring.clone());
        tokens.push(format.mint(&mut rng).expose_secret().to_owned()); // stored nowhere
        tokens.push("idc_short".to_owned()); // malformed
        let mut actions = Vec::new();
        for name in ["read", "write", "delete"] {
            let action = Action::named(&catalog, name).unwrap();
            actions.push(action);
            actions.push(action.at_account_level());
        }
        let resources = [
            Resource::listing(AccountId::from_u64(0)),
            Resource::in_project(AccountId::from_u64(0), ProjectId::from_u64(0)),
            Resource::in_project(AccountId::from_u64(0), ProjectId::from_u64(1)),
            Resource::account(AccountId::from_u64(1)),
        ];
        for token in &tokens {
            for &action in &actions {
                for resource in &resources {
                    let decision = ring.authorize(token, action, resource, now);
                    let explained = ring.authorize_explained(&catalog, token, action, resource, now);
                    prop_assert_eq!(
                        &explained,
                        &shared.authorize_explained(&catalog, token, action, resource, now)
                    );
                    match explained {
                        Ok(why) => {
                            prop_assert_eq!(why.decision, decision);
                            prop_assert_eq!(why.rules.len(), Rule::ALL.len());
                            let deciding = why.deciding_rule().and_then(|r| r.fails_with);
                            prop_assert_eq!(deciding.map_or(Decision::Allow, Decision::Deny), decision);
                        }
                        Err(deny) => {
                            prop_assert_eq!(deny, Deny::UnknownKey);
                            prop_assert_eq!(decision, Decision::Deny(Deny::UnknownKey));
                        }
                    }
                }
            }
        }
    }
}
