//! Decoding rows into records, for both backends, and the small conversions
//! every backend shares.
//!
//! The two schemas hold the same values in the same shapes (milliseconds
//! and other integers as 64-bit integers, ids and enums as text), so a
//! record is decoded once, from any row that can answer [`Columns`]. The
//! backends differ only in how a column reads: JSON is text on SQLite and
//! jsonb on PostgreSQL, a flag is an integer on SQLite and a boolean on
//! PostgreSQL.

use chrono::{DateTime, Utc};
use easel_core::{ImageId, JobStatus, OutputFormat, ProjectId, Tier};
use serde::de::DeserializeOwned;

use crate::error::{Result, StoreError};
use crate::records::audit::AuditEvent;
use crate::records::catalog::CatalogEntry;
use crate::records::fair_share::FairShares;
use crate::records::image::Image;
use crate::records::job::Job;
use crate::records::queue::QueuedJob;
use crate::records::tenancy::{ApiKeyRecord, Project};
use crate::records::worker::{WorkerRecord, WorkerState};

/// The typed reads a row offers, by column name.
pub(crate) trait Columns {
    /// A text column.
    fn text(&self, column: &'static str) -> Result<String>;
    /// A nullable text column.
    fn opt_text(&self, column: &'static str) -> Result<Option<String>>;
    /// A 64-bit integer column.
    fn int(&self, column: &'static str) -> Result<i64>;
    /// A nullable 64-bit integer column.
    fn opt_int(&self, column: &'static str) -> Result<Option<i64>>;
    /// A nullable double-precision column.
    fn opt_float(&self, column: &'static str) -> Result<Option<f64>>;
    /// A boolean flag.
    fn flag(&self, column: &'static str) -> Result<bool>;
    /// A nullable JSON column, decoded into `T`; a value of another shape
    /// is [`StoreError::Corrupt`].
    fn opt_json<T: DeserializeOwned>(&self, column: &'static str) -> Result<Option<T>>;

    /// A double-precision column.
    fn float(&self, column: &'static str) -> Result<f64> {
        self.opt_float(column)?
            .ok_or_else(|| StoreError::corrupt(column, "NULL in a NOT NULL column"))
    }

    /// A JSON column, decoded into `T`.
    fn json<T: DeserializeOwned>(&self, column: &'static str) -> Result<T> {
        self.opt_json(column)?
            .ok_or_else(|| StoreError::corrupt(column, "NULL in a NOT NULL column"))
    }

    /// A text column parsed into `T` (ids, statuses).
    fn parsed<T: std::str::FromStr>(&self, column: &'static str) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        self.text(column)?
            .parse()
            .map_err(|e| StoreError::corrupt(column, e))
    }

    /// An integer column that must fit a u32.
    fn unsigned(&self, column: &'static str) -> Result<u32> {
        let v = self.int(column)?;
        u32::try_from(v).map_err(|_| StoreError::corrupt(column, format!("{v} is not a u32")))
    }
}

/// Milliseconds since the epoch to a time.
pub(crate) fn time(ms: i64, what: &'static str) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::corrupt(what, format!("timestamp {ms} out of range")))
}

fn opt_time(ms: Option<i64>, what: &'static str) -> Result<Option<DateTime<Utc>>> {
    ms.map(|ms| time(ms, what)).transpose()
}

/// A time to milliseconds since the epoch.
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The `priority` column of a tier: lower runs first.
pub(crate) fn priority(tier: Tier) -> i64 {
    match tier {
        Tier::Realtime => 0,
        Tier::Batch => 1,
    }
}

fn tier(s: &str) -> Result<Tier> {
    parse_tier(s, "jobs.tier")
}

fn parse_tier(s: &str, what: &'static str) -> Result<Tier> {
    match s {
        "realtime" => Ok(Tier::Realtime),
        "batch" => Ok(Tier::Batch),
        other => Err(StoreError::corrupt(what, other)),
    }
}

/// Serializes a value for a JSON column (text on SQLite; PostgreSQL casts
/// it to jsonb in the statement).
pub(crate) fn to_json<T: serde::Serialize>(value: &T, what: &'static str) -> Result<String> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode { what, source })
}

/// Serializes image ids for the `jobs.image_ids` column.
pub(crate) fn image_ids_json(ids: &[ImageId]) -> String {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    serde_json::Value::from(ids).to_string()
}

fn image_ids(row: &impl Columns) -> Result<Vec<ImageId>> {
    let ids: Vec<String> = row.json("image_ids")?;
    ids.iter()
        .map(|id| {
            id.parse()
                .map_err(|e| StoreError::corrupt("jobs.image_ids", e))
        })
        .collect()
}

/// A `model_catalog` row.
pub(crate) fn catalog_entry(row: &impl Columns) -> Result<CatalogEntry> {
    Ok(CatalogEntry {
        name: row.text("name")?,
        info: row.json("info")?,
        updated_at: time(row.int("updated_at")?, "model_catalog.updated_at")?,
    })
}

/// A `workers` row, read with the database's time as column `now_ms`.
pub(crate) fn worker(row: &impl Columns) -> Result<WorkerRecord> {
    let every_ms = row.int("heartbeat_every_ms")?;
    let heartbeat_ms = row.int("heartbeat_at")?;
    let stopped_at = opt_time(row.opt_int("stopped_at")?, "workers.stopped_at")?;
    let drain_requested = row.flag("drain_requested")?;
    let draining = row.flag("draining")? || drain_requested;
    let state = WorkerState::judge(
        stopped_at.is_some(),
        draining,
        heartbeat_ms,
        every_ms,
        row.int("now_ms")?,
    );
    Ok(WorkerRecord {
        id: row.text("id")?,
        host: row.text("host")?,
        pid: u32::try_from(row.int("pid")?).map_err(|e| StoreError::corrupt("workers.pid", e))?,
        version: row.text("version")?,
        models: row.json("models")?,
        open_circuits: row.json("open_circuits")?,
        heartbeat_every: std::time::Duration::from_millis(every_ms.max(0) as u64),
        started_at: time(row.int("started_at")?, "workers.started_at")?,
        last_heartbeat_at: time(heartbeat_ms, "workers.heartbeat_at")?,
        drain_requested,
        stopped_at,
        state,
        running_jobs: Vec::new(),
    })
}

/// The `id` column of a row, as a job id (what `RETURNING id` gives).
pub(crate) fn job_id(row: &impl Columns) -> Result<easel_core::JobId> {
    row.parsed("id")
}

/// A `jobs` row.
pub(crate) fn job(row: &impl Columns) -> Result<Job> {
    let status: JobStatus = row.parsed("status")?;
    Ok(Job {
        id: row.parsed("id")?,
        status,
        tier: tier(&row.text("tier")?)?,
        user_id: row.opt_text("user_id")?,
        end_user: row.opt_text("end_user")?,
        params: row.json("params")?,
        options: row.json("options")?,
        idempotency_key: row.opt_text("idempotency_key")?,
        attempts: row.unsigned("attempts")?,
        lease_owner: row.opt_text("lease_owner")?,
        lease_expires_at: opt_time(row.opt_int("lease_expires_at")?, "jobs.lease_expires_at")?,
        cancel_requested: row.flag("cancel_requested")?,
        error_code: row.opt_text("error_code")?,
        error_message: row.opt_text("error_message")?,
        policy: row.opt_json("policy")?,
        image_ids: image_ids(row)?,
        request_id: row.opt_text("request_id")?,
        trace_parent: row.opt_text("trace_parent")?,
        created_at: time(row.int("created_at")?, "jobs.created_at")?,
        started_at: opt_time(row.opt_int("started_at")?, "jobs.started_at")?,
        finished_at: opt_time(row.opt_int("finished_at")?, "jobs.finished_at")?,
        deadline_at: opt_time(row.opt_int("deadline_at")?, "jobs.deadline_at")?,
        staged_keys: row.json("staged_keys")?,
        project: project(row, "jobs.project_id")?,
        hold_reason: row.opt_text("hold_reason")?,
        fallback_version: row.opt_text("fallback_version")?,
        rerouted_from: row.opt_text("rerouted_from")?,
        shadow_of: row
            .opt_text("shadow_of")?
            .map(|id| id.parse().map_err(|e| StoreError::corrupt("shadow_of", e)))
            .transpose()?,
    })
}

/// The scheduler's columns of a queued `jobs` row.
pub(crate) fn queued_job(row: &impl Columns) -> Result<QueuedJob> {
    Ok(QueuedJob {
        id: row.parsed("id")?,
        tier: tier(&row.text("tier")?)?,
        user_id: share_user(&row.text("project_id")?, row.opt_text("user_id")?),
        params: row.json("params")?,
        created_at: time(row.int("created_at")?, "jobs.created_at")?,
    })
}

/// The fair-share user of a job: its user in the `default` project,
/// `project/user` in any other.
fn share_user(project: &str, user: Option<String>) -> Option<String> {
    if project == ProjectId::DEFAULT {
        user
    } else {
        Some(format!("{project}/{}", user.unwrap_or_default()))
    }
}

/// Fair-share rows, as the backends' union of `fair_share` and
/// `fair_share_vtime` returns them: `(tier, user_id, served)`, where a row
/// with a NULL `user_id` holds the tier's virtual time in `served`.
pub(crate) fn fair_shares<R: Columns>(rows: &[R]) -> Result<FairShares> {
    let mut shares = FairShares::default();
    for row in rows {
        let tier = parse_tier(&row.text("tier")?, "fair_share.tier")?;
        let value = row.int("served")?;
        let value = u64::try_from(value)
            .map_err(|_| StoreError::corrupt("fair_share.served", format!("{value} < 0")))?;
        let share = shares.tier_mut(tier);
        match row.opt_text("user_id")? {
            Some(user) => {
                share.served.insert(user, value);
            }
            None => share.vtime = value,
        }
    }
    Ok(shares)
}

/// An `images` row.
pub(crate) fn image(row: &impl Columns) -> Result<Image> {
    let format: OutputFormat = row
        .text("format")?
        .parse()
        .map_err(|e| StoreError::corrupt("images.format", e))?;
    let byte_size = row.int("byte_size")?;
    Ok(Image {
        id: row.parsed("id")?,
        job_id: row.parsed("job_id")?,
        index_in_job: row.unsigned("index_in_job")?,
        prompt: row.text("prompt")?,
        negative_prompt: row.text("negative_prompt")?,
        // Stored as the i64 with the same bits (both databases' integers
        // are signed).
        seed: row.int("seed")? as u64,
        params: row.json("params")?,
        model: row.text("model")?,
        model_hash: row.text("model_hash")?,
        sampler: row.text("sampler")?,
        schedule: row.text("schedule")?,
        steps: row.unsigned("steps")?,
        guidance: row.float("guidance")? as f32,
        width: row.unsigned("width")?,
        height: row.unsigned("height")?,
        format,
        byte_size: u64::try_from(byte_size)
            .map_err(|_| StoreError::corrupt("images.byte_size", byte_size))?,
        sha256: row.text("sha256")?,
        object_key: row.text("object_key")?,
        timings: row.json("timings")?,
        warnings: row.json("warnings")?,
        watermark_id: row.opt_text("watermark_id")?,
        perceptual_hash: row.opt_text("perceptual_hash")?,
        moderation: row.opt_json("moderation")?,
        flags: row.json("flags")?,
        request_id: row.opt_text("request_id")?,
        end_user: row.opt_text("end_user")?,
        quality_score: row.opt_float("quality_score")?.map(|s| s as f32),
        device_seconds: row.float("device_seconds")?,
        cost: row.float("cost")?,
        created_at: time(row.int("created_at")?, "images.created_at")?,
        project: project(row, "images.project_id")?,
        legal_hold: row.flag("legal_hold")?,
    })
}

/// The `project_id` column of a row.
fn project(row: &impl Columns, what: &'static str) -> Result<ProjectId> {
    row.text("project_id")?
        .parse()
        .map_err(|e| StoreError::corrupt(what, e))
}

/// A `projects` row, or the project columns of a key joined with its
/// project (`prefix` = `project_`).
pub(crate) fn project_row(row: &impl Columns, joined: bool) -> Result<Project> {
    let (id, limits, billable, retention, created) = if joined {
        (
            "project_id",
            "project_limits",
            "project_billable",
            "project_retention_seconds",
            "project_created_at",
        )
    } else {
        (
            "id",
            "limits",
            "billable",
            "retention_seconds",
            "created_at",
        )
    };
    Ok(Project {
        id: row
            .text(id)?
            .parse()
            .map_err(|e| StoreError::corrupt("projects.id", e))?,
        limits: row.json(limits)?,
        billable: row.flag(billable)?,
        retention_seconds: row
            .opt_int(retention)?
            .map(|s| {
                u64::try_from(s).map_err(|e| StoreError::corrupt("projects.retention_seconds", e))
            })
            .transpose()?,
        created_at: time(row.int(created)?, "projects.created_at")?,
    })
}

/// An `api_keys` row.
pub(crate) fn api_key(row: &impl Columns) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.text("id")?,
        project: project(row, "api_keys.project_id")?,
        name: row.text("name")?,
        prefix: row.text("prefix")?,
        scopes: row.json("scopes")?,
        limits: row.json("limits")?,
        created_at: time(row.int("created_at")?, "api_keys.created_at")?,
        expires_at: opt_time(row.opt_int("expires_at")?, "api_keys.expires_at")?,
        revoked_at: opt_time(row.opt_int("revoked_at")?, "api_keys.revoked_at")?,
        last_used_at: opt_time(row.opt_int("last_used_at")?, "api_keys.last_used_at")?,
    })
}

/// An `audit_log` row.
pub(crate) fn audit(row: &impl Columns) -> Result<AuditEvent> {
    Ok(AuditEvent {
        id: row.int("id")?,
        at: time(row.int("at")?, "audit_log.at")?,
        event_type: row.text("event_type")?,
        actor: row.opt_text("actor")?,
        subject: row.opt_text("subject")?,
        detail: row.json("detail")?,
        project: row
            .opt_text("project_id")?
            .map(|p| {
                p.parse()
                    .map_err(|e| StoreError::corrupt("audit_log.project_id", e))
            })
            .transpose()?,
    })
}
