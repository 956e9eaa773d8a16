//! Recordings (seed 001's endpoints and permission table).

use axum::extract::State;
use keygate::axum::{ApiError, Caller};
use keygate::{Action, AuthenticatedKey, ProjectId, Resource, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::project_resource;
use crate::page::{List, PageRequest, next_cursor};
use crate::projects::now_seconds;
use crate::reply::{
    ApiQuery, Id, JsonBody, Reply, check_len, check_name, created, no_content, ok, page,
};
use crate::state::{App, AppState, take_page};

/// The longest transcription stored, in characters (about 100 KB of text: an hour of speech is
/// some 60,000 characters).
pub const MAX_TRANSCRIPTION_LEN: usize = 100_000;

/// A recording as the API shows it (and, with its transcription, as it is stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Recording {
    pub(crate) id: u64,
    pub(crate) project_id: u64,
    title: String,
    created_at: Timestamp,
    updated_at: Timestamp,
    #[serde(skip)]
    pub(crate) transcription: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordingBody {
    project_id: Option<u64>,
    title: Option<String>,
    transcription: Option<String>,
}

fn check_transcription(errors: &mut Vec<String>, text: Option<&str>) {
    check_len(errors, "Transcription", text, MAX_TRANSCRIPTION_LEN);
}

pub(crate) async fn create_recording(
    State(app): State<AppState>,
    Caller(key): Caller,
    JsonBody(body): JsonBody<RecordingBody>,
) -> Reply {
    // A project-scoped key's recordings go to its project unless it names one.
    let project_id = body
        .project_id
        .or_else(|| key.scope().project().and_then(|p| p.as_u64()));
    let mut errors = Vec::new();
    if project_id.is_none() {
        errors.push("Project can't be blank".to_owned());
    }
    check_name(
        &mut errors,
        "Title",
        body.title.as_deref().unwrap_or_default(),
    );
    check_transcription(&mut errors, body.transcription.as_deref());
    let Some(project_id) = project_id else {
        return Err(ApiError::validation(errors));
    };
    app.check(&key, app.write, project_resource(key.account(), project_id))?;
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let now = now_seconds();
    let recording = app
        .add_recording(key.account(), ProjectId::from_u64(project_id), |id| {
            Recording {
                id,
                project_id,
                title: body.title.unwrap_or_default().trim().to_owned(),
                created_at: now,
                updated_at: now,
                transcription: body.transcription.unwrap_or_default(),
            }
        })?
        .ok_or_else(ApiError::not_found)?;
    created(recording)
}

/// `GET /recordings`'s query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordingsQuery {
    project_id: Option<u64>,
    limit: Option<i64>,
    cursor: Option<String>,
}

pub(crate) async fn list_recordings(
    State(app): State<AppState>,
    Caller(key): Caller,
    query: Result<ApiQuery<RecordingsQuery>, ApiError>,
) -> Reply {
    // A malformed query is no reason to skip authorization: a key that may not list learns
    // nothing from its query being wrong.
    let query = match query {
        Ok(ApiQuery(query)) => query,
        Err(error) => {
            app.check(&key, app.read, Resource::listing(key.account()))?;
            return Err(error);
        }
    };
    let resource = match query.project_id {
        Some(p) => project_resource(key.account(), p),
        None => Resource::listing(key.account()),
    };
    app.check(&key, app.read, resource)?;
    let request = PageRequest::new(List::Recordings, query.limit, query.cursor.as_deref())?;
    let after: Option<u64> = request.after()?;
    let scope = key.scope();
    let slice = app.records(key.account(), |records| {
        let start = after.map_or(0, |a| a.saturating_add(1));
        take_page(
            records.recordings.range(start..),
            request.limit,
            |(_, r)| {
                scope.reaches(ProjectId::from_u64(r.project_id))
                    && query.project_id.is_none_or(|p| p == r.project_id)
            },
        )
        .map(|(_, recording)| recording.clone())
    });
    let next = next_cursor(List::Recordings, &slice.items, slice.more, |r| r.id);
    page(slice.items, next)
}

/// Finds a recording of the caller's account and authorizes `action` on its project. A
/// recording the key may not see and one that does not exist give the same 404.
fn recording_for(
    app: &App,
    key: &AuthenticatedKey,
    id: u64,
    action: Action,
) -> Result<Recording, ApiError> {
    let recording = app
        .records(key.account(), |r| r.recordings.get(&id).cloned())
        .ok_or_else(ApiError::not_found)?;
    app.check(
        key,
        action,
        project_resource(key.account(), recording.project_id),
    )?;
    Ok(recording)
}

pub(crate) async fn get_recording(
    State(app): State<AppState>,
    Caller(key): Caller,
    Id(id): Id<u64>,
) -> Reply {
    ok(recording_for(&app, &key, id, app.read)?)
}

pub(crate) async fn update_recording(
    State(app): State<AppState>,
    Caller(key): Caller,
    Id(id): Id<u64>,
    body: Result<JsonBody<RecordingBody>, ApiError>,
) -> Reply {
    recording_for(&app, &key, id, app.write)?;
    let JsonBody(body) = body?;
    let mut errors = Vec::new();
    if body.project_id.is_some() {
        errors.push("Project can't be changed".to_owned());
    }
    if let Some(title) = &body.title {
        check_name(&mut errors, "Title", title);
    }
    check_transcription(&mut errors, body.transcription.as_deref());
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let updated = app.change_records(key.account(), |records| {
        let Some(recording) = records.recordings.get_mut(&id) else {
            return Ok(None);
        };
        if let Some(title) = body.title {
            recording.title = title.trim().to_owned();
        }
        if let Some(text) = body.transcription {
            recording.transcription = text;
        }
        recording.updated_at = now_seconds();
        Ok(Some(recording.clone()))
    })?;
    ok(updated.ok_or_else(ApiError::not_found)?)
}

pub(crate) async fn delete_recording(
    State(app): State<AppState>,
    Caller(key): Caller,
    Id(id): Id<u64>,
) -> Reply {
    let recording = recording_for(&app, &key, id, app.delete)?;
    app.change_records(key.account(), |records| {
        records.recordings.remove(&id);
        if let Some(project) = records.projects.get_mut(&recording.project_id) {
            project.recordings_count = project.recordings_count.saturating_sub(1);
        }
        Ok(())
    })?;
    no_content()
}

pub(crate) async fn get_transcription(
    State(app): State<AppState>,
    Caller(key): Caller,
    Id(id): Id<u64>,
) -> Reply {
    let recording = recording_for(&app, &key, id, app.read)?;
    ok(json!({ "recording_id": recording.id, "text": recording.transcription }))
}
