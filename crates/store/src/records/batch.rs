//! Batches as stored: uploaded and generated files, batches, and one item
//! per request line. The store keeps each item's request as the opaque
//! JSON the job system gives it; it knows nothing of what it means.

use chrono::{DateTime, Utc};
use easel_core::{JobId, ProjectId};

/// Declares a status enum stored as its snake_case name.
macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// The stored (and API) name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)*
                    other => Err(format!(concat!("unknown ", stringify!($name), " `{}`"), other)),
                }
            }
        }
    };
}

stored_enum!(
    /// Where a batch is, named as OpenAI's Batch API names it.
    BatchStatus {
        /// Not used by Easel (input is validated before the batch exists);
        /// kept so every OpenAI status parses.
        Validating = "validating",
        /// Its items are being made.
        InProgress = "in_progress",
        /// Every item is done; its output files are being written.
        Finalizing = "finalizing",
        /// Done; the output and error files are ready.
        Completed = "completed",
        /// The input could not be run at all.
        Failed = "failed",
        /// The completion window passed first; what was made is kept.
        Expired = "expired",
        /// Cancelled; waiting for items already running.
        Cancelling = "cancelling",
        /// Cancelled; what was made is kept.
        Cancelled = "cancelled",
        /// Easel: a dry run's sample is done; the rest waits for approval.
        AwaitingApproval = "awaiting_approval",
        /// Easel: the cost cap is reached; raising it resumes the batch.
        PausedBudget = "paused_budget",
        /// Easel: paused by its owner (`POST /v1/batches/{id}/pause`); no
        /// line is submitted until it is resumed.
        Paused = "paused",
    }
);

impl BatchStatus {
    /// Whether the batch has stopped changing.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            BatchStatus::Completed
                | BatchStatus::Failed
                | BatchStatus::Expired
                | BatchStatus::Cancelled
        )
    }
}

stored_enum!(
    /// Where one request line of a batch is.
    ItemStatus {
        /// Not yet a job.
        Pending = "pending",
        /// Its job is queued or running.
        Submitted = "submitted",
        /// Its job made its images.
        Succeeded = "succeeded",
        /// Refused or failed; the error says why.
        Failed = "failed",
        /// The batch was cancelled before it was made.
        Cancelled = "cancelled",
        /// The batch's completion window passed before it was made.
        Expired = "expired",
    }
);

impl ItemStatus {
    /// Whether the item has stopped changing.
    pub fn is_terminal(self) -> bool {
        !matches!(self, ItemStatus::Pending | ItemStatus::Submitted)
    }
}

/// A file to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFile {
    /// `file_…`.
    pub id: String,
    /// The owner.
    pub project: ProjectId,
    /// `batch` (an upload), `batch_output` or `batch_error`.
    pub purpose: String,
    /// The name it was uploaded with, or the one given to an output.
    pub filename: String,
    /// Its size.
    pub bytes: u64,
    /// Where an upload's bytes are in the blob store.
    pub object_key: Option<String>,
    /// The batch an output file is rendered from.
    pub batch_id: Option<String>,
    /// When it may be deleted.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A file as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    /// `file_…`.
    pub id: String,
    /// The owner.
    pub project: ProjectId,
    /// `batch`, `batch_output` or `batch_error`.
    pub purpose: String,
    /// Its name.
    pub filename: String,
    /// Its size.
    pub bytes: u64,
    /// Where an upload's bytes are in the blob store.
    pub object_key: Option<String>,
    /// The batch an output file is rendered from.
    pub batch_id: Option<String>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When it may be deleted.
    pub expires_at: Option<DateTime<Utc>>,
}

/// One request line of a new batch.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBatchItem {
    /// The caller's id for the line, unique in the batch.
    pub custom_id: String,
    /// The validated request, as the job system serialises it.
    pub request: serde_json::Value,
    /// Whether the line is in the dry run's sample.
    pub sample: bool,
}

/// A batch to record, with its items (numbered from 0 in this order).
#[derive(Debug, Clone, PartialEq)]
pub struct NewBatch {
    /// `batch_…`.
    pub id: String,
    /// The owner.
    pub project: ProjectId,
    /// Who made it (a key's name), the user of every job it makes.
    pub user_id: Option<String>,
    /// The API path every line calls.
    pub endpoint: String,
    /// The uploaded JSONL.
    pub input_file_id: String,
    /// `24h`.
    pub completion_window: String,
    /// The caller's metadata object.
    pub metadata: Option<serde_json::Value>,
    /// When unfinished items expire.
    pub expires_at: DateTime<Utc>,
    /// The share of lines (percent) run first as a dry run.
    pub dry_run_percent: Option<f64>,
    /// The most the batch may cost.
    pub cost_cap: Option<f64>,
    /// The estimate made at creation (opaque JSON).
    pub estimate: Option<serde_json::Value>,
    /// The QA settings (opaque JSON).
    pub qa: Option<serde_json::Value>,
    /// Where to POST when the batch finishes.
    pub webhook_url: Option<String>,
    /// The webhook's HMAC secret.
    pub webhook_secret: Option<String>,
    /// The request lines.
    pub items: Vec<NewBatchItem>,
}

/// A batch as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRecord {
    /// `batch_…`.
    pub id: String,
    /// The owner.
    pub project: ProjectId,
    /// Who made it.
    pub user_id: Option<String>,
    /// The API path every line calls.
    pub endpoint: String,
    /// The uploaded JSONL.
    pub input_file_id: String,
    /// `24h`.
    pub completion_window: String,
    /// The caller's metadata object.
    pub metadata: Option<serde_json::Value>,
    /// Where it is.
    pub status: BatchStatus,
    /// Request lines.
    pub total: u64,
    /// Lines that made their images.
    pub completed: u64,
    /// Lines refused, failed, cancelled or expired.
    pub failed: u64,
    /// The results file, once finalized.
    pub output_file_id: Option<String>,
    /// The errors file, once finalized (when any line failed).
    pub error_file_id: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its items started to be made.
    pub in_progress_at: Option<DateTime<Utc>>,
    /// When every item was done.
    pub finalizing_at: Option<DateTime<Utc>>,
    /// When it completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// When it was asked to cancel.
    pub cancelling_at: Option<DateTime<Utc>>,
    /// When the cancel finished.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// When unfinished items expire.
    pub expires_at: DateTime<Utc>,
    /// When it expired.
    pub expired_at: Option<DateTime<Utc>>,
    /// The share of lines (percent) run first as a dry run.
    pub dry_run_percent: Option<f64>,
    /// When the rest of a dry-run batch was approved.
    pub approved_at: Option<DateTime<Utc>>,
    /// The most the batch may cost.
    pub cost_cap: Option<f64>,
    /// The estimate made at creation.
    pub estimate: Option<serde_json::Value>,
    /// The QA settings (opaque JSON).
    pub qa: Option<serde_json::Value>,
    /// The completion webhook, when asked for.
    pub webhook: Option<Webhook>,
}

/// A batch's completion webhook and its delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// Where to POST.
    pub url: String,
    /// The HMAC secret (`whsec_…`).
    pub secret: String,
    /// `None` until the batch finishes; then `pending`, `delivered` or
    /// `failed` (out of attempts).
    pub status: Option<String>,
    /// Deliveries tried.
    pub attempts: u32,
    /// When the next try is due (pending only).
    pub next_at: Option<DateTime<Utc>>,
    /// When a delivery succeeded.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Why the last try failed.
    pub last_error: Option<String>,
}

impl BatchRecord {
    /// Whether only the dry run's sample may run now.
    pub fn sampling(&self) -> bool {
        self.dry_run_percent.is_some() && self.approved_at.is_none()
    }
}

/// What a batch's images have cost and scored so far, over all its lines
/// or its dry run's sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchSpend {
    /// Lines counted.
    pub items: u64,
    /// Of which made their images.
    pub succeeded: u64,
    /// Of which did not.
    pub failed: u64,
    /// Their images.
    pub images: u64,
    /// The images' cost.
    pub cost: f64,
    /// The images' mean quality score, when scored.
    pub mean_quality_score: Option<f64>,
    /// Images the moderation flagged.
    pub flagged_images: u64,
    /// Lines refused by the content policy (the prompt or the image).
    pub moderation_refused: u64,
}

/// One request line as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    /// Its batch.
    pub batch_id: String,
    /// Its line in the input, from 0.
    pub line: u32,
    /// The caller's id for it.
    pub custom_id: String,
    /// The validated request.
    pub request: serde_json::Value,
    /// Where it is.
    pub status: ItemStatus,
    /// Its job, once submitted.
    pub job_id: Option<JobId>,
    /// Why it failed.
    pub error_code: Option<String>,
    /// Why it failed, for people.
    pub error_message: Option<String>,
    /// When it stopped changing.
    pub finished_at: Option<DateTime<Utc>>,
    /// Whether the line is in the dry run's sample.
    pub sample: bool,
    /// Jobs made for it so far (a retry makes another).
    pub attempts: u32,
    /// The failed attempts that were retried, with their reasons (JSON:
    /// `[{"attempt", "job_id", "code", "message"}]`).
    pub retries: Option<serde_json::Value>,
    /// Whether a person should look at its images (QA).
    pub needs_review: bool,
}

/// A submitted item whose job has ended.
#[derive(Debug, Clone, PartialEq)]
pub struct SettledItem {
    /// How it ended.
    pub outcome: ItemOutcome,
    /// The job that ended.
    pub job_id: Option<JobId>,
    /// Jobs made for it so far, this one included.
    pub attempts: u32,
    /// Earlier retried attempts (as [`BatchItem::retries`]).
    pub retries: Option<serde_json::Value>,
}

/// One image of a succeeded item whose QA has not run yet (`image_id`
/// `None` for an item that made no image).
#[derive(Debug, Clone, PartialEq)]
pub struct QaImage {
    /// The item's line.
    pub line: u32,
    /// The item's job.
    pub job_id: Option<JobId>,
    /// The image.
    pub image_id: Option<String>,
    /// Its quality score.
    pub quality_score: Option<f64>,
    /// Its flags (`nsfw_flagged`, `near_copy`, …).
    pub flags: Vec<String>,
    /// The model (alias) that made it.
    pub model: Option<String>,
    /// The version that made it.
    pub model_version: Option<String>,
}

/// One line of a batch's manifest: an item with one of its images (an
/// item that made none has one line with no image).
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestRow {
    /// The item's line.
    pub line: u32,
    /// The caller's id for it.
    pub custom_id: String,
    /// Where it is.
    pub status: ItemStatus,
    /// The validated request.
    pub request: serde_json::Value,
    /// Why it failed.
    pub error_code: Option<String>,
    /// Why it failed, for people.
    pub error_message: Option<String>,
    /// Whether QA asks a person to look.
    pub needs_review: bool,
    /// Jobs made for it.
    pub attempts: u32,
    /// The failed attempts that were retried, with their reasons.
    pub retries: Option<serde_json::Value>,
    /// Its job.
    pub job_id: Option<JobId>,
    /// The image, where one was made.
    pub image: Option<ManifestImage>,
}

/// The image of a [`ManifestRow`].
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestImage {
    /// The image.
    pub id: String,
    /// Its owner.
    pub project: ProjectId,
    /// Where its bytes are.
    pub object_key: String,
    /// Its place in the job.
    pub index: u32,
    /// The prompt it was made from.
    pub prompt: String,
    /// Its seed.
    pub seed: u64,
    /// `png`, `jpeg` or `webp`.
    pub format: String,
    /// Its quality score.
    pub quality_score: Option<f64>,
    /// Its flags.
    pub flags: Vec<String>,
    /// What it cost.
    pub cost: f64,
}

/// An item's outcome, taken from its job.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemOutcome {
    /// The item's line.
    pub line: u32,
    /// `Succeeded`, `Failed`, `Cancelled` or `Expired`.
    pub status: ItemStatus,
    /// Why it did not succeed.
    pub error_code: Option<String>,
    /// Why it did not succeed, for people.
    pub error_message: Option<String>,
}
