//! Model versions, aliases, rollouts and what a rollout's guards read.
//!
//! One SQL text serves both backends here: `$N` placeholders, which
//! SQLite accepts as numbered parameters, plain types, and JSON kept as
//! text, so nothing below differs between SQLite and PostgreSQL but the
//! pool the statement runs on.

use super::{Backend, Db, on_pool};
use crate::error::{Result, StoreError};
use crate::records::job::{Fence, Job};
use crate::records::rollout::{ModelVersion, NewRollout, Observation, Rollout, RolloutEnd};
use crate::rows::{self, Columns};

const INSERT_VERSION: &str = "INSERT INTO model_versions \
     (name, version, path, architecture, registered_by, registered_at) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name, version) DO NOTHING";

const VERSIONS: &str = "SELECT * FROM model_versions \
     WHERE ($1 IS NULL OR name = $1) ORDER BY name, registered_at, version";

const VERSION: &str = "SELECT * FROM model_versions WHERE name = $1 AND version = $2";

const ALIASES: &str = "SELECT name, version FROM model_aliases ORDER BY name";

const SET_ALIAS: &str = "INSERT INTO model_aliases (name, version, updated_at) \
     VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at";

const INSERT_ROLLOUT: &str = "INSERT INTO rollouts \
     (id, model, baseline, candidate, mode, percent, guards, auto_promote, state, created_by, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'running', $9, $10) RETURNING *";

const ROLLOUT: &str = "SELECT * FROM rollouts WHERE id = $1";

const ROLLOUTS: &str = "SELECT * FROM rollouts \
     WHERE ($1 IS NULL OR model = $1) AND (NOT $2 OR state = 'running') \
     ORDER BY created_at DESC, id DESC LIMIT $3";

// A rollout that ends without promotion gives the candidate no more
// traffic: its share becomes 0 in the same write.
const END_ROLLOUT: &str = "UPDATE rollouts \
     SET state = $2, reason = $3, decision = $4, ended_at = $5, \
         percent = CASE WHEN $2 = 'promoted' THEN percent ELSE 0 END \
     WHERE id = $1 AND state = 'running' RETURNING *";

// Every finished job of the alias since the rollout began that either
// version made, or that the candidate failed and the baseline then made.
const OBSERVATIONS: &str = "SELECT j.model_version, j.rerouted_from, j.reroute_code, j.status, \
         j.error_code, j.started_at, j.finished_at, \
         (SELECT AVG(i.quality_score) FROM images i WHERE i.job_id = j.id) AS quality \
     FROM jobs j \
     WHERE j.model = $1 AND j.created_at >= $2 AND j.model_version IS NOT NULL \
       AND j.status IN ('succeeded', 'failed', 'rejected') \
       AND (j.model_version IN ($3, $4) OR j.rerouted_from = $4)";

// A job the candidate failed goes back to the queue on its fallback
// version, fenced by its attempt like any requeue.
// (The same statement but for PostgreSQL's JSONB cast.)
const REROUTE_SQLITE: &str = "UPDATE jobs \
     SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, \
         model_version = $3, params = $4, fallback_version = NULL, \
         rerouted_from = $5, reroute_code = $6 \
     WHERE id = $1 AND status = 'running' AND attempts = $2 RETURNING *";
const REROUTE_PG: &str = "UPDATE jobs \
     SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, \
         model_version = $3, params = $4::jsonb, fallback_version = NULL, \
         rerouted_from = $5, reroute_code = $6 \
     WHERE id = $1 AND status = 'running' AND attempts = $2 RETURNING *";

fn version_row(row: &impl Columns) -> Result<ModelVersion> {
    Ok(ModelVersion {
        name: row.text("name")?,
        version: row.text("version")?,
        path: row.text("path")?,
        architecture: row.opt_text("architecture")?,
        registered_by: row.opt_text("registered_by")?,
        registered_at: rows::time(row.int("registered_at")?, "model_versions.registered_at")?,
    })
}

fn json_text(row: &impl Columns, column: &'static str) -> Result<Option<serde_json::Value>> {
    row.opt_text(column)?
        .map(|t| {
            serde_json::from_str(&t).map_err(|e| StoreError::corrupt("rollout JSON", e.to_string()))
        })
        .transpose()
}

fn rollout_row(row: &impl Columns) -> Result<Rollout> {
    let state: String = row.text("state")?;
    Ok(Rollout {
        id: row.text("id")?,
        model: row.text("model")?,
        baseline: row.text("baseline")?,
        candidate: row.text("candidate")?,
        mode: row.text("mode")?,
        percent: row.float("percent")?,
        guards: json_text(row, "guards")?.unwrap_or_default(),
        auto_promote: row.flag("auto_promote")?,
        state: state
            .parse()
            .map_err(|e: String| StoreError::corrupt("rollouts.state", e))?,
        reason: row.opt_text("reason")?,
        decision: json_text(row, "decision")?,
        created_by: row.opt_text("created_by")?,
        created_at: rows::time(row.int("created_at")?, "rollouts.created_at")?,
        ended_at: row
            .opt_int("ended_at")?
            .map(|t| rows::time(t, "rollouts.ended_at"))
            .transpose()?,
    })
}

fn observation_row(row: &impl Columns) -> Result<Observation> {
    let run_ms = match (row.opt_int("started_at")?, row.opt_int("finished_at")?) {
        (Some(s), Some(f)) => Some(f - s),
        _ => None,
    };
    let rerouted_from = match (
        row.opt_text("rerouted_from")?,
        row.opt_text("reroute_code")?,
    ) {
        (Some(v), code) => Some((v, code.unwrap_or_default())),
        (None, _) => None,
    };
    Ok(Observation {
        version: row.text("model_version")?,
        rerouted_from,
        status: row.text("status")?,
        error_code: row.opt_text("error_code")?,
        run_ms,
        quality: row.opt_float("quality")?,
    })
}

/// A unique-index violation (the one running rollout per alias).
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Db {
    /// Records a version of model `name` unless it is known; whether it
    /// was new.
    pub async fn record_model_version(
        &self,
        name: &str,
        version: &str,
        path: &str,
        architecture: Option<&str>,
        registered_by: Option<&str>,
    ) -> Result<bool> {
        let now = self.now_ms();
        let inserted = on_pool!(self, write, p => sqlx::query(INSERT_VERSION)
            .bind(name)
            .bind(version)
            .bind(path)
            .bind(architecture)
            .bind(registered_by)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected());
        Ok(inserted == 1)
    }

    /// The versions of model `name` (`None`: of every model), oldest first.
    pub async fn model_versions(&self, name: Option<&str>) -> Result<Vec<ModelVersion>> {
        on_pool!(self, read, p => {
            let found = sqlx::query(VERSIONS).bind(name).fetch_all(p).await?;
            found.iter().map(version_row).collect()
        })
    }

    /// One version of model `name`.
    pub async fn model_version(&self, name: &str, version: &str) -> Result<Option<ModelVersion>> {
        on_pool!(self, read, p => {
            let found = sqlx::query(VERSION).bind(name).bind(version).fetch_optional(p).await?;
            found.as_ref().map(version_row).transpose()
        })
    }

    /// Every alias that points at a promoted version: `(name, version)`.
    pub async fn model_aliases(&self) -> Result<Vec<(String, String)>> {
        on_pool!(self, read, p => {
            let found = sqlx::query(ALIASES).fetch_all(p).await?;
            found
                .iter()
                .map(|r| Ok((r.text("name")?, r.text("version")?)))
                .collect()
        })
    }

    /// Points alias `name` at `version`.
    pub async fn set_model_alias(&self, name: &str, version: &str) -> Result<()> {
        let now = self.now_ms();
        on_pool!(self, write, p => {
            sqlx::query(SET_ALIAS)
                .bind(name)
                .bind(version)
                .bind(now)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// Starts a rollout; [`StoreError::RolloutExists`] when its alias
    /// already has a running one.
    pub async fn create_rollout(&self, new: &NewRollout) -> Result<Rollout> {
        let now = self.now_ms();
        let guards = rows::to_json(&new.guards, "rollouts.guards")?;
        let outcome = on_pool!(self, write, p => sqlx::query(INSERT_ROLLOUT)
            .bind(&new.id)
            .bind(&new.model)
            .bind(&new.baseline)
            .bind(&new.candidate)
            .bind(&new.mode)
            .bind(new.percent)
            .bind(guards)
            .bind(new.auto_promote)
            .bind(&new.created_by)
            .bind(now)
            .fetch_one(p)
            .await
            .map(|r| rollout_row(&r)));
        match outcome {
            Ok(rollout) => rollout,
            Err(e) if is_unique_violation(&e) => Err(StoreError::RolloutExists(new.model.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// Rollout `id`.
    pub async fn rollout(&self, id: &str) -> Result<Rollout> {
        let found = on_pool!(self, read, p => {
            let row = sqlx::query(ROLLOUT).bind(id).fetch_optional(p).await?;
            row.as_ref().map(rollout_row).transpose()?
        });
        found.ok_or_else(|| StoreError::RolloutNotFound(id.chars().take(64).collect()))
    }

    /// Rollouts, newest first: of one alias or all, only the running ones
    /// or all, at most `limit`.
    pub async fn rollouts(
        &self,
        model: Option<&str>,
        running_only: bool,
        limit: u32,
    ) -> Result<Vec<Rollout>> {
        on_pool!(self, read, p => {
            let found = sqlx::query(ROLLOUTS)
                .bind(model)
                .bind(running_only)
                .bind(i64::from(limit))
                .fetch_all(p)
                .await?;
            found.iter().map(rollout_row).collect()
        })
    }

    /// Ends a running rollout (and, for a promotion, points its alias at
    /// the candidate in the same transaction). A rollout that already
    /// ended is [`StoreError::RolloutEnded`]: two evaluators, or an
    /// evaluator and an operator, never both end it.
    pub async fn end_rollout(&self, id: &str, end: &RolloutEnd) -> Result<Rollout> {
        let now = self.now_ms();
        let decision = end
            .decision
            .as_ref()
            .map(|d| rows::to_json(d, "rollouts.decision"))
            .transpose()?;
        let ended = on_pool!(self, write, p => {
            let mut tx = p.begin().await?;
            let row = sqlx::query(END_ROLLOUT)
                .bind(id)
                .bind(end.state.as_str())
                .bind(&end.reason)
                .bind(decision)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            let ended = row.as_ref().map(rollout_row).transpose()?;
            if let (Some(r), true) = (&ended, end.promote) {
                sqlx::query(SET_ALIAS)
                    .bind(&r.model)
                    .bind(&r.candidate)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            ended
        });
        match ended {
            Some(r) => Ok(r),
            None => {
                let current = self.rollout(id).await?;
                Err(StoreError::RolloutEnded {
                    id: current.id,
                    state: current.state.as_str().to_string(),
                })
            }
        }
    }

    /// The finished jobs of alias `model` created since `since_ms` that
    /// `baseline` or `candidate` made, or that `candidate` failed and
    /// another version then made.
    pub async fn rollout_observations(
        &self,
        model: &str,
        since: chrono::DateTime<chrono::Utc>,
        baseline: &str,
        candidate: &str,
    ) -> Result<Vec<Observation>> {
        on_pool!(self, read, p => {
            let found = sqlx::query(OBSERVATIONS)
                .bind(model)
                .bind(rows::ms(since))
                .bind(baseline)
                .bind(candidate)
                .fetch_all(p)
                .await?;
            found.iter().map(observation_row).collect()
        })
    }

    /// Puts a running job the candidate version failed back in the queue
    /// on `fallback` (its params' version too), recording the candidate
    /// and the failure's code. `None` when the job is no longer this
    /// attempt's.
    pub async fn reroute_job(
        &self,
        fence: Fence,
        fallback: &str,
        params: &easel_core::GenerationParams,
        from: &str,
        code: &str,
    ) -> Result<Option<Job>> {
        let params = rows::to_json(params, "job params")?;
        let sql = match &self.backend {
            Backend::Sqlite(_) => REROUTE_SQLITE,
            Backend::Postgres(_) => REROUTE_PG,
        };
        on_pool!(self, write, p => {
            let row = sqlx::query(sql)
                .bind(fence.job.to_string())
                .bind(i64::from(fence.attempt))
                .bind(fallback)
                .bind(params)
                .bind(from)
                .bind(code)
                .fetch_optional(p)
                .await?;
            row.as_ref().map(rows::job).transpose()
        })
    }
}
