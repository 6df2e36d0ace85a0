//! Bodies of the native job routes.

use easel_core::Tier;
use easel_store::Job as JobRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dto::images::CreateImageRequest;
use crate::error::ApiError;

/// `POST /v1/jobs`: the generation request, plus the scheduling tier.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
pub struct CreateJobRequest {
    /// What to generate (same fields as `/v1/images/generations`).
    #[serde(flatten)]
    pub request: CreateImageRequest,
    /// `batch` (default) or `realtime`.
    #[serde(default)]
    pub tier: Option<String>,
    /// Extension: a preview of the job's images every this many steps, on
    /// its event stream's `progress` events (`previews`, PNG data URLs);
    /// 1 to the job's step count. Default: the server's
    /// `worker.preview_every_steps`.
    #[serde(default)]
    pub preview_every_steps: Option<i64>,
}

impl CreateJobRequest {
    /// `preview_every_steps`, checked against the job's `steps`.
    pub fn previews(&self, steps: u32) -> Result<Option<u32>, ApiError> {
        match self.preview_every_steps {
            None => Ok(None),
            Some(n) if n >= 1 && n <= i64::from(steps) => Ok(Some(n as u32)),
            Some(n) => Err(ApiError::invalid(
                "invalid_preview_every_steps",
                "preview_every_steps",
                format!(
                    "preview_every_steps must be between 1 and the job's steps ({steps}), got {n}"
                ),
            )),
        }
    }

    /// The parsed tier.
    pub fn tier(&self) -> Result<Tier, ApiError> {
        match self.tier.as_deref().map(str::trim) {
            None | Some("") | Some("batch") => Ok(Tier::Batch),
            Some("realtime") => Ok(Tier::Realtime),
            Some(other) => Err(ApiError::invalid(
                "invalid_tier",
                "tier",
                format!(
                    "tier must be `batch` or `realtime`, got `{}`",
                    other.chars().take(40).collect::<String>()
                ),
            )),
        }
    }
}

/// Query of `GET /v1/jobs`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
pub struct ListJobsQuery {
    /// Only jobs in this state: `queued`, `running`, `succeeded`, `failed`,
    /// `cancelled` or `rejected`.
    pub status: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to `limits.max_page_size` (default 100); default 20.
    pub limit: Option<i64>,
}

/// A job's generation parameters.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobParams {
    /// Model name.
    pub model: String,
    /// Prompt.
    pub prompt: String,
    /// Negative prompt ("" for none).
    pub negative_prompt: String,
    /// Number of images.
    pub n: u32,
    /// `"WIDTHxHEIGHT"`.
    pub size: String,
    /// Denoising steps.
    pub steps: u32,
    /// Guidance scale.
    pub guidance_scale: f32,
    /// Seed of the first image, 0 to 4294967295 (a random request's drawn
    /// seed).
    pub seed: u64,
    /// Sampler, or null for the model's default.
    pub sampler: Option<String>,
    /// Sigma schedule.
    pub schedule: String,
    /// Image-to-image strength, or null.
    pub strength: Option<f32>,
    /// `b64_json` or `url`.
    pub response_format: String,
    /// `png`, `jpeg` or `webp`.
    pub output_format: String,
    /// Compression 0–100, or null.
    pub output_compression: Option<u8>,
    /// AUTOMATIC1111's clip skip, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_skip: Option<u32>,
    /// Inpainting: only a masked part of the initial image is redrawn.
    #[serde(default)]
    pub masked: bool,
}

/// A failed job's error.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobFailure {
    /// Stable code.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

/// Live progress of a running job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobProgress {
    /// Steps done.
    pub step: u32,
    /// Steps in total.
    pub total: u32,
}

/// A job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// `job_…`.
    pub id: String,
    /// Always `job`.
    pub object: String,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled` or `rejected`.
    pub status: String,
    /// `realtime` or `batch`.
    pub tier: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, when it started running.
    pub started_at: Option<i64>,
    /// Unix seconds, when it finished.
    pub finished_at: Option<i64>,
    /// Unix seconds after which it is not run (it fails with
    /// `deadline_exceeded`), from the request's `X-Easel-Timeout`; null
    /// without one.
    pub deadline_at: Option<i64>,
    /// What it generates.
    pub params: JobParams,
    /// Who created it: the API key's name, or the request's `user`.
    pub user: Option<String>,
    /// The end-user id the request named (OpenAI's `user`), recorded with
    /// API keys on or off; null without one.
    pub end_user: Option<String>,
    /// The project that owns it and its images.
    pub project: String,
    /// Why a queued job is not being run: `budget_exhausted` while its
    /// project is over a quota or its budget (it runs once the limit is
    /// raised or a new period starts); null otherwise.
    pub hold_reason: Option<String>,
    /// The stored images, once succeeded.
    pub image_ids: Vec<String>,
    /// Why it failed.
    pub error: Option<JobFailure>,
    /// Steps done, while running.
    pub progress: Option<JobProgress>,
    /// The `x-request-id` of the request that created it (the
    /// correlation id in logs and traces); null when made outside a
    /// request.
    pub request_id: Option<String>,
    /// The version of the model it was routed to (its content hash,
    /// `blake3:…`); null until the model's version is known.
    pub model_version: Option<String>,
    /// The job this one shadows: set on a shadow rollout's jobs only
    /// (project `easel-shadow`, seen by admins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_of: Option<String>,
    /// A queued job's place in the queue, 1-based: 1 + the jobs queued
    /// before it in the queue's base order (tier priority, then age); fair
    /// sharing between projects and users can still move it. Null unless
    /// queued (and on the job `POST /v1/jobs` answers).
    pub queue_position: Option<u64>,
}

impl Job {
    /// The API view of a stored job, with live progress if known.
    pub fn from_record(job: &JobRecord, progress: Option<(u32, u32)>) -> Self {
        let p = &job.params;
        Self {
            id: job.id.to_string(),
            object: "job".into(),
            status: job.status.as_str().into(),
            tier: job.tier.as_str().into(),
            created_at: job.created_at.timestamp(),
            started_at: job.started_at.map(|t| t.timestamp()),
            finished_at: job.finished_at.map(|t| t.timestamp()),
            deadline_at: job.deadline_at.map(|t| t.timestamp()),
            params: JobParams {
                model: p.model.clone(),
                prompt: p.prompt.clone(),
                negative_prompt: p.negative_prompt.clone(),
                n: p.n,
                size: p.size.to_string(),
                steps: p.steps,
                guidance_scale: p.guidance_scale,
                seed: p.seed,
                sampler: p.sampler.map(|s| s.as_str().into()),
                schedule: p.schedule.as_str().into(),
                strength: p.strength,
                response_format: job.options.response_format.as_str().into(),
                output_format: job.options.output_format.as_str().into(),
                output_compression: job.options.output_compression,
                clip_skip: p.clip_skip,
                masked: p.masked,
            },
            user: job.user_id.clone(),
            end_user: job.end_user.clone(),
            project: job.project.to_string(),
            hold_reason: job.hold_reason.clone(),
            image_ids: job.image_ids.iter().map(|i| i.to_string()).collect(),
            error: job.error_code.as_ref().map(|code| JobFailure {
                code: code.clone(),
                message: job.error_message.clone().unwrap_or_default(),
            }),
            progress: progress.map(|(step, total)| JobProgress { step, total }),
            request_id: job.request_id.clone(),
            model_version: job.params.version.clone(),
            shadow_of: job.shadow_of.map(|j| j.to_string()),
            queue_position: None,
        }
    }
}

/// A page of jobs, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// Always `list`.
    pub object: String,
    /// The jobs.
    pub data: Vec<Job>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// Whether another page follows.
    pub has_more: bool,
}
