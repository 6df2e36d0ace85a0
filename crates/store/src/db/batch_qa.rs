//! What happens to a batch's items after their jobs end: retries of
//! failed attempts, the automatic QA checks, the manifest, and the
//! delivery of the completion webhook. Same conventions as `batches.rs`:
//! one SQL text for both backends, and conditional transitions.

use easel_core::{JobId, ProjectId};

use super::batches::opt_time;
use super::{Db, on_pool};
use crate::error::{Result, StoreError};
use crate::records::batch::{ManifestImage, ManifestRow, QaImage, Webhook};
use crate::rows::{self, Columns};

const RETRY_ITEM: &str = "UPDATE batch_items SET status = 'pending', job_id = NULL, retries = $3 \
     WHERE batch_id = $1 AND line = $2 AND status = 'submitted'";

/// Succeeded items not yet checked, with their images (a LEFT JOIN: an
/// item with no image still comes back once).
const UNCHECKED: &str = "SELECT i.line AS line, i.job_id AS job_id, im.id AS image_id, \
         im.quality_score AS quality_score, CAST(im.flags AS TEXT) AS flags, im.model AS model, \
         j.model_version AS model_version \
     FROM batch_items i LEFT JOIN images im ON im.job_id = i.job_id \
     LEFT JOIN jobs j ON j.id = i.job_id \
     WHERE i.batch_id = $1 AND i.status = 'succeeded' AND i.qa_at IS NULL \
       AND i.line IN (SELECT line FROM batch_items \
                      WHERE batch_id = $1 AND status = 'succeeded' AND qa_at IS NULL \
                      ORDER BY line LIMIT $2) \
     ORDER BY i.line, im.index_in_job";
const SET_QA: &str = "UPDATE batch_items SET needs_review = $3, qa_at = $4 \
     WHERE batch_id = $1 AND line = $2";
const NEEDS_REVIEW: &str = "SELECT COUNT(*) FROM batch_items \
     WHERE batch_id = $1 AND needs_review = 1";

const MANIFEST: &str = "SELECT i.line AS line, i.custom_id AS custom_id, i.status AS status, \
         i.request AS request, i.error_code AS error_code, i.error_message AS error_message, \
         i.needs_review AS needs_review, i.attempts AS attempts, i.retries AS retries, \
         i.job_id AS job_id, \
         im.id AS image_id, im.project_id AS project_id, im.object_key AS object_key, \
         im.index_in_job AS index_in_job, im.prompt AS prompt, im.seed AS seed, \
         im.format AS format, im.quality_score AS quality_score, \
         CAST(im.flags AS TEXT) AS flags, im.cost AS cost \
     FROM batch_items i \
     LEFT JOIN images im ON im.job_id = i.job_id AND i.status = 'succeeded' \
     WHERE i.batch_id = $1 AND i.line >= $2 AND i.line < $3 \
     ORDER BY i.line, im.index_in_job";

const DUE_WEBHOOKS: &str = "SELECT id FROM batches \
     WHERE webhook_status = 'pending' AND webhook_next_at <= $1 \
     ORDER BY webhook_next_at LIMIT $2";
const CLAIM_WEBHOOK: &str = "UPDATE batches SET webhook_next_at = $3 \
     WHERE id = $1 AND webhook_status = 'pending' AND webhook_attempts = $2 \
       AND webhook_next_at <= $4";
const WEBHOOK_DELIVERED: &str = "UPDATE batches SET webhook_status = 'delivered', \
         webhook_attempts = webhook_attempts + 1, webhook_delivered_at = $2, \
         webhook_next_at = NULL, webhook_last_error = NULL \
     WHERE id = $1 AND webhook_status = 'pending'";
const WEBHOOK_FAILED: &str = "UPDATE batches SET \
         webhook_status = CASE WHEN $3 IS NULL THEN 'failed' ELSE 'pending' END, \
         webhook_attempts = webhook_attempts + 1, webhook_next_at = $3, \
         webhook_last_error = $2 \
     WHERE id = $1 AND webhook_status = 'pending'";

/// A row's `attempts`.
pub(super) fn attempts(row: &impl Columns) -> Result<u32> {
    let n = row.int("attempts")?;
    u32::try_from(n).map_err(|_| StoreError::corrupt("batch_items.attempts", n))
}

/// A row's `retries` JSON.
pub(super) fn retries(row: &impl Columns) -> Result<Option<serde_json::Value>> {
    row.opt_text("retries")?
        .map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| StoreError::corrupt("batch_items.retries", e))
}

/// A batch row's webhook, when it has one.
pub(super) fn webhook(row: &impl Columns) -> Result<Option<Webhook>> {
    let (Some(url), Some(secret)) = (
        row.opt_text("webhook_url")?,
        row.opt_text("webhook_secret")?,
    ) else {
        return Ok(None);
    };
    let n = row.int("webhook_attempts")?;
    Ok(Some(Webhook {
        url,
        secret,
        status: row.opt_text("webhook_status")?,
        attempts: u32::try_from(n)
            .map_err(|_| StoreError::corrupt("batches.webhook_attempts", n))?,
        next_at: opt_time(row, "webhook_next_at")?,
        delivered_at: opt_time(row, "webhook_delivered_at")?,
        last_error: row.opt_text("webhook_last_error")?,
    }))
}

fn flags(row: &impl Columns) -> Result<Vec<String>> {
    row.opt_text("flags")?
        .map(|t| serde_json::from_str(&t))
        .transpose()
        .map(Option::unwrap_or_default)
        .map_err(|e| StoreError::corrupt("images.flags", e))
}

fn line(row: &impl Columns) -> Result<u32> {
    let n = row.int("line")?;
    u32::try_from(n).map_err(|_| StoreError::corrupt("batch_items.line", n))
}

fn job_id(row: &impl Columns) -> Result<Option<JobId>> {
    row.opt_text("job_id")?
        .map(|t| t.parse::<JobId>())
        .transpose()
        .map_err(|e| StoreError::corrupt("batch_items.job_id", e))
}

fn manifest_row(row: &impl Columns) -> Result<ManifestRow> {
    let image = match row.opt_text("image_id")? {
        Some(id) => Some(ManifestImage {
            id,
            project: row.parsed::<ProjectId>("project_id")?,
            object_key: row.text("object_key")?,
            index: row.unsigned("index_in_job")?,
            prompt: row.text("prompt")?,
            // Stored as its two's-complement i64.
            seed: row.int("seed")? as u64,
            format: row.text("format")?,
            quality_score: row.opt_float("quality_score")?,
            flags: flags(row)?,
            cost: row.opt_float("cost")?.unwrap_or(0.0),
        }),
        None => None,
    };
    Ok(ManifestRow {
        line: line(row)?,
        custom_id: row.text("custom_id")?,
        status: row
            .text("status")?
            .parse()
            .map_err(|e| StoreError::corrupt("batch_items.status", e))?,
        request: serde_json::from_str(&row.text("request")?)
            .map_err(|e| StoreError::corrupt("batch_items.request", e))?,
        error_code: row.opt_text("error_code")?,
        error_message: row.opt_text("error_message")?,
        needs_review: row.int("needs_review")? != 0,
        attempts: attempts(row)?,
        retries: retries(row)?,
        job_id: job_id(row)?,
        image,
    })
}

impl Db {
    /// Puts a submitted item whose job failed back to pending for another
    /// attempt, with the list of retried attempts so far; false when the
    /// item was no longer submitted (another process settled it).
    pub async fn retry_batch_item(
        &self,
        batch_id: &str,
        line: u32,
        retries: &serde_json::Value,
    ) -> Result<bool> {
        let retries = rows::to_json(retries, "batch_items.retries")?;
        let done = on_pool!(self, write, p => sqlx::query(RETRY_ITEM)
            .bind(batch_id)
            .bind(i64::from(line))
            .bind(&retries)
            .execute(p)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    /// The images of up to `limit` succeeded items whose QA has not run,
    /// in line order.
    pub async fn unchecked_batch_images(&self, batch_id: &str, limit: u32) -> Result<Vec<QaImage>> {
        on_pool!(self, read, p => {
            let rows = sqlx::query(UNCHECKED)
                .bind(batch_id)
                .bind(i64::from(limit))
                .fetch_all(p)
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(QaImage {
                        line: line(row)?,
                        job_id: job_id(row)?,
                        image_id: row.opt_text("image_id")?,
                        quality_score: row.opt_float("quality_score")?,
                        flags: flags(row)?,
                        model: row.opt_text("model")?,
                        model_version: row.opt_text("model_version")?,
                    })
                })
                .collect()
        })
    }

    /// Records that QA ran on these lines, and which need a person.
    pub async fn set_batch_qa(&self, batch_id: &str, checked: &[(u32, bool)]) -> Result<()> {
        let now = self.now_ms();
        on_pool!(self, write, p => {
            let mut tx = p.begin().await?;
            for (line, needs_review) in checked {
                sqlx::query(SET_QA)
                    .bind(batch_id)
                    .bind(i64::from(*line))
                    .bind(i64::from(*needs_review))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// How many of a batch's items QA marked for review.
    pub async fn batch_needs_review(&self, batch_id: &str) -> Result<u64> {
        let n: i64 = on_pool!(self, read, p => sqlx::query_scalar(NEEDS_REVIEW)
            .bind(batch_id)
            .fetch_one(p)
            .await?);
        Ok(n.max(0) as u64)
    }

    /// The manifest rows of lines `from..to`: each item with each of its
    /// images, in line order.
    pub async fn batch_manifest(
        &self,
        batch_id: &str,
        from: u32,
        to: u32,
    ) -> Result<Vec<ManifestRow>> {
        on_pool!(self, read, p => {
            let rows = sqlx::query(MANIFEST)
                .bind(batch_id)
                .bind(i64::from(from))
                .bind(i64::from(to))
                .fetch_all(p)
                .await?;
            rows.iter().map(manifest_row).collect()
        })
    }

    /// Batches whose completion webhook is due, oldest first.
    pub async fn due_webhooks(&self, limit: u32) -> Result<Vec<String>> {
        let now = self.now_ms();
        on_pool!(self, read, p => Ok(sqlx::query_scalar(DUE_WEBHOOKS)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?))
    }

    /// Takes a due delivery of `batch_id`'s webhook (whose `attempts` so
    /// far are as read) for `lease_ms`, so no other process sends it
    /// meanwhile; false when another took it first.
    pub async fn claim_webhook(
        &self,
        batch_id: &str,
        attempts: u32,
        lease_ms: i64,
    ) -> Result<bool> {
        let now = self.now_ms();
        let done = on_pool!(self, write, p => sqlx::query(CLAIM_WEBHOOK)
            .bind(batch_id)
            .bind(i64::from(attempts))
            .bind(now + lease_ms)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    /// Records a delivered webhook.
    pub async fn webhook_delivered(&self, batch_id: &str) -> Result<()> {
        let now = self.now_ms();
        on_pool!(self, write, p => sqlx::query(WEBHOOK_DELIVERED)
            .bind(batch_id)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Records a failed delivery: tried again at `retry_at`, or given up
    /// (`None`).
    pub async fn webhook_failed(
        &self,
        batch_id: &str,
        error: &str,
        retry_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<()> {
        on_pool!(self, write, p => sqlx::query(WEBHOOK_FAILED)
            .bind(batch_id)
            .bind(error)
            .bind(retry_at.map(rows::ms))
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }
}
