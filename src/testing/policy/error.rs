//! Why a policy file was refused, and where.

use core::fmt;
use core::ops::Range;
use std::path::PathBuf;

use serde::Serialize;

use crate::catalog::CatalogError;

/// A place in a policy file: the file's name, a line and a column, both from 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The file, as it was named to the loader.
    pub file: String,
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A policy file's text and name, to turn byte offsets into lines and columns.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) name: String,
    pub(crate) text: String,
}

impl Source {
    /// The line and column where `span` starts.
    pub(crate) fn locate(&self, span: &Range<usize>) -> Location {
        let before = self.text.get(..span.start).unwrap_or(&self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        Location {
            file: self.name.clone(),
            line,
            column,
        }
    }

    /// An error at `span`.
    pub(crate) fn error(&self, span: &Range<usize>, problem: Problem) -> PolicyError {
        PolicyError::Invalid {
            location: self.locate(span),
            problem,
        }
    }
}

/// What kind of name a policy file used but did not define.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NameKind {
    /// A fixture key (`[[key]]`'s `name`).
    Key,
    /// A permission of the catalog.
    Permission,
    /// A role of the catalog.
    Role,
    /// A catalog preset.
    Preset,
    /// The expected outcome of a check, issue or management case.
    Outcome,
    /// A management operation.
    Operation,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Key => "key",
            NameKind::Permission => "permission",
            NameKind::Role => "role",
            NameKind::Preset => "catalog preset",
            NameKind::Outcome => "expected outcome",
            NameKind::Operation => "operation",
        })
    }
}

/// What is wrong at a [`Location`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The TOML is malformed, or a table has a missing, unknown or mistyped field (the TOML
    /// parser's message, which names the field and what was expected).
    #[error("{0}")]
    Syntax(String),
    /// A name the file or its catalog does not define.
    #[error("unknown {kind} `{name}`{}", expected_text(.name, .expected))]
    UnknownName {
        /// What kind of name.
        kind: NameKind,
        /// The name as written.
        name: String,
        /// The names that would have been accepted.
        expected: Vec<String>,
    },
    /// A name defined twice.
    #[error("duplicate {kind} `{name}`")]
    Duplicate {
        /// What kind of name.
        kind: NameKind,
        /// The name.
        name: String,
    },
    /// A value that does not follow its syntax (a resource, a scope, a permission pattern).
    #[error("invalid {what} `{found}`; expected {expected}")]
    Malformed {
        /// What the value is.
        what: &'static str,
        /// The value as written.
        found: String,
        /// The syntax accepted.
        expected: &'static str,
    },
    /// The catalog itself is refused (a bad or duplicate name, too many permissions).
    #[error("invalid catalog: {0}")]
    Catalog(CatalogError),
    /// A fixture key holds more than the fixture key it names as `parent`.
    #[error("key `{key}` exceeds its parent `{parent}`: {reason}")]
    ExceedsParent {
        /// The child fixture key.
        key: String,
        /// Its parent.
        parent: String,
        /// How it exceeds it.
        reason: String,
    },
    /// Fields that cannot go together, or a required one missing.
    #[error("{0}")]
    Conflict(String),
}

/// ", expected one of: a, b, c" (or a suggestion and a sample, for long lists).
fn expected_text(name: &str, expected: &[String]) -> String {
    const SHOWN: usize = 12;
    if expected.is_empty() {
        return "; none are defined".to_owned();
    }
    let suggestion = closest(name, expected)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    let mut list: Vec<&str> = expected.iter().take(SHOWN).map(String::as_str).collect();
    if expected.len() > SHOWN {
        list.push("…");
    }
    let count = if expected.len() > SHOWN {
        format!(" ({} in all)", expected.len())
    } else {
        String::new()
    };
    format!("{suggestion} expected one of: {}{count}", list.join(", "))
}

/// The candidate nearest to `name` by edit distance, if it is near enough to be a typo.
fn closest<'a>(name: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), c.as_str()))
        .filter(|(d, c)| *d <= (c.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, by one row.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = i;
        let mut left = i + 1;
        let mut next = Vec::with_capacity(row.len());
        next.push(left);
        for (j, cb) in b.iter().enumerate() {
            let up = row.get(j + 1).copied().unwrap_or(usize::MAX);
            let cost = diagonal + usize::from(ca != *cb);
            left = cost.min(up.saturating_add(1)).min(left + 1);
            next.push(left);
            diagonal = up;
        }
        row = next;
    }
    row.last().copied().unwrap_or(0)
}

/// Why a policy file could not be loaded.
///
/// ```
/// use keygate::testing::{NameKind, PolicyError, PolicyTests, Problem};
/// let text = r#"
/// now = "2026-04-15T10:00:00Z"
/// catalog = { preset = "read_write_delete" }
///
/// [[key]]
/// name = "reader"
/// permissions = ["read"]
///
/// [[check]]
/// key = "raeder"
/// action = "read"
/// resource = "listing"
/// expect = "allow"
/// "#;
/// let err = PolicyTests::from_toml(text, "example.toml").unwrap_err();
/// assert_eq!(err.to_string(),
///     "example.toml:10:7: unknown key `raeder`; did you mean `reader`? expected one of: reader");
/// let PolicyError::Invalid { location, problem: Problem::UnknownName { kind, .. } } = err else {
///     panic!("not an unknown name");
/// };
/// assert_eq!((location.line, location.column, kind), (10, 7, NameKind::Key));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The path given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid policy file: where, and what is wrong.
    #[error("{location}: {problem}")]
    Invalid {
        /// Where.
        location: Location,
        /// What.
        problem: Problem,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("read", "read"), 0);
        assert_eq!(edit_distance("raed", "read"), 2);
        assert_eq!(edit_distance("agents:reed", "agents:read"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
    }

    #[test]
    fn long_lists_are_cut_with_a_count() {
        let names: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
        let text = expected_text("p1x", &names);
        assert!(text.contains("did you mean `p1`?"), "{text}");
        assert!(text.ends_with("… (20 in all)"), "{text}");
    }

    #[test]
    fn locate_counts_lines_and_characters() {
        let source = Source {
            name: "f".into(),
            text: "a = 1\nbé = 2\n".into(),
        };
        assert_eq!(source.locate(&(0..1)).to_string(), "f:1:1");
        // 'é' is two bytes but one column.
        assert_eq!(source.locate(&(10..11)).to_string(), "f:2:4");
    }
}
