//! Creating, reading and listing jobs, and the admission check of a bounded
//! queue.

use chrono::{DateTime, Utc};
use easel_core::{JobId, Tier};

use super::{Db, dispatch};
use crate::cursor::{self, Position};
use crate::error::{Result, StoreError};
use crate::records::job::{
    BoundedInsert, InsertOutcome, Job, JobFilter, JobPage, NewJob, QueueFull,
};
use crate::rows;

/// The largest page [`Db::list_jobs`] returns.
pub const MAX_JOB_PAGE: i64 = 100;

impl Db {
    /// Persists a new job as `queued`.
    ///
    /// When the job has an idempotency key and the same user (or, for
    /// anonymous jobs, anyone anonymous) already created a job with that key,
    /// nothing is written and that job is returned as
    /// [`InsertOutcome::Existing`], whatever its parameters and status. The
    /// database's unique index decides, so two processes inserting the same
    /// key at once still make one job.
    pub async fn insert_job(&self, new: NewJob) -> Result<InsertOutcome> {
        match self.insert(new, None).await? {
            BoundedInsert::Admitted(outcome) => Ok(outcome),
            BoundedInsert::QueueFull(_) => unreachable!("an unbounded insert is never refused"),
        }
    }

    /// [`Db::insert_job`] into a bounded queue: the job is written only if
    /// its tier has fewer than `limit` queued jobs; otherwise nothing is
    /// written and [`BoundedInsert::QueueFull`] says how full it is.
    ///
    /// The count and the insert are atomic against every other process on
    /// the same database, so two concurrent submissions cannot both see the
    /// last free slot: the queue never holds more than `limit` jobs through
    /// this call. On SQLite they are one `BEGIN IMMEDIATE` transaction,
    /// which holds the file's write lock from its first statement; on
    /// PostgreSQL one transaction that first takes a transaction-scoped
    /// advisory lock for the tier, so the bounded inserts of one tier queue
    /// behind each other across API replicas (claims and other tiers do not
    /// wait). An idempotent retry is looked up first and is answered even
    /// when the queue is full.
    pub async fn insert_job_bounded(&self, new: NewJob, limit: u64) -> Result<BoundedInsert> {
        self.insert(new, Some(limit)).await
    }

    async fn insert(&self, new: NewJob, limit: Option<u64>) -> Result<BoundedInsert> {
        let now = self.now_ms();
        dispatch!(self, b => b.insert_job(&new, limit, now).await)
    }

    /// Fails every queued job whose deadline is at or before `now`, with
    /// code `deadline_exceeded`, and returns their ids: such a job is never
    /// run. A worker calls this before it claims; running jobs are not
    /// touched (their worker cancels them at the deadline).
    pub async fn expire_overdue(&self, now: DateTime<Utc>) -> Result<Vec<JobId>> {
        dispatch!(self, b => b.expire_overdue(rows::ms(now)).await)
    }

    /// The job with this id.
    pub async fn get_job(&self, id: JobId) -> Result<Job> {
        dispatch!(self, b => b.get_job(id).await)?.ok_or(StoreError::JobNotFound(id))
    }

    /// One page of jobs matching `filter`, newest first.
    ///
    /// `cursor` is `None` for the first page, then the previous page's
    /// `next_cursor`. `limit` must be within 1..=100.
    pub async fn list_jobs(
        &self,
        filter: &JobFilter,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<JobPage> {
        if !(1..=MAX_JOB_PAGE).contains(&limit) {
            return Err(StoreError::InvalidLimit {
                got: limit,
                max: MAX_JOB_PAGE,
            });
        }
        let after = cursor.map(cursor::decode).transpose()?;
        // One extra row says whether another page follows.
        let mut jobs = dispatch!(self, b => b.list_jobs(filter, after.as_ref(), limit + 1).await)?;
        let next_cursor = if jobs.len() as i64 > limit {
            jobs.truncate(limit as usize);
            jobs.last().map(|last| {
                cursor::encode(&Position {
                    created_at: last.created_at.timestamp_millis(),
                    id: last.id.to_string(),
                })
            })
        } else {
            None
        };
        Ok(JobPage { jobs, next_cursor })
    }

    /// Where a queued job stands: 1 + the queued jobs before it in the
    /// queue's base order (tier priority, then age). Fair sharing between
    /// projects and users can still move it. `None` when the job is not
    /// queued (or held for approval, which no worker claims).
    pub async fn queue_position(&self, id: JobId) -> Result<Option<u64>> {
        dispatch!(self, b => b.queue_position(id).await)
    }

    /// How many jobs are queued, in one tier or in all (`None`).
    pub async fn queue_depth(&self, tier: Option<Tier>) -> Result<u64> {
        dispatch!(self, b => b.queue_depth(tier).await)
    }

    /// When the oldest job still queued in `tier` was created (`None`: the
    /// tier's queue is empty). A job put back in the queue keeps its
    /// creation time, so this is how long its client has waited.
    pub async fn oldest_queued(&self, tier: Tier) -> Result<Option<DateTime<Utc>>> {
        dispatch!(self, b => b.oldest_queued(tier).await)?
            .map(|ms| rows::time(ms, "jobs.created_at"))
            .transpose()
    }

    /// Records the prompt policy decision on a job (free-form JSON).
    pub async fn record_policy(&self, id: JobId, decision: &serde_json::Value) -> Result<()> {
        let decision = rows::to_json(decision, "policy decision")?;
        if dispatch!(self, b => b.record_policy(id, &decision).await)? {
            Ok(())
        } else {
            Err(StoreError::JobNotFound(id))
        }
    }
}

/// The admission decision of a bounded insert into `tier`, from the number
/// of queued jobs per priority (`(priority, count)` rows, as counted inside
/// the insert's transaction): `Some` when the tier is full.
pub(crate) fn queue_full(tier: Tier, counts: &[(i64, i64)], limit: u64) -> Option<QueueFull> {
    let mine = rows::priority(tier);
    let (mut queued, mut ahead) = (0u64, 0u64);
    for &(priority, n) in counts {
        let n = n.max(0) as u64;
        if priority == mine {
            queued += n;
        } else if priority < mine {
            ahead += n;
        }
    }
    (queued >= limit).then_some(QueueFull {
        tier,
        queued,
        ahead,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tier_is_full_at_its_limit_and_counts_only_more_urgent_tiers_ahead() {
        let counts = [(0, 3), (1, 2)];
        assert_eq!(queue_full(Tier::Batch, &counts, 3), None);
        assert_eq!(
            queue_full(Tier::Batch, &counts, 2),
            Some(QueueFull {
                tier: Tier::Batch,
                queued: 2,
                ahead: 3,
                limit: 2,
            })
        );
        assert_eq!(
            queue_full(Tier::Realtime, &counts, 3),
            Some(QueueFull {
                tier: Tier::Realtime,
                queued: 3,
                ahead: 0,
                limit: 3,
            })
        );
        assert!(queue_full(Tier::Realtime, &[], 0).is_some());
    }
}
