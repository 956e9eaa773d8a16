//! The policy file as TOML gives it: every name keeps its span, so that a later error (an unknown
//! key, permission or role) points at the line and column where it was written.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::scope::{AccountId, ProjectId};
use crate::timestamp::Timestamp;

/// A whole policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSchema {
    /// The instant every check runs at unless it names its own.
    pub now: Spanned<Instant>,
    /// The account fixture keys and resources belong to unless they name another (default 1).
    pub account: Option<AccountId>,
    pub catalog: Spanned<CatalogSchema>,
    /// The projects the access matrix shows (default: the fixture keys' projects).
    #[serde(default)]
    pub projects: Vec<ProjectId>,
    #[serde(default, rename = "key")]
    pub keys: Vec<Spanned<KeySchema>>,
    #[serde(default, rename = "check")]
    pub checks: Vec<Spanned<CheckSchema>>,
    #[serde(default, rename = "issue")]
    pub issues: Vec<Spanned<IssueSchema>>,
    #[serde(default, rename = "manage")]
    pub manages: Vec<Spanned<ManageSchema>>,
    /// Expected access matrices: key name → resource → the permissions allowed there.
    #[serde(default)]
    pub matrix: BTreeMap<Spanned<String>, Spanned<MatrixTable>>,
    /// Creator caps: a creator (a key's `created_by`) → the permissions (names or patterns) they
    /// hold now. Their keys do no more than that, as `Keyring::set_creator_cap` makes them.
    #[serde(default)]
    pub caps: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
}

/// One `[matrix.KEY]` table: resource → the permissions (names or patterns) allowed there.
pub(super) type MatrixTable = BTreeMap<Spanned<String>, Vec<Spanned<String>>>;

/// `[catalog]`: a preset, or permission names and ranked roles (a `CatalogSpec` with spans).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CatalogSchema {
    pub preset: Option<Spanned<String>>,
    pub permissions: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub roles: Vec<RoleSchema>,
    #[serde(default)]
    pub implications: Vec<ImplicationSchema>,
}

/// One implication: `{ if = "*:write", then = ["*:read"] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImplicationSchema {
    #[serde(rename = "if")]
    pub if_: Spanned<String>,
    pub then: Vec<Spanned<String>>,
}

/// One role, lowest rank first.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RoleSchema {
    pub name: Spanned<String>,
    pub permissions: Vec<Spanned<String>>,
}

/// `[[key]]`: a fixture key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeySchema {
    pub name: Spanned<String>,
    pub account: Option<AccountId>,
    /// `"account"` or `"project:ID"`.
    pub scope: Option<Spanned<String>>,
    /// Names or patterns, expanded against the catalog.
    pub permissions: Option<Vec<Spanned<String>>>,
    pub role: Option<Spanned<String>>,
    pub expires_at: Option<Spanned<Instant>>,
    #[serde(default)]
    pub revoked: bool,
    pub created_by: Option<String>,
    /// The fixture key that issued this one.
    pub parent: Option<Spanned<String>>,
}

/// `[[check]]`: one `authorize` question and its expected answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckSchema {
    pub name: Option<String>,
    pub key: Option<Spanned<String>>,
    /// A raw token instead of a fixture key: looked up like a presented one.
    pub token: Option<Spanned<String>>,
    pub action: Spanned<String>,
    #[serde(default)]
    pub account_level: bool,
    pub resource: Spanned<String>,
    pub at: Option<Spanned<Instant>>,
    pub expect: Spanned<String>,
    pub status: Option<u16>,
    pub message: Option<String>,
}

/// An issuer or a management caller: a fixture key, or a user with a role or permissions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ActorSchema {
    pub key: Option<Spanned<String>>,
    pub user: Option<String>,
    pub role: Option<Spanned<String>>,
    pub permissions: Option<Vec<Spanned<String>>>,
    pub scope: Option<Spanned<String>>,
    pub account: Option<AccountId>,
}

/// What an `[[issue]]` asks for: a `KeySpec`. Its names are *not* checked on load: a request
/// naming an unknown permission is a 422 to expect, not a broken file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SpecSchema {
    pub name: Option<String>,
    pub permissions: Option<Vec<String>>,
    pub role: Option<String>,
    pub scope: Option<Spanned<String>>,
    pub expires_at: Option<Spanned<Instant>>,
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub comment: Option<String>,
}

/// `[[issue]]`: an issuer, a spec, and the expected outcome.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IssueSchema {
    pub name: Option<String>,
    pub issuer: Spanned<ActorSchema>,
    pub spec: Spanned<SpecSchema>,
    pub at: Option<Spanned<Instant>>,
    pub expect: Spanned<String>,
    pub status: Option<u16>,
    pub message: Option<String>,
    pub permissions: Option<Vec<Spanned<String>>>,
    pub scope: Option<Spanned<String>>,
    pub expires_at: Option<Spanned<Instant>>,
    pub role: Option<String>,
}

/// `[[manage]]`: a caller, a target key, an operation, and the expected outcome.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ManageSchema {
    pub name: Option<String>,
    pub caller: Spanned<ActorSchema>,
    pub target: Spanned<String>,
    pub op: Spanned<String>,
    pub at: Option<Spanned<Instant>>,
    pub expect: Spanned<String>,
    pub status: Option<u16>,
    pub message: Option<String>,
}

/// An instant written as a TOML date-time (`2026-04-15T10:00:00Z`) or an RFC 3339 string.
#[derive(Debug, Clone, Copy)]
pub(super) struct Instant(pub Timestamp);

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = match toml::Value::deserialize(deserializer)? {
            toml::Value::String(text) => text,
            toml::Value::Datetime(datetime) => datetime.to_string(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected an RFC 3339 date-time such as 2026-04-15T10:00:00Z, found a {}",
                    other.type_str()
                )));
            }
        };
        text.parse().map(Instant).map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid date-time `{text}`; expected RFC 3339 with an offset, such as \
                 2026-04-15T10:00:00Z"
            ))
        })
    }
}
