//! The keygate reference API server: IdentityCall's public API subset (seeds 000 and 001) on the
//! embedded in-memory `Keyring`.
//!
//! ```sh
//! cargo run --example server                 # listens on 127.0.0.1:8080
//! cargo run --example server -- --addr 127.0.0.1:9000
//! KEYGATE_ADDR=127.0.0.1:9000 cargo run --example server
//! ```

use keygate_server as app;

use std::net::SocketAddr;
use std::process::ExitCode;

const DEFAULT_ADDR: &str = "127.0.0.1:8080";

const HELP: &str = "\
keygate reference API server: IdentityCall's public API subset (projects, recordings, API keys)
on keygate's embedded in-memory keyring. All data lives in memory and is gone when it stops.

USAGE:
    cargo run --example server [-- --addr HOST:PORT]

OPTIONS:
    --addr HOST:PORT   where to listen (default 127.0.0.1:8080; port 0 picks a free one)
    -h, --help         print this help

ENVIRONMENT:
    KEYGATE_ADDR       where to listen, if --addr is not given

On start it creates one account-wide API key with read, write and delete, and prints it once,
on a line of its own. Use it as `Authorization: Bearer <key>` under /api/v1/public:
    POST|GET /projects, GET|PATCH|DELETE /projects/{id}
    POST|GET /recordings, GET|PATCH|DELETE /recordings/{id}, GET /recordings/{id}/transcription
    POST|GET /api_keys, GET|DELETE /api_keys/{id}, POST /api_keys/{id}/regenerate,
    GET /api_keys/{id}/usage
";

enum Command {
    Help,
    Serve(SocketAddr),
}

fn parse_args() -> Result<Command, String> {
    let mut addr = std::env::var("KEYGATE_ADDR").ok();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--addr" => {
                addr = Some(
                    args.next()
                        .ok_or("--addr needs a value, e.g. 127.0.0.1:8080")?,
                )
            }
            other => match other.strip_prefix("--addr=") {
                Some(value) => addr = Some(value.to_owned()),
                None => return Err(format!("unknown argument {other:?}; try --help")),
            },
        }
    }
    let text = addr.unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    text.parse()
        .map(Command::Serve)
        .map_err(|_| format!("invalid address {text:?}: expected HOST:PORT, e.g. 127.0.0.1:8080"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let addr = match parse_args() {
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Serve(addr)) => addr,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    match serve(addr).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let (state, bootstrap_key) = app::App::bootstrap()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    println!("keygate reference server listening on http://{bound}/api/v1/public");
    println!("bootstrap API key (account-wide: read, write, delete), shown once:");
    println!("{bootstrap_key}");
    drop(bootstrap_key);
    axum::serve(listener, app::router(state))
        .with_graceful_shutdown(async {
            // If the signal handler cannot be installed, run until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
        .await?;
    Ok(())
}
