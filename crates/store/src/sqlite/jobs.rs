//! Creating, reading and listing jobs.

use chrono::{DateTime, Utc};
use easel_core::{JobId, JobStatus, Tier};
use sqlx::Row;

use super::{Db, rows};
use crate::cursor::{self, Position};
use crate::error::{Result, StoreError};
use crate::records::job::{
    BoundedInsert, InsertOutcome, Job, JobFilter, JobPage, NewJob, QueueFull,
};

/// The largest page [`Db::list_jobs`] returns.
pub const MAX_PAGE: i64 = 100;

const SELECT_BY_IDEMPOTENCY: &str = "SELECT * FROM jobs \
     WHERE COALESCE(user_id, '') = ?1 AND idempotency_key = ?2";

const INSERT: &str = "INSERT INTO jobs \
     (id, status, tier, priority, user_id, model, params, options, idempotency_key, \
      request_id, created_at, deadline_at, policy, trace_parent) \
     VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
     RETURNING *";

// Queued jobs per priority (0 = realtime, 1 = batch), from the claim index.
const QUEUED_BY_PRIORITY: &str = "SELECT priority, COUNT(*) AS n FROM jobs \
     WHERE status = 'queued' GROUP BY priority";

const EXPIRE_OVERDUE: &str = "UPDATE jobs \
     SET status = 'failed', finished_at = ?1, error_code = 'deadline_exceeded', \
         error_message = 'the job was still queued at its deadline (X-Easel-Timeout) and was not run' \
     WHERE status = 'queued' AND deadline_at IS NOT NULL AND deadline_at <= ?1 \
     RETURNING id";

// One static statement for every filter combination: a NULL parameter turns
// its condition off. The row-value comparison walks `(created_at, id)`
// strictly downwards from the cursor, so pages never overlap or skip a row,
// even when several jobs share a millisecond.
const LIST: &str = "SELECT * FROM jobs \
     WHERE (?1 IS NULL OR status = ?1) \
       AND (?2 IS NULL OR user_id = ?2) \
       AND (?3 IS NULL OR (created_at, id) < (?3, ?4)) \
     ORDER BY created_at DESC, id DESC \
     LIMIT ?5";

impl Db {
    /// Persists a new job as `queued`.
    ///
    /// When the job has an idempotency key and the same user (or, for
    /// anonymous jobs, anyone anonymous) already created a job with that key,
    /// nothing is written and that job is returned as
    /// [`InsertOutcome::Existing`], whatever its parameters and status.
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
    /// The count and the insert happen in one `BEGIN IMMEDIATE`
    /// transaction, which holds SQLite's write lock from its first statement
    /// (and this process sends every write through one connection), so two
    /// concurrent submissions cannot both see the last free slot: the queue
    /// never holds more than `limit` jobs through this call, even with
    /// several API processes on one database file. (On PostgreSQL the same
    /// guarantee needs a per-tier advisory lock or a counter row updated in
    /// the transaction.) An idempotent retry is looked up first and is
    /// answered even when the queue is full.
    pub async fn insert_job_bounded(&self, new: NewJob, limit: u64) -> Result<BoundedInsert> {
        self.insert(new, Some(limit)).await
    }

    async fn insert(&self, new: NewJob, limit: Option<u64>) -> Result<BoundedInsert> {
        let params = rows::to_json(&new.params, "job params")?;
        let options = rows::to_json(&new.options, "job options")?;
        let policy = match &new.policy {
            Some(p) => Some(rows::to_json(p, "policy decision")?),
            None => None,
        };
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(key) = &new.idempotency_key {
            let existing = sqlx::query(SELECT_BY_IDEMPOTENCY)
                .bind(new.user_id.as_deref().unwrap_or(""))
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = existing {
                return Ok(BoundedInsert::Admitted(InsertOutcome::Existing(rows::job(
                    &row,
                )?)));
            }
        }
        if let Some(limit) = limit {
            let counts = sqlx::query(QUEUED_BY_PRIORITY).fetch_all(&mut *tx).await?;
            let mine = rows::priority(new.tier);
            let (mut queued, mut ahead) = (0u64, 0u64);
            for row in &counts {
                let priority: i64 = row.try_get("priority")?;
                let n = row.try_get::<i64, _>("n")?.max(0) as u64;
                if priority == mine {
                    queued += n;
                } else if priority < mine {
                    ahead += n;
                }
            }
            if queued >= limit {
                return Ok(BoundedInsert::QueueFull(QueueFull {
                    tier: new.tier,
                    queued,
                    ahead,
                    limit,
                }));
            }
        }
        let row = sqlx::query(INSERT)
            .bind(new.id.to_string())
            .bind(new.tier.as_str())
            .bind(rows::priority(new.tier))
            .bind(&new.user_id)
            .bind(&new.params.model)
            .bind(params)
            .bind(options)
            .bind(&new.idempotency_key)
            .bind(&new.request_id)
            .bind(self.now_ms())
            .bind(new.deadline_at.map(rows::ms))
            .bind(policy)
            .bind(&new.trace_parent)
            .fetch_one(&mut *tx)
            .await?;
        let job = rows::job(&row)?;
        tx.commit().await?;
        Ok(BoundedInsert::Admitted(InsertOutcome::Created(job)))
    }

    /// Fails every queued job whose deadline is at or before `now`, with
    /// code `deadline_exceeded`, and returns their ids: such a job is never
    /// run. A worker calls this before it claims; running jobs are not
    /// touched (their worker cancels them at the deadline).
    pub async fn expire_overdue(&self, now: DateTime<Utc>) -> Result<Vec<JobId>> {
        let rows = sqlx::query(EXPIRE_OVERDUE)
            .bind(rows::ms(now))
            .fetch_all(&self.writer)
            .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                id.parse().map_err(|e| StoreError::corrupt("jobs.id", e))
            })
            .collect()
    }

    /// The job with this id.
    pub async fn get_job(&self, id: JobId) -> Result<Job> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?
            .ok_or(StoreError::JobNotFound(id))?;
        rows::job(&row)
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
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(StoreError::InvalidLimit {
                got: limit,
                max: MAX_PAGE,
            });
        }
        let after = cursor.map(cursor::decode).transpose()?;
        let found = sqlx::query(LIST)
            .bind(filter.status.map(|s| s.as_str()))
            .bind(&filter.user_id)
            .bind(after.as_ref().map(|p| p.created_at))
            .bind(after.as_ref().map(|p| p.id.clone()))
            // One extra row says whether another page follows.
            .bind(limit + 1)
            .fetch_all(&self.reader)
            .await?;
        let mut jobs = found.iter().map(rows::job).collect::<Result<Vec<_>>>()?;
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

    /// How many jobs are queued, in one tier or in all (`None`).
    pub async fn queue_depth(&self, tier: Option<Tier>) -> Result<u64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM jobs WHERE status = ?1 AND (?2 IS NULL OR tier = ?2)",
        )
        .bind(JobStatus::Queued.as_str())
        .bind(tier.map(|t| t.as_str()))
        .fetch_one(&self.reader)
        .await?;
        Ok(row.try_get::<i64, _>("n")? as u64)
    }

    /// When the oldest job still queued in `tier` was created (`None`: the
    /// tier's queue is empty). A job put back in the queue keeps its
    /// creation time, so this is how long its client has waited.
    pub async fn oldest_queued(&self, tier: Tier) -> Result<Option<DateTime<Utc>>> {
        let row = sqlx::query(
            "SELECT MIN(created_at) AS oldest FROM jobs WHERE status = ?1 AND tier = ?2",
        )
        .bind(JobStatus::Queued.as_str())
        .bind(tier.as_str())
        .fetch_one(&self.reader)
        .await?;
        row.try_get::<Option<i64>, _>("oldest")?
            .map(|ms| rows::time(ms, "jobs.created_at"))
            .transpose()
    }

    /// Records the prompt policy decision on a job (free-form JSON).
    pub async fn record_policy(&self, id: JobId, decision: &serde_json::Value) -> Result<()> {
        let done = sqlx::query("UPDATE jobs SET policy = ?2 WHERE id = ?1")
            .bind(id.to_string())
            .bind(rows::to_json(decision, "policy decision")?)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::JobNotFound(id));
        }
        Ok(())
    }
}
