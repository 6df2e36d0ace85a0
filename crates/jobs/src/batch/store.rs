//! Storing a finished job's images through an outage: the object store or
//! the database may be down for a while (a restart, a failover, a network
//! blip). The worker keeps the rendered images and tries again with
//! backoff for up to [`STORE_RETRY_WINDOW`], renewing its lease meanwhile
//! so that no other worker takes the job and renders it again; only then
//! does it give the job back to the queue (bounded by
//! [`super::MAX_ATTEMPTS`]). Each try writes the objects under the same
//! image ids and removes what it wrote if the completion fails, so an
//! outage never leaves an image twice or an orphan behind.

use std::future::Future;
use std::time::{Duration, Instant};

use easel_core::ImageId;
use easel_store::{Fence, Job, StoreError};

use crate::error::JobError;
use crate::pipeline::RenderedImage;
use crate::worker::Worker;

/// How long a worker keeps trying to store a finished job's images.
pub const STORE_RETRY_WINDOW: Duration = Duration::from_secs(120);

/// The first pause between tries; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// Whether another try may succeed: the object store or the database did
/// not answer. A refused completion (the job was cancelled or taken, an
/// image is already stored) is final.
pub(crate) fn retryable(e: &JobError) -> bool {
    match e {
        JobError::Blob(StoreError::InvalidKey { .. }) => false,
        JobError::Blob(_) => true,
        JobError::Store(
            StoreError::Database(_) | StoreError::Unreachable { .. } | StoreError::Blob(_),
        ) => true,
        _ => false,
    }
}

impl Worker {
    /// [`Worker::store_images`], tried again while the failure is
    /// retryable, the window lasts and the claim is still this worker's.
    pub(super) async fn store_with_retries(
        &self,
        job: &Job,
        images: &[RenderedImage],
    ) -> Result<Vec<ImageId>, JobError> {
        let started = Instant::now();
        let mut pause = FIRST_PAUSE;
        let mut tries = 0u32;
        loop {
            tries += 1;
            let e = match self.renewing(job, self.store_images(job, images)).await {
                Ok(ids) => {
                    if tries > 1 {
                        tracing::info!(job = %job.id, tries, "images stored after an outage");
                    }
                    return Ok(ids);
                }
                Err(e) => e,
            };
            if !retryable(&e) || started.elapsed() + pause > STORE_RETRY_WINDOW {
                return Err(e);
            }
            tracing::warn!(job = %job.id, error = %e, tries, pause_ms = pause.as_millis() as u64,
                "storing images failed; trying again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
            if !self.renew(job).await {
                return Err(e);
            }
        }
    }

    /// Runs `work` while renewing the job's lease every third of it.
    async fn renewing<T>(&self, job: &Job, work: impl Future<Output = T>) -> T {
        tokio::pin!(work);
        let lease = self.inner.settings.lease;
        let mut tick = tokio::time::interval(lease / 3);
        tick.tick().await;
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tick.tick() => { self.renew(job).await; }
            }
        }
    }

    /// Renews the job's lease; `false` only when the claim is no longer
    /// this worker's (a database that does not answer is not proof of that:
    /// the lease may still hold).
    async fn renew(&self, job: &Job) -> bool {
        let lease = self.inner.settings.lease;
        let renewal = self.inner.db.renew_lease(Fence::of(job), lease);
        match tokio::time::timeout(lease / 3, renewal).await {
            Ok(Ok(still_ours)) => still_ours,
            Ok(Err(e)) => {
                tracing::warn!(job = %job.id, error = %e, "could not renew the lease while storing");
                true
            }
            Err(_) => true,
        }
    }
}
