//! [`KeyApi`]: the four operations the escalation fuzzer drives, over a user's own server.

use crate::authorize::Action;
use crate::catalog::PermissionSet;
use crate::scope::{AccountId, Resource, Scope};
use crate::timestamp::Timestamp;

/// A server's key operations, as the escalation fuzzer sees them. Implement it over HTTP (a
/// client against your server on 127.0.0.1) or in process (calling your handlers).
///
/// Credentials are the tokens the API handed out; keys are named by the ids it returned. The
/// fuzzer never looks inside either.
///
/// A *refusal* (any 4xx) is an answer, [`Reply::Refused`]; `Err` is for transport failures only
/// (the server is down, the body is not what the API documents), and fails the run.
pub trait KeyApi {
    /// A transport failure.
    type Error: std::error::Error;

    /// `caller` creates a key as `request` says. The new key's id and token on success.
    fn create(&mut self, caller: &str, request: &CreateKey) -> Result<Reply<NewKey>, Self::Error>;

    /// `caller` regenerates the secret of key `target`. The new token on success.
    fn rotate(&mut self, caller: &str, target: &str) -> Result<Reply<String>, Self::Error>;

    /// `caller` revokes key `target`.
    fn revoke(&mut self, caller: &str, target: &str) -> Result<Reply<()>, Self::Error>;

    /// Does the server let `caller` do `probe`? [`Observed::Unsupported`] for a request the API
    /// cannot express (or not without side effects): the fuzzer skips it.
    fn authorize(&mut self, caller: &str, probe: &Probe) -> Result<Observed, Self::Error>;

    /// The server's current time, read *before* the request that follows. Used for expiry:
    /// keygate itself never reads a clock, so an HTTP implementation reads the system clock and
    /// an in-process one returns its fake clock.
    fn now(&mut self) -> Timestamp;
}

/// What a create request asks for. Names only: the fuzzer picks from the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateKey {
    /// The key's display name.
    pub name: String,
    /// Permission names; `None` asks for the default (the caller's full set).
    pub permissions: Option<Vec<String>>,
    /// `None` asks for the default (the caller's scope).
    pub scope: Option<Scope>,
    /// A time to live, in seconds.
    pub ttl_seconds: Option<u64>,
}

/// A key the API created: its id and its token (shown once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// The id the API names the key by.
    pub id: String,
    /// The secret.
    pub token: String,
}

/// The API's answer to an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    /// Done.
    Done(T),
    /// Refused, with this HTTP status.
    Refused(u16),
}

impl<T> Reply<T> {
    /// The same reply with `f` applied to what was done.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Reply<U> {
        match self {
            Reply::Done(t) => Reply::Done(f(t)),
            Reply::Refused(status) => Reply::Refused(status),
        }
    }
}

/// One request the fuzzer asks about: a permission (by name, and as keygate's [`Action`]) on a
/// resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The permission's name, to pick an endpoint by.
    pub permission: String,
    /// The action, account-level or not.
    pub action: Action,
    /// The resource.
    pub resource: Resource,
}

/// What the server did with a [`Probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// The request was let through.
    Allowed,
    /// Refused, with this HTTP status.
    Denied(u16),
    /// The API cannot express this request; skipped.
    Unsupported,
}

/// The credential a run starts from: a key the fuzzer may use, and everything it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootKey {
    /// The key's id.
    pub id: String,
    /// Its token.
    pub token: String,
    /// What it may do.
    pub ceiling: Ceiling,
}

/// The most a credential may do: an account, a scope within it, permissions, an expiry. The
/// oracle's measure of "more than an ancestor allows".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceiling {
    /// The account.
    pub account: AccountId,
    /// Account-wide, or one project.
    pub scope: Scope,
    /// The permissions.
    pub permissions: PermissionSet,
    /// When it stops, if ever (exclusive).
    pub expires_at: Option<Timestamp>,
}

impl Ceiling {
    /// What both allow: permissions in both, the narrower scope, the earlier expiry. Two
    /// different accounts or projects allow nothing.
    pub fn meet(&self, other: &Ceiling) -> Ceiling {
        let (scope, disjoint) = match (self.scope, other.scope) {
            (Scope::Account, s) | (s, Scope::Account) => (s, false),
            (Scope::Project(a), Scope::Project(b)) => (Scope::Project(a), a != b),
        };
        let permissions = if disjoint || self.account != other.account {
            PermissionSet::EMPTY
        } else {
            self.permissions.intersection(&other.permissions)
        };
        let expires_at = match (self.expires_at, other.expires_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ceiling {
            account: self.account,
            scope,
            permissions,
            expires_at,
        }
    }

    /// Whether the ceiling allows `action` on `resource` at `now`, by keygate's plain
    /// [reference model](crate::testing::reference).
    pub fn allows(&self, action: Action, resource: &Resource, now: Timestamp) -> bool {
        let mut key = crate::key::ApiKey::new(
            crate::key::KeyId::from_bytes([0; 16]),
            "ceiling",
            self.account,
            self.scope,
            self.permissions,
            crate::token::TokenHash::of("ceiling"),
            Timestamp::EPOCH,
        );
        if let Some(e) = self.expires_at {
            key = key.with_expiry(e);
        }
        crate::testing::reference::authorize(&key, action, resource, now).is_allowed()
    }
}
