//! Projects, API keys and rate buckets on PostgreSQL.

use sqlx::Row;

use super::PgDb;
use crate::db::tenancy::decide;
use crate::error::{Result, StoreError};
use crate::records::tenancy::{
    ApiKeyRecord, KeyWithProject, NewApiKey, Project, RateState, RateTake,
};
use crate::rows;

const KEY_WITH_PROJECT: &str = "SELECT k.*, p.limits AS project_limits, \
         p.billable AS project_billable, p.created_at AS project_created_at, \
         p.retention_seconds AS project_retention_seconds \
     FROM api_keys k JOIN projects p ON p.id = k.project_id \
     WHERE k.hash = $1";

impl PgDb {
    /// Inserts a project unless one has the name; whether it did.
    pub(crate) async fn insert_project(
        &self,
        id: &str,
        limits: &str,
        billable: bool,
        retention: Option<i64>,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO projects (id, limits, billable, retention_seconds, created_at) \
             VALUES ($1, $2::jsonb, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(limits)
        .bind(billable)
        .bind(retention)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Project `id`.
    pub(crate) async fn project(&self, id: &str) -> Result<Option<Project>> {
        let row = sqlx::query("SELECT * FROM projects WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| rows::project_row(&r, false)).transpose()
    }

    /// Every project, by name.
    pub(crate) async fn projects(&self) -> Result<Vec<Project>> {
        let found = sqlx::query("SELECT * FROM projects ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(|r| rows::project_row(r, false)).collect()
    }

    /// Sets the given fields; whether the project exists.
    pub(crate) async fn update_project(
        &self,
        id: &str,
        limits: Option<&str>,
        billable: Option<bool>,
        retention: Option<Option<i64>>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE projects SET limits = COALESCE($2::jsonb, limits), billable = COALESCE($3, billable), \
                 retention_seconds = CASE WHEN $4 THEN $5 ELSE retention_seconds END \
             WHERE id = $1",
        )
        .bind(id)
        .bind(limits)
        .bind(billable)
        .bind(retention.is_some())
        .bind(retention.flatten())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Inserts a key; with `retire`, also ends key `retire.0` at
    /// `retire.1` (unless it ends earlier), in the same transaction.
    pub(crate) async fn insert_api_key(
        &self,
        key: &NewApiKey,
        scopes: &str,
        limits: &str,
        now: i64,
        expires: Option<i64>,
        retire: Option<&(String, i64)>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if let Some((old, until)) = retire {
            let done = sqlx::query(
                "UPDATE api_keys SET expires_at = LEAST(COALESCE(expires_at, $2), $2) \
                 WHERE id = $1 AND revoked_at IS NULL",
            )
            .bind(old)
            .bind(until)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::ApiKeyNotFound(old.clone()));
            }
        }
        sqlx::query(
            "INSERT INTO api_keys (id, project_id, name, hash, prefix, scopes, limits, created_at, \
                 expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9)",
        )
        .bind(&key.id)
        .bind(key.project.as_str())
        .bind(&key.name)
        .bind(&key.hash)
        .bind(&key.prefix)
        .bind(scopes)
        .bind(limits)
        .bind(now)
        .bind(expires)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Key `id`.
    pub(crate) async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::api_key).transpose()
    }

    /// The keys of a project or of all, newest first.
    pub(crate) async fn api_keys(&self, project: Option<&str>) -> Result<Vec<ApiKeyRecord>> {
        let found = sqlx::query(
            "SELECT * FROM api_keys WHERE ($1::text IS NULL OR project_id = $1) \
             ORDER BY created_at DESC, id DESC",
        )
        .bind(project)
        .fetch_all(&self.pool)
        .await?;
        found.iter().map(rows::api_key).collect()
    }

    /// The key with this hash and its project.
    pub(crate) async fn api_key_by_hash(&self, hash: &str) -> Result<Option<KeyWithProject>> {
        let row = sqlx::query(KEY_WITH_PROJECT)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(KeyWithProject {
                key: rows::api_key(&r)?,
                project: rows::project_row(&r, true)?,
            })
        })
        .transpose()
    }

    /// Stamps `revoked_at` (once); whether the key exists.
    pub(crate) async fn revoke_api_key(&self, id: &str, now: i64) -> Result<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stamps `last_used_at` unless it is recent.
    pub(crate) async fn touch_api_key(&self, id: &str, now: i64, precision: i64) -> Result<()> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $2 \
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $2 - $3)",
        )
        .bind(id)
        .bind(now)
        .bind(precision)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether a key works at `now`.
    pub(crate) async fn any_active_api_key(&self, now: i64) -> Result<bool> {
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > $1)) AS found",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<bool, _>("found")?)
    }

    /// Reads, decides and writes every bucket under the write lock.
    pub(crate) async fn take_rate(
        &self,
        takes: &[RateTake],
        now_us: i64,
    ) -> Result<(bool, Vec<RateState>)> {
        let mut tx = self.pool.begin().await?;
        // Rows exist first (a new bucket at 0 reads as empty), then are
        // locked in subject order, so two replicas never wait on each other
        // in opposite orders.
        let mut order: Vec<&str> = takes.iter().map(|t| t.subject.as_str()).collect();
        order.sort_unstable();
        order.dedup();
        for subject in &order {
            sqlx::query(
                "INSERT INTO rate_buckets (subject, tat_us) VALUES ($1, 0) \
                 ON CONFLICT (subject) DO NOTHING",
            )
            .bind(subject)
            .execute(&mut *tx)
            .await?;
        }
        let locked: Vec<(String, i64)> = sqlx::query_as(
            "SELECT subject, tat_us FROM rate_buckets WHERE subject = ANY($1) \
             ORDER BY subject FOR UPDATE",
        )
        .bind(&order)
        .fetch_all(&mut *tx)
        .await?;
        let tats: Vec<Option<i64>> = takes
            .iter()
            .map(|t| {
                locked
                    .iter()
                    .find(|(s, _)| *s == t.subject)
                    .map(|(_, tat)| *tat)
            })
            .collect();
        let (new, states) = decide(takes, &tats, now_us);
        let Some(new) = new else {
            return Ok((false, states));
        };
        for (take, tat) in takes.iter().zip(new) {
            sqlx::query("UPDATE rate_buckets SET tat_us = $2 WHERE subject = $1")
                .bind(&take.subject)
                .bind(tat)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((true, states))
    }

    /// Active jobs of a project, and of one user in it.
    pub(crate) async fn active_jobs(
        &self,
        project: &str,
        user: Option<&str>,
    ) -> Result<(u64, u64)> {
        let (all, mine): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN user_id = $2 THEN 1 ELSE 0 END), 0)::bigint \
             FROM jobs WHERE project_id = $1 AND status IN ('queued', 'running')",
        )
        .bind(project)
        .bind(user)
        .fetch_one(&self.pool)
        .await?;
        Ok((all.max(0) as u64, mine.max(0) as u64))
    }
}
