//! The `keygate` binary end to end: `test` on the seed policy files and on a failing file (exit
//! codes, text and JSON), `matrix` (terminal and HTML), `explain`, and complete `--help`.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed unwrap is a failed test"
)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn keygate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

const SEED_FILES: [&str; 3] = [
    "examples/policies/identitycall.toml",
    "examples/policies/deepgram.toml",
    "examples/policies/voice_agent.toml",
];

/// A temporary file with `text`, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("keygate-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const WRONG: &str = r#"
now = 2026-04-15T10:00:00Z
catalog = { preset = "read_write_delete" }

[[key]]
name = "reader"
permissions = ["read"]

[[check]]
name = "the reader deletes recordings"
key = "reader"
action = "delete"
resource = "project:1"
expect = "allow"
"#;

#[test]
fn test_passes_on_the_seed_files() {
    let output = keygate(&[&["test"][..], &SEED_FILES[..]].concat());
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{}", stderr(&output));
    assert!(
        text.contains("examples/policies/identitycall.toml: "),
        "{text}"
    );
    let total = text.lines().last().unwrap();
    assert!(
        total.starts_with("total: ") && total.contains(" 0 failed"),
        "{total}"
    );
}

#[test]
fn test_exits_1_and_names_the_failing_check() {
    let file = TempFile::new("wrong.toml", WRONG);
    let output = keygate(&["test", SEED_FILES[0], file.path()]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.contains(
            "FAIL check  line 9    the reader deletes recordings\n       expected: allow\n       \
             actual:   deny missing_permission (403 \"Delete permission required\")"
        ),
        "{text}"
    );
    assert!(text.contains(": 0 passed, 1 failed, 0 skipped"), "{text}");
}

#[test]
fn test_exits_1_on_an_invalid_file_and_still_runs_the_others() {
    let file = TempFile::new(
        "bad.toml",
        "now = 2026-04-15T10:00:00Z\ncatalog = { preset = \"rwd\" }\n",
    );
    let output = keygate(&["test", file.path(), SEED_FILES[0]]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("bad.toml:2:22: unknown catalog preset `rwd`"),
        "{err}"
    );
    assert!(
        stdout(&output).contains("identitycall.toml: "),
        "the good file still ran"
    );
}

#[test]
fn test_json_is_one_report_per_file() {
    let file = TempFile::new("wrong-json.toml", WRONG);
    let output = keygate(&["test", "--format", "json", SEED_FILES[1], file.path()]);
    assert_eq!(output.status.code(), Some(1));
    let reports: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 2);
    assert!(reports[0]["cases"].as_array().unwrap().len() >= 10);
    let failed = &reports[1]["cases"][0];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["kind"], "check");
    assert_eq!(failed["name"], "the reader deletes recordings");
    assert_eq!(failed["line"], 9);
    assert_eq!(failed["expected"], "allow");
    assert_eq!(
        failed["differences"][0],
        "outcome: expected allow, got missing_permission"
    );
    let manage = reports[0]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "manage")
        .unwrap();
    assert_eq!(manage["status"], "passed");
}

#[test]
fn matrix_prints_a_table_and_writes_a_page() {
    let out = std::env::temp_dir().join(format!("keygate-cli-{}-matrix.html", std::process::id()));
    let output = keygate(&["matrix", SEED_FILES[0], "--html", out.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let row = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name}: {text}"))
            .to_owned()
    };
    // full-access, analytics, backend, upload-only, support-en, leaked, contractor, and the
    // demoted creator's key, whose write the creator cap takes away everywhere.
    assert_eq!(
        row("write ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        "write ✓ ✓ ✓ ✓ · · · · ✓ ✓ ✓ ✓ ✓ ✓ ✓ ✓ A ✓ ✓ S R R R R E E E E · · · ·"
    );
    assert!(text.contains("1 = project:42"), "{text}");
    let page = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(
        !page.contains("<script") && !page.contains("http"),
        "self-contained"
    );
    assert!(page.contains(r#"title="support-en: write on project:7 → out_of_scope (404)""#));
    assert!(
        page.contains("project key, account-level action (403) (3)"),
        "legend counts"
    );
}

#[test]
fn explain_walks_the_rules_in_order() {
    let output = keygate(&[
        "explain",
        SEED_FILES[0],
        "--key",
        "support-en",
        "--action",
        "write",
        "--account-level",
        "--resource",
        "account",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let rules: Vec<&str> = text
        .lines()
        .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(rules.len(), 5, "{text}");
    assert!(rules[0].ends_with("pass"), "{text}");
    assert!(
        rules[2].ends_with("FAIL account_level_action (decides)"),
        "{text}"
    );
    assert!(
        rules[3].ends_with("fail out_of_scope (after the deciding rule)"),
        "{text}"
    );
    assert!(
        text.trim_end()
            .ends_with("decision: deny account_level_action"),
        "{text}"
    );

    let output = keygate(&[
        "explain",
        SEED_FILES[0],
        "--key",
        "nobody",
        "--action",
        "read",
        "--resource",
        "listing",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("unknown key `nobody`"));
}

#[test]
fn help_is_complete() {
    let top = stdout(&keygate(&["--help"]));
    for command in ["test", "matrix", "explain", "audit"] {
        assert!(top.contains(command), "{top}");
        let help = keygate(&[command, "--help"]);
        assert!(help.status.success());
        let text = stdout(&help);
        assert!(text.contains("Usage: keygate"), "{text}");
        assert!(
            text.lines().count() > 8,
            "{command} --help is too thin:\n{text}"
        );
    }
    let explain = stdout(&keygate(&["explain", "--help"]));
    for flag in ["--key", "--action", "--resource", "--account-level", "--at"] {
        assert!(explain.contains(flag), "{explain}");
    }
    assert!(stdout(&keygate(&["matrix", "--help"])).contains("--html"));
    assert!(stdout(&keygate(&["test", "--help"])).contains("--format"));
    let audit = stdout(&keygate(&["audit", "--help"]));
    for flag in ["--database", "--catalog", "--cap"] {
        assert!(audit.contains(flag), "{audit}");
    }
}
