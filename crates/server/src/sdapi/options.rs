//! The options a caller of `/sdapi/v1` may set with `POST /sdapi/v1/options`
//! and read with `GET`: kept per caller in the database (the web UI keeps
//! one global set; one caller's choice must not change another's).
//!
//! Honoured: `sd_model_checkpoint` (the model a request naming none gets;
//! a title from `GET /sdapi/v1/sd-models` or a bare model name) and
//! `show_progress_every_n_steps` (how often a running job renders the
//! preview `GET /sdapi/v1/progress` returns; 0 turns previews off) and
//! `CLIP_stop_at_last_layers` (the clip skip of requests that set none). Any
//! other option is 400 `unsupported_option` naming it.

use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::sdapi::{model_title, name_of_title};
use crate::state::AppState;

/// Preview cadence when a caller set none: every step (a cheap preview).
pub const DEFAULT_PREVIEW_EVERY: u32 = 1;

/// A caller's options, with defaults filled.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerOptions {
    /// The model a request naming none gets; `None`: the server's default.
    pub model: Option<String>,
    /// Preview cadence in steps; 0: none.
    pub preview_every: u32,
    /// Clip skip (`CLIP_stop_at_last_layers`), 1 to 12.
    pub clip_skip: u32,
}

impl CallerOptions {
    /// Reads `caller`'s options.
    pub async fn load(state: &AppState, caller: &str) -> Result<Self, ApiError> {
        let stored = state
            .jobs
            .db()
            .client_options(caller)
            .await
            .map_err(|e| ApiError::store("reading the caller's options", e))?;
        Ok(Self {
            model: stored
                .get("sd_model_checkpoint")
                .and_then(Value::as_str)
                .map(str::to_string),
            preview_every: stored
                .get("show_progress_every_n_steps")
                .and_then(Value::as_u64)
                .map_or(DEFAULT_PREVIEW_EVERY, |n| n.min(u64::from(u32::MAX)) as u32),
            clip_skip: stored
                .get("CLIP_stop_at_last_layers")
                .and_then(Value::as_u64)
                .map_or(1, |n| {
                    n.clamp(1, u64::from(easel_core::MAX_CLIP_SKIP)) as u32
                }),
        })
    }

    /// The options as `GET /sdapi/v1/options` shows them.
    pub fn to_json(&self, state: &AppState) -> Value {
        let name = self
            .model
            .clone()
            .unwrap_or_else(|| state.models.default_name().to_string());
        let hash = state
            .models
            .info(Some(&name))
            .ok()
            .map(|i| i.content_hash.clone());
        json!({
            "sd_model_checkpoint": model_title(&name, hash.as_deref()),
            "sd_checkpoint_hash": hash.as_deref().map(|h| h.rsplit(':').next().unwrap_or_default().to_string()),
            "show_progress_every_n_steps": self.preview_every,
            "samples_format": "png",
            "CLIP_stop_at_last_layers": self.clip_skip,
            "eta_ancestral": 1.0,
            "eta_ddim": 0.0,
        })
    }
}

/// Validates `body` (`POST /sdapi/v1/options`) and stores it over the
/// caller's options.
pub async fn set(state: &AppState, caller: &str, body: &Value) -> Result<(), ApiError> {
    let Some(changes) = body.as_object() else {
        return Err(ApiError::invalid(
            "invalid_body",
            "body",
            "the body must be a JSON object of options",
        ));
    };
    let mut stored: Map<String, Value> = match state
        .jobs
        .db()
        .client_options(caller)
        .await
        .map_err(|e| ApiError::store("reading the caller's options", e))?
    {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (key, value) in changes {
        match key.as_str() {
            "sd_model_checkpoint" => {
                let Some(title) = value.as_str() else {
                    return Err(ApiError::invalid(
                        "invalid_option",
                        "sd_model_checkpoint",
                        "sd_model_checkpoint must be a model title or name",
                    ));
                };
                let name = name_of_title(title);
                // An unknown model is 404 `model_not_found` naming the served ones.
                let info = state.models.info(Some(name))?;
                stored.insert(key.clone(), Value::String(info.name.clone()));
            }
            "show_progress_every_n_steps" => {
                let Some(n) = value.as_i64().filter(|n| (0..=150).contains(n)) else {
                    return Err(ApiError::invalid(
                        "invalid_option",
                        "show_progress_every_n_steps",
                        "show_progress_every_n_steps must be an integer from 0 to 150",
                    ));
                };
                stored.insert(key.clone(), json!(n));
            }
            "CLIP_stop_at_last_layers" => {
                let max = i64::from(easel_core::MAX_CLIP_SKIP);
                let Some(n) = value.as_i64().filter(|n| (1..=max).contains(n)) else {
                    return Err(ApiError::invalid(
                        "invalid_option",
                        "CLIP_stop_at_last_layers",
                        format!("CLIP_stop_at_last_layers must be an integer from 1 to {max}"),
                    ));
                };
                stored.insert(key.clone(), json!(n));
            }
            other => {
                return Err(ApiError::invalid(
                    "unsupported_option",
                    "body",
                    format!(
                        "option `{}` is not one Easel honours (sd_model_checkpoint, \
                         show_progress_every_n_steps, CLIP_stop_at_last_layers)",
                        other.chars().take(60).collect::<String>()
                    ),
                ));
            }
        }
    }
    state
        .jobs
        .db()
        .set_client_options(caller, &Value::Object(stored))
        .await
        .map_err(|e| ApiError::store("storing the caller's options", e))
}
