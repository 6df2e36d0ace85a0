//! The store's one error type.

use easel_core::{ImageId, JobId, JobStatus};

/// Convenience alias for results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything that can go wrong in the database or the object store.
///
/// Each variant has a stable machine-readable [`code`](StoreError::code);
/// the server maps codes to HTTP statuses in one place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No job has this id.
    #[error("job {0} does not exist")]
    JobNotFound(JobId),

    /// No image has this id.
    #[error("image {0} does not exist")]
    ImageNotFound(ImageId),

    /// No worker is registered under this id.
    #[error("no worker `{0}` is registered (see GET /v1/admin/workers)")]
    WorkerNotFound(String),

    /// No project has this name.
    #[error("project `{0}` does not exist")]
    ProjectNotFound(String),

    /// A project with this name already exists.
    #[error("project `{0}` already exists")]
    ProjectExists(String),

    /// The alias already has a running rollout.
    #[error("model `{0}` already has a running rollout; promote or abort it first")]
    RolloutExists(String),

    /// No rollout has this id.
    #[error("rollout `{0}` does not exist")]
    RolloutNotFound(String),

    /// No file has this id.
    #[error("file `{0}` does not exist")]
    FileNotFound(String),

    /// No batch has this id.
    #[error("batch `{0}` does not exist")]
    BatchNotFound(String),

    /// The rollout has ended; it cannot change any more.
    #[error("rollout `{id}` has already ended ({state})")]
    RolloutEnded {
        /// The rollout.
        id: String,
        /// How it ended.
        state: String,
    },

    /// The image is under legal hold and cannot be deleted.
    #[error("image {0} is under legal hold")]
    LegalHold(ImageId),

    /// No API key has this id.
    #[error("API key `{0}` does not exist")]
    ApiKeyNotFound(String),

    /// No object is stored under this key.
    #[error("no object is stored under `{0}`")]
    BlobNotFound(String),

    /// An object key that is empty, absolute, or contains `.`/`..` segments.
    #[error("invalid object key `{key}`: {reason}")]
    InvalidKey {
        /// The rejected key (truncated to 200 characters).
        key: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A pagination cursor that this store did not issue.
    #[error("invalid cursor: it must be a `next_cursor` value returned by a previous page")]
    InvalidCursor,

    /// A page size outside 1..=100.
    #[error("limit must be between 1 and {max}, got {got}")]
    InvalidLimit {
        /// The requested limit.
        got: i64,
        /// The largest allowed limit.
        max: i64,
    },

    /// The job is not in a state that allows the requested change, e.g.
    /// completing a job that is not running.
    #[error("job {job} is {from}; it cannot become {to}")]
    InvalidTransition {
        /// The job.
        job: JobId,
        /// Its current status.
        from: JobStatus,
        /// The status that was asked for.
        to: JobStatus,
    },

    /// An image with the same (job, index) is already stored. Nothing of the
    /// failed operation was written.
    #[error("image {index} of job {job} is already stored")]
    DuplicateImage {
        /// The job.
        job: JobId,
        /// The index within the job.
        index: u32,
    },

    /// A row that does not decode into its record type (a value written by
    /// something other than this store, or a newer schema).
    #[error("corrupt {what} in the database: {detail}")]
    Corrupt {
        /// Which column or record.
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },

    /// A value could not be encoded for storage.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },

    /// `database.url` is not a URL this store can open: no scheme, an
    /// unknown one, or a malformed address.
    #[error("database.url `{url}` is invalid: {reason}")]
    InvalidUrl {
        /// The URL, its password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The PostgreSQL server did not answer (refused, unknown host, timed
    /// out), as opposed to answering with an error ([`StoreError::Open`]).
    #[error("cannot reach PostgreSQL at {host}: {source}")]
    Unreachable {
        /// `host:port` (or the socket folder) that was tried.
        host: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The database could not be created or opened.
    #[error("cannot open the database at {path}: {source}")]
    Open {
        /// The database file, or the PostgreSQL URL with its password
        /// replaced by `***`.
        path: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),

    /// Any other object-store error.
    #[error("object store error: {0}")]
    Blob(#[source] object_store::Error),

    /// `storage.url` is malformed, or names a scheme Easel does not serve.
    #[error("storage.url: {0}")]
    InvalidStorageUrl(String),

    /// The object store cannot be used: a missing bucket, rejected
    /// credentials, an unreachable endpoint (a startup check).
    #[error("storage.url: {0}")]
    StorageUnavailable(String),
}

impl StoreError {
    /// The stable snake_case code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::JobNotFound(_) => "job_not_found",
            StoreError::ImageNotFound(_) => "image_not_found",
            StoreError::BlobNotFound(_) => "object_not_found",
            StoreError::WorkerNotFound(_) => "worker_not_found",
            StoreError::ProjectNotFound(_) => "project_not_found",
            StoreError::ProjectExists(_) => "project_exists",
            StoreError::RolloutExists(_) => "rollout_exists",
            StoreError::RolloutNotFound(_) => "rollout_not_found",
            StoreError::FileNotFound(_) => "file_not_found",
            StoreError::BatchNotFound(_) => "batch_not_found",
            StoreError::RolloutEnded { .. } => "rollout_ended",
            StoreError::ApiKeyNotFound(_) => "api_key_not_found",
            StoreError::LegalHold(_) => "legal_hold",
            StoreError::InvalidKey { .. } => "invalid_object_key",
            StoreError::InvalidCursor => "invalid_cursor",
            StoreError::InvalidLimit { .. } => "invalid_limit",
            StoreError::InvalidTransition { .. } => "invalid_job_transition",
            StoreError::DuplicateImage { .. } => "duplicate_image",
            StoreError::Corrupt { .. } => "corrupt_record",
            StoreError::Encode { .. } => "encode_failed",
            StoreError::InvalidUrl { .. } => "invalid_database_url",
            StoreError::Unreachable { .. } => "database_unreachable",
            StoreError::Open { .. } => "database_open_failed",
            StoreError::Migrate(_) => "migration_failed",
            StoreError::Database(_) => "database_error",
            StoreError::Blob(_) => "object_store_error",
            StoreError::InvalidStorageUrl(_) => "invalid_storage_url",
            StoreError::StorageUnavailable(_) => "storage_unavailable",
        }
    }

    /// Whether the database or the object store did not answer (down,
    /// restarting, unreachable, out of connections), as opposed to
    /// refusing the request: a retry a little later may succeed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } | StoreError::StorageUnavailable(_) => true,
            StoreError::Database(e) => matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
            ),
            StoreError::Blob(e) => !matches!(
                e,
                object_store::Error::NotFound { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. }
                    | object_store::Error::NotModified { .. }
                    | object_store::Error::NotImplemented { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            ),
            _ => false,
        }
    }

    pub(crate) fn corrupt(what: &'static str, detail: impl ToString) -> Self {
        StoreError::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }
}

impl From<object_store::Error> for StoreError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { path, .. } => StoreError::BlobNotFound(path),
            object_store::Error::InvalidPath { source } => StoreError::InvalidKey {
                key: String::new(),
                reason: source.to_string(),
            },
            other => StoreError::Blob(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dependency_that_did_not_answer_is_unavailable() {
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(StoreError::StorageUnavailable("down".into()).is_unavailable());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_unavailable());
        assert!(!StoreError::JobNotFound(JobId::new()).is_unavailable());
        assert!(!StoreError::BlobNotFound("k".into()).is_unavailable());
    }

    #[test]
    fn codes_are_snake_case() {
        let errors = [
            StoreError::JobNotFound(JobId::new()),
            StoreError::InvalidCursor,
            StoreError::InvalidLimit { got: 0, max: 100 },
            StoreError::InvalidUrl {
                url: "mysql://db".into(),
                reason: "unknown scheme".into(),
            },
        ];
        for e in errors {
            assert!(e.code().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }
}
