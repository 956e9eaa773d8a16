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

use crate::auth::API_PREFIX;
use crate::reply::Reply;
use crate::state::{AppState, now};
use crate::{api_keys, router};

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
        .strip_prefix(API_PREFIX)
        .and_then(|rest| rest.strip_prefix("/api_keys/"))
        .and_then(|rest| rest.strip_suffix("/regenerate"));
    match id {
        Some(id) if request.method() == Method::POST => {
            regenerate_unchecked(&state, bearer_token(request.headers()), id)
                .unwrap_or_else(IntoResponse::into_response)
        }
        _ => next.run(request).await,
    }
}

fn regenerate_unchecked(state: &AppState, token: Option<&str>, id: &str) -> Reply {
    let now = now();
    let caller = token
        .and_then(|t| state.authenticate(t, now).ok())
        .ok_or_else(ApiError::unauthorized)?;
    let id: KeyId = id.parse().map_err(|_| ApiError::not_found())?;
    let target = state.key(id).ok_or_else(ApiError::not_found)?;
    // The planted bug: `write` where the target lives is all it asks of the caller. The permit
    // comes from the account's owner instead of the caller, so whose key it is, and whether the
    // caller holds everything the target holds, is never checked.
    state.check(&caller, state.write, Resource::of_key(&target))?;
    let owner = Issuer::user(target.account(), Scope::Account, state.catalog.all());
    let permit = manage(&state.catalog, &owner, &target, ManageOp::Rotate, now)
        .map_err(|_| ApiError::not_found())?;
    let (rotated, token) = state.rotate_key(&permit, now)?;
    api_keys::regenerated(state, &rotated, &token)
}
