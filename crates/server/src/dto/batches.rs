//! The OpenAI Batch API's bodies: files, batches, and one request line of
//! a batch's input, with its parsing into a validated item.

use std::collections::BTreeMap;

use easel_store::{BatchRecord, FileRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A file (`GET /v1/files/{id}`), as OpenAI's `FileObject`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileObject {
    /// `file_…`.
    pub id: String,
    /// Always `file`.
    pub object: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Unix seconds when it was made.
    pub created_at: i64,
    /// Its name.
    pub filename: String,
    /// `batch` (an upload), `batch_output` or `batch_error`.
    pub purpose: String,
    /// Always `processed`: an upload is checked when it is made.
    pub status: String,
    /// Unix seconds when it may be deleted; `null`: kept.
    pub expires_at: Option<i64>,
}

impl FileObject {
    /// The body of a stored file.
    pub fn from_record(f: &FileRecord) -> FileObject {
        FileObject {
            id: f.id.clone(),
            object: "file".into(),
            bytes: f.bytes,
            created_at: f.created_at.timestamp(),
            filename: f.filename.clone(),
            purpose: f.purpose.clone(),
            status: "processed".into(),
            expires_at: f.expires_at.map(|t| t.timestamp()),
        }
    }
}

/// A page of files, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileList {
    /// Always `list`.
    pub object: String,
    /// The files.
    pub data: Vec<FileObject>,
    /// The first file's id.
    pub first_id: Option<String>,
    /// The last file's id: pass it as `after` for the next page.
    pub last_id: Option<String>,
    /// Whether another page follows.
    pub has_more: bool,
}

/// The answer to deleting a file.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileDeleted {
    /// The file.
    pub id: String,
    /// Always `file`.
    pub object: String,
    /// Always true.
    pub deleted: bool,
}

/// `POST /v1/batches`: from an uploaded file (`input_file_id`, as OpenAI)
/// or from a `template` (Easel), with an optional dry run and cost cap.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBatchRequest {
    /// A file uploaded with `purpose=batch`: one JSON request per line.
    /// Exactly one of this and `template`.
    #[serde(default)]
    pub input_file_id: Option<String>,
    /// Easel: a prompt template and its variables, expanded into one
    /// request per combination or row. Exactly one of this and
    /// `input_file_id`.
    #[serde(default)]
    pub template: Option<BatchTemplate>,
    /// The API path every line calls: `/v1/images/generations` (the
    /// default).
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// How long the batch may take: `24h` (OpenAI's only value and the
    /// default), or any whole number of hours from `1h` to `168h`.
    #[serde(default = "default_window")]
    pub completion_window: String,
    /// Easel: run this share of the lines (percent, above 0 and below
    /// 100, drawn at random) first, then stop in `awaiting_approval`
    /// until `POST /v1/batches/{id}/approve`.
    #[serde(default)]
    pub dry_run_percent: Option<f64>,
    /// Easel: the most the batch may cost (in the currency of
    /// `metrics.price_per_device_second`); it pauses in `paused_budget`
    /// when the next line would pass it, and goes on when it is raised
    /// (`PATCH /v1/batches/{id}`).
    #[serde(default)]
    pub cost_cap: Option<f64>,
    /// Up to 16 string pairs (keys up to 64 characters, values up to 512)
    /// kept with the batch.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Easel: the automatic QA of the batch's images.
    #[serde(default)]
    pub qa: Option<QaRequest>,
    /// Easel: an http(s) URL to POST to when the batch finishes, signed
    /// with HMAC (Standard Webhooks; the secret comes back once, as
    /// `webhook_secret`, in this call's answer).
    #[serde(default)]
    pub webhook_url: Option<String>,
}

/// A batch's QA settings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QaRequest {
    /// Lines with an image scoring below this (the scorer's prompt–image
    /// cosine, -1 to 1) are marked
    /// `needs_review` and their images go to the review queue. Default:
    /// none.
    #[serde(default)]
    pub min_quality_score: Option<f64>,
    /// The share (percent, 0 to 100) of the other images sent to human
    /// review as a sample. Default: `batches.review_sample_percent`.
    #[serde(default)]
    pub review_sample_percent: Option<f64>,
}

/// A batch's QA settings and what QA found so far.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QaObject {
    /// The threshold, if any.
    pub min_quality_score: Option<f64>,
    /// The sampled share sent to review.
    pub review_sample_percent: f64,
    /// Lines marked `needs_review` so far.
    pub needs_review: u64,
}

/// A batch's completion webhook and its delivery.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookObject {
    /// Where it is sent.
    pub url: String,
    /// `null` until the batch finishes; then `pending`, `delivered`, or
    /// `failed` (out of attempts).
    pub status: Option<String>,
    /// Tries so far.
    pub attempts: u32,
    /// When the next try is due (Unix seconds).
    pub next_attempt_at: Option<i64>,
    /// When it was delivered (Unix seconds).
    pub delivered_at: Option<i64>,
    /// Why the last try failed.
    pub last_error: Option<String>,
}

fn default_endpoint() -> String {
    "/v1/images/generations".into()
}

fn default_window() -> String {
    "24h".into()
}

/// A prompt template: `{name}` placeholders in `prompt` (and
/// `negative_prompt`) filled from `variables` (every combination, the
/// variables in alphabetical order, the last varying fastest) or from
/// explicit `rows`; `{{` and `}}` are literal braces.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchTemplate {
    /// The prompt, e.g. `"a {color} {object}, {style}"`.
    pub prompt: String,
    /// The negative prompt; may use the variables too.
    #[serde(default)]
    pub negative_prompt: Option<String>,
    /// The values of each variable; the batch is their Cartesian product.
    #[serde(default)]
    pub variables: std::collections::BTreeMap<String, Vec<String>>,
    /// Instead of `variables`: one line per row, each giving every
    /// variable's value and optionally `custom_id`, `seed`, `size`,
    /// `model`, `n`, `steps`, `guidance_scale`, `sampler`, `schedule`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
    /// The request every line starts from, as the endpoint takes it
    /// (`model`, `size`, `steps`, `seed`, …; not `prompt`). A `seed` here
    /// is every line's seed; without one each line gets its own random
    /// seed, fixed when the batch is created.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub body: serde_json::Map<String, serde_json::Value>,
}

/// The counts of a batch's request lines.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RequestCounts {
    /// Lines.
    pub total: u64,
    /// Lines that made their images.
    pub completed: u64,
    /// Lines refused, failed, cancelled or expired.
    pub failed: u64,
}

/// A batch, as OpenAI's `Batch`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchObject {
    /// `batch_…`.
    pub id: String,
    /// Always `batch`.
    pub object: String,
    /// The API path every line calls.
    pub endpoint: String,
    /// Always `null`: invalid input is refused when the batch is created.
    #[schema(value_type = Option<Object>)]
    pub errors: Option<serde_json::Value>,
    /// The uploaded requests.
    pub input_file_id: String,
    /// As requested.
    pub completion_window: String,
    /// `in_progress`, `finalizing`, `completed`, `expired`, `cancelling`
    /// or `cancelled`.
    pub status: String,
    /// The results, one line per request that made its images, once done.
    pub output_file_id: Option<String>,
    /// The errors, one line per request that did not, once done (when
    /// any).
    pub error_file_id: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub in_progress_at: Option<i64>,
    /// Unix seconds when unfinished requests expire.
    pub expires_at: Option<i64>,
    /// Unix seconds.
    pub finalizing_at: Option<i64>,
    /// Unix seconds.
    pub completed_at: Option<i64>,
    /// Always `null` (see `errors`).
    pub failed_at: Option<i64>,
    /// Unix seconds.
    pub expired_at: Option<i64>,
    /// Unix seconds.
    pub cancelling_at: Option<i64>,
    /// Unix seconds.
    pub cancelled_at: Option<i64>,
    /// Line counts.
    pub request_counts: RequestCounts,
    /// As given.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Easel: the share of lines run first as a dry run.
    pub dry_run_percent: Option<f64>,
    /// Easel: when the rest of a dry run was approved (Unix seconds).
    pub approved_at: Option<i64>,
    /// Easel: the cost cap.
    pub cost_cap: Option<f64>,
    /// Easel: the estimate made at creation: `requests`, `images`,
    /// `device_seconds`, `cost`, `cost_per_request`, `eta_seconds` (null
    /// when the model has made no image yet to measure) and `basis`.
    #[schema(value_type = Option<Object>)]
    pub estimate: Option<serde_json::Value>,
    /// Easel: what the lines have made and cost so far.
    pub spend: Option<SpendObject>,
    /// Easel: the same for the dry run's sample.
    pub dry_run: Option<SpendObject>,
    /// Easel: QA settings and findings.
    pub qa: Option<QaObject>,
    /// Easel: the completion webhook.
    pub webhook: Option<WebhookObject>,
    /// Easel: the webhook's HMAC secret, only in the answer that created
    /// the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

/// What a batch's lines (or its dry run's sample) have made, cost and
/// scored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpendObject {
    /// Lines counted.
    pub requests: u64,
    /// Of which made their images.
    pub completed: u64,
    /// Of which did not.
    pub failed: u64,
    /// Images made.
    pub images: u64,
    /// Their cost.
    pub cost: f64,
    /// Their mean quality score.
    pub mean_quality_score: Option<f64>,
    /// Images the moderation flagged.
    pub flagged_images: u64,
    /// Lines the content policy refused (prompt or image).
    pub moderation_refused: u64,
}

impl SpendObject {
    /// The body of a stored spend.
    pub fn from_spend(s: &easel_store::BatchSpend) -> SpendObject {
        SpendObject {
            requests: s.items,
            completed: s.succeeded,
            failed: s.failed,
            images: s.images,
            cost: s.cost,
            mean_quality_score: s.mean_quality_score,
            flagged_images: s.flagged_images,
            moderation_refused: s.moderation_refused,
        }
    }
}

/// `PATCH /v1/batches/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBatchRequest {
    /// The new cost cap; `null` removes it.
    pub cost_cap: Option<f64>,
}

impl BatchObject {
    /// The body of a stored batch (without its spend).
    pub fn from_record(b: &BatchRecord) -> BatchObject {
        let t = |v: Option<chrono::DateTime<chrono::Utc>>| v.map(|t| t.timestamp());
        BatchObject {
            id: b.id.clone(),
            object: "batch".into(),
            endpoint: b.endpoint.clone(),
            errors: None,
            input_file_id: b.input_file_id.clone(),
            completion_window: b.completion_window.clone(),
            status: b.status.as_str().into(),
            output_file_id: b.output_file_id.clone(),
            error_file_id: b.error_file_id.clone(),
            created_at: b.created_at.timestamp(),
            in_progress_at: t(b.in_progress_at),
            expires_at: Some(b.expires_at.timestamp()),
            finalizing_at: t(b.finalizing_at),
            completed_at: t(b.completed_at),
            failed_at: None,
            expired_at: t(b.expired_at),
            cancelling_at: t(b.cancelling_at),
            cancelled_at: t(b.cancelled_at),
            request_counts: RequestCounts {
                total: b.total,
                completed: b.completed,
                failed: b.failed,
            },
            metadata: b.metadata.clone(),
            dry_run_percent: b.dry_run_percent,
            approved_at: t(b.approved_at),
            cost_cap: b.cost_cap,
            estimate: b.estimate.clone(),
            spend: None,
            dry_run: None,
            qa: None,
            webhook: b.webhook.as_ref().map(|w| WebhookObject {
                url: w.url.clone(),
                status: w.status.clone(),
                attempts: w.attempts,
                next_attempt_at: t(w.next_at),
                delivered_at: t(w.delivered_at),
                last_error: w.last_error.clone(),
            }),
            webhook_secret: None,
        }
    }
}

/// A page of batches, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchList {
    /// Always `list`.
    pub object: String,
    /// The batches.
    pub data: Vec<BatchObject>,
    /// The first batch's id.
    pub first_id: Option<String>,
    /// The last batch's id: pass it as `after` for the next page.
    pub last_id: Option<String>,
    /// Whether another page follows.
    pub has_more: bool,
}

/// `after` and `limit` of a list.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The last id of the previous page.
    pub after: Option<String>,
    /// 1 to 100; default 20.
    pub limit: Option<u32>,
    /// Files only: `batch`, `batch_output` or `batch_error`.
    pub purpose: Option<String>,
}

/// One line of a batch's input, as OpenAI's Batch API has it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestLine {
    /// The caller's id for the line, unique in the file.
    pub custom_id: String,
    /// `POST`.
    pub method: String,
    /// The batch's endpoint.
    pub url: String,
    /// The request body, as the endpoint takes it.
    pub body: serde_json::Value,
}
