//! Pausing and resuming a batch at its owner's request. A paused batch
//! submits no line; the lines already queued or running finish. Its
//! completion window keeps running (pending lines expire at its end), and
//! cancel works as on a running batch.

use axum::Json;
use axum::extract::{Extension, State};

use crate::auth::Principal;
use crate::dto::batches::BatchObject;
use crate::error::{ApiError, ErrorKind};
use crate::extract::PathId;
use crate::routes::batches::{batch_object, visible_batch};
use crate::state::AppState;

/// Pauses a batch: no more of its lines are submitted until it is resumed.
#[utoipa::path(
    post,
    path = "/v1/batches/{id}/pause",
    tag = "batches",
    params(("id" = String, Path, description = "Batch id, `batch_…`")),
    responses(
        (status = 200, description = "The batch, paused", body = BatchObject),
        (status = 404, description = "No such batch", body = crate::error::ErrorBody),
        (status = 409, description = "Already paused, finishing or ended (`batch_not_pausable`)", body = crate::error::ErrorBody),
    )
)]
pub async fn pause_batch(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
) -> Result<Json<BatchObject>, ApiError> {
    let batch = visible_batch(&state, &principal, &id).await?;
    let Some(paused) = state
        .jobs
        .db()
        .pause_batch_by_owner(&batch.id)
        .await
        .map_err(|e| ApiError::store("pausing the batch", e))?
    else {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            "batch_not_pausable",
            format!(
                "batch `{}` is {}; only a batch in progress, waiting for approval or paused at \
                 its cap can be paused",
                batch.id,
                batch.status.as_str()
            ),
        ));
    };
    tracing::info!(batch = %paused.id, "batch paused by its owner");
    Ok(Json(batch_object(&state, &paused).await?))
}

/// Resumes a paused batch. It stops again at its cost cap, or for
/// approval of a dry run, where those still hold.
#[utoipa::path(
    post,
    path = "/v1/batches/{id}/resume",
    tag = "batches",
    params(("id" = String, Path, description = "Batch id, `batch_…`")),
    responses(
        (status = 200, description = "The batch, in progress", body = BatchObject),
        (status = 404, description = "No such batch", body = crate::error::ErrorBody),
        (status = 409, description = "Not paused (`batch_not_paused`)", body = crate::error::ErrorBody),
    )
)]
pub async fn resume_batch(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
) -> Result<Json<BatchObject>, ApiError> {
    let batch = visible_batch(&state, &principal, &id).await?;
    let Some(resumed) = state
        .jobs
        .db()
        .resume_batch(&batch.id)
        .await
        .map_err(|e| ApiError::store("resuming the batch", e))?
    else {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            "batch_not_paused",
            format!(
                "batch `{}` is {}; only a paused batch can be resumed",
                batch.id,
                batch.status.as_str()
            ),
        ));
    };
    tracing::info!(batch = %resumed.id, "batch resumed");
    Ok(Json(batch_object(&state, &resumed).await?))
}
