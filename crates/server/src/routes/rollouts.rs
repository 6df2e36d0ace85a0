//! Model versions and rollouts (scope `admin`): register a folder as a
//! version of a model, start a canary or shadow rollout of it with guards, watch
//! its per-version figures and guard states, promote or abort it. The
//! routing and the guards live in `easel_jobs::rollouts`; every change is
//! audited (`model.version_registered`, `rollout.started`,
//! `rollout.promoted`, `rollout.rolled_back`, `rollout.aborted`).

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use easel_jobs::rollouts::guard::Evaluation;
use easel_jobs::{RolloutError, StartRollout};
use easel_store::Rollout;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorKind};
use crate::extract::{ApiJson, ApiQuery, PathId};
use crate::routes::admin::require_admin;
use crate::state::AppState;

impl From<RolloutError> for ApiError {
    fn from(e: RolloutError) -> Self {
        match e {
            RolloutError::Invalid {
                code,
                field,
                message,
            } => ApiError::invalid(code, field, message),
            RolloutError::NotFound {
                code,
                field,
                message,
            } => ApiError::new(ErrorKind::NotFound, code, message).with_param(field),
            RolloutError::Conflict { code, message } => {
                ApiError::new(ErrorKind::Conflict, code, message)
            }
            RolloutError::Store(e) => ApiError::store("accessing versions and rollouts", e),
        }
    }
}

/// One version of a model.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionObject {
    /// The content hash of its folder.
    pub version: String,
    /// The folder.
    pub path: String,
    /// Its architecture, as its configs name it.
    pub architecture: Option<String>,
    /// Load state in this process (`unloaded`, `loading`, `ready`,
    /// `failed`); null when this process has no slot for it.
    pub state: Option<String>,
    /// Whether the model's name serves it (outside a canary's share).
    pub serving: bool,
    /// `baseline` or `candidate` in the running rollout.
    pub rollout_role: Option<String>,
    /// Who registered it (`server`: the configured folder, on first load).
    pub registered_by: Option<String>,
    /// Unix seconds.
    pub registered_at: i64,
}

impl From<easel_jobs::rollouts::VersionView> for VersionObject {
    fn from(v: easel_jobs::rollouts::VersionView) -> Self {
        Self {
            version: v.record.version,
            path: v.record.path,
            architecture: v.record.architecture,
            state: v.state.map(|s| s.name().to_string()),
            serving: v.serving,
            rollout_role: v.rollout_role.map(str::to_string),
            registered_by: v.record.registered_by,
            registered_at: v.record.registered_at.timestamp(),
        }
    }
}

/// The body of `POST /v1/admin/models/{name}/versions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterVersion {
    /// The model folder, as the workers see it.
    pub path: String,
}

/// Registers a folder as a version of a configured model.
#[utoipa::path(
    post,
    path = "/v1/admin/models/{name}/versions",
    tag = "rollouts",
    params(("name" = String, Path, description = "The model's name")),
    request_body = RegisterVersion,
    responses(
        (status = 201, description = "Registered", body = VersionObject),
        (status = 200, description = "Already registered", body = VersionObject),
        (status = 400, description = "`invalid_model_folder`: the engine cannot serve the folder", body = crate::error::ErrorBody),
        (status = 404, description = "`model_not_found`", body = crate::error::ErrorBody),
    )
)]
pub async fn register_version(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(name): PathId,
    ApiJson(body): ApiJson<RegisterVersion>,
) -> Result<(StatusCode, Json<VersionObject>), ApiError> {
    require_admin(&principal)?;
    let (record, new) = state
        .rollouts
        .register(
            &name,
            std::path::Path::new(&body.path),
            Some(principal.name()),
        )
        .await?;
    let view = state
        .rollouts
        .versions(&name)
        .await?
        .into_iter()
        .find(|v| v.record.version == record.version);
    let object = match view {
        Some(v) => v.into(),
        None => easel_jobs::rollouts::VersionView {
            record,
            state: None,
            serving: false,
            rollout_role: None,
        }
        .into(),
    };
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(object)))
}

/// A rollout, with its guards' evaluation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RolloutObject {
    /// `ro_…`.
    pub id: String,
    /// Always `rollout`.
    pub object: String,
    /// The model (alias).
    pub model: String,
    /// The version the model served when it started.
    pub baseline: String,
    /// The version under test.
    pub candidate: String,
    /// `canary` or `shadow`.
    pub mode: String,
    /// The candidate's share now (0 once rolled back or aborted).
    pub percent: f64,
    /// The guards.
    #[schema(value_type = Object)]
    pub guards: serde_json::Value,
    /// Whether passing guards promote the candidate.
    pub auto_promote: bool,
    /// `running`, `promoted`, `rolled_back` or `aborted`.
    pub state: String,
    /// Why it ended.
    pub reason: Option<String>,
    /// Per-version figures, each guard's estimate, likelihood ratio and
    /// verdict, and the decision: now for a running rollout, as they stood
    /// at the end for an ended one.
    #[schema(value_type = Object)]
    pub evaluation: Option<serde_json::Value>,
    /// The key that started it.
    pub created_by: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub ended_at: Option<i64>,
}

fn rollout_object(r: Rollout, evaluation: Option<Evaluation>) -> RolloutObject {
    let evaluation = evaluation
        .and_then(|e| serde_json::to_value(e).ok())
        .or(r.decision);
    RolloutObject {
        id: r.id,
        object: "rollout".into(),
        model: r.model,
        baseline: r.baseline,
        candidate: r.candidate,
        mode: r.mode,
        percent: r.percent,
        guards: r.guards,
        auto_promote: r.auto_promote,
        state: r.state.as_str().into(),
        reason: r.reason,
        evaluation,
        created_by: r.created_by,
        created_at: r.created_at.timestamp_millis(),
        ended_at: r.ended_at.map(|t| t.timestamp_millis()),
    }
}

/// Starts a rollout.
#[utoipa::path(
    post,
    path = "/v1/admin/rollouts",
    tag = "rollouts",
    request_body(content = Object, description = "`model`, `candidate`, `mode` (`canary`, default, or `shadow`), `percent` (0 < p ≤ 100; of the callers for a canary, of the requests for a shadow), `guards` (`min_requests` required; `max_quality_drop`, `max_latency_p95_ratio`, `max_error_rate`, `max_block_rate`, `alpha`), `auto_promote`"),
    responses(
        (status = 201, description = "Started", body = RolloutObject),
        (status = 400, description = "`invalid_percent`, `invalid_guard`, `candidate_is_baseline`, `candidate_load_failed`", body = crate::error::ErrorBody),
        (status = 404, description = "`model_not_found`, `version_not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`rollout_exists`", body = crate::error::ErrorBody),
    )
)]
pub async fn create_rollout(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<StartRollout>,
) -> Result<(StatusCode, Json<RolloutObject>), ApiError> {
    require_admin(&principal)?;
    let rollout = state.rollouts.start(body, Some(principal.name())).await?;
    Ok((StatusCode::CREATED, Json(rollout_object(rollout, None))))
}

/// Query of `GET /v1/admin/rollouts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutQuery {
    /// Only this model's.
    pub model: Option<String>,
    /// Only running ones.
    #[serde(default)]
    pub running: bool,
    /// At most this many (1 to 100, default 20).
    pub limit: Option<u32>,
}

/// A list of rollouts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RolloutList {
    /// Always `list`.
    pub object: String,
    /// Newest first.
    pub data: Vec<RolloutObject>,
}

/// Rollouts, newest first.
#[utoipa::path(
    get,
    path = "/v1/admin/rollouts",
    tag = "rollouts",
    params(
        ("model" = Option<String>, Query, description = "Only this model's"),
        ("running" = Option<bool>, Query, description = "Only running ones"),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 20"),
    ),
    responses((status = 200, description = "Rollouts", body = RolloutList))
)]
pub async fn list_rollouts(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(query): ApiQuery<RolloutQuery>,
) -> Result<Json<RolloutList>, ApiError> {
    require_admin(&principal)?;
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid(
            "invalid_limit",
            "limit",
            format!("limit must be between 1 and 100, got {limit}"),
        ));
    }
    let found = state
        .rollouts
        .list(query.model.as_deref(), query.running, limit)
        .await?;
    Ok(Json(RolloutList {
        object: "list".into(),
        data: found.into_iter().map(|r| rollout_object(r, None)).collect(),
    }))
}

/// A rollout with its guards evaluated now.
#[utoipa::path(
    get,
    path = "/v1/admin/rollouts/{id}",
    tag = "rollouts",
    params(("id" = String, Path, description = "`ro_…`")),
    responses(
        (status = 200, description = "The rollout", body = RolloutObject),
        (status = 404, description = "`rollout_not_found`", body = crate::error::ErrorBody),
    )
)]
pub async fn get_rollout(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
) -> Result<Json<RolloutObject>, ApiError> {
    require_admin(&principal)?;
    let (rollout, evaluation) = state.rollouts.status(&id).await?;
    Ok(Json(rollout_object(rollout, evaluation)))
}

/// Promotes the candidate now: the model's name serves it.
#[utoipa::path(
    post,
    path = "/v1/admin/rollouts/{id}/promote",
    tag = "rollouts",
    params(("id" = String, Path, description = "`ro_…`")),
    responses(
        (status = 200, description = "Promoted", body = RolloutObject),
        (status = 404, description = "`rollout_not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`rollout_ended`", body = crate::error::ErrorBody),
    )
)]
pub async fn promote_rollout(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
) -> Result<Json<RolloutObject>, ApiError> {
    require_admin(&principal)?;
    let rollout = state.rollouts.promote(&id, Some(principal.name())).await?;
    Ok(Json(rollout_object(rollout, None)))
}

/// Stops the rollout: the candidate gets no more traffic.
#[utoipa::path(
    post,
    path = "/v1/admin/rollouts/{id}/abort",
    tag = "rollouts",
    params(("id" = String, Path, description = "`ro_…`")),
    responses(
        (status = 200, description = "Aborted", body = RolloutObject),
        (status = 404, description = "`rollout_not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`rollout_ended`", body = crate::error::ErrorBody),
    )
)]
pub async fn abort_rollout(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
) -> Result<Json<RolloutObject>, ApiError> {
    require_admin(&principal)?;
    let rollout = state.rollouts.abort(&id, Some(principal.name())).await?;
    Ok(Json(rollout_object(rollout, None)))
}
