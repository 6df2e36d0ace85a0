//! Probes: `/healthz` (the process answers) and `/readyz` (it can serve:
//! database reachable, default model loaded, taking jobs).

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
}

/// Liveness: 200 while the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: 200 when the database answers, the default model is loaded
/// and new jobs are taken; 503 `not_ready` naming what is missing.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready", body = crate::error::ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let mut missing = Vec::new();
    if let Err(e) = state.jobs.db().ping().await {
        tracing::warn!(error = %e, "readiness: database unreachable");
        missing.push("database unreachable".to_string());
    }
    let models = state.jobs.models();
    if !models.default_ready() {
        let status = models
            .list()
            .into_iter()
            .find(|m| m.is_default)
            .map(|m| format!("{:?}", m.state))
            .unwrap_or_else(|| "not configured".into());
        missing.push(format!(
            "default model `{}` is {status}",
            models.default_name()
        ));
    }
    if !state.jobs.is_accepting() {
        missing.push("shutting down".into());
    }
    if missing.is_empty() {
        Ok(Json(Health {
            status: "ready".into(),
        }))
    } else {
        Err(ApiError::new(
            ErrorKind::Unavailable,
            "not_ready",
            missing.join("; "),
        ))
    }
}
