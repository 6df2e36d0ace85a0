//! `GET /v1/models` and `GET /v1/models/{name}`: OpenAI's model list, plus
//! Easel's fields for the warm pool (state, failure, memory, last use).

use axum::Json;
use axum::extract::State;
use easel_jobs::{ModelState, ModelStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::PathId;
use crate::state::AppState;

/// A model's defaults: what a request that names nothing gets.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelDefaults {
    /// `"WIDTHxHEIGHT"`.
    pub size: String,
    /// Denoising steps.
    pub steps: u32,
    /// Guidance scale.
    pub guidance_scale: f32,
    /// Sampler.
    pub sampler: String,
    /// Largest width or height.
    pub max_side: u32,
    /// Width and height must be multiples of this.
    pub size_multiple: u32,
}

/// One model.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelObject {
    /// The name to put in requests.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds; 0 (not tracked).
    pub created: i64,
    /// Always `easel`.
    pub owned_by: String,
    /// `unloaded`, `loading`, `ready` or `failed`.
    pub state: String,
    /// Whether requests naming no model get this one.
    pub default: bool,
    /// `sd1`, `sd2`, `sdxl` or `pixel`, once it has loaded (kept after eviction).
    pub architecture: Option<String>,
    /// Content hash of the weights, once it has loaded.
    pub content_hash: Option<String>,
    /// Defaults, once it has loaded.
    pub defaults: Option<ModelDefaults>,
    /// Why it failed to load, `code: message`.
    pub error: Option<String>,
    /// The failure's stable code, e.g. `corrupt_weights`.
    pub error_code: Option<String>,
    /// Memory it takes when loaded, in bytes: measured once it has loaded,
    /// else estimated from its weight files (4 bytes per weight).
    pub memory_bytes: u64,
    /// When a request last used it (or it finished loading), Unix seconds.
    pub last_used_at: Option<i64>,
    /// Running batches holding it now.
    pub in_use: usize,
}

/// The model list.
/// One model with its versions (`GET /v1/models/{name}`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelVersions {
    /// The model, as `/v1/models` lists it.
    #[serde(flatten)]
    pub model: ModelObject,
    /// The version its name serves now (outside a canary's share).
    pub version: Option<String>,
    /// Every known version, oldest first: the configured folder's (once
    /// it has loaded) and each registered one, with its state and role.
    pub versions: Vec<crate::routes::rollouts::VersionObject>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The models.
    pub data: Vec<ModelObject>,
    /// Extension: the pool's memory budget, in bytes.
    pub memory_budget_bytes: u64,
}

/// The API's view of a model's status.
pub fn model_object(m: &ModelStatus) -> ModelObject {
    let info = m.info();
    let (error, error_code) = match &m.state {
        ModelState::Failed { code, message } => {
            (Some(format!("{code}: {message}")), Some(code.clone()))
        }
        _ => (None, None),
    };
    ModelObject {
        id: m.name.clone(),
        object: "model".into(),
        created: 0,
        owned_by: "easel".into(),
        state: m.state.name().into(),
        default: m.is_default,
        architecture: info.map(|i| {
            serde_json::to_value(i.architecture)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        }),
        content_hash: info.map(|i| i.content_hash.clone()),
        defaults: info.map(|i| ModelDefaults {
            size: i.default_size.to_string(),
            steps: i.default_steps,
            guidance_scale: i.default_guidance,
            sampler: i.default_sampler.as_str().into(),
            max_side: i.max_side,
            size_multiple: i.size_multiple,
        }),
        error,
        error_code,
        memory_bytes: m.memory_bytes,
        last_used_at: m
            .last_used
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64),
        in_use: m.in_use,
    }
}

/// Lists the configured models and their state.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "models",
    responses((status = 200, description = "The models", body = ModelList))
)]
pub async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    let models = &state.models;
    Json(ModelList {
        object: "list".into(),
        data: models.list().iter().map(model_object).collect(),
        memory_budget_bytes: models.budget_bytes(),
    })
}

/// One model and its state.
#[utoipa::path(
    get,
    path = "/v1/models/{name}",
    tag = "models",
    params(("name" = String, Path, description = "The model's name")),
    responses(
        (status = 200, description = "The model, with its versions", body = ModelVersions),
        (status = 404, description = "`model_not_found`", body = crate::error::ErrorBody),
    )
)]
pub async fn get_model(
    State(state): State<AppState>,
    PathId(name): PathId,
) -> Result<Json<ModelVersions>, ApiError> {
    if name.contains('@') {
        return Err(ApiError::new(
            crate::error::ErrorKind::NotFound,
            "model_not_found",
            format!(
                "model `{}` does not exist; versions are listed under their model's name",
                name.chars().take(80).collect::<String>()
            ),
        ));
    }
    let status = state.models.status(&name)?;
    let versions = state.rollouts.versions(&name).await?;
    Ok(Json(ModelVersions {
        model: model_object(&status),
        version: state.rollouts.current_version(&name),
        versions: versions.into_iter().map(Into::into).collect(),
    }))
}
