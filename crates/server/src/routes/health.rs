//! Probes: `/healthz` (the process answers) and `/readyz` (it can serve:
//! database reachable, default model loaded, taking jobs). `/readyz` also
//! lists every model's state, so a model that failed to load shows up even
//! while the default one serves.

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

/// Liveness: 200 while the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        models: Vec::new(),
    })
}

/// Readiness: 200 when the database answers, the default model is loaded
/// and new jobs are taken, with every model's state; 503 `not_ready` naming
/// what is missing and every model's state.
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
    let models = &state.models;
    if !models.default_ready() {
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
    let listed = model_health(models);
    if missing.is_empty() {
        Ok(Json(Health {
            status: "ready".into(),
            models: listed,
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
