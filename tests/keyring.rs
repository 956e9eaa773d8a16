//! The embedded keyring: lookup outcomes, life cycle (revoke, rotate with and without grace,
//! expiry at the exact boundary), bookkeeping errors, and the 401 body.

use std::time::Duration;

use keygate::Refusal;
use keygate::{
    AccountId, Action, ApiKey, Catalog, Decision, Deny, KeyId, Keyring, KeyringError,
    LifecycleError, Permit, ProjectId, Resource, Scope, Timestamp, Token, TokenFormat,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

const MICRO: Duration = Duration::from_micros(1);

struct Fixture {
    rng: StdRng,
    catalog: Catalog,
    ring: Keyring,
    account: AccountId,
    project: ProjectId,
}

#[expect(
    clippy::unwrap_used,
    reason = "test set-up: a failure here should fail the test at once"
)]
impl Fixture {
    fn new() -> Self {
        Self {
            rng: StdRng::seed_from_u64(2026),
            catalog: Catalog::read_write_delete(),
            ring: Keyring::default(),
            account: AccountId::from_u64(7),
            project: ProjectId::from_u64(42),
        }
    }

    /// Inserts a read+write account-wide key; returns its id and token.
    fn add(&mut self, configure: impl FnOnce(ApiKey) -> ApiKey) -> (KeyId, Token) {
        let token = self.ring.format().mint(&mut self.rng);
        let key = ApiKey::new(
            KeyId::random(&mut self.rng),
            "Production Backend",
            self.account,
            Scope::Account,
            self.catalog.expand(["read", "write"]).unwrap(),
            token.hash(),
            Timestamp::from_unix_seconds(0),
        );
        let key = configure(key);
        let id = key.id();
        self.ring.insert(key).unwrap();
        (id, token)
    }

    fn read(&self) -> Action {
        Action::named(&self.catalog, "read").unwrap()
    }

    fn resource(&self) -> Resource {
        Resource::in_project(self.account, self.project)
    }

    fn decide(&self, token: &str, now: Timestamp) -> Decision {
        self.ring
            .authorize(token, self.read(), &self.resource(), now)
    }
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_seconds(seconds)
}

#[test]
fn hit_allows_and_authenticates_the_right_key() {
    let mut f = Fixture::new();
    let (id, token) = f.add(|k| k);
    let (other_id, _) = f.add(|k| k);
    assert_ne!(id, other_id);
    assert_eq!(f.decide(token.expose_secret(), at(10)), Decision::Allow);
    assert_eq!(
        f.ring
            .authenticate(token.expose_secret(), at(10))
            .map(ApiKey::id),
        Ok(id)
    );
    // The key's own rules still apply after the lookup.
    let delete = Action::named(&f.catalog, "delete").unwrap();
    assert_eq!(
        f.ring
            .authorize(token.expose_secret(), delete, &f.resource(), at(10)),
        Decision::Deny(Deny::MissingPermission(delete.permission()))
    );
    let elsewhere = Resource::in_project(AccountId::from_u64(8), f.project);
    assert_eq!(
        f.ring
            .authorize(token.expose_secret(), f.read(), &elsewhere, at(10)),
        Decision::Deny(Deny::OtherAccount)
    );
}

#[test]
fn unknown_and_malformed_tokens_are_401_unknown_key() {
    let mut f = Fixture::new();
    let (_, token) = f.add(|k| k);
    let secret = token.expose_secret();
    let unknown = f.ring.format().mint(&mut f.rng);
    let long = format!("{secret}{}", "A".repeat(10_000));
    let cases = [
        unknown.expose_secret(),
        "",
        "idc_",
        "Bearer idc_0123456789abcdef0123456789abcdef",
        &secret[..secret.len() - 1],
        &long,
        "idc_0123456789abcdef0123456789abcde!",
        "sk_live_0123456789abcdef0123456789abcdef",
        "idc_ÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄ",
    ];
    for case in cases {
        assert_eq!(
            f.decide(case, at(10)),
            Decision::Deny(Deny::UnknownKey),
            "{case:?}"
        );
        assert_eq!(
            f.ring.authenticate(case, at(10)).err(),
            Some(Deny::UnknownKey)
        );
    }
    // An empty keyring denies the same way.
    let empty = Keyring::default();
    assert_eq!(
        empty.authorize(secret, f.read(), &f.resource(), at(10)),
        Decision::Deny(Deny::UnknownKey)
    );
}

#[test]
fn a_token_of_another_format_never_matches_even_if_its_hash_is_stored() {
    let mut f = Fixture::new();
    let live = TokenFormat::new("sk_live_", 32).unwrap();
    let token = live.mint(&mut f.rng);
    let key = ApiKey::new(
        KeyId::random(&mut f.rng),
        "wrong format",
        f.account,
        Scope::Account,
        f.catalog.all(),
        token.hash(),
        at(0),
    );
    f.ring.insert(key).unwrap();
    assert_eq!(
        f.decide(token.expose_secret(), at(1)),
        Decision::Deny(Deny::UnknownKey)
    );
}

#[test]
fn every_401_has_the_seed_body() {
    let catalog = Catalog::read_write_delete();
    for deny in [Deny::UnknownKey, Deny::Revoked, Deny::Expired] {
        assert_eq!(deny.status(), 401);
        assert_eq!(
            serde_json::to_string(&deny.body(&catalog)).unwrap(),
            r#"{"error":"Invalid or expired API key"}"#
        );
    }
}

#[test]
fn revocation_is_immediate() {
    let mut f = Fixture::new();
    let (id, token) = f.add(|k| k);
    assert_eq!(f.decide(token.expose_secret(), at(99)), Decision::Allow);
    f.ring
        .revoke(&Permit::operator_revoke(id), at(100))
        .unwrap();
    assert_eq!(
        f.decide(token.expose_secret(), at(100)),
        Decision::Deny(Deny::Revoked)
    );
    assert_eq!(
        f.ring.authenticate(token.expose_secret(), at(100)).err(),
        Some(Deny::Revoked)
    );
    // A revoked key cannot be brought back by rotation.
    assert_eq!(
        f.ring
            .rotate(&Permit::operator_rotate(id), at(101), None, &mut f.rng)
            .err(),
        Some(KeyringError::Lifecycle(LifecycleError::Revoked))
    );
    assert_eq!(f.ring.get(id).and_then(ApiKey::revoked_at), Some(at(100)));
    // Nor by replacing the key with an unrevoked copy.
    let catalog = f.catalog.clone();
    let current = f.ring.get(id).cloned().unwrap();
    let k = &current;
    f.ring
        .apply_update(&Permit::operator_update({
            ApiKey::new(
                k.id(),
                k.name(),
                k.account(),
                k.scope(),
                catalog.all(),
                k.token_hash(),
                k.created_at(),
            )
        }))
        .unwrap();
    assert_eq!(
        f.decide(token.expose_secret(), at(102)),
        Decision::Deny(Deny::Revoked)
    );
}

#[test]
fn expiry_is_exclusive_at_the_exact_boundary() {
    let mut f = Fixture::new();
    let expires_at = at(1_000);
    let (_, token) = f.add(|k| k.with_expiry(expires_at));
    let secret = token.expose_secret();
    assert_eq!(f.decide(secret, expires_at - MICRO), Decision::Allow);
    assert!(f.ring.authenticate(secret, expires_at - MICRO).is_ok());
    assert_eq!(f.decide(secret, expires_at), Decision::Deny(Deny::Expired));
    assert_eq!(
        f.ring.authenticate(secret, expires_at).err(),
        Some(Deny::Expired)
    );
    assert_eq!(Deny::Expired.status(), 401);
}

#[test]
fn rotation_without_grace_rejects_the_old_token_at_once() {
    let mut f = Fixture::new();
    let (id, old) = f.add(|k| k.with_expiry(at(5_000)));
    let before = f.ring.get(id).unwrap().clone();
    let new = f
        .ring
        .rotate(&Permit::operator_rotate(id), at(100), None, &mut f.rng)
        .unwrap();
    assert_ne!(new.expose_secret(), old.expose_secret());
    assert!(bool::from(f.ring.format().matches(new.expose_secret())));
    assert_eq!(
        f.decide(old.expose_secret(), at(100)),
        Decision::Deny(Deny::UnknownKey)
    );
    assert_eq!(f.decide(new.expose_secret(), at(100)), Decision::Allow);
    // Same id and metadata, new hash.
    let after = f.ring.get(id).unwrap();
    assert_eq!(after.name(), before.name());
    assert_eq!(after.permissions(), before.permissions());
    assert_eq!(after.expires_at(), before.expires_at());
    assert_eq!(after.created_at(), before.created_at());
    assert_ne!(after.token_hash(), before.token_hash());
    // A zero grace is no grace.
    let newer = f
        .ring
        .rotate(
            &Permit::operator_rotate(id),
            at(200),
            Some(Duration::ZERO),
            &mut f.rng,
        )
        .unwrap();
    assert_eq!(
        f.decide(new.expose_secret(), at(200)),
        Decision::Deny(Deny::UnknownKey)
    );
    assert_eq!(f.decide(newer.expose_secret(), at(200)), Decision::Allow);
}

#[test]
fn rotation_grace_ends_exactly_at_now_plus_grace() {
    let mut f = Fixture::new();
    let (id, old) = f.add(|k| k);
    let now = at(100);
    let grace = Duration::from_secs(3_600);
    let new = f
        .ring
        .rotate(&Permit::operator_rotate(id), now, Some(grace), &mut f.rng)
        .unwrap();
    let end = now + grace;
    for t in [now, end - MICRO] {
        assert_eq!(f.decide(old.expose_secret(), t), Decision::Allow);
        assert_eq!(f.decide(new.expose_secret(), t), Decision::Allow);
        assert_eq!(
            f.ring.authenticate(old.expose_secret(), t).map(ApiKey::id),
            Ok(id)
        );
    }
    assert_eq!(
        f.decide(old.expose_secret(), end),
        Decision::Deny(Deny::UnknownKey)
    );
    assert_eq!(f.decide(new.expose_secret(), end), Decision::Allow);
    // Revoking during the grace period ends both secrets.
    f.ring
        .revoke(&Permit::operator_revoke(id), now + MICRO)
        .unwrap();
    assert_eq!(
        f.decide(old.expose_secret(), now + MICRO),
        Decision::Deny(Deny::Revoked)
    );
    assert_eq!(
        f.decide(new.expose_secret(), now + MICRO),
        Decision::Deny(Deny::Revoked)
    );
}

#[test]
fn rotating_again_ends_the_earlier_grace_period() {
    let mut f = Fixture::new();
    let (id, first) = f.add(|k| k);
    let grace = Some(Duration::from_secs(600));
    let second = f
        .ring
        .rotate(&Permit::operator_rotate(id), at(100), grace, &mut f.rng)
        .unwrap();
    let third = f
        .ring
        .rotate(&Permit::operator_rotate(id), at(200), grace, &mut f.rng)
        .unwrap();
    assert_eq!(
        f.decide(first.expose_secret(), at(200)),
        Decision::Deny(Deny::UnknownKey)
    );
    assert_eq!(f.decide(second.expose_secret(), at(200)), Decision::Allow);
    assert_eq!(f.decide(third.expose_secret(), at(200)), Decision::Allow);
}

#[test]
fn remove_forgets_the_key_and_keeps_the_others_working() {
    let mut f = Fixture::new();
    let added: Vec<(KeyId, Token)> = (0..10).map(|_| f.add(|k| k)).collect();
    let (gone, gone_token) = &added[3];
    let (removed, _state) = f.ring.remove(*gone).unwrap();
    assert_eq!(removed.id(), *gone);
    assert!(f.ring.remove(*gone).is_none());
    assert!(f.ring.get(*gone).is_none());
    assert_eq!(f.ring.len(), 9);
    assert_eq!(
        f.decide(gone_token.expose_secret(), at(1)),
        Decision::Deny(Deny::UnknownKey)
    );
    for (id, token) in added.iter().filter(|(id, _)| id != gone) {
        assert_eq!(
            f.ring
                .authenticate(token.expose_secret(), at(1))
                .map(ApiKey::id),
            Ok(*id)
        );
    }
    assert_eq!(
        f.ring.revoke(&Permit::operator_revoke(*gone), at(1)),
        Err(KeyringError::UnknownKeyId(*gone))
    );
}

#[test]
fn duplicates_are_refused_and_change_nothing() {
    let mut f = Fixture::new();
    let (id, token) = f.add(|k| k);
    let same_id = ApiKey::new(
        id,
        "again",
        f.account,
        Scope::Account,
        f.catalog.all(),
        f.ring.format().mint(&mut f.rng).hash(),
        at(0),
    );
    assert_eq!(
        f.ring.insert(same_id),
        Err(KeyringError::DuplicateKeyId(id))
    );
    let other_id = KeyId::random(&mut f.rng);
    let same_token = ApiKey::new(
        other_id,
        "copy",
        f.account,
        Scope::Account,
        f.catalog.all(),
        token.hash(),
        at(0),
    );
    assert_eq!(
        f.ring.insert(same_token.clone()),
        Err(KeyringError::DuplicateToken(other_id))
    );
    assert_eq!(f.ring.len(), 1);
    let original = f.ring.get(id).unwrap().clone();
    assert!(matches!(
        Keyring::from_keys(TokenFormat::default(), [original.clone(), original.clone()]),
        Err(KeyringError::DuplicateKeyId(_))
    ));
    assert!(matches!(
        Keyring::from_keys(TokenFormat::default(), [original, same_token]),
        Err(KeyringError::DuplicateToken(_))
    ));
}

#[test]
fn from_keys_loads_a_store_that_answers_like_inserts() {
    let mut f = Fixture::new();
    let added: Vec<(KeyId, Token)> = (0..100).map(|_| f.add(|k| k)).collect();
    let loaded = Keyring::from_keys(TokenFormat::default(), f.ring.iter().cloned()).unwrap();
    assert_eq!(loaded.len(), 100);
    for (id, token) in &added {
        assert_eq!(
            loaded
                .authenticate(token.expose_secret(), at(1))
                .map(ApiKey::id),
            Ok(*id)
        );
    }
}

#[test]
fn expiring_within_lists_active_keys_expiring_in_the_window() {
    let mut f = Fixture::new();
    let now = at(1_000);
    let day = Duration::from_secs(86_400);
    let (soon, _) = f.add(|k| k.with_expiry(now + day));
    let (at_edge, _) = f.add(|k| k.with_expiry(now + day * 7));
    let (_later, _) = f.add(|k| k.with_expiry(now + day * 30));
    let (_never, _) = f.add(|k| k);
    let (_already, _) = f.add(|k| k.with_expiry(now));
    let (revoked, _) = f.add(|k| k.with_expiry(now + day));
    f.ring
        .revoke(&Permit::operator_revoke(revoked), now)
        .unwrap();
    let mut found: Vec<KeyId> = f
        .ring
        .expiring_within(now, day * 7)
        .map(ApiKey::id)
        .collect();
    found.sort();
    let mut expected = vec![soon, at_edge];
    expected.sort();
    assert_eq!(found, expected);
}

#[test]
fn update_changes_metadata_and_keeps_the_index_right() {
    let mut f = Fixture::new();
    let (id, token) = f.add(|k| k);
    let current = f.ring.get(id).cloned().unwrap();
    f.ring
        .apply_update(&Permit::operator_update(current.with_expiry(at(50))))
        .unwrap();
    assert_eq!(
        f.decide(token.expose_secret(), at(50)),
        Decision::Deny(Deny::Expired)
    );
    // A rotation done through an operator update is indexed too.
    let format = f.ring.format().clone();
    let mut rng = StdRng::seed_from_u64(9);
    let mut k = f.ring.get(id).cloned().unwrap();
    let fresh = k.rotate(&format, at(10), None, &mut rng).unwrap();
    f.ring.apply_update(&Permit::operator_update(k)).unwrap();
    assert_eq!(f.decide(fresh.expose_secret(), at(20)), Decision::Allow);
    assert_eq!(
        f.decide(token.expose_secret(), at(20)),
        Decision::Deny(Deny::UnknownKey)
    );
}

#[test]
fn per_key_state_follows_the_key() {
    let mut f = Fixture::new();
    let (a, _) = f.add(|k| k);
    let (b, _) = f.add(|k| k);
    f.ring.record_usage(b, "GET /recordings", 200, at(5));
    // Removing `a` moves `b` into its slot; its state must move along.
    f.ring.remove(a).unwrap();
    assert_eq!(f.ring.state(b).unwrap().usage.total_requests(), 1);
    assert!(f.ring.state(a).is_none());
}

#[test]
fn debug_of_a_keyring_shows_no_hashes_or_tokens() {
    let mut f = Fixture::new();
    let (_, token) = f.add(|k| k);
    let shown = format!("{:?}", f.ring);
    assert!(!shown.contains(&token.expose_secret()[4..]));
    assert!(!shown.contains(&token.hash().to_string()));
    assert!(shown.contains("keys: 1"), "{shown}");
}

#[test]
fn prune_forgets_secrets_whose_grace_has_ended() {
    let mut f = Fixture::new();
    let (id, old) = f.add(|k| k);
    let new = f
        .ring
        .rotate(
            &Permit::operator_rotate(id),
            at(100),
            Some(Duration::from_secs(10)),
            &mut f.rng,
        )
        .unwrap();
    assert_eq!(f.ring.prune(at(109)), 0);
    assert!(f.ring.get(id).unwrap().retired_secret().is_some());
    assert_eq!(f.decide(old.expose_secret(), at(109)), Decision::Allow);
    assert_eq!(f.ring.prune(at(110)), 1);
    assert!(f.ring.get(id).unwrap().retired_secret().is_none());
    assert_eq!(
        f.decide(old.expose_secret(), at(105)),
        Decision::Deny(Deny::UnknownKey)
    );
    assert_eq!(f.decide(new.expose_secret(), at(110)), Decision::Allow);
}
