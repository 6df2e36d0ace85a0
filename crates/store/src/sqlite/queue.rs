//! Moving jobs through their lifecycle: claiming, leases, completion,
//! cancellation and crash recovery.
//!
//! Every transition is one conditional `UPDATE … WHERE status IN (…)
//! RETURNING *`, so a transition that races with another (a cancel and a
//! completion, two workers claiming) takes effect at most once; the loser
//! sees [`StoreError::InvalidTransition`] with the state that won.

use std::time::Duration;

use easel_core::{ImageId, JobId, JobStatus};

use super::{Db, rows};
use crate::error::{Result, StoreError};
use crate::records::job::{CancelOutcome, Job};
use crate::records::queue::QueuedJob;

// Oldest job of the most urgent tier; `jobs_claim_order` serves it directly.
const CLAIM: &str = "UPDATE jobs \
     SET status = 'running', started_at = ?1, attempts = attempts + 1, \
         lease_owner = ?2, lease_expires_at = ?3 \
     WHERE id = (SELECT id FROM jobs WHERE status = 'queued' \
                 ORDER BY priority, created_at, id LIMIT 1) \
     RETURNING *";

// The first `?1` queued jobs of every (tier, user), oldest first: what the
// scheduler needs to pick a fair batch, bounded however long one user's
// backlog is. (PostgreSQL: the same window query.)
const CANDIDATES: &str = "SELECT id, tier, user_id, params, created_at FROM ( \
       SELECT id, tier, priority, user_id, params, created_at, \
              ROW_NUMBER() OVER (PARTITION BY priority, COALESCE(user_id, '') \
                                 ORDER BY created_at, id) AS rank_in_user \
       FROM jobs WHERE status = 'queued') \
     WHERE rank_in_user <= ?1 \
     ORDER BY priority, created_at, id";

// Claims the chosen jobs that are still queued (another worker, or a
// cancel, may have got there first). `?4` is a JSON array of ids.
// (PostgreSQL: `WHERE id IN (SELECT id FROM jobs WHERE id = ANY($4) AND
// status = 'queued' FOR UPDATE SKIP LOCKED)`, so concurrent workers never
// wait on each other's rows.)
const CLAIM_CHOSEN: &str = "UPDATE jobs \
     SET status = 'running', started_at = ?1, attempts = attempts + 1, \
         lease_owner = ?2, lease_expires_at = ?3 \
     WHERE status = 'queued' AND id IN (SELECT value FROM json_each(?4)) \
     RETURNING *";

const RENEW: &str = "UPDATE jobs SET lease_expires_at = ?3 \
     WHERE id = ?1 AND status = 'running' AND lease_owner = ?2";

// Running → queued, or → cancelled when cancellation was requested (such a
// job is not worth running again). `?2` NULL requeues every running job;
// otherwise only those whose lease expired before `?2`.
const REQUEUE: &str = "UPDATE jobs \
     SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END, \
         finished_at = CASE WHEN cancel_requested THEN ?1 ELSE NULL END, \
         lease_owner = NULL, lease_expires_at = NULL \
     WHERE status = 'running' \
       AND (?2 IS NULL OR (lease_expires_at IS NOT NULL AND lease_expires_at < ?2)) \
     RETURNING id";

const SUCCEED: &str = "UPDATE jobs \
     SET status = 'succeeded', finished_at = ?2, image_ids = ?3, \
         lease_owner = NULL, lease_expires_at = NULL \
     WHERE id = ?1 AND status = 'running' \
     RETURNING *";

const REQUEUE_ONE: &str = "UPDATE jobs \
     SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL \
     WHERE id = ?1 AND status = 'running' \
     RETURNING *";

const FINISH_FROM_LIVE: &str = "UPDATE jobs \
     SET status = ?2, finished_at = ?3, error_code = ?4, error_message = ?5, \
         lease_owner = NULL, lease_expires_at = NULL \
     WHERE id = ?1 AND status IN ('queued', 'running') \
     RETURNING *";

impl Db {
    /// Atomically takes the next queued job (realtime before batch, oldest
    /// first) and marks it `running`: sets `started_at`, increments
    /// `attempts`, and gives `worker` a lease until now + `lease`.
    /// `None` when nothing is queued.
    pub async fn claim_next_queued(&self, worker: &str, lease: Duration) -> Result<Option<Job>> {
        let now = self.now_ms();
        let row = sqlx::query(CLAIM)
            .bind(now)
            .bind(worker)
            .bind(now.saturating_add(lease_ms(lease)))
            .fetch_optional(&self.writer)
            .await?;
        row.as_ref().map(rows::job).transpose()
    }

    /// The queued jobs a scheduler chooses from: for every tier and user,
    /// that user's `per_user` oldest queued jobs, ordered by tier, then age.
    /// Bounded by (users × tiers × `per_user`) however deep one user's
    /// backlog is, so fair share costs the same with 10 or 10,000 queued jobs.
    pub async fn queued_candidates(&self, per_user: u32) -> Result<Vec<QueuedJob>> {
        let rows = sqlx::query(CANDIDATES)
            .bind(i64::from(per_user.max(1)))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(rows::queued_job).collect()
    }

    /// Atomically claims those of `ids` that are still queued, as
    /// [`Db::claim_next_queued`] does for one: each becomes `running` with
    /// `worker`'s lease. Returns the claimed jobs in the order of `ids`;
    /// a job taken or cancelled meanwhile is simply missing.
    pub async fn claim_jobs(
        &self,
        ids: &[JobId],
        worker: &str,
        lease: Duration,
    ) -> Result<Vec<Job>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now_ms();
        let list: Vec<String> = ids.iter().map(JobId::to_string).collect();
        let rows = sqlx::query(CLAIM_CHOSEN)
            .bind(now)
            .bind(worker)
            .bind(now.saturating_add(lease_ms(lease)))
            .bind(rows::to_json(&list, "claim ids")?)
            .fetch_all(&self.writer)
            .await?;
        let mut claimed = rows.iter().map(rows::job).collect::<Result<Vec<Job>>>()?;
        claimed.sort_by_key(|job| ids.iter().position(|id| *id == job.id));
        Ok(claimed)
    }

    /// Extends `worker`'s lease on a running job to now + `lease`. Returns
    /// `false` when the worker no longer holds the job (it finished, was
    /// cancelled, or its lease expired and it was requeued): the worker must
    /// then stop and store nothing.
    pub async fn renew_lease(&self, id: JobId, worker: &str, lease: Duration) -> Result<bool> {
        let done = sqlx::query(RENEW)
            .bind(id.to_string())
            .bind(worker)
            .bind(self.now_ms().saturating_add(lease_ms(lease)))
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Crash recovery for a single-node deployment: every `running` job is
    /// put back to `queued` (or `cancelled`, if its cancellation had been
    /// requested), keeping its `attempts`. Call once at start, before any
    /// worker claims. Returns the jobs that were touched.
    ///
    /// With several worker processes use [`Db::requeue_expired_leases`]
    /// instead: the other workers' running jobs are alive.
    pub async fn requeue_running_on_startup(&self) -> Result<Vec<JobId>> {
        self.requeue_running(None).await
    }

    /// Puts back every `running` job whose lease expired before now (its
    /// worker died or hung), as [`Db::requeue_running_on_startup`] does.
    pub async fn requeue_expired_leases(&self) -> Result<Vec<JobId>> {
        self.requeue_running(Some(self.now_ms())).await
    }

    async fn requeue_running(&self, expired_before: Option<i64>) -> Result<Vec<JobId>> {
        let rows = sqlx::query(REQUEUE)
            .bind(self.now_ms())
            .bind(expired_before)
            .fetch_all(&self.writer)
            .await?;
        rows.iter()
            .map(|row| {
                let id: String = sqlx::Row::try_get(row, "id")?;
                id.parse().map_err(|e| StoreError::corrupt("jobs.id", e))
            })
            .collect()
    }

    /// Marks a running job `succeeded` with its image ids (in index order).
    /// The images must already be recorded with [`Db::insert_image`];
    /// prefer [`Db::complete_job_with_images`], which does both atomically.
    pub async fn mark_succeeded(&self, id: JobId, image_ids: &[ImageId]) -> Result<Job> {
        let row = sqlx::query(SUCCEED)
            .bind(id.to_string())
            .bind(self.now_ms())
            .bind(rows::image_ids_json(image_ids))
            .fetch_optional(&self.writer)
            .await?;
        match row {
            Some(row) => rows::job(&row),
            None => Err(self.transition_error(id, JobStatus::Succeeded).await),
        }
    }

    /// Puts one running job back in the queue, keeping its `attempts` and
    /// its place (its `created_at`): what a worker does when it shuts down
    /// before the job could finish.
    pub async fn requeue(&self, id: JobId) -> Result<Job> {
        let row = sqlx::query(REQUEUE_ONE)
            .bind(id.to_string())
            .fetch_optional(&self.writer)
            .await?;
        match row {
            Some(row) => rows::job(&row),
            None => Err(self.transition_error(id, JobStatus::Queued).await),
        }
    }

    /// Marks a queued or running job `failed` with a stable code and a message.
    pub async fn mark_failed(&self, id: JobId, code: &str, message: &str) -> Result<Job> {
        self.finish(id, JobStatus::Failed, Some((code, message)))
            .await
    }

    /// Marks a queued or running job `rejected` by policy, with the code and
    /// the reason to show (a category, never the matched text).
    pub async fn mark_rejected(&self, id: JobId, code: &str, message: &str) -> Result<Job> {
        self.finish(id, JobStatus::Rejected, Some((code, message)))
            .await
    }

    /// Marks a queued or running job `cancelled`: what a worker calls when it
    /// stops a job whose `cancel_requested` flag it has seen.
    pub async fn mark_cancelled(&self, id: JobId) -> Result<Job> {
        self.finish(id, JobStatus::Cancelled, None).await
    }

    /// Cancels a job on its owner's request:
    /// a queued job becomes `cancelled` at once; a running job gets its
    /// `cancel_requested` flag set for the worker to act on; a finished job
    /// is returned unchanged.
    pub async fn cancel(&self, id: JobId) -> Result<CancelOutcome> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query("SELECT * FROM jobs WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::JobNotFound(id))?;
        let job = rows::job(&row)?;
        let outcome = match job.status {
            JobStatus::Queued => {
                let row = sqlx::query(
                    "UPDATE jobs SET status = 'cancelled', finished_at = ?2 WHERE id = ?1 RETURNING *",
                )
                .bind(id.to_string())
                .bind(self.now_ms())
                .fetch_one(&mut *tx)
                .await?;
                CancelOutcome::Cancelled(rows::job(&row)?)
            }
            JobStatus::Running => {
                let row =
                    sqlx::query("UPDATE jobs SET cancel_requested = 1 WHERE id = ?1 RETURNING *")
                        .bind(id.to_string())
                        .fetch_one(&mut *tx)
                        .await?;
                CancelOutcome::Requested(rows::job(&row)?)
            }
            _ => CancelOutcome::AlreadyFinished(job),
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Whether the job's owner asked to cancel it: a cheap read for a worker
    /// to make between steps.
    pub async fn cancel_requested(&self, id: JobId) -> Result<bool> {
        let row = sqlx::query("SELECT cancel_requested FROM jobs WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?
            .ok_or(StoreError::JobNotFound(id))?;
        Ok(sqlx::Row::try_get::<i64, _>(&row, "cancel_requested")? != 0)
    }

    async fn finish(&self, id: JobId, to: JobStatus, error: Option<(&str, &str)>) -> Result<Job> {
        let row = sqlx::query(FINISH_FROM_LIVE)
            .bind(id.to_string())
            .bind(to.as_str())
            .bind(self.now_ms())
            .bind(error.map(|e| e.0))
            .bind(error.map(|e| e.1))
            .fetch_optional(&self.writer)
            .await?;
        match row {
            Some(row) => rows::job(&row),
            None => Err(self.transition_error(id, to).await),
        }
    }

    /// Why a conditional transition touched no row.
    pub(super) async fn transition_error(&self, id: JobId, to: JobStatus) -> StoreError {
        match self.get_job(id).await {
            Ok(job) => StoreError::InvalidTransition {
                job: id,
                from: job.status,
                to,
            },
            Err(e) => e,
        }
    }
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}
