//! The server's LoRA adapters: `GET /v1/loras` (the files, and the LoRA
//! combinations of the warm pool with their state and memory) and
//! `GET /sdapi/v1/loras` (the web UI's list).

use axum::Json;
use axum::extract::State;
use easel_jobs::models::split_lora_slot;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::routes::models::{ModelObject, model_object};
use crate::state::AppState;

/// One LoRA file.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoraObject {
    /// The name requests use (`<lora:NAME:WEIGHT>` or `loras`): the file
    /// stem.
    pub name: String,
    /// The file's size in bytes.
    pub size_bytes: u64,
}

/// One LoRA of a pool entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PoolLora {
    /// Its name.
    pub name: String,
    /// Its weight.
    pub weight: f64,
    /// `sha256:<hex>` of the file it was loaded from.
    pub hash: Option<String>,
}

/// A LoRA combination in the warm pool: a model of its own, loaded with
/// its LoRAs merged, counted in the memory budget.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PoolEntry {
    /// The entry, as `/v1/models` lists models (`id` is its pool name:
    /// the model's, then `+lora:NAME*WEIGHT#HASH` per LoRA).
    #[serde(flatten)]
    pub entry: ModelObject,
    /// The model it is made from (`name` or `name@version`).
    pub model: String,
    /// Its LoRAs, by name.
    pub loras: Vec<PoolLora>,
}

/// The LoRA list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoraList {
    /// Always `list`.
    pub object: String,
    /// The LoRA files, by name.
    pub data: Vec<LoraObject>,
    /// The LoRA combinations the pool has made, in order of first use.
    pub pool: Vec<PoolEntry>,
}

/// Lists the LoRAs and the pool's LoRA combinations.
#[utoipa::path(
    get,
    path = "/v1/loras",
    tag = "models",
    responses((status = 200, description = "The LoRAs", body = LoraList))
)]
pub async fn list_loras(State(state): State<AppState>) -> Json<LoraList> {
    let models = &state.models;
    let data = models
        .loras()
        .list()
        .into_iter()
        .map(|f| LoraObject {
            name: f.name,
            size_bytes: f.size_bytes,
        })
        .collect();
    let pool = models
        .lora_slots()
        .iter()
        .map(|s| {
            let (model, loras) = split_lora_slot(&s.name);
            PoolEntry {
                entry: model_object(s),
                model: model.to_string(),
                loras: loras
                    .into_iter()
                    .map(|l| PoolLora {
                        name: l.name,
                        // As the client wrote it (0.8, not 0.800000011920929).
                        weight: l.weight.to_string().parse().unwrap_or_default(),
                        hash: l.hash,
                    })
                    .collect(),
            }
        })
        .collect();
    Json(LoraList {
        object: "list".into(),
        data,
        pool,
    })
}

/// The LoRAs as the web UI lists them.
#[utoipa::path(get, path = "/sdapi/v1/loras", tag = "a1111",
    responses((status = 200, description = "`[{name, alias, path, metadata}]`")))]
pub async fn sd_loras(State(state): State<AppState>) -> Json<Value> {
    // `metadata` is the training metadata in each file's header (kohya's
    // `ss_*` keys), as the web UI lists it; a file whose header cannot be
    // read lists `{}` (using it gives the error). Headers only, off the
    // async runtime.
    let models = state.models.clone();
    let list = tokio::task::spawn_blocking(move || {
        models
            .loras()
            .list()
            .into_iter()
            .map(|f| {
                let metadata = easel_jobs::models::lora_metadata::training_metadata(&f.path)
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "a LoRA's metadata could not be read");
                        Default::default()
                    });
                json!({
                    "name": f.name,
                    "alias": f.name,
                    "path": f.path.display().to_string(),
                    "metadata": metadata,
                })
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    Json(Value::Array(list))
}

/// The web UI's "refresh" of its LoRA list. Easel reads `[pool] lora_dir`
/// on every listing and reopens a file whose size or time changed, so
/// there is nothing to reload: a file added to the folder is already
/// listed. Answers `null`, as the web UI does.
#[utoipa::path(post, path = "/sdapi/v1/refresh-loras", tag = "a1111",
    responses((status = 200, description = "`null`: the folder is read live")))]
pub async fn refresh_loras() -> Json<Value> {
    Json(Value::Null)
}

/// The web UI's "refresh" of its checkpoint list. Easel's models are its
/// configuration (`[[models]]`), which is read at startup; the list
/// `sd-models` returns is already current. Answers `null`, as the web UI
/// does.
#[utoipa::path(post, path = "/sdapi/v1/refresh-checkpoints", tag = "a1111",
    responses((status = 200, description = "`null`: the configured models are listed as they are")))]
pub async fn refresh_checkpoints() -> Json<Value> {
    Json(Value::Null)
}
