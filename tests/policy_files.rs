//! Policy test files (`keygate::testing::PolicyTests`): the example files pass; a wrong
//! expectation fails with a report naming the check and showing expected against actual; a bad
//! file is refused with its line, column, the unknown name and what was expected.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: a failed unwrap is a failed test"
)]

use keygate::testing::{
    CaseKind, CaseOutcome, NameKind, PolicyError, PolicyReport, PolicyTests, Problem,
};

const HEADER: &str = r#"
now = 2026-04-15T10:00:00Z
catalog = { preset = "read_write_delete" }

[[key]]
name = "uploader"
scope = "project:42"
permissions = ["read", "write"]

[[key]]
name = "admin"
role = "admin"
"#;

fn load(text: &str) -> Result<PolicyTests, PolicyError> {
    PolicyTests::from_toml(text, "t.toml")
}

fn run(cases: &str) -> PolicyReport {
    load(&format!("{HEADER}{cases}")).unwrap().run()
}

/// The error's (line, column, problem).
fn error_at(text: &str) -> (usize, usize, Problem) {
    match load(text).unwrap_err() {
        PolicyError::Invalid { location, problem } => (location.line, location.column, problem),
        other => panic!("not a located error: {other}"),
    }
}

#[test]
fn example_policy_files_pass() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policies");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "expected the three seed policy files, found {files:?}"
    );
    for file in files {
        let report = PolicyTests::from_path(&file).unwrap().run();
        report.assert_passes();
        assert!(
            report.passed() >= 10,
            "{}: too few cases\n{report}",
            file.display()
        );
    }
}

#[test]
fn a_wrong_expectation_fails_naming_the_check() {
    let report = run(r#"
[[check]]
name = "uploader creates projects"
key = "uploader"
action = "write"
account_level = true
resource = "account"
expect = "allow"

[[check]]
key = "uploader"
action = "read"
resource = "project:42"
expect = "allow"
"#);
    assert_eq!((report.passed(), report.failed()), (1, 1), "{report}");
    let text = report.to_string();
    let expected = "\
FAIL check  line 14   uploader creates projects
       expected: allow
       actual:   deny account_level_action (403 \"Project-scoped API keys cannot create or destroy projects\")
       - outcome: expected allow, got account_level_action";
    assert!(text.contains(expected), "{text}");
    assert!(
        text.ends_with("t.toml: 1 passed, 1 failed, 0 skipped"),
        "{text}"
    );
    let failure = report.failures().next().unwrap();
    assert_eq!(failure.kind, CaseKind::Check);
    assert_eq!(failure.line, 14);

    let panic = std::panic::catch_unwind(|| report.assert_passes()).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(message.contains("uploader creates projects"), "{message}");
}

#[test]
fn status_and_message_are_checked_too() {
    let report = run(r#"
[[check]]
key = "uploader"
action = "read"
resource = "project:7"
expect = "out_of_scope"
status = 403
message = "Forbidden"
"#);
    let failure = report.failures().next().unwrap();
    let CaseOutcome::Failed { differences, .. } = &failure.outcome else {
        panic!("not failed: {report}");
    };
    assert_eq!(
        differences,
        &[
            "status: expected 403, got 404".to_owned(),
            "message: expected one containing \"Forbidden\", got \"Not found\"".to_owned(),
        ]
    );
    assert_eq!(failure.name, "`uploader` read on project:7");
}

#[test]
fn every_deny_reason_can_be_expected() {
    let report = PolicyTests::from_toml(
        r#"
now = 2026-04-15T10:00:00Z
catalog = { preset = "read_write_delete" }
[[key]]
name = "p"
scope = "project:1"
permissions = ["read"]
[[key]]
name = "gone"
permissions = ["read"]
revoked = true
[[key]]
name = "old"
permissions = ["read"]
expires_at = 2026-04-01T00:00:00Z

[[check]]
token = "idc_notarealkeynotarealkeynotareal0"
action = "read"
resource = "listing"
expect = "unknown_key"
status = 401
[[check]]
key = "gone"
action = "read"
resource = "listing"
expect = "revoked"
[[check]]
key = "old"
action = "read"
resource = "listing"
expect = "expired"
[[check]]
key = "old"
action = "read"
resource = "listing"
at = 2026-03-01T00:00:00Z
expect = "allow"
[[check]]
key = "p"
action = "read"
resource = "project:1@2"
expect = "other_account"
status = 404
[[check]]
key = "p"
action = "read"
account_level = true
resource = "account"
expect = "account_level_action"
[[check]]
key = "p"
action = "read"
resource = "project:2"
expect = "out_of_scope"
[[check]]
key = "p"
action = "delete"
resource = "project:1"
expect = "missing_permission"
message = "Delete permission required"
"#,
        "reasons.toml",
    )
    .unwrap()
    .run();
    report.assert_passes();
    assert_eq!(report.passed(), 8);
}

#[test]
fn issue_cases_compare_the_issued_key_or_the_refusal() {
    let report = run(r#"
[[issue]]
issuer = { key = "admin" }
spec = { name = "ci", scope = "project:42", permissions = ["read"] }
expect = "issued"
permissions = ["read"]
scope = "project:42"

[[issue]]
issuer = { user = "alice", role = "member" }
spec = { name = "x", role = "admin" }
expect = "refused"
status = 403
message = "exceeds the issuer's role member"

[[issue]]
name = "wrong: a member mints a writer"
issuer = { role = "member" }
spec = { name = "w", permissions = ["write"] }
expect = "issued"

[[issue]]
name = "wrong: blank names are fine"
issuer = { role = "owner" }
spec = { name = " " }
expect = "refused"
status = 403
"#);
    assert_eq!((report.passed(), report.failed()), (2, 2), "{report}");
    let text = report.to_string();
    assert!(
        text.contains(
            "FAIL issue  line 28   wrong: a member mints a writer\n       expected: issued\n       \
             actual:   refused 403 \"Cannot grant permissions the issuer does not hold: write\""
        ),
        "{text}"
    );
    assert!(text.contains("- status: expected 403, got 422"), "{text}");
}

#[test]
fn matrix_expectations_list_everything_a_key_reaches() {
    let report = run(r#"
[matrix.uploader]
listing = ["read", "write"]
"project:42" = ["read", "write"]

[matrix.admin]
account = ["read", "write"]
listing = ["read"]
"project:42" = ["read", "write"]
"#);
    assert_eq!((report.passed(), report.failed()), (1, 1), "{report}");
    let failure = report.failures().next().unwrap();
    assert_eq!(failure.name, "access matrix of `admin`");
    let CaseOutcome::Failed { differences, .. } = &failure.outcome else {
        panic!("{report}");
    };
    assert_eq!(
        differences,
        &["listing: allowed but not expected [write]".to_owned()]
    );
}

#[test]
fn manage_cases_run_through_the_management_decision() {
    let report = run(r#"
[[manage]]
name = "a project key cannot even see an account-wide key"
caller = { key = "uploader" }
target = "admin"
op = "rotate"
expect = "refused"
status = 404

[[manage]]
name = "wrong: a read+write key takes over an admin key"
caller = { key = "uploader" }
target = "uploader"
op = "revoke"
expect = "refused"

[[manage]]
caller = { role = "owner" }
target = "admin"
op = "update"
expect = "allowed"
"#);
    assert_eq!(
        (report.passed(), report.failed(), report.unsupported()),
        (2, 1, 0),
        "{report}"
    );
    let text = report.to_string();
    assert!(
        text.contains(
            "FAIL manage line 22   wrong: a read+write key takes over an admin key\n       \
             expected: refused\n       actual:   allowed\n       \
             - outcome: expected refused, got allowed"
        ),
        "{text}"
    );
}

#[test]
fn unknown_fixture_key_is_located_with_a_suggestion() {
    let text = format!(
        "{HEADER}\n[[check]]\nkey = \"uploder\"\naction = \"read\"\nresource = \"listing\"\nexpect = \"allow\"\n"
    );
    let (line, column, problem) = error_at(&text);
    assert_eq!((line, column), (15, 7));
    assert_eq!(
        problem,
        Problem::UnknownName {
            kind: NameKind::Key,
            name: "uploder".into(),
            expected: vec!["uploader".into(), "admin".into()],
        }
    );
    assert_eq!(
        load(&text).unwrap_err().to_string(),
        "t.toml:15:7: unknown key `uploder`; did you mean `uploader`? expected one of: uploader, admin"
    );
}

#[test]
fn unknown_permissions_are_located_in_keys_checks_and_matrices() {
    let in_key = "now = 2026-04-15T10:00:00Z\ncatalog = { preset = \"read_write_delete\" }\n\
                  [[key]]\nname = \"k\"\npermissions = [\"read\", \"wirte\"]\n";
    let (line, column, problem) = error_at(in_key);
    assert_eq!((line, column), (5, 24));
    assert!(matches!(
        problem,
        Problem::UnknownName { kind: NameKind::Permission, ref name, ref expected }
            if name == "wirte" && expected == &["delete", "read", "write"]
    ));

    let in_check = format!(
        "{HEADER}[[check]]\nkey = \"admin\"\naction = \"publish\"\nresource = \"listing\"\nexpect = \"allow\"\n"
    );
    let (line, column, problem) = error_at(&in_check);
    assert_eq!((line, column), (15, 10));
    assert!(matches!(
        problem,
        Problem::UnknownName {
            kind: NameKind::Permission,
            ..
        }
    ));

    let in_matrix = format!("{HEADER}[matrix.admin]\nlisting = [\"read\", \"agents:*\"]\n");
    let (line, column, problem) = error_at(&in_matrix);
    assert_eq!((line, column), (14, 20));
    assert!(matches!(
        problem,
        Problem::Malformed {
            what: "permission pattern",
            ..
        }
    ));
}

#[test]
fn malformed_values_and_unknown_fields_are_located() {
    let bad_resource = format!(
        "{HEADER}[[check]]\nkey = \"admin\"\naction = \"read\"\nresource = \"projects/42\"\nexpect = \"allow\"\n"
    );
    let err = load(&bad_resource).unwrap_err().to_string();
    assert!(
        err.starts_with("t.toml:16:12: invalid resource `projects/42`; expected `account`, `listing` or `project:ID`"),
        "{err}"
    );

    let unknown_field = format!(
        "{HEADER}[[check]]\nkey = \"admin\"\naction = \"read\"\nresource = \"listing\"\nexpct = \"allow\"\n"
    );
    let (line, column, problem) = error_at(&unknown_field);
    assert_eq!((line, column), (17, 1));
    let Problem::Syntax(message) = problem else {
        panic!("not a syntax problem");
    };
    assert!(message.contains("unknown field `expct`"), "{message}");
    assert!(
        message.contains("`expect`"),
        "the expected fields are listed: {message}"
    );

    let unknown_outcome = format!(
        "{HEADER}[[check]]\nkey = \"admin\"\naction = \"read\"\nresource = \"listing\"\nexpect = \"denied\"\n"
    );
    let (line, column, problem) = error_at(&unknown_outcome);
    assert_eq!((line, column), (17, 10));
    assert!(matches!(
        problem,
        Problem::UnknownName { kind: NameKind::Outcome, ref expected, .. } if expected.len() == 8
    ));

    let (line, _, problem) =
        error_at("now = \"yesterday\"\ncatalog = { preset = \"read_write_delete\" }\n");
    assert_eq!(line, 1);
    assert!(
        matches!(problem, Problem::Syntax(ref m) if m.contains("invalid date-time `yesterday`"))
    );

    let (line, column, _) =
        error_at("now = 2026-04-15T10:00:00Z\ncatalog = { preset = \"rwd\" }\n");
    assert_eq!((line, column), (2, 22));
}

#[test]
fn fixture_keys_must_stay_within_their_parent_and_be_unique() {
    let escalating = format!(
        "{HEADER}[[key]]\nname = \"child\"\nparent = \"uploader\"\npermissions = [\"delete\"]\n"
    );
    let (line, _, problem) = error_at(&escalating);
    assert_eq!(line, 13);
    assert_eq!(
        problem.to_string(),
        "key `child` exceeds its parent `uploader`: permissions the parent lacks: delete"
    );

    let outside =
        format!("{HEADER}[[key]]\nname = \"child\"\nparent = \"uploader\"\nscope = \"account\"\n");
    assert!(matches!(
        error_at(&outside).2,
        Problem::ExceedsParent { .. }
    ));

    let inherited = format!("{HEADER}[[key]]\nname = \"child\"\nparent = \"uploader\"\n");
    let tests = load(&inherited).unwrap();
    let child = tests.key("child").unwrap();
    assert_eq!(
        child.permissions(),
        tests.key("uploader").unwrap().permissions()
    );
    assert_eq!(child.scope(), tests.key("uploader").unwrap().scope());

    let duplicate = format!("{HEADER}[[key]]\nname = \"admin\"\nrole = \"member\"\n");
    let (line, column, problem) = error_at(&duplicate);
    assert_eq!((line, column), (14, 8));
    assert!(matches!(
        problem,
        Problem::Duplicate {
            kind: NameKind::Key,
            ..
        }
    ));
}

#[test]
fn catalog_errors_point_at_the_name() {
    let text = "now = 2026-04-15T10:00:00Z\n[catalog]\npermissions = [\"a:read\", \"a:write\", \"a:read\"]\n";
    let (line, column, problem) = error_at(text);
    assert_eq!((line, column), (3, 37));
    assert_eq!(
        problem.to_string(),
        "invalid catalog: duplicate name \"a:read\""
    );

    let text = "now = 2026-04-15T10:00:00Z\n[catalog]\npermissions = [\"a:read\"]\n\
                [[catalog.roles]]\nname = \"viewer\"\npermissions = [\"a:raed\"]\n";
    let (line, column, problem) = error_at(text);
    assert_eq!((line, column), (6, 16));
    assert!(matches!(
        problem,
        Problem::UnknownName {
            kind: NameKind::Permission,
            ..
        }
    ));
}

#[test]
fn fixture_tokens_are_stable_so_reports_are_reproducible() {
    let a = load(HEADER).unwrap();
    let b = load(HEADER).unwrap();
    assert_eq!(
        a.key("uploader").unwrap().token_hash(),
        b.key("uploader").unwrap().token_hash()
    );
    assert_ne!(
        a.key("uploader").unwrap().token_hash(),
        a.key("admin").unwrap().token_hash()
    );
}

#[test]
fn explain_walks_every_rule() {
    let tests = load(HEADER).unwrap();
    let explanation = tests
        .explain("uploader", "delete", false, "project:7", None)
        .unwrap();
    let text = explanation.to_string();
    assert!(text.contains("4. a project-scoped key reaches only its project (and listings) FAIL out_of_scope (decides)"), "{text}");
    assert!(
        text.contains("fail missing_permission (after the deciding rule)"),
        "{text}"
    );
    assert!(text.ends_with("decision: deny out_of_scope"), "{text}");
    assert!(matches!(
        tests.explain("nobody", "read", false, "listing", None),
        Err(Problem::UnknownName {
            kind: NameKind::Key,
            ..
        })
    ));
}

#[test]
fn the_documented_example_passes() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/POLICY_TESTS.md"))
        .unwrap();
    let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let report = PolicyTests::from_toml(&doc[start..end], "POLICY_TESTS.md")
        .unwrap()
        .run();
    report.assert_passes();
    assert_eq!((report.passed(), report.unsupported()), (8, 0), "{report}");
}
