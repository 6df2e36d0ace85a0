//! What the job handle and the worker both do to the store: fail queued
//! jobs past their deadline, read a job, append to the audit log.

use easel_core::JobId;
use easel_store::{Db, Job, StoreError};
use easel_telemetry::metrics::{JobOutcome, Metrics};

use crate::bus::Bus;
use crate::error::JobError;
use crate::events::JobEvent;

/// The `code` of a cancelled job in `easel_jobs_finished_total`.
pub(crate) const CANCELLED: &str = "cancelled";

/// Fails every queued job whose deadline has passed (code
/// `deadline_exceeded`), tells their watchers, and returns how many there
/// were.
pub(crate) async fn expire_deadlines(
    db: &Db,
    metrics: &Metrics,
    bus: &Bus,
) -> Result<usize, JobError> {
    let ids = db.expire_overdue(db.now()).await.map_err(JobError::Store)?;
    for &job_id in &ids {
        tracing::info!(job = %job_id, "job reached its deadline while queued; not run");
        if let Ok(job) = get_job(db, job_id).await {
            metrics.job_finished(
                &job.params.model,
                job.tier.as_str(),
                JobOutcome::Failed,
                "deadline_exceeded",
            );
        }
        bus.publish(JobEvent::Failed {
            job_id,
            code: "deadline_exceeded".into(),
            message: "the job was still queued at its deadline (X-Easel-Timeout) and was not run"
                .into(),
        });
    }
    Ok(ids.len())
}

/// A job by id; an unknown id is [`JobError::NotFound`].
pub(crate) async fn get_job(db: &Db, id: JobId) -> Result<Job, JobError> {
    db.get_job(id).await.map_err(|e| match e {
        StoreError::JobNotFound(id) => JobError::NotFound(id),
        other => JobError::Store(other),
    })
}

/// Appends to the audit log. A failure is logged, not returned: the action
/// itself already happened.
pub(crate) async fn append_audit(db: &Db, entry: easel_store::NewAuditEvent) {
    let event = entry.event_type.clone();
    if let Err(e) = db.append_audit(entry).await {
        tracing::warn!(event, error = %e, "could not append to the audit log");
    }
}
