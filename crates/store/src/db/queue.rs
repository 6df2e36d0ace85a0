//! Moving jobs through their lifecycle: claiming, leases, completion,
//! cancellation and crash recovery.
//!
//! Every transition is one conditional update on either backend, so a
//! transition that races with another (a cancel and a completion, two
//! workers claiming) takes effect at most once; the loser sees
//! [`StoreError::InvalidTransition`] with the state that won. A worker's
//! transitions name the [`Fence`] of its claim, so a stale claim changes
//! nothing.
//!
//! Leases run on the database's clock: with the system clock (every
//! deployment), claim times, lease expiries and the expiry check are
//! computed by the database server itself, so worker machines whose clocks
//! drift cannot expire each other's leases early or keep a dead one alive.
//! A test that set its own clock ([`Db::with_clock`]) gets that clock
//! instead, so it can move past a lease without sleeping.

use std::time::Duration;

use easel_core::{ImageId, JobId, JobStatus};

use super::{Db, dispatch};
use crate::error::{Result, StoreError};
use crate::records::job::{CancelOutcome, Fence, Job};
use crate::records::queue::QueuedJob;
use crate::rows;

impl Db {
    /// Atomically takes the next queued job (realtime before batch, oldest
    /// first) and marks it `running`: sets `started_at`, increments
    /// `attempts`, and gives `worker` a lease until now + `lease`.
    /// `None` when nothing is queued.
    ///
    /// Safe with any number of workers in any number of processes: on
    /// PostgreSQL the job is chosen `FOR UPDATE SKIP LOCKED`, so concurrent
    /// claims take different jobs without waiting on each other.
    pub async fn claim_next_queued(&self, worker: &str, lease: Duration) -> Result<Option<Job>> {
        let now = self.lease_clock();
        dispatch!(self, b => b.claim_next_queued(worker, now, lease_ms(lease)).await)
    }

    /// The queued jobs a scheduler chooses from: for every tier and user,
    /// that user's `per_user` oldest queued jobs, ordered by tier, then age.
    /// Bounded by (users × tiers × `per_user`) however deep one user's
    /// backlog is, so fair share costs the same with 10 or 10,000 queued jobs.
    pub async fn queued_candidates(&self, per_user: u32) -> Result<Vec<QueuedJob>> {
        dispatch!(self, b => b.queued_candidates(i64::from(per_user.max(1))).await)
    }

    /// Atomically claims those of `ids` that are still queued, as
    /// [`Db::claim_next_queued`] does for one: each becomes `running` with
    /// `worker`'s lease. Returns the claimed jobs in the order of `ids`;
    /// a job taken or cancelled meanwhile is simply missing (on PostgreSQL,
    /// so is one that another transaction holds locked at that moment: it
    /// stays queued for the next turn).
    pub async fn claim_jobs(
        &self,
        ids: &[JobId],
        worker: &str,
        lease: Duration,
    ) -> Result<Vec<Job>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.lease_clock();
        let lease = lease_ms(lease);
        let mut claimed = dispatch!(self, b => b.claim_jobs(ids, worker, now, lease).await)?;
        claimed.sort_by_key(|job| ids.iter().position(|id| *id == job.id));
        Ok(claimed)
    }

    /// Extends the lease of the claim `fence` names to now + `lease`.
    /// Returns `false` when that claim is no longer the job's (it finished,
    /// was cancelled, or its lease expired and it was requeued, perhaps
    /// claimed again): the worker must then stop and store nothing.
    pub async fn renew_lease(&self, fence: Fence, lease: Duration) -> Result<bool> {
        let now = self.lease_clock();
        dispatch!(self, b => b.renew_lease(fence, now, lease_ms(lease)).await)
    }

    /// Records that the claim `fence` names is about to write the objects
    /// `keys`, and renews its lease to now + `lease`. Returns `false`, and
    /// records nothing, when that claim is no longer the job's: the worker
    /// must then write nothing. A claim that dies after writing leaves the
    /// keys on the job for the next claimer to remove ([`Job::staged_keys`]).
    pub async fn stage_objects(
        &self,
        fence: Fence,
        keys: &[String],
        lease: Duration,
    ) -> Result<bool> {
        let now = self.lease_clock();
        let keys = rows::to_json(&keys, "jobs.staged_keys")?;
        dispatch!(self, b => b.stage_objects(fence, &keys, now, lease_ms(lease)).await)
    }

    /// Crash recovery for a single-node deployment: every `running` job is
    /// put back to `queued` (or `cancelled`, if its cancellation had been
    /// requested), keeping its `attempts`. Call once at start, before any
    /// worker claims. Returns the jobs that were touched.
    ///
    /// With several worker processes use [`Db::requeue_expired_leases`]
    /// instead: the other workers' running jobs are alive.
    pub async fn requeue_running_on_startup(&self) -> Result<Vec<JobId>> {
        let now = self.lease_clock();
        dispatch!(self, b => b.requeue_running(now, false).await)
    }

    /// Puts back every `running` job whose lease expired before now (its
    /// worker died or hung), as [`Db::requeue_running_on_startup`] does.
    pub async fn requeue_expired_leases(&self) -> Result<Vec<JobId>> {
        let now = self.lease_clock();
        dispatch!(self, b => b.requeue_running(now, true).await)
    }

    /// Marks the running job of the claim `fence` names `succeeded` with
    /// its image ids (in index order). The images must already be recorded
    /// with [`Db::insert_image`]; prefer [`Db::complete_job_with_images`],
    /// which does both atomically.
    pub async fn mark_succeeded(&self, fence: Fence, image_ids: &[ImageId]) -> Result<Job> {
        let now = self.now_ms();
        let ids = rows::image_ids_json(image_ids);
        match dispatch!(self, b => b.mark_succeeded(fence, now, &ids).await)? {
            Some(job) => Ok(job),
            None => Err(self.transition_error(fence.job, JobStatus::Succeeded).await),
        }
    }

    /// Puts the running job of the claim `fence` names back in the queue,
    /// keeping its `attempts` and its place (its `created_at`): what a worker
    /// does when it shuts down before the job could finish.
    pub async fn requeue(&self, fence: Fence) -> Result<Job> {
        match dispatch!(self, b => b.requeue(fence).await)? {
            Some(job) => Ok(job),
            None => Err(self.transition_error(fence.job, JobStatus::Queued).await),
        }
    }

    /// Marks the job `failed` with a stable code and a message, if it is
    /// still queued or running under `fence`.
    pub async fn mark_failed(&self, fence: Fence, code: &str, message: &str) -> Result<Job> {
        self.finish(fence, JobStatus::Failed, Some((code, message)))
            .await
    }

    /// Marks the job `rejected` by policy, with the code and the reason to
    /// show (a category, never the matched text), if it is still queued or
    /// running under `fence`.
    pub async fn mark_rejected(&self, fence: Fence, code: &str, message: &str) -> Result<Job> {
        self.finish(fence, JobStatus::Rejected, Some((code, message)))
            .await
    }

    /// Marks the job `cancelled`, if it is still queued or running under
    /// `fence`: what a worker calls when it stops a job whose
    /// `cancel_requested` flag it has seen.
    pub async fn mark_cancelled(&self, fence: Fence) -> Result<Job> {
        self.finish(fence, JobStatus::Cancelled, None).await
    }

    /// Cancels a job on its owner's request:
    /// a queued job becomes `cancelled` at once; a running job gets its
    /// `cancel_requested` flag set for the worker to act on; a finished job
    /// is returned unchanged.
    pub async fn cancel(&self, id: JobId) -> Result<CancelOutcome> {
        let now = self.now_ms();
        dispatch!(self, b => b.cancel(id, now).await)?.ok_or(StoreError::JobNotFound(id))
    }

    /// Whether the job's owner asked to cancel it: a cheap read for a worker
    /// to make between steps.
    pub async fn cancel_requested(&self, id: JobId) -> Result<bool> {
        dispatch!(self, b => b.cancel_requested(id).await)?.ok_or(StoreError::JobNotFound(id))
    }

    async fn finish(
        &self,
        fence: Fence,
        to: JobStatus,
        error: Option<(&str, &str)>,
    ) -> Result<Job> {
        let now = self.now_ms();
        match dispatch!(self, b => b.finish(fence, to, now, error).await)? {
            Some(job) => Ok(job),
            None => Err(self.transition_error(fence.job, to).await),
        }
    }
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}
