//! The keygate reference API server: IdentityCall's public API subset (seeds 000 and 001) on
//! keygate's embedded `Keyring`, as a library so that the example binary
//! (`cargo run --example server`) serves it and the tests (tests/http.rs) drive it over a real
//! socket.
//!
//! Every request goes through an authentication middleware (401, then the key's rate limit: 429),
//! then the handler decides with `keygate::authorize` for the resource it touches (403/404),
//! validates the body (422), and acts. Usage (last used, totals, per endpoint, errors by status class) is
//! recorded for every authenticated request.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use axum::extract::{FromRef, MatchedPath, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use keygate::axum::{ApiError, Authenticated, KeyLookup, bearer_token};
use keygate::{
    AccountId, Action, ApiKey, Catalog, Decision, IssueError, Issuer, KeyId, KeySpec, Keyring,
    ManageOp, Permit, ProjectId, RateLimit, Resource, Scope, Timestamp, issue, manage,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[cfg(feature = "planted-escalation")]
mod planted;
#[cfg(feature = "planted-escalation")]
pub use planted::router_with_planted_escalation;

/// Everything the server holds. Locks are never held across an `.await`.
#[derive(Debug)]
pub struct App {
    catalog: Catalog,
    read: Action,
    write: Action,
    delete: Action,
    account: AccountId,
    keys: Arc<RwLock<Keyring>>,
    data: Mutex<Data>,
}

#[derive(Debug, Default)]
struct Data {
    next_project: u64,
    next_recording: u64,
    projects: BTreeMap<u64, Project>,
    recordings: BTreeMap<u64, Recording>,
}

/// The router's state.
#[derive(Debug, Clone)]
pub struct AppState(Arc<App>);

impl FromRef<AppState> for Arc<dyn KeyLookup> {
    fn from_ref(state: &AppState) -> Self {
        state.0.keys.clone()
    }
}

fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

/// `now()` in whole seconds, for the display timestamps of projects and recordings
/// (`2026-04-15T10:00:00Z`, as seed 000 shows them). Keys keep full precision for expiry.
fn now_seconds() -> Timestamp {
    Timestamp::from_unix_seconds(now().unix_seconds())
}

impl App {
    /// A server for one account, with one bootstrap key (account-wide; read, write, delete).
    /// Returns the state and the bootstrap token's plaintext, to be shown once.
    pub fn bootstrap() -> Result<(AppState, String), Box<dyn std::error::Error>> {
        let catalog = Catalog::read_write_delete();
        let read = Action::named(&catalog, "read")?;
        let write = Action::named(&catalog, "write")?;
        let delete = Action::named(&catalog, "delete")?;
        let account = AccountId::from_u64(1);
        let owner = Issuer::user(account, Scope::Account, catalog.all());
        let issued = issue(
            &catalog,
            &owner,
            KeySpec::named("Bootstrap"),
            now(),
            &mut rand::rng(),
        )?;
        let token = issued.token.expose_secret().to_owned();
        // Usage is counted per route: the routes are known up front, so a request's count is an
        // index into per-key atomic counters, not a map insertion.
        let mut keyring = Keyring::default().with_endpoints(ENDPOINTS);
        keyring.insert(issued.key)?;
        let app = App {
            catalog,
            read,
            write,
            delete,
            account,
            keys: Arc::new(RwLock::new(keyring)),
            data: Mutex::new(Data {
                next_project: 1,
                next_recording: 1,
                ..Data::default()
            }),
        };
        Ok((AppState(Arc::new(app)), token))
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        // A poisoned lock only means a handler panicked mid-request; the maps are still whole.
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `authorize` for this request, with the key's creator cap, as a handler-ready result.
    fn check(&self, key: &ApiKey, action: Action, resource: Resource) -> Result<(), ApiError> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        match keys.authorize_key(key, action, &resource, now()) {
            Decision::Allow => Ok(()),
            Decision::Deny(deny) => Err(ApiError::deny(deny, &self.catalog)),
        }
    }

    fn project_resource(&self, project: u64) -> Resource {
        Resource::in_project(self.account, ProjectId::from_u64(project))
    }
}

/// Every route, as usage names it (method and matched path under `/api/v1/public`).
const ENDPOINTS: [&str; 17] = [
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
    "GET /api_keys/{id}",
    "DELETE /api_keys/{id}",
    "POST /api_keys/{id}/regenerate",
    "GET /api_keys/{id}/usage",
];

/// The whole API under `/api/v1/public`.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/projects", post(create_project).get(list_projects))
        .route(
            "/projects/{id}",
            get(get_project)
                .patch(update_project)
                .delete(delete_project),
        )
        .route("/recordings", post(create_recording).get(list_recordings))
        .route(
            "/recordings/{id}",
            get(get_recording)
                .patch(update_recording)
                .delete(delete_recording),
        )
        .route("/recordings/{id}/transcription", get(get_transcription))
        .route("/api_keys", post(create_key).get(list_keys))
        .route("/api_keys/{id}", get(get_key).delete(revoke_key))
        .route("/api_keys/{id}/regenerate", post(regenerate_key))
        .route("/api_keys/{id}/usage", get(key_usage))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .nest("/api/v1/public", api)
        .fallback(|| async { ApiError::not_found() })
        .with_state(state)
}

/// Runs before every route: 401 for a missing or bad key, 429 over the key's rate limit; then
/// records the request in the key's usage.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let app = &state.0;
    let now = now();
    let key = match bearer_token(request.headers()).map(|t| app.keys.authenticate(t, now)) {
        Some(Ok(key)) => key,
        _ => return ApiError::unauthorized().into_response(),
    };
    let endpoint = format!(
        "{} {}",
        request.method(),
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or("?", MatchedPath::as_str)
            .trim_start_matches("/api/v1/public")
    );
    let id = key.id();
    // The key's own limit and every rate-limited ancestor's: children share their parents' budgets.
    let limited = app
        .keys
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .check_rate_limit(id, now)
        .err();
    let response = match limited {
        Some(retry) => ApiError::from(retry).into_response(),
        None => {
            request.extensions_mut().insert(Authenticated(key));
            next.run(request).await
        }
    };
    let status = response.status().as_u16();
    app.keys
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .record_usage(id, &endpoint, status, now);
    response
}

type Caller = Extension<Authenticated>;
type Reply = Result<Response, ApiError>;

/// `{"data": ...}`, keeping the fields in the order the types declare them (as the seeds show).
#[derive(Serialize)]
struct Envelope<T> {
    data: T,
}

fn created(data: impl Serialize) -> Reply {
    Ok((StatusCode::CREATED, Json(Envelope { data })).into_response())
}

fn ok(data: impl Serialize) -> Reply {
    Ok(Json(Envelope { data }).into_response())
}

fn no_content() -> Reply {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Parses a JSON body ourselves, so a malformed one gets our 422 shape rather than axum's text.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::validation(vec![format!("Invalid request body: {e}")]))
}

fn blank(value: Option<&str>) -> bool {
    value.is_none_or(|v| v.trim().is_empty())
}

// ---------------------------------------------------------------------------------------------
// Projects (seed 000)

/// ProjectDetail, with every field of seed 000's example.
#[derive(Debug, Clone, Serialize)]
struct Project {
    id: u64,
    name: String,
    language: String,
    industry: Option<String>,
    created_at: Timestamp,
    updated_at: Timestamp,
    description: Option<String>,
    goal_language: Option<String>,
    summary_language: Option<String>,
    long_pause_threshold_seconds: Option<i64>,
    transcription_hints: Option<String>,
    retention_days: Option<i64>,
    quality_baseline_enabled: bool,
    quality_baseline_pct: Option<f64>,
    recordings_count: u64,
    virtual_numbers_count: u64,
}

/// The body of `POST /projects` and `PATCH /projects/{id}`: every field optional here, required
/// ones checked by hand so that all problems are reported together.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectBody {
    name: Option<String>,
    language: Option<String>,
    description: Option<String>,
    industry: Option<String>,
    goal_language: Option<String>,
    summary_language: Option<String>,
    long_pause_threshold_seconds: Option<i64>,
    transcription_hints: Option<String>,
    retention_days: Option<i64>,
    quality_baseline_enabled: Option<bool>,
    quality_baseline_pct: Option<f64>,
}

impl ProjectBody {
    fn problems(&self, creating: bool) -> Vec<String> {
        let mut errors = Vec::new();
        if (creating || self.name.is_some()) && blank(self.name.as_deref()) {
            errors.push("Name can't be blank".to_owned());
        }
        if (creating || self.language.is_some()) && blank(self.language.as_deref()) {
            errors.push("Language can't be blank".to_owned());
        }
        if self.long_pause_threshold_seconds.is_some_and(|s| s < 0) {
            errors.push("Long pause threshold seconds must be greater than or equal to 0".into());
        }
        if self.retention_days.is_some_and(|d| d < 1) {
            errors.push("Retention days must be greater than 0".to_owned());
        }
        if self
            .quality_baseline_pct
            .is_some_and(|p| !(0.0..=100.0).contains(&p))
        {
            errors.push("Quality baseline pct must be between 0 and 100".to_owned());
        }
        errors
    }

    fn apply(self, project: &mut Project) {
        let ProjectBody {
            name,
            language,
            description,
            industry,
            goal_language,
            summary_language,
            long_pause_threshold_seconds,
            transcription_hints,
            retention_days,
            quality_baseline_enabled,
            quality_baseline_pct,
        } = self;
        if let Some(v) = name {
            project.name = v.trim().to_owned();
        }
        if let Some(v) = language {
            project.language = v.trim().to_owned();
        }
        project.description = description.or(project.description.take());
        project.industry = industry.or(project.industry.take());
        project.goal_language = goal_language.or(project.goal_language.take());
        project.summary_language = summary_language.or(project.summary_language.take());
        project.long_pause_threshold_seconds =
            long_pause_threshold_seconds.or(project.long_pause_threshold_seconds);
        project.transcription_hints = transcription_hints.or(project.transcription_hints.take());
        project.retention_days = retention_days.or(project.retention_days);
        project.quality_baseline_enabled =
            quality_baseline_enabled.unwrap_or(project.quality_baseline_enabled);
        project.quality_baseline_pct = quality_baseline_pct.or(project.quality_baseline_pct);
    }
}

async fn create_project(
    State(s): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Reply {
    let app = &s.0;
    // Authorization before validation: a key that may not create projects learns nothing more.
    let create = app.write.at_account_level();
    app.check(&caller.0.0, create, Resource::account(app.account))?;
    let body: ProjectBody = parse_body(&body)?;
    let errors = body.problems(true);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let now = now_seconds();
    let mut data = app.data();
    let id = data.next_project;
    data.next_project += 1;
    let mut project = Project {
        id,
        name: String::new(),
        language: String::new(),
        industry: None,
        created_at: now,
        updated_at: now,
        description: None,
        goal_language: None,
        summary_language: None,
        long_pause_threshold_seconds: None,
        transcription_hints: None,
        retention_days: None,
        quality_baseline_enabled: false,
        quality_baseline_pct: None,
        recordings_count: 0,
        virtual_numbers_count: 0,
    };
    body.apply(&mut project);
    data.projects.insert(id, project.clone());
    created(project)
}

async fn list_projects(State(s): State<AppState>, caller: Caller) -> Reply {
    let app = &s.0;
    let key = &caller.0.0;
    app.check(key, app.read, Resource::listing(app.account))?;
    let data = app.data();
    let visible: Vec<&Project> = data
        .projects
        .values()
        .filter(|p| key.scope().reaches(ProjectId::from_u64(p.id)))
        .collect();
    ok(visible)
}

async fn get_project(State(s): State<AppState>, caller: Caller, Path(id): Path<u64>) -> Reply {
    let app = &s.0;
    app.check(&caller.0.0, app.read, app.project_resource(id))?;
    let data = app.data();
    let project = data.projects.get(&id).ok_or_else(ApiError::not_found)?;
    ok(project)
}

async fn update_project(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
    body: axum::body::Bytes,
) -> Reply {
    let app = &s.0;
    app.check(&caller.0.0, app.write, app.project_resource(id))?;
    let body: ProjectBody = parse_body(&body)?;
    let mut data = app.data();
    let project = data.projects.get_mut(&id).ok_or_else(ApiError::not_found)?;
    let errors = body.problems(false);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    body.apply(project);
    project.updated_at = now_seconds();
    ok(project.clone())
}

async fn delete_project(State(s): State<AppState>, caller: Caller, Path(id): Path<u64>) -> Reply {
    let app = &s.0;
    let destroy = app.delete.at_account_level();
    app.check(&caller.0.0, destroy, app.project_resource(id))?;
    let mut data = app.data();
    data.projects.remove(&id).ok_or_else(ApiError::not_found)?;
    data.recordings.retain(|_, r| r.project_id != id);
    no_content()
}

// ---------------------------------------------------------------------------------------------
// Recordings (seed 001's endpoints and permission table)

#[derive(Debug, Clone, Serialize)]
struct Recording {
    id: u64,
    project_id: u64,
    title: String,
    created_at: Timestamp,
    updated_at: Timestamp,
    #[serde(skip)]
    transcription: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordingBody {
    project_id: Option<u64>,
    title: Option<String>,
    transcription: Option<String>,
}

async fn create_recording(
    State(s): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Reply {
    let app = &s.0;
    let key = &caller.0.0;
    let body: RecordingBody = parse_body(&body)?;
    // A project-scoped key's recordings go to its project unless it names one.
    let project_id = body
        .project_id
        .or_else(|| key.scope().project().and_then(|p| p.as_u64()));
    let mut errors = Vec::new();
    if project_id.is_none() {
        errors.push("Project can't be blank".to_owned());
    }
    if blank(body.title.as_deref()) {
        errors.push("Title can't be blank".to_owned());
    }
    let Some(project_id) = project_id else {
        return Err(ApiError::validation(errors));
    };
    app.check(key, app.write, app.project_resource(project_id))?;
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let now = now_seconds();
    let mut data = app.data();
    let project = data
        .projects
        .get_mut(&project_id)
        .ok_or_else(ApiError::not_found)?;
    project.recordings_count += 1;
    let id = data.next_recording;
    data.next_recording += 1;
    let recording = Recording {
        id,
        project_id,
        title: body.title.unwrap_or_default().trim().to_owned(),
        created_at: now,
        updated_at: now,
        transcription: body.transcription.unwrap_or_default(),
    };
    data.recordings.insert(id, recording.clone());
    created(recording)
}

#[derive(Debug, Deserialize)]
struct RecordingFilter {
    project_id: Option<u64>,
}

async fn list_recordings(
    State(s): State<AppState>,
    caller: Caller,
    Query(filter): Query<RecordingFilter>,
) -> Reply {
    let app = &s.0;
    let key = &caller.0.0;
    let resource = match filter.project_id {
        Some(p) => app.project_resource(p),
        None => Resource::listing(app.account),
    };
    app.check(key, app.read, resource)?;
    let data = app.data();
    let visible: Vec<&Recording> = data
        .recordings
        .values()
        .filter(|r| key.scope().reaches(ProjectId::from_u64(r.project_id)))
        .filter(|r| filter.project_id.is_none_or(|p| p == r.project_id))
        .collect();
    ok(visible)
}

/// Finds a recording and authorizes `permission` on its project. A recording the key may not see
/// and one that does not exist give the same 404.
fn recording_for(app: &App, key: &ApiKey, id: u64, action: Action) -> Result<Recording, ApiError> {
    let recording = app
        .data()
        .recordings
        .get(&id)
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    app.check(key, action, app.project_resource(recording.project_id))?;
    Ok(recording)
}

async fn get_recording(State(s): State<AppState>, caller: Caller, Path(id): Path<u64>) -> Reply {
    ok(recording_for(&s.0, &caller.0.0, id, s.0.read)?)
}

async fn update_recording(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
    body: axum::body::Bytes,
) -> Reply {
    let app = &s.0;
    recording_for(app, &caller.0.0, id, app.write)?;
    let body: RecordingBody = parse_body(&body)?;
    if body.project_id.is_some() {
        return Err(ApiError::validation(vec![
            "Project can't be changed".to_owned(),
        ]));
    }
    if body.title.is_some() && blank(body.title.as_deref()) {
        return Err(ApiError::validation(vec![
            "Title can't be blank".to_owned(),
        ]));
    }
    let mut data = app.data();
    let recording = data
        .recordings
        .get_mut(&id)
        .ok_or_else(ApiError::not_found)?;
    if let Some(title) = body.title {
        recording.title = title.trim().to_owned();
    }
    if let Some(text) = body.transcription {
        recording.transcription = text;
    }
    recording.updated_at = now_seconds();
    ok(recording.clone())
}

async fn delete_recording(State(s): State<AppState>, caller: Caller, Path(id): Path<u64>) -> Reply {
    let app = &s.0;
    let recording = recording_for(app, &caller.0.0, id, app.delete)?;
    let mut data = app.data();
    data.recordings.remove(&id);
    if let Some(project) = data.projects.get_mut(&recording.project_id) {
        project.recordings_count = project.recordings_count.saturating_sub(1);
    }
    no_content()
}

async fn get_transcription(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
) -> Reply {
    let recording = recording_for(&s.0, &caller.0.0, id, s.0.read)?;
    ok(json!({ "recording_id": recording.id, "text": recording.transcription }))
}

// ---------------------------------------------------------------------------------------------
// API keys (seed 001: create, list, regenerate, revoke, usage)

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
        key: None,
    }
}

/// The one response that carries the secret: creation and regeneration.
fn with_secret<'a>(view: KeyView<'a>, token: &'a keygate::Token) -> KeyView<'a> {
    KeyView {
        key: Some(token.expose_secret()),
        ..view
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    name: Option<String>,
    permissions: Option<Vec<String>>,
    project_id: Option<ProjectId>,
    expires_at: Option<String>,
    ttl_seconds: Option<u64>,
    rate_limit: Option<Value>,
}

async fn create_key(State(s): State<AppState>, caller: Caller, body: axum::body::Bytes) -> Reply {
    let app = &s.0;
    let issuer_key = &caller.0.0;
    let body: KeyBody = parse_body(&body)?;
    let now = now();
    // As the keyring holds the key now, capped by its creator's current permissions.
    let issuer = app
        .keys
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .issuer(&app.catalog, issuer_key.id(), now)
        .map_err(|e| ApiError::issue(e, &app.catalog))?;

    let mut spec = KeySpec::named(body.name.unwrap_or_default());
    let mut errors = Vec::new();
    if let Some(permissions) = body.permissions {
        spec = spec.permissions(permissions);
    }
    if let Some(project) = body.project_id {
        spec = spec.project(project);
    }
    if let Some(text) = body.expires_at {
        match text.parse::<Timestamp>() {
            Ok(at) => spec = spec.expires_at(at),
            Err(_) => errors.push("Expires at must be an RFC 3339 date-time".to_owned()),
        }
    }
    if let Some(ttl) = body.ttl_seconds {
        spec = spec.ttl(Duration::from_secs(ttl));
    }
    if let Some(limit) = body.rate_limit {
        match serde_json::from_value::<RateLimit>(limit) {
            Ok(limit) => spec = spec.rate_limit(limit),
            Err(e) => errors.push(format!("Rate limit is invalid: {e}")),
        }
    }
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
    let response = created(with_secret(key_view(app, &issued.key), &issued.token))?;
    let internal = || ApiError::message(StatusCode::INTERNAL_SERVER_ERROR, "Internal error");
    app.keys
        .write()
        .map_err(|_| internal())?
        .insert(issued.key)
        .map_err(|_| internal())?;
    Ok(response)
}

/// Finds a key by id and decides `op` on it with `keygate::manage`: an unknown id and a key out of
/// the caller's reach are the same 404; a key richer than the caller is a 403.
fn managed(
    app: &App,
    caller: &ApiKey,
    id: &str,
    op: ManageOp,
) -> Result<(ApiKey, Permit), ApiError> {
    let id: KeyId = id.parse().map_err(|_| ApiError::not_found())?;
    let now = now();
    let keys = app.keys.read().unwrap_or_else(|e| e.into_inner());
    let target = keys.get(id).cloned().ok_or_else(ApiError::not_found)?;
    let issuer = keys
        .issuer(&app.catalog, caller.id(), now)
        .map_err(|e| ApiError::issue(e, &app.catalog))?;
    let permit = manage(&app.catalog, &issuer, &target, op, now)
        .map_err(|e| ApiError::refusal(&e, &app.catalog))?;
    Ok((target, permit))
}

async fn list_keys(State(s): State<AppState>, caller: Caller) -> Reply {
    let app = &s.0;
    let key = &caller.0.0;
    app.check(key, app.read, Resource::listing(app.account))?;
    let now = now();
    let keys = app.keys.read().unwrap_or_else(|e| e.into_inner());
    // Only the keys the caller may read: the same decision as GET /api_keys/{id}.
    let visible: Vec<KeyView<'_>> = match keys.issuer(&app.catalog, key.id(), now) {
        Ok(issuer) => keys
            .iter()
            .filter(|k| manage(&app.catalog, &issuer, k, ManageOp::Read, now).is_ok())
            .map(|k| key_view(app, k))
            .collect(),
        Err(e) => return Err(ApiError::issue(e, &app.catalog)),
    };
    ok(visible)
}

async fn get_key(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> Reply {
    let app = &s.0;
    let (key, _) = managed(app, &caller.0.0, &id, ManageOp::Read)?;
    ok(key_view(app, &key))
}

async fn regenerate_key(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Reply {
    let app = &s.0;
    let (target, permit) = managed(app, &caller.0.0, &id, ManageOp::Rotate)?;
    let now = now();
    let mut keys = app.keys.write().unwrap_or_else(|e| e.into_inner());
    // IdentityCall's API: "The old key is immediately invalidated" — no grace period.
    let token = keys
        .rotate(&permit, now, None, &mut rand::rng())
        .map_err(|_| ApiError::not_found())?;
    let key = keys
        .get(target.id())
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    drop(keys);
    created(with_secret(key_view(app, &key), &token))
}

/// Revokes the key and every key it issued, down the tree: a revoked key's children were issued
/// under its authority.
async fn revoke_key(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> Reply {
    let app = &s.0;
    let (_, permit) = managed(app, &caller.0.0, &id, ManageOp::Revoke)?;
    app.keys
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .revoke_tree(&permit, now())
        .map_err(|_| ApiError::not_found())?;
    no_content()
}

async fn key_usage(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> Reply {
    let app = &s.0;
    let (target, _) = managed(app, &caller.0.0, &id, ManageOp::Read)?;
    let usage = app
        .keys
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .state(target.id())
        .map(|state| state.usage);
    ok(usage.unwrap_or_default())
}
