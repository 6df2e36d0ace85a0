//! Easel's persistence: the database of jobs, images and audit events, and
//! the object store that holds image bytes. It knows nothing of models or
//! HTTP; it stores what it is given and returns typed records.
//!
//! # Design
//! - **One face, two backends.** [`Db`] is the only public handle; inside
//!   it is SQLite (one file, one process or a few on one host) or
//!   PostgreSQL (one server shared by API and worker replicas), chosen by
//!   [`Db::connect`]'s URL (`sqlite://…`, `postgres://…`). Each backend has
//!   its own SQL, checked at run time (no `query!` macros); both schemas
//!   hold the same shapes (integer milliseconds, text ids), so rows decode
//!   through one function per record and pagination cursors are identical.
//! - **SQLite** runs in WAL mode with foreign keys on and a busy timeout,
//!   through **one** writer connection (SQLite is single-writer) and a
//!   pool of readers. **PostgreSQL** claims with `FOR UPDATE SKIP LOCKED`
//!   and admits bounded inserts under a per-tier advisory lock, so any
//!   number of processes share one queue.
//! - **Fair share is in the database**, not in a worker's memory: the
//!   scheduler's counters ([`FairShares`]) are read before each plan and
//!   charged after each claim in one transaction per tier (on PostgreSQL
//!   under a per-tier advisory lock of its own), so every worker, in any
//!   process, serves users in one fair order.
//! - **Time comes from the `Db`'s clock**, never the database's, on both
//!   backends (tests move a [`easel_core::ManualClock`] past a lease).
//! - **Migrations are embedded**, one folder per backend
//!   (`crates/store/migrations/{sqlite,postgres}/`), and run on opening;
//!   [`Db::open`] also creates the SQLite file and its folder.
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
//! - `records`: plain record types ([`NewJob`], [`Job`], [`QueuedJob`], [`NewImage`], [`Image`], audit events, the worker registry's [`NewWorker`] and [`WorkerRecord`]) and the fair-share arithmetic ([`FairShare`]).
//! - `url`: parsing `database.url` into a backend and a location.
//! - `db`: [`Db`]: opening by URL or path, and every repository method, checked once and handed to a backend.
//! - `rows`: decoding rows of either backend into records.
//! - `sqlite`: the SQLite backend: pools, migrations, and its SQL.
//! - `postgres`: the PostgreSQL backend: pool, migrations, and its SQL.
//! - `cursor`: opaque pagination cursors.
//! - `blobs`: [`Blobs`], the object store (a folder or S3, with
//!   [`S3Options`]), and [`image_key`].
//!
//! # Example
//! ```no_run
//! # async fn demo(params: easel_core::GenerationParams) -> Result<(), easel_store::StoreError> {
//! use std::time::Duration;
//! use easel_core::Tier;
//! use easel_store::{Blobs, Db, Fence, NewJob};
//!
//! // Or "postgres://easel@db.internal/easel" for several replicas.
//! let db = Db::connect("sqlite://easel-data/easel.db").await?;
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
//!     let (_job, _images) = db.complete_job_with_images(Fence::of(&job), vec![]).await?;
//! }
//! let _ = (job, blobs);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod blobs;
mod cursor;
mod db;
mod error;
mod postgres;
mod records;
mod rows;
mod sqlite;
mod url;

pub use blobs::{Blobs, S3Options, ServerSideEncryption, image_key};
pub use db::{
    CHANNEL_CANCEL, CHANNEL_QUEUED, COST_SAMPLE, Db, DbOptions, HOLD_BUDGET,
    LAST_USED_PRECISION_MS, Listener, MAX_AUDIT_PAGE, MAX_BATCH_PAGE, MAX_IMAGE_PAGE, MAX_JOB_PAGE,
    MAX_SWEEP_BATCH, PromptSample, RateDecision, StoredMoments, WORKER_RETENTION_MS, periods,
};
pub use error::{Result, StoreError};
pub use records::audit::{AuditEvent, AuditQuery, NewAuditEvent};
pub use records::batch::{
    BatchItem, BatchRecord, BatchSpend, BatchStatus, FileRecord, ItemOutcome, ItemStatus,
    ManifestImage, ManifestRow, NewBatch, NewBatchItem, NewFile, QaImage, SettledItem, Webhook,
};
pub use records::catalog::CatalogEntry;
pub use records::fair_share::{FairShare, FairShares};
pub use records::image::{Image, ImageFilter, ImagePage, NewImage, StageTiming};
pub use records::job::{
    BoundedInsert, CancelOutcome, Fence, InsertOutcome, Job, JobFilter, JobPage, NewJob, QueueFull,
};
pub use records::notify::Notification;
pub use records::queue::QueuedJob;
pub use records::review::{NewReviewItem, ReviewCounts, ReviewItem, VerdictRefusal};
pub use records::rollout::{
    ModelVersion, NewRollout, Observation, Rollout, RolloutEnd, RolloutState,
};
pub use records::tenancy::{
    ApiKeyRecord, KeyWithProject, NewApiKey, NewProject, Project, ProjectChange, RateState,
    RateTake, gcra,
};
pub use records::usage::{OverQuota, Spend, UsageGroup, UsageQuery, UsageRow};
pub use records::worker::{MISSED_HEARTBEATS, NewWorker, WorkerBeat, WorkerRecord, WorkerState};
