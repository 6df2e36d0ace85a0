//! Easel's persistence: the database of jobs, images and audit events, and
//! the object store that holds image bytes. It knows nothing of models or
//! HTTP; it stores what it is given and returns typed records.
//!
//! # Design
//! - **SQLite first, PostgreSQL later.** [`Db`] runs SQL checked at run time
//!   (no `query!` macros), all of it in the `sqlite` module, so a PostgreSQL
//!   backend is a second module, not a rewrite. The database runs in WAL
//!   mode with foreign keys on and a busy timeout, through **one** writer
//!   connection (SQLite is single-writer) and a pool of readers.
//! - **Migrations are embedded** (`crates/store/migrations/`) and run by
//!   [`Db::open`], which also creates the file and its folder.
//! - **Every transition is conditional**, so races (cancel vs. completion,
//!   two claims) resolve once; [`Db::complete_job_with_images`] writes a
//!   job's images and its success in one transaction, and
//!   `UNIQUE (job_id, index_in_job)` means an image is never stored twice.
//! - **Bytes live in [`Blobs`]**, an `object_store` backend chosen by URL:
//!   a local folder (`file://`) or any S3-compatible bucket (`s3://`); the
//!   database holds their keys and hashes.
//!
//! # Layout
//! - `error`: [`StoreError`], one enum with a stable [`code`](StoreError::code) per variant.
//! - `records`: plain record types ([`NewJob`], [`Job`], [`QueuedJob`], [`NewImage`], [`Image`], audit events).
//! - `sqlite`: [`Db`]: opening, migrations, and the job, image and audit repositories.
//! - `cursor`: opaque pagination cursors.
//! - `blobs`: [`Blobs`], the object store (a folder or S3, with
//!   [`S3Options`]), and [`image_key`].
//!
//! # Example
//! ```no_run
//! # async fn demo(params: easel_core::GenerationParams) -> Result<(), easel_store::StoreError> {
//! use std::time::Duration;
//! use easel_core::Tier;
//! use easel_store::{Blobs, Db, NewJob};
//!
//! let db = Db::open("easel-data/easel.db").await?;
//! let blobs = Blobs::local("easel-data/objects")?;
//! db.requeue_running_on_startup().await?;
//!
//! // At the edge: persist before acknowledging.
//! let mut new = NewJob::new(Tier::Realtime, params);
//! new.idempotency_key = Some("client-key-1".into());
//! let job = db.insert_job(new).await?.into_job();
//!
//! // In a worker: claim, generate, store bytes, then complete atomically.
//! if let Some(job) = db.claim_next_queued("worker-1", Duration::from_secs(60)).await? {
//!     // ... encode each image, `blobs.put(&key, bytes)`, build `NewImage`s ...
//!     let (_job, _images) = db.complete_job_with_images(job.id, vec![]).await?;
//! }
//! let _ = (job, blobs);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod blobs;
mod cursor;
mod error;
mod records;
mod sqlite;

pub use blobs::{Blobs, S3Options, ServerSideEncryption, image_key};
pub use error::{Result, StoreError};
pub use records::audit::{AuditEvent, AuditQuery, NewAuditEvent};
pub use records::image::{Image, NewImage, StageTiming};
pub use records::job::{
    BoundedInsert, CancelOutcome, InsertOutcome, Job, JobFilter, JobPage, NewJob, QueueFull,
};
pub use records::queue::QueuedJob;
pub use sqlite::{Db, DbOptions, MAX_AUDIT_PAGE, MAX_JOB_PAGE};
