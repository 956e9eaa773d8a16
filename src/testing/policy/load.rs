//! From the TOML schema to resolved cases: every name checked against the catalog and the
//! fixtures, every error located.

mod cases;

use core::ops::Range;
use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::error::{NameKind, PolicyError, Problem, Source};
use super::schema::{
    ActorSchema, CatalogSchema, CheckSchema, FileSchema, IssueSchema, KeySchema, ManageSchema,
    SpecSchema,
};
use super::{
    Actor, Check, CheckTarget, Expected, Fixture, IssueCase, IssueExpectation, ManageAction,
    ManageCase, ManageExpectation, MatrixExpectation, PolicyTests, ResourceRef,
};
use crate::authorize::Action;
use crate::catalog::{
    Catalog, CatalogError, CatalogSpec, ImplicationSpec, PermissionSet, RoleSpec,
};
use crate::issue::KeySpec;
use crate::key::{ApiKey, KeyId};
use crate::keyring::Keyring;
use crate::scope::{AccountId, ProjectId, Resource, Scope};
use crate::timestamp::Timestamp;
use crate::token::TokenFormat;

/// The presets a file may name instead of listing permissions.
const PRESETS: [&str; 1] = ["read_write_delete"];

/// The outcomes a `[[check]]` may expect.
pub(crate) const CHECK_OUTCOMES: [&str; 8] = [
    "allow",
    "unknown_key",
    "revoked",
    "expired",
    "other_account",
    "account_level_action",
    "out_of_scope",
    "missing_permission",
];

const RESOURCE_SYNTAX: &str =
    "`account`, `listing` or `project:ID`, optionally followed by `@ACCOUNT` (e.g. `project:42@2`)";
const SCOPE_SYNTAX: &str = "`account` or `project:ID`";

/// Loads a file's text.
pub(super) fn load(text: &str, name: &str) -> Result<PolicyTests, PolicyError> {
    let source = Source {
        name: name.to_owned(),
        text: text.to_owned(),
    };
    let file: FileSchema = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        source.error(&span, Problem::Syntax(e.message().trim().to_owned()))
    })?;
    Loader::new(source, file)?.finish()
}

/// A deterministic token and id for a fixture key, from its name: the same file gives the same
/// keyring every run.
fn fixture_secret(name: &str) -> (KeyId, crate::token::Token) {
    let digest = Sha256::digest(name.as_bytes());
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&digest);
    let mut rng = StdRng::from_seed(seed);
    let id = KeyId::random(&mut rng);
    (id, TokenFormat::default().mint(&mut rng))
}

struct Loader {
    source: Source,
    file: FileSchema,
    catalog: Catalog,
    account: AccountId,
    now: Timestamp,
    fixtures: Vec<Fixture>,
}

impl Loader {
    fn new(source: Source, file: FileSchema) -> Result<Self, PolicyError> {
        let catalog = build_catalog(&source, &file.catalog)?;
        let account = file.account.unwrap_or(AccountId::from_u64(1));
        let now = file.now.get_ref().0;
        Ok(Self {
            source,
            file,
            catalog,
            account,
            now,
            fixtures: Vec::new(),
        })
    }

    fn err(&self, span: &Range<usize>, problem: Problem) -> PolicyError {
        self.source.error(span, problem)
    }

    fn finish(mut self) -> Result<PolicyTests, PolicyError> {
        let keys = std::mem::take(&mut self.file.keys);
        for key in &keys {
            let fixture = self.fixture(key)?;
            self.fixtures.push(fixture);
        }
        let mut keyring = Keyring::from_keys(
            TokenFormat::default(),
            self.fixtures.iter().map(|f| f.key.clone()),
        )
        .map_err(|e| {
            self.err(
                &self.file.now.span(),
                Problem::Conflict(format!("fixture keys: {e}")),
            )
        })?;
        let caps = std::mem::take(&mut self.file.caps);
        for (creator, patterns) in &caps {
            keyring.set_creator_cap(creator.get_ref(), self.expand(patterns)?);
        }

        let checks = std::mem::take(&mut self.file.checks)
            .iter()
            .map(|c| self.check(c))
            .collect::<Result<Vec<_>, _>>()?;
        let issues = std::mem::take(&mut self.file.issues)
            .iter()
            .enumerate()
            .map(|(i, c)| self.issue(i, c))
            .collect::<Result<Vec<_>, _>>()?;
        let manages = std::mem::take(&mut self.file.manages)
            .iter()
            .map(|c| self.manage(c))
            .collect::<Result<Vec<_>, _>>()?;
        let matrices = self.matrices()?;

        let mut projects: Vec<ProjectId> = self.file.projects.clone();
        if projects.is_empty() {
            for fixture in &self.fixtures {
                if let Scope::Project(p) = fixture.key.scope()
                    && !projects.contains(&p)
                {
                    projects.push(p);
                }
            }
        }
        if projects.is_empty() {
            projects.push(ProjectId::from_u64(1));
        }

        Ok(PolicyTests {
            source: self.source,
            catalog: self.catalog,
            now: self.now,
            account: self.account,
            projects,
            fixtures: self.fixtures,
            keyring,
            checks,
            issues,
            manages,
            matrices,
        })
    }

    fn fixture_index(&self, name: &Spanned<String>) -> Result<usize, PolicyError> {
        self.fixtures
            .iter()
            .position(|f| f.name == *name.get_ref())
            .ok_or_else(|| {
                self.err(
                    &name.span(),
                    Problem::UnknownName {
                        kind: NameKind::Key,
                        name: name.get_ref().clone(),
                        expected: self.fixtures.iter().map(|f| f.name.clone()).collect(),
                    },
                )
            })
    }

    /// Expands names or patterns, locating the first that fails.
    fn expand(&self, patterns: &[Spanned<String>]) -> Result<PermissionSet, PolicyError> {
        let mut set = PermissionSet::EMPTY;
        for pattern in patterns {
            let one = self
                .catalog
                .expand([pattern.get_ref()])
                .map_err(|e| self.err(&pattern.span(), pattern_problem(&self.catalog, e)))?;
            set = set.union(&one);
        }
        Ok(set)
    }

    fn role(&self, name: &Spanned<String>) -> Result<&crate::catalog::Role, PolicyError> {
        self.catalog.role(name.get_ref()).ok_or_else(|| {
            self.err(
                &name.span(),
                Problem::UnknownName {
                    kind: NameKind::Role,
                    name: name.get_ref().clone(),
                    expected: self
                        .catalog
                        .roles()
                        .iter()
                        .map(|r| r.name().to_owned())
                        .collect(),
                },
            )
        })
    }

    fn scope(&self, text: &Spanned<String>) -> Result<Scope, PolicyError> {
        parse_scope(text.get_ref()).map_err(|p| self.err(&text.span(), p))
    }

    fn fixture(&self, spanned: &Spanned<KeySchema>) -> Result<Fixture, PolicyError> {
        let schema = spanned.get_ref();
        let name = schema.name.get_ref().clone();
        if self.fixtures.iter().any(|f| f.name == name) {
            return Err(self.err(
                &schema.name.span(),
                Problem::Duplicate {
                    kind: NameKind::Key,
                    name,
                },
            ));
        }
        let parent = match &schema.parent {
            None => None,
            Some(p) => Some(self.fixture_index(p)?),
        };
        let parent_key = parent.and_then(|i| self.fixtures.get(i)).map(|f| &f.key);

        let role = match &schema.role {
            None => None,
            Some(r) => Some(self.role(r)?),
        };
        let explicit = match &schema.permissions {
            None => None,
            Some(p) => Some(self.expand(p)?),
        };
        if let (Some(role), Some(set)) = (role, explicit)
            && !set.is_subset(role.permissions())
        {
            return Err(self.err(
                &spanned.span(),
                Problem::Conflict(format!(
                    "key `{name}`: its permissions must lie within its role {}",
                    role.name()
                )),
            ));
        }
        let permissions = match (explicit, role, parent_key) {
            (Some(set), _, _) => set,
            (None, Some(role), _) => *role.permissions(),
            (None, None, Some(parent)) => *parent.permissions(),
            (None, None, None) => {
                return Err(self.err(
                    &spanned.span(),
                    Problem::Conflict(format!(
                        "key `{name}` needs `permissions` or `role` (or a `parent` to inherit from)"
                    )),
                ));
            }
        };
        let scope = match (&schema.scope, parent_key) {
            (Some(text), _) => self.scope(text)?,
            (None, Some(parent)) => parent.scope(),
            (None, None) => Scope::Account,
        };
        let account = schema
            .account
            .or(parent_key.map(ApiKey::account))
            .unwrap_or(self.account);
        let expires_at = schema
            .expires_at
            .as_ref()
            .map(|e| e.get_ref().0)
            .or(parent_key.and_then(ApiKey::expires_at));

        let (id, token) = fixture_secret(&name);
        let mut key = ApiKey::new(
            id,
            name.clone(),
            account,
            scope,
            permissions,
            token.hash(),
            Timestamp::EPOCH,
        );
        if let Some(e) = expires_at {
            key = key.with_expiry(e);
        }
        if schema.revoked {
            key.revoke(Timestamp::EPOCH);
        }
        key.role = role.map(|r| r.name().to_owned());
        key.created_by = schema.created_by.clone();
        key.issued_by = parent_key.map(ApiKey::id);
        if role.is_none() {
            // A rank ceiling is inherited even by role-less keys.
            key.role_ceiling = parent_key.and_then(|p| p.role_ceiling().map(str::to_owned));
        }

        if let (Some(parent), Some(parent_name)) = (parent_key, &schema.parent)
            && let Err(reason) = within_parent(&self.catalog, &key, parent)
        {
            return Err(self.err(
                &spanned.span(),
                Problem::ExceedsParent {
                    key: name,
                    parent: parent_name.get_ref().clone(),
                    reason,
                },
            ));
        }
        Ok(Fixture {
            name,
            key,
            token: token.expose_secret().to_owned(),
            parent,
        })
    }

    fn action(&self, name: &Spanned<String>, account_level: bool) -> Result<Action, PolicyError> {
        let permission = self.catalog.permission(name.get_ref()).ok_or_else(|| {
            self.err(
                &name.span(),
                Problem::UnknownName {
                    kind: NameKind::Permission,
                    name: name.get_ref().clone(),
                    expected: self
                        .catalog
                        .names(&self.catalog.all())
                        .map(str::to_owned)
                        .collect(),
                },
            )
        })?;
        let action = Action::new(permission);
        Ok(if account_level {
            action.at_account_level()
        } else {
            action
        })
    }

    fn resource(&self, text: &Spanned<String>) -> Result<ResourceRef, PolicyError> {
        ResourceRef::parse(text.get_ref(), self.account).map_err(|p| self.err(&text.span(), p))
    }

    fn outcome(&self, text: &Spanned<String>, accepted: &[&str]) -> Result<String, PolicyError> {
        if accepted.contains(&text.get_ref().as_str()) {
            Ok(text.get_ref().clone())
        } else {
            Err(self.err(
                &text.span(),
                Problem::UnknownName {
                    kind: NameKind::Outcome,
                    name: text.get_ref().clone(),
                    expected: accepted.iter().map(|s| (*s).to_owned()).collect(),
                },
            ))
        }
    }
}

/// A key's catalog: a preset, or names and roles through [`CatalogSpec`], with any refused name
/// located.
fn build_catalog(
    source: &Source,
    spanned: &Spanned<CatalogSchema>,
) -> Result<Catalog, PolicyError> {
    let schema = spanned.get_ref();
    match (&schema.preset, &schema.permissions) {
        (Some(preset), None) => {
            if !schema.roles.is_empty() {
                return Err(source.error(
                    &spanned.span(),
                    Problem::Conflict(
                        "a catalog preset brings its own roles: list `permissions` to define roles"
                            .to_owned(),
                    ),
                ));
            }
            match preset.get_ref().as_str() {
                "read_write_delete" => Ok(Catalog::read_write_delete()),
                other => Err(source.error(
                    &preset.span(),
                    Problem::UnknownName {
                        kind: NameKind::Preset,
                        name: other.to_owned(),
                        expected: PRESETS.map(str::to_owned).to_vec(),
                    },
                )),
            }
        }
        (None, Some(permissions)) => {
            let spec = CatalogSpec {
                permissions: permissions.iter().map(|p| p.get_ref().clone()).collect(),
                roles: schema
                    .roles
                    .iter()
                    .map(|r| RoleSpec {
                        name: r.name.get_ref().clone(),
                        permissions: r.permissions.iter().map(|p| p.get_ref().clone()).collect(),
                    })
                    .collect(),
                implications: schema
                    .implications
                    .iter()
                    .map(|i| ImplicationSpec {
                        if_: i.if_.get_ref().clone(),
                        then: i.then.iter().map(|t| t.get_ref().clone()).collect(),
                    })
                    .collect(),
            };
            Catalog::try_from(spec).map_err(|e| {
                // Point at the name the error is about, wherever it was written.
                let named = catalog_error_name(&e);
                let names = permissions
                    .iter()
                    .chain(
                        schema
                            .roles
                            .iter()
                            .flat_map(|r| std::iter::once(&r.name).chain(&r.permissions)),
                    )
                    .chain(
                        schema
                            .implications
                            .iter()
                            .flat_map(|i| std::iter::once(&i.if_).chain(&i.then)),
                    );
                let span = named
                    .and_then(|n| names.clone().rfind(|s| s.get_ref() == n))
                    .map_or_else(|| spanned.span(), Spanned::span);
                let problem = match e {
                    CatalogError::UnknownPermission(name) => Problem::UnknownName {
                        kind: NameKind::Permission,
                        name,
                        expected: permissions.iter().map(|p| p.get_ref().clone()).collect(),
                    },
                    other => Problem::Catalog(other),
                };
                source.error(&span, problem)
            })
        }
        (Some(_), Some(_)) | (None, None) => Err(source.error(
            &spanned.span(),
            Problem::Conflict(
                "a catalog is a `preset` (read_write_delete) or a list of `permissions`, not both"
                    .to_owned(),
            ),
        )),
    }
}

fn catalog_error_name(error: &CatalogError) -> Option<&str> {
    match error {
        CatalogError::InvalidName(n)
        | CatalogError::Duplicate(n)
        | CatalogError::UnknownPermission(n)
        | CatalogError::UnknownRole(n)
        | CatalogError::InvalidPattern(n)
        | CatalogError::NoMatch(n)
        | CatalogError::EmptyImplication(n) => Some(n),
        _ => None,
    }
}

/// A refused pattern, as a located problem.
fn pattern_problem(catalog: &Catalog, error: CatalogError) -> Problem {
    match error {
        CatalogError::UnknownPermission(name) => Problem::UnknownName {
            kind: NameKind::Permission,
            name,
            expected: catalog.names(&catalog.all()).map(str::to_owned).collect(),
        },
        CatalogError::NoMatch(found) => Problem::Malformed {
            what: "permission pattern",
            found,
            expected: "a pattern matching at least one permission of the catalog",
        },
        CatalogError::InvalidPattern(found) => Problem::Malformed {
            what: "permission pattern",
            found,
            expected: "a permission name, `resource:*`, `*:action` or `*`",
        },
        other => Problem::Catalog(other),
    }
}

/// `account` or `project:ID`.
pub(crate) fn parse_scope(text: &str) -> Result<Scope, Problem> {
    let malformed = || Problem::Malformed {
        what: "scope",
        found: text.to_owned(),
        expected: SCOPE_SYNTAX,
    };
    match text.split_once(':') {
        None if text == "account" => Ok(Scope::Account),
        Some(("project", id)) => id.parse().map(Scope::Project).map_err(|_| malformed()),
        _ => Err(malformed()),
    }
}

impl ResourceRef {
    /// Parses `account`, `listing` or `project:ID`, each optionally `@ACCOUNT`; the account is
    /// `default_account` unless named.
    pub(crate) fn parse(text: &str, default_account: AccountId) -> Result<Self, Problem> {
        let malformed = || Problem::Malformed {
            what: "resource",
            found: text.to_owned(),
            expected: RESOURCE_SYNTAX,
        };
        let (kind, account) = match text.split_once('@') {
            None => (text, default_account),
            Some((kind, account)) => (kind, account.parse().map_err(|_| malformed())?),
        };
        let (resource, mut label) = match kind.split_once(':') {
            None if kind == "account" => (Resource::account(account), "account".to_owned()),
            None if kind == "listing" => (Resource::listing(account), "listing".to_owned()),
            Some(("project", id)) => {
                let project: ProjectId = id.parse().map_err(|_| malformed())?;
                (
                    Resource::in_project(account, project),
                    format!("project:{project}"),
                )
            }
            _ => return Err(malformed()),
        };
        if account != default_account {
            label = format!("{label}@{account}");
        }
        Ok(Self { resource, label })
    }
}

/// Whether `child` stays within `parent`: permissions, scope, account, expiry, role rank.
fn within_parent(catalog: &Catalog, child: &ApiKey, parent: &ApiKey) -> Result<(), String> {
    let excess: Vec<&str> = child
        .permissions()
        .iter()
        .filter(|p| !bool::from(parent.permissions().contains(*p)))
        .filter_map(|p| catalog.name(p))
        .collect();
    if !excess.is_empty() {
        return Err(format!(
            "permissions the parent lacks: {}",
            excess.join(", ")
        ));
    }
    if child.account() != parent.account() {
        return Err(format!(
            "account {} is not the parent's account {}",
            child.account(),
            parent.account()
        ));
    }
    if !child.scope().is_within(&parent.scope()) {
        return Err("its scope lies outside the parent's".to_owned());
    }
    if let Some(limit) = parent.expires_at()
        && child.expires_at().is_none_or(|e| e > limit)
    {
        return Err(format!("it outlives the parent, which expires at {limit}"));
    }
    let rank = |key: &ApiKey| {
        key.role_ceiling()
            .and_then(|r| catalog.role(r))
            .map(|r| r.rank())
    };
    if let (Some(child_rank), Some(parent_rank)) = (rank(child), rank(parent))
        && child_rank > parent_rank
    {
        return Err(format!(
            "role {} ranks above the parent's role {}",
            child.role_ceiling().unwrap_or_default(),
            parent.role_ceiling().unwrap_or_default()
        ));
    }
    Ok(())
}
