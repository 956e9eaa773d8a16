//! What running a policy file found: every case's outcome, and a readable expected-vs-actual
//! diff for each failure.

use core::fmt;

use serde::Serialize;

/// Which section of the file a case comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseKind {
    /// A `[[check]]`.
    Check,
    /// An `[[issue]]`.
    Issue,
    /// A `[[manage]]`.
    Manage,
    /// A `[matrix.KEY]` table.
    Matrix,
}

impl fmt::Display for CaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: the report aligns kinds with a width.
        f.pad(match self {
            CaseKind::Check => "check",
            CaseKind::Issue => "issue",
            CaseKind::Manage => "manage",
            CaseKind::Matrix => "matrix",
        })
    }
}

/// How one case came out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CaseOutcome {
    /// As expected.
    Passed,
    /// Not as expected.
    Failed {
        /// What the file expects, in words.
        expected: String,
        /// What keygate did, in words.
        actual: String,
        /// Each way the two differ, one per line.
        differences: Vec<String>,
    },
    /// The case cannot run in this build. Not a failure, and never a pass. (No case kind is
    /// unsupported today; kept so that a report format stays stable as case kinds are added.)
    Unsupported {
        /// Why.
        reason: String,
    },
}

impl CaseOutcome {
    /// Passed when there are no differences, else failed with both sides in words.
    pub(crate) fn judged(expected: String, actual: String, differences: Vec<String>) -> Self {
        if differences.is_empty() {
            Self::Passed
        } else {
            Self::Failed {
                expected,
                actual,
                differences,
            }
        }
    }
}

/// One case's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseReport {
    /// Its section.
    pub kind: CaseKind,
    /// Its `name`, or one made from what it asks.
    pub name: String,
    /// The line its table starts on.
    pub line: usize,
    /// How it came out.
    #[serde(flatten)]
    pub outcome: CaseOutcome,
}

/// Every case of one policy file, as run. `Display` prints one line per case and, for each
/// failure, what was expected, what happened and how they differ; then a summary line
/// (`FILE: N passed, N failed, N skipped`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyReport {
    /// The file, as named to the loader.
    pub file: String,
    /// Every case, checks first, then issues, management cases and matrices, each in file order.
    pub cases: Vec<CaseReport>,
}

impl PolicyReport {
    /// How many cases passed.
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, CaseOutcome::Passed))
    }

    /// How many failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, CaseOutcome::Failed { .. }))
    }

    /// How many could not run in this build.
    pub fn unsupported(&self) -> usize {
        self.count(|o| matches!(o, CaseOutcome::Unsupported { .. }))
    }

    fn count(&self, f: impl Fn(&CaseOutcome) -> bool) -> usize {
        self.cases.iter().filter(|c| f(&c.outcome)).count()
    }

    /// Whether no case failed.
    pub fn is_success(&self) -> bool {
        self.failed() == 0
    }

    /// The failed cases.
    pub fn failures(&self) -> impl Iterator<Item = &CaseReport> {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, CaseOutcome::Failed { .. }))
    }

    /// Panics with the report if any case failed: for `#[test]` functions.
    ///
    /// ```should_panic
    /// use keygate::testing::PolicyTests;
    /// let tests = PolicyTests::from_toml(r#"
    ///     now = 2026-04-15T10:00:00Z
    ///     catalog = { preset = "read_write_delete" }
    ///     [[key]]
    ///     name = "reader"
    ///     permissions = ["read"]
    ///     [[check]]
    ///     name = "the reader may delete (it may not)"
    ///     key = "reader"
    ///     action = "delete"
    ///     resource = "listing"
    ///     expect = "allow"
    /// "#, "wrong.toml").unwrap();
    /// tests.run().assert_passes(); // panics, naming the check
    /// ```
    #[track_caller]
    #[expect(
        clippy::panic,
        reason = "an assertion for #[test] functions: panicking with the report is its job"
    )]
    pub fn assert_passes(&self) {
        if !self.is_success() {
            panic!("policy tests failed\n{self}");
        }
    }
}

impl fmt::Display for CaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match self.outcome {
            CaseOutcome::Passed => "ok  ",
            CaseOutcome::Failed { .. } => "FAIL",
            CaseOutcome::Unsupported { .. } => "skip",
        };
        write!(
            f,
            "{mark} {:<6} line {:<4} {}",
            self.kind, self.line, self.name
        )?;
        match &self.outcome {
            CaseOutcome::Passed => Ok(()),
            CaseOutcome::Unsupported { reason } => write!(f, "\n       unsupported: {reason}"),
            CaseOutcome::Failed {
                expected,
                actual,
                differences,
            } => {
                write!(
                    f,
                    "\n       expected: {expected}\n       actual:   {actual}"
                )?;
                for difference in differences {
                    write!(f, "\n       - {difference}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for PolicyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for case in &self.cases {
            writeln!(f, "{case}")?;
        }
        write!(
            f,
            "{}: {} passed, {} failed, {} skipped",
            self.file,
            self.passed(),
            self.failed(),
            self.unsupported()
        )
    }
}
