//! Stopping a running job without stopping its batch.
//!
//! A job in a batch shares the batch's [`CancelToken`](easel_engine::CancelToken)
//! with its companions. Stopping one job (its owner cancels, its deadline
//! passes, its lease is lost) marks it with a reason. If every job of the
//! batch is now stopped, the token is cancelled and the engine stops at its
//! next step; otherwise the job is *detached*: recorded at once (cancelled,
//! or failed with `deadline_exceeded`) while the batch runs on, and its
//! images are dropped when the batch ends.

use easel_core::JobId;
use easel_engine::CancelToken;
use easel_store::{Fence, StoreError};
use easel_telemetry::metrics::JobOutcome;

use crate::error::JobError;
use crate::events::JobEvent;
use crate::housekeeping::CANCELLED;
use crate::worker::Worker;

/// Why the worker cancelled a running job's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelReason {
    /// Its owner asked (DELETE, or a synchronous client left).
    User,
    /// Graceful shutdown ran out of time: put it back in the queue.
    Shutdown,
    /// The store gave the job's lease to someone else: drop the work.
    LeaseLost,
    /// Its deadline passed while it ran: fail it with `deadline_exceeded`.
    Deadline,
}

/// A job this worker is running.
pub(crate) struct Running {
    /// The claim the worker holds.
    pub(crate) fence: Fence,
    /// The token of the job's batch (shared by its companions).
    pub(crate) token: CancelToken,
    /// Why the job was stopped, once it was.
    pub(crate) reason: Option<CancelReason>,
    /// The batch it runs in.
    pub(crate) batch: u64,
}

/// What stopping a job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// This process is not running the job (or it was already stopped).
    NotHere,
    /// Every job of the batch is stopped: the engine call was cancelled,
    /// and the worker records the job when the call returns.
    Batch,
    /// The batch runs on without the job.
    Detached,
}

impl Worker {
    /// Stops a running job for `reason`, detaching it from its batch when
    /// companions are still live; a detached job is recorded at once.
    pub(crate) async fn stop_job(&self, id: JobId, reason: CancelReason) -> Stopped {
        let (stopped, fence) = self.mark_stopped(id, reason);
        if let (Stopped::Detached, Some(fence)) = (stopped, fence) {
            match self.record_stop(fence, reason).await {
                Ok(Some(event)) => self.inner.bus.publish(event),
                Ok(None) => {}
                Err(e) => tracing::warn!(job = %id, error = %e, "could not record a stopped job"),
            }
        }
        stopped
    }

    fn mark_stopped(&self, id: JobId, reason: CancelReason) -> (Stopped, Option<Fence>) {
        let mut running = self.inner.running.lock().expect("running lock poisoned");
        let Some(job) = running.get_mut(&id) else {
            return (Stopped::NotHere, None);
        };
        if job.reason.is_some() {
            return (Stopped::NotHere, None);
        }
        job.reason = Some(reason);
        let (batch, token, fence) = (job.batch, job.token.clone(), job.fence);
        let all_stopped = running
            .values()
            .filter(|r| r.batch == batch)
            .all(|r| r.reason.is_some());
        if all_stopped {
            token.cancel();
            (Stopped::Batch, Some(fence))
        } else {
            (Stopped::Detached, Some(fence))
        }
    }

    /// Writes a stopped job's end to the store and returns the event to
    /// publish; `None` when the store already holds an end (the job was
    /// recorded when it was detached, or finished meanwhile) or, for a lost
    /// lease, when the job is not ours to record.
    pub(crate) async fn record_stop(
        &self,
        fence: Fence,
        reason: CancelReason,
    ) -> Result<Option<JobEvent>, JobError> {
        let db = &self.inner.db;
        let id = fence.job;
        let result = match reason {
            CancelReason::LeaseLost | CancelReason::Shutdown => return Ok(None),
            CancelReason::User => db.mark_cancelled(fence).await.map(|job| {
                (
                    job,
                    JobOutcome::Cancelled,
                    CANCELLED,
                    JobEvent::Cancelled { job_id: id },
                )
            }),
            CancelReason::Deadline => db
                .mark_failed(
                    fence,
                    "deadline_exceeded",
                    "the job's deadline (X-Easel-Timeout) passed while it ran",
                )
                .await
                .map(|job| {
                    (
                        job,
                        JobOutcome::Failed,
                        "deadline_exceeded",
                        JobEvent::Failed {
                            job_id: id,
                            code: "deadline_exceeded".into(),
                            message: "the job's deadline (X-Easel-Timeout) passed while it ran"
                                .into(),
                        },
                    )
                }),
        };
        match result {
            Ok((job, outcome, code, event)) => {
                tracing::info!(job = %id, ?reason, "running job stopped");
                self.metrics()
                    .job_finished(&job.params.model, job.tier.as_str(), outcome, code);
                Ok(Some(event))
            }
            Err(StoreError::InvalidTransition { .. }) => Ok(None),
            Err(e) => Err(JobError::Store(e)),
        }
    }

    /// Whether the job is running here and has not been stopped.
    pub(crate) fn is_live(&self, id: JobId) -> bool {
        self.inner
            .running
            .lock()
            .expect("running lock poisoned")
            .get(&id)
            .is_some_and(|r| r.reason.is_none())
    }
}
