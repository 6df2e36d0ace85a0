//! The model catalog on PostgreSQL.

use super::PgDb;
use crate::error::Result;
use crate::records::catalog::CatalogEntry;
use crate::rows;

const PUBLISH: &str = "INSERT INTO model_catalog (name, info, updated_at) \
     VALUES ($1, $2::jsonb, $3) \
     ON CONFLICT (name) DO UPDATE SET info = excluded.info, updated_at = excluded.updated_at";

impl PgDb {
    /// Records or replaces model `name`'s description (JSON text).
    pub(crate) async fn publish_model(&self, name: &str, info: &str, now: i64) -> Result<()> {
        sqlx::query(PUBLISH)
            .bind(name)
            .bind(info)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every entry, by name.
    pub(crate) async fn model_catalog(&self) -> Result<Vec<CatalogEntry>> {
        let found = sqlx::query("SELECT * FROM model_catalog ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(rows::catalog_entry).collect()
    }
}
