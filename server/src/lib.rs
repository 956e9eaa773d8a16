//! The keygate reference API server: IdentityCall's public API subset (seeds 000 and 001) on
//! keygate's `SharedKeyring`, stored in SQLite by `keygate-store`, as a library so that the
//! example (`cargo run --example server`) and the `keygate-server` binary serve it and the tests
//! (tests/http, tests/persist.rs) drive it over a real socket.
//!
//! | module | holds |
//! |---|---|
//! | `config` | [`Config`], [`Command`]: what an operator sets |
//! | `state` | [`App`], [`AppState`]: the keyring, the data and the store, the one place that touches them |
//! | `cli` | [`run_cli`]: the command-line program (the example and the binary) |
//! | `auth` | authentication, rate limit, usage; the `check` every handler decides with |
//! | `reply` | the envelope, extractors, fallbacks and layers that keep every error in JSON |
//! | `page` | cursor pagination of every list |
//! | `projects`, `recordings`, `api_keys` | the handlers |
//! | `telemetry` | the request log |
//! | `serve` | [`serve`]: the accept loop, timeouts, connection cap, graceful shutdown |
//!
//! A request goes through, outermost first: the request log, the JSON error shaping, the
//! request timeout (408), the URI and header size checks (414/431), routing (404), then for a
//! route the authentication (401), for a supported method (else 405) the key's rate limit (429)
//! and usage, and the handler,
//! which decides with `keygate::authorize` for the resource it touches (403/404), validates the
//! body (415/413/422) and acts.

#![forbid(unsafe_code)]

mod api_keys;
mod auth;
mod cli;
mod config;
mod page;
#[cfg(feature = "planted-escalation")]
mod planted;
mod projects;
mod recordings;
mod replica;
mod reply;
mod serve;
mod state;
mod telemetry;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{MethodRouter, get, post};

pub use cli::run_cli;
pub use config::{
    Command, Config, DEFAULT_ADDR, DEFAULT_DATABASE, Database, Env, HttpConfig, Limits, LogFormat,
    MAX_DEMO_ACCOUNTS, MAX_HEADER_READ_TIMEOUT, PostgresUrl, RedisOnError,
};
pub use page::{DEFAULT_LIMIT, MAX_LIMIT};
#[cfg(feature = "planted-escalation")]
pub use planted::router_with_planted_escalation;
pub use projects::{MAX_HINTS_LEN, MAX_SHORT_TEXT_LEN};
pub use recordings::MAX_TRANSCRIPTION_LEN;
pub use reply::{MAX_BODY, MAX_BUF, MAX_HEADER_BYTES, MAX_NAME_LEN, MAX_URI_LEN};
pub use serve::{serve, shutdown_signal};
pub use state::{App, AppState};

/// Every route, as usage names it: the method and the route under the API prefix.
const ENDPOINTS: [&str; 18] = [
    "POST /projects",
    "GET /projects",
    "GET /projects/{id}",
    "PATCH /projects/{id}",
    "DELETE /projects/{id}",
    "POST /recordings",
    "GET /recordings",
    "GET /recordings/{id}",
    "PATCH /recordings/{id}",
    "DELETE /recordings/{id}",
    "GET /recordings/{id}/transcription",
    "POST /api_keys",
    "GET /api_keys",
    "GET /api_keys/me",
    "GET /api_keys/{id}",
    "DELETE /api_keys/{id}",
    "POST /api_keys/{id}/regenerate",
    "GET /api_keys/{id}/usage",
];
pub use telemetry::{REQUEST_ID_HEADER, init_logging};

/// The whole API under `/api/v1/public`, with every layer (see the crate docs).
pub fn router(state: AppState) -> Router {
    let request_timeout = state.config.http.request_timeout;
    // Authentication, rate limit and usage wrap each supported method's handler, not the 405
    // fallback (see `auth`).
    let keygate = state.keygate_layer();
    let metered = |methods: MethodRouter<AppState>| methods.route_layer(keygate.clone());
    let api = Router::new()
        .route(
            "/projects",
            metered(post(projects::create_project).get(projects::list_projects)),
        )
        .route(
            "/projects/{id}",
            metered(
                get(projects::get_project)
                    .patch(projects::update_project)
                    .delete(projects::delete_project),
            ),
        )
        .route(
            "/recordings",
            metered(post(recordings::create_recording).get(recordings::list_recordings)),
        )
        .route(
            "/recordings/{id}",
            metered(
                get(recordings::get_recording)
                    .patch(recordings::update_recording)
                    .delete(recordings::delete_recording),
            ),
        )
        .route(
            "/recordings/{id}/transcription",
            metered(get(recordings::get_transcription)),
        )
        .route(
            "/api_keys",
            metered(post(api_keys::create_key).get(api_keys::list_keys)),
        )
        .route("/api_keys/me", metered(get(api_keys::me)))
        .route(
            "/api_keys/{id}",
            metered(get(api_keys::get_key).delete(api_keys::revoke_key)),
        )
        .route(
            "/api_keys/{id}/regenerate",
            metered(post(api_keys::regenerate_key)),
        )
        .route("/api_keys/{id}/usage", metered(get(api_keys::key_usage)))
        .method_not_allowed_fallback(reply::method_not_allowed);
    Router::new()
        .nest(auth::API_PREFIX, api)
        .fallback(reply::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(reply::head_limits))
        .layer(middleware::from_fn(move |request, next| {
            reply::request_timeout(request_timeout, request, next)
        }))
        .layer(middleware::from_fn(reply::json_errors))
        .layer(middleware::from_fn(telemetry::log_requests))
        .with_state(state)
}
