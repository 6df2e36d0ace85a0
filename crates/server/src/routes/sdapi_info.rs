//! The AUTOMATIC1111 API's read and settings routes: the served models,
//! samplers and schedulers under the web UI's names, the caller's options,
//! its task's progress, scripts (none), and the parameters inside a PNG.

use axum::Json;
use axum::extract::{Extension, Query, State};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::routes::sdapi::strip_data_url;
use crate::sdapi::names::{SAMPLERS, SCHEDULERS};
use crate::sdapi::options::{self, CallerOptions};
use crate::sdapi::{caller, model_title, short_hash};
use crate::state::AppState;

/// The served models as the web UI lists checkpoints.
#[utoipa::path(get, path = "/sdapi/v1/sd-models", tag = "a1111",
    responses((status = 200, description = "`[{title, model_name, hash, sha256, filename, config}]`")))]
pub async fn sd_models(State(state): State<AppState>) -> Json<Value> {
    let models: Vec<Value> = state
        .models
        .list()
        .into_iter()
        .map(|m| {
            let hash = m.info().map(|i| i.content_hash.clone());
            json!({
                "title": model_title(&m.name, hash.as_deref()),
                "model_name": m.name,
                "hash": hash.as_deref().map(short_hash),
                "sha256": hash.as_deref().map(|h| h.rsplit(':').next().unwrap_or_default().to_string()),
                "filename": m.path.display().to_string(),
                "config": Value::Null,
            })
        })
        .collect();
    Json(Value::Array(models))
}

/// The samplers Easel runs, under the web UI's names.
#[utoipa::path(get, path = "/sdapi/v1/samplers", tag = "a1111",
    responses((status = 200, description = "`[{name, aliases, options}]`")))]
pub async fn samplers() -> Json<Value> {
    Json(Value::Array(
        SAMPLERS
            .iter()
            .map(|s| json!({"name": s.name, "aliases": s.aliases, "options": {}}))
            .collect(),
    ))
}

/// The sigma schedules Easel computes, under the web UI's names.
#[utoipa::path(get, path = "/sdapi/v1/schedulers", tag = "a1111",
    responses((status = 200, description = "`[{name, label, aliases, default_rho, need_inner_model}]`")))]
pub async fn schedulers() -> Json<Value> {
    Json(Value::Array(
        SCHEDULERS
            .iter()
            .map(|s| {
                json!({"name": s.name, "label": s.label, "aliases": Value::Null,
                       "default_rho": -1, "need_inner_model": false})
            })
            .collect(),
    ))
}

/// Scripts: Easel has none (clients probe this for extensions).
#[utoipa::path(get, path = "/sdapi/v1/scripts", tag = "a1111",
    responses((status = 200, description = "`{txt2img: [], img2img: []}`")))]
pub async fn scripts() -> Json<Value> {
    Json(json!({"txt2img": [], "img2img": []}))
}

/// The caller's options.
#[utoipa::path(get, path = "/sdapi/v1/options", tag = "a1111",
    responses((status = 200, description = "The options Easel honours, with their values")))]
pub async fn get_options(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let options = CallerOptions::load(&state, &caller(&principal)).await?;
    Ok(Json(options.to_json(&state)))
}

/// Sets the caller's options (`sd_model_checkpoint`, `show_progress_every_n_steps`).
#[utoipa::path(post, path = "/sdapi/v1/options", tag = "a1111",
    request_body = Object,
    responses(
        (status = 200, description = "Stored"),
        (status = 400, description = "An option Easel does not honour (`unsupported_option`) or a bad value", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown model", body = crate::error::ErrorBody),
    ))]
pub async fn set_options(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    options::set(&state, &caller(&principal), &body).await?;
    Ok(Json(Value::Null))
}

/// `GET /sdapi/v1/progress` query.
#[derive(Debug, Deserialize)]
pub struct ProgressQuery {
    /// Leave `current_image` out.
    #[serde(default)]
    skip_current_image: bool,
}

/// The caller's running task: progress, state and the latest preview.
#[utoipa::path(get, path = "/sdapi/v1/progress", tag = "a1111",
    params(("skip_current_image" = Option<bool>, Query, description = "Leave the preview out")),
    responses((status = 200, description = "`{progress, eta_relative, state, current_image, textinfo}`")))]
pub async fn progress(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ProgressQuery>,
) -> Json<Value> {
    let task = state.sd_tasks.get(&caller(&principal)).filter(|t| !t.done);
    let Some(t) = task else {
        return Json(json!({
            "progress": 0.0,
            "eta_relative": 0.0,
            "state": {"skipped": false, "interrupted": false, "stopping_generation": false,
                      "job": "", "job_count": 0, "job_timestamp": "0", "job_no": 0,
                      "sampling_step": 0, "sampling_steps": 0},
            "current_image": Value::Null,
            "textinfo": Value::Null,
        }));
    };
    let (step, steps) = t.step;
    let within = if steps > 0 {
        f64::from(step) / f64::from(steps)
    } else {
        0.0
    };
    let done = (f64::from(t.job_no) + within) / f64::from(t.job_count.max(1));
    let elapsed = (chrono::Utc::now() - t.started).num_milliseconds() as f64 / 1000.0;
    let eta = if done > 0.0 {
        elapsed / done - elapsed
    } else {
        0.0
    };
    Json(json!({
        "progress": done.clamp(0.0, 1.0),
        "eta_relative": eta.max(0.0),
        "state": {
            "skipped": t.skipped,
            "interrupted": t.interrupted,
            "stopping_generation": false,
            "job": t.id,
            "job_count": t.job_count,
            "job_timestamp": t.started.format("%Y%m%d%H%M%S").to_string(),
            "job_no": t.job_no,
            "sampling_step": step,
            "sampling_steps": steps,
        },
        "current_image": if query.skip_current_image { None } else { t.preview },
        "textinfo": Value::Null,
    }))
}

/// `POST /sdapi/v1/png-info` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PngInfoRequest {
    /// A PNG, base64 (a `data:` URL or bare).
    #[serde(default)]
    image: String,
}

/// The generation parameters inside a PNG (its `parameters` text chunk).
#[utoipa::path(post, path = "/sdapi/v1/png-info", tag = "a1111",
    request_body = PngInfoRequest,
    responses(
        (status = 200, description = "`{info, items, parameters}`"),
        (status = 400, description = "Not base64, or not a PNG", body = crate::error::ErrorBody),
    ))]
pub async fn png_info(ApiJson(body): ApiJson<PngInfoRequest>) -> Result<Json<Value>, ApiError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(strip_data_url(&body.image).trim())
        .map_err(|e| {
            ApiError::invalid(
                "invalid_image",
                "image",
                format!("image is not valid base64: {e}"),
            )
        })?;
    let chunks = easel_media::read_png_text(&bytes).map_err(crate::error::from_media_error)?;
    let mut info = String::new();
    let mut items = serde_json::Map::new();
    for (key, value) in chunks {
        if key == easel_media::PARAMETERS_KEY {
            info = value;
        } else {
            items.insert(key, Value::String(value));
        }
    }
    let parameters = parse_infotext(&info);
    Ok(Json(
        json!({ "info": info, "items": items, "parameters": parameters }),
    ))
}

/// The web UI's infotext as a map: `Prompt`, `Negative prompt`, and each
/// `Key: value` of the last line (quoted values unquoted).
pub fn parse_infotext(text: &str) -> Value {
    let mut out = serde_json::Map::new();
    if text.trim().is_empty() {
        return Value::Object(out);
    }
    let lines: Vec<&str> = text.lines().collect();
    let (last, head) = lines.split_last().unwrap_or((&"", &[]));
    let looks_like_fields = last.contains("Steps: ");
    let (prompt_lines, fields) = if looks_like_fields {
        (head, *last)
    } else {
        (&lines[..], "")
    };
    let mut prompt = Vec::new();
    let mut negative = Vec::new();
    let mut in_negative = false;
    for &line in prompt_lines {
        if let Some(rest) = line.strip_prefix("Negative prompt: ") {
            in_negative = true;
            negative.push(rest);
        } else if in_negative {
            negative.push(line);
        } else {
            prompt.push(line);
        }
    }
    out.insert("Prompt".into(), json!(prompt.join("\n")));
    out.insert("Negative prompt".into(), json!(negative.join("\n")));
    for (key, value) in split_fields(fields) {
        out.insert(key, Value::String(value));
    }
    Value::Object(out)
}

/// `Key: value, Key: "quoted, value"` pairs.
fn split_fields(line: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = line.trim();
    while let Some((key, after)) = rest.split_once(": ") {
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (quoted[..end].to_string(), &quoted[end + 1..]),
                None => (quoted.to_string(), ""),
            }
        } else {
            match after.find(", ") {
                Some(end) => (after[..end].to_string(), &after[end..]),
                None => (after.to_string(), ""),
            }
        };
        pairs.push((key, value.trim().to_string()));
        rest = next.trim_start_matches(',').trim();
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infotext_parses_into_its_fields() {
        let text = "a red apple\nNegative prompt: blurry\nSteps: 4, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 32x32, Model hash: 0123456789, Model: easel-emoji";
        let p = parse_infotext(text);
        assert_eq!(p["Prompt"], "a red apple");
        assert_eq!(p["Negative prompt"], "blurry");
        assert_eq!(p["Steps"], "4");
        assert_eq!(p["Sampler"], "Euler a");
        assert_eq!(p["Schedule type"], "Karras");
        assert_eq!(p["Seed"], "42");
        assert_eq!(p["Model"], "easel-emoji");
        assert_eq!(parse_infotext(""), json!({}));
    }
}
