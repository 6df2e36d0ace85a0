//! Creating, reading and listing jobs on SQLite.

use easel_core::{JobId, JobStatus, Tier};
use sqlx::Row;

use super::SqliteDb;
use crate::cursor::Position;
use crate::db::queue_full;
use crate::error::Result;
use crate::records::job::{BoundedInsert, InsertOutcome, Job, JobFilter, NewJob};
use crate::rows;

const SELECT_BY_IDEMPOTENCY: &str = "SELECT * FROM jobs \
     WHERE COALESCE(user_id, '') = ?1 AND idempotency_key = ?2 AND project_id = ?3";

const INSERT: &str = "INSERT INTO jobs \
     (id, status, tier, priority, user_id, model, params, options, idempotency_key, \
      request_id, created_at, deadline_at, policy, trace_parent, project_id, \
      model_version, fallback_version, shadow_of, end_user) \
     VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) \
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
/// A queued job's place in the queue's base order, 1-based.
const POSITION: &str = "SELECT (SELECT COUNT(*) FROM jobs q \
         WHERE q.status = 'queued' AND q.hold_reason IS NULL \
           AND (q.priority, q.created_at, q.id) < (j.priority, j.created_at, j.id)) + 1 AS position \
     FROM jobs j WHERE j.id = ?1 AND j.status = 'queued' AND j.hold_reason IS NULL";

const LIST: &str = "SELECT * FROM jobs \
     WHERE (?1 IS NULL OR status = ?1) \
       AND (?2 IS NULL OR user_id = ?2) \
       AND (?6 IS NULL OR project_id = ?6) \
       AND (?3 IS NULL OR (created_at, id) < (?3, ?4)) \
     ORDER BY created_at DESC, id DESC \
     LIMIT ?5";

impl SqliteDb {
    /// Inserts `new` unless its idempotency key is taken (then returns that
    /// job) or, with a `limit`, its tier is full.
    ///
    /// One `BEGIN IMMEDIATE` transaction, which holds SQLite's write lock
    /// from its first statement (and this process sends every write through
    /// one connection), so the lookup, the count and the insert see and
    /// change the same state, even with several processes on one file.
    pub(crate) async fn insert_job(
        &self,
        new: &NewJob,
        limit: Option<u64>,
        now: i64,
    ) -> Result<BoundedInsert> {
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
                .bind(new.project.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = existing {
                return Ok(BoundedInsert::Admitted(InsertOutcome::Existing(rows::job(
                    &row,
                )?)));
            }
        }
        if let Some(limit) = limit {
            let counts = sqlx::query_as::<_, (i64, i64)>(QUEUED_BY_PRIORITY)
                .fetch_all(&mut *tx)
                .await?;
            if let Some(full) = queue_full(new.tier, &counts, limit) {
                return Ok(BoundedInsert::QueueFull(full));
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
            .bind(now)
            .bind(new.deadline_at.map(rows::ms))
            .bind(policy)
            .bind(&new.trace_parent)
            .bind(new.project.as_str())
            .bind(&new.params.version)
            .bind(&new.fallback_version)
            .bind(new.shadow_of.map(|j| j.to_string()))
            .bind(&new.end_user)
            .fetch_one(&mut *tx)
            .await?;
        let job = rows::job(&row)?;
        tx.commit().await?;
        Ok(BoundedInsert::Admitted(InsertOutcome::Created(job)))
    }

    /// Fails the queued jobs whose deadline is at or before `now`.
    pub(crate) async fn expire_overdue(&self, now: i64) -> Result<Vec<JobId>> {
        let found = sqlx::query(EXPIRE_OVERDUE)
            .bind(now)
            .fetch_all(&self.writer)
            .await?;
        found.iter().map(rows::job_id).collect()
    }

    /// The job with this id, if any.
    pub(crate) async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(rows::job).transpose()
    }

    /// Up to `fetch` jobs matching `filter` after `after`, newest first.
    pub(crate) async fn list_jobs(
        &self,
        filter: &JobFilter,
        after: Option<&Position>,
        fetch: i64,
    ) -> Result<Vec<Job>> {
        let found = sqlx::query(LIST)
            .bind(filter.status.map(|s| s.as_str()))
            .bind(&filter.user_id)
            .bind(after.map(|p| p.created_at))
            .bind(after.map(|p| p.id.as_str()))
            .bind(fetch)
            .bind(filter.project.as_ref().map(|p| p.as_str()))
            .fetch_all(&self.reader)
            .await?;
        found.iter().map(rows::job).collect()
    }

    /// A queued job's place in the queue, 1-based; `None` if not queued.
    pub(crate) async fn queue_position(&self, id: JobId) -> Result<Option<u64>> {
        let row = sqlx::query(POSITION)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>("position"))
            .transpose()?
            .map(|n| n.max(1) as u64))
    }

    /// Queued jobs, in one tier or in all.
    pub(crate) async fn queue_depth(&self, tier: Option<Tier>) -> Result<u64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM jobs WHERE status = ?1 AND (?2 IS NULL OR tier = ?2)",
        )
        .bind(JobStatus::Queued.as_str())
        .bind(tier.map(|t| t.as_str()))
        .fetch_one(&self.reader)
        .await?;
        Ok(row.try_get::<i64, _>("n")?.max(0) as u64)
    }

    /// The creation time (ms) of the oldest job queued in `tier`.
    pub(crate) async fn oldest_queued(&self, tier: Tier) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(created_at) AS oldest FROM jobs WHERE status = ?1 AND tier = ?2 AND hold_reason IS NULL",
        )
        .bind(JobStatus::Queued.as_str())
        .bind(tier.as_str())
        .fetch_one(&self.reader)
        .await?;
        Ok(row.try_get("oldest")?)
    }

    /// Sets a job's policy decision (JSON text); `false` if no such job.
    pub(crate) async fn record_policy(&self, id: JobId, decision: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE jobs SET policy = ?2 WHERE id = ?1")
            .bind(id.to_string())
            .bind(decision)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
