//! A user's server in 40 lines: a catalog, keys, keygate's layer, two routes needing two permissions.
use axum::{Router, routing::get};
use keygate::axum::{Allowed, KeygateLayer};
use keygate::{AccountId, Catalog, Issuer, KeySpec, Keyring, Scope, SharedKeyring, Timestamp};
use std::sync::Arc;
keygate::permission!(pub Read = "read"; pub Write = "write";);
async fn list(Allowed(key, _): Allowed<Read>) -> String {
    format!("recordings visible to {}\n", key.key().name())
}
async fn upload(Allowed(key, _): Allowed<Write>) -> String {
    format!("stored for {}\n", key.key().name())
}
/// The app, and the tokens (shown once) of a "read" key and a "write" key.
pub fn app() -> Result<(Router, Vec<String>), Box<dyn std::error::Error>> {
    let catalog = Arc::new(Catalog::read_write_delete());
    let owner = Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all());
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let mut keyring = Keyring::default().with_endpoints(["GET /recordings", "POST /recordings"]);
    let mut tokens = Vec::new();
    for name in ["read", "write"] {
        let spec = KeySpec::named(name).permissions([name]);
        let issued = keygate::issue(&catalog, &owner, spec, now, &mut rand::rng())?;
        keyring.insert(issued.key)?;
        tokens.push(issued.token.expose_secret().to_owned());
    }
    let keys = Arc::new(SharedKeyring::new(keyring));
    let routes = Router::new().route("/recordings", get(list).post(upload));
    Ok((routes.route_layer(KeygateLayer::new(keys, catalog)), tokens))
}
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (router, tokens) = app()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
    println!(
        "on 127.0.0.1:8081/recordings; read, write keys: {}",
        tokens.join(" ")
    );
    axum::serve(listener, router).await?;
    Ok(())
}
