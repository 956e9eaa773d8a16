//! Replies and errors: the `{"data": ...}` envelope, and the extractors, fallbacks and layers
//! that make every error the API's JSON shape, `{"error": ...}` or `{"errors": [...]}`, including
//! what axum and tower would otherwise answer in plain text.
//!
//! What still comes out bare (the status, an empty body) is what hyper answers by itself before
//! any of this code runs: a head that overflows its read buffer ([`MAX_BUF`]; it checks after
//! each read, so somewhat more may get through), more than 100 headers (431), a URI of 64 KB or
//! more (414), or a request line or header that does not parse (400). Heads within those get
//! the JSON answers of [`head_limits`].

use std::str::FromStr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keygate::axum::ApiError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The longest URI (path and query) answered; longer ones get 414.
pub const MAX_URI_LEN: usize = 8 * 1024;
/// The most header bytes (names and values) answered; more get 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// hyper's read buffer, so roughly its own limit on a request head, past which it answers a bare
/// 431. Above [`MAX_URI_LEN`] + [`MAX_HEADER_BYTES`], so heads between our limits and hyper's get
/// our JSON answers.
pub const MAX_BUF: usize = 64 * 1024;
/// The largest request body accepted (axum's default, kept): larger ones get 413.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// A handler's result.
pub(crate) type Reply = Result<Response, ApiError>;

/// `{"data": ...}`, keeping the fields in the order the types declare them (as the seeds show).
#[derive(Serialize)]
struct Envelope<T> {
    data: T,
}

/// A list page: `{"data": [...], "next_cursor": ...}`.
#[derive(Serialize)]
struct PageEnvelope<T> {
    data: Vec<T>,
    next_cursor: Option<String>,
}

/// Serializes first, so that a value that cannot be written (a timestamp past year 9999, say)
/// is an error the caller sees (and a JSON 500), never a success status over a text body.
fn json(status: StatusCode, value: &impl Serialize) -> Reply {
    let body = serde_json::to_vec(value).map_err(|error| {
        tracing::error!(%error, "a response could not be serialized");
        internal()
    })?;
    let content_type = [(CONTENT_TYPE, HeaderValue::from_static("application/json"))];
    Ok((status, content_type, body).into_response())
}

pub(crate) fn created(data: impl Serialize) -> Reply {
    json(StatusCode::CREATED, &Envelope { data })
}

pub(crate) fn ok(data: impl Serialize) -> Reply {
    json(StatusCode::OK, &Envelope { data })
}

pub(crate) fn page<T: Serialize>(data: Vec<T>, next_cursor: Option<String>) -> Reply {
    json(StatusCode::OK, &PageEnvelope { data, next_cursor })
}

pub(crate) fn no_content() -> Reply {
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) fn internal() -> ApiError {
    ApiError::message(StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
}

/// `{"errors": [message]}` with 422.
pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::validation(vec![message.into()])
}

// --- extractors ------------------------------------------------------------------------------

/// A JSON request body: 415 unless `Content-Type` is JSON, 413 over [`MAX_BODY`], 422 when it
/// does not parse into `T`, all in the API's shape.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers().get(CONTENT_TYPE)) {
            return Err(ApiError::message(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(body_error)?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| invalid(format!("Invalid request body: {e}")))
    }
}

fn body_error(rejection: BytesRejection) -> ApiError {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::message(status, "Request body too large (maximum is 2 MB)")
    } else {
        ApiError::message(StatusCode::BAD_REQUEST, "Could not read the request body")
    }
}

/// `application/json` or `application/<something>+json`, with any parameters.
fn is_json(value: Option<&HeaderValue>) -> bool {
    let Some(essence) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
    else {
        return false;
    };
    let essence = essence.trim().to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// A path id: anything that does not parse as `T` is the same 404 as an id that names nothing.
#[derive(Debug)]
pub(crate) struct Id<T>(pub T);

impl<T: FromStr, S: Send + Sync> FromRequestParts<S> for Id<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found())?;
        text.parse().map(Id).map_err(|_| ApiError::not_found())
    }
}

/// A query string: 422 in the API's shape when it does not parse into `T`.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(value)| ApiQuery(value))
            .map_err(|e| invalid(e.body_text()))
    }
}

// --- fallbacks and layers --------------------------------------------------------------------

/// A path no route has: 404.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// A route that exists without this method: 405 (axum adds the `Allow` header).
/// 405 for a method a real path does not have; but 401 first for a missing or bad key, as on
/// every route (the layer does not wrap this fallback: such a request is neither limited nor
/// counted).
pub(crate) async fn method_not_allowed(
    axum::extract::State(app): axum::extract::State<crate::AppState>,
    headers: axum::http::HeaderMap,
) -> Response {
    let authenticated = keygate::axum::bearer_token(&headers)
        .ok_or(keygate::Deny::UnknownKey)
        .and_then(|token| app.authenticate(token, crate::state::now()));
    match authenticated {
        Ok(key) => {
            let mut response =
                ApiError::message(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
                    .into_response();
            response.extensions_mut().insert(key.key().id());
            response
        }
        Err(deny) => {
            let mut response = ApiError::unauthorized().into_response();
            response.extensions_mut().insert(deny);
            response
        }
    }
}

/// 414 for a URI over [`MAX_URI_LEN`], 431 for headers over [`MAX_HEADER_BYTES`], before
/// authentication or a handler looks at the request.
pub(crate) async fn head_limits(request: Request, next: Next) -> Response {
    let uri_len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI_LEN {
        return ApiError::message(StatusCode::URI_TOO_LONG, "URI too long (maximum is 8 KB)")
            .into_response();
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len().saturating_add(value.len()))
        .fold(0, usize::saturating_add);
    if header_bytes > MAX_HEADER_BYTES {
        return ApiError::message(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request headers too large (maximum is 16 KB)",
        )
        .into_response();
    }
    next.run(request).await
}

/// 408 for a request not answered within `timeout` (a body trickling in, say).
pub(crate) async fn request_timeout(timeout: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::message(StatusCode::REQUEST_TIMEOUT, "Request timeout").into_response(),
    }
}

/// The last word on every response: a 401 carries `WWW-Authenticate: Bearer`, and an error
/// that is not JSON yet (axum's and tower's own rejections) gets the API's shape, keeping its
/// status and headers.
pub(crate) async fn json_errors(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if (status.is_client_error() || status.is_server_error())
        && !is_json(response.headers().get(CONTENT_TYPE))
    {
        let (mut parts, _) = response.into_parts();
        let body = ApiError::message(status, &message_for(status)).into_response();
        let (body_parts, body) = body.into_parts();
        parts.headers.remove(axum::http::header::CONTENT_LENGTH);
        parts.headers.extend(body_parts.headers);
        response = Response::from_parts(parts, body);
    }
    response
}

fn message_for(status: StatusCode) -> String {
    match status.as_u16() {
        400 => "Bad request".to_owned(),
        404 => "Not found".to_owned(),
        405 => "Method not allowed".to_owned(),
        408 => "Request timeout".to_owned(),
        413 => "Request body too large (maximum is 2 MB)".to_owned(),
        414 => "URI too long (maximum is 8 KB)".to_owned(),
        415 => "Content-Type must be application/json".to_owned(),
        431 => "Request headers too large (maximum is 16 KB)".to_owned(),
        _ => status.canonical_reason().unwrap_or("Error").to_owned(),
    }
}

// --- field checks ----------------------------------------------------------------------------

/// The longest name (of a project, a key, a recording's title), in characters (seed 002).
pub const MAX_NAME_LEN: usize = keygate::MAX_PROJECT_NAME_LEN;

/// Bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069): they make a
/// name display differently from what it is ("Trojan Source").
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks a name (`field` is its label in messages): not blank, at most [`MAX_NAME_LEN`]
/// characters once trimmed, and no control or bidirectional formatting characters.
pub(crate) fn check_name(errors: &mut Vec<String>, field: &str, value: &str) {
    let value = value.trim();
    if value.is_empty() {
        errors.push(format!("{field} can't be blank"));
    } else if value.chars().count() > MAX_NAME_LEN {
        errors.push(format!(
            "{field} is too long (maximum is {MAX_NAME_LEN} characters)"
        ));
    }
    check_characters(errors, field, value);
}

/// Refuses control characters and bidirectional formatting characters in a name.
pub(crate) fn check_characters(errors: &mut Vec<String>, field: &str, value: &str) {
    if value.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        errors.push(format!(
            "{field} must not contain control or bidirectional formatting characters"
        ));
    }
}

/// Checks a free text's length in characters.
pub(crate) fn check_len(errors: &mut Vec<String>, field: &str, value: Option<&str>, max: usize) {
    if value.is_some_and(|v| v.chars().count() > max) {
        errors.push(format!("{field} is too long (maximum is {max} characters)"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for (value, json) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/merge-patch+json", true),
            ("text/json", false),
            ("application/jsonx", false),
            ("text/plain", false),
        ] {
            assert_eq!(
                is_json(Some(&HeaderValue::from_static(value))),
                json,
                "{value}"
            );
        }
        assert!(!is_json(None));
    }

    #[test]
    fn names() {
        let check = |value: &str| {
            let mut errors = Vec::new();
            check_name(&mut errors, "Name", value);
            errors
        };
        assert!(check("Support EN").is_empty());
        assert!(check(&"é".repeat(100)).is_empty());
        assert_eq!(
            check(&"é".repeat(101)),
            ["Name is too long (maximum is 100 characters)"]
        );
        assert_eq!(check("  "), ["Name can't be blank"]);
        for bad in [
            "a\u{0}b",
            "a\nb",
            "a\u{7f}b",
            "a\u{202E}b",
            "a\u{2066}b",
            "a\u{202A}b",
        ] {
            assert_eq!(check(bad).len(), 1, "{bad:?}");
        }
        assert!(check("a\u{2069}b").len() == 1 && check("a\u{2065}b").is_empty());
    }
}
