//! The worker registry (scope `admin`): `GET /v1/admin/workers` lists every
//! worker process that registered in the last day (id, host, state, the
//! models it holds, open circuit breakers, the jobs it holds, its last
//! heartbeat); `POST /v1/admin/workers/{id}/drain` asks one to stop
//! claiming jobs. The worker learns of the request at its next heartbeat
//! (a sixth of `worker.lease_seconds`, 10 s by default), finishes what it
//! holds and stays up, claiming nothing, until it is stopped. Each drain
//! request is audited (`worker.drain_requested`, the key's name as actor).

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use easel_store::{StoreError, WorkerRecord, WorkerState};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorKind};
use crate::extract::PathId;
use crate::routes::admin::require_admin;
use crate::state::AppState;

/// One worker process of the registry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerObject {
    /// Always `worker`.
    pub object: String,
    /// Its id: host, process id and a random part; the `lease_owner` of
    /// the jobs it claims.
    pub id: String,
    /// The host (the pod's name on Kubernetes).
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// The Easel version it runs.
    pub version: String,
    /// `active`, `draining` (claims nothing new: a drain was requested or
    /// it is shutting down), `stopped`, or `lost` (no heartbeat for three
    /// intervals: it died or lost the database).
    pub state: String,
    /// Whether an operator asked it to drain.
    pub drain_requested: bool,
    /// The models it had loaded at its last heartbeat.
    pub models: Vec<String>,
    /// The models whose circuit breaker was open at its last heartbeat
    /// (it claims none of their jobs for now).
    pub open_circuits: Vec<String>,
    /// The ids of the jobs it holds a lease on.
    pub current_jobs: Vec<String>,
    /// When it registered (Unix seconds).
    pub started_at: i64,
    /// Its last heartbeat (Unix seconds).
    pub last_heartbeat_at: i64,
    /// Seconds since its last heartbeat, by this API process's clock.
    pub heartbeat_age_seconds: f64,
    /// How often it heartbeats (seconds).
    pub heartbeat_every_seconds: f64,
    /// When it said it stopped (Unix seconds).
    pub stopped_at: Option<i64>,
}

/// The registry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerList {
    /// Always `list`.
    pub object: String,
    /// Newest first.
    pub data: Vec<WorkerObject>,
}

fn worker_object(w: WorkerRecord, now: chrono::DateTime<chrono::Utc>) -> WorkerObject {
    let age = (now - w.last_heartbeat_at).num_milliseconds().max(0) as f64 / 1000.0;
    WorkerObject {
        object: "worker".into(),
        state: w.state.as_str().into(),
        drain_requested: w.drain_requested,
        current_jobs: w.running_jobs.iter().map(ToString::to_string).collect(),
        started_at: w.started_at.timestamp(),
        last_heartbeat_at: w.last_heartbeat_at.timestamp(),
        heartbeat_age_seconds: age,
        heartbeat_every_seconds: w.heartbeat_every.as_secs_f64(),
        stopped_at: w.stopped_at.map(|t| t.timestamp()),
        id: w.id,
        host: w.host,
        pid: w.pid,
        version: w.version,
        models: w.models,
        open_circuits: w.open_circuits,
    }
}

fn registry_error(e: StoreError) -> ApiError {
    match e {
        StoreError::WorkerNotFound(id) => ApiError::new(
            ErrorKind::NotFound,
            "worker_not_found",
            format!("no worker `{id}` is registered; GET /v1/admin/workers lists them"),
        ),
        e => ApiError::store("reading the worker registry", e),
    }
}

/// Lists the worker processes.
#[utoipa::path(
    get,
    path = "/v1/admin/workers",
    tag = "admin",
    responses(
        (status = 200, description = "Every worker seen in the last day", body = WorkerList),
        (status = 403, description = "`missing_scope`: the key lacks the admin scope", body = crate::error::ErrorBody),
    )
)]
pub async fn list_workers(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<WorkerList>, ApiError> {
    require_admin(&principal)?;
    let db = state.jobs.db();
    let workers = db.workers().await.map_err(registry_error)?;
    let now = db.now();
    Ok(Json(WorkerList {
        object: "list".into(),
        data: workers.into_iter().map(|w| worker_object(w, now)).collect(),
    }))
}

/// Asks a worker to drain: stop claiming jobs and finish what it holds.
#[utoipa::path(
    post,
    path = "/v1/admin/workers/{id}/drain",
    tag = "admin",
    params(("id" = String, Path, description = "The worker's id")),
    responses(
        (status = 202, description = "Requested; the worker stops claiming at its next heartbeat", body = WorkerObject),
        (status = 403, description = "`missing_scope`: the key lacks the admin scope", body = crate::error::ErrorBody),
        (status = 404, description = "`worker_not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`worker_stopped`: it has already stopped", body = crate::error::ErrorBody),
    )
)]
pub async fn drain_worker(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
) -> Result<(StatusCode, Json<WorkerObject>), ApiError> {
    require_admin(&principal)?;
    let db = state.jobs.db();
    let worker = db.worker(&id).await.map_err(registry_error)?;
    if worker.state == WorkerState::Stopped {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            "worker_stopped",
            format!("worker `{id}` has already stopped; there is nothing to drain"),
        ));
    }
    let worker = db.request_worker_drain(&id).await.map_err(registry_error)?;
    db.append_audit(
        easel_store::NewAuditEvent::new("worker.drain_requested")
            .actor(principal.name().to_string())
            .subject(id.clone())
            .detail(serde_json::json!({ "host": worker.host, "pid": worker.pid })),
    )
    .await
    .map_err(|e| ApiError::store("appending to the audit log", e))?;
    tracing::warn!(worker = %id, by = principal.name(), "admin: worker drain requested");
    Ok((StatusCode::ACCEPTED, Json(worker_object(worker, db.now()))))
}
