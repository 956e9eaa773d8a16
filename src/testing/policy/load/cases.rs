//! The cases of a policy file: checks, issues, manages and matrices, each checked against the
//! file's fixtures and catalog.

use super::*;

impl Loader {
    pub(super) fn check(&self, spanned: &Spanned<CheckSchema>) -> Result<Check, PolicyError> {
        let schema = spanned.get_ref();
        let target = match (&schema.key, &schema.token) {
            (Some(key), None) => CheckTarget::Key(self.fixture_index(key)?),
            (None, Some(token)) => CheckTarget::Token(token.get_ref().clone()),
            (Some(_), Some(_)) | (None, None) => {
                return Err(self.err(
                    &spanned.span(),
                    Problem::Conflict(
                        "a check names exactly one of `key` (a fixture key) or `token` (a raw token)"
                            .to_owned(),
                    ),
                ));
            }
        };
        let action = self.action(&schema.action, schema.account_level)?;
        let resource = self.resource(&schema.resource)?;
        let expect = self.outcome(&schema.expect, &CHECK_OUTCOMES)?;
        let expected = if expect == "allow" {
            Expected::Allow
        } else {
            Expected::Deny(expect)
        };
        let who = match &target {
            CheckTarget::Key(i) => self
                .fixtures
                .get(*i)
                .map_or_else(String::new, |f| format!("`{}`", f.name)),
            CheckTarget::Token(_) => "a raw token".to_owned(),
        };
        let name = schema.name.clone().unwrap_or_else(|| {
            format!(
                "{who} {}{} on {}",
                schema.action.get_ref(),
                if schema.account_level {
                    " (account-level)"
                } else {
                    ""
                },
                resource
            )
        });
        Ok(Check {
            name,
            line: self.source.locate(&spanned.span()).line,
            target,
            action,
            resource,
            at: schema.at.as_ref().map_or(self.now, |a| a.get_ref().0),
            expected,
            status: schema.status,
            message: schema.message.clone(),
        })
    }

    pub(super) fn actor(&self, spanned: &Spanned<ActorSchema>) -> Result<Actor, PolicyError> {
        let schema = spanned.get_ref();
        if let Some(key) = &schema.key {
            if schema.user.is_some()
                || schema.role.is_some()
                || schema.permissions.is_some()
                || schema.scope.is_some()
                || schema.account.is_some()
            {
                return Err(self.err(
                    &spanned.span(),
                    Problem::Conflict(
                        "a fixture key acts with its own role, permissions and scope: give `key` \
                         alone, or a user (`user`, `role` or `permissions`, `scope`, `account`)"
                            .to_owned(),
                    ),
                ));
            }
            return Ok(Actor::Key(self.fixture_index(key)?));
        }
        let role = match &schema.role {
            None => None,
            Some(r) => Some(self.role(r)?.name().to_owned()),
        };
        let permissions = match (&schema.permissions, &role) {
            (Some(_), Some(_)) => {
                return Err(self.err(
                    &spanned.span(),
                    Problem::Conflict(
                        "a user holds a `role` or a set of `permissions`, not both".to_owned(),
                    ),
                ));
            }
            (Some(p), None) => Some(self.expand(p)?),
            (None, Some(_)) => None,
            (None, None) => {
                return Err(self.err(
                    &spanned.span(),
                    Problem::Conflict(
                        "an issuer or caller is a fixture `key`, or a user with a `role` or \
                         `permissions`"
                            .to_owned(),
                    ),
                ));
            }
        };
        let scope = match &schema.scope {
            Some(text) => self.scope(text)?,
            None => Scope::Account,
        };
        Ok(Actor::User {
            user: schema.user.clone(),
            account: schema.account.unwrap_or(self.account),
            scope,
            role,
            permissions,
        })
    }

    pub(super) fn spec(&self, schema: &SpecSchema) -> Result<KeySpec, PolicyError> {
        let mut spec = KeySpec::named(
            schema
                .name
                .clone()
                .unwrap_or_else(|| "policy test key".into()),
        );
        if let Some(p) = &schema.permissions {
            spec = spec.permissions(p.iter().cloned());
        }
        if let Some(r) = &schema.role {
            spec = spec.role(r.clone());
        }
        if let Some(s) = &schema.scope {
            spec = spec.scope(self.scope(s)?);
        }
        if let Some(e) = &schema.expires_at {
            spec = spec.expires_at(e.get_ref().0);
        }
        if let Some(t) = schema.ttl_seconds {
            spec = spec.ttl_seconds(t);
        }
        if let Some(c) = &schema.comment {
            spec = spec.comment(c.clone());
        }
        Ok(spec.tags(schema.tags.iter().cloned()))
    }

    pub(super) fn issue(
        &self,
        index: usize,
        spanned: &Spanned<IssueSchema>,
    ) -> Result<IssueCase, PolicyError> {
        let schema = spanned.get_ref();
        let issuer = self.actor(&schema.issuer)?;
        let spec = self.spec(schema.spec.get_ref())?;
        let expect = self.outcome(&schema.expect, &["issued", "refused"])?;
        let has_key_expectations = schema.permissions.is_some()
            || schema.scope.is_some()
            || schema.expires_at.is_some()
            || schema.role.is_some();
        let expected = if expect == "issued" {
            if schema.status.is_some() || schema.message.is_some() {
                return Err(self.err(
                    &schema.expect.span(),
                    Problem::Conflict(
                        "`status` and `message` describe a refusal: an issued key is checked with \
                         `permissions`, `scope`, `expires_at` and `role`"
                            .to_owned(),
                    ),
                ));
            }
            IssueExpectation::Issued {
                permissions: match &schema.permissions {
                    None => None,
                    Some(p) => Some(self.expand(p)?),
                },
                scope: match &schema.scope {
                    None => None,
                    Some(s) => Some(self.scope(s)?),
                },
                expires_at: schema.expires_at.as_ref().map(|e| e.get_ref().0),
                role: schema.role.clone(),
            }
        } else {
            if has_key_expectations {
                return Err(self.err(
                    &schema.expect.span(),
                    Problem::Conflict(
                        "`permissions`, `scope`, `expires_at` and `role` describe an issued key: \
                         a refusal is checked with `status` and `message`"
                            .to_owned(),
                    ),
                ));
            }
            IssueExpectation::Refused {
                status: schema.status,
                message: schema.message.clone(),
            }
        };
        let name = schema.name.clone().unwrap_or_else(|| {
            format!(
                "{} issues `{}`",
                self.actor_name(&issuer),
                schema
                    .spec
                    .get_ref()
                    .name
                    .as_deref()
                    .unwrap_or("policy test key")
            )
        });
        Ok(IssueCase {
            index,
            name,
            line: self.source.locate(&spanned.span()).line,
            issuer,
            spec,
            at: schema.at.as_ref().map_or(self.now, |a| a.get_ref().0),
            expected,
        })
    }

    pub(super) fn actor_name(&self, actor: &Actor) -> String {
        match actor {
            Actor::Key(i) => self
                .fixtures
                .get(*i)
                .map_or_else(String::new, |f| format!("key `{}`", f.name)),
            Actor::User { user, role, .. } => {
                let who = user.as_deref().unwrap_or("a user");
                match role {
                    Some(r) => format!("{who} ({r})"),
                    None => who.to_owned(),
                }
            }
        }
    }

    pub(super) fn manage(
        &self,
        spanned: &Spanned<ManageSchema>,
    ) -> Result<ManageCase, PolicyError> {
        let schema = spanned.get_ref();
        let caller = self.actor(&schema.caller)?;
        let target = self.fixture_index(&schema.target)?;
        let op = match schema.op.get_ref().as_str() {
            "read" => ManageAction::Read,
            "rotate" => ManageAction::Rotate,
            "revoke" => ManageAction::Revoke,
            "update" => ManageAction::Update,
            other => {
                return Err(self.err(
                    &schema.op.span(),
                    Problem::UnknownName {
                        kind: NameKind::Operation,
                        name: other.to_owned(),
                        expected: ["read", "rotate", "revoke", "update"]
                            .map(str::to_owned)
                            .to_vec(),
                    },
                ));
            }
        };
        let expect = self.outcome(&schema.expect, &["allowed", "refused"])?;
        let expected = if expect == "allowed" {
            ManageExpectation::Allowed
        } else {
            ManageExpectation::Refused {
                status: schema.status,
                message: schema.message.clone(),
            }
        };
        let name = schema.name.clone().unwrap_or_else(|| {
            format!(
                "{} {} `{}`",
                self.actor_name(&caller),
                schema.op.get_ref(),
                schema.target.get_ref()
            )
        });
        Ok(ManageCase {
            name,
            line: self.source.locate(&spanned.span()).line,
            caller,
            target,
            op,
            at: schema.at.as_ref().map_or(self.now, |a| a.get_ref().0),
            expected,
        })
    }

    pub(super) fn matrices(&self) -> Result<Vec<MatrixExpectation>, PolicyError> {
        let mut out = Vec::new();
        for (key_name, table) in &self.file.matrix {
            let key = self.fixture_index(key_name)?;
            let mut allowed = BTreeMap::new();
            for (resource, patterns) in table.get_ref() {
                let parsed = self.resource(resource)?;
                allowed.insert(parsed, self.expand(patterns)?);
            }
            out.push(MatrixExpectation {
                key,
                line: self.source.locate(&key_name.span()).line,
                allowed,
            });
        }
        Ok(out)
    }
}
