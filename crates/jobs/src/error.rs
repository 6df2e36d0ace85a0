//! The job system's one error type.

use std::time::Duration;

use easel_core::{JobId, ParamError, Tier};

use crate::models::ModelLookupError;

/// What can go wrong submitting, reading or cancelling a job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No job has this id.
    #[error("job `{0}` does not exist")]
    NotFound(JobId),
    /// The job names a model that is unknown or not loaded.
    #[error(transparent)]
    Model(#[from] ModelLookupError),
    /// A parameter the model cannot serve (e.g. a size over its limit).
    #[error(transparent)]
    Param(#[from] ParamError),
    /// The system is shutting down and takes no new jobs.
    #[error("shutting down")]
    ShuttingDown,
    /// The tier already holds its limit of queued jobs; nothing was stored.
    #[error(
        "the {} queue is full ({queued} jobs queued, limit {limit}); retry in {} s",
        tier.as_str(),
        retry_after.as_secs()
    )]
    QueueFull {
        /// The full tier.
        tier: Tier,
        /// Its limit (`queue.max_queued_realtime` or `queue.max_queued_batch`).
        limit: u64,
        /// Jobs queued in it when the job was refused.
        queued: u64,
        /// When a slot is expected to free, from the current drain rate:
        /// whole seconds, 1 to 300.
        retry_after: Duration,
    },
    /// An idempotency key was reused with a different request.
    #[error("idempotency key reused with a different request")]
    IdempotencyConflict,
    /// The database failed.
    #[error("job store: {0}")]
    Store(#[source] easel_store::StoreError),
    /// The object store failed.
    #[error("image store: {0}")]
    Blob(#[source] easel_store::StoreError),
}
