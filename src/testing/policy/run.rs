//! Running a policy file's issue, manage and matrix cases: each case's outcome against its
//! expectation.

use super::*;

impl PolicyTests {
    pub(super) fn run_issue(&self, case: &IssueCase) -> CaseReport {
        let index = u64::try_from(case.index).unwrap_or(u64::MAX);
        let mut rng = StdRng::seed_from_u64(index);
        let result = self
            .issuer(&case.issuer, case.at)
            .and_then(|issuer| issue(&self.catalog, &issuer, case.spec.clone(), case.at, &mut rng));
        let actual = match &result {
            Ok(issued) => self.describe_key(&issued.key),
            Err(e) => format!(
                "refused {} \"{}\"",
                e.status(),
                e.body(&self.catalog).message()
            ),
        };
        let mut differences = Vec::new();
        let expected = match (&case.expected, &result) {
            (
                IssueExpectation::Issued {
                    permissions,
                    scope,
                    expires_at,
                    role,
                },
                result,
            ) => {
                let mut wanted = vec!["issued".to_owned()];
                if let Some(p) = permissions {
                    wanted.push(format!("permissions {}", self.names(p)));
                }
                if let Some(s) = scope {
                    wanted.push(format!("scope {}", scope_label(*s)));
                }
                if let Some(e) = expires_at {
                    wanted.push(format!("expires at {e}"));
                }
                if let Some(r) = role {
                    wanted.push(format!("role {r}"));
                }
                match result {
                    Err(_) => differences.push("outcome: expected issued, got refused".to_owned()),
                    Ok(issued) => {
                        let key = &issued.key;
                        if let Some(p) = permissions
                            && p != key.permissions()
                        {
                            differences.push(format!(
                                "permissions: expected {}, got {}",
                                self.names(p),
                                self.names(key.permissions())
                            ));
                        }
                        if let Some(s) = scope
                            && *s != key.scope()
                        {
                            differences.push(format!(
                                "scope: expected {}, got {}",
                                scope_label(*s),
                                scope_label(key.scope())
                            ));
                        }
                        if let Some(e) = expires_at
                            && Some(*e) != key.expires_at()
                        {
                            differences.push(format!(
                                "expires_at: expected {e}, got {}",
                                key.expires_at()
                                    .map_or_else(|| "never".to_owned(), |t| t.to_string())
                            ));
                        }
                        if let Some(r) = role
                            && Some(r.as_str()) != key.role()
                        {
                            differences.push(format!(
                                "role: expected {r}, got {}",
                                key.role().unwrap_or("none")
                            ));
                        }
                    }
                }
                wanted.join(", ")
            }
            (IssueExpectation::Refused { status, message }, result) => {
                let wanted = describe_refusal(*status, message.as_deref());
                match result {
                    Ok(_) => differences.push("outcome: expected refused, got issued".to_owned()),
                    Err(e) => {
                        let body = e.body(&self.catalog);
                        compare_refusal(
                            &mut differences,
                            (*status, message.as_deref()),
                            (e.status(), &body.message()),
                        );
                    }
                }
                wanted
            }
        };
        CaseReport {
            kind: CaseKind::Issue,
            name: case.name.clone(),
            line: case.line,
            outcome: CaseOutcome::judged(expected, actual, differences),
        }
    }

    pub(super) fn describe_key(&self, key: &ApiKey) -> String {
        let mut parts = vec![
            format!("issued: permissions {}", self.names(key.permissions())),
            format!("scope {}", scope_label(key.scope())),
        ];
        parts.push(match key.expires_at() {
            Some(e) => format!("expires at {e}"),
            None => "never expires".to_owned(),
        });
        if let Some(role) = key.role() {
            parts.push(format!("role {role}"));
        }
        parts.join(", ")
    }

    /// Runs a `[[manage]]` case through keygate's management decision (`manage()`). Kept in one
    /// place: the only code that knows that API's shape.
    pub(super) fn run_manage(&self, case: &ManageCase) -> CaseReport {
        let op = match case.op {
            ManageAction::Read => ManageOp::Read,
            ManageAction::Rotate => ManageOp::Rotate,
            ManageAction::Revoke => ManageOp::Revoke,
            // Whether the caller may update the key at all: an update that changes nothing.
            ManageAction::Update => ManageOp::Update(KeyUpdate::new()),
        };
        let result: Result<(), (u16, String)> = match self.fixtures.get(case.target) {
            None => Err((404, "Not found".to_owned())),
            Some(target) => self
                .issuer(&case.caller, case.at)
                .map_err(|e| (e.status(), e.body(&self.catalog).message().into_owned()))
                .and_then(|issuer| {
                    manage(&self.catalog, &issuer, &target.key, op, case.at)
                        .map(|_| ())
                        .map_err(|e| (e.status(), e.body(&self.catalog).message().into_owned()))
                }),
        };
        let actual = match &result {
            Ok(()) => "allowed".to_owned(),
            Err((status, message)) => format!("refused {status} \"{message}\""),
        };
        let mut differences = Vec::new();
        let expected = match (&case.expected, &result) {
            (ManageExpectation::Allowed, Ok(())) => "allowed".to_owned(),
            (ManageExpectation::Allowed, Err(_)) => {
                differences.push("outcome: expected allowed, got refused".to_owned());
                "allowed".to_owned()
            }
            (ManageExpectation::Refused { status, message }, result) => {
                let wanted = describe_refusal(*status, message.as_deref());
                match result {
                    Ok(()) => differences.push("outcome: expected refused, got allowed".to_owned()),
                    Err((got_status, got_message)) => compare_refusal(
                        &mut differences,
                        (*status, message.as_deref()),
                        (*got_status, got_message),
                    ),
                }
                wanted
            }
        };
        CaseReport {
            kind: CaseKind::Manage,
            name: case.name.clone(),
            line: case.line,
            outcome: CaseOutcome::judged(expected, actual, differences),
        }
    }

    pub(super) fn run_matrix(&self, expectation: &MatrixExpectation) -> CaseReport {
        let fixture = self.fixtures.get(expectation.key);
        let name = fixture.map_or_else(String::new, |f| format!("access matrix of `{}`", f.name));
        let mut resources = self.matrix_resources();
        for r in expectation.allowed.keys() {
            if !resources.contains(r) {
                resources.push(r.clone());
            }
        }
        let mut differences = Vec::new();
        let mut expected_lines = Vec::new();
        let mut actual_lines = Vec::new();
        if let Some(fixture) = fixture {
            for resource in &resources {
                let wanted = expectation
                    .allowed
                    .get(resource)
                    .copied()
                    .unwrap_or_default();
                let got: PermissionSet = self
                    .catalog
                    .all()
                    .iter()
                    .filter(|p| {
                        authorize(
                            &fixture.key,
                            resource.action(*p),
                            &resource.resource,
                            self.now,
                        )
                        .is_allowed()
                    })
                    .collect();
                expected_lines.push(format!("{resource} {}", self.names(&wanted)));
                actual_lines.push(format!("{resource} {}", self.names(&got)));
                let missing = wanted.intersection(&complement(&self.catalog, &got));
                let extra = got.intersection(&complement(&self.catalog, &wanted));
                if !missing.is_empty() {
                    differences.push(format!(
                        "{resource}: expected but denied {}",
                        self.names(&missing)
                    ));
                }
                if !extra.is_empty() {
                    differences.push(format!(
                        "{resource}: allowed but not expected {}",
                        self.names(&extra)
                    ));
                }
            }
        }
        CaseReport {
            kind: CaseKind::Matrix,
            name,
            line: expectation.line,
            outcome: CaseOutcome::judged(
                expected_lines.join("; "),
                actual_lines.join("; "),
                differences,
            ),
        }
    }
}
