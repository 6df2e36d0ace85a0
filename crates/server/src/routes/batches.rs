//! `/v1/batches`: OpenAI's Batch API. Creating a batch parses and
//! validates its whole input file first (a bad line refuses the batch,
//! naming the line, and nothing is queued); the job system's batch driver
//! then makes the items as batch-tier jobs (docs/batches.md).

use axum::Json;
use axum::extract::{Extension, State};
use easel_store::{BatchRecord, NewBatch};

use crate::auth::Principal;
use crate::batches::input::{self, ENDPOINT};
use crate::batches::{estimate, template, webhook};
use crate::dto::batches::{
    BatchList, BatchObject, CreateBatchRequest, ListQuery, QaObject, SpendObject,
    UpdateBatchRequest,
};
use crate::error::{ApiError, ErrorKind};
use crate::extract::{ApiJson, ApiQuery, PathId};
use crate::routes::files::{page_limit, store_upload, visible_file};
use crate::state::AppState;
use easel_jobs::batches::QaSettings;

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

pub(crate) async fn visible_batch(
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
    if let Some(p) = body.dry_run_percent
        && !(p > 0.0 && p < 100.0)
    {
        return Err(ApiError::invalid(
            "invalid_dry_run_percent",
            "dry_run_percent",
            format!("dry_run_percent is {p}; it must be above 0 and below 100"),
        ));
    }
    if let Some(cap) = body.cost_cap
        && !(cap.is_finite() && cap > 0.0)
    {
        return Err(ApiError::invalid(
            "invalid_cost_cap",
            "cost_cap",
            format!("cost_cap is {cap}; it must be a positive number"),
        ));
    }
    let qa = qa_settings(&state, body.qa.as_ref())?;
    if let Some(url) = &body.webhook_url {
        webhook::check_url(url, state.config.batches.webhook_allow_private)?;
    }
    let webhook_secret = body.webhook_url.as_ref().map(|_| webhook::new_secret());
    let max = state.config.batches.max_requests;
    let db = state.jobs.db();
    let (file, text) = match (body.input_file_id, body.template) {
        (Some(id), None) => {
            let file = visible_file(&state, &principal, &id)
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
                        "file `{}` has purpose `{}`; a batch reads a file uploaded with purpose \
                         `batch`",
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
            (Some(file), String::from_utf8_lossy(&bytes).into_owned())
        }
        (None, Some(template)) => (None, template::expand(&template, max)?),
        _ => {
            return Err(ApiError::invalid(
                "invalid_batch_source",
                "input_file_id",
                "give exactly one of `input_file_id` (an uploaded JSONL file) and `template`",
            ));
        }
    };
    let (mut items, requests): (Vec<_>, Vec<_>) = input::parse(&state, &principal, &text, max)?
        .into_iter()
        .unzip();
    let estimate = estimate::estimate(&state, &requests).await?;
    if let Some(percent) = body.dry_run_percent {
        let k = choose_sample(&mut items, percent);
        if let (Some(cap), Some(per_request)) = (body.cost_cap, estimate.cost_per_request) {
            let sample_cost = per_request * k as f64;
            if cap < sample_cost {
                return Err(ApiError::invalid(
                    "cap_below_estimate",
                    "cost_cap",
                    format!(
                        "cost_cap is {cap}, below the estimated cost of the dry run's {k} \
                         requests ({sample_cost:.6})"
                    ),
                ));
            }
        }
    }
    // A template's lines are kept as an upload of their own, so the batch
    // names its input as any other does.
    let file = match file {
        Some(file) => file,
        None => store_upload(&state, principal.project(), "template.jsonl", text.into()).await?,
    };
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
        dry_run_percent: body.dry_run_percent,
        cost_cap: body.cost_cap,
        estimate: serde_json::to_value(&estimate).ok(),
        qa: serde_json::to_value(qa).ok(),
        webhook_url: body.webhook_url,
        webhook_secret: webhook_secret.clone(),
        items,
    };
    let batch = db
        .create_batch(&new)
        .await
        .map_err(|e| ApiError::store("recording the batch", e))?;
    tracing::info!(batch = %batch.id, requests = batch.total, "batch created");
    let mut object = batch_object(&state, &batch).await?;
    object.webhook_secret = webhook_secret;
    Ok(Json(object))
}

/// The batch's QA settings from the request and the configured default.
fn qa_settings(
    state: &AppState,
    qa: Option<&crate::dto::batches::QaRequest>,
) -> Result<QaSettings, ApiError> {
    let min = qa.and_then(|q| q.min_quality_score);
    if let Some(m) = min
        && !(-1.0..=1.0).contains(&m)
    {
        return Err(ApiError::invalid(
            "invalid_qa",
            "qa.min_quality_score",
            format!("qa.min_quality_score is {m}; it must be from -1 to 1 (the scorer's cosine)"),
        ));
    }
    let percent = qa
        .and_then(|q| q.review_sample_percent)
        .unwrap_or(state.config.batches.review_sample_percent);
    if !(0.0..=100.0).contains(&percent) {
        return Err(ApiError::invalid(
            "invalid_qa",
            "qa.review_sample_percent",
            format!("qa.review_sample_percent is {percent}; it must be from 0 to 100"),
        ));
    }
    Ok(QaSettings {
        min_quality_score: min,
        review_sample_percent: percent,
    })
}

/// Marks a random `percent` of the items (at least one) as the dry run's
/// sample; how many.
fn choose_sample(items: &mut [easel_store::NewBatchItem], percent: f64) -> usize {
    let n = items.len();
    let k = ((n as f64 * percent / 100.0).ceil() as usize).clamp(1, n);
    let mut order: Vec<usize> = (0..n).collect();
    // A partial Fisher–Yates shuffle: the first k are the sample.
    for i in 0..k {
        let j = i + (rand::random::<u64>() % (n - i) as u64) as usize;
        order.swap(i, j);
    }
    for &i in &order[..k] {
        items[i].sample = true;
    }
    k
}

/// A batch's body with what its lines (and its dry run's sample) have
/// made and cost so far.
pub(crate) async fn batch_object(
    state: &AppState,
    batch: &BatchRecord,
) -> Result<BatchObject, ApiError> {
    let db = state.jobs.db();
    let mut object = BatchObject::from_record(batch);
    let spend = db
        .batch_spend(&batch.id, false)
        .await
        .map_err(|e| ApiError::store("reading a batch's spend", e))?;
    object.spend = Some(SpendObject::from_spend(&spend));
    let qa = QaSettings::of(batch);
    object.qa = Some(QaObject {
        min_quality_score: qa.min_quality_score,
        review_sample_percent: qa.review_sample_percent,
        needs_review: db
            .batch_needs_review(&batch.id)
            .await
            .map_err(|e| ApiError::store("reading a batch's QA", e))?,
    });
    if batch.dry_run_percent.is_some() {
        let sample = db
            .batch_spend(&batch.id, true)
            .await
            .map_err(|e| ApiError::store("reading a batch's dry run", e))?;
        object.dry_run = Some(SpendObject::from_spend(&sample));
    }
    Ok(object)
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
    Ok(Json(batch_object(&state, &batch).await?))
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
    let mut data = Vec::with_capacity(batches.len());
    for batch in &batches {
        data.push(batch_object(&state, batch).await?);
    }
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
    Ok(Json(batch_object(&state, &batch).await?))
}

/// Approves the rest of a dry-run batch: its other lines run. Allowed
/// while the sample runs or once it is done (`awaiting_approval`).
#[utoipa::path(
    post,
    path = "/v1/batches/{id}/approve",
    tag = "batches",
    params(("id" = String, Path, description = "Batch id, `batch_…`")),
    responses(
        (status = 200, description = "The batch, in progress", body = BatchObject),
        (status = 404, description = "No such batch", body = crate::error::ErrorBody),
        (status = 409, description = "Not a dry run waiting for approval (`batch_not_awaiting_approval`)", body = crate::error::ErrorBody),
    )
)]
pub async fn approve_batch(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
) -> Result<Json<BatchObject>, ApiError> {
    let batch = visible_batch(&state, &principal, &id).await?;
    let Some(approved) = state
        .jobs
        .db()
        .approve_batch(&batch.id)
        .await
        .map_err(|e| ApiError::store("approving the batch", e))?
    else {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            "batch_not_awaiting_approval",
            format!(
                "batch `{}` is {} and {}; only a dry run not yet approved can be approved",
                batch.id,
                batch.status.as_str(),
                if batch.dry_run_percent.is_some() {
                    "already approved"
                } else {
                    "has no dry run"
                }
            ),
        ));
    };
    tracing::info!(batch = %approved.id, "batch approved");
    Ok(Json(batch_object(&state, &approved).await?))
}

/// Changes a batch's cost cap; a batch paused at its cap goes on.
#[utoipa::path(
    patch,
    path = "/v1/batches/{id}",
    tag = "batches",
    params(("id" = String, Path, description = "Batch id, `batch_…`")),
    request_body = UpdateBatchRequest,
    responses(
        (status = 200, description = "The batch", body = BatchObject),
        (status = 400, description = "A cap that is not a positive number (`invalid_cost_cap`)", body = crate::error::ErrorBody),
        (status = 404, description = "No such batch", body = crate::error::ErrorBody),
        (status = 409, description = "The batch has ended or is cancelling (`batch_ended`)", body = crate::error::ErrorBody),
    )
)]
pub async fn update_batch(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
    ApiJson(body): ApiJson<UpdateBatchRequest>,
) -> Result<Json<BatchObject>, ApiError> {
    let batch = visible_batch(&state, &principal, &id).await?;
    if let Some(cap) = body.cost_cap
        && !(cap.is_finite() && cap > 0.0)
    {
        return Err(ApiError::invalid(
            "invalid_cost_cap",
            "cost_cap",
            format!("cost_cap is {cap}; it must be a positive number"),
        ));
    }
    let Some(updated) = state
        .jobs
        .db()
        .set_batch_cap(&batch.id, body.cost_cap)
        .await
        .map_err(|e| ApiError::store("updating the batch", e))?
    else {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            "batch_ended",
            format!(
                "batch `{}` is {}; its cap can no longer change",
                batch.id,
                batch.status.as_str()
            ),
        ));
    };
    tracing::info!(batch = %updated.id, cap = ?body.cost_cap, "batch cost cap changed");
    Ok(Json(batch_object(&state, &updated).await?))
}
