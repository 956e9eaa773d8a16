//! Structured logs: one span per request with its id, method, route, key id and decision
//! reason, closed by one event with the status and latency.
//!
//! What never reaches a log line: tokens (the `Authorization` header, bodies, query strings and
//! raw paths are never logged: the route logged is the matched template, such as
//! `/api/v1/public/api_keys/{id}`), and client-chosen text (a method outside the standard ones
//! is logged as `other`; request ids are always the server's own).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::field::Empty;
use tracing::{Instrument, Level};

use crate::config::LogFormat;

/// The response header that carries the request id, to match a client's report to a log line.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Installs the process-wide subscriber: `format` lines on standard error, INFO and above.
pub fn init_logging(format: LogFormat) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(Level::INFO)
        .with_target(false);
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    }
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// The outermost layer: opens the request's span, runs the request in it, logs the outcome and
/// returns the request id in [`REQUEST_ID_HEADER`].
pub(crate) async fn log_requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = format!("{:016x}", rand::random::<u64>());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = method_name(request.method()),
        route = %route,
        key_id = Empty,
        decision = Empty,
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    // What keygate's layer decided, from the response's extensions (never the token).
    if let Some(id) = response.extensions().get::<keygate::KeyId>() {
        span.record("key_id", tracing::field::display(id));
    }
    if let Some(deny) = response.extensions().get::<keygate::Deny>() {
        span.record("decision", tracing::field::display(deny));
    } else if status == 429 {
        span.record("decision", "rate limited");
    }
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(status, latency_us, "request");
        } else {
            tracing::info!(status, latency_us, "request");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    response
}
