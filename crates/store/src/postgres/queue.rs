//! Job lifecycle transitions on PostgreSQL.
//!
//! Claims lock the rows they choose `FOR UPDATE SKIP LOCKED`: a row that
//! another claim holds is passed over rather than waited for, and a row
//! that another transaction changed after this statement began is
//! re-checked against its latest version (no longer `queued`: not taken).
//! So two workers, in one process or many, never take the same job. Every
//! other transition is a conditional `UPDATE … WHERE status …`, likewise
//! re-checked when it had to wait for a concurrent writer.

use easel_core::{JobId, JobStatus};

use super::PgDb;
use crate::error::Result;
use crate::records::job::{CancelOutcome, Fence, Job};
use crate::records::queue::QueuedJob;
use crate::rows;

// Lease times: `$1` is the caller's clock (tests) or NULL, and then the
// server's own, `easel_now_ms()` (the migration `queue_fencing` defines it),
// so every worker machine leases by one clock.

// Oldest unlocked job of the most urgent tier; `jobs_claim_order` serves it.
const CLAIM: &str = "UPDATE jobs \
     SET status = 'running', started_at = COALESCE($1, easel_now_ms()), \
         attempts = attempts + 1, \
         lease_owner = $2, lease_expires_at = COALESCE($1, easel_now_ms()) + $3 \
     WHERE id = (SELECT id FROM jobs WHERE status = 'queued' AND hold_reason IS NULL \
                 ORDER BY priority, created_at, id LIMIT 1 \
                 FOR UPDATE SKIP LOCKED) \
     RETURNING *";

// The first `$1` queued jobs of every (tier, project, user), oldest first: the same
// window query as on SQLite.
const CANDIDATES: &str = "SELECT id, tier, user_id, project_id, params, created_at FROM ( \
       SELECT id, tier, priority, user_id, project_id, params, created_at, \
              ROW_NUMBER() OVER (PARTITION BY priority, project_id, COALESCE(user_id, '') \
                                 ORDER BY created_at, id) AS rank_in_user \
       FROM jobs WHERE status = 'queued' AND hold_reason IS NULL) AS queued \
     WHERE rank_in_user <= $1 \
     ORDER BY priority, created_at, id";

// Claims the chosen jobs that are still queued and not locked by another
// claim. `$4` is a text array of ids. The clock is read once, in a
// materialized CTE, so the jobs of one claim share their start and lease
// times (`easel_now_ms()` reads `clock_timestamp()`, which moves between
// rows of one statement).
const CLAIM_CHOSEN: &str = "WITH claim AS MATERIALIZED (SELECT COALESCE($1, easel_now_ms()) AS now) \
     UPDATE jobs \
     SET status = 'running', started_at = (SELECT now FROM claim), \
         attempts = attempts + 1, \
         lease_owner = $2, lease_expires_at = (SELECT now FROM claim) + $3 \
     WHERE id IN (SELECT id FROM jobs WHERE id = ANY($4) AND status = 'queued' AND hold_reason IS NULL \
                  FOR UPDATE SKIP LOCKED) \
     RETURNING *";

const RENEW: &str = "UPDATE jobs SET lease_expires_at = COALESCE($3, easel_now_ms()) + $4 \
     WHERE id = $1 AND status = 'running' AND attempts = $2";

// Records the keys a claim is about to write, renewing its lease.
const STAGE: &str = "UPDATE jobs SET staged_keys = $4::jsonb, \
         lease_expires_at = COALESCE($3, easel_now_ms()) + $5 \
     WHERE id = $1 AND status = 'running' AND attempts = $2";

// Running → queued, or → cancelled when cancellation was requested. `$2`
// false requeues every running job; true only those whose lease expired
// before now.
const REQUEUE: &str = "UPDATE jobs \
     SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END, \
         finished_at = CASE WHEN cancel_requested THEN COALESCE($1, easel_now_ms()) END, \
         lease_owner = NULL, lease_expires_at = NULL \
     WHERE status = 'running' \
       AND (NOT $2 OR (lease_expires_at IS NOT NULL \
                       AND lease_expires_at < COALESCE($1, easel_now_ms()))) \
     RETURNING id";

pub(super) const SUCCEED: &str = "UPDATE jobs \
     SET status = 'succeeded', finished_at = $2, image_ids = $3::jsonb, staged_keys = '[]', \
         lease_owner = NULL, lease_expires_at = NULL \
     WHERE id = $1 AND status = 'running' AND attempts = $4 \
     RETURNING *";

const REQUEUE_ONE: &str = "UPDATE jobs \
     SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL \
     WHERE id = $1 AND status = 'running' AND attempts = $2 \
     RETURNING *";

const FINISH_FROM_LIVE: &str = "UPDATE jobs \
     SET status = $2, finished_at = $3, error_code = $4, error_message = $5, \
         lease_owner = NULL, lease_expires_at = NULL \
     WHERE id = $1 AND status IN ('queued', 'running') AND attempts = $6 \
     RETURNING *";

impl PgDb {
    /// Claims the next queued job for `worker` for `lease_ms`.
    pub(crate) async fn claim_next_queued(
        &self,
        worker: &str,
        now: Option<i64>,
        lease_ms: i64,
    ) -> Result<Option<Job>> {
        let row = sqlx::query(CLAIM)
            .bind(now)
            .bind(worker)
            .bind(lease_ms)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::job).transpose()
    }

    /// Each (tier, user)'s `per_user` oldest queued jobs.
    pub(crate) async fn queued_candidates(&self, per_user: i64) -> Result<Vec<QueuedJob>> {
        let found = sqlx::query(CANDIDATES)
            .bind(per_user)
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(rows::queued_job).collect()
    }

    /// Claims those of `ids` still queued, in no particular order.
    pub(crate) async fn claim_jobs(
        &self,
        ids: &[JobId],
        worker: &str,
        now: Option<i64>,
        lease_ms: i64,
    ) -> Result<Vec<Job>> {
        let list: Vec<String> = ids.iter().map(JobId::to_string).collect();
        let found = sqlx::query(CLAIM_CHOSEN)
            .bind(now)
            .bind(worker)
            .bind(lease_ms)
            .bind(list)
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(rows::job).collect()
    }

    /// Moves the lease of the claim `fence` names to now + `lease_ms`;
    /// `false` if that claim is no longer the job's.
    pub(crate) async fn renew_lease(
        &self,
        fence: Fence,
        now: Option<i64>,
        lease_ms: i64,
    ) -> Result<bool> {
        let done = sqlx::query(RENEW)
            .bind(fence.job.to_string())
            .bind(i64::from(fence.attempt))
            .bind(now)
            .bind(lease_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records `keys` (JSON) as the claim's staged objects and renews its
    /// lease; `false` if the claim is no longer the job's.
    pub(crate) async fn stage_objects(
        &self,
        fence: Fence,
        keys: &str,
        now: Option<i64>,
        lease_ms: i64,
    ) -> Result<bool> {
        let done = sqlx::query(STAGE)
            .bind(fence.job.to_string())
            .bind(i64::from(fence.attempt))
            .bind(now)
            .bind(keys)
            .bind(lease_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts back running jobs: all of them, or (`expired_only`) those whose
    /// lease expired before now.
    pub(crate) async fn requeue_running(
        &self,
        now: Option<i64>,
        expired_only: bool,
    ) -> Result<Vec<JobId>> {
        let found = sqlx::query(REQUEUE)
            .bind(now)
            .bind(expired_only)
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(rows::job_id).collect()
    }

    /// Running → succeeded with `image_ids` (JSON); `None` if not running
    /// under `fence`.
    pub(crate) async fn mark_succeeded(
        &self,
        fence: Fence,
        now: i64,
        image_ids: &str,
    ) -> Result<Option<Job>> {
        let row = sqlx::query(SUCCEED)
            .bind(fence.job.to_string())
            .bind(now)
            .bind(image_ids)
            .bind(i64::from(fence.attempt))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::job).transpose()
    }

    /// Running → queued; `None` if not running under `fence`.
    pub(crate) async fn requeue(&self, fence: Fence) -> Result<Option<Job>> {
        let row = sqlx::query(REQUEUE_ONE)
            .bind(fence.job.to_string())
            .bind(i64::from(fence.attempt))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::job).transpose()
    }

    /// Queued or running → `to`; `None` if the job is neither, or no
    /// longer under `fence`.
    pub(crate) async fn finish(
        &self,
        fence: Fence,
        to: JobStatus,
        now: i64,
        error: Option<(&str, &str)>,
    ) -> Result<Option<Job>> {
        let row = sqlx::query(FINISH_FROM_LIVE)
            .bind(fence.job.to_string())
            .bind(to.as_str())
            .bind(now)
            .bind(error.map(|e| e.0))
            .bind(error.map(|e| e.1))
            .bind(i64::from(fence.attempt))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::job).transpose()
    }

    /// Cancels by the job's current state, read `FOR UPDATE` so that no
    /// claim or completion slips in between; `None` if there is no such job.
    pub(crate) async fn cancel(&self, id: JobId, now: i64) -> Result<Option<CancelOutcome>> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query("SELECT * FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let job = rows::job(&row)?;
        let outcome = match job.status {
            JobStatus::Queued => {
                let row = sqlx::query(
                    "UPDATE jobs SET status = 'cancelled', finished_at = $2 WHERE id = $1 RETURNING *",
                )
                .bind(id.to_string())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                CancelOutcome::Cancelled(rows::job(&row)?)
            }
            JobStatus::Running => {
                let row = sqlx::query(
                    "UPDATE jobs SET cancel_requested = TRUE WHERE id = $1 RETURNING *",
                )
                .bind(id.to_string())
                .fetch_one(&mut *tx)
                .await?;
                CancelOutcome::Requested(rows::job(&row)?)
            }
            _ => CancelOutcome::AlreadyFinished(job),
        };
        tx.commit().await?;
        Ok(Some(outcome))
    }

    /// The job's `cancel_requested` flag; `None` if there is no such job.
    pub(crate) async fn cancel_requested(&self, id: JobId) -> Result<Option<bool>> {
        Ok(
            sqlx::query_scalar("SELECT cancel_requested FROM jobs WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
