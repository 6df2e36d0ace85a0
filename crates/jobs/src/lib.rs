//! Easel's job system: the handle the API submits to, the worker that runs
//! jobs on its own engine thread, and the bus between them.
//!
//! The design's steps 3–4: a durable queue in the store's `jobs` table,
//! leased by a worker that forms batches with strict priority tiers and
//! fair share between users ([`schedule`]), runs each batch as one engine
//! call ([`batch`]), and fans progress out to any number of watchers. The
//! two sides meet only in the store and, within one process, on a [`Bus`]:
//! the API side holds a [`Jobs`] (submit, get, list, cancel, watch, wait)
//! and runs nothing; a [`Worker`] (claim, render, post-process, store) is
//! built once, complete, from a [`WorkerSetup`], and never needs a `Jobs`.
//!
//! # Layout
//! - [`admission`]: queue limits per tier and the drain-rate estimate
//!   behind a full queue's `Retry-After` (pure state).
//! - [`handle`]: [`Jobs`], the cheap-to-clone handle; a job is stored
//!   before `submit` returns.
//! - [`bus`]: [`Bus`], what the handle and the workers of one process
//!   share: events, wake-ups, cancel requests, completions.
//! - [`relay`]: the bus across processes sharing a PostgreSQL database
//!   (`LISTEN`/`NOTIFY`).
//! - `housekeeping`: what both sides do to the store (deadline expiry,
//!   audit entries).
//! - [`schedule`]: the queue policy as pure state: tiers, fair share,
//!   batch formation, the batching window.
//! - [`worker`]: [`Worker`] and its [`WorkerSetup`], the loop (plan, claim,
//!   run), [`WorkerSettings`], graceful shutdown, `run_pending` for tests.
//! - [`batch`]: one claimed batch end to end: engine call, leases,
//!   deadlines, storing each job's images once.
//! - [`batches`]: user batches (the OpenAI Batch API): the driver that
//!   feeds their items to the queue as batch-tier jobs, settles them and
//!   finishes each batch with its output files.
//! - [`running`]: stopping one job of a batch without stopping the rest.
//! - [`circuit`]: the per-model circuit breaker that leaves a model whose
//!   engine keeps failing on this worker to other workers (pure state).
//! - [`worker::registry`]: registration, heartbeats and drain requests in
//!   the store's worker registry.
//! - [`engine_thread`]: the OS thread engine calls run on (never the async
//!   runtime's threads).
//! - [`pipeline`]: one job's work without a queue (engine, then encoding with
//!   metadata); `easel generate` uses it too.
//! - [`inpaint_area`]: "only masked" inpainting: a region of the initial
//!   image to the engine at the job's size, and its result pasted back.
//! - [`postprocess`]: every image after the engine, in one order: upscale,
//!   watermark, moderation, near-copy check, encode with metadata, C2PA.
//! - `recording`: what the worker counts into the metrics (stages, engine
//!   calls, outcomes, images).
//! - [`record`]: [`GenerationRecord`], the one typed record of how an
//!   image was made, and its watermark tag.
//! - [`metadata`]: the text and C2PA claim written into image files,
//!   derived from the record.
//! - [`events`]: per-job broadcast channels; late watchers get the current
//!   state first.
//! - [`models`]: served models and their load state.
//! - [`rollouts`]: model versions and guarded rollouts: routing a share
//!   of an alias's callers to a candidate version, the sequential guards
//!   that roll it back or promote it.
//! - [`review`]: which stored images enter the human review queue, and the
//!   score's agreement with the reviewers' verdicts.
//! - [`retention`]: deleting images (by request or retention, respecting
//!   legal hold) with audit tombstones, and the retention sweeper.
//! - [`error`]: the job system's error type, [`JobError`].

pub mod admission;
pub mod batch;
pub mod batches;
pub mod bus;
pub mod circuit;
pub mod engine_thread;
pub mod error;
pub mod events;
pub mod handle;
mod housekeeping;
pub mod inpaint_area;
pub mod metadata;
pub mod models;
pub mod pipeline;
pub mod postprocess;
pub mod record;
mod recording;
pub mod relay;
pub mod retention;
pub mod review;
pub mod rollouts;
pub mod running;
pub mod schedule;
pub mod worker;

#[cfg(test)]
mod testing;

pub use admission::AdmissionConfig;
pub use bus::Bus;
pub use error::JobError;
pub use events::{EventHub, JobEvent, Subscription};
pub use handle::{Jobs, NewJob, Watch, init_image_key, mask_key, terminal_or_current_event};
pub use models::{
    Generator, LoraLibrary, ModelLookupError, ModelSpec, ModelState, ModelStatus, Models,
};
pub use pipeline::{
    InitInput, RenderError, RenderedImage, check_for_model, image_requests, render,
};
pub use postprocess::{ImageModeration, Memorization, PostProcess, QualityScoring};
pub use record::GenerationRecord;
pub use retention::{DeleteReason, Sweep};
pub use rollouts::{RolloutError, Rollouts, StartRollout};
pub use schedule::{BatchKey, Candidate, Charge, Plan, Scheduler};
pub use worker::{Pricing, Worker, WorkerHandle, WorkerSettings, WorkerSetup};
