//! Regression tests for what the assurance work (fuzzing, dudect, mutation testing) found, and
//! tests that pin down behaviour the mutation run showed was not yet pinned.
//!
//! `cargo mutants` survivors that are *equivalent* (no test can tell them apart, because the
//! program's behaviour does not change):
//!
//! - `src/keyring.rs`, `Keyring::index_secrets`: `partition_point(|e| e.prefix < p)` with `<`
//!   replaced by `<=`. Prefixes in the index are unique (`check_secrets` refuses a collision
//!   before anything is indexed), so no entry has `e.prefix == p` and both find the same place.
//! - `src/keyring.rs`, `Keyring::prune`: `if pruned > 0` replaced by `>= 0`. With nothing pruned,
//!   no retired secret has ended, so the skipped work (re-deriving the prefix array, clearing
//!   ended retired secrets) would change nothing.
//!
//! - `src/token.rs`, `TokenFormat::matches`: `in_range(digits) | in_range(upper) |
//!   in_range(lower)` with either `|` replaced by `^`. The three ranges are disjoint, so at most
//!   one term is 1 and `|` equals `^`.
//! - `src/token.rs`, `in_range`: `(below | above) ^ 1` with `|` replaced by `^`. `lo <= hi` in
//!   every call, so a byte cannot be both below `lo` and above `hi`; the two terms are never both 1.
//!
//! - `src/scope.rs`, `RawId::parse_uuid`: `(high << 4) | low` with `|` replaced by `^`. The two
//!   nibbles occupy disjoint bits.
//!
//! - `src/authorize.rs`, `reason_code`: `key_account_wide | at_listing | in_own_project` with the
//!   first `|` replaced by `^`. The terms differ only for an account-wide key on a listing, and
//!   there `in_own_project` is 1 too (the key's absent project and a listing's project are both
//!   the zero word), so the result is 1 either way.
//!
//! Mutants reported as timeouts (the `Keyring::search` loop bounds: `size > 1` as `<`, `>=`, `==`,
//! `/` as `%`, `-=` as `/=`) loop forever; a hung request is as visible as a failing test.

mod common;

use keygate::{
    AccountId, Action, ApiKey, Catalog, Decision, Deny, KeyId, Keyring, ProjectId, Resource, Scope,
    Timestamp, TokenFormat, TokenHash,
};

const TOKEN: &str = "idc_DiffDiffDiffDiffDiffDiffDiff0000";

fn key(scope: Scope) -> ApiKey {
    common::full_key(KeyId::from_bytes([9; 16]), scope, TokenHash::of(TOKEN))
}

/// Found by the `differential` fuzz target: at `now == Timestamp::MAX` the keyring called every
/// token unknown (a current secret's `valid_until` is `MAX`, compared exclusively), while
/// `authorize` on the key itself allowed.
#[test]
fn keyring_agrees_with_authorize_at_the_end_of_time() {
    let catalog = Catalog::read_write_delete();
    let read = Action::named(&catalog, "read").unwrap();
    let resource = Resource::in_project(AccountId::from_u64(1), ProjectId::from_u64(3));
    let mut ring = Keyring::from_keys(TokenFormat::default(), [key(Scope::Account)]).unwrap();
    for now in [Timestamp::EPOCH, Timestamp::MAX] {
        assert_eq!(ring.authorize(TOKEN, read, &resource, now), Decision::Allow);
        assert!(ring.authenticate(TOKEN, now).is_ok());
    }
    // Pruning at the end of time keeps current secrets.
    assert_eq!(ring.prune(Timestamp::MAX), 0);
    assert_eq!(
        ring.authorize(TOKEN, read, &resource, Timestamp::MAX),
        Decision::Allow
    );
    assert_eq!(
        ring.authorize(
            "idc_DiffDiffDiffDiffDiffDiffDiff0001",
            read,
            &resource,
            Timestamp::MAX
        ),
        Decision::Deny(Deny::UnknownKey)
    );
}

/// Every scope against every kind of resource, spelled out. Mutation testing showed that turning
/// `account_wide | at_listing | in_own_project` into `account_wide ^ at_listing | ...` survived
/// the rest of the suite at low proptest case counts: an account-wide key on a listing is the case
/// that tells them apart.
#[test]
fn scope_reach_for_every_resource_kind() {
    let catalog = Catalog::read_write_delete();
    let read = Action::named(&catalog, "read").unwrap();
    let account = AccountId::from_u64(1);
    let own = ProjectId::from_u64(3);
    let other = ProjectId::from_u64(4);
    let now = Timestamp::from_unix_seconds(10);
    let cases = [
        (Scope::Account, Resource::account(account), Decision::Allow),
        (Scope::Account, Resource::listing(account), Decision::Allow),
        (
            Scope::Account,
            Resource::in_project(account, own),
            Decision::Allow,
        ),
        (
            Scope::Project(own),
            Resource::listing(account),
            Decision::Allow,
        ),
        (
            Scope::Project(own),
            Resource::in_project(account, own),
            Decision::Allow,
        ),
        (
            Scope::Project(own),
            Resource::in_project(account, other),
            Decision::Deny(Deny::OutOfScope),
        ),
        (
            Scope::Project(own),
            Resource::account(account),
            Decision::Deny(Deny::OutOfScope),
        ),
        // Project 0 has the same bytes as "no project": every term of the scope rule holds at
        // once, which is where `|` and `^` part (a surviving mutant of the faster rule).
        (
            Scope::Account,
            Resource::in_project(account, ProjectId::from_u64(0)),
            Decision::Allow,
        ),
        (
            Scope::Project(ProjectId::from_u64(0)),
            Resource::listing(account),
            Decision::Allow,
        ),
        (
            Scope::Project(ProjectId::from_u64(0)),
            Resource::in_project(account, ProjectId::from_u64(0)),
            Decision::Allow,
        ),
        (
            Scope::Project(ProjectId::from_u64(0)),
            Resource::account(account),
            Decision::Deny(Deny::OutOfScope),
        ),
    ];
    for (scope, resource, want) in cases {
        let key = key(scope);
        assert_eq!(
            keygate::authorize(&key, read, &resource, now),
            want,
            "{scope:?} on {resource:?}"
        );
        let ring = Keyring::from_keys(TokenFormat::default(), [key]).unwrap();
        assert_eq!(ring.authorize(TOKEN, read, &resource, now), want);
    }
}

mod catalog_mutants {
    //! Behaviour of `catalog.rs` that cargo-mutants showed no other test pinned.

    use keygate::MAX_NAME_LEN;
    use keygate::{Catalog, CatalogError, PermissionSet};
    use subtle::{Choice, ConditionallySelectable};

    #[test]
    fn permission_set_selects_by_choice() {
        let catalog = Catalog::read_write_delete();
        let a = catalog.expand(["read"]).unwrap();
        let b = catalog.expand(["write", "delete"]).unwrap();
        assert_eq!(
            PermissionSet::conditional_select(&a, &b, Choice::from(0)),
            a
        );
        assert_eq!(
            PermissionSet::conditional_select(&a, &b, Choice::from(1)),
            b
        );
    }

    #[test]
    fn permission_set_debug_lists_indices() {
        let catalog = Catalog::read_write_delete();
        let set = catalog.expand(["read", "delete"]).unwrap();
        assert_eq!(format!("{set:?}"), "{0, 2}");
        assert_eq!(format!("{:?}", PermissionSet::EMPTY), "{}");
    }

    #[test]
    fn role_names_are_capped_at_the_name_length() {
        let catalog = || Catalog::new(["read"]).unwrap();
        let longest = "r".repeat(MAX_NAME_LEN);
        assert!(catalog().with_role(&longest, ["read"]).is_ok());
        let too_long = "r".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            catalog().with_role(&too_long, ["read"]).unwrap_err(),
            CatalogError::InvalidName(too_long)
        );
        // A valid-length but malformed name is refused too.
        assert!(catalog().with_role("has space", ["read"]).is_err());
    }

    #[test]
    fn an_empty_catalog_is_empty() {
        let empty = Catalog::new(Vec::<String>::new()).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.len(), 0);
        assert!(!Catalog::read_write_delete().is_empty());
    }

    #[test]
    fn roles_come_lowest_rank_first() {
        let catalog = Catalog::read_write_delete();
        let names: Vec<&str> = catalog.roles().iter().map(|r| r.name()).collect();
        assert_eq!(names, ["member", "admin", "owner"]);
        assert!(Catalog::new(["read"]).unwrap().roles().is_empty());
    }

    #[test]
    fn patterns_are_capped_at_the_name_length() {
        let longest = "a".repeat(MAX_NAME_LEN);
        let catalog = Catalog::new([longest.clone()]).unwrap();
        assert_eq!(catalog.expand([longest.as_str()]).unwrap().len(), 1);
        let too_long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            catalog.expand([too_long.as_str()]).unwrap_err(),
            CatalogError::InvalidPattern(too_long)
        );
    }
}

mod key_mutants {
    //! Behaviour of `key.rs` that cargo-mutants showed no other test pinned.

    use keygate::{KeyId, ProjectId, Scope, Timestamp, TokenHash};

    #[test]
    fn key_id_debug_shows_the_hex() {
        let id = KeyId::from_bytes([0xab; 16]);
        assert_eq!(format!("{id:?}"), format!("KeyId({})", "ab".repeat(16)));
    }

    /// `ApiKey`'s `Debug` shows its scope as a `Scope` and its expiry as an option, whatever the
    /// internal layout (`Present`, kept for constant-time reads).
    #[test]
    fn api_key_debug_shows_scope_and_expiry() {
        let key =
            |scope| crate::common::full_key(KeyId::from_bytes([1; 16]), scope, TokenHash::of("x"));
        let scoped = format!("{:?}", key(Scope::Project(ProjectId::from_u64(42))));
        assert!(scoped.contains("scope: Project(ProjectId(42))"), "{scoped}");
        assert!(scoped.contains("expires_at: None"), "{scoped}");
        let wide = format!(
            "{:?}",
            key(Scope::Account).with_expiry(Timestamp::from_unix_micros(5))
        );
        assert!(wide.contains("scope: Account"), "{wide}");
        assert!(wide.contains("expires_at: Some(Timestamp(5))"), "{wide}");
    }
}

mod keyring_mutants {
    //! Behaviour of `keyring.rs` that cargo-mutants showed no other test pinned.

    /// A duplicate token is found wherever its hash sorts in a large index, not only at the ends
    /// (turning the `partition_point` comparison around survived the other tests).
    #[test]
    fn duplicate_tokens_are_refused_anywhere_in_the_index() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let format = TokenFormat::default();
        let key = |i: u8, hash: TokenHash| {
            crate::common::full_key(KeyId::from_bytes([i; 16]), Scope::Account, hash)
        };
        let hashes: Vec<TokenHash> = (0..64).map(|_| format.mint(&mut rng).hash()).collect();
        let ring = Keyring::from_keys(
            format.clone(),
            hashes.iter().zip(1u8..).map(|(h, i)| key(i, *h)),
        )
        .unwrap();
        let mut sorted = hashes.clone();
        sorted.sort();
        for hash in [sorted[0], sorted[31], sorted[32], sorted[63]] {
            let mut ring = ring.clone();
            assert_eq!(
                ring.insert(key(200, hash)),
                Err(keygate::KeyringError::DuplicateToken(KeyId::from_bytes(
                    [200; 16]
                )))
            );
        }
    }

    use keygate::{
        AccountId, ApiKey, Catalog, KeyId, Keyring, Scope, Timestamp, TokenFormat, TokenHash,
    };

    #[test]
    fn a_keyring_keeps_its_format_and_knows_when_it_is_empty() {
        let format = TokenFormat::new("sk_live_", 40).unwrap();
        assert_eq!(format.prefix(), "sk_live_");
        assert_eq!(format.body_len(), 40);
        assert_eq!(format.token_len(), 48);
        let mut ring = Keyring::new(format.clone());
        assert_eq!(ring.format(), &format);
        assert!(ring.is_empty());
        let key = ApiKey::new(
            KeyId::from_bytes([1; 16]),
            "k",
            AccountId::from_u64(1),
            Scope::Account,
            Catalog::read_write_delete().all(),
            TokenHash::of("sk_live_x"),
            Timestamp::EPOCH,
        );
        ring.insert(key).unwrap();
        assert!(!ring.is_empty());
        assert_eq!(ring.len(), 1);
    }
}

#[cfg(feature = "axum")]
mod axum_mutants {
    //! `keygate::axum::ApiError`'s accessors, which cargo-mutants showed no other test in this
    //! package read.

    use keygate::axum::ApiError;
    use keygate::{Catalog, Deny};

    #[test]
    fn api_error_exposes_status_and_body() {
        let catalog = Catalog::read_write_delete();
        let e = ApiError::deny(Deny::OutOfScope, &catalog);
        assert_eq!(e.status().as_u16(), 404);
        assert_eq!(e.body(), &serde_json::json!({"error": "Not found"}));
        let v = ApiError::validation(vec!["Name can't be blank".to_owned()]);
        assert_eq!(v.status().as_u16(), 422);
        assert_eq!(
            v.body(),
            &serde_json::json!({"errors": ["Name can't be blank"]})
        );
    }

    #[test]
    fn api_error_responses_carry_status_and_retry_after() {
        use axum::response::IntoResponse;
        use keygate::{RateLimit, RateLimitState, Timestamp};

        let response = ApiError::not_found().into_response();
        assert_eq!(response.status().as_u16(), 404);
        assert!(response.headers().get("retry-after").is_none());

        let limit = RateLimit::per_period(1, 60).unwrap();
        let mut state = RateLimitState::default();
        let now = Timestamp::from_unix_seconds(1_000);
        assert!(limit.check(&mut state, now).is_ok());
        let retry = limit.check(&mut state, now).unwrap_err();
        let response = ApiError::from(retry).into_response();
        assert_eq!(response.status().as_u16(), 429);
        assert_eq!(
            response.headers().get("retry-after").unwrap(),
            &retry.seconds().to_string()
        );
    }
}

mod issue_mutants {
    //! Accessors of `issue.rs` that only doc examples read (the mutation run skipped doctests).

    use keygate::{AccountId, Catalog, Issuer, KeySpec, Scope, ValidationErrors};

    #[test]
    fn issuer_keeps_its_user_id_and_spec_its_name() {
        let catalog = Catalog::read_write_delete();
        let issuer = Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all());
        assert_eq!(issuer.user_id(), None);
        assert_eq!(issuer.with_user_id("u_7").user_id(), Some("u_7"));
        assert_eq!(KeySpec::named("CI").name(), "CI");
    }

    #[test]
    fn validation_errors_from_messages() {
        let errors = ValidationErrors::from(vec!["Name can't be blank".to_owned()]);
        assert_eq!(errors.errors, ["Name can't be blank"]);
        assert!(!errors.is_empty());
    }
}

/// A token shows exactly its prefix (up to the last `_`) and four characters
/// (`prefix + 4` turned into `prefix * 4` survived the other redaction tests).
#[test]
fn token_redaction_is_exact() {
    let token = keygate::Token::from_presented("idc_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345".to_owned());
    assert_eq!(token.to_string(), "idc_ABCD…");
    assert_eq!(format!("{token:?}"), "Token(idc_ABCD…)");
    let live = keygate::Token::from_presented("sk_live_ABCDEFGHIJKLMNOPQRSTUVWXYZ".to_owned());
    assert_eq!(live.to_string(), "sk_live_ABCD…");
    let bare = keygate::Token::from_presented("ABCDEFGH".to_owned());
    assert_eq!(bare.to_string(), "ABCD…");
}

/// Every invalid character counts, however many there are: an accumulator that *toggled* on each
/// bad byte (`bad ^ x` for `bad | x`, a surviving mutant) would accept two of them.
#[test]
fn format_check_rejects_any_number_of_bad_characters() {
    let format = TokenFormat::default();
    let good = "idc_0123456789abcdefABCDEF0123456789";
    assert!(bool::from(format.matches(good)));
    for bad in [
        "idc_0123456789abcdefABCDEF01234567!!",
        "idc_!123456789abcdefABCDEF012345678!",
        "idc_!!!3456789abcdefABCDEF0123456789",
        "idc_!!!!456789abcdefABCDEF0123456789",
    ] {
        assert_eq!(bad.len(), good.len(), "{bad}");
        assert!(!bool::from(format.matches(bad)), "{bad}");
    }
}

/// `TokenHash`'s `Debug` shows the base64url digest (a mutant returning nothing survived).
#[test]
fn token_hash_debug_shows_the_digest() {
    let hash = TokenHash::of("x");
    assert_eq!(format!("{hash:?}"), format!("TokenHash({hash})"));
    assert_eq!(hash.to_string().len(), 43);
}

/// A wrong JSON type for an id says what was expected (the serde visitor's `expecting`, which a
/// surviving mutant emptied).
#[test]
fn id_type_errors_say_what_was_expected() {
    let err = serde_json::from_str::<ProjectId>("true").unwrap_err();
    assert!(
        err.to_string()
            .contains("expected a non-negative integer or a UUID string"),
        "{err}"
    );
}

mod scope_and_time_mutants {
    //! Behaviour of `scope.rs` and `timestamp.rs` that only doc examples (skipped by the
    //! mutation run) or nothing at all pinned.

    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use keygate::{AccountId, ProjectId, Resource, Timestamp};

    #[test]
    fn uuids_parse_to_their_bytes_in_either_case() {
        let want = [
            0x3f, 0x2c, 0x1a, 0x9e, 0x8b, 0x7d, 0x4c, 0x6e, 0x9a, 0x1f, 0x2b, 0x3c, 0x4d, 0x5e,
            0x6f, 0x70,
        ];
        let lower: ProjectId = "3f2c1a9e-8b7d-4c6e-9a1f-2b3c4d5e6f70".parse().unwrap();
        let upper: ProjectId = "3F2C1A9E-8B7D-4C6E-9A1F-2B3C4D5E6F70".parse().unwrap();
        assert_eq!(lower.as_bytes(), &want);
        assert_eq!(upper.as_bytes(), &want);
        // Digits in low nibbles under small high nibbles: where a wrong digit value shows (in a
        // high nibble, `<< 4` shifts most mistakes out of the byte).
        let digits: ProjectId = "01234567-89ab-cdef-0123-456789ABCDEF".parse().unwrap();
        assert_eq!(
            digits.as_bytes(),
            &[
                0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
                0xcd, 0xef
            ]
        );
    }

    #[test]
    fn a_resource_knows_its_project() {
        let account = AccountId::from_u64(1);
        let p = ProjectId::from_u64(42);
        assert_eq!(Resource::in_project(account, p).project(), Some(p));
        assert_eq!(Resource::listing(account).project(), None);
    }

    #[test]
    fn system_times_before_the_epoch_are_negative() {
        let before = UNIX_EPOCH - Duration::from_secs(2);
        assert_eq!(
            Timestamp::from_system_time(before),
            Timestamp::from_unix_seconds(-2)
        );
        let after = UNIX_EPOCH + Duration::from_micros(1_500_000);
        assert_eq!(
            Timestamp::from_system_time(after),
            Timestamp::from_unix_micros(1_500_000)
        );
        let _ = SystemTime::now();
    }

    #[test]
    fn whole_seconds_round_down() {
        assert_eq!(Timestamp::from_unix_micros(2_500_000).unix_seconds(), 2);
        assert_eq!(Timestamp::from_unix_micros(-1).unix_seconds(), -1);
        assert_eq!(Timestamp::from_unix_seconds(-7).unix_seconds(), -7);
    }

    #[test]
    fn duration_since_is_zero_when_not_after() {
        let a = Timestamp::from_unix_seconds(10);
        let b = Timestamp::from_unix_micros(10_000_250);
        assert_eq!(b.duration_since(a), Duration::from_micros(250));
        assert_eq!(a.duration_since(b), Duration::ZERO);
    }
}

/// The error classes are exactly the ones recorded (a mutant returning a made-up map survived).
#[test]
fn usage_error_classes_are_exact() {
    let mut usage = keygate::Usage::default();
    let now = Timestamp::from_unix_seconds(1);
    usage.record("GET /a", 200, now);
    usage.record("GET /a", 404, now);
    usage.record("GET /b", 503, now);
    let classes: Vec<(&str, u64)> = usage
        .errors_by_status_class()
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(classes, [("4xx", 1), ("5xx", 1)]);
    // Two errors in three requests; `/` turned into `*` or `%` survived without this.
    assert!(
        (usage.error_rate() - 2.0 / 3.0).abs() < 1e-12,
        "{}",
        usage.error_rate()
    );
    for _ in 0..5 {
        usage.record("GET /a", 200, now);
    }
    assert!(
        (usage.error_rate() - 0.25).abs() < 1e-12,
        "{}",
        usage.error_rate()
    );
    assert!(
        keygate::Usage::default()
            .errors_by_status_class()
            .is_empty()
    );
}
