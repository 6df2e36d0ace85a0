//! Creating, reading and listing jobs on PostgreSQL.

use easel_core::{JobId, JobStatus, Tier};
use sqlx::{PgConnection, Row};

use super::PgDb;
use crate::cursor::Position;
use crate::db::queue_full;
use crate::error::{Result, StoreError};
use crate::records::job::{BoundedInsert, InsertOutcome, Job, JobFilter, NewJob};
use crate::rows;

const SELECT_BY_IDEMPOTENCY: &str = "SELECT * FROM jobs \
     WHERE COALESCE(user_id, '') = $1 AND idempotency_key = $2 AND project_id = $3";

// `ON CONFLICT` names the idempotency index: when another transaction
// inserted the same (user, key) first, this waits for it to commit and then
// writes nothing (and returns no row) instead of failing.
const INSERT: &str = "INSERT INTO jobs \
     (id, status, tier, priority, user_id, model, params, options, idempotency_key, \
      request_id, created_at, deadline_at, policy, trace_parent, project_id, \
      model_version, fallback_version, shadow_of, end_user) \
     VALUES ($1, 'queued', $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $10, $11, $12::jsonb, $13, $14, $15, $16, $17, $18) \
     ON CONFLICT (project_id, (COALESCE(user_id, '')), idempotency_key) \
         WHERE idempotency_key IS NOT NULL DO NOTHING \
     RETURNING *";

// Serialises the bounded inserts of one tier (`$1` is its priority) until
// the transaction ends, in every process on this database. The first key
// is a constant ("ease" in ASCII) that keeps Easel's advisory locks apart
// from any other application's on the same server.
const LOCK_TIER: &str = "SELECT pg_advisory_xact_lock(1700885349, $1::int4)";

// Queued jobs per priority (0 = realtime, 1 = batch), from the claim index.
const QUEUED_BY_PRIORITY: &str = "SELECT priority, COUNT(*) AS n FROM jobs \
     WHERE status = 'queued' GROUP BY priority";

const EXPIRE_OVERDUE: &str = "UPDATE jobs \
     SET status = 'failed', finished_at = $1, error_code = 'deadline_exceeded', \
         error_message = 'the job was still queued at its deadline (X-Easel-Timeout) and was not run' \
     WHERE status = 'queued' AND deadline_at IS NOT NULL AND deadline_at <= $1 \
     RETURNING id";

// As on SQLite: a NULL parameter turns its condition off, and the row-value
// comparison walks `(created_at, id)` strictly downwards from the cursor.
// `id` is collated "C", so the order is the same bytewise order.
/// A queued job's place in the queue's base order, 1-based.
const POSITION: &str = "SELECT (SELECT COUNT(*) FROM jobs q \
         WHERE q.status = 'queued' AND q.hold_reason IS NULL \
           AND (q.priority, q.created_at, q.id) < (j.priority, j.created_at, j.id)) + 1 AS position \
     FROM jobs j WHERE j.id = $1 AND j.status = 'queued' AND j.hold_reason IS NULL";

const LIST: &str = "SELECT * FROM jobs \
     WHERE ($1::text IS NULL OR status = $1) \
       AND ($2::text IS NULL OR user_id = $2) \
       AND ($6::text IS NULL OR project_id = $6) \
       AND ($3::bigint IS NULL OR (created_at, id) < ($3, $4)) \
     ORDER BY created_at DESC, id DESC \
     LIMIT $5";

impl PgDb {
    /// Inserts `new` unless its idempotency key is taken (then returns that
    /// job) or, with a `limit`, its tier is full.
    ///
    /// With a limit, the transaction first takes the tier's advisory lock:
    /// a bounded insert that got here before this one has committed (or
    /// rolled back) by the time the lock is granted, and each statement of
    /// a READ COMMITTED transaction sees what was committed before it
    /// started, so the count below includes every job admitted before.
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
        let mut tx = self.pool.begin().await?;
        if limit.is_some() {
            sqlx::query(LOCK_TIER)
                .bind(rows::priority(new.tier) as i32)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(existing) = by_idempotency_key(&mut tx, new).await? {
            return Ok(BoundedInsert::Admitted(InsertOutcome::Existing(existing)));
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
            .fetch_optional(&mut *tx)
            .await?;
        let outcome = match row {
            Some(row) => InsertOutcome::Created(rows::job(&row)?),
            // Another transaction committed the same (user, key) after the
            // lookup above; this statement sees it.
            None => InsertOutcome::Existing(by_idempotency_key(&mut tx, new).await?.ok_or_else(
                || {
                    StoreError::corrupt(
                        "jobs.idempotency_key",
                        "the insert conflicted, but no job holds the key",
                    )
                },
            )?),
        };
        tx.commit().await?;
        Ok(BoundedInsert::Admitted(outcome))
    }

    /// Fails the queued jobs whose deadline is at or before `now`.
    pub(crate) async fn expire_overdue(&self, now: i64) -> Result<Vec<JobId>> {
        let found = sqlx::query(EXPIRE_OVERDUE)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(rows::job_id).collect()
    }

    /// The job with this id, if any.
    pub(crate) async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
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
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(rows::job).collect()
    }

    /// A queued job's place in the queue, 1-based; `None` if not queued.
    pub(crate) async fn queue_position(&self, id: JobId) -> Result<Option<u64>> {
        let row = sqlx::query(POSITION)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>("position"))
            .transpose()?
            .map(|n| n.max(1) as u64))
    }

    /// Queued jobs, in one tier or in all.
    pub(crate) async fn queue_depth(&self, tier: Option<Tier>) -> Result<u64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM jobs \
             WHERE status = $1 AND ($2::text IS NULL OR tier = $2)",
        )
        .bind(JobStatus::Queued.as_str())
        .bind(tier.map(|t| t.as_str()))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>("n")?.max(0) as u64)
    }

    /// The creation time (ms) of the oldest job queued in `tier`.
    pub(crate) async fn oldest_queued(&self, tier: Tier) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(created_at) AS oldest FROM jobs \
             WHERE status = $1 AND tier = $2 AND hold_reason IS NULL",
        )
        .bind(JobStatus::Queued.as_str())
        .bind(tier.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("oldest")?)
    }

    /// Sets a job's policy decision (JSON text); `false` if no such job.
    pub(crate) async fn record_policy(&self, id: JobId, decision: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE jobs SET policy = $2::jsonb WHERE id = $1")
            .bind(id.to_string())
            .bind(decision)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

/// The job that already holds `new`'s (user, idempotency key), if any.
async fn by_idempotency_key(conn: &mut PgConnection, new: &NewJob) -> Result<Option<Job>> {
    let Some(key) = &new.idempotency_key else {
        return Ok(None);
    };
    let row = sqlx::query(SELECT_BY_IDEMPOTENCY)
        .bind(new.user_id.as_deref().unwrap_or(""))
        .bind(key)
        .bind(new.project.as_str())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(rows::job).transpose()
}
