//! Properties of `authorize` over random keys, actions, resources and times:
//! - it agrees with the plain reference model on every input, with and without a creator cap,
//!   and so does the model's rule-by-rule explanation;
//! - no key ever reaches another account;
//! - a project-scoped key never reaches another project, nor an account-level action.
//!
//! Small id spaces make equal ids (the interesting case) common. Raise the case count with
//! `PROPTEST_CASES=100000 cargo test --test authorize_properties`.

#![expect(
    clippy::unwrap_used,
    reason = "a broken test fixture should stop the test loudly"
)]

mod common;

use std::sync::LazyLock;

use keygate::Refusal;
use keygate::testing::{reference, strategy};
use keygate::{
    AccountId, Action, ApiKey, Catalog, Decision, Deny, KeyId, PermissionSet, ProjectId, Resource,
    Scope, Timestamp, TokenHash, authorize, authorize_capped,
};
use proptest::prelude::*;

/// A catalog with all 256 permission slots, so every word of the bitset is exercised.
static CATALOG: LazyLock<Catalog> =
    LazyLock::new(|| Catalog::new((0..256).map(|i| format!("p{i}"))).unwrap());

fn permission_index() -> impl Strategy<Value = usize> {
    // Half the time from a small range, so granted and asked-for permissions often coincide.
    prop_oneof![0usize..4, 0usize..256]
}

fn permission_set() -> impl Strategy<Value = PermissionSet> {
    prop::collection::vec(permission_index(), 0..12).prop_map(|indices| {
        indices
            .into_iter()
            .filter_map(|i| CATALOG.permission(&format!("p{i}")))
            .collect()
    })
}

fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![
        Just(Scope::Account),
        (0u64..3).prop_map(|p| Scope::Project(ProjectId::from_u64(p)))
    ]
}

fn time() -> impl Strategy<Value = Timestamp> {
    // Within a few microseconds of each other, so `now == expires_at` is common.
    prop_oneof![(-3i64..3), any::<i64>()].prop_map(Timestamp::from_unix_micros)
}

prop_compose! {
    fn key()(
        account in 0u64..3,
        scope in scope(),
        permissions in permission_set(),
        expires_at in proptest::option::of(time()),
        revoked in any::<bool>(),
        ranges in strategy::address_range_lists(),
    ) -> ApiKey {
        let mut key = ApiKey::new(
            KeyId::from_bytes([1; 16]),
            "k",
            AccountId::from_u64(account),
            scope,
            permissions,
            TokenHash::of("t"),
            Timestamp::EPOCH,
        );
        if let Some(e) = expires_at {
            key = key.with_expiry(e);
        }
        if revoked {
            key.revoke(Timestamp::EPOCH);
        }
        key.with_allowed_addresses(&ranges).unwrap()
    }
}

prop_compose! {
    /// One permission half the time, else all of or any of a few (the first index always in).
    fn action()(
        index in permission_index(),
        others in permission_set(),
        kind in 0u8..4,
        account_level in any::<bool>(),
    ) -> Action {
        let one = CATALOG.permission(&format!("p{index}")).unwrap();
        let mut set = others;
        set.insert(one);
        let action = match kind {
            2 => Action::all_of(set).unwrap(),
            3 => Action::any_of(set).unwrap(),
            _ => Action::new(one),
        };
        if account_level { action.at_account_level() } else { action }
    }
}

fn resource() -> impl Strategy<Value = Resource> {
    strategy::with_client_address((0u64..3, 0u8..3, 0u64..3).prop_map(
        |(account, kind, project)| {
            let account = AccountId::from_u64(account);
            match kind {
                0 => Resource::account(account),
                1 => Resource::listing(account),
                _ => Resource::in_project(account, ProjectId::from_u64(project)),
            }
        },
    ))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(10_000)))]

    #[test]
    fn agrees_with_the_reference_model(
        key in key(), action in action(), resource in resource(), now in time()
    ) {
        prop_assert_eq!(
            authorize(&key, action, &resource, now),
            reference::authorize(&key, action, &resource, now)
        );
    }

    #[test]
    fn explain_decides_as_the_reference_model(
        key in key(), action in action(), resource in resource(), now in time()
    ) {
        let explanation = reference::explain(&CATALOG, &key, action, &resource, now);
        prop_assert_eq!(explanation.decision, reference::authorize(&key, action, &resource, now));
        prop_assert_eq!(explanation.rules.len(), reference::Rule::ALL.len());
        // The deciding rule is the first failing one, and its reason is the decision's.
        let deciding = explanation.deciding_rule().and_then(|r| r.fails_with);
        prop_assert_eq!(deciding.map_or(Decision::Allow, Decision::Deny), explanation.decision);
    }

    #[test]
    fn agrees_with_the_reference_model_under_a_creator_cap(
        key in key(), cap in permission_set(), action in action(), resource in resource(),
        now in time()
    ) {
        let decision = authorize_capped(&key, &cap, action, &resource, now);
        prop_assert_eq!(
            decision,
            reference::authorize_capped(&key, &cap, action, &resource, now)
        );
        // The cap only ever takes away.
        if decision == Decision::Allow {
            prop_assert_eq!(authorize(&key, action, &resource, now), Decision::Allow);
        }
        // And the capped explanation decides the same, through its first failing rule.
        let explanation = keygate::explain::explain_capped(&CATALOG, &key, &cap, action, &resource, now);
        prop_assert_eq!(explanation.decision, decision);
        let deciding = explanation.deciding_rule().and_then(|r| r.fails_with);
        prop_assert_eq!(deciding.map_or(Decision::Allow, Decision::Deny), decision);
    }

    #[test]
    fn never_reaches_another_account(
        key in key(), action in action(), resource in resource(), now in time()
    ) {
        if key.account() != resource.account_id() {
            prop_assert_ne!(authorize(&key, action, &resource, now), Decision::Allow);
        }
    }

    #[test]
    fn project_scoped_keys_stay_in_their_project(
        key in key(), action in action(), resource in resource(), now in time()
    ) {
        if let Scope::Project(own) = key.scope() {
            let decision = authorize(&key, action, &resource, now);
            if decision == Decision::Allow {
                prop_assert!(!action.is_account_level());
                prop_assert!(resource.is_listing() || resource.project() == Some(own));
            }
        }
    }

    #[test]
    fn allow_needs_every_condition(
        key in key(), action in action(), resource in resource(), now in time()
    ) {
        if authorize(&key, action, &resource, now) == Decision::Allow {
            prop_assert!(key.is_active(now));
            let held = action.permissions().intersection(key.permissions());
            if action.is_any_of() {
                prop_assert!(!held.is_empty());
            } else {
                prop_assert_eq!(&held, action.permissions());
            }
            // A restricted key allows only a known address inside one of its ranges.
            if !key.allowed_addresses().is_empty() {
                let address = resource.address();
                let inside = address
                    .is_some_and(|a| key.allowed_addresses().iter().any(|r| r.contains(a)));
                prop_assert!(inside);
            }
        }
    }

    #[test]
    fn a_missing_permission_refusal_names_the_lowest_one(
        key in key(), cap in permission_set(), action in action(), resource in resource(),
        now in time()
    ) {
        if let Decision::Deny(Deny::MissingPermission(named)) =
            authorize_capped(&key, &cap, action, &resource, now)
        {
            let held = key.permissions().intersection(&cap);
            let needed = action.permissions();
            prop_assert!(bool::from(needed.contains(named)));
            prop_assert!(!bool::from(held.contains(named)));
            // Every needed permission below it: held for all of (it is the first lacking);
            // none for any of (it is the first alternative).
            let below: Vec<_> = needed.iter().filter(|p| *p < named).collect();
            if action.is_any_of() {
                prop_assert!(below.is_empty());
            } else {
                prop_assert!(below.iter().all(|p| bool::from(held.contains(*p))));
            }
        }
    }

    #[test]
    fn a_restricted_key_refuses_unknown_and_outside_addresses_first_after_liveness(
        key in key(), action in action(), resource in resource(), now in time()
    ) {
        let outside = key.allowed_addresses().iter().all(|r| {
            resource.address().is_none_or(|a| !r.contains(a))
        });
        if key.is_active(now) && !key.allowed_addresses().is_empty() && outside {
            prop_assert_eq!(
                authorize(&key, action, &resource, now),
                Decision::Deny(Deny::AddressNotAllowed)
            );
        }
    }

    #[test]
    fn deny_reasons_map_to_their_statuses(
        key in key(), action in action(), resource in resource(), now in time()
    ) {
        if let Decision::Deny(deny) = authorize(&key, action, &resource, now) {
            let expected = match deny {
                Deny::UnknownKey | Deny::Revoked | Deny::Expired => 401,
                Deny::OtherAccount | Deny::OutOfScope => 404,
                Deny::AddressNotAllowed
                | Deny::AccountLevelAction
                | Deny::MissingPermission(_) => 403,
            };
            prop_assert_eq!(deny.status(), expected);
        }
    }
}
