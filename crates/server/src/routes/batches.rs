//! `/v1/batches`: OpenAI's Batch API. Creating a batch parses and
//! validates its whole input file first (a bad line refuses the batch,
//! naming the line, and nothing is queued); the job system's batch driver
//! then makes the items as batch-tier jobs (docs/batches.md).

use axum::Json;
use axum::extract::{Extension, State};
use easel_store::{BatchRecord, NewBatch};

use crate::auth::Principal;
use crate::batches::input::{self, ENDPOINT};
use crate::dto::batches::{BatchList, BatchObject, CreateBatchRequest, ListQuery};
use crate::error::{ApiError, ErrorKind};
use crate::extract::{ApiJson, ApiQuery, PathId};
use crate::routes::files::{page_limit, visible_file};
use crate::state::AppState;

/// Metadata limits, as OpenAI's.
const MAX_METADATA_PAIRS: usize = 16;
const MAX_METADATA_KEY: usize = 64;
const MAX_METADATA_VALUE: usize = 512;

fn batch_not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "batch_not_found",
        format!(
            "batch `{}` does not exist",
            id.chars().take(64).collect::<String>()
        ),
    )
}

async fn visible_batch(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<BatchRecord, ApiError> {
    match state.jobs.db().batch(id).await {
        Ok(Some(batch)) if principal.sees(&batch.project) => Ok(batch),
        Ok(_) => Err(batch_not_found(id)),
        Err(e) => Err(ApiError::store("reading a batch", e)),
    }
}

/// Hours of a completion window: `24h`, or `1h` to `168h`.
fn window_hours(window: &str) -> Result<i64, ApiError> {
    window
        .strip_suffix('h')
        .and_then(|h| h.parse::<i64>().ok())
        .filter(|h| (1..=168).contains(h))
        .ok_or_else(|| {
            ApiError::invalid(
                "invalid_completion_window",
                "completion_window",
                format!(
                    "completion_window is `{}`; it must be `24h` or a whole number of hours \
                     from `1h` to `168h`",
                    window.chars().take(32).collect::<String>()
                ),
            )
        })
}

fn check_metadata(metadata: &std::collections::BTreeMap<String, String>) -> Result<(), ApiError> {
    let bad = |message: String| ApiError::invalid("invalid_metadata", "metadata", message);
    if metadata.len() > MAX_METADATA_PAIRS {
        return Err(bad(format!(
            "metadata has {} pairs; at most {MAX_METADATA_PAIRS}",
            metadata.len()
        )));
    }
    for (k, v) in metadata {
        if k.chars().count() > MAX_METADATA_KEY || v.chars().count() > MAX_METADATA_VALUE {
            return Err(bad(format!(
                "metadata keys may have up to {MAX_METADATA_KEY} characters and values up to \
                 {MAX_METADATA_VALUE}"
            )));
        }
    }
    Ok(())
}

/// Creates a batch from an uploaded input file.
#[utoipa::path(
    post,
    path = "/v1/batches",
    tag = "batches",
    request_body = CreateBatchRequest,
    responses(
        (status = 200, description = "The batch, in progress", body = BatchObject),
        (status = 400, description = "An input file with invalid lines (`invalid_batch_input`, naming each line), no lines (`empty_batch`) or too many (`batch_too_large`); an unsupported endpoint (`unsupported_endpoint`), completion window or metadata", body = crate::error::ErrorBody),
        (status = 404, description = "No such input file", body = crate::error::ErrorBody),
    )
)]
pub async fn create_batch(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<CreateBatchRequest>,
) -> Result<Json<BatchObject>, ApiError> {
    if body.endpoint != ENDPOINT {
        return Err(ApiError::invalid(
            "unsupported_endpoint",
            "endpoint",
            format!(
                "endpoint is `{}`; batches run `{ENDPOINT}` only",
                body.endpoint.chars().take(64).collect::<String>()
            ),
        ));
    }
    let hours = window_hours(&body.completion_window)?;
    if let Some(metadata) = &body.metadata {
        check_metadata(metadata)?;
    }
    let file = visible_file(&state, &principal, &body.input_file_id)
        .await
        .map_err(|e| e.with_param("input_file_id"))?;
    let Some(key) = file
        .object_key
        .as_deref()
        .filter(|_| file.purpose == "batch")
    else {
        return Err(ApiError::invalid(
            "invalid_input_file",
            "input_file_id",
            format!(
                "file `{}` has purpose `{}`; a batch reads a file uploaded with purpose `batch`",
                file.id, file.purpose
            ),
        ));
    };
    let bytes = state
        .jobs
        .blobs()
        .get(key)
        .await
        .map_err(|e| ApiError::store("reading the input file", e))?;
    let text = String::from_utf8_lossy(&bytes);
    let max = state.config.batches.max_requests;
    let items = input::parse(&state, &principal, &text, max)?;
    let db = state.jobs.db();
    let new = NewBatch {
        id: crate::batches::new_id("batch_"),
        project: principal.project(),
        user_id: crate::auth::user_id(&principal, None),
        endpoint: body.endpoint,
        input_file_id: file.id,
        completion_window: body.completion_window,
        metadata: body
            .metadata
            .map(|m| serde_json::to_value(m).unwrap_or_default()),
        expires_at: db.now() + chrono::Duration::hours(hours),
        items,
    };
    let batch = db
        .create_batch(&new)
        .await
        .map_err(|e| ApiError::store("recording the batch", e))?;
    tracing::info!(batch = %batch.id, requests = batch.total, "batch created");
    Ok(Json(BatchObject::from_record(&batch)))
}

/// One batch.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}",
    tag = "batches",
    params(("id" = String, Path, description = "Batch id, `batch_…`")),
    responses(
        (status = 200, description = "The batch", body = BatchObject),
        (status = 404, description = "No such batch", body = crate::error::ErrorBody),
    )
)]
pub async fn get_batch(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
) -> Result<Json<BatchObject>, ApiError> {
    let batch = visible_batch(&state, &principal, &id).await?;
    Ok(Json(BatchObject::from_record(&batch)))
}

/// The caller's batches, newest first.
#[utoipa::path(
    get,
    path = "/v1/batches",
    tag = "batches",
    params(ListQuery),
    responses((status = 200, description = "A page of batches", body = BatchList))
)]
pub async fn list_batches(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<BatchList>, ApiError> {
    if query.purpose.is_some() {
        return Err(ApiError::invalid(
            "unknown_parameter",
            "purpose",
            "purpose filters files, not batches",
        ));
    }
    let limit = page_limit(query.limit)?;
    let project = principal.listing_scope();
    let mut batches = state
        .jobs
        .db()
        .list_batches(project.as_ref(), query.after.as_deref(), limit + 1)
        .await
        .map_err(|e| ApiError::store("listing batches", e))?;
    let has_more = batches.len() > limit as usize;
    batches.truncate(limit as usize);
    let data: Vec<BatchObject> = batches.iter().map(BatchObject::from_record).collect();
    Ok(Json(BatchList {
        object: "list".into(),
        first_id: data.first().map(|b| b.id.clone()),
        last_id: data.last().map(|b| b.id.clone()),
        has_more,
        data,
    }))
}

/// Cancels a batch: requests not yet run are closed as cancelled, running
/// ones are stopped; the batch is `cancelling` until they have, then
/// `cancelled` with the files of what was made. A batch that has ended is
/// returned unchanged.
#[utoipa::path(
    post,
    path = "/v1/batches/{id}/cancel",
    tag = "batches",
    params(("id" = String, Path, description = "Batch id, `batch_…`")),
    responses(
        (status = 200, description = "The batch", body = BatchObject),
        (status = 404, description = "No such batch", body = crate::error::ErrorBody),
    )
)]
pub async fn cancel_batch(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
) -> Result<Json<BatchObject>, ApiError> {
    let batch = visible_batch(&state, &principal, &id).await?;
    let db = state.jobs.db();
    let batch = match db
        .cancel_batch(&batch.id)
        .await
        .map_err(|e| ApiError::store("cancelling the batch", e))?
    {
        Some(cancelling) => {
            tracing::info!(batch = %cancelling.id, "batch cancelling");
            cancelling
        }
        None => batch,
    };
    Ok(Json(BatchObject::from_record(&batch)))
}
