//! Image records: the provenance of every stored image.

use chrono::{DateTime, Utc};
use easel_core::{GenerationParams, ImageId, JobId, OutputFormat, ProjectId};
use serde::{Deserialize, Serialize};

/// How long one stage of producing an image took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTiming {
    /// The stage, e.g. `text_encoder`, `denoise`, `decode`, `encode`, `store`.
    pub stage: String,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// An image to record. The bytes are already in the object store under
/// `object_key`; this is everything needed to say what made them.
#[derive(Debug, Clone, PartialEq)]
pub struct NewImage {
    /// The id to give the image.
    pub id: ImageId,
    /// Position within the job, 0-based; unique per job.
    pub index_in_job: u32,
    /// The prompt (as given to the model).
    pub prompt: String,
    /// The negative prompt (empty when none).
    pub negative_prompt: String,
    /// This image's seed (`params.image_seed(index_in_job)`).
    pub seed: u64,
    /// The job's full parameters.
    pub params: GenerationParams,
    /// Model name.
    pub model: String,
    /// Content hash of the model's weights.
    pub model_hash: String,
    /// The sampler actually used (the model default resolved).
    pub sampler: String,
    /// The sigma schedule actually used.
    pub schedule: String,
    /// Denoising steps.
    pub steps: u32,
    /// Guidance scale.
    pub guidance: f32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Encoded file format.
    pub format: OutputFormat,
    /// Size of the encoded bytes.
    pub byte_size: u64,
    /// Lowercase hex SHA-256 of the encoded bytes.
    pub sha256: String,
    /// Where the bytes are in the object store.
    pub object_key: String,
    /// Time per stage, in the order the stages ran.
    pub timings: Vec<StageTiming>,
    /// Non-fatal notes, e.g. "prompt truncated to 77 tokens".
    pub warnings: Vec<String>,
    /// Invisible watermark payload id, when marked; default `None`.
    pub watermark_id: Option<String>,
    /// Perceptual hash (hex), when computed; default `None`.
    pub perceptual_hash: Option<String>,
    /// Image moderation scores and decision (free-form JSON); default `None`.
    pub moderation: Option<serde_json::Value>,
    /// Flags raised by post-processing, e.g. `nsfw_flagged`; default empty.
    pub flags: Vec<String>,
    /// The `x-request-id` of the request that created the image's job
    /// (copied from the job); default `None`.
    pub request_id: Option<String>,
    /// How well the image shows its prompt (scorer cosine in [-1, 1]), when
    /// scored; default `None`.
    pub quality_score: Option<f32>,
    /// The image's share of the device time of the engine call that made
    /// it, in seconds; default 0.
    pub device_seconds: f64,
    /// What it cost: device seconds times the device price, plus its bytes
    /// times the storage price per GB-month (one month); default 0.
    pub cost: f64,
}

/// A stored image record.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// The image's id.
    pub id: ImageId,
    /// The job that made it.
    pub job_id: JobId,
    /// Position within the job, 0-based.
    pub index_in_job: u32,
    /// The prompt.
    pub prompt: String,
    /// The negative prompt (empty when none).
    pub negative_prompt: String,
    /// This image's seed.
    pub seed: u64,
    /// The job's full parameters.
    pub params: GenerationParams,
    /// Model name.
    pub model: String,
    /// Content hash of the model's weights.
    pub model_hash: String,
    /// The sampler used.
    pub sampler: String,
    /// The sigma schedule used.
    pub schedule: String,
    /// Denoising steps.
    pub steps: u32,
    /// Guidance scale.
    pub guidance: f32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Encoded file format.
    pub format: OutputFormat,
    /// Size of the encoded bytes.
    pub byte_size: u64,
    /// Lowercase hex SHA-256 of the encoded bytes.
    pub sha256: String,
    /// Where the bytes are in the object store.
    pub object_key: String,
    /// Time per stage.
    pub timings: Vec<StageTiming>,
    /// Non-fatal notes.
    pub warnings: Vec<String>,
    /// Invisible watermark payload id, when marked.
    pub watermark_id: Option<String>,
    /// Perceptual hash (hex), when computed.
    pub perceptual_hash: Option<String>,
    /// Image moderation scores and decision.
    pub moderation: Option<serde_json::Value>,
    /// Flags raised by post-processing.
    pub flags: Vec<String>,
    /// The `x-request-id` of the request that created the image's job.
    pub request_id: Option<String>,
    /// The end-user id its job's request named (OpenAI's `user`), copied
    /// from the job when the image is stored.
    pub end_user: Option<String>,
    /// How well the image shows its prompt, when scored.
    pub quality_score: Option<f32>,
    /// Its share of device time, in seconds.
    pub device_seconds: f64,
    /// What it cost (device time and one month of storage).
    pub cost: f64,
    /// When the record was written.
    pub created_at: DateTime<Utc>,
    /// The project that owns it (its job's).
    pub project: ProjectId,
    /// Held: never deleted, by request or by retention.
    pub legal_hold: bool,
}

/// Which images [`Db::list_images`](crate::Db::list_images) returns; every
/// field narrows the list, `None` leaves it open.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageFilter {
    /// Only this project's images.
    pub project: Option<ProjectId>,
    /// Only images of this model (its name as requested).
    pub model: Option<String>,
    /// Only images whose prompt contains this text, ignoring case.
    pub prompt_contains: Option<String>,
    /// Only images created at or after this time (ms since the epoch).
    pub created_from_ms: Option<i64>,
    /// Only images created before this time (ms since the epoch).
    pub created_until_ms: Option<i64>,
}

/// One page of images, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePage {
    /// The images of this page.
    pub images: Vec<Image>,
    /// Pass this to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}
