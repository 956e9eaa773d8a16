//! Who can do what: every fixture key × every permission × every matrix resource.

use crate::decision::Decision;
use crate::testing::policy::{PolicyTests, ResourceRef, scope_label};
use crate::timestamp::Timestamp;

/// One row of the matrix: a fixture key and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixKey {
    /// The fixture name.
    pub name: String,
    /// Its scope, role, lineage and state, in words (`project:42, role member, issued by ci`).
    pub summary: String,
}

/// Every fixture key's decision for every permission on every matrix resource, at one instant.
///
/// The account column asks the account-level form of each action (creating or destroying
/// projects); listings and projects ask the plain form.
///
/// ```
/// use keygate::{Decision, Deny};
/// use keygate::testing::PolicyTests;
/// let tests = PolicyTests::from_toml(r#"
///     now = 2026-04-15T10:00:00Z
///     catalog = { preset = "read_write_delete" }
///     [[key]]
///     name = "uploader"
///     scope = "project:42"
///     permissions = ["read", "write"]
/// "#, "m.toml")?;
/// let matrix = tests.matrix();
/// let labels: Vec<String> = matrix.resources.iter().map(|r| r.to_string()).collect();
/// assert_eq!(labels, ["account", "listing", "project:42"]);
/// assert_eq!(matrix.permissions, ["read", "write", "delete"]);
/// // uploader, on project:42, write: allowed; on the account: an account-level action.
/// assert_eq!(matrix.decision(0, 2, 1), Some(Decision::Allow));
/// assert_eq!(matrix.decision(0, 0, 1), Some(Decision::Deny(Deny::AccountLevelAction)));
/// # Ok::<(), keygate::testing::PolicyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessMatrix {
    /// The instant decided at: the file's `now`.
    pub at: Timestamp,
    /// The catalog's permission names, in catalog order.
    pub permissions: Vec<String>,
    /// The columns' resources.
    pub resources: Vec<ResourceRef>,
    /// The rows' keys, in file order.
    pub keys: Vec<MatrixKey>,
    /// `cells[key][resource][permission]`.
    pub cells: Vec<Vec<Vec<Decision>>>,
}

impl AccessMatrix {
    /// The decision for a key, resource and permission, by index.
    pub fn decision(&self, key: usize, resource: usize, permission: usize) -> Option<Decision> {
        self.cells.get(key)?.get(resource)?.get(permission).copied()
    }
}

pub(super) fn build(tests: &PolicyTests) -> AccessMatrix {
    let catalog = tests.catalog();
    let all: Vec<_> = catalog.all().iter().collect();
    let resources = tests.matrix_resources();
    let mut keys = Vec::new();
    let mut cells = Vec::new();
    for fixture in &tests.fixtures {
        let key = &fixture.key;
        let mut parts = vec![scope_label(key.scope())];
        if let Some(role) = key.role() {
            parts.push(format!("role {role}"));
        }
        if let Some(parent) = fixture.parent.and_then(|i| tests.fixtures.get(i)) {
            parts.push(format!("issued by {}", parent.name));
        }
        if key.is_revoked() {
            parts.push("revoked".to_owned());
        } else if key.is_expired(tests.now) {
            parts.push("expired".to_owned());
        } else if let Some(e) = key.expires_at() {
            parts.push(format!("expires {e}"));
        }
        keys.push(MatrixKey {
            name: fixture.name.clone(),
            summary: parts.join(", "),
        });
        cells.push(
            resources
                .iter()
                .map(|r| {
                    all.iter()
                        // With the key's creator cap, as the file's keyring decides.
                        .map(|p| {
                            tests
                                .keyring
                                .authorize_key(key, r.action(*p), r.resource(), tests.now)
                        })
                        .collect()
                })
                .collect(),
        );
    }
    AccessMatrix {
        at: tests.now,
        permissions: all
            .iter()
            .filter_map(|p| catalog.name(*p))
            .map(str::to_owned)
            .collect(),
        resources,
        keys,
        cells,
    }
}
