//! API keys (seed 001: create, list, regenerate, revoke, usage), and `GET /api_keys/me`.

use std::time::Duration;

use axum::extract::State;
use keygate::axum::{ApiError, Caller};
use keygate::{
    AddressRange, ApiKey, Credits, IssueError, KeyId, KeySpec, ManageOp, NamedLimit, Permit,
    ProjectId, RateLimit, Resource, Scope, Timestamp, Token, issue, manage,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::page::{List, PageRequest, next_cursor};
use crate::reply::{
    ApiQuery, Id, JsonBody, Reply, check_characters, created, internal, no_content, ok, page,
};
use crate::state::{App, AppState, StoreError, now, unavailable};

/// A key as the API shows it: never its hash, and the secret only right after minting.
#[derive(Debug, Serialize)]
struct KeyView<'a> {
    id: KeyId,
    name: &'a str,
    permissions: Vec<&'a str>,
    project_id: Option<ProjectId>,
    created_at: Timestamp,
    expires_at: Option<Timestamp>,
    revoked_at: Option<Timestamp>,
    rate_limit: Option<&'a RateLimit>,
    /// Client address ranges the key may be used from; absent: anywhere.
    #[serde(skip_serializing_if = "<[AddressRange]>::is_empty")]
    allowed_addresses: &'a [AddressRange],
    /// The credit budget (Unkey's `remaining` with refill); absent: unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    credits: Option<&'a Credits>,
    /// Named rate limits, charged with `rate_limit`.
    #[serde(skip_serializing_if = "<[NamedLimit]>::is_empty")]
    limits: &'a [NamedLimit],
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
}

fn key_view<'a>(app: &'a App, key: &'a ApiKey) -> KeyView<'a> {
    KeyView {
        id: key.id(),
        name: key.name(),
        permissions: app.catalog.names(key.permissions()).collect(),
        project_id: key.scope().project(),
        created_at: key.created_at(),
        expires_at: key.expires_at(),
        revoked_at: key.revoked_at(),
        rate_limit: key.rate_limit(),
        allowed_addresses: key.allowed_addresses(),
        credits: key.credits(),
        limits: key.limits(),
        key: None,
    }
}

/// The one response that carries the secret: creation and regeneration.
fn with_secret<'a>(view: KeyView<'a>, token: &'a Token) -> KeyView<'a> {
    KeyView {
        key: Some(token.expose_secret()),
        ..view
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyBody {
    name: Option<String>,
    permissions: Option<Vec<String>>,
    project_id: Option<ProjectId>,
    expires_at: Option<String>,
    ttl_seconds: Option<u64>,
    rate_limit: Option<Value>,
    /// CIDR ranges (`"10.0.0.0/8"`, `"2001:db8::/32"`); keygate validates them (422).
    allowed_addresses: Option<Vec<String>>,
    /// `{"remaining": N, "refill": {"amount": M, "period_seconds": P}}`.
    credits: Option<Value>,
    /// `[{"name": "...", "requests": N, "period_seconds": P}]`, at most 4.
    limits: Option<Vec<Value>>,
}

pub(crate) async fn create_key(
    State(app): State<AppState>,
    Caller(issuer_key): Caller,
    JsonBody(body): JsonBody<KeyBody>,
) -> Reply {
    let now = now();
    // As the keyring holds the key now, capped by its creator's current permissions.
    let issuer = app
        .issuer(issuer_key.id(), now)
        .map_err(|e| ApiError::issue(e, &app.catalog))?;
    let account = issuer_key.account();

    let name = body.name.unwrap_or_default();
    let mut errors = Vec::new();
    // keygate reports blank and over-long names; the characters are the server's to check.
    check_characters(&mut errors, "Name", name.trim());
    let mut spec = KeySpec::named(name).format(app.format.clone());
    if let Some(permissions) = body.permissions {
        spec = spec.permissions(permissions);
    }
    if let Some(project) = body.project_id {
        let exists = project
            .as_u64()
            .is_some_and(|id| app.records(account, |r| r.projects.contains_key(&id)));
        if !exists {
            errors.push("Project must be an existing project of the account".to_owned());
        }
        spec = spec.project(project);
    }
    if let Some(text) = body.expires_at {
        match text.parse::<Timestamp>() {
            Ok(at) => spec = spec.expires_at(at),
            Err(_) => errors.push("Expires at must be an RFC 3339 date-time".to_owned()),
        }
    }
    // keygate refuses a time to live ending past what a record can store (year 9999).
    if let Some(ttl) = body.ttl_seconds {
        spec = spec.ttl(Duration::from_secs(ttl));
    }
    if let Some(limit) = body.rate_limit {
        match serde_json::from_value::<RateLimit>(limit) {
            Ok(limit) => spec = spec.rate_limit(limit),
            Err(e) => errors.push(format!("Rate limit is invalid: {e}")),
        }
    }
    if let Some(ranges) = body.allowed_addresses {
        spec = spec.allowed_addresses(ranges);
    }
    if let Some(credits) = body.credits {
        match serde_json::from_value::<Credits>(credits) {
            Ok(credits) => spec = spec.credits(credits),
            Err(e) => errors.push(format!("Credits are invalid: {e}")),
        }
    }
    for limit in body.limits.into_iter().flatten() {
        match serde_json::from_value::<NamedLimit>(limit) {
            Ok(limit) => spec = spec.limit(limit),
            Err(e) => errors.push(format!("Limit is invalid: {e}")),
        }
    }
    // keygate's refusals first: an escalation is 403 whatever else is wrong with the request.
    let issued = match issue(&app.catalog, &issuer, spec, now, &mut rand::rng()) {
        Ok(issued) if errors.is_empty() => issued,
        Ok(_) => return Err(ApiError::validation(errors)),
        Err(IssueError::Invalid(more)) => {
            errors.extend(more.messages().iter().cloned());
            return Err(ApiError::validation(errors));
        }
        Err(e) => return Err(ApiError::issue(e, &app.catalog)),
    };
    // Render before storing: the response is the only place the secret ever appears.
    let response = created(with_secret(key_view(&app, &issued.key), &issued.token))?;
    match app.insert_key(issued.key, now) {
        Ok(()) => Ok(response),
        Err(StoreError::Quota(quota)) => Err(quota.into()),
        Err(StoreError::Keyring(error)) => {
            tracing::error!(%error, "the keyring refused a newly issued key");
            Err(internal())
        }
        Err(StoreError::Unavailable) => Err(unavailable()),
    }
}

/// Finds a key by id and decides `op` on it with `keygate::manage`: an unknown id and a key out
/// of the caller's reach (another account's, another project's) are the same 404; a key richer
/// than the caller is a 403, whatever the caller holds (OWASP API5).
fn managed(
    app: &App,
    caller: &ApiKey,
    id: KeyId,
    op: ManageOp,
) -> Result<(ApiKey, Permit), ApiError> {
    let now = now();
    let target = app.key(id).ok_or_else(ApiError::not_found)?;
    let issuer = app
        .issuer(caller.id(), now)
        .map_err(|e| ApiError::issue(e, &app.catalog))?;
    let permit = manage(&app.catalog, &issuer, &target, op, now).map_err(|e| {
        tracing::Span::current().record("decision", tracing::field::display(&e));
        ApiError::refusal(&e, &app.catalog)
    })?;
    Ok((target, permit))
}

/// `GET /api_keys`'s query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeysQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

pub(crate) async fn list_keys(
    State(app): State<AppState>,
    Caller(key): Caller,
    query: Result<ApiQuery<KeysQuery>, ApiError>,
) -> Reply {
    app.check(&key, app.read, Resource::listing(key.account()))?;
    let ApiQuery(query) = query?;
    let request = PageRequest::new(List::ApiKeys, query.limit, query.cursor.as_deref())?;
    let after: Option<KeyId> = request.after()?;
    // Only the keys the caller may read: the same decision as GET /api_keys/{id}.
    let issuer = app
        .issuer(key.id(), now())
        .map_err(|e| ApiError::issue(e, &app.catalog))?;
    let slice = app.key_page(key.account(), after, request.limit, |k| {
        manage(&app.catalog, &issuer, k, ManageOp::Read, now()).is_ok()
    });
    let next = next_cursor(List::ApiKeys, &slice.items, slice.more, ApiKey::id);
    let views: Vec<KeyView<'_>> = slice.items.iter().map(|k| key_view(&app, k)).collect();
    page(views, next)
}

pub(crate) async fn get_key(
    State(app): State<AppState>,
    Caller(key): Caller,
    Id(id): Id<KeyId>,
) -> Reply {
    ok(key_view(&app, &managed(&app, &key, id, ManageOp::Read)?.0))
}

/// The presented key itself: what it is and may do, never its secret or hash. Any valid key may
/// ask (a key always knows itself), so it needs no permission.
#[derive(Debug, Serialize)]
struct Me<'a> {
    id: KeyId,
    name: &'a str,
    scope: &'static str,
    project_id: Option<ProjectId>,
    permissions: Vec<&'a str>,
    expires_at: Option<Timestamp>,
    rate_limit: Option<&'a RateLimit>,
}

pub(crate) async fn me(State(app): State<AppState>, Caller(key): Caller) -> Reply {
    tracing::Span::current().record("decision", "allow: the key itself");
    ok(Me {
        id: key.id(),
        name: key.name(),
        scope: match key.scope() {
            Scope::Account => "account",
            Scope::Project(_) => "project",
        },
        project_id: key.scope().project(),
        permissions: app.catalog.names(key.permissions()).collect(),
        expires_at: key.expires_at(),
        rate_limit: key.rate_limit(),
    })
}

pub(crate) async fn regenerate_key(
    State(app): State<AppState>,
    Caller(key): Caller,
    Id(id): Id<KeyId>,
) -> Reply {
    let (_, permit) = managed(&app, &key, id, ManageOp::Rotate)?;
    // IdentityCall's API: "The old key is immediately invalidated" — no grace period.
    let (rotated, token) = app.rotate_key(&permit, now())?;
    regenerated(&app, &rotated, &token)
}

/// The 201 of a regeneration: the key as it now is, with its new secret (shown once).
pub(crate) fn regenerated(app: &App, rotated: &ApiKey, token: &Token) -> Reply {
    created(with_secret(key_view(app, rotated), token))
}

pub(crate) async fn revoke_key(
    State(app): State<AppState>,
    Caller(key): Caller,
    Id(id): Id<KeyId>,
) -> Reply {
    let (_, permit) = managed(&app, &key, id, ManageOp::Revoke)?;
    // Down the tree: the keys it issued were issued under its authority.
    app.revoke_key(&permit, now())?;
    no_content()
}

pub(crate) async fn key_usage(
    State(app): State<AppState>,
    Caller(key): Caller,
    Id(id): Id<KeyId>,
) -> Reply {
    let (target, _) = managed(&app, &key, id, ManageOp::Read)?;
    ok(app.usage(target.id())?.unwrap_or_default())
}
