//! A simulated deployment for the escalation oracle, driven by bytes (from proptest in
//! tests/escalation.rs, from libFuzzer in fuzz/fuzz_targets/issue_chain.rs).
//!
//! Three users with ranked roles issue keys; keys issue keys; any user or key tries every
//! management operation on any key (read, rotate, revoke, revoke down the tree, narrowing
//! updates); users are demoted, promoted and removed (their creator caps follow); time passes.
//! After every step the oracle checks, from its own records and plain rules:
//! - every issued key lies within its issuer as the issuer was (its capped permissions, scope,
//!   account, expiry, rate limit, role ceiling), and records the authenticated creator;
//! - every management operation that succeeded was the caller's to do (a key's own read or
//!   revoke, or a target dominated by the caller's capped reach, with the op's permission and,
//!   for another's key, `api-keys:manage-others`); an update only narrowed;
//! - every allowed request agrees with the plain reference model (capped by the creator's cap as
//!   the oracle tracks it), is allowed to every ancestor as it was when it issued, and its
//!   permission is held by the creator now; revoked keys and rotated-away secrets never
//!   authenticate.
#![expect(
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "the oracle's failures are test failures: a panic is how it reports one"
)]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use keygate::{
    AccountId, Action, Catalog, Decision, IssueError, Issuer, KeyId, KeySpec, KeyUpdate, Keyring,
    ManageOp, PermissionSet, ProjectId, RateLimit, Resource, Scope, Timestamp, Token, issue,
    manage,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

use keygate::testing::reference;

const NAMES: [&str; 8] = [
    "agents:read",
    "agents:write",
    "calls:read",
    "calls:write",
    "api-keys:read",
    "api-keys:write",
    "api-keys:delete",
    "api-keys:manage-others",
];
/// What a spec or an update may ask for: names, patterns, and a name the catalog lacks.
const PATTERNS: [&str; 12] = [
    "agents:read",
    "agents:write",
    "calls:read",
    "calls:write",
    "api-keys:read",
    "api-keys:write",
    "api-keys:delete",
    "*",
    "*:read",
    "agents:*",
    "api-keys:*",
    "billing:read",
];
const ROLES: [&str; 4] = ["member", "admin", "owner", "ghost"];
const USERS: usize = 3;
const MAX_KEYS: usize = 40;

/// The catalog of the simulation: the voice-agent platform's shape, with ranked roles.
pub fn catalog() -> Catalog {
    Catalog::new(NAMES)
        .and_then(|c| c.with_role("member", ["*:read", "api-keys:write", "api-keys:delete"]))
        .and_then(|c| c.with_role("admin", ["*:read", "*:write", "api-keys:*"]))
        .and_then(|c| c.with_role("owner", ["*"]))
        .expect("a valid catalog")
}

/// A byte source: each read takes the next byte, zero once they run out.
struct Bytes<'a>(std::slice::Iter<'a, u8>);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        self.0.next().copied().unwrap_or(0)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n.max(1)
    }
    fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }
    fn done(&self) -> bool {
        self.0.len() == 0
    }
}

/// A reach as recorded when a key was issued: what its issuer could do then.
#[derive(Debug, Clone)]
struct Reach {
    permissions: PermissionSet,
    scope: Scope,
    expires_at: Option<Timestamp>,
}

impl Reach {
    /// Whether this reach allows `action` on `resource` at `now` (revocation aside).
    fn allows(&self, action: Action, resource: &Resource, now: Timestamp) -> bool {
        let live = self.expires_at.is_none_or(|e| now < e);
        let own_account = resource.account_id() == account();
        let level_ok = !action.is_account_level() || self.scope == Scope::Account;
        let in_scope = match self.scope {
            Scope::Account => true,
            Scope::Project(p) => resource.is_listing() || resource.project() == Some(p),
        };
        live && own_account
            && level_ok
            && in_scope
            && bool::from(self.permissions.contains(action.permission()))
    }
}

#[derive(Debug, Clone)]
struct User {
    id: String,
    permissions: PermissionSet,
    role: Option<&'static str>,
    removed: bool,
}

/// What the oracle remembers of a key.
#[derive(Debug)]
struct Record {
    /// Every ancestor's reach when this key (or the ancestor's own descendant on the way) was
    /// issued, the root user first.
    ancestors: Vec<Reach>,
    creator: String,
}

fn account() -> AccountId {
    AccountId::from_u64(1)
}

/// The simulation.
pub struct World {
    catalog: Catalog,
    keyring: Keyring,
    now: Timestamp,
    rng: StdRng,
    users: Vec<User>,
    keys: Vec<KeyId>,
    tokens: HashMap<KeyId, Token>,
    dead_tokens: Vec<Token>,
    records: HashMap<KeyId, Record>,
    revoked: HashSet<KeyId>,
    /// How many operations of each kind succeeded: issue, manage, allowed probes.
    pub counts: [u64; 3],
}

impl World {
    /// Runs the whole byte string as operations, checking the oracle after each.
    pub fn run(bytes: &[u8]) -> [u64; 3] {
        let mut input = Bytes(bytes.iter());
        let mut world = World::new(input.byte().into());
        let mut steps = 0;
        while !input.done() && steps < 200 {
            world.step(&mut input);
            world.check(&mut input);
            steps += 1;
        }
        world.counts
    }

    fn new(seed: u64) -> Self {
        let catalog = catalog();
        let users = (0..USERS)
            .map(|i| User {
                id: format!("user{i}"),
                permissions: *catalog
                    .role(ROLES[i % 3])
                    .map(|r| r.permissions())
                    .unwrap_or(&PermissionSet::EMPTY),
                role: Some(ROLES[i % 3]),
                removed: false,
            })
            .collect();
        Self {
            catalog,
            keyring: Keyring::default(),
            now: Timestamp::from_unix_seconds(1_800_000_000),
            rng: StdRng::seed_from_u64(seed),
            users,
            keys: Vec::new(),
            tokens: HashMap::new(),
            dead_tokens: Vec::new(),
            records: HashMap::new(),
            revoked: HashSet::new(),
            counts: [0; 3],
        }
    }

    fn user_issuer(&self, index: usize) -> Option<Issuer> {
        let user = self.users.get(index)?;
        if user.removed {
            return None;
        }
        let scope = Scope::Account;
        let issuer = match user.role {
            Some(role)
                if self
                    .catalog
                    .role(role)
                    .is_some_and(|r| r.permissions() == &user.permissions) =>
            {
                Issuer::user_with_role(&self.catalog, account(), scope, role).ok()?
            }
            _ => Issuer::user(account(), scope, user.permissions),
        };
        Some(issuer.with_user_id(user.id.clone()))
    }

    fn pick_key(&self, input: &mut Bytes<'_>) -> Option<KeyId> {
        if self.keys.is_empty() {
            return None;
        }
        self.keys.get(input.below(self.keys.len())).copied()
    }

    /// A caller: a user, or a key as the keyring holds it now (capped).
    fn caller(&self, input: &mut Bytes<'_>) -> Option<(Issuer, Reach, Option<KeyId>)> {
        if input.flag() {
            let index = input.below(USERS);
            let issuer = self.user_issuer(index)?;
            let reach = Reach {
                permissions: *issuer.permissions(),
                scope: issuer.scope(),
                expires_at: None,
            };
            Some((issuer, reach, None))
        } else {
            let id = self.pick_key(input)?;
            let issuer = self.keyring.issuer(&self.catalog, id, self.now).ok()?;
            let reach = Reach {
                permissions: *issuer.permissions(),
                scope: issuer.scope(),
                expires_at: issuer.expires_at(),
            };
            Some((issuer, reach, Some(id)))
        }
    }

    fn spec(&mut self, input: &mut Bytes<'_>) -> KeySpec {
        let mut spec = KeySpec::named(if input.byte() == 0 { " " } else { "k" });
        if input.flag() {
            let count = input.below(4);
            let patterns: Vec<&str> = (0..count)
                .map(|_| PATTERNS[input.below(PATTERNS.len())])
                .collect();
            spec = spec.permissions(patterns);
        }
        if input.byte() < 40 {
            spec = spec.role(ROLES[input.below(ROLES.len())]);
        }
        match input.below(4) {
            0 => spec = spec.account_wide(),
            1 => spec = spec.project(ProjectId::from_u64(input.below(3) as u64)),
            _ => {}
        }
        match input.below(4) {
            0 => spec = spec.ttl_seconds(u64::from(input.byte()) * 60),
            1 => {
                spec = spec.expires_at(self.now + Duration::from_secs(u64::from(input.byte()) * 90))
            }
            _ => {}
        }
        if input.byte() < 60
            && let Ok(limit) = RateLimit::per_period(
                u32::from(input.byte() % 8) + 1,
                u32::from(input.byte() % 4) * 30 + 30,
            )
        {
            spec = spec.rate_limit(limit);
        }
        spec
    }

    fn step(&mut self, input: &mut Bytes<'_>) {
        match input.below(10) {
            0..=3 => self.issue_step(input),
            4..=6 => self.manage_step(input),
            7 => {
                // Demote or promote a user: their caps follow at once.
                let index = input.below(USERS);
                let role = ROLES[input.below(3)];
                let mask = input.byte();
                let permissions = if input.flag() {
                    *self
                        .catalog
                        .role(role)
                        .map(|r| r.permissions())
                        .unwrap_or(&PermissionSet::EMPTY)
                } else {
                    self.catalog
                        .all()
                        .iter()
                        .filter(|p| mask & (1 << (p.index() % 8)) != 0)
                        .collect()
                };
                if let Some(user) = self.users.get_mut(index)
                    && !user.removed
                {
                    user.permissions = permissions;
                    user.role = Some(role);
                    self.keyring.set_creator_cap(&user.id, permissions);
                }
            }
            8 => {
                if input.byte() < 64 {
                    let index = input.below(USERS);
                    if let Some(user) = self.users.get_mut(index) {
                        user.removed = true;
                        user.permissions = PermissionSet::EMPTY;
                        self.keyring.remove_creator(&user.id);
                    }
                }
            }
            _ => self.now = self.now + Duration::from_secs(u64::from(input.byte()) * 30),
        }
    }

    fn issue_step(&mut self, input: &mut Bytes<'_>) {
        if self.keys.len() >= MAX_KEYS {
            return;
        }
        let Some((issuer, reach, issuer_key)) = self.caller(input) else {
            return;
        };
        let spec = self.spec(input);
        let issued = match issue(&self.catalog, &issuer, spec, self.now, &mut self.rng) {
            Ok(issued) => issued,
            Err(IssueError::Invalid(_) | IssueError::Escalation(_) | IssueError::IssuerKey(_)) => {
                return;
            }
            Err(other) => panic!("unexpected refusal {other:?}"),
        };
        let key = issued.key;
        // Within the issuer as it is now.
        assert!(
            key.permissions().is_subset(&reach.permissions),
            "{key:?} beyond {reach:?}"
        );
        assert!(key.scope().is_within(&reach.scope));
        assert_eq!(key.account(), account());
        if let Some(limit) = reach.expires_at {
            assert!(key.expires_at().is_some_and(|e| e <= limit));
        }
        if let Some(limit) = issuer.rate_limit() {
            assert!(key.rate_limit().is_some_and(|r| r.is_within(limit)));
        }
        if let Some(ceiling) = issuer.role().and_then(|r| self.catalog.role(r)) {
            let key_ceiling = key.role_ceiling().and_then(|r| self.catalog.role(r));
            assert!(
                key_ceiling.is_some_and(|k| k.rank() <= ceiling.rank()),
                "{key:?} above {ceiling:?}"
            );
        }
        assert_eq!(key.issued_by(), issuer_key);
        assert_eq!(key.created_by(), issuer.user_id());
        let mut ancestors = issuer_key
            .and_then(|id| self.records.get(&id))
            .map(|r| r.ancestors.clone())
            .unwrap_or_default();
        ancestors.push(reach);
        let creator = key.created_by().unwrap_or_default().to_owned();
        self.keyring
            .insert(key.clone())
            .expect("a fresh key inserts");
        self.records.insert(key.id(), Record { ancestors, creator });
        self.tokens.insert(key.id(), issued.token);
        self.keys.push(key.id());
        self.counts[0] += 1;
    }

    fn manage_step(&mut self, input: &mut Bytes<'_>) {
        let Some((caller, reach, caller_key)) = self.caller(input) else {
            return;
        };
        let Some(target_id) = self.pick_key(input) else {
            return;
        };
        let Some(target) = self.keyring.get(target_id).cloned() else {
            return;
        };
        let kind = input.below(5);
        let op = match kind {
            0 => ManageOp::Read,
            1 => ManageOp::Rotate,
            2 | 3 => ManageOp::Revoke,
            _ => {
                let mut update = KeyUpdate::new();
                if input.flag() {
                    let count = input.below(3) + 1;
                    update = update
                        .permissions((0..count).map(|_| PATTERNS[input.below(PATTERNS.len())]));
                }
                if input.flag() {
                    update = update.expires_at(
                        self.now + Duration::from_secs(u64::from(input.byte()) * 60 + 1),
                    );
                }
                ManageOp::Update(update)
            }
        };
        let Ok(permit) = manage(&self.catalog, &caller, &target, op.clone(), self.now) else {
            return;
        };
        // The oracle: was it the caller's to do?
        let itself = caller_key == Some(target_id);
        let free = itself && matches!(op, ManageOp::Read | ManageOp::Revoke);
        if !free {
            assert!(
                target.permissions().is_subset(&reach.permissions),
                "{op:?} on a richer key"
            );
            assert!(target.scope().is_within(&reach.scope));
            if let Some(limit) = reach.expires_at {
                assert!(target.expires_at().is_some_and(|e| e <= limit));
            }
            if let Some(limit) = caller.rate_limit() {
                assert!(target.rate_limit().is_some_and(|r| r.is_within(limit)));
            }
            let created = match caller_key {
                Some(id) => target.issued_by() == Some(id),
                None => target.created_by() == caller.user_id(),
            };
            if !itself && !created {
                let others = self
                    .catalog
                    .permission("api-keys:manage-others")
                    .expect("defined");
                assert!(bool::from(reach.permissions.contains(others)));
            }
        }
        match op {
            ManageOp::Read => {}
            ManageOp::Rotate => {
                let token = self
                    .keyring
                    .rotate(&permit, self.now, None, &mut self.rng)
                    .expect("a permitted rotation applies");
                if let Some(old) = self.tokens.insert(target_id, token) {
                    self.dead_tokens.push(old);
                }
            }
            ManageOp::Revoke if kind == 3 => {
                for id in self
                    .keyring
                    .revoke_tree(&permit, self.now)
                    .expect("applies")
                {
                    self.revoked.insert(id);
                }
            }
            ManageOp::Revoke => {
                self.keyring.revoke(&permit, self.now).expect("applies");
                self.revoked.insert(target_id);
            }
            ManageOp::Update(_) => {
                let updated = permit
                    .updated_key()
                    .expect("an update permit carries the key");
                assert!(updated.permissions().is_subset(target.permissions()));
                if let Some(limit) = target.expires_at() {
                    assert!(updated.expires_at().is_some_and(|e| e <= limit));
                }
                assert_eq!(
                    (
                        updated.scope(),
                        updated.account(),
                        updated.rate_limit(),
                        updated.role_ceiling()
                    ),
                    (
                        target.scope(),
                        target.account(),
                        target.rate_limit(),
                        target.role_ceiling()
                    )
                );
                self.keyring.apply_update(&permit).expect("applies");
            }
            _ => panic!("an op the simulation does not make"),
        }
        self.counts[1] += 1;
    }

    /// Probes every live key with a few requests.
    fn check(&mut self, input: &mut Bytes<'_>) {
        let all = self.catalog.all();
        let permissions: Vec<_> = all.iter().collect();
        for id in &self.keys {
            let token = &self.tokens[id];
            let key = self.keyring.get(*id).expect("keys are never removed here");
            let record = &self.records[id];
            let creator = self.users.iter().find(|u| u.id == record.creator);
            let cap = creator.map_or(PermissionSet::ALL, |u| u.permissions);
            for _ in 0..2 {
                let permission = permissions[input.below(permissions.len())];
                let mut action = Action::new(permission);
                if input.byte() < 50 {
                    action = action.at_account_level();
                }
                let resource = match input.below(4) {
                    0 => Resource::account(account()),
                    1 => Resource::listing(account()),
                    2 => {
                        Resource::in_project(account(), ProjectId::from_u64(input.below(3) as u64))
                    }
                    _ => Resource::listing(AccountId::from_u64(2)),
                };
                let when = self.now + Duration::from_secs(u64::from(input.byte()) * 120);
                let decision =
                    self.keyring
                        .authorize(token.expose_secret(), action, &resource, when);
                assert_eq!(
                    decision,
                    reference::authorize_capped(key, &cap, action, &resource, when),
                    "keyring and reference model disagree on {key:?}"
                );
                if decision == Decision::Allow {
                    assert!(!self.revoked.contains(id));
                    for ancestor in &record.ancestors {
                        assert!(
                            ancestor.allows(action, &resource, when),
                            "{key:?} allowed {action:?} on {resource:?}, beyond ancestor {ancestor:?}"
                        );
                    }
                    assert!(bool::from(cap.contains(action.permission())));
                    self.counts[2] += 1;
                }
            }
            if self.revoked.contains(id) {
                assert!(
                    self.keyring
                        .authenticate(token.expose_secret(), self.now)
                        .is_err()
                );
            }
        }
        for dead in &self.dead_tokens {
            assert!(
                self.keyring
                    .authenticate(dead.expose_secret(), self.now)
                    .is_err()
            );
        }
    }
}
