//! The job system's one error type.

use easel_core::{JobId, ParamError};

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
