//! `/ops/backups/*`: jobs, manual runs, snapshots, restores and repository checks (SPEC §9).
//! Runs are started here and go on in the background; each answer names the runs it started,
//! and `GET /ops/backups/status` shows where they are.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{AppState, error::ApiError, error::ErrorBody, logs::parse_body};
use crate::{
    backup::{BackupError, BackupStatus, RunRecord, SnapshotSummary, jobs::JobSpec},
    store::now_ms,
};

impl From<BackupError> for ApiError {
    fn from(error: BackupError) -> Self {
        match error {
            BackupError::Invalid(message) => Self::unprocessable(message),
            BackupError::NoJob(_) | BackupError::NoSnapshot(_) | BackupError::NoAgent(_) => {
                Self::not_found(error.to_string())
            }
            BackupError::Busy(message) => Self::conflict(message),
            BackupError::Storage(detail) => Self::internal(detail),
        }
    }
}

/// `GET /ops/backups/status`: every job (schedule, next run, last run, success rate), runs going
/// on, the latest runs and check, and the repository's size.
#[utoipa::path(get, path = "/ops/backups/status", tag = "backups",
    responses((status = 200, description = "Backup status.", body = BackupStatus)))]
pub(super) async fn status(State(state): State<AppState>) -> Json<BackupStatus> {
    Json(state.backups.status(now_ms()))
}

/// A job saved.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct JobSaved {
    /// Whether it is new (else it replaced the job of that name).
    created: bool,
    /// Its name.
    name: String,
}

/// `POST /ops/backups/jobs`: creates or replaces a job (by name).
#[utoipa::path(post, path = "/ops/backups/jobs", tag = "backups",
    request_body(content = JobSpec, content_type = "application/json"),
    responses(
        (status = 201, description = "Created.", body = JobSaved),
        (status = 200, description = "Replaced the job of that name.", body = JobSaved),
        (status = 422, description = "Not a valid job; the message names the field.", body = ErrorBody),
    ))]
pub(super) async fn put_job(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<JobSaved>), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::unprocessable(
            "a job needs a body: name, agents and source",
        ));
    }
    let spec: JobSpec = parse_body(&body, "backup job")?;
    let name = spec.name.clone();
    let backups = state.backups.clone();
    let created = tokio::task::spawn_blocking(move || backups.put_job(spec))
        .await
        .map_err(ApiError::internal)??;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(JobSaved { created, name })))
}

/// A job deleted.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct JobDeleted {
    /// Its name.
    name: String,
}

/// `DELETE /ops/backups/jobs/{name}`: the job is no longer scheduled or listed. Runs going on
/// finish, and its snapshots stay, restorable.
#[utoipa::path(delete, path = "/ops/backups/jobs/{name}", tag = "backups",
    params(("name" = String, Path, description = "The job's name")),
    responses(
        (status = 200, description = "Deleted.", body = JobDeleted),
        (status = 404, description = "No such job.", body = ErrorBody),
    ))]
pub(super) async fn delete_job(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<JobDeleted>, ApiError> {
    let backups = state.backups.clone();
    let target = name.clone();
    tokio::task::spawn_blocking(move || backups.delete_job(&target))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(JobDeleted { name }))
}

/// Which job to run now.
#[derive(Deserialize, Debug, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ManualRequest {
    /// The job.
    #[schema(example = "etc-config")]
    job: String,
    /// Only these of its agents (default: all of them).
    #[serde(default)]
    agents: Option<Vec<String>>,
}

/// Runs started.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct RunsStarted {
    /// Their ids, as `GET /ops/backups/status` shows them.
    runs: Vec<RunRecord>,
}

/// `POST /ops/backups/manual`: runs a job now, on all its agents or the ones listed.
#[utoipa::path(post, path = "/ops/backups/manual", tag = "backups",
    request_body(content = ManualRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Started.", body = RunsStarted),
        (status = 404, description = "No such job or agent.", body = ErrorBody),
        (status = 409, description = "Still running on every agent named.", body = ErrorBody),
        (status = 422, description = "A bad body, or an agent the job does not back up.", body = ErrorBody),
    ))]
pub(super) async fn manual(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<RunsStarted>), ApiError> {
    let request: ManualRequest = parse_body(&body, "manual backup request")?;
    if request.job.is_empty() {
        return Err(ApiError::unprocessable("job: name the job to run"));
    }
    let ids = state
        .backups
        .start_backup(&request.job, request.agents.as_deref(), "manual")?;
    let runs = ids.iter().filter_map(|id| state.backups.run(*id)).collect();
    Ok((StatusCode::ACCEPTED, Json(RunsStarted { runs })))
}

/// `?job=&agent=` of the snapshot list.
#[derive(Deserialize, Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct SnapshotFilter {
    /// Only this job's.
    job: Option<String>,
    /// Only those read on this agent.
    agent: Option<String>,
}

/// Snapshots, newest first.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct SnapshotList {
    snapshots: Vec<SnapshotSummary>,
}

/// `GET /ops/backups/snapshots`: snapshots, newest first.
#[utoipa::path(get, path = "/ops/backups/snapshots", tag = "backups", params(SnapshotFilter),
    responses((status = 200, description = "Snapshots.", body = SnapshotList)))]
pub(super) async fn snapshots(
    State(state): State<AppState>,
    Query(filter): Query<SnapshotFilter>,
) -> Json<SnapshotList> {
    let mut snapshots = state
        .backups
        .snapshots(filter.job.as_deref(), filter.agent.as_deref());
    snapshots.reverse();
    Json(SnapshotList { snapshots })
}

/// What to restore where.
#[derive(Deserialize, Debug, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RestoreRequest {
    /// The snapshot's id.
    #[schema(example = "3f9a1c2b7d4e5f60")]
    snapshot: String,
    /// The agent to restore on (default: the one it was read on).
    #[serde(default)]
    agent: Option<String>,
    /// Absolute directory on that agent the snapshot's files go under. It is replaced only once
    /// everything arrived and matched the manifest.
    #[schema(example = "/srv/restore/etc")]
    target: String,
}

/// A run started.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct RunStarted {
    run: RunRecord,
}

/// `POST /ops/backups/restore`: checks every chunk of the snapshot, then streams it to the agent,
/// which stages it beside the target, verifies each file, switches it into place atomically and
/// verifies again. A failed check never touches the target.
#[utoipa::path(post, path = "/ops/backups/restore", tag = "backups",
    request_body(content = RestoreRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Started.", body = RunStarted),
        (status = 404, description = "No such snapshot or agent.", body = ErrorBody),
        (status = 422, description = "A bad body or target.", body = ErrorBody),
    ))]
pub(super) async fn restore(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<RunStarted>), ApiError> {
    let request: RestoreRequest = parse_body(&body, "restore request")?;
    if request.snapshot.is_empty() {
        return Err(ApiError::unprocessable(
            "snapshot: name the snapshot to restore",
        ));
    }
    let run = state.backups.start_restore(
        &request.snapshot,
        request.agent.as_deref(),
        &request.target,
    )?;
    Ok((StatusCode::ACCEPTED, Json(RunStarted { run })))
}

/// How deep to check.
#[derive(Deserialize, Debug, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckRequest {
    /// Read and hash every chunk (default), rather than only see that each exists.
    #[serde(default = "yes")]
    read_data: bool,
}

impl Default for CheckRequest {
    fn default() -> Self {
        Self { read_data: true }
    }
}

fn yes() -> bool {
    true
}

/// `POST /ops/backups/check`: verifies the repository, like `restic check --read-data`.
#[utoipa::path(post, path = "/ops/backups/check", tag = "backups",
    request_body(content = CheckRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Started; the result is the run's detail.", body = RunStarted),
        (status = 422, description = "A bad body.", body = ErrorBody),
    ))]
pub(super) async fn check(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<RunStarted>), ApiError> {
    let request: CheckRequest = parse_body(&body, "check request")?;
    let run = state.backups.start_check(request.read_data);
    Ok((StatusCode::ACCEPTED, Json(RunStarted { run })))
}
