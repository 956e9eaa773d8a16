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
    // Five rules, and the address rule beside rule 1.
    assert_eq!(rules.len(), 6, "{text}");
    assert!(rules[0].ends_with("pass"), "{text}");
    assert!(rules[1].ends_with("pass"), "{text}");
    assert!(
        rules[3].ends_with("FAIL account_level_action (decides)"),
        "{text}"
    );
    assert!(
        rules[4].ends_with("fail out_of_scope (after the deciding rule)"),
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
    for command in ["test", "matrix", "explain", "audit", "scan"] {
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
    let scan = stdout(&keygate(&["scan", "--help"]));
    for flag in ["--prefix", "--length", "--all", "pre-commit"] {
        assert!(scan.contains(flag), "{scan}");
    }
}

/// A checksummed token, fixed by `seed`.
fn checksummed_token(seed: u64) -> String {
    use rand::SeedableRng;
    keygate::TokenFormat::checksummed()
        .mint(&mut rand::rngs::StdRng::seed_from_u64(seed))
        .expose_secret()
        .to_owned()
}

/// A temporary directory, removed with its contents when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("keygate-cli-{}-{name}", std::process::id()));
        std::fs::create_dir_all(path.join("nested")).unwrap();
        Self(path)
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.0.join(name), bytes).unwrap();
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn scan_reports_valid_tokens_redacted_and_exits_1() {
    let (a, b) = (checksummed_token(1), checksummed_token(2));
    let mut typo = a.clone();
    typo.replace_range(10..11, if &a[10..11] == "x" { "y" } else { "x" });
    let dir = TempDir::new("scan");
    dir.write(
        "config.env",
        format!("# keys\nKEY={a}\nOLD={typo}\n").as_bytes(),
    );
    dir.write("nested/app.log", format!("é → Bearer {b}").as_bytes());
    // A NUL in the first bytes: binary, skipped.
    dir.write("nested/blob.bin", format!("\0{b}").as_bytes());
    let output = keygate(&["scan", dir.path()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    let sep = std::path::MAIN_SEPARATOR;
    let (d, a8, b8) = (dir.path(), &a[..8], &b[..8]);
    let expected = format!(
        "{d}{sep}config.env:2:5: {a8}… (checksum ok)\n\
         {d}{sep}nested{sep}app.log:1:12: {b8}… (checksum ok)\n"
    );
    assert_eq!(text, expected);
    assert!(!text.contains(&a[8..]) && !text.contains(&b[8..]), "{text}");

    // --all lists the typo too, without changing the exit code's meaning.
    let all = keygate(&["scan", "--all", dir.path()]);
    assert_eq!(all.status.code(), Some(1));
    assert!(
        stdout(&all).contains(&format!("config.env:3:5: {}… (checksum bad)", &typo[..8])),
        "{}",
        stdout(&all)
    );
}

#[test]
fn scan_exits_0_on_clean_input_and_2_on_errors() {
    let mut typo = checksummed_token(3);
    typo.replace_range(35..36, if typo.ends_with('x') { "y" } else { "x" });
    let clean = TempFile::new("scan-clean.txt", &format!("only a typo: {typo}\n"));
    let output = keygate(&["scan", clean.path()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "");

    let missing = keygate(&["scan", "no/such/file", clean.path()]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("no/such/file"),
        "{}",
        stderr(&missing)
    );

    let bad_prefix = keygate(&["scan", "--prefix", "a b", clean.path()]);
    assert_eq!(bad_prefix.status.code(), Some(2));
    let too_short = keygate(&["scan", "--length", "27", clean.path()]);
    assert_eq!(too_short.status.code(), Some(2));
    assert_eq!(keygate(&["scan"]).status.code(), Some(2));
}

#[test]
fn scan_reads_standard_input_with_another_format() {
    use std::io::Write as _;
    use std::process::Stdio;
    let format = keygate::TokenFormat::new("sk_live_", 40)
        .unwrap()
        .with_checksum()
        .unwrap();
    use rand::SeedableRng;
    let token = format.mint(&mut rand::rngs::StdRng::seed_from_u64(4));
    let mut child = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["scan", "--prefix", "sk_live_", "--length", "40", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let diff = format!(
        "+++ b/src/main.rs\n+const KEY: &str = \"{}\";\n",
        token.expose_secret()
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(diff.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        format!("-:2:21: {} (checksum ok)\n", token)
    );
}
