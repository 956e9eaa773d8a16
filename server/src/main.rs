//! The keygate reference API server as an installed binary (`keygate-server`): the same program
//! as `cargo run --example server`, here so that tests can spawn (and kill) the real thing.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    keygate_server::run_cli(std::env::args().skip(1)).await
}
