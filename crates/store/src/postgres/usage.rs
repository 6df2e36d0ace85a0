//! Usage and spend on PostgreSQL.

use sqlx::Row;

use super::PgDb;
use crate::error::Result;
use crate::records::usage::{Spend, UsageGroup, UsageRow};

const BY_PROJECT: &str = "SELECT i.project_id AS grp, COUNT(*)::bigint AS images, \
         COALESCE(SUM(i.device_seconds), 0.0) AS device_seconds, COALESCE(SUM(i.cost), 0.0) AS cost \
     FROM images i WHERE i.created_at >= $1 AND i.created_at < $2 AND ($3::text IS NULL OR i.project_id = $3) \
     GROUP BY grp ORDER BY cost DESC, grp";
const BY_KEY: &str = "SELECT (i.project_id || '/' || COALESCE(j.user_id, '')) AS grp, COUNT(*)::bigint AS images, \
         COALESCE(SUM(i.device_seconds), 0.0) AS device_seconds, COALESCE(SUM(i.cost), 0.0) AS cost \
     FROM images i JOIN jobs j ON j.id = i.job_id \
     WHERE i.created_at >= $1 AND i.created_at < $2 AND ($3::text IS NULL OR i.project_id = $3) \
     GROUP BY grp ORDER BY cost DESC, grp";
const BY_MODEL: &str = "SELECT i.model AS grp, COUNT(*)::bigint AS images, \
         COALESCE(SUM(i.device_seconds), 0.0) AS device_seconds, COALESCE(SUM(i.cost), 0.0) AS cost \
     FROM images i WHERE i.created_at >= $1 AND i.created_at < $2 AND ($3::text IS NULL OR i.project_id = $3) \
     GROUP BY grp ORDER BY cost DESC, grp";
const BY_DAY: &str = "SELECT to_char(to_timestamp(i.created_at / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS grp, COUNT(*)::bigint AS images, \
         COALESCE(SUM(i.device_seconds), 0.0) AS device_seconds, COALESCE(SUM(i.cost), 0.0) AS cost \
     FROM images i WHERE i.created_at >= $1 AND i.created_at < $2 AND ($3::text IS NULL OR i.project_id = $3) \
     GROUP BY grp ORDER BY grp";

impl PgDb {
    /// Grouped usage.
    pub(crate) async fn usage(
        &self,
        group: UsageGroup,
        from: i64,
        until: i64,
        project: Option<&str>,
    ) -> Result<Vec<UsageRow>> {
        let sql = match group {
            UsageGroup::Project => BY_PROJECT,
            UsageGroup::Key => BY_KEY,
            UsageGroup::Model => BY_MODEL,
            UsageGroup::Day => BY_DAY,
        };
        let found = sqlx::query(sql)
            .bind(from)
            .bind(until)
            .bind(project)
            .fetch_all(&self.pool)
            .await?;
        found
            .iter()
            .map(|r| {
                Ok(UsageRow {
                    group: r.try_get("grp")?,
                    images: r.try_get::<i64, _>("images")?.max(0) as u64,
                    device_seconds: r.try_get("device_seconds")?,
                    cost: r.try_get("cost")?,
                })
            })
            .collect()
    }

    /// A project's spend.
    pub(crate) async fn spend(&self, project: &str, day: i64, month: i64) -> Result<Spend> {
        let made = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN created_at >= $2 THEN 1 ELSE 0 END), 0)::bigint AS today, \
                 COUNT(*)::bigint AS month, COALESCE(SUM(cost), 0.0) AS cost \
             FROM images WHERE project_id = $1 AND created_at >= $3",
        )
        .bind(project)
        .bind(day)
        .bind(month)
        .fetch_one(&self.pool)
        .await?;
        let pending: (i64,) = sqlx::query_as(
            "SELECT COALESCE(SUM((params->>'n')::bigint), 0)::bigint FROM jobs \
             WHERE project_id = $1 AND status IN ('queued', 'running')",
        )
        .bind(project)
        .fetch_one(&self.pool)
        .await?;
        Ok(Spend {
            images_today: made.try_get::<i64, _>("today")?.max(0) as u64,
            images_month: made.try_get::<i64, _>("month")?.max(0) as u64,
            cost_month: made.try_get("cost")?,
            pending_images: pending.0.max(0) as u64,
        })
    }

    /// Mean cost of a model's recent images.
    pub(crate) async fn mean_image_cost(&self, model: &str, sample: i64) -> Result<Option<f64>> {
        let row: (Option<f64>,) = sqlx::query_as(
            "SELECT AVG(cost) FROM (SELECT cost FROM images WHERE model = $1 \
             ORDER BY created_at DESC LIMIT $2) AS recent",
        )
        .bind(model)
        .bind(sample)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.0)
    }

    /// Sets or clears the hold of a project's queued batch jobs.
    pub(crate) async fn hold_batch_jobs(&self, project: &str, reason: Option<&str>) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE jobs SET hold_reason = $2::text \
             WHERE project_id = $1 AND status = 'queued' AND tier = 'batch' \
               AND hold_reason IS DISTINCT FROM $2::text",
        )
        .bind(project)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
