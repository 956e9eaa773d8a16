//! Policy test files: fixtures and expected answers in TOML, run against keygate's decisions.
//!
//! The format is documented in `docs/POLICY_TESTS.md`; in short, a file has a fixed `now`, a
//! `[catalog]`, fixture keys (`[[key]]`), and cases: `[[check]]` (an `authorize` question and its
//! expected answer), `[[issue]]` (a key request and whether it is issued or refused),
//! `[[manage]]` (a management operation through keygate's management decision) and `[matrix.KEY]` (everything a key may do, per resource).

mod error;
mod load;
mod matrix;
mod report;
mod run;
mod schema;

use std::collections::BTreeMap;
use std::path::Path;

use rand::SeedableRng;
use rand::rngs::StdRng;

pub use error::{Location, NameKind, PolicyError, Problem};
pub use matrix::{AccessMatrix, MatrixKey};
pub use report::{CaseKind, CaseOutcome, CaseReport, PolicyReport};

use crate::authorize::{Action, authorize};
use crate::catalog::{Catalog, PermissionSet};
use crate::decision::Decision;
use crate::issue::{IssueError, Issuer, KeySpec, KeyUpdate, ManageOp, issue, manage};
use crate::key::ApiKey;
use crate::keyring::Keyring;
use crate::response::Refusal;
use crate::scope::{AccountId, ProjectId, Resource, Scope};
use crate::testing::reference::{self, Explanation, deny_name};
use crate::timestamp::Timestamp;
use error::Source;

/// A loaded policy file: its catalog, fixture keys and cases, every name resolved.
///
/// ```
/// use keygate::testing::PolicyTests;
/// let tests = PolicyTests::from_toml(r#"
///     now = 2026-04-15T10:00:00Z
///     catalog = { preset = "read_write_delete" }
///
///     [[key]]
///     name = "uploader"
///     scope = "project:42"
///     permissions = ["read", "write"]
///
///     [[check]]
///     key = "uploader"
///     action = "write"
///     account_level = true
///     resource = "account"
///     expect = "account_level_action"
///     status = 403
/// "#, "uploader.toml")?;
/// let report = tests.run();
/// assert_eq!((report.passed(), report.failed()), (1, 0));
/// report.assert_passes();
/// # Ok::<(), keygate::testing::PolicyError>(())
/// ```
#[derive(Debug)]
pub struct PolicyTests {
    source: Source,
    catalog: Catalog,
    now: Timestamp,
    account: AccountId,
    projects: Vec<ProjectId>,
    fixtures: Vec<Fixture>,
    keyring: Keyring,
    checks: Vec<Check>,
    issues: Vec<IssueCase>,
    manages: Vec<ManageCase>,
    matrices: Vec<MatrixExpectation>,
}

/// A fixture key, with the token that finds it in the file's keyring.
#[derive(Debug)]
struct Fixture {
    name: String,
    key: ApiKey,
    token: String,
    parent: Option<usize>,
}

/// A resource as a policy file names it: `account`, `listing` or `project:ID`, with `@ACCOUNT`
/// when it is not the file's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRef {
    label: String,
    resource: Resource,
}

impl ResourceRef {
    /// The resource.
    pub fn resource(&self) -> &Resource {
        &self.resource
    }

    /// The action the matrix and matrix expectations ask for `permission` here: account-level on
    /// the account itself (creating or destroying projects), plain elsewhere.
    pub fn action(&self, permission: crate::catalog::Permission) -> Action {
        let action = Action::new(permission);
        if self.resource.project().is_none() && !self.resource.is_listing() {
            action.at_account_level()
        } else {
            action
        }
    }
}

impl core::fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.label)
    }
}

impl PartialOrd for ResourceRef {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ResourceRef {
    /// By label: within one file a label names exactly one resource.
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.label.cmp(&other.label)
    }
}

#[derive(Debug)]
enum CheckTarget {
    Key(usize),
    Token(String),
}

#[derive(Debug)]
enum Expected {
    Allow,
    Deny(String),
}

#[derive(Debug)]
struct Check {
    name: String,
    line: usize,
    target: CheckTarget,
    action: Action,
    resource: ResourceRef,
    at: Timestamp,
    expected: Expected,
    status: Option<u16>,
    message: Option<String>,
}

#[derive(Debug)]
enum Actor {
    Key(usize),
    User {
        user: Option<String>,
        account: AccountId,
        scope: Scope,
        role: Option<String>,
        permissions: Option<PermissionSet>,
    },
}

#[derive(Debug)]
struct IssueCase {
    index: usize,
    name: String,
    line: usize,
    issuer: Actor,
    spec: KeySpec,
    at: Timestamp,
    expected: IssueExpectation,
}

#[derive(Debug)]
enum IssueExpectation {
    Issued {
        permissions: Option<PermissionSet>,
        scope: Option<Scope>,
        expires_at: Option<Timestamp>,
        role: Option<String>,
    },
    Refused {
        status: Option<u16>,
        message: Option<String>,
    },
}

/// A management operation, as `[[manage]]` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ManageAction {
    Read,
    Rotate,
    Revoke,
    Update,
}

#[derive(Debug)]
struct ManageCase {
    name: String,
    line: usize,
    caller: Actor,
    target: usize,
    op: ManageAction,
    at: Timestamp,
    expected: ManageExpectation,
}

#[derive(Debug)]
enum ManageExpectation {
    Allowed,
    Refused {
        status: Option<u16>,
        message: Option<String>,
    },
}

#[derive(Debug)]
struct MatrixExpectation {
    key: usize,
    line: usize,
    allowed: BTreeMap<ResourceRef, PermissionSet>,
}

impl PolicyTests {
    /// Reads and loads a policy file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Loads a policy file's text; `file_name` names it in errors and reports.
    pub fn from_toml(text: &str, file_name: &str) -> Result<Self, PolicyError> {
        load::load(text, file_name)
    }

    /// The file's name, as given to the loader.
    pub fn file_name(&self) -> &str {
        &self.source.name
    }

    /// The file's catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The file's `now`.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The fixture keys' names, in file order.
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.fixtures.iter().map(|f| f.name.as_str())
    }

    /// The fixture key called `name`.
    pub fn key(&self, name: &str) -> Option<&ApiKey> {
        self.fixture(name).map(|f| &f.key)
    }

    fn fixture(&self, name: &str) -> Option<&Fixture> {
        self.fixtures.iter().find(|f| f.name == name)
    }

    /// Runs every case and reports each outcome.
    pub fn run(&self) -> PolicyReport {
        let mut cases = Vec::new();
        cases.extend(self.checks.iter().map(|c| self.run_check(c)));
        cases.extend(self.issues.iter().map(|c| self.run_issue(c)));
        cases.extend(self.manages.iter().map(|c| self.run_manage(c)));
        cases.extend(self.matrices.iter().map(|m| self.run_matrix(m)));
        PolicyReport {
            file: self.source.name.clone(),
            cases,
        }
    }

    /// Every rule's outcome, in order, for one request of a fixture key: `action` is a permission
    /// name, `resource` is written as in the file (`project:42`), `at` defaults to the file's
    /// `now`. Errors name what was not found.
    pub fn explain(
        &self,
        key: &str,
        action: &str,
        account_level: bool,
        resource: &str,
        at: Option<Timestamp>,
    ) -> Result<Explanation, Problem> {
        let fixture = self.fixture(key).ok_or_else(|| Problem::UnknownName {
            kind: NameKind::Key,
            name: key.to_owned(),
            expected: self.key_names().map(str::to_owned).collect(),
        })?;
        let permission = self
            .catalog
            .permission(action)
            .ok_or_else(|| Problem::UnknownName {
                kind: NameKind::Permission,
                name: action.to_owned(),
                expected: self
                    .catalog
                    .names(&self.catalog.all())
                    .map(str::to_owned)
                    .collect(),
            })?;
        let mut action = Action::new(permission);
        if account_level {
            action = action.at_account_level();
        }
        let resource = ResourceRef::parse(resource, self.account)?;
        Ok(reference::explain(
            &self.catalog,
            &fixture.key,
            action,
            &resource.resource,
            at.unwrap_or(self.now),
        ))
    }

    /// The resources the access matrix shows: the account itself (account-level actions), a
    /// listing, and each of the file's projects.
    pub fn matrix_resources(&self) -> Vec<ResourceRef> {
        let mut out = vec![
            ResourceRef {
                label: "account".to_owned(),
                resource: Resource::account(self.account),
            },
            ResourceRef {
                label: "listing".to_owned(),
                resource: Resource::listing(self.account),
            },
        ];
        out.extend(self.projects.iter().map(|p| ResourceRef {
            label: format!("project:{p}"),
            resource: Resource::in_project(self.account, *p),
        }));
        out
    }

    /// What every fixture key may do at the file's `now`: every permission on every matrix
    /// resource, with the reason for each denial.
    pub fn matrix(&self) -> AccessMatrix {
        matrix::build(self)
    }

    fn run_check(&self, check: &Check) -> CaseReport {
        let (token, key) = match &check.target {
            CheckTarget::Key(i) => match self.fixtures.get(*i) {
                Some(f) => (f.token.as_str(), Some(&f.key)),
                None => ("", None),
            },
            CheckTarget::Token(t) => (t.as_str(), None),
        };
        let decision =
            self.keyring
                .authorize(token, check.action, &check.resource.resource, check.at);
        let outcome = match key.map(|k| {
            let cap = self
                .keyring
                .cap_of(k.id())
                .copied()
                .unwrap_or(PermissionSet::ALL);
            reference::authorize_capped(k, &cap, check.action, &check.resource.resource, check.at)
        }) {
            Some(model) if model != decision => CaseOutcome::Failed {
                expected: self.describe_decision(model),
                actual: self.describe_decision(decision),
                differences: vec![
                    "keygate's authorize disagrees with its reference model: a keygate bug"
                        .to_owned(),
                ],
            },
            _ => self.compare_check(check, decision),
        };
        CaseReport {
            kind: CaseKind::Check,
            name: check.name.clone(),
            line: check.line,
            outcome,
        }
    }

    fn describe_decision(&self, decision: Decision) -> String {
        match decision {
            Decision::Allow => "allow".to_owned(),
            Decision::Deny(deny) => format!(
                "deny {} ({} \"{}\")",
                deny_name(&deny),
                deny.status(),
                deny.message(&self.catalog)
            ),
        }
    }

    fn compare_check(&self, check: &Check, decision: Decision) -> CaseOutcome {
        let (status, message, reason) = match decision {
            Decision::Allow => (200, String::new(), "allow"),
            Decision::Deny(deny) => (
                deny.status(),
                deny.message(&self.catalog).into_owned(),
                deny_name(&deny),
            ),
        };
        let wanted = match &check.expected {
            Expected::Allow => "allow",
            Expected::Deny(reason) => reason.as_str(),
        };
        let mut differences = Vec::new();
        if wanted != reason {
            differences.push(format!("outcome: expected {wanted}, got {reason}"));
        }
        compare_refusal(
            &mut differences,
            (check.status, check.message.as_deref()),
            (status, &message),
        );
        if differences.is_empty() {
            return CaseOutcome::Passed;
        }
        let mut expected = if wanted == "allow" {
            "allow".to_owned()
        } else {
            format!("deny {wanted}")
        };
        if let Some(s) = check.status {
            expected.push_str(&format!(", status {s}"));
        }
        if let Some(m) = &check.message {
            expected.push_str(&format!(", message containing \"{m}\""));
        }
        CaseOutcome::Failed {
            expected,
            actual: self.describe_decision(decision),
            differences,
        }
    }

    fn issuer(&self, actor: &Actor, at: Timestamp) -> Result<Issuer, IssueError> {
        match actor {
            Actor::Key(i) => match self.fixtures.get(*i) {
                Some(f) => Issuer::key(&self.catalog, &f.key, at),
                None => Err(IssueError::NoKeyManagementPermission),
            },
            Actor::User {
                user,
                account,
                scope,
                role,
                permissions,
            } => {
                let issuer = match (role, permissions) {
                    (Some(role), _) => {
                        Issuer::user_with_role(&self.catalog, *account, *scope, role)
                            // The loader resolved the role against this catalog.
                            .unwrap_or_else(|_| {
                                Issuer::user(*account, *scope, PermissionSet::EMPTY)
                            })
                    }
                    (None, permissions) => {
                        Issuer::user(*account, *scope, permissions.unwrap_or_default())
                    }
                };
                Ok(match user {
                    Some(id) => issuer.with_user_id(id.clone()),
                    None => issuer,
                })
            }
        }
    }

    fn names(&self, set: &PermissionSet) -> String {
        format!(
            "[{}]",
            self.catalog.names(set).collect::<Vec<_>>().join(", ")
        )
    }
}

/// What a refusal case expects, in words: `refused 403, message containing "..."`.
fn describe_refusal(status: Option<u16>, message: Option<&str>) -> String {
    let mut wanted = "refused".to_owned();
    if let Some(s) = status {
        wanted.push_str(&format!(" {s}"));
    }
    if let Some(m) = message {
        wanted.push_str(&format!(", message containing \"{m}\""));
    }
    wanted
}

/// Notes how a refusal's (status, message) differs from the expected ones, where the case states
/// them (the message is expected to be contained in the one given).
fn compare_refusal(
    differences: &mut Vec<String>,
    (want_status, want_message): (Option<u16>, Option<&str>),
    (status, message): (u16, &str),
) {
    if let Some(s) = want_status
        && s != status
    {
        differences.push(format!("status: expected {s}, got {status}"));
    }
    if let Some(m) = want_message
        && !message.contains(m)
    {
        differences.push(format!(
            "message: expected one containing \"{m}\", got \"{message}\""
        ));
    }
}

fn complement(catalog: &Catalog, set: &PermissionSet) -> PermissionSet {
    catalog
        .all()
        .iter()
        .filter(|p| !bool::from(set.contains(*p)))
        .collect()
}

/// `account` or `project:ID`, as files write scopes.
pub(crate) fn scope_label(scope: Scope) -> String {
    match scope {
        Scope::Account => "account".to_owned(),
        Scope::Project(p) => format!("project:{p}"),
    }
}
