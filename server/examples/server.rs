//! The keygate reference API server: IdentityCall's public API subset (seeds 000 and 001) on
//! keygate's embedded keyring, stored in SQLite (`keygate.db` in the working directory unless
//! `--database` says otherwise). The same program as the `keygate-server` binary.
//!
//! ```sh
//! cargo run --example server                 # listens on 127.0.0.1:8080, stores in keygate.db
//! cargo run --example server -- --addr 127.0.0.1:9000 --demo-accounts 3
//! cargo run --example server -- --in-memory  # nothing kept when it stops
//! KEYGATE_ADDR=127.0.0.1:9000 cargo run --example server
//! cargo run --example server -- --help       # every option
//! ```

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    keygate_server::run_cli(std::env::args().skip(1)).await
}
