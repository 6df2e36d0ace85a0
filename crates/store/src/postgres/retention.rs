//! Image deletion and retention on PostgreSQL.

use easel_core::ImageId;

use super::PgDb;
use crate::error::Result;
use crate::records::image::Image;
use crate::rows;

impl PgDb {
    /// Sets the hold flag; whether the image exists.
    pub(crate) async fn set_legal_hold(&self, id: ImageId, hold: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE images SET legal_hold = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(hold)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes an unheld image's row and records its object as pending.
    pub(crate) async fn delete_image(&self, id: ImageId, now: i64) -> Result<Option<Image>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("DELETE FROM images WHERE id = $1 AND NOT legal_hold RETURNING *")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let image = rows::image(&row)?;
        sqlx::query(
            "INSERT INTO pending_deletions (object_key, since) VALUES ($1, $2) \
             ON CONFLICT (object_key) DO NOTHING",
        )
        .bind(&image.object_key)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(image))
    }

    /// Forgets a pending deletion.
    pub(crate) async fn object_deleted(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM pending_deletions WHERE object_key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Images past retention, oldest first.
    pub(crate) async fn expired_images(&self, now: i64, limit: i64) -> Result<Vec<Image>> {
        let found = sqlx::query(
            "SELECT i.* FROM images i JOIN projects p ON p.id = i.project_id \
             WHERE p.retention_seconds IS NOT NULL AND NOT i.legal_hold \
               AND i.created_at < $1 - p.retention_seconds * 1000 \
             ORDER BY i.created_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        found.iter().map(rows::image).collect()
    }

    /// Pending object deletions, oldest first.
    pub(crate) async fn pending_deletions(&self, limit: i64) -> Result<Vec<String>> {
        let found: Vec<(String,)> = sqlx::query_as(
            "SELECT object_key FROM pending_deletions ORDER BY since, object_key LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(found.into_iter().map(|(k,)| k).collect())
    }
}
