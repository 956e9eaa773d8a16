//! keygate's tower layer in front of a tonic gRPC service: the key comes from the `authorization`
//! metadata (`Bearer <token>`), which is the HTTP/2 `authorization` header the layer reads.
//!
//! [`app`] is the whole server: tonic's health service as an axum router
//! (`Routes::into_axum_router`), [`KeygateLayer`] on its routes, and [`grpc_refusals`] outside it.
//! `tests/grpc.rs` serves it and calls it with tonic's own client.
#![forbid(unsafe_code)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::map_response;
use axum::response::Response;
use keygate::axum::{Caller, KeygateLayer};
use keygate::{Catalog, SharedKeyring};
use tonic::service::Routes;
use tonic::{Code, Status};
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthReporter;

/// The endpoint under which the keyring counts health calls (register it with
/// `Keyring::with_endpoints`). tonic routes a whole service with one axum route,
/// `/{service}/{*rest}`, and the layer counts usage per matched route: per service, not per method.
pub const HEALTH_ENDPOINT: &str = "POST /grpc.health.v1.Health/{*rest}";

/// The permission a caller needs for the health service, checked inside the service (its
/// interceptor) on the key the layer found: the layer authenticates, the service authorizes.
pub const HEALTH_PERMISSION: &str = "read";

/// The gRPC server: tonic's health service (overall status SERVING) behind keygate's layer, with
/// keygate's refusals turned into gRPC statuses.
pub fn app(keys: Arc<SharedKeyring>, catalog: Arc<Catalog>) -> Router {
    let needs_read = Arc::clone(&catalog);
    let health = HealthServer::with_interceptor(
        tonic_health::server::HealthService::from_health_reporter(HealthReporter::new()),
        move |request: tonic::Request<()>| {
            // The layer left the caller's key in the request's extensions, which tonic keeps.
            let Some(Caller(key)) = Caller::from_extensions(request.extensions()) else {
                return Err(Status::unauthenticated("no key"));
            };
            let read = needs_read.permission(HEALTH_PERMISSION);
            if read.is_some_and(|p| bool::from(key.effective_permissions().contains(p))) {
                Ok(request)
            } else {
                Err(Status::permission_denied("Permission read required"))
            }
        },
    );
    Routes::new(health)
        .into_axum_router()
        // route_layer: after routing, so usage is counted per matched route; tonic's fallback
        // (Unimplemented for unknown services) stays outside the layer.
        .route_layer(KeygateLayer::new(keys, catalog))
        .route_layer(map_response(grpc_refusals))
}

/// Turns a refusal keygate's layer answered itself (an HTTP 401 or 429 with a JSON body) into
/// what a gRPC client reads: HTTP 200 with `grpc-status` and `grpc-message` and no body (a
/// "trailers-only" response). Without it tonic's client decodes the JSON body as gRPC frames and
/// reports `Internal` ("invalid compression flag"), whatever the refusal was.
///
/// 401 becomes `Unauthenticated`; 429 becomes `ResourceExhausted`, the gRPC code for a spent
/// quota (tonic's HTTP mapping says `Unavailable`, which clients retry at once). `Retry-After`
/// and `WWW-Authenticate` go along as metadata. gRPC responses pass through untouched.
pub async fn grpc_refusals(response: Response) -> Response {
    let status = response.status();
    if status == StatusCode::OK || response.headers().contains_key("grpc-status") {
        return response;
    }
    let code = match status {
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::TOO_MANY_REQUESTS => Code::ResourceExhausted,
        _ => Code::Unknown,
    };
    let (parts, body) = response.into_parts();
    let message = error_message(&parts.headers, body).await;
    let mut grpc = Status::new(code, message).into_http::<Body>();
    for name in [RETRY_AFTER, WWW_AUTHENTICATE] {
        if let Some(value) = parts.headers.get(&name) {
            grpc.headers_mut().insert(name, value.clone());
        }
    }
    grpc
}

/// The `error` of keygate's JSON body (`{"error": "Invalid or expired API key"}`), or nothing.
async fn error_message(headers: &HeaderMap, body: Body) -> String {
    let json = headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !json {
        return String::new();
    }
    // keygate's bodies are one short sentence; anything longer is not one of them.
    let Ok(bytes) = axum::body::to_bytes(body, 4096).await else {
        return String::new();
    };
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}
