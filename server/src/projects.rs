//! Projects (seed 000), with seed 002's name and description limits and tier caps.

use axum::extract::State;
use keygate::axum::{ApiError, Caller};
use keygate::{MAX_PROJECT_DESCRIPTION_LEN, ProjectId, Resource, Timestamp};
use serde::{Deserialize, Serialize};

use crate::auth::project_resource;
use crate::page::{List, PageRequest, next_cursor};
use crate::reply::{
    ApiQuery, Id, JsonBody, MAX_NAME_LEN, Reply, check_len, check_name, created, no_content, ok,
    page,
};
use crate::state::{AppState, now};

/// The longest language code, industry or goal/summary language, in characters.
pub const MAX_SHORT_TEXT_LEN: usize = MAX_NAME_LEN;
/// The longest transcription hints, in characters.
pub const MAX_HINTS_LEN: usize = 5_000;

/// ProjectDetail, with every field of seed 000's example (also its stored form, hence
/// `Deserialize`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Project {
    pub(crate) id: u64,
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
    pub(crate) recordings_count: u64,
    virtual_numbers_count: u64,
}

/// `now()` in whole seconds, for display timestamps (`2026-04-15T10:00:00Z`, as seed 000 shows
/// them). Keys keep full precision for expiry.
pub(crate) fn now_seconds() -> Timestamp {
    Timestamp::from_unix_seconds(now().unix_seconds())
}

/// The body of `POST /projects` and `PATCH /projects/{id}`: every field optional here, required
/// ones checked by hand so that all problems are reported together.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProjectBody {
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

fn blank(value: Option<&str>) -> bool {
    value.is_none_or(|v| v.trim().is_empty())
}

impl ProjectBody {
    fn problems(&self, creating: bool) -> Vec<String> {
        let mut errors = Vec::new();
        if creating || self.name.is_some() {
            check_name(
                &mut errors,
                "Name",
                self.name.as_deref().unwrap_or_default(),
            );
        }
        if (creating || self.language.is_some()) && blank(self.language.as_deref()) {
            errors.push("Language can't be blank".to_owned());
        }
        check_len(
            &mut errors,
            "Description",
            self.description.as_deref(),
            MAX_PROJECT_DESCRIPTION_LEN,
        );
        for (field, value) in [
            ("Language", &self.language),
            ("Industry", &self.industry),
            ("Goal language", &self.goal_language),
            ("Summary language", &self.summary_language),
        ] {
            check_len(&mut errors, field, value.as_deref(), MAX_SHORT_TEXT_LEN);
        }
        check_len(
            &mut errors,
            "Transcription hints",
            self.transcription_hints.as_deref(),
            MAX_HINTS_LEN,
        );
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

pub(crate) async fn create_project(
    State(app): State<AppState>,
    Caller(key): Caller,
    body: Result<JsonBody<ProjectBody>, ApiError>,
) -> Reply {
    // Authorization before validation: a key that may not create projects learns nothing more.
    let create = app.write.at_account_level();
    app.check(&key, create, Resource::account(key.account()))?;
    let JsonBody(body) = body?;
    let errors = body.problems(true);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let now = now_seconds();
    let project = app.add_project(key.account(), |id| {
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
        project
    })?;
    created(project)
}

/// `GET /projects`'s query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProjectsQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

pub(crate) async fn list_projects(
    State(app): State<AppState>,
    Caller(key): Caller,
    query: Result<ApiQuery<ProjectsQuery>, ApiError>,
) -> Reply {
    app.check(&key, app.read, Resource::listing(key.account()))?;
    let ApiQuery(query) = query?;
    let request = PageRequest::new(List::Projects, query.limit, query.cursor.as_deref())?;
    let after: Option<u64> = request.after()?;
    let scope = key.scope();
    let slice = app.records(key.account(), |records| {
        let start = after.map_or(0, |a| a.saturating_add(1));
        crate::state::take_page(records.projects.range(start..), request.limit, |(id, _)| {
            scope.reaches(ProjectId::from_u64(**id))
        })
        .map(|(_, project)| project.clone())
    });
    let next = next_cursor(List::Projects, &slice.items, slice.more, |p| p.id);
    page(slice.items, next)
}

pub(crate) async fn get_project(
    State(app): State<AppState>,
    Caller(key): Caller,
    Id(id): Id<u64>,
) -> Reply {
    app.check(&key, app.read, project_resource(key.account(), id))?;
    let project = app.records(key.account(), |r| r.projects.get(&id).cloned());
    ok(project.ok_or_else(ApiError::not_found)?)
}

pub(crate) async fn update_project(
    State(app): State<AppState>,
    Caller(key): Caller,
    Id(id): Id<u64>,
    body: Result<JsonBody<ProjectBody>, ApiError>,
) -> Reply {
    app.check(&key, app.write, project_resource(key.account(), id))?;
    let JsonBody(body) = body?;
    let errors = body.problems(false);
    let updated = app.change_records(key.account(), |records| {
        let project = records
            .projects
            .get_mut(&id)
            .ok_or_else(ApiError::not_found)?;
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        body.apply(project);
        project.updated_at = now_seconds();
        Ok(project.clone())
    })?;
    ok(updated)
}

pub(crate) async fn delete_project(
    State(app): State<AppState>,
    Caller(key): Caller,
    Id(id): Id<u64>,
) -> Reply {
    let destroy = app.delete.at_account_level();
    app.check(&key, destroy, project_resource(key.account(), id))?;
    app.change_records(key.account(), |records| {
        records
            .projects
            .remove(&id)
            .ok_or_else(ApiError::not_found)?;
        records.recordings.retain(|_, r| r.project_id != id);
        Ok::<_, ApiError>(())
    })?;
    no_content()
}
