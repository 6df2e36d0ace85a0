//! Realtime jobs a request handler waits for: the OpenAI Images routes and
//! the AUTOMATIC1111-compatible routes submit through [`submit`] (prompt
//! policy, the caller's limits, the queue) and wait through [`wait`].
//!
//! A client that disconnects drops its handler, which cancels its job; so
//! does a request whose `X-Easel-Timeout` deadline passes.

use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::Response;
use easel_core::{JobId, JobStatus, Tier};
use easel_jobs::{InitInput, Jobs, NewJob};
use easel_store::Job as JobRecord;

use crate::auth::Principal;
use crate::dto::images::ValidRequest;
use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;
use crate::tenancy::rate::RateSlot;

/// How a waited-for job ended, when it did not fail.
pub(crate) enum Finished {
    /// Every image is stored.
    Succeeded(JobRecord),
    /// Cancelled (by its owner, or an A1111 client's interrupt or skip).
    Cancelled(JobRecord),
}

/// Who asks, and how long they wait.
#[derive(Clone, Copy)]
pub(crate) struct SyncCall<'a> {
    /// The caller.
    pub principal: &'a Principal,
    /// Its rate slot.
    pub slot: &'a RateSlot,
    /// The request's headers (request id, trace).
    pub headers: &'a HeaderMap,
    /// The parsed `X-Easel-Timeout`.
    pub timeout: Option<Duration>,
}

/// Checks the prompt against the policy and the request against the
/// caller's limits, then submits a realtime job. `Ok(Err(response))` is a
/// refusal already shaped as a response (429 with its headers).
pub(crate) async fn submit(
    state: &AppState,
    call: SyncCall<'_>,
    valid: ValidRequest,
    init: Option<InitInput>,
) -> Result<Result<JobRecord, Response>, ApiError> {
    let SyncCall {
        principal,
        slot,
        headers,
        timeout,
    } = call;
    let mut valid = valid;
    let (init_image, mask) = match init {
        Some(InitInput { image, mask }) => (Some(image), mask),
        None => (None, None),
    };
    valid.params.masked = mask.is_some();
    let policy = crate::responsible::check_prompt(
        state,
        principal,
        valid.user.as_deref(),
        &valid.params.prompt,
    )
    .await?;
    if let Err(refused) =
        crate::tenancy::rate::admit_images(state, principal, &valid.params, slot).await
    {
        return Ok(Err(refused));
    }
    let trace = crate::correlation::JobTrace::of(headers);
    let (job, _) = state
        .jobs
        .submit(NewJob {
            params: valid.params,
            output: valid.output,
            tier: Tier::Realtime,
            project: principal.project(),
            end_user: valid.user.clone(),
            user_id: crate::auth::user_id(principal, valid.user),
            idempotency_key: None,
            init_image,
            mask,
            timeout,
            policy,
            request_id: trace.request_id,
            trace_parent: trace.trace_parent,
        })
        .await?;
    Ok(Ok(job))
}

/// Cancels a synchronous request's job if the handler (or its response
/// stream) is dropped before the job finished: the client went away, so
/// nobody wants the images.
pub(crate) struct CancelOnDrop {
    jobs: Jobs,
    id: JobId,
    armed: bool,
}

impl CancelOnDrop {
    /// Armed for `id`.
    pub(crate) fn new(jobs: Jobs, id: JobId) -> Self {
        Self {
            jobs,
            id,
            armed: true,
        }
    }

    /// The job finished: nothing to cancel.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (jobs, id) = (self.jobs.clone(), self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            tracing::info!(job = %id, "client left; cancelling its job");
            runtime.spawn(async move {
                if let Err(e) = jobs.cancel(id).await {
                    tracing::warn!(job = %id, error = %e, "could not cancel an abandoned job");
                }
            });
        }
    }
}

/// Waits for `job` (at most `timeout`, the request's parsed
/// `X-Easel-Timeout`, and `worker.sync_timeout_seconds`). A failed job is
/// its error; a cancelled one is [`Finished::Cancelled`].
pub(crate) async fn wait(
    state: &AppState,
    job: &JobRecord,
    timeout: Option<Duration>,
) -> Result<Finished, ApiError> {
    let mut guard = CancelOnDrop {
        jobs: state.jobs.clone(),
        id: job.id,
        armed: true,
    };
    let sync_limit = Duration::from_secs(state.config.worker.sync_timeout_seconds);
    let limit = timeout.map_or(sync_limit, |t| t.min(sync_limit));
    let done = match tokio::time::timeout(limit, state.jobs.wait(job.id)).await {
        Ok(Err(easel_jobs::JobError::ShuttingDown)) => {
            // The job is back in the queue and runs after the restart.
            guard.armed = false;
            return Err(ApiError::new(
                ErrorKind::Unavailable,
                "shutting_down",
                format!(
                    "the server is shutting down; job `{}` stays queued and runs after the restart \
                     (GET /v1/jobs/{})",
                    job.id, job.id
                ),
            ));
        }
        Ok(done) => done?,
        Err(_) if timeout.is_some_and(|t| t <= sync_limit) => {
            // Still queued: it fails `deadline_exceeded` now and never runs.
            // Still running: the guard cancels it at its next step.
            if let Err(e) = state.jobs.expire_deadlines().await {
                tracing::warn!(job = %job.id, error = %e, "could not expire overdue jobs");
            }
            return Err(ApiError::new(
                ErrorKind::Timeout,
                "deadline_exceeded",
                format!(
                    "job `{}` did not finish within its deadline of {} s (X-Easel-Timeout) \
                     and was stopped",
                    job.id,
                    limit.as_secs()
                ),
            ));
        }
        Err(_) => {
            return Err(ApiError::new(
                ErrorKind::Timeout,
                "timeout",
                format!(
                    "the job did not finish within {} s (worker.sync_timeout_seconds) and was cancelled; \
                     use POST /v1/jobs for long work",
                    limit.as_secs()
                ),
            ));
        }
    };
    guard.armed = false;
    match done.status {
        JobStatus::Succeeded => Ok(Finished::Succeeded(done)),
        JobStatus::Cancelled => Ok(Finished::Cancelled(done)),
        _ => Err(ApiError::from_job_failure(
            done.error_code.as_deref().unwrap_or("generation_failed"),
            done.error_message.as_deref().unwrap_or("generation failed"),
        )),
    }
}
