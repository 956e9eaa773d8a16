//! `keygate`: run policy test files, draw who can do what, explain one decision.
//!
//! ```text
//! keygate test examples/policies/*.toml          # exit 1 if any case fails
//! keygate test --format json FILE                # one JSON report per file
//! keygate matrix FILE [--html matrix.html]       # who can do what, as a table or a page
//! keygate explain FILE --key K --action A --resource R   # every rule's outcome, in order
//! keygate audit --database sqlite:keygate.db     # keys beyond an ancestor or their creator
//! keygate scan src/ logs/app.log -               # leaked checksummed tokens; exit 1 if any
//! ```
//!
//! The file format is `docs/POLICY_TESTS.md`; the library side is `keygate::testing`.
#![forbid(unsafe_code)]

mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod audit;
mod scan;
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
    /// Check every key in a store against its ancestors (the keys up its `issued_by` chain) and
    /// its creator's current permissions; list each key that exceeds them, with every reason;
    /// exit 1 if any does.
    ///
    /// A key's permissions, account, project, expiry, rate limit and (with --catalog) role
    /// ceiling must lie within every ancestor's; a key whose record holds permissions its
    /// creator no longer has is listed too (keygate caps it at request time, but the record
    /// still says more).
    Audit {
        /// The store: `sqlite:PATH` (or a bare path to a keygate SQLite database). It is only
        /// read.
        #[arg(long, value_name = "URL")]
        database: String,
        /// The catalog, as JSON (`{"permissions": [...], "roles": [...]}`), to rank roles by;
        /// without it roles are not compared.
        #[arg(long, value_name = "FILE")]
        catalog: Option<PathBuf>,
        /// A creator's current permissions, `CREATOR=perm,perm,...`; repeat for each creator.
        /// Keys of creators not given are not checked against a cap.
        #[arg(long = "cap", value_name = "CREATOR=PERMS")]
        caps: Vec<String>,
    },
    /// Find checksummed keygate tokens in files, directories (walked recursively; binary files
    /// skipped) or standard input (`-`), and print `path:line:col: idc_AbCd… (checksum ok)` for
    /// each, redacted; exit 1 if any was found, 0 if none, 2 if a path could not be read.
    ///
    /// A token is the prefix, not preceded by a letter, digit or `_`, then exactly `--length`
    /// letters and digits whose last 6 are the CRC-32 of the others (keygate's checksummed
    /// format). As a git pre-commit hook, on the lines a commit adds:
    /// `git diff --cached -U0 --no-color | grep '^+' | keygate scan -`
    Scan {
        /// Files or directories; `-` reads standard input.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// The token prefix.
        #[arg(long, default_value = "idc_", value_name = "PREFIX")]
        prefix: String,
        /// Characters after the prefix, the 6 of the checksum included.
        #[arg(long, default_value_t = 32, value_name = "N")]
        length: usize,
        /// Also list tokens of the right shape whose checksum fails, marked `(checksum bad)`:
        /// typos, look-alikes, or tokens minted without a checksum. They do not change the exit
        /// code.
        #[arg(long)]
        all: bool,
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
        Command::Audit {
            database,
            catalog,
            caps,
        } => run_audit(&database, catalog.as_deref(), &caps),
        Command::Scan {
            paths,
            prefix,
            length,
            all,
        } => match keygate::TokenFormat::new(&prefix, length).and_then(|f| f.with_checksum()) {
            Ok(format) => Ok(scan::run(&paths, &format, all)),
            Err(e) => {
                // A usage error, like clap's own: exit 2.
                eprintln!("keygate: {e}");
                Ok(ExitCode::from(2))
            }
        },
    }
}

fn run_audit(
    database: &str,
    catalog: Option<&std::path::Path>,
    caps: &[String],
) -> Result<ExitCode, String> {
    let path = database.strip_prefix("sqlite:").unwrap_or(database);
    if path.starts_with("postgres") {
        return Err("only sqlite: stores exist for now".to_owned());
    }
    if !std::path::Path::new(path).exists() {
        return Err(format!("no database at {path}"));
    }
    let catalog: Option<keygate::Catalog> = match catalog {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            Some(
                serde_json::from_str(&text)
                    .map_err(|e| format!("{}: not a catalog: {e}", file.display()))?,
            )
        }
        None => None,
    };
    let mut cap_table = std::collections::HashMap::new();
    for cap in caps {
        let (creator, permissions) = cap
            .split_once('=')
            .ok_or_else(|| format!("--cap {cap:?}: expected CREATOR=perm,perm,..."))?;
        let set = permissions
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        cap_table.insert(creator.to_owned(), set);
    }
    let store = keygate_store::SqliteStore::open(path).map_err(|e| e.to_string())?;
    let records: Vec<keygate::ApiKeyRecord> = keygate_store::KeyStore::all_keys(&store)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|stored| stored.record)
        .collect();
    let findings = audit::audit(&records, catalog.as_ref(), &cap_table);
    for finding in &findings {
        println!("key {} ({}):", finding.key, finding.name);
        for reason in &finding.reasons {
            println!("  - {reason}");
        }
    }
    println!(
        "audited {} keys: {} exceed an ancestor or their creator",
        records.len(),
        findings.len()
    );
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
