//! Deleting images and the retention sweeper.
//!
//! A deletion removes the image's row (refused while it is under legal
//! hold) and records its object as pending in the same transaction, then
//! removes the object and the pending record, then writes a tombstone to
//! the audit log (`image.deleted`, with the project, the job, the reason
//! and the file's SHA-256, never the prompt). The sweeper, run by every
//! process with a worker, deletes images past their project's retention
//! in bounded batches and retries object removals that failed; several
//! sweepers on one database are safe (each deletion happens once).

use std::time::Duration;

use easel_core::ImageId;
use easel_store::{Blobs, Db, Image, NewAuditEvent};

use crate::error::JobError;
use crate::housekeeping;

/// Why an image was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// `DELETE /v1/images/{id}`.
    Request,
    /// Its project's retention ran out.
    Retention,
}

impl DeleteReason {
    fn as_str(self) -> &'static str {
        match self {
            DeleteReason::Request => "request",
            DeleteReason::Retention => "retention",
        }
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Images deleted past retention.
    pub expired: usize,
    /// Objects of earlier deletions removed now.
    pub retried: usize,
}

/// Deletes image `id` (see the module); `actor` is who asked.
pub async fn delete_image(
    db: &Db,
    blobs: &Blobs,
    id: ImageId,
    reason: DeleteReason,
    actor: Option<&str>,
) -> Result<Image, JobError> {
    let image = db.delete_image(id).await.map_err(JobError::Store)?;
    let removed = remove_object(db, blobs, &image.object_key).await;
    let mut entry = NewAuditEvent::new("image.deleted")
        .subject(image.id)
        .project(&image.project)
        .detail(serde_json::json!({
            "reason": reason.as_str(),
            "job_id": image.job_id.to_string(),
            "sha256": image.sha256,
            "bytes": image.byte_size,
            "created_at": image.created_at.timestamp(),
            "object_removed": removed,
        }));
    if let Some(actor) = actor {
        entry = entry.actor(actor);
    }
    housekeeping::append_audit(db, entry).await;
    tracing::info!(image = %image.id, project = %image.project, reason = reason.as_str(), "image deleted");
    Ok(image)
}

/// Removes an object and its pending record; `false` (logged) when the
/// object store refused: the sweeper tries again.
async fn remove_object(db: &Db, blobs: &Blobs, key: &str) -> bool {
    match blobs.delete(key).await {
        Ok(()) => {
            if let Err(e) = db.object_deleted(key).await {
                tracing::warn!(key, error = %e, "object removed; its pending record stays");
            }
            true
        }
        Err(e) => {
            tracing::warn!(key, error = %e, "could not remove a deleted image's object; will retry");
            false
        }
    }
}

/// One pass: retries pending object removals, then deletes up to `batch`
/// images past retention.
pub async fn sweep(db: &Db, blobs: &Blobs, batch: i64) -> Result<Sweep, JobError> {
    let mut done = Sweep::default();
    for key in db.pending_deletions(batch).await.map_err(JobError::Store)? {
        if remove_object(db, blobs, &key).await {
            done.retried += 1;
        }
    }
    for image in db.expired_images(batch).await.map_err(JobError::Store)? {
        match delete_image(db, blobs, image.id, DeleteReason::Retention, None).await {
            Ok(_) => done.expired += 1,
            // Held or deleted since it was listed: nothing to do.
            Err(JobError::Store(
                easel_store::StoreError::LegalHold(_) | easel_store::StoreError::ImageNotFound(_),
            )) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Sweeps every `every` until the task is dropped; errors are logged and
/// the next pass tries again.
pub async fn run_sweeper(db: Db, blobs: Blobs, every: Duration, batch: i64) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sweep(&db, &blobs, batch).await {
            Ok(done) if done.expired + done.retried > 0 => {
                tracing::info!(
                    expired = done.expired,
                    retried = done.retried,
                    "retention sweep"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; retrying later"),
        }
    }
}
