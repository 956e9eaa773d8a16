//! A deliberately vulnerable router, for proving that escalation fuzzing finds a real management
//! escalation (feature `planted-escalation`, test builds only). **Never serve it.**
//!
//! `POST /api_keys/{id}/regenerate` here checks only that the caller holds `write` where the
//! target key lives, and skips the caller-versus-target check: a read+write key can regenerate
//! the bootstrap key (read, write, delete), receive its new token, and so take it over.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use keygate::axum::{ApiError, bearer_token};
use keygate::{Issuer, KeyId, ManageOp, Resource, Scope, manage};

use crate::{AppState, created, key_view, now, router, with_secret};

/// [`router`](crate::router) with the planted regenerate handler in front of the real one.
pub fn router_with_planted_escalation(state: AppState) -> Router {
    router(state.clone()).layer(middleware::from_fn_with_state(state, planted_regenerate))
}

/// Intercepts `POST /api/v1/public/api_keys/{id}/regenerate`; everything else goes through.
async fn planted_regenerate(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let id = path
        .strip_prefix("/api/v1/public/api_keys/")
        .and_then(|rest| rest.strip_suffix("/regenerate"));
    match id {
        Some(id) if request.method() == Method::POST => {
            regenerate_unchecked(&state, bearer_token(request.headers()), id)
                .unwrap_or_else(IntoResponse::into_response)
        }
        _ => next.run(request).await,
    }
}

fn regenerate_unchecked(
    state: &AppState,
    token: Option<&str>,
    id: &str,
) -> Result<Response, ApiError> {
    let app = &state.0;
    let now = now();
    let caller = token
        .and_then(|t| app.keys.read().ok()?.authenticate(t, now).ok().cloned())
        .ok_or_else(ApiError::unauthorized)?;
    let id: KeyId = id.parse().map_err(|_| ApiError::not_found())?;
    let target = app
        .keys
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(id)
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    // The planted bug: `write` where the target lives is all it asks of the caller. The permit
    // comes from the account's owner instead of the caller, so whose key it is, and whether the
    // caller holds everything the target holds, is never checked.
    let target_resource = match target.scope() {
        Scope::Account => Resource::account(app.account),
        Scope::Project(p) => Resource::in_project(app.account, p),
    };
    app.check(&caller, app.write, target_resource)?;
    let owner = Issuer::user(app.account, Scope::Account, app.catalog.all());
    let permit = manage(&app.catalog, &owner, &target, ManageOp::Rotate, now)
        .map_err(|_| ApiError::not_found())?;
    // The write lock only now: `check` takes the read lock.
    let mut keys = app.keys.write().unwrap_or_else(|e| e.into_inner());
    let token = keys
        .rotate(&permit, now, None, &mut rand::rng())
        .map_err(|_| ApiError::not_found())?;
    let key = keys.get(id).cloned().ok_or_else(ApiError::not_found)?;
    drop(keys);
    created(with_secret(key_view(app, &key), &token))
}
