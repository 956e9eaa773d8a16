//! Escalation fuzzing of the reference server over HTTP on 127.0.0.1, with keygate's testing kit.
//!
//! ```sh
//! cargo run --example fuzz_server                 # 64 sequences against keygate_server::router
//! cargo run --example fuzz_server -- 500 7        # 500 sequences, seed 7
//! cargo run --example fuzz_server -- 64 0 planted # against the planted regenerate bug
//! ```
//!
//! Every sequence starts a fresh server (one bootstrap key with read, write and delete; projects
//! 1 and 2), then creates, rotates and revokes keys with random credentials; after each step the
//! oracle checks that no token the fuzzer holds does more than its lineage allows. A finding is
//! shrunk and printed as a transcript, and the exit status is 1.
mod http_api;

use std::process::ExitCode;

use keygate::testing::fuzz_escalation;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let cases = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let planted = args.next().as_deref() == Some("planted");
    let make_router = if planted {
        keygate_server::router_with_planted_escalation
    } else {
        keygate_server::router
    };
    let mut launcher = match http_api::Launcher::new(make_router) {
        Ok(launcher) => launcher,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = http_api::config().cases(cases).seed(seed);
    println!(
        "fuzzing {} over HTTP on 127.0.0.1: {cases} sequences, seed {seed}",
        if planted {
            "the planted-escalation router"
        } else {
            "keygate_server::router"
        }
    );
    let report = fuzz_escalation(&config, || launcher.start());
    println!("{report}");
    if report.failure.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
