//! Probes: `/healthz` (the process answers) and `/readyz` (it can serve:
//! database and object store reachable, the default model loaded — or, in
//! the `api` role, described by a worker — and taking jobs). `/readyz` also
//! lists every model's state, so a model that failed to load shows up even
//! while the default one serves, and, where the process runs a worker, the
//! worker's id, whether it is draining and its open circuit breakers. A
//! `worker` process that drains is not ready; neither is a worker whose
//! circuit breaker for the default model is open.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;

/// A probe's answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: String,
    /// `/readyz` only: every configured model's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelHealth>,
    /// `/readyz` only, where the process runs a worker: its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerHealth>,
}

/// The worker of this process, as `/readyz` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerHealth {
    /// Its id in the worker registry (`GET /v1/admin/workers`).
    pub id: String,
    /// `active`, or `draining` (it claims no new jobs).
    pub state: String,
    /// Models whose circuit breaker is open: this worker claims none of
    /// their jobs until the back-off ends.
    pub open_circuits: Vec<CircuitHealth>,
}

/// One open circuit breaker.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CircuitHealth {
    /// The model.
    pub model: String,
    /// Seconds until its next trial.
    pub closes_in_seconds: u64,
}

fn worker_health(worker: &easel_jobs::Worker) -> WorkerHealth {
    WorkerHealth {
        id: worker.id().to_string(),
        state: if worker.is_draining() {
            "draining"
        } else {
            "active"
        }
        .into(),
        open_circuits: worker
            .open_circuits()
            .into_iter()
            .map(|(model, left)| CircuitHealth {
                model,
                closes_in_seconds: left.as_secs_f64().ceil() as u64,
            })
            .collect(),
    }
}

/// One model's state, as `/readyz` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelHealth {
    /// The model's name.
    pub name: String,
    /// `unloaded`, `loading`, `ready` or `failed`.
    pub state: String,
    /// Whether it is the default model (the one readiness depends on).
    pub default: bool,
    /// The failure's stable code, e.g. `corrupt_weights`.
    pub error_code: Option<String>,
    /// Why it failed to load.
    pub error: Option<String>,
}

fn model_health(models: &easel_jobs::Models) -> Vec<ModelHealth> {
    models
        .list()
        .into_iter()
        .map(|m| {
            let (error_code, error) = match &m.state {
                easel_jobs::ModelState::Failed { code, message } => {
                    (Some(code.clone()), Some(message.clone()))
                }
                _ => (None, None),
            };
            ModelHealth {
                name: m.name,
                state: m.state.name().into(),
                default: m.is_default,
                error_code,
                error,
            }
        })
        .collect()
}

/// How long `/readyz` waits for each dependency.
const DEPENDENCY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Liveness: 200 while the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        models: Vec::new(),
        worker: None,
    })
}

/// Readiness: 200 when the database and the object store answer, the
/// default model is loaded (in the `api` role: described by a worker) and
/// new jobs are taken, with every model's state; 503 `not_ready` naming
/// what is missing and every model's state.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready", body = crate::error::ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let mut missing = Vec::new();
    // Each dependency answers within the probe's budget or counts as down
    // (the stores retry for longer than a probe waits).
    match tokio::time::timeout(DEPENDENCY_TIMEOUT, state.jobs.db().ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            missing.push("database unreachable".to_string());
        }
        Err(_) => missing.push("database unreachable (no answer in 3 s)".to_string()),
    }
    match tokio::time::timeout(DEPENDENCY_TIMEOUT, state.jobs.blobs().check()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: object store unreachable");
            missing.push(format!("object store unreachable ({})", e.code()));
        }
        Err(_) => missing.push("object store unreachable (no answer in 3 s)".to_string()),
    }
    let models = &state.models;
    if models.is_remote() {
        if models.info(None).is_err() {
            missing.push(format!(
                "no worker has described the default model `{}` yet (api role)",
                models.default_name()
            ));
        }
    } else if !models.default_ready() {
        let status = models
            .list()
            .into_iter()
            .find(|m| m.is_default)
            .map(|m| m.state.to_string())
            .unwrap_or_else(|| "not configured".into());
        missing.push(format!(
            "default model `{}` is {status}",
            models.default_name()
        ));
    }
    if !state.jobs.is_accepting() {
        missing.push("shutting down".into());
    }
    let worker = state.worker.as_ref().map(worker_health);
    if let (Some(w), Some(running)) = (&worker, &state.worker) {
        if running.is_draining() && !state.config.role.serves_api() {
            missing.push("draining: this worker claims no new jobs".into());
        }
        let default = models.default_name();
        if let Some(c) = w.open_circuits.iter().find(|c| c.model == default) {
            missing.push(format!(
                "circuit breaker open for the default model `{default}` after repeated \
                 engine failures (next try in {} s)",
                c.closes_in_seconds
            ));
        }
    }
    let listed = model_health(models);
    if missing.is_empty() {
        Ok(Json(Health {
            status: "ready".into(),
            models: listed,
            worker,
        }))
    } else {
        let states: Vec<String> = listed
            .iter()
            .map(|m| match &m.error_code {
                Some(code) => format!("{} {} ({code})", m.name, m.state),
                None => format!("{} {}", m.name, m.state),
            })
            .collect();
        Err(ApiError::new(
            ErrorKind::Unavailable,
            "not_ready",
            format!("{}; models: {}", missing.join("; "), states.join(", ")),
        ))
    }
}
