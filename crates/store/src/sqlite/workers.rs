//! The worker registry on SQLite.

use easel_core::JobId;

use super::SqliteDb;
use crate::error::Result;
use crate::records::worker::{NewWorker, WorkerRecord};
use crate::rows;

impl SqliteDb {
    /// Inserts or resets worker `w`'s row, and prunes rows silent for
    /// longer than `retention_ms`.
    pub(crate) async fn register_worker(
        &self,
        w: &NewWorker,
        every_ms: i64,
        now: Option<i64>,
        retention_ms: i64,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM workers WHERE heartbeat_at < COALESCE(?1, CAST(unixepoch('subsec') * 1000 AS INTEGER)) - ?2")
        .bind(now)
        .bind(retention_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO workers (id, host, pid, version, heartbeat_every_ms, started_at, heartbeat_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, COALESCE(?6, CAST(unixepoch('subsec') * 1000 AS INTEGER)), COALESCE(?6, CAST(unixepoch('subsec') * 1000 AS INTEGER))) \
             ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, \
                 version = excluded.version, heartbeat_every_ms = excluded.heartbeat_every_ms, \
                 heartbeat_at = excluded.heartbeat_at, stopped_at = NULL")
        .bind(&w.id)
        .bind(&w.host)
        .bind(i64::from(w.pid))
        .bind(&w.version)
        .bind(every_ms)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stamps a heartbeat; the drain flag, or `None` without a row.
    pub(crate) async fn worker_heartbeat(
        &self,
        id: &str,
        models: &str,
        circuits: &str,
        draining: bool,
        now: Option<i64>,
    ) -> Result<Option<bool>> {
        let row: Option<(i64,)> = sqlx::query_as("UPDATE workers SET heartbeat_at = COALESCE(?5, CAST(unixepoch('subsec') * 1000 AS INTEGER)), models = ?2, \
                 open_circuits = ?3, draining = ?4 \
             WHERE id = ?1 RETURNING drain_requested")
        .bind(id)
        .bind(models)
        .bind(circuits)
        .bind(draining)
        .bind(now)
        .fetch_optional(&self.writer)
        .await?;
        Ok(row.map(|(flag,)| flag != 0))
    }

    /// Stamps `stopped_at`.
    pub(crate) async fn worker_stopped(&self, id: &str, now: Option<i64>) -> Result<()> {
        sqlx::query("UPDATE workers SET stopped_at = COALESCE(?2, CAST(unixepoch('subsec') * 1000 AS INTEGER)), heartbeat_at = COALESCE(?2, CAST(unixepoch('subsec') * 1000 AS INTEGER)) \
             WHERE id = ?1")
        .bind(id)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Sets the drain flag; `WorkerNotFound` without a row.
    pub(crate) async fn request_worker_drain(&self, id: &str) -> Result<()> {
        let done = sqlx::query("UPDATE workers SET drain_requested = 1 WHERE id = ?1")
            .bind(id)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(crate::StoreError::WorkerNotFound(id.to_string()));
        }
        Ok(())
    }

    /// Every row, newest first, with the database's time as `now_ms`.
    pub(crate) async fn workers(&self, now: Option<i64>) -> Result<Vec<WorkerRecord>> {
        let found = sqlx::query("SELECT *, COALESCE(?1, CAST(unixepoch('subsec') * 1000 AS INTEGER)) AS now_ms FROM workers ORDER BY started_at DESC, id")
        .bind(now)
        .fetch_all(&self.reader)
        .await?;
        found.iter().map(rows::worker).collect()
    }

    /// Each running job's id and lease owner.
    pub(crate) async fn running_owners(&self) -> Result<Vec<(JobId, String)>> {
        let found: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, lease_owner FROM jobs \
             WHERE status = 'running' AND lease_owner IS NOT NULL ORDER BY id",
        )
        .fetch_all(&self.reader)
        .await?;
        found
            .into_iter()
            .map(|(id, owner)| {
                let id = id
                    .parse()
                    .map_err(|e| crate::StoreError::corrupt("jobs.id", e))?;
                Ok((id, owner))
            })
            .collect()
    }
}
