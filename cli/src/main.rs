//! `keygate`: run policy test files, draw who can do what, explain one decision.
//!
//! ```text
//! keygate test examples/policies/*.toml          # exit 1 if any case fails
//! keygate test --format json FILE                # one JSON report per file
//! keygate matrix FILE [--html matrix.html]       # who can do what, as a table or a page
//! keygate explain FILE --key K --action A --resource R   # every rule's outcome, in order
//! ```
//!
//! The file format is `docs/POLICY_TESTS.md`; the library side is `keygate::testing`.
#![forbid(unsafe_code)]

mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use keygate::Timestamp;
use keygate::testing::{PolicyReport, PolicyTests};

/// keygate's command line: policy tests for API keys.
///
/// A policy file (TOML) holds a catalog of permissions, fixture keys, a fixed `now`, and the
/// answers keygate must give: `[[check]]` (may this key do this?), `[[issue]]` (may this issuer
/// mint this key?), `[[manage]]` and `[matrix.KEY]` (everything a key reaches). See
/// docs/POLICY_TESTS.md.
#[derive(Debug, Parser)]
#[command(name = "keygate", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run policy test files and report every case; exit 1 if any case fails or a file is invalid.
    ///
    /// Failures show what the file expects, what keygate did, and each difference.
    Test {
        /// Policy files (TOML).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Output format: readable text, or one JSON report per file (a JSON array).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show what every fixture key may do: every permission on the account (account-level
    /// actions), a listing and each project, with the reason for every denial.
    Matrix {
        /// A policy file (TOML).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Also write a self-contained HTML page of the matrix here: one colour per outcome.
        #[arg(long, value_name = "OUT")]
        html: Option<PathBuf>,
    },
    /// Explain one decision with the plain reference model: each of the five rules, in order,
    /// its outcome and the facts it looked at.
    Explain {
        /// A policy file (TOML).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// A fixture key's name.
        #[arg(long, value_name = "K")]
        key: String,
        /// The permission the action needs, by name (`write`, `agents:read`).
        #[arg(long, value_name = "A")]
        action: String,
        /// The resource: `account`, `listing` or `project:ID`, optionally `@ACCOUNT`.
        #[arg(long, value_name = "R")]
        resource: String,
        /// The action is account-level (creating or destroying a project).
        #[arg(long)]
        account_level: bool,
        /// When to decide (RFC 3339); the file's `now` by default.
        #[arg(long, value_name = "TIME")]
        at: Option<Timestamp>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// One line per case, details for failures, a summary line per file.
    Text,
    /// A JSON array of reports: file, cases (kind, name, line, status, expected, actual,
    /// differences or reason).
    Json,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("keygate: {message}");
            ExitCode::FAILURE
        }
    }
}

fn load(file: &PathBuf) -> Result<PolicyTests, String> {
    PolicyTests::from_path(file).map_err(|e| e.to_string())
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Test { files, format } => Ok(test(&files, format)),
        Command::Matrix { file, html } => {
            let tests = load(&file)?;
            let matrix = tests.matrix();
            print!("{}", render::terminal(tests.file_name(), &matrix));
            if let Some(out) = html {
                std::fs::write(&out, render::html(tests.file_name(), &matrix))
                    .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
                println!("wrote {}", out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain {
            file,
            key,
            action,
            resource,
            account_level,
            at,
        } => {
            let tests = load(&file)?;
            let explanation = tests
                .explain(&key, &action, account_level, &resource, at)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            println!(
                "`{key}` {action}{} on {resource} at {}:",
                if account_level {
                    " (account-level)"
                } else {
                    ""
                },
                at.unwrap_or(tests.now())
            );
            println!("{explanation}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs every file; a file that does not load counts as a failure and the others still run.
fn test(files: &[PathBuf], format: Format) -> ExitCode {
    let mut reports: Vec<PolicyReport> = Vec::new();
    let mut load_errors = 0usize;
    for file in files {
        match load(file) {
            Ok(tests) => reports.push(tests.run()),
            Err(message) => {
                load_errors += 1;
                eprintln!("keygate: {message}");
            }
        }
    }
    match format {
        Format::Json => match serde_json::to_string_pretty(&reports) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("keygate: cannot write JSON: {e}");
                return ExitCode::FAILURE;
            }
        },
        Format::Text => {
            for report in &reports {
                println!("{report}\n");
            }
            let sum = |f: fn(&PolicyReport) -> usize| reports.iter().map(f).sum::<usize>();
            println!(
                "total: {} passed, {} failed, {} skipped",
                sum(PolicyReport::passed),
                sum(PolicyReport::failed) + load_errors,
                sum(PolicyReport::unsupported)
            );
        }
    }
    if load_errors == 0 && reports.iter().all(PolicyReport::is_success) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
