//! Job records.

use chrono::{DateTime, Utc};
use easel_core::{GenerationParams, ImageId, JobId, JobStatus, OutputOptions, ProjectId, Tier};
use serde::{Deserialize, Serialize};

/// A job to persist, as built by the API edge from a validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// The id to give the job; [`JobId::new`] unless the caller has one.
    pub id: JobId,
    /// Realtime (a client waits) or batch.
    pub tier: Tier,
    /// The project that owns the job (and its images).
    pub project: ProjectId,
    /// The requesting user or API key name; `None` for anonymous use.
    pub user_id: Option<String>,
    /// The end-user id the request named (OpenAI's `user`), recorded on
    /// the job and copied onto its images; only recorded, never used to
    /// decide anything. Default `None`.
    pub end_user: Option<String>,
    /// The validated parameters; the job's `model` column is `params.model`.
    pub params: GenerationParams,
    /// Delivery options (response and output format, compression).
    pub options: OutputOptions,
    /// The client's `Idempotency-Key`, if any. Unique per user.
    pub idempotency_key: Option<String>,
    /// The `x-request-id` of the request that created the job; default
    /// `None` (jobs made outside a request).
    pub request_id: Option<String>,
    /// The W3C `traceparent` of the creating request's span, when a trace
    /// was being recorded; the worker's `job.run` span continues it.
    /// Default `None`.
    pub trace_parent: Option<String>,
    /// When the job stops being worth running (the client's
    /// `X-Easel-Timeout` after submission); `None`: no deadline.
    pub deadline_at: Option<DateTime<Utc>>,
    /// The prompt policy's decision (JSON), recorded with the job.
    pub policy: Option<serde_json::Value>,
    /// The version to run it on instead when its version (a canary
    /// rollout's candidate) fails it; default `None`.
    pub fallback_version: Option<String>,
    /// The user's job this one shadows: it runs the same request on a
    /// shadow rollout's candidate, unseen (docs/rollouts.md); default
    /// `None`.
    pub shadow_of: Option<JobId>,
}

impl NewJob {
    /// A job with a fresh id, no user, default options and no keys.
    pub fn new(tier: Tier, params: GenerationParams) -> Self {
        Self {
            id: JobId::new(),
            tier,
            project: ProjectId::default_project(),
            user_id: None,
            end_user: None,
            params,
            options: OutputOptions::default(),
            idempotency_key: None,
            request_id: None,
            fallback_version: None,
            shadow_of: None,
            trace_parent: None,
            deadline_at: None,
            policy: None,
        }
    }
}

/// A persisted job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The job's id.
    pub id: JobId,
    /// Where it is in its lifecycle.
    pub status: JobStatus,
    /// Its scheduling tier.
    pub tier: Tier,
    /// The project that owns it.
    pub project: ProjectId,
    /// Why it is held in the queue (`budget_exhausted`); `None`: it may
    /// be claimed.
    pub hold_reason: Option<String>,
    /// The version to fall back to when its version (a canary candidate)
    /// fails it; cleared once used.
    pub fallback_version: Option<String>,
    /// The candidate version it was first routed to and left because it
    /// failed there.
    pub rerouted_from: Option<String>,
    /// The user's job it shadows (a shadow rollout's job, owned by the
    /// project `easel-shadow`).
    pub shadow_of: Option<JobId>,
    /// The requesting user, if any.
    pub user_id: Option<String>,
    /// The end-user id the request named (OpenAI's `user`), if any.
    pub end_user: Option<String>,
    /// The validated parameters.
    pub params: GenerationParams,
    /// Delivery options.
    pub options: OutputOptions,
    /// The client's idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// How many times a worker has claimed the job (1 after the first claim).
    pub attempts: u32,
    /// The worker holding the job while it runs.
    pub lease_owner: Option<String>,
    /// When that worker's lease runs out unless renewed.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The owner asked to cancel while the job was running; the worker stops
    /// at the next step and calls [`Db::mark_cancelled`](crate::Db::mark_cancelled).
    pub cancel_requested: bool,
    /// Stable code of the failure or rejection, when failed or rejected.
    pub error_code: Option<String>,
    /// Human-readable failure or rejection reason.
    pub error_message: Option<String>,
    /// The prompt policy decision recorded for this job (free-form JSON).
    pub policy: Option<serde_json::Value>,
    /// The job's images in index order; empty until it succeeds.
    pub image_ids: Vec<ImageId>,
    /// The `x-request-id` of the request that created the job.
    pub request_id: Option<String>,
    /// The W3C `traceparent` of the creating request's span, if traced.
    pub trace_parent: Option<String>,
    /// When the job stops being worth running; `None`: no deadline.
    ///
    /// A job still queued at this time is never run:
    /// [`Db::expire_overdue`](crate::Db::expire_overdue) fails it with
    /// `deadline_exceeded`. A worker running it cancels its token at this
    /// time (the engine stops at its next step) and records the job failed
    /// with the same code.
    pub deadline_at: Option<DateTime<Utc>>,
    /// When the job was persisted.
    pub created_at: DateTime<Utc>,
    /// When a worker last claimed it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status.
    pub finished_at: Option<DateTime<Utc>>,
    /// The object keys a claim recorded before writing them
    /// ([`Db::stage_objects`](crate::Db::stage_objects)); empty once the job
    /// succeeds. Non-empty on a job claimed again: the files an earlier
    /// attempt may have left, for the new claimer to remove.
    pub staged_keys: Vec<String>,
}

/// One claim of a job: the job and the attempt number the claim gave it,
/// a fencing token.
///
/// Every transition a worker makes on a job it claimed names the claim's
/// fence, and the store applies it only while that claim is the job's
/// latest: a worker that was paused past its lease (SIGSTOP, a long pause,
/// a network partition), whose job was put back and claimed again under the
/// next attempt number, can no longer renew, complete, fail, cancel or
/// requeue it. A queued job's fence (its current `attempts`) lets it be
/// failed or cancelled before any claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fence {
    /// The job.
    pub job: JobId,
    /// Its `attempts` as of the claim (1 for the first claim).
    pub attempt: u32,
}

impl Fence {
    /// The fence of `job` as it stands: for a job just claimed, that claim.
    pub fn of(job: &Job) -> Self {
        Self {
            job: job.id,
            attempt: job.attempts,
        }
    }
}

/// The result of [`Db::insert_job`](crate::Db::insert_job): either the new
/// job, or the job that the same user already created with the same
/// idempotency key (which is returned unchanged, whatever its parameters).
#[derive(Debug, Clone, PartialEq)]
pub enum InsertOutcome {
    /// The job was persisted now.
    Created(Job),
    /// A job with this (user, idempotency key) already existed; nothing was written.
    Existing(Job),
}

impl InsertOutcome {
    /// The job, whichever way it came.
    pub fn job(&self) -> &Job {
        match self {
            InsertOutcome::Created(job) | InsertOutcome::Existing(job) => job,
        }
    }

    /// The job, whichever way it came.
    pub fn into_job(self) -> Job {
        match self {
            InsertOutcome::Created(job) | InsertOutcome::Existing(job) => job,
        }
    }

    /// Whether the job was created by this call.
    pub fn is_created(&self) -> bool {
        matches!(self, InsertOutcome::Created(_))
    }
}

/// The result of [`Db::insert_job_bounded`](crate::Db::insert_job_bounded).
// The small variant is the rare one (a refusal), and the value lives only
// until the caller matches on it: boxing the job would cost an allocation
// on every admitted insert to save stack space nobody keeps.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum BoundedInsert {
    /// There was room (or the job already existed: an idempotent retry is
    /// answered whatever the queue holds).
    Admitted(InsertOutcome),
    /// The tier already had `limit` queued jobs; nothing was written.
    QueueFull(QueueFull),
}

/// A tier at its limit, as seen inside the refused insert's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull {
    /// The tier that is full.
    pub tier: Tier,
    /// Jobs queued in that tier (at least `limit`).
    pub queued: u64,
    /// Jobs queued in more urgent tiers, which run first.
    pub ahead: u64,
    /// The tier's limit.
    pub limit: u64,
}

/// The result of [`Db::cancel`](crate::Db::cancel).
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The job was queued and is now `cancelled`.
    Cancelled(Job),
    /// The job is running; its `cancel_requested` flag is set and the worker
    /// will stop it at the next step.
    Requested(Job),
    /// The job had already finished; it is returned unchanged.
    AlreadyFinished(Job),
}

impl CancelOutcome {
    /// The job after the call.
    pub fn job(&self) -> &Job {
        match self {
            CancelOutcome::Cancelled(job)
            | CancelOutcome::Requested(job)
            | CancelOutcome::AlreadyFinished(job) => job,
        }
    }
}

/// Which jobs [`Db::list_jobs`](crate::Db::list_jobs) returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFilter {
    /// Only jobs in this status; default all.
    pub status: Option<JobStatus>,
    /// Only jobs of this user; default all users.
    pub user_id: Option<String>,
    /// Only jobs of this project; default all projects.
    pub project: Option<ProjectId>,
}

/// One page of jobs, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    /// The jobs of this page.
    pub jobs: Vec<Job>,
    /// Pass this to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}
