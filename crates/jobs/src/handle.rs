//! The job system's handle: what the API side talks to (submit, cancel,
//! watch, wait, list). It runs nothing; workers ([`crate::Worker`]) do.
//!
//! [`Jobs`] is cheap to clone. Submitting persists the job *before* it
//! returns, so an acknowledged job survives a crash; a worker in this
//! process is then woken through the [`Bus`]. Reads go to the store, live
//! progress comes from the bus's [`EventHub`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use easel_core::{
    GenerationParams, JobId, JobStatus, Mask, OutputOptions, ProjectId, RgbImage, Tier,
};
use easel_store::{
    Blobs, BoundedInsert, CancelOutcome, Db, Image, InsertOutcome, Job, JobFilter, JobPage,
    StoreError,
};
use easel_telemetry::metrics::{JobOutcome, Metrics};
use tokio::sync::broadcast;

use crate::admission::{AdmissionConfig, Backlog};
use crate::bus::Bus;
use crate::error::JobError;
use crate::events::{EventHub, JobEvent, Subscription};
use crate::housekeeping::{self, CANCELLED};

/// A validated job to submit.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// What to generate.
    pub params: GenerationParams,
    /// How to encode and deliver it.
    pub output: OutputOptions,
    /// Realtime (a client waits) or batch.
    pub tier: Tier,
    /// The project that owns the job and its images.
    pub project: ProjectId,
    /// Who asked: the API key's name, or the request's `user` field when
    /// authentication is off. Idempotency keys are unique per user.
    pub user_id: Option<String>,
    /// The end-user id the request named (OpenAI's `user`), with keys on
    /// or off: recorded on the job and its images, nothing more. `None`
    /// without one.
    pub end_user: Option<String>,
    /// Client-chosen key: a retry with the same key returns the first job.
    pub idempotency_key: Option<String>,
    /// Image-to-image: the initial image, already at `params.size`.
    pub init_image: Option<RgbImage>,
    /// Inpainting: the mask of `init_image` (white: redraw), at the same
    /// size; `params.masked` must be set with it.
    pub mask: Option<Mask>,
    /// How long after submission the job stops being worth running (the
    /// client's `X-Easel-Timeout`); stored as the job's `deadline_at`.
    /// `None`: no deadline.
    pub timeout: Option<Duration>,
    /// The prompt policy's decision, recorded on the job.
    pub policy: Option<serde_json::Value>,
    /// The `x-request-id` of the request that submits it, stored on the job
    /// and its images. `None` outside a request.
    pub request_id: Option<String>,
    /// The W3C `traceparent` of the submitting request's span, when a
    /// trace is being recorded (see `easel_telemetry::trace::traceparent_of`):
    /// the worker's `job.run` span continues it. `None` otherwise.
    pub trace_parent: Option<String>,
}

struct Inner {
    db: Db,
    blobs: Blobs,
    bus: Bus,
    metrics: Metrics,
    /// Queue limits per tier and the job time assumed before a drain rate
    /// is measured.
    admission: AdmissionConfig,
    accepting: AtomicBool,
    /// Routes each new job to a version of its model, once attached.
    rollouts: std::sync::OnceLock<crate::rollouts::Rollouts>,
}

/// The job system. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

/// What a watcher of a job gets.
pub enum Watch {
    /// The job is live: its current state, then the events that follow.
    Live(Subscription),
    /// The job had already finished: its terminal event.
    Finished(JobEvent),
}

/// The object-store key of a job's initial image (edits).
pub fn init_image_key(id: JobId) -> String {
    format!("inputs/{id}.png")
}

/// The object-store key of a job's inpainting mask (a grey PNG, white:
/// redraw), beside its initial image.
pub fn mask_key(id: JobId) -> String {
    format!("inputs/{id}-mask.png")
}

/// A mask as the grey image it is stored as.
fn mask_image(mask: &Mask) -> RgbImage {
    let pixels = mask
        .values()
        .iter()
        .flat_map(|v| {
            let g = (v * 255.0).round().clamp(0.0, 255.0) as u8;
            [g, g, g]
        })
        .collect();
    RgbImage {
        width: mask.width(),
        height: mask.height(),
        pixels,
    }
}

/// The mask a stored grey image holds (its red channel).
pub(crate) fn mask_of(image: &RgbImage) -> Result<Mask, easel_core::MaskError> {
    let values: Vec<u8> = image.pixels.chunks_exact(3).map(|p| p[0]).collect();
    Mask::from_u8(image.width, image.height, &values)
}

fn png_of(image: &RgbImage) -> Result<Bytes, JobError> {
    easel_media::encode(
        image,
        easel_core::OutputFormat::Png,
        None,
        &easel_media::Metadata::none(),
    )
    .map(Bytes::from)
    .map_err(|e| {
        JobError::Param(easel_core::ParamError::new(
            "image",
            e.code(),
            e.to_string(),
        ))
    })
}

impl Jobs {
    /// The handle over this store, sharing `bus` with the workers of this
    /// process, counting into `metrics`, refusing jobs past `admission`'s
    /// queue limits.
    pub fn new(
        db: Db,
        blobs: Blobs,
        bus: Bus,
        metrics: Metrics,
        admission: AdmissionConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                blobs,
                bus,
                metrics,
                admission,
                accepting: AtomicBool::new(true),
                rollouts: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The database.
    /// Routes every job submitted from now on through `rollouts` (which
    /// version of its model runs it); a second call changes nothing.
    pub fn attach_rollouts(&self, rollouts: crate::rollouts::Rollouts) {
        let _ = self.inner.rollouts.set(rollouts);
    }

    /// The rollouts service, once attached.
    pub fn rollouts(&self) -> Option<&crate::rollouts::Rollouts> {
        self.inner.rollouts.get()
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The object store.
    pub fn blobs(&self) -> &Blobs {
        &self.inner.blobs
    }

    /// The link to this process's workers.
    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    /// The event hub.
    pub fn hub(&self) -> &EventHub {
        self.inner.bus.hub()
    }

    /// The metrics jobs are counted into.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Fails every queued job whose deadline has passed (code
    /// `deadline_exceeded`), tells their watchers, and returns how many
    /// there were. The worker does the same before it claims, so an overdue
    /// job is never run; a full tier calls this so that overdue jobs do not
    /// hold its slots, and a synchronous request at its deadline so that its
    /// job fails at once.
    pub async fn expire_deadlines(&self) -> Result<usize, JobError> {
        let inner = &self.inner;
        housekeeping::expire_deadlines(&inner.db, &inner.metrics, &inner.bus).await
    }

    /// Persists a job and wakes the worker. Returns the stored job and
    /// whether it was created now (`false`: an idempotent retry).
    ///
    /// A tier already holding its limit of queued jobs refuses the job with
    /// [`JobError::QueueFull`], whose `retry_after` comes from the drain
    /// rate; an idempotent retry of an existing job is answered anyway.
    pub async fn submit(&self, job: NewJob) -> Result<(Job, bool), JobError> {
        if !self.inner.accepting.load(Ordering::SeqCst) {
            return Err(JobError::ShuttingDown);
        }
        let limit = self.inner.admission.limit(job.tier);
        // Encoding and storing an edit's image is the expensive part of a
        // submission: skip it when the tier is already full. (The store
        // checks again, atomically, when it inserts.)
        if job.init_image.is_some() && job.idempotency_key.is_none() {
            let queued = self
                .inner
                .db
                .queue_depth(Some(job.tier))
                .await
                .map_err(JobError::Store)?;
            if queued >= limit && self.expire_deadlines().await? == 0 {
                let ahead = match job.tier {
                    Tier::Realtime => 0,
                    Tier::Batch => self
                        .inner
                        .db
                        .queue_depth(Some(Tier::Realtime))
                        .await
                        .map_err(JobError::Store)?,
                };
                return Err(self.queue_full(
                    &job.params.model,
                    job.tier,
                    Backlog {
                        queued,
                        ahead,
                        limit,
                    },
                ));
            }
        }
        let id = JobId::new();
        // The version it runs on: the alias's, or a canary's candidate
        // (with the baseline to fall back to), drawn per caller; and a
        // shadow rollout's candidate to run it on as well, drawn per job.
        let mut params = job.params;
        let routing = self.inner.rollouts.get().map(|r| {
            let caller = match &job.user_id {
                Some(user) => format!("{}/{user}", job.project.as_str()),
                None => id.to_string(),
            };
            r.route(&mut params, &caller, &id.to_string())
        });
        let (fallback_version, shadow) = routing.map_or((None, None), |r| (r.fallback, r.shadow));
        let mut init_png = None;
        if let Some(image) = &job.init_image {
            // The initial image (and its mask) go to the object store
            // first: a job row must never point at an image that is not there.
            let png = png_of(image)?;
            self.inner
                .blobs
                .put(&init_image_key(id), png.clone())
                .await
                .map_err(JobError::Blob)?;
            let mut mask_png = None;
            if let Some(mask) = &job.mask {
                let png = png_of(&mask_image(mask))?;
                if let Err(e) = self.inner.blobs.put(&mask_key(id), png.clone()).await {
                    let _ = self.inner.blobs.delete(&init_image_key(id)).await;
                    return Err(JobError::Blob(e));
                }
                mask_png = Some(png);
            }
            init_png = Some((png, mask_png));
        }
        let new = easel_store::NewJob {
            id,
            tier: job.tier,
            project: job.project,
            user_id: job.user_id,
            end_user: job.end_user,
            params,
            options: job.output,
            idempotency_key: job.idempotency_key,
            request_id: job.request_id,
            trace_parent: job.trace_parent,
            policy: job.policy,
            deadline_at: job
                .timeout
                .and_then(|t| chrono::Duration::from_std(t).ok())
                .map(|t| self.inner.db.now() + t),
            fallback_version,
            shadow_of: None,
        };
        let has_init = job.init_image.is_some();
        let outcome = self.insert_bounded(new, limit).await;
        if has_init && !matches!(outcome, Ok(InsertOutcome::Created(_))) {
            let _ = self.inner.blobs.delete(&init_image_key(id)).await;
            let _ = self.inner.blobs.delete(&mask_key(id)).await;
        }
        match outcome? {
            InsertOutcome::Created(record) => {
                self.audit("job.created", &record).await;
                self.inner
                    .bus
                    .publish(JobEvent::Queued { job_id: record.id });
                self.inner.bus.job_queued();
                if let Some(version) = shadow {
                    self.submit_shadow(&record, version, init_png).await;
                }
                Ok((record, true))
            }
            InsertOutcome::Existing(record) => Ok((record, false)),
        }
    }

    /// Stores a shadow job's initial image and mask.
    async fn put_inputs(
        &self,
        id: JobId,
        png: Bytes,
        mask: Option<Bytes>,
    ) -> Result<(), easel_store::StoreError> {
        self.inner.blobs.put(&init_image_key(id), png).await?;
        if let Some(mask) = mask {
            self.inner.blobs.put(&mask_key(id), mask).await?;
        }
        Ok(())
    }

    /// Queues the shadow of the user's job `of` on `version` (a shadow
    /// rollout's candidate): the same request and seed, in the batch tier,
    /// owned by the project `easel-shadow` with no user, no deadline and
    /// no fallback. It never delays or fails the user's job: when the
    /// batch tier is full, or the store refuses, it is skipped (counted).
    async fn submit_shadow(
        &self,
        of: &Job,
        version: String,
        init_png: Option<(Bytes, Option<Bytes>)>,
    ) {
        let id = JobId::new();
        let mut params = of.params.clone();
        params.version = Some(version);
        let model = params.model.clone();
        let counted = |outcome| {
            if let Some(r) = self.inner.rollouts.get() {
                r.shadow_counted(&model, outcome);
            }
        };
        let has_init = init_png.is_some();
        if let Some((png, mask)) = init_png
            && let Err(e) = self.put_inputs(id, png, mask).await
        {
            tracing::warn!(job = %of.id, error = %e, "shadow job skipped: its initial image was not stored");
            counted("skipped");
            return;
        }
        let new = easel_store::NewJob {
            id,
            tier: Tier::Batch,
            project: ProjectId::shadow(),
            user_id: None,
            end_user: None,
            params,
            options: of.options,
            idempotency_key: None,
            request_id: of.request_id.clone(),
            trace_parent: None,
            policy: of.policy.clone(),
            deadline_at: None,
            fallback_version: None,
            shadow_of: Some(of.id),
        };
        let limit = self.inner.admission.limit(Tier::Batch);
        let why = match self.inner.db.insert_job_bounded(new, limit).await {
            Ok(BoundedInsert::Admitted(InsertOutcome::Created(record))) => {
                self.audit("job.created", &record).await;
                self.inner
                    .bus
                    .publish(JobEvent::Queued { job_id: record.id });
                self.inner.bus.job_queued();
                counted("submitted");
                return;
            }
            Ok(BoundedInsert::QueueFull(_)) => "the batch tier is full".to_string(),
            // Without an idempotency key an insert never finds an earlier job.
            Ok(BoundedInsert::Admitted(InsertOutcome::Existing(_))) => {
                "a job with its id exists".to_string()
            }
            Err(e) => e.to_string(),
        };
        tracing::info!(job = %of.id, reason = %why, "shadow job skipped");
        if has_init {
            let _ = self.inner.blobs.delete(&init_image_key(id)).await;
            let _ = self.inner.blobs.delete(&mask_key(id)).await;
        }
        counted("skipped");
    }

    /// Inserts within the tier's limit. When the tier is full, overdue jobs
    /// that still hold slots are expired and the insert tried once more.
    async fn insert_bounded(
        &self,
        new: easel_store::NewJob,
        limit: u64,
    ) -> Result<InsertOutcome, JobError> {
        let tier = new.tier;
        let model = new.params.model.clone();
        let mut retry = Some(new.clone());
        let mut new = new;
        loop {
            match self.inner.db.insert_job_bounded(new, limit).await {
                Ok(BoundedInsert::Admitted(outcome)) => return Ok(outcome),
                Ok(BoundedInsert::QueueFull(full)) => {
                    if let Some(again) = retry.take()
                        && self.expire_deadlines().await? > 0
                    {
                        new = again;
                        continue;
                    }
                    return Err(self.queue_full(
                        &model,
                        tier,
                        Backlog {
                            queued: full.queued,
                            ahead: full.ahead,
                            limit: full.limit,
                        },
                    ));
                }
                Err(e) => return Err(JobError::Store(e)),
            }
        }
    }

    /// The refusal of a job for `model` by a full `tier`, counted as a
    /// rejected job (`queue_full`).
    fn queue_full(&self, model: &str, tier: Tier, backlog: Backlog) -> JobError {
        self.metrics()
            .job_finished(model, tier.as_str(), JobOutcome::Rejected, "queue_full");
        let now = tokio::time::Instant::now().into_std();
        let retry_after = self
            .inner
            .admission
            .retry_after(backlog, self.inner.bus.drain_rate(now));
        tracing::info!(
            tier = tier.as_str(),
            queued = backlog.queued,
            limit = backlog.limit,
            retry_after_s = retry_after,
            "queue full; job refused"
        );
        JobError::QueueFull {
            tier,
            limit: backlog.limit,
            queued: backlog.queued,
            retry_after: Duration::from_secs(retry_after),
        }
    }

    /// A job by id.
    pub async fn get(&self, id: JobId) -> Result<Job, JobError> {
        housekeeping::get_job(&self.inner.db, id).await
    }

    /// A page of jobs, newest first.
    pub async fn list(
        &self,
        status: Option<JobStatus>,
        project: Option<ProjectId>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<JobPage, JobError> {
        let filter = JobFilter {
            status,
            user_id: None,
            project,
        };
        self.inner
            .db
            .list_jobs(&filter, cursor, i64::from(limit))
            .await
            .map_err(JobError::Store)
    }

    /// An image record by id.
    pub async fn image(&self, id: easel_core::ImageId) -> Result<Option<Image>, JobError> {
        match self.inner.db.get_image(id).await {
            Ok(image) => Ok(Some(image)),
            Err(StoreError::ImageNotFound(_)) => Ok(None),
            Err(e) => Err(JobError::Store(e)),
        }
    }

    /// Cancels a job. A queued job is cancelled at once; a running one at
    /// its next step (the worker then records it). A finished job is
    /// returned unchanged.
    pub async fn cancel(&self, id: JobId) -> Result<Job, JobError> {
        let outcome = self.inner.db.cancel(id).await.map_err(|e| match e {
            StoreError::JobNotFound(id) => JobError::NotFound(id),
            other => JobError::Store(other),
        })?;
        match outcome {
            CancelOutcome::Cancelled(job) => {
                self.audit("job.cancelled", &job).await;
                tracing::info!(job = %id, "queued job cancelled");
                self.metrics().job_finished(
                    &job.params.model,
                    job.tier.as_str(),
                    JobOutcome::Cancelled,
                    CANCELLED,
                );
                self.inner.bus.publish(JobEvent::Cancelled { job_id: id });
                Ok(job)
            }
            // The store has the flag (workers in other processes see it at
            // their next lease renewal); the bus stops a worker of this
            // process at the engine's next step.
            CancelOutcome::Requested(job) => {
                self.audit("job.cancel_requested", &job).await;
                self.inner.bus.request_cancel(id);
                Ok(job)
            }
            CancelOutcome::AlreadyFinished(job) => Ok(job),
        }
    }

    /// Appends to the audit log. A failure is logged, not returned: the
    /// action itself already happened.
    async fn audit(&self, event: &str, job: &Job) {
        let mut entry = easel_store::NewAuditEvent::new(event)
            .subject(job.id)
            .project(&job.project);
        if let Some(actor) = job.user_id.clone() {
            entry = entry.actor(actor);
        }
        self.append_audit(entry).await;
    }

    /// Appends an event to the audit log; a failure is logged, not returned.
    pub async fn append_audit(&self, entry: easel_store::NewAuditEvent) {
        housekeeping::append_audit(&self.inner.db, entry).await;
    }

    /// Deletes an image (object and row; refused under legal hold) and
    /// writes its tombstone; see [`crate::retention`].
    pub async fn delete_image(
        &self,
        id: easel_core::ImageId,
        actor: Option<&str>,
    ) -> Result<Image, JobError> {
        crate::retention::delete_image(
            &self.inner.db,
            &self.inner.blobs,
            id,
            crate::retention::DeleteReason::Request,
            actor,
        )
        .await
    }

    /// One retention pass (the sweeper's), deleting up to `batch` expired
    /// images.
    pub async fn sweep_retention(&self, batch: i64) -> Result<crate::Sweep, JobError> {
        crate::retention::sweep(&self.inner.db, &self.inner.blobs, batch).await
    }

    /// Subscribes to a job's events. A job that already finished yields its
    /// terminal event.
    pub async fn watch(&self, id: JobId) -> Result<Watch, JobError> {
        let job = self.get(id).await?;
        let fallback = || terminal_or_current_event(&job);
        match self.inner.bus.hub().subscribe(id, fallback) {
            Some(sub) => Ok(Watch::Live(sub)),
            None => Ok(Watch::Finished(terminal_or_current_event(&job))),
        }
    }

    /// Waits until the job finishes and returns its final record. The
    /// store is re-read now and then in case an event was missed. During
    /// shutdown a job that is (back) in the queue ends the wait with
    /// [`JobError::ShuttingDown`]: it will run after the restart.
    pub async fn wait(&self, id: JobId) -> Result<Job, JobError> {
        loop {
            let mut sub = match self.watch(id).await? {
                Watch::Finished(_) => return self.get(id).await,
                Watch::Live(sub) => sub,
            };
            if sub.current.is_terminal() {
                return self.get(id).await;
            }
            loop {
                match tokio::time::timeout(Duration::from_secs(2), sub.receiver.recv()).await {
                    Ok(Ok(event)) if event.is_terminal() => return self.get(id).await,
                    // Put back in the queue by a shutdown: it runs after the restart.
                    Ok(Ok(JobEvent::Queued { .. })) if !self.is_accepting() => {
                        return Err(JobError::ShuttingDown);
                    }
                    Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                    Ok(Err(broadcast::error::RecvError::Closed)) => break,
                    Err(_timeout) => {
                        let job = self.get(id).await?;
                        if job.status.is_terminal() {
                            return Ok(job);
                        }
                        if job.status == JobStatus::Queued && !self.is_accepting() {
                            return Err(JobError::ShuttingDown);
                        }
                    }
                }
            }
            let job = self.get(id).await?;
            if job.status.is_terminal() {
                return Ok(job);
            }
        }
    }

    /// Stops taking new jobs (submissions fail with
    /// [`JobError::ShuttingDown`]).
    pub fn stop_accepting(&self) {
        self.inner.accepting.store(false, Ordering::SeqCst);
        self.inner.bus.wake_all();
    }

    /// Whether new jobs are taken.
    pub fn is_accepting(&self) -> bool {
        self.inner.accepting.load(Ordering::SeqCst)
    }
}

/// The event that describes a stored job's state.
pub fn terminal_or_current_event(job: &Job) -> JobEvent {
    let job_id = job.id;
    match job.status {
        JobStatus::Queued => JobEvent::Queued { job_id },
        JobStatus::Running => JobEvent::Started { job_id },
        JobStatus::Succeeded => JobEvent::Completed {
            job_id,
            image_ids: job.image_ids.clone(),
        },
        JobStatus::Failed | JobStatus::Rejected => JobEvent::Failed {
            job_id,
            code: job.error_code.clone().unwrap_or_else(|| "failed".into()),
            message: job.error_message.clone().unwrap_or_default(),
        },
        JobStatus::Cancelled => JobEvent::Cancelled { job_id },
    }
}
