//! keygate's layer in front of tonic's health service, over a real socket, called with tonic's own
//! client: the key travels in the `authorization` metadata, refusals arrive as gRPC codes, the
//! service reads the caller's key, and the keyring counts the calls.

use std::net::SocketAddr;
use std::sync::Arc;

use keygate::axum::KeygateLayer;
use keygate::{
    AccountId, Catalog, Issuer, KeyId, KeySpec, Keyring, Permit, RateLimit, Scope, SharedKeyring,
    Timestamp, Usage,
};
use keygate_grpc_example::{HEALTH_ENDPOINT, app};
use tonic::service::Routes;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

type Error = Box<dyn std::error::Error>;

fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

/// A keyring counting the health service's calls, with one key per spec: (id, token) each.
fn keyring(
    catalog: &Catalog,
    specs: Vec<KeySpec>,
) -> Result<(Keyring, Vec<(KeyId, String)>), Error> {
    let owner = Issuer::user(AccountId::from_u64(1), Scope::Account, catalog.all());
    let mut keyring = Keyring::default().with_endpoints([HEALTH_ENDPOINT]);
    let mut keys = Vec::new();
    for spec in specs {
        let issued = keygate::issue(catalog, &owner, spec, now(), &mut rand::rng())?;
        keys.push((issued.key.id(), issued.token.expose_secret().to_owned()));
        keyring.insert(issued.key)?;
    }
    Ok((keyring, keys))
}

/// Serves `app` on a free loopback port; tonic's client speaks h2c to it.
async fn serve(app: axum::Router) -> Result<HealthClient<Channel>, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    Ok(HealthClient::new(channel))
}

/// One `Health/Check` of the server as a whole, with `authorization: Bearer <token>` if given.
async fn check(client: &mut HealthClient<Channel>, token: Option<&str>) -> Result<i32, Status> {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::internal("token is not a header value"))?;
        request.metadata_mut().insert("authorization", value);
    }
    client.check(request).await.map(|r| r.into_inner().status)
}

fn usage(keys: &SharedKeyring, id: KeyId) -> Usage {
    keys.snapshot()
        .state(id)
        .map(|s| s.usage)
        .unwrap_or_default()
}

/// The gRPC status a refused call got, after checking its code and message.
fn refused(result: Result<i32, Status>, code: Code, message: &str) -> Result<Status, Error> {
    let status = match result {
        Ok(serving) => return Err(format!("expected {code:?}, got status {serving}").into()),
        Err(status) => status,
    };
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(status.message(), message);
    Ok(status)
}

#[tokio::test]
async fn the_layer_authenticates_rate_limits_and_counts_grpc_calls() -> Result<(), Error> {
    let catalog = Arc::new(Catalog::read_write_delete());
    let (keyring, ids) = keyring(
        &catalog,
        vec![
            KeySpec::named("reader").permissions(["read"]),
            KeySpec::named("once-a-minute")
                .permissions(["read"])
                .rate_limit(RateLimit::per_period(1, 60)?),
            KeySpec::named("writer").permissions(["write"]),
            KeySpec::named("soon-revoked").permissions(["read"]),
        ],
    )?;
    let [reader, limited, writer, revoked] = ids.as_slice() else {
        panic!("four keys")
    };
    let keys = Arc::new(SharedKeyring::new(keyring));
    let mut client = serve(app(Arc::clone(&keys), Arc::clone(&catalog))).await?;

    // A valid key in the `authorization` metadata: the service answers.
    let serving = ServingStatus::Serving as i32;
    assert_eq!(check(&mut client, Some(&reader.1)).await?, serving);
    assert_eq!(check(&mut client, Some(&reader.1)).await?, serving);

    // No key, a token that is no key's, a revoked key: Unauthenticated, the layer's message,
    // and the Bearer challenge as metadata.
    let missing = refused(
        check(&mut client, None).await,
        Code::Unauthenticated,
        "Invalid or expired API key",
    )?;
    assert_eq!(
        missing
            .metadata()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    let wrong = format!("{}x", reader.1);
    refused(
        check(&mut client, Some(&wrong)).await,
        Code::Unauthenticated,
        "Invalid or expired API key",
    )?;
    assert_eq!(check(&mut client, Some(&revoked.1)).await?, serving);
    let mut writing = keys.writer();
    writing
        .stage_revoke(&Permit::operator_revoke(revoked.0), now())?
        .apply();
    drop(writing);
    refused(
        check(&mut client, Some(&revoked.1)).await,
        Code::Unauthenticated,
        "Invalid or expired API key",
    )?;

    // One call a minute: the second is ResourceExhausted, with Retry-After as metadata.
    assert_eq!(check(&mut client, Some(&limited.1)).await?, serving);
    let status = refused(
        check(&mut client, Some(&limited.1)).await,
        Code::ResourceExhausted,
        "Rate limit exceeded",
    )?;
    let retry_after: u64 = status
        .metadata()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()?
        .parse()?;
    assert!((1..=60).contains(&retry_after), "{retry_after}");

    // The service reads the caller's key from the request's extensions and authorizes it: a key
    // without `read` passes the layer and is refused by the service.
    refused(
        check(&mut client, Some(&writer.1)).await,
        Code::PermissionDenied,
        "Permission read required",
    )?;

    // Every call by a known key is counted under the service's route; the layer's 429 as a 4xx.
    // The service's own refusal is HTTP 200 (its code is in `grpc-status`), so not an error here.
    let counted = |id| usage(&keys, id);
    assert_eq!(counted(reader.0).requests_for(HEALTH_ENDPOINT), 2);
    assert_eq!(counted(reader.0).total_errors(), 0);
    assert_eq!(counted(limited.0).requests_for(HEALTH_ENDPOINT), 2);
    assert_eq!(counted(limited.0).errors_in_class("4xx"), 1);
    assert_eq!(counted(writer.0).requests_for(HEALTH_ENDPOINT), 1);
    assert_eq!(counted(writer.0).total_errors(), 0);
    // Refused before it was found, the revoked key's last call is not its usage.
    assert_eq!(counted(revoked.0).total_requests(), 1);
    Ok(())
}

/// Why `grpc_refusals` exists: keygate's layer alone answers a gRPC client in HTTP (401 and a JSON
/// body), and tonic's client, reading the body as gRPC frames, reports `Internal`.
#[tokio::test]
async fn without_the_adapter_a_refusal_reads_as_internal() -> Result<(), Error> {
    let catalog = Arc::new(Catalog::read_write_delete());
    let (keyring, _) = keyring(&catalog, Vec::new())?;
    let keys = Arc::new(SharedKeyring::new(keyring));
    let (_, health) = tonic_health::server::health_reporter();
    let bare = Routes::new(health)
        .into_axum_router()
        .route_layer(KeygateLayer::new(keys, catalog));
    let mut client = serve(bare).await?;
    let status = check(&mut client, None).await.expect_err("refused");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(status.message().contains("401 Unauthorized"), "{status:?}");
    Ok(())
}
