//! Decoding rows into records, and the small conversions both directions share.

use chrono::{DateTime, Utc};
use easel_core::{ImageId, JobStatus, OutputFormat, Tier};
use serde::de::DeserializeOwned;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::error::{Result, StoreError};
use crate::records::audit::AuditEvent;
use crate::records::image::Image;
use crate::records::job::Job;
use crate::records::queue::QueuedJob;

/// Milliseconds since the epoch to a time.
pub(super) fn time(ms: i64, what: &'static str) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::corrupt(what, format!("timestamp {ms} out of range")))
}

fn opt_time(ms: Option<i64>, what: &'static str) -> Result<Option<DateTime<Utc>>> {
    ms.map(|ms| time(ms, what)).transpose()
}

/// A time to milliseconds since the epoch.
pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The `priority` column of a tier: lower runs first.
pub(super) fn priority(tier: Tier) -> i64 {
    match tier {
        Tier::Realtime => 0,
        Tier::Batch => 1,
    }
}

fn tier(s: &str) -> Result<Tier> {
    match s {
        "realtime" => Ok(Tier::Realtime),
        "batch" => Ok(Tier::Batch),
        other => Err(StoreError::corrupt("jobs.tier", other)),
    }
}

/// Serializes a value for a JSON column.
pub(super) fn to_json<T: serde::Serialize>(value: &T, what: &'static str) -> Result<String> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode { what, source })
}

fn json<T: DeserializeOwned>(row: &SqliteRow, column: &'static str) -> Result<T> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::corrupt(column, e))
}

fn opt_json<T: DeserializeOwned>(row: &SqliteRow, column: &'static str) -> Result<Option<T>> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::corrupt(column, e)))
        .transpose()
}

fn parsed<T: std::str::FromStr>(row: &SqliteRow, column: &'static str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    let text: String = row.try_get(column)?;
    text.parse().map_err(|e| StoreError::corrupt(column, e))
}

fn unsigned(row: &SqliteRow, column: &'static str) -> Result<u32> {
    let v: i64 = row.try_get(column)?;
    u32::try_from(v).map_err(|_| StoreError::corrupt(column, format!("{v} is not a u32")))
}

fn image_ids(row: &SqliteRow) -> Result<Vec<ImageId>> {
    let ids: Vec<String> = json(row, "image_ids")?;
    ids.iter()
        .map(|id| {
            id.parse()
                .map_err(|e| StoreError::corrupt("jobs.image_ids", e))
        })
        .collect()
}

/// Serializes image ids for the `jobs.image_ids` column.
pub(super) fn image_ids_json(ids: &[ImageId]) -> String {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    serde_json::Value::from(ids).to_string()
}

/// A `jobs` row.
pub(super) fn job(row: &SqliteRow) -> Result<Job> {
    let status: JobStatus = parsed(row, "status")?;
    let tier_text: String = row.try_get("tier")?;
    Ok(Job {
        id: parsed(row, "id")?,
        status,
        tier: tier(&tier_text)?,
        user_id: row.try_get("user_id")?,
        params: json(row, "params")?,
        options: json(row, "options")?,
        idempotency_key: row.try_get("idempotency_key")?,
        attempts: unsigned(row, "attempts")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: opt_time(row.try_get("lease_expires_at")?, "jobs.lease_expires_at")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        policy: opt_json(row, "policy")?,
        image_ids: image_ids(row)?,
        request_id: row.try_get("request_id")?,
        trace_parent: row.try_get("trace_parent")?,
        created_at: time(row.try_get("created_at")?, "jobs.created_at")?,
        started_at: opt_time(row.try_get("started_at")?, "jobs.started_at")?,
        finished_at: opt_time(row.try_get("finished_at")?, "jobs.finished_at")?,
        deadline_at: opt_time(row.try_get("deadline_at")?, "jobs.deadline_at")?,
    })
}

/// The scheduler's columns of a queued `jobs` row.
pub(super) fn queued_job(row: &SqliteRow) -> Result<QueuedJob> {
    let tier_text: String = row.try_get("tier")?;
    Ok(QueuedJob {
        id: parsed(row, "id")?,
        tier: tier(&tier_text)?,
        user_id: row.try_get("user_id")?,
        params: json(row, "params")?,
        created_at: time(row.try_get("created_at")?, "jobs.created_at")?,
    })
}

/// An `images` row.
pub(super) fn image(row: &SqliteRow) -> Result<Image> {
    let format: String = row.try_get("format")?;
    let format: OutputFormat = format
        .parse()
        .map_err(|e| StoreError::corrupt("images.format", e))?;
    let byte_size: i64 = row.try_get("byte_size")?;
    Ok(Image {
        id: parsed(row, "id")?,
        job_id: parsed(row, "job_id")?,
        index_in_job: unsigned(row, "index_in_job")?,
        prompt: row.try_get("prompt")?,
        negative_prompt: row.try_get("negative_prompt")?,
        // Stored as the i64 with the same bits (SQLite integers are signed).
        seed: row.try_get::<i64, _>("seed")? as u64,
        params: json(row, "params")?,
        model: row.try_get("model")?,
        model_hash: row.try_get("model_hash")?,
        sampler: row.try_get("sampler")?,
        schedule: row.try_get("schedule")?,
        steps: unsigned(row, "steps")?,
        guidance: row.try_get::<f64, _>("guidance")? as f32,
        width: unsigned(row, "width")?,
        height: unsigned(row, "height")?,
        format,
        byte_size: u64::try_from(byte_size)
            .map_err(|_| StoreError::corrupt("images.byte_size", byte_size))?,
        sha256: row.try_get("sha256")?,
        object_key: row.try_get("object_key")?,
        timings: json(row, "timings")?,
        warnings: json(row, "warnings")?,
        watermark_id: row.try_get("watermark_id")?,
        perceptual_hash: row.try_get("perceptual_hash")?,
        moderation: opt_json(row, "moderation")?,
        flags: json(row, "flags")?,
        request_id: row.try_get("request_id")?,
        quality_score: row
            .try_get::<Option<f64>, _>("quality_score")?
            .map(|s| s as f32),
        created_at: time(row.try_get("created_at")?, "images.created_at")?,
    })
}

/// An `audit_log` row.
pub(super) fn audit(row: &SqliteRow) -> Result<AuditEvent> {
    Ok(AuditEvent {
        id: row.try_get("id")?,
        at: time(row.try_get("at")?, "audit_log.at")?,
        event_type: row.try_get("event_type")?,
        actor: row.try_get("actor")?,
        subject: row.try_get("subject")?,
        detail: json(row, "detail")?,
    })
}
