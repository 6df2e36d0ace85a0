//! What a batch will make, take and cost, estimated when it is created
//! from the recent images of its models: their mean device time and cost
//! per image; the time to finish is the device time shared by the active
//! workers.

use std::collections::BTreeMap;

use easel_jobs::batches::{Estimate, ItemRequest};
use easel_store::WorkerState;

use crate::error::ApiError;
use crate::state::AppState;

/// Recent images per model the estimate averages over.
pub const SAMPLE: u32 = 200;

/// The estimate for `requests`.
pub async fn estimate(state: &AppState, requests: &[ItemRequest]) -> Result<Estimate, ApiError> {
    let db = state.jobs.db();
    let mut images_by_model: BTreeMap<&str, u64> = BTreeMap::new();
    for r in requests {
        *images_by_model.entry(r.params.model.as_str()).or_default() += u64::from(r.params.n);
    }
    let workers = db
        .workers()
        .await
        .map_err(|e| ApiError::store("counting workers", e))?;
    let active = workers
        .iter()
        .filter(|w| w.state == WorkerState::Active)
        .count()
        .max(1);
    let (mut seconds, mut cost) = (Some(0.0f64), Some(0.0f64));
    let mut basis = Vec::new();
    for (model, images) in &images_by_model {
        let (n, mean_seconds, mean_cost) = db
            .recent_image_stats(model, SAMPLE)
            .await
            .map_err(|e| ApiError::store("reading recent images", e))?;
        match (mean_seconds, mean_cost) {
            (Some(s), Some(c)) if n > 0 => {
                let model_seconds = s * *images as f64;
                seconds = seconds.map(|t| t + model_seconds);
                cost = cost.map(|t| t + c * *images as f64);
                basis.push(format!(
                    "{model}: {images} images at the mean of its last {n} ({s:.3} device-s, \
                     {c:.6} each)"
                ));
            }
            _ => {
                seconds = None;
                cost = None;
                basis.push(format!("{model}: no image made yet to measure"));
            }
        }
    }
    basis.push(format!("{active} active worker(s)"));
    let count = requests.len() as u64;
    Ok(Estimate {
        requests: count,
        images: images_by_model.values().sum(),
        device_seconds: seconds,
        cost,
        cost_per_request: cost.map(|c| c / count.max(1) as f64),
        eta_seconds: seconds.map(|s| s / active as f64),
        basis: basis.join("; "),
    })
}
