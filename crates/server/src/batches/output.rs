//! A batch's output and error files, rendered from its items when read
//! (so they cost no storage of their own, and `url` results are signed
//! when downloaded, not when the batch finished). Lines are in input
//! order; each is OpenAI's batch result object:
//! `{"id", "custom_id", "response": {"status_code", "request_id", "body"},
//! "error"}`. The output file has a line per request that made its images
//! (`body` is what the endpoint would have answered); the error file a
//! line per request that did not: refused or failed (`response` holds the
//! error body the endpoint would have answered) or cancelled or expired
//! before it ran (`response` is null, `error` says which).

use axum::http::HeaderMap;
use easel_store::{BatchItem, BatchRecord, ItemStatus};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::routes::images::{InlineImages, images_response};
use crate::state::AppState;

/// Which of a batch's two files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Requests that made their images.
    Output,
    /// Requests that did not.
    Errors,
}

impl Part {
    /// Whether `item` has a line in this file.
    pub fn holds(self, item: &BatchItem) -> bool {
        match self {
            Part::Output => item.status == ItemStatus::Succeeded,
            Part::Errors => item.status.is_terminal() && item.status != ItemStatus::Succeeded,
        }
    }

    /// The file's purpose.
    pub fn purpose(self) -> &'static str {
        match self {
            Part::Output => "batch_output",
            Part::Errors => "batch_error",
        }
    }
}

/// Items read per page while rendering.
pub const PAGE: u32 = 100;

/// One item's line (with its newline) when `inline` is `Bytes`; with
/// `Sized` the images' base64 is left out and its length returned beside
/// the line, so a file's size is known without reading any image.
pub async fn line(
    state: &AppState,
    headers: &HeaderMap,
    batch: &BatchRecord,
    item: &BatchItem,
    inline: InlineImages,
) -> Result<(String, u64), ApiError> {
    let id = format!(
        "batch_req_{}_{}",
        batch.id.trim_start_matches("batch_"),
        item.line
    );
    let (response, error, omitted) = match item.status {
        ItemStatus::Succeeded => {
            let job_id = item.job_id.ok_or_else(|| {
                ApiError::internal("rendering a batch", "a succeeded item has no job")
            })?;
            let job = state.jobs.get(job_id).await?;
            let (body, omitted) = images_response(state, headers, &job, inline).await?;
            let body = serde_json::to_value(body)
                .map_err(|e| ApiError::internal("rendering a batch", e))?;
            (
                json!({"status_code": 200, "request_id": job_id.to_string(), "body": body}),
                Value::Null,
                omitted,
            )
        }
        ItemStatus::Cancelled | ItemStatus::Expired => (
            Value::Null,
            json!({
                "code": item.error_code.as_deref().unwrap_or("batch_cancelled"),
                "message": item.error_message.as_deref().unwrap_or(""),
            }),
            0,
        ),
        _ => {
            let code = item.error_code.as_deref().unwrap_or("generation_failed");
            let message = item
                .error_message
                .as_deref()
                .unwrap_or("the request failed");
            let (status, body) = item_error(code, message);
            (
                json!({
                    "status_code": status,
                    "request_id": item.job_id.map(|j| j.to_string()),
                    "body": body,
                }),
                Value::Null,
                0,
            )
        }
    };
    let mut text = serde_json::to_string(&json!({
        "id": id,
        "custom_id": item.custom_id,
        "response": response,
        "error": error,
    }))
    .map_err(|e| ApiError::internal("rendering a batch", e))?;
    text.push('\n');
    Ok((text, omitted))
}

/// The error body a request line that failed would have answered with on
/// its own: refusals at submission blame the request (400); job failures
/// map as the endpoint maps them. The body keeps the recorded code and
/// message.
fn item_error(code: &str, message: &str) -> (u16, Value) {
    const REFUSED: &[&str] = &[
        "prompt_rejected",
        "limit_exceeded",
        "invalid_request",
        "idempotency_conflict",
    ];
    let mapped = if REFUSED.contains(&code) {
        ApiError::invalid("invalid_request", "body", message.to_string())
    } else {
        ApiError::from_job_failure(code, message)
    };
    let mut body = mapped.body_json();
    body["error"]["code"] = json!(code);
    body["error"]["message"] = json!(message);
    body["error"]["param"] = Value::Null;
    (mapped.status().as_u16(), body)
}

/// The size in bytes of one of a batch's files, and whether it has a
/// line at all.
pub async fn size(
    state: &AppState,
    batch: &BatchRecord,
    part: Part,
) -> Result<(u64, u64), ApiError> {
    let headers = HeaderMap::new();
    let (mut bytes, mut lines) = (0u64, 0u64);
    let mut after = None;
    loop {
        let items = state
            .jobs
            .db()
            .batch_items(&batch.id, None, after, PAGE)
            .await
            .map_err(|e| ApiError::store("reading a batch's items", e))?;
        let Some(last) = items.last() else {
            return Ok((bytes, lines));
        };
        after = Some(last.line);
        for item in items.iter().filter(|i| part.holds(i)) {
            let (text, omitted) = line(state, &headers, batch, item, InlineImages::Sized).await?;
            bytes += text.len() as u64 + omitted;
            lines += 1;
        }
    }
}
