//! Files, batches and their items. One SQL text serves both backends (see
//! `rollouts.rs`). A batch's items are written in one transaction with the
//! batch, in multi-row inserts, so a 10,000-line batch is created in one
//! round trip per few hundred lines. Every transition is conditional on
//! the row's current status, so several API processes may drive the same
//! batch without making an item twice.

use std::sync::LazyLock;

use easel_core::{JobId, ProjectId};

use super::{Db, on_pool};
use crate::error::{Result, StoreError};
use crate::records::batch::{
    BatchItem, BatchRecord, BatchSpend, BatchStatus, FileRecord, ItemOutcome, ItemStatus, NewBatch,
    NewFile, SettledItem,
};
use crate::rows::{self, Columns};

/// The most rows one page of files, batches or items returns.
pub const MAX_BATCH_PAGE: u32 = 10_000;

const INSERT_FILE: &str = "INSERT INTO files \
     (id, project_id, purpose, filename, bytes, object_key, batch_id, created_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

const INSERT_BATCH: &str = "INSERT INTO batches \
     (id, project_id, user_id, endpoint, input_file_id, completion_window, metadata, status, \
      total, created_at, in_progress_at, expires_at, dry_run_percent, cost_cap, estimate, qa, \
      webhook_url, webhook_secret) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, 'in_progress', $8, $9, $9, $10, $11, $12, $13, $14, \
             $15, $16)";

/// Items per multi-row insert (four parameters each).
const ITEM_CHUNK: usize = 400;

/// `INSERT INTO batch_items … VALUES (…), (…), …` for `rows` rows: `$1`
/// is the batch, then each row's line, custom id, request and sample flag.
fn insert_items_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let b = 1 + 4 * r;
            format!(
                "($1, ${}, ${}, ${}, ${}, 'pending')",
                b + 1,
                b + 2,
                b + 3,
                b + 4
            )
        })
        .collect();
    format!(
        "INSERT INTO batch_items (batch_id, line, custom_id, request, sample, status) VALUES {}",
        values.join(", ")
    )
}

static INSERT_ITEMS_FULL: LazyLock<String> = LazyLock::new(|| insert_items_sql(ITEM_CHUNK));

const FILE: &str = "SELECT * FROM files WHERE id = $1";
const FILES: &str = "SELECT * FROM files \
     WHERE ($1 IS NULL OR project_id = $1) AND ($2 IS NULL OR purpose = $2) \
       AND ($3 IS NULL OR id < $3) \
     ORDER BY id DESC LIMIT $4";
const DELETE_FILE: &str = "DELETE FROM files WHERE id = $1";

const BATCH: &str = "SELECT * FROM batches WHERE id = $1";
const BATCHES: &str = "SELECT * FROM batches \
     WHERE ($1 IS NULL OR project_id = $1) AND ($2 IS NULL OR id < $2) \
     ORDER BY id DESC LIMIT $3";
const OPEN_BATCHES: &str = "SELECT * FROM batches \
     WHERE status IN ('in_progress', 'finalizing', 'cancelling', 'awaiting_approval', \
                      'paused_budget', 'paused') \
     ORDER BY created_at, id";

const ITEMS: &str = "SELECT * FROM batch_items \
     WHERE batch_id = $1 AND ($2 IS NULL OR status = $2) AND line > $3 \
     ORDER BY line LIMIT $4";
const PENDING: &str = "SELECT * FROM batch_items \
     WHERE batch_id = $1 AND status = 'pending' AND ($2 = 0 OR sample = 1) \
     ORDER BY line LIMIT $3";
const OPEN_SAMPLE: &str = "SELECT COUNT(*) FROM batch_items \
     WHERE batch_id = $1 AND sample = 1 AND status IN ('pending', 'submitted')";
const SPEND_ITEMS: &str = "SELECT COUNT(*) AS items, \
         SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) AS succeeded, \
         SUM(CASE WHEN status IN ('failed', 'cancelled', 'expired') THEN 1 ELSE 0 END) AS failed, \
         SUM(CASE WHEN error_code IN ('prompt_rejected', 'image_rejected') THEN 1 ELSE 0 END) \
             AS refused \
     FROM batch_items WHERE batch_id = $1 AND ($2 = 0 OR sample = 1)";
const SPEND_IMAGES: &str = "SELECT COUNT(*) AS images, COALESCE(SUM(im.cost), 0.0) AS cost, \
         AVG(im.quality_score) AS quality, \
         SUM(CASE WHEN CAST(im.flags AS TEXT) <> '[]' THEN 1 ELSE 0 END) AS flagged \
     FROM batch_items i JOIN images im ON im.job_id = i.job_id \
     WHERE i.batch_id = $1 AND ($2 = 0 OR i.sample = 1)";
const RECENT_IMAGES: &str = "SELECT COUNT(*) AS n, AVG(device_seconds) AS seconds, \
         AVG(cost) AS cost \
     FROM (SELECT device_seconds, cost FROM images WHERE model = $1 \
           ORDER BY created_at DESC LIMIT $2) recent";
const COUNT_ITEMS: &str = "SELECT COUNT(*) FROM batch_items WHERE batch_id = $1 AND status = $2";
const MARK_SUBMITTED: &str = "UPDATE batch_items \
     SET status = 'submitted', job_id = $3, attempts = attempts + 1 \
     WHERE batch_id = $1 AND line = $2 AND status = 'pending'";
const FINISH_ITEM: &str = "UPDATE batch_items \
     SET status = $3, error_code = $4, error_message = $5, finished_at = $6 \
     WHERE batch_id = $1 AND line = $2 AND status IN ('pending', 'submitted')";
const CLOSE_PENDING: &str = "UPDATE batch_items \
     SET status = $2, error_code = $3, error_message = $4, finished_at = $5 \
     WHERE batch_id = $1 AND status = 'pending'";
/// Submitted items whose job has ended, with how it ended.
const SETTLED: &str = "SELECT i.line AS line, j.status AS job_status, \
         j.error_code AS error_code, j.error_message AS error_message, \
         i.job_id AS job_id, i.attempts AS attempts, i.retries AS retries \
     FROM batch_items i JOIN jobs j ON j.id = i.job_id \
     WHERE i.batch_id = $1 AND i.status = 'submitted' \
       AND j.status IN ('succeeded', 'failed', 'cancelled', 'rejected') \
     ORDER BY i.line";
const COUNTS: &str = "SELECT \
         SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) AS completed, \
         SUM(CASE WHEN status IN ('failed', 'cancelled', 'expired') THEN 1 ELSE 0 END) AS failed \
     FROM batch_items WHERE batch_id = $1";
const SET_COUNTS: &str = "UPDATE batches SET completed = $2, failed = $3 WHERE id = $1";

const CANCEL: &str = "UPDATE batches SET status = 'cancelling', cancelling_at = $2 \
     WHERE id = $1 AND status IN ('validating', 'in_progress', 'awaiting_approval', \
                                  'paused_budget', 'paused') RETURNING *";
const AWAIT_APPROVAL: &str = "UPDATE batches SET status = 'awaiting_approval' \
     WHERE id = $1 AND status = 'in_progress' AND approved_at IS NULL RETURNING *";
const APPROVE: &str = "UPDATE batches SET status = 'in_progress', approved_at = $2 \
     WHERE id = $1 AND dry_run_percent IS NOT NULL AND approved_at IS NULL \
       AND status IN ('in_progress', 'awaiting_approval') RETURNING *";
const PAUSE: &str = "UPDATE batches SET status = 'paused_budget' \
     WHERE id = $1 AND status = 'in_progress' RETURNING *";
const SET_CAP: &str = "UPDATE batches SET cost_cap = $2, \
         status = CASE WHEN status = 'paused_budget' THEN 'in_progress' ELSE status END \
     WHERE id = $1 AND status IN ('in_progress', 'awaiting_approval', 'paused_budget', 'paused') \
     RETURNING *";
const PAUSE_BY_OWNER: &str = "UPDATE batches SET status = 'paused' \
     WHERE id = $1 AND status IN ('in_progress', 'awaiting_approval', 'paused_budget') \
     RETURNING *";
const RESUME: &str = "UPDATE batches SET status = 'in_progress' \
     WHERE id = $1 AND status = 'paused' RETURNING *";
const FINALIZING: &str = "UPDATE batches SET status = 'finalizing', finalizing_at = $2 \
     WHERE id = $1 AND status = 'in_progress' RETURNING *";
const FINISH: &str = "UPDATE batches SET status = $2, output_file_id = $3, error_file_id = $4, \
         completed_at = CASE WHEN $2 = 'completed' THEN $5 ELSE completed_at END, \
         cancelled_at = CASE WHEN $2 = 'cancelled' THEN $5 ELSE cancelled_at END, \
         expired_at = CASE WHEN $2 = 'expired' THEN $5 ELSE expired_at END, \
         webhook_status = CASE WHEN webhook_url IS NULL THEN NULL ELSE 'pending' END, \
         webhook_next_at = CASE WHEN webhook_url IS NULL THEN NULL ELSE $5 END \
     WHERE id = $1 AND status IN ('in_progress', 'finalizing', 'cancelling', \
                                  'awaiting_approval', 'paused_budget', 'paused') RETURNING *";

pub(super) fn opt_time(
    row: &impl Columns,
    column: &'static str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
    row.opt_int(column)?
        .map(|t| rows::time(t, "batches"))
        .transpose()
}

fn count(row: &impl Columns, column: &'static str) -> Result<u64> {
    let n = row.int(column)?;
    u64::try_from(n).map_err(|_| StoreError::corrupt(column, n))
}

fn project(row: &impl Columns) -> Result<ProjectId> {
    row.parsed("project_id")
}

fn file_row(row: &impl Columns) -> Result<FileRecord> {
    Ok(FileRecord {
        id: row.text("id")?,
        project: project(row)?,
        purpose: row.text("purpose")?,
        filename: row.text("filename")?,
        bytes: count(row, "bytes")?,
        object_key: row.opt_text("object_key")?,
        batch_id: row.opt_text("batch_id")?,
        created_at: rows::time(row.int("created_at")?, "files.created_at")?,
        expires_at: opt_time(row, "expires_at")?,
    })
}

fn batch_row(row: &impl Columns) -> Result<BatchRecord> {
    Ok(BatchRecord {
        id: row.text("id")?,
        project: project(row)?,
        user_id: row.opt_text("user_id")?,
        endpoint: row.text("endpoint")?,
        input_file_id: row.text("input_file_id")?,
        completion_window: row.text("completion_window")?,
        metadata: row
            .opt_text("metadata")?
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| StoreError::corrupt("batches.metadata", e))?,
        status: row
            .text("status")?
            .parse()
            .map_err(|e| StoreError::corrupt("batches.status", e))?,
        total: count(row, "total")?,
        completed: count(row, "completed")?,
        failed: count(row, "failed")?,
        output_file_id: row.opt_text("output_file_id")?,
        error_file_id: row.opt_text("error_file_id")?,
        created_at: rows::time(row.int("created_at")?, "batches.created_at")?,
        in_progress_at: opt_time(row, "in_progress_at")?,
        finalizing_at: opt_time(row, "finalizing_at")?,
        completed_at: opt_time(row, "completed_at")?,
        cancelling_at: opt_time(row, "cancelling_at")?,
        cancelled_at: opt_time(row, "cancelled_at")?,
        expires_at: rows::time(row.int("expires_at")?, "batches.expires_at")?,
        expired_at: opt_time(row, "expired_at")?,
        dry_run_percent: row.opt_float("dry_run_percent")?,
        approved_at: opt_time(row, "approved_at")?,
        cost_cap: row.opt_float("cost_cap")?,
        estimate: row
            .opt_text("estimate")?
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| StoreError::corrupt("batches.estimate", e))?,
        qa: row
            .opt_text("qa")?
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| StoreError::corrupt("batches.qa", e))?,
        webhook: super::batch_qa::webhook(row)?,
    })
}

fn item_row(row: &impl Columns) -> Result<BatchItem> {
    let line = row.int("line")?;
    Ok(BatchItem {
        batch_id: row.text("batch_id")?,
        line: u32::try_from(line).map_err(|_| StoreError::corrupt("batch_items.line", line))?,
        custom_id: row.text("custom_id")?,
        request: serde_json::from_str(&row.text("request")?)
            .map_err(|e| StoreError::corrupt("batch_items.request", e))?,
        status: row
            .text("status")?
            .parse()
            .map_err(|e| StoreError::corrupt("batch_items.status", e))?,
        job_id: row
            .opt_text("job_id")?
            .map(|t| t.parse::<JobId>())
            .transpose()
            .map_err(|e| StoreError::corrupt("batch_items.job_id", e))?,
        error_code: row.opt_text("error_code")?,
        error_message: row.opt_text("error_message")?,
        finished_at: row
            .opt_int("finished_at")?
            .map(|t| rows::time(t, "batch_items.finished_at"))
            .transpose()?,
        sample: row.int("sample")? != 0,
        attempts: super::batch_qa::attempts(row)?,
        retries: super::batch_qa::retries(row)?,
        needs_review: row.int("needs_review")? != 0,
    })
}

fn checked_limit(limit: u32) -> Result<i64> {
    if limit == 0 || limit > MAX_BATCH_PAGE {
        return Err(StoreError::InvalidLimit {
            got: i64::from(limit),
            max: i64::from(MAX_BATCH_PAGE),
        });
    }
    Ok(i64::from(limit))
}

impl Db {
    /// Records a file.
    pub async fn insert_file(&self, file: &NewFile) -> Result<FileRecord> {
        let now = self.now_ms();
        on_pool!(self, write, p => {
            sqlx::query(INSERT_FILE)
                .bind(&file.id)
                .bind(file.project.as_str())
                .bind(&file.purpose)
                .bind(&file.filename)
                .bind(file.bytes as i64)
                .bind(&file.object_key)
                .bind(&file.batch_id)
                .bind(now)
                .bind(file.expires_at.map(rows::ms))
                .execute(p)
                .await?;
        });
        self.file(&file.id)
            .await?
            .ok_or_else(|| StoreError::FileNotFound(file.id.clone()))
    }

    /// One file.
    pub async fn file(&self, id: &str) -> Result<Option<FileRecord>> {
        on_pool!(self, read, p => {
            let row = sqlx::query(FILE).bind(id).fetch_optional(p).await?;
            row.as_ref().map(file_row).transpose()
        })
    }

    /// Files newest first (of `project` and `purpose` when given), after
    /// the file `after` of a previous page.
    pub async fn list_files(
        &self,
        project: Option<&ProjectId>,
        purpose: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<FileRecord>> {
        let limit = checked_limit(limit)?;
        on_pool!(self, read, p => {
            let rows = sqlx::query(FILES)
                .bind(project.map(ProjectId::as_str))
                .bind(purpose)
                .bind(after)
                .bind(limit)
                .fetch_all(p)
                .await?;
            rows.iter().map(file_row).collect()
        })
    }

    /// Forgets a file; whether there was one.
    pub async fn delete_file(&self, id: &str) -> Result<bool> {
        let done = on_pool!(self, write, p => sqlx::query(DELETE_FILE).bind(id).execute(p).await?.rows_affected());
        Ok(done > 0)
    }

    /// Records a batch and its items, in progress.
    pub async fn create_batch(&self, batch: &NewBatch) -> Result<BatchRecord> {
        let now = self.now_ms();
        let metadata = batch
            .metadata
            .as_ref()
            .map(|m| rows::to_json(m, "batches.metadata"))
            .transpose()?;
        let estimate = batch
            .estimate
            .as_ref()
            .map(|e| rows::to_json(e, "batches.estimate"))
            .transpose()?;
        let qa = batch
            .qa
            .as_ref()
            .map(|q| rows::to_json(q, "batches.qa"))
            .transpose()?;
        let requests = batch
            .items
            .iter()
            .map(|i| rows::to_json(&i.request, "batch_items.request"))
            .collect::<Result<Vec<_>>>()?;
        on_pool!(self, write, p => {
            let mut tx = p.begin().await?;
            sqlx::query(INSERT_BATCH)
                .bind(&batch.id)
                .bind(batch.project.as_str())
                .bind(&batch.user_id)
                .bind(&batch.endpoint)
                .bind(&batch.input_file_id)
                .bind(&batch.completion_window)
                .bind(&metadata)
                .bind(batch.items.len() as i64)
                .bind(now)
                .bind(rows::ms(batch.expires_at))
                .bind(batch.dry_run_percent)
                .bind(batch.cost_cap)
                .bind(&estimate)
                .bind(&qa)
                .bind(&batch.webhook_url)
                .bind(&batch.webhook_secret)
                .execute(&mut *tx)
                .await?;
            for (c, chunk) in batch.items.chunks(ITEM_CHUNK).enumerate() {
                let partial;
                let sql: &str = if chunk.len() == ITEM_CHUNK {
                    INSERT_ITEMS_FULL.as_str()
                } else {
                    partial = insert_items_sql(chunk.len());
                    partial.as_str()
                };
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&batch.id);
                for (k, item) in chunk.iter().enumerate() {
                    let line = (c * ITEM_CHUNK + k) as i64;
                    q = q
                        .bind(line)
                        .bind(&item.custom_id)
                        .bind(&requests[line as usize])
                        .bind(i64::from(item.sample));
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        self.batch(&batch.id)
            .await?
            .ok_or_else(|| StoreError::BatchNotFound(batch.id.clone()))
    }

    /// One batch.
    pub async fn batch(&self, id: &str) -> Result<Option<BatchRecord>> {
        on_pool!(self, read, p => {
            let row = sqlx::query(BATCH).bind(id).fetch_optional(p).await?;
            row.as_ref().map(batch_row).transpose()
        })
    }

    /// Batches newest first (of `project` when given), after the batch
    /// `after` of a previous page.
    pub async fn list_batches(
        &self,
        project: Option<&ProjectId>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<BatchRecord>> {
        let limit = checked_limit(limit)?;
        on_pool!(self, read, p => {
            let rows = sqlx::query(BATCHES)
                .bind(project.map(ProjectId::as_str))
                .bind(after)
                .bind(limit)
                .fetch_all(p)
                .await?;
            rows.iter().map(batch_row).collect()
        })
    }

    /// Batches still to drive: in progress, finalizing or cancelling,
    /// oldest first.
    pub async fn open_batches(&self) -> Result<Vec<BatchRecord>> {
        on_pool!(self, read, p => {
            let rows = sqlx::query(OPEN_BATCHES).fetch_all(p).await?;
            rows.iter().map(batch_row).collect()
        })
    }

    /// A batch's items in line order after line `after` (or from the
    /// first), only those with `status` when given.
    pub async fn batch_items(
        &self,
        batch_id: &str,
        status: Option<ItemStatus>,
        after: Option<u32>,
        limit: u32,
    ) -> Result<Vec<BatchItem>> {
        let limit = checked_limit(limit)?;
        on_pool!(self, read, p => {
            let rows = sqlx::query(ITEMS)
                .bind(batch_id)
                .bind(status.map(ItemStatus::as_str))
                .bind(after.map_or(-1, i64::from))
                .bind(limit)
                .fetch_all(p)
                .await?;
            rows.iter().map(item_row).collect()
        })
    }

    /// The first `limit` pending items in line order (of the dry run's
    /// sample only, when asked).
    pub async fn pending_batch_items(
        &self,
        batch_id: &str,
        sample_only: bool,
        limit: u32,
    ) -> Result<Vec<BatchItem>> {
        let limit = checked_limit(limit)?;
        on_pool!(self, read, p => {
            let rows = sqlx::query(PENDING)
                .bind(batch_id)
                .bind(i64::from(sample_only))
                .bind(limit)
                .fetch_all(p)
                .await?;
            rows.iter().map(item_row).collect()
        })
    }

    /// How many of the dry run's sample lines are still open.
    pub async fn open_sample_items(&self, batch_id: &str) -> Result<u64> {
        let n: i64 = on_pool!(self, read, p => sqlx::query_scalar(OPEN_SAMPLE)
            .bind(batch_id)
            .fetch_one(p)
            .await?);
        Ok(n.max(0) as u64)
    }

    /// What a batch's lines (or its sample's) have made, cost and scored.
    pub async fn batch_spend(&self, batch_id: &str, sample_only: bool) -> Result<BatchSpend> {
        let flag = i64::from(sample_only);
        let n = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
        on_pool!(self, read, p => {
            let items = sqlx::query(SPEND_ITEMS)
                .bind(batch_id)
                .bind(flag)
                .fetch_one(p)
                .await?;
            let images = sqlx::query(SPEND_IMAGES)
                .bind(batch_id)
                .bind(flag)
                .fetch_one(p)
                .await?;
            Ok(BatchSpend {
                items: n(items.opt_int("items")?),
                succeeded: n(items.opt_int("succeeded")?),
                failed: n(items.opt_int("failed")?),
                moderation_refused: n(items.opt_int("refused")?),
                images: n(images.opt_int("images")?),
                cost: images.opt_float("cost")?.unwrap_or(0.0),
                mean_quality_score: images.opt_float("quality")?,
                flagged_images: n(images.opt_int("flagged")?),
            })
        })
    }

    /// How many of the last `limit` images of `model` there are, and
    /// their mean device time and cost (for a batch's estimate).
    pub async fn recent_image_stats(
        &self,
        model: &str,
        limit: u32,
    ) -> Result<(u64, Option<f64>, Option<f64>)> {
        on_pool!(self, read, p => {
            let row = sqlx::query(RECENT_IMAGES)
                .bind(model)
                .bind(i64::from(limit))
                .fetch_one(p)
                .await?;
            Ok((
                row.int("n")?.max(0) as u64,
                row.opt_float("seconds")?,
                row.opt_float("cost")?,
            ))
        })
    }

    /// How many of a batch's items have `status`.
    pub async fn count_batch_items(&self, batch_id: &str, status: ItemStatus) -> Result<u64> {
        let n: i64 = on_pool!(self, read, p => sqlx::query_scalar(COUNT_ITEMS)
            .bind(batch_id)
            .bind(status.as_str())
            .fetch_one(p)
            .await?);
        Ok(n.max(0) as u64)
    }

    /// Records that a pending item is now `job`; false when it was not
    /// pending any more (another process submitted or closed it).
    pub async fn mark_item_submitted(&self, batch_id: &str, line: u32, job: JobId) -> Result<bool> {
        let done = on_pool!(self, write, p => sqlx::query(MARK_SUBMITTED)
            .bind(batch_id)
            .bind(i64::from(line))
            .bind(job.to_string())
            .execute(p)
            .await?
            .rows_affected());
        Ok(done > 0)
    }

    /// The submitted items whose jobs have ended, with how they ended.
    pub async fn settled_batch_items(&self, batch_id: &str) -> Result<Vec<SettledItem>> {
        on_pool!(self, read, p => {
            let rows = sqlx::query(SETTLED).bind(batch_id).fetch_all(p).await?;
            rows.iter()
                .map(|row| {
                    let line = row.int("line")?;
                    let status = match row.text("job_status")?.as_str() {
                        "succeeded" => ItemStatus::Succeeded,
                        "cancelled" => ItemStatus::Cancelled,
                        _ => ItemStatus::Failed,
                    };
                    Ok(SettledItem {
                        outcome: ItemOutcome {
                            line: u32::try_from(line)
                                .map_err(|_| StoreError::corrupt("batch_items.line", line))?,
                            status,
                            error_code: row.opt_text("error_code")?,
                            error_message: row.opt_text("error_message")?,
                        },
                        job_id: row
                            .opt_text("job_id")?
                            .map(|t| t.parse::<JobId>())
                            .transpose()
                            .map_err(|e| StoreError::corrupt("batch_items.job_id", e))?,
                        attempts: super::batch_qa::attempts(row)?,
                        retries: super::batch_qa::retries(row)?,
                    })
                })
                .collect()
        })
    }

    /// Closes items that are still pending or submitted with their
    /// outcomes, then recounts the batch.
    pub async fn finish_batch_items(&self, batch_id: &str, outcomes: &[ItemOutcome]) -> Result<()> {
        let now = self.now_ms();
        on_pool!(self, write, p => {
            let mut tx = p.begin().await?;
            for o in outcomes {
                sqlx::query(FINISH_ITEM)
                    .bind(batch_id)
                    .bind(i64::from(o.line))
                    .bind(o.status.as_str())
                    .bind(&o.error_code)
                    .bind(&o.error_message)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        self.recount_batch(batch_id).await
    }

    /// Closes every item not yet submitted as `status` (cancelled or
    /// expired) with the reason, then recounts the batch.
    pub async fn close_pending_items(
        &self,
        batch_id: &str,
        status: ItemStatus,
        code: &str,
        message: &str,
    ) -> Result<u64> {
        let now = self.now_ms();
        let done = on_pool!(self, write, p => sqlx::query(CLOSE_PENDING)
            .bind(batch_id)
            .bind(status.as_str())
            .bind(code)
            .bind(message)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected());
        self.recount_batch(batch_id).await?;
        Ok(done)
    }

    /// Sets a batch's completed and failed counts from its items.
    async fn recount_batch(&self, batch_id: &str) -> Result<()> {
        on_pool!(self, write, p => {
            let row = sqlx::query(COUNTS).bind(batch_id).fetch_one(p).await?;
            let completed = row.opt_int("completed")?.unwrap_or(0);
            let failed = row.opt_int("failed")?.unwrap_or(0);
            sqlx::query(SET_COUNTS)
                .bind(batch_id)
                .bind(completed)
                .bind(failed)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// Starts cancelling a batch; `None` when it was not in progress.
    pub async fn cancel_batch(&self, id: &str) -> Result<Option<BatchRecord>> {
        self.transition(CANCEL, id).await
    }

    /// Marks an in-progress batch as finalizing; `None` when it was not in
    /// progress (another process got there first, or it was cancelled).
    pub async fn finalizing_batch(&self, id: &str) -> Result<Option<BatchRecord>> {
        self.transition(FINALIZING, id).await
    }

    /// Stops a dry-run batch whose sample is done until it is approved;
    /// `None` when it was not in progress and unapproved.
    pub async fn await_batch_approval(&self, id: &str) -> Result<Option<BatchRecord>> {
        self.untimed_transition(AWAIT_APPROVAL, id).await
    }

    /// Approves the rest of a dry-run batch; `None` when it was not a
    /// dry run waiting for approval (or had ended).
    pub async fn approve_batch(&self, id: &str) -> Result<Option<BatchRecord>> {
        self.transition(APPROVE, id).await
    }

    /// Pauses a batch at its cost cap; `None` when it was not in
    /// progress.
    pub async fn pause_batch(&self, id: &str) -> Result<Option<BatchRecord>> {
        self.untimed_transition(PAUSE, id).await
    }

    /// Pauses a batch at its owner's request; `None` when it was not in
    /// progress, waiting for approval or paused at its cap.
    pub async fn pause_batch_by_owner(&self, id: &str) -> Result<Option<BatchRecord>> {
        self.untimed_transition(PAUSE_BY_OWNER, id).await
    }

    /// Resumes a batch its owner paused; `None` when it was not paused.
    /// The driver pauses it again at its cap, or stops it for approval,
    /// where those still hold.
    pub async fn resume_batch(&self, id: &str) -> Result<Option<BatchRecord>> {
        self.untimed_transition(RESUME, id).await
    }

    /// Sets a batch's cost cap (`None`: no cap); a batch paused at its cap
    /// goes on (the driver pauses it again if the new cap is reached too).
    /// `None` when the batch has ended or is being cancelled.
    pub async fn set_batch_cap(&self, id: &str, cap: Option<f64>) -> Result<Option<BatchRecord>> {
        on_pool!(self, write, p => {
            let row = sqlx::query(SET_CAP).bind(id).bind(cap).fetch_optional(p).await?;
            row.as_ref().map(batch_row).transpose()
        })
    }

    async fn untimed_transition(&self, sql: &'static str, id: &str) -> Result<Option<BatchRecord>> {
        on_pool!(self, write, p => {
            let row = sqlx::query(sql).bind(id).fetch_optional(p).await?;
            row.as_ref().map(batch_row).transpose()
        })
    }

    async fn transition(&self, sql: &'static str, id: &str) -> Result<Option<BatchRecord>> {
        let now = self.now_ms();
        on_pool!(self, write, p => {
            let row = sqlx::query(sql).bind(id).bind(now).fetch_optional(p).await?;
            row.as_ref().map(batch_row).transpose()
        })
    }

    /// Ends an open batch as `status` (completed, cancelled or expired)
    /// with its output and error files, in one transaction; `None` (and
    /// nothing written) when it had already ended.
    pub async fn finish_batch(
        &self,
        id: &str,
        status: BatchStatus,
        output: Option<&NewFile>,
        errors: Option<&NewFile>,
    ) -> Result<Option<BatchRecord>> {
        let now = self.now_ms();
        on_pool!(self, write, p => {
            let mut tx = p.begin().await?;
            let row = sqlx::query(FINISH)
                .bind(id)
                .bind(status.as_str())
                .bind(output.map(|f| f.id.as_str()))
                .bind(errors.map(|f| f.id.as_str()))
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let record = batch_row(&row)?;
            for file in output.into_iter().chain(errors) {
                sqlx::query(INSERT_FILE)
                    .bind(&file.id)
                    .bind(file.project.as_str())
                    .bind(&file.purpose)
                    .bind(&file.filename)
                    .bind(file.bytes as i64)
                    .bind(&file.object_key)
                    .bind(&file.batch_id)
                    .bind(now)
                    .bind(file.expires_at.map(rows::ms))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(Some(record))
        })
    }
}
