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

/// `POST /v1/batches`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBatchRequest {
    /// A file uploaded with `purpose=batch`: one JSON request per line.
    pub input_file_id: String,
    /// The API path every line calls: `/v1/images/generations`.
    pub endpoint: String,
    /// How long the batch may take: `24h` (OpenAI's only value), or any
    /// whole number of hours from `1h` to `168h`.
    pub completion_window: String,
    /// Up to 16 string pairs (keys up to 64 characters, values up to 512)
    /// kept with the batch.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
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
}

impl BatchObject {
    /// The body of a stored batch.
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
