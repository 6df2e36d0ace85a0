//! `GET /v1/models`: OpenAI's model list, plus Easel's fields.

use axum::Json;
use axum::extract::State;
use easel_jobs::ModelState;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
    /// `sd1`, `sd2`, `sdxl` or `pixel`, once loaded.
    pub architecture: Option<String>,
    /// Content hash of the weights, once loaded.
    pub content_hash: Option<String>,
    /// Defaults, once loaded.
    pub defaults: Option<ModelDefaults>,
    /// Why it failed to load.
    pub error: Option<String>,
}

/// The model list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The models.
    pub data: Vec<ModelObject>,
}

/// Lists the configured models and their state.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "models",
    responses((status = 200, description = "The models", body = ModelList))
)]
pub async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    let data = state
        .jobs
        .models()
        .list()
        .into_iter()
        .map(|m| {
            let info = m.info();
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
                error: match &m.state {
                    ModelState::Failed { code, message } => Some(format!("{code}: {message}")),
                    _ => None,
                },
            }
        })
        .collect();
    Json(ModelList {
        object: "list".into(),
        data,
    })
}
