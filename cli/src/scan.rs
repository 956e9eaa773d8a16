//! `keygate scan`: checksummed keygate tokens in files, directories and standard input.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use keygate::TokenFormat;

/// What one run found, for the exit code.
#[derive(Debug, Default)]
struct Tally {
    valid: usize,
    errors: usize,
}

/// How many leading bytes decide whether a file is binary: a NUL among them means binary, as
/// git and grep decide.
const SNIFF_LEN: usize = 8000;

/// Scans `paths` (`-` is standard input; directories are walked, symbolic links inside them
/// are not followed) and prints `path:line:col: token… (checksum ok)` for each valid token, and
/// with `all` also `(checksum bad)` for tokens of the right shape whose checksum fails.
///
/// Exit code: 2 if a path could not be read (what could be read is still scanned and
/// reported), else 1 if a valid token was found, else 0 (grep's convention).
pub fn run(paths: &[PathBuf], format: &TokenFormat, all: bool) -> ExitCode {
    let mut tally = Tally::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut bytes = Vec::new();
            match std::io::stdin().lock().read_to_end(&mut bytes) {
                Ok(_) => scan_bytes("-", &bytes, format, all, &mut tally),
                Err(e) => error(&mut tally, format_args!("cannot read standard input: {e}")),
            }
        } else {
            walk(path, true, format, all, &mut tally);
        }
    }
    if tally.errors > 0 {
        ExitCode::from(2)
    } else if tally.valid > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn error(tally: &mut Tally, message: std::fmt::Arguments<'_>) {
    eprintln!("keygate: {message}");
    tally.errors += 1;
}

/// Scans a file, or every file under a directory in name order. Symbolic links are followed
/// only when named on the command line (`explicit`), so that a walk cannot loop.
fn walk(path: &Path, explicit: bool, format: &TokenFormat, all: bool, tally: &mut Tally) {
    let metadata = if explicit {
        std::fs::metadata(path)
    } else {
        std::fs::symlink_metadata(path)
    };
    let metadata = match metadata {
        Ok(m) => m,
        Err(e) => return error(tally, format_args!("{}: {e}", path.display())),
    };
    if metadata.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => return error(tally, format_args!("{}: {e}", path.display())),
        };
        let mut children = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => children.push(entry.path()),
                Err(e) => error(tally, format_args!("{}: {e}", path.display())),
            }
        }
        children.sort();
        for child in children {
            walk(&child, false, format, all, tally);
        }
    } else if metadata.is_file() {
        match std::fs::read(path) {
            Ok(bytes) => scan_bytes(&path.display().to_string(), &bytes, format, all, tally),
            Err(e) => error(tally, format_args!("{}: {e}", path.display())),
        }
    }
    // Anything else (a symbolic link met in a walk, a socket, a FIFO) is skipped.
}

fn scan_bytes(name: &str, bytes: &[u8], format: &TokenFormat, all: bool, tally: &mut Tally) {
    let sniffed = bytes.get(..SNIFF_LEN).unwrap_or(bytes);
    if sniffed.contains(&0) {
        return;
    }
    // Invalid UTF-8 becomes U+FFFD: tokens are ASCII, so none is lost, and columns count each
    // invalid sequence as one character.
    let text = String::from_utf8_lossy(bytes);
    for found in format.scan(&text) {
        if found.checksum_ok() {
            tally.valid += 1;
        } else if !all {
            continue;
        }
        println!(
            "{name}:{}:{}: {found} ({})",
            found.line(),
            found.column(),
            if found.checksum_ok() {
                "checksum ok"
            } else {
                "checksum bad"
            }
        );
    }
}
