//! The escalation oracle: what each credential handed out may do at most, by lineage, and a
//! verdict on every observed decision.

use core::fmt;

use super::api::{Ceiling, CreateKey, NewKey, Observed, Probe, RootKey};
use crate::catalog::Catalog;
use crate::testing::policy::scope_label;
use crate::timestamp::Timestamp;

/// Tracks every key and credential (token) a run has seen, and what each may do at most.
///
/// A credential's *ceiling* is the meet of everything on its way into the fuzzer's hands: the
/// key's own grant as requested, the ceiling of the credential that created the key, and the
/// ceiling of the credential that obtained this token (by creating the key or rotating it). So a
/// token that key B obtained by rotating a richer key A may do no more than B: if the server lets
/// it do more, B has taken A over. Revoked keys' tokens and rotated-out tokens may do nothing.
///
/// ```
/// use keygate::testing::{Ceiling, CreateKey, NewKey, Observed, Oracle, Probe, RootKey};
/// use keygate::{AccountId, Action, Catalog, Resource, Scope, Timestamp};
/// let catalog = Catalog::read_write_delete();
/// let account = AccountId::from_u64(1);
/// let root = RootKey { id: "k0".into(), token: "t0".into(), ceiling: Ceiling {
///     account, scope: Scope::Account, permissions: catalog.all(), expires_at: None } };
/// let mut oracle = Oracle::new(&catalog, &root);
/// let now = Timestamp::from_unix_seconds(1_000);
///
/// // The root creates a read+write key; that key then rotates the root key, and the server lets
/// // it (a planted bug): the token it gets may still do only read and write.
/// let request = CreateKey { name: "rw".into(), permissions: Some(vec!["read".into(), "write".into()]),
///     scope: None, ttl_seconds: None };
/// let rw = oracle.created(0, &request, NewKey { id: "k1".into(), token: "t1".into() }, now);
/// let stolen = oracle.rotated(rw, 0, "t2".into());
/// let delete = Probe { permission: "delete".into(), action: Action::named(&catalog, "delete")?,
///     resource: Resource::listing(account) };
/// let violation = oracle.judge(stolen, &delete, now, Observed::Allowed).unwrap();
/// assert!(violation.to_string().contains("beyond its lineage"), "{violation}");
/// assert!(oracle.judge(0, &delete, now, Observed::Allowed).is_some(), "the old root token is rotated out");
/// # Ok::<(), keygate::CatalogError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Oracle {
    catalog: Catalog,
    keys: Vec<KeyNode>,
    credentials: Vec<Credential>,
}

#[derive(Debug, Clone)]
struct KeyNode {
    id: String,
    /// The key's own ceiling: its request met with its creator's.
    ceiling: Ceiling,
}

#[derive(Debug, Clone)]
struct Credential {
    token: String,
    key: usize,
    ceiling: Ceiling,
    state: State,
    /// How the fuzzer got it, for reports.
    lineage: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Live,
    Revoked,
    RotatedOut,
}

/// What the oracle flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ViolationKind {
    /// A credential was allowed something its lineage does not allow: an escalation.
    BeyondLineage,
    /// A token of a revoked key was allowed something.
    RevokedKeyWorks,
    /// A token replaced by a rotation was allowed something.
    RotatedTokenWorks,
    /// A credential rotated or revoked a key its lineage does not dominate (more permissions, a
    /// wider scope, a later expiry): a management escalation, even before the stolen token is
    /// used.
    ManagesBeyondLineage,
}

/// One flagged decision: who, what, and why it is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// What kind.
    pub kind: ViolationKind,
    /// The credential, by lineage (`token of k0, from a rotation by token of k1, created by root`).
    pub credential: String,
    /// The request it was allowed.
    pub request: String,
    /// What its lineage allows.
    pub allowed: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ViolationKind::BeyondLineage => "escalation: allowed beyond its lineage",
            ViolationKind::RevokedKeyWorks => "a revoked key still works",
            ViolationKind::RotatedTokenWorks => "a rotated-out token still works",
            ViolationKind::ManagesBeyondLineage => "management escalation",
        };
        write!(
            f,
            "{what}: {} was allowed {}; its lineage allows {}",
            self.credential, self.request, self.allowed
        )
    }
}

impl Oracle {
    /// An oracle whose first key (index 0) and credential (index 0) are `root`'s.
    pub fn new(catalog: &Catalog, root: &RootKey) -> Self {
        Self {
            catalog: catalog.clone(),
            keys: vec![KeyNode {
                id: root.id.clone(),
                ceiling: root.ceiling.clone(),
            }],
            credentials: vec![Credential {
                token: root.token.clone(),
                key: 0,
                ceiling: root.ceiling.clone(),
                state: State::Live,
                lineage: "token of k0 (the root key)".to_owned(),
            }],
        }
    }

    /// How many credentials the run holds (indices `0..n`).
    pub fn credentials(&self) -> usize {
        self.credentials.len()
    }

    /// How many keys the run knows (indices `0..n`).
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// A credential's token.
    pub fn token(&self, credential: usize) -> Option<&str> {
        self.credentials.get(credential).map(|c| c.token.as_str())
    }

    /// A key's id, as the API named it.
    pub fn key_id(&self, key: usize) -> Option<&str> {
        self.keys.get(key).map(|k| k.id.as_str())
    }

    /// The credentials of `key`.
    pub fn credentials_of(&self, key: usize) -> Vec<usize> {
        (0..self.credentials.len())
            .filter(|&c| self.credentials.get(c).is_some_and(|x| x.key == key))
            .collect()
    }

    /// A credential's lineage, in words.
    pub fn lineage(&self, credential: usize) -> &str {
        self.credentials
            .get(credential)
            .map_or("(unknown credential)", |c| c.lineage.as_str())
    }

    /// Records that credential `by` created a key as `request` asked, at about `now` (read after
    /// the reply, so that a requested time to live is bounded generously). Returns the new
    /// key's credential; the key is the next key index.
    pub fn created(
        &mut self,
        by: usize,
        request: &CreateKey,
        new: NewKey,
        now: Timestamp,
    ) -> usize {
        let creator = self.ceiling(by);
        let permissions = match &request.permissions {
            None => creator.permissions,
            // A name the catalog lacks grants nothing; the server should have refused it.
            Some(names) => names
                .iter()
                .filter_map(|n| self.catalog.permission(n))
                .collect(),
        };
        let requested = Ceiling {
            account: creator.account,
            scope: request.scope.unwrap_or(creator.scope),
            permissions,
            expires_at: request
                .ttl_seconds
                .map(|s| now + core::time::Duration::from_secs(s)),
        };
        let ceiling = requested.meet(&creator);
        let key = self.keys.len();
        self.keys.push(KeyNode {
            id: new.id,
            ceiling: ceiling.clone(),
        });
        let lineage = format!("token of k{key}, created by {}", self.lineage(by));
        self.push_credential(new.token, key, ceiling, lineage)
    }

    /// Records that credential `by` rotated `key` and got `token`: the key's earlier tokens are
    /// out, and the new one may do what both the key and `by` may. Returns the new credential.
    pub fn rotated(&mut self, by: usize, key: usize, token: String) -> usize {
        for c in &mut self.credentials {
            if c.key == key && c.state == State::Live {
                c.state = State::RotatedOut;
            }
        }
        let own = self
            .keys
            .get(key)
            .map_or_else(|| self.ceiling(usize::MAX), |k| k.ceiling.clone());
        let ceiling = own.meet(&self.ceiling(by));
        let lineage = format!("token of k{key}, from a rotation by {}", self.lineage(by));
        self.push_credential(token, key, ceiling, lineage)
    }

    /// Records that `key` was revoked: none of its tokens may do anything.
    pub fn revoked(&mut self, key: usize) {
        for c in &mut self.credentials {
            if c.key == key {
                c.state = State::Revoked;
            }
        }
    }

    fn push_credential(
        &mut self,
        token: String,
        key: usize,
        ceiling: Ceiling,
        lineage: String,
    ) -> usize {
        self.credentials.push(Credential {
            token,
            key,
            ceiling,
            state: State::Live,
            lineage,
        });
        self.credentials.len() - 1
    }

    /// The ceiling of a credential; an unknown one may do nothing.
    fn ceiling(&self, credential: usize) -> Ceiling {
        self.credentials.get(credential).map_or_else(
            || Ceiling {
                account: crate::scope::AccountId::from_bytes([0; 16]),
                scope: crate::scope::Scope::Account,
                permissions: crate::catalog::PermissionSet::EMPTY,
                expires_at: None,
            },
            |c| c.ceiling.clone(),
        )
    }

    /// Judges a management operation the server carried out: `credential` rotated or revoked
    /// `key` (`op` names it in the report). A key may always manage itself; otherwise its lineage
    /// must dominate the key: every permission, a scope at least as wide, an expiry no earlier
    /// (within a second: the oracle's expiries are upper bounds read around each request).
    pub fn judge_management(&self, credential: usize, key: usize, op: &str) -> Option<Violation> {
        let c = self.credentials.get(credential)?;
        let target = self.keys.get(key)?;
        let kind = match c.state {
            State::Revoked => ViolationKind::RevokedKeyWorks,
            State::RotatedOut => ViolationKind::RotatedTokenWorks,
            State::Live if c.key == key || dominates(&c.ceiling, &target.ceiling) => return None,
            State::Live => ViolationKind::ManagesBeyondLineage,
        };
        Some(Violation {
            kind,
            credential: c.lineage.clone(),
            request: format!(
                "to {op} k{key}, which may do {}",
                describe(&self.catalog, &target.ceiling)
            ),
            allowed: describe(&self.catalog, &c.ceiling),
        })
    }

    /// Judges one observed decision; `now` is the time read just before the request.
    pub fn judge(
        &self,
        credential: usize,
        probe: &Probe,
        now: Timestamp,
        observed: Observed,
    ) -> Option<Violation> {
        if observed != Observed::Allowed {
            return None;
        }
        let c = self.credentials.get(credential)?;
        let request = format!(
            "{}{} on {}",
            probe.permission,
            if probe.action.is_account_level() {
                " (account-level)"
            } else {
                ""
            },
            describe_resource(&probe.resource)
        );
        let allowed = describe(&self.catalog, &c.ceiling);
        let kind = match c.state {
            State::Revoked => ViolationKind::RevokedKeyWorks,
            State::RotatedOut => ViolationKind::RotatedTokenWorks,
            State::Live if !c.ceiling.allows(probe.action, &probe.resource, now) => {
                ViolationKind::BeyondLineage
            }
            State::Live => return None,
        };
        Some(Violation {
            kind,
            credential: c.lineage.clone(),
            request,
            allowed,
        })
    }
}

/// Whether `outer` may manage a key of ceiling `inner` (DESIGN.md: permissions within, scope
/// within, expiry no later).
fn dominates(outer: &Ceiling, inner: &Ceiling) -> bool {
    let slack = core::time::Duration::from_secs(1);
    inner.account == outer.account
        && inner.permissions.is_subset(&outer.permissions)
        && inner.scope.is_within(&outer.scope)
        && match (outer.expires_at, inner.expires_at) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(o), Some(i)) => i <= o + slack,
        }
}

fn describe_resource(resource: &crate::scope::Resource) -> String {
    let kind = if resource.is_listing() {
        "a listing".to_owned()
    } else if let Some(p) = resource.project() {
        format!("project {p}")
    } else {
        "the account".to_owned()
    };
    format!("{kind} of account {}", resource.account_id())
}

fn describe(catalog: &Catalog, ceiling: &Ceiling) -> String {
    let names: Vec<&str> = catalog.names(&ceiling.permissions).collect();
    let mut text = format!("[{}] in {}", names.join(", "), scope_label(ceiling.scope));
    if let Some(e) = ceiling.expires_at {
        text.push_str(&format!(" until {e}"));
    }
    text
}
