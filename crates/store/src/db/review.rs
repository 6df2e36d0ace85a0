//! The human review queue: enqueueing images, leasing the next item to a
//! reviewer (never the same item to two reviewers), verdicts and counts.
//! One SQL text serves both backends (see `rollouts.rs`), except the
//! lease's pick, which skips rows other transactions hold on PostgreSQL.

use super::{Backend, Db, on_pool};
use crate::error::{Result, StoreError};
use crate::records::review::{NewReviewItem, ReviewCounts, ReviewItem, VerdictRefusal};
use crate::rows::{self, Columns};

const INSERT: &str = "INSERT INTO review_items \
     (image_id, job_id, project_id, model, model_version, quality_score, reason, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (image_id) DO NOTHING";

// The oldest item without a verdict whose lease is free (or already this
// reviewer's), in the reviewer's project when one is given. The outer
// conditions are checked again on the row itself, so of two reviewers that
// picked the same row only the first to write gets it.
const LEASE_SQLITE: &str = "UPDATE review_items SET lease_owner = $1, lease_expires_at = $2 \
     WHERE image_id = (SELECT image_id FROM review_items \
                       WHERE verdict IS NULL \
                         AND (lease_expires_at IS NULL OR lease_expires_at < $3 OR lease_owner = $1) \
                         AND ($4 IS NULL OR project_id = $4) \
                       ORDER BY (lease_owner = $1) DESC, created_at, image_id LIMIT 1) \
       AND verdict IS NULL \
       AND (lease_expires_at IS NULL OR lease_expires_at < $3 OR lease_owner = $1) \
     RETURNING *";
const LEASE_PG: &str = "UPDATE review_items SET lease_owner = $1, lease_expires_at = $2 \
     WHERE image_id = (SELECT image_id FROM review_items \
                       WHERE verdict IS NULL \
                         AND (lease_expires_at IS NULL OR lease_expires_at < $3 OR lease_owner = $1) \
                         AND ($4::text IS NULL OR project_id = $4) \
                       ORDER BY (lease_owner IS NOT DISTINCT FROM $1) DESC, created_at, image_id \
                       LIMIT 1 FOR UPDATE SKIP LOCKED) \
       AND verdict IS NULL \
       AND (lease_expires_at IS NULL OR lease_expires_at < $3 OR lease_owner = $1) \
     RETURNING *";

const VERDICT: &str = "UPDATE review_items \
     SET verdict = $3, labels = $4, reviewer = $2, reviewed_at = $5, \
         lease_owner = NULL, lease_expires_at = NULL \
     WHERE image_id = $1 AND verdict IS NULL AND lease_owner = $2 AND lease_expires_at >= $5 \
     RETURNING *";

const ITEM: &str = "SELECT * FROM review_items WHERE image_id = $1";

const COUNTS: &str = "SELECT model, model_version, \
         SUM(CASE WHEN verdict IS NULL THEN 1 ELSE 0 END) AS pending, \
         SUM(CASE WHEN verdict = 'good' THEN 1 ELSE 0 END) AS good, \
         SUM(CASE WHEN verdict = 'bad' THEN 1 ELSE 0 END) AS bad \
     FROM review_items WHERE ($1 IS NULL OR project_id = $1) \
     GROUP BY model, model_version ORDER BY model, model_version";

const REVIEWER_COUNTS: &str = "SELECT verdict, COUNT(*) AS n FROM review_items \
     WHERE reviewer = $1 AND verdict IS NOT NULL GROUP BY verdict";

const SCORED: &str = "SELECT quality_score, verdict FROM review_items \
     WHERE model = $1 AND verdict IS NOT NULL AND quality_score IS NOT NULL";

fn item_row(row: &impl Columns) -> Result<ReviewItem> {
    let labels = match row.opt_text("labels")? {
        Some(t) => {
            serde_json::from_str(&t).map_err(|e| StoreError::corrupt("review_items.labels", e))?
        }
        None => Vec::new(),
    };
    let time = |column: &'static str| -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        row.opt_int(column)?
            .map(|t| rows::time(t, "review_items"))
            .transpose()
    };
    Ok(ReviewItem {
        image_id: row.text("image_id")?,
        job_id: row.text("job_id")?,
        project: row.text("project_id")?,
        model: row.text("model")?,
        model_version: row.opt_text("model_version")?,
        quality_score: row.opt_float("quality_score")?,
        reason: row.text("reason")?,
        lease_owner: row.opt_text("lease_owner")?,
        lease_expires_at: time("lease_expires_at")?,
        verdict: row.opt_text("verdict")?,
        labels,
        reviewer: row.opt_text("reviewer")?,
        reviewed_at: time("reviewed_at")?,
        created_at: rows::time(row.int("created_at")?, "review_items.created_at")?,
    })
}

impl Db {
    /// Puts images in the review queue (an image already there stays as
    /// it is).
    pub async fn enqueue_review(&self, items: &[NewReviewItem]) -> Result<()> {
        let now = self.now_ms();
        for item in items {
            on_pool!(self, write, p => {
                sqlx::query(INSERT)
                    .bind(&item.image_id)
                    .bind(&item.job_id)
                    .bind(&item.project)
                    .bind(&item.model)
                    .bind(&item.model_version)
                    .bind(item.quality_score)
                    .bind(item.reason)
                    .bind(now)
                    .execute(p)
                    .await?;
            });
        }
        Ok(())
    }

    /// Leases the next item to `reviewer` for `lease_ms`: the item it
    /// already holds, else the oldest free one (of `project`, when given).
    /// `None` when nothing waits.
    pub async fn lease_review(
        &self,
        reviewer: &str,
        project: Option<&str>,
        lease_ms: i64,
    ) -> Result<Option<ReviewItem>> {
        let now = self.now_ms();
        let sql = match &self.backend {
            Backend::Sqlite(_) => LEASE_SQLITE,
            Backend::Postgres(_) => LEASE_PG,
        };
        // A pick that lost its row to another reviewer between the choice
        // and the write comes back empty; choose again.
        for _ in 0..5 {
            let leased = on_pool!(self, write, p => {
                let row = sqlx::query(sql)
                    .bind(reviewer)
                    .bind(now + lease_ms)
                    .bind(now)
                    .bind(project)
                    .fetch_optional(p)
                    .await?;
                row.as_ref().map(item_row).transpose()?
            });
            if leased.is_some() || !self.review_waiting(reviewer, project, now).await? {
                return Ok(leased);
            }
        }
        Ok(None)
    }

    /// Whether an item is free for `reviewer`.
    async fn review_waiting(
        &self,
        reviewer: &str,
        project: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let n: i64 = on_pool!(self, read, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM review_items WHERE verdict IS NULL \
             AND (lease_expires_at IS NULL OR lease_expires_at < $2 OR lease_owner = $1) \
             AND ($3 IS NULL OR project_id = $3)",
        )
        .bind(reviewer)
        .bind(now)
        .bind(project)
        .fetch_one(p)
        .await?);
        Ok(n > 0)
    }

    /// Records `reviewer`'s verdict on an item it holds.
    pub async fn record_verdict(
        &self,
        image_id: &str,
        reviewer: &str,
        verdict: &str,
        labels: &[String],
    ) -> Result<std::result::Result<ReviewItem, VerdictRefusal>> {
        let now = self.now_ms();
        let labels = rows::to_json(&labels, "review_items.labels")?;
        let done = on_pool!(self, write, p => {
            let row = sqlx::query(VERDICT)
                .bind(image_id)
                .bind(reviewer)
                .bind(verdict)
                .bind(labels)
                .bind(now)
                .fetch_optional(p)
                .await?;
            row.as_ref().map(item_row).transpose()?
        });
        if let Some(item) = done {
            return Ok(Ok(item));
        }
        Ok(Err(match self.review_item(image_id).await? {
            None => VerdictRefusal::NotFound,
            Some(item) if item.verdict.is_some() => VerdictRefusal::AlreadyReviewed,
            Some(_) => VerdictRefusal::LeaseNotHeld,
        }))
    }

    /// One review item.
    pub async fn review_item(&self, image_id: &str) -> Result<Option<ReviewItem>> {
        on_pool!(self, read, p => {
            let row = sqlx::query(ITEM).bind(image_id).fetch_optional(p).await?;
            row.as_ref().map(item_row).transpose()
        })
    }

    /// Pending items and verdicts per model version (of `project`, when
    /// given).
    pub async fn review_counts(&self, project: Option<&str>) -> Result<Vec<ReviewCounts>> {
        on_pool!(self, read, p => {
            let found = sqlx::query(COUNTS).bind(project).fetch_all(p).await?;
            found
                .iter()
                .map(|r| {
                    Ok(ReviewCounts {
                        model: r.text("model")?,
                        model_version: r.opt_text("model_version")?,
                        pending: u64::try_from(r.int("pending")?).unwrap_or(0),
                        good: u64::try_from(r.int("good")?).unwrap_or(0),
                        bad: u64::try_from(r.int("bad")?).unwrap_or(0),
                    })
                })
                .collect()
        })
    }

    /// `(good, bad)` verdicts `reviewer` has given.
    pub async fn reviewer_counts(&self, reviewer: &str) -> Result<(u64, u64)> {
        on_pool!(self, read, p => {
            let found = sqlx::query(REVIEWER_COUNTS).bind(reviewer).fetch_all(p).await?;
            let mut counts = (0, 0);
            for r in &found {
                let n = u64::try_from(r.int("n")?).unwrap_or(0);
                match r.text("verdict")?.as_str() {
                    "good" => counts.0 = n,
                    "bad" => counts.1 = n,
                    _ => {}
                }
            }
            Ok(counts)
        })
    }

    /// `(quality score, verdict is good)` of every reviewed, scored item
    /// of `model`.
    pub async fn reviewed_scores(&self, model: &str) -> Result<Vec<(f64, bool)>> {
        on_pool!(self, read, p => {
            let found = sqlx::query(SCORED).bind(model).fetch_all(p).await?;
            found
                .iter()
                .map(|r| {
                    Ok((
                        r.opt_float("quality_score")?.unwrap_or_default(),
                        r.text("verdict")? == "good",
                    ))
                })
                .collect()
        })
    }
}
