//! The job system's handle: what the server talks to.
//!
//! [`Jobs`] is cheap to clone. Submitting persists the job *before* it
//! returns, so an acknowledged job survives a crash; the worker is then woken
//! through a [`Notify`]. Reads go to the store, live progress to the
//! [`EventHub`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use easel_core::{GenerationParams, JobId, JobStatus, OutputOptions, RgbImage, Tier};
use easel_engine::CancelToken;
use easel_store::{
    Blobs, BoundedInsert, CancelOutcome, Db, Image, InsertOutcome, Job, JobFilter, JobPage,
    StoreError,
};
use easel_telemetry::metrics::{JobOutcome, Metrics};
use tokio::sync::{Notify, broadcast};

use crate::admission::{Admission, AdmissionConfig, Backlog};
use crate::error::JobError;
use crate::events::{EventHub, JobEvent, Subscription};
use crate::models::Models;
use crate::postprocess::PostProcess;

/// The `code` of a cancelled job in `easel_jobs_finished_total`.
pub(crate) const CANCELLED: &str = "cancelled";

/// A validated job to submit.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// What to generate.
    pub params: GenerationParams,
    /// How to encode and deliver it.
    pub output: OutputOptions,
    /// Realtime (a client waits) or batch.
    pub tier: Tier,
    /// Who asked: the API key's name, or the request's `user` field when
    /// authentication is off. Idempotency keys are unique per user.
    pub user_id: Option<String>,
    /// Client-chosen key: a retry with the same key returns the first job.
    pub idempotency_key: Option<String>,
    /// Image-to-image: the initial image, already at `params.size`.
    pub init_image: Option<RgbImage>,
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

/// Why the worker cancelled a running job's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelReason {
    /// Its owner asked (DELETE, or a synchronous client left).
    User,
    /// Graceful shutdown ran out of time: put it back in the queue.
    Shutdown,
    /// The store gave the job's lease to someone else: drop the work.
    LeaseLost,
    /// Its deadline passed while it ran: fail it with `deadline_exceeded`.
    Deadline,
}

/// A job this process's worker is running.
pub(crate) struct Running {
    /// The token of the job's batch (shared by its companions).
    pub(crate) token: CancelToken,
    /// Why the job was stopped, once it was.
    pub(crate) reason: Option<CancelReason>,
    /// The batch it runs in.
    pub(crate) batch: u64,
}

pub(crate) struct Inner {
    pub(crate) db: Db,
    pub(crate) blobs: Blobs,
    pub(crate) models: Models,
    pub(crate) hub: EventHub,
    pub(crate) wake: Notify,
    pub(crate) accepting: AtomicBool,
    pub(crate) running: Mutex<HashMap<JobId, Running>>,
    /// Queue limits per tier and the drain-rate estimate behind `Retry-After`.
    pub(crate) admission: Mutex<Admission>,
    /// What happens to every image after the engine.
    pub(crate) post: Mutex<Arc<PostProcess>>,
    /// Where jobs, stages and images are counted ([`Jobs::attach_metrics`]).
    pub(crate) metrics: Mutex<Metrics>,
}

/// The job system. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    pub(crate) inner: Arc<Inner>,
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

impl Jobs {
    /// A job system over this store and these models. No worker runs until
    /// [`Jobs::start_worker`].
    pub fn new(db: Db, blobs: Blobs, models: Models) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                blobs,
                models,
                hub: EventHub::new(),
                wake: Notify::new(),
                accepting: AtomicBool::new(true),
                running: Mutex::new(HashMap::new()),
                admission: Mutex::new(Admission::default()),
                post: Mutex::new(Arc::new(PostProcess::default())),
                metrics: Mutex::new(Metrics::default()),
            }),
        }
    }

    /// The served models.
    pub fn models(&self) -> &Models {
        &self.inner.models
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The object store.
    pub fn blobs(&self) -> &Blobs {
        &self.inner.blobs
    }

    /// The event hub.
    pub fn hub(&self) -> &EventHub {
        &self.inner.hub
    }

    /// Puts jobs left `running` by a crash back in the queue. Call once at
    /// startup, before the worker starts.
    pub async fn recover(&self) -> Result<u64, JobError> {
        let ids = self
            .inner
            .db
            .requeue_running_on_startup()
            .await
            .map_err(JobError::Store)?;
        if !ids.is_empty() {
            tracing::warn!(
                jobs = ids.len(),
                "requeued jobs left running by an earlier process"
            );
        }
        Ok(ids.len() as u64)
    }

    /// Sets the queue limits and the assumed job time (the server's
    /// `[queue]` section). Until called, [`AdmissionConfig::default`] holds.
    pub fn configure_admission(&self, config: AdmissionConfig) {
        self.admission().set_config(config);
    }

    /// Sets the post-processing stages (watermark, moderation, near-copy
    /// check, C2PA). Until called, images are only encoded with metadata.
    /// Batches already running keep the stages they started with.
    pub fn configure_post_process(&self, post: PostProcess) {
        *self.inner.post.lock().expect("post lock poisoned") = Arc::new(post);
    }

    /// Records jobs, stages, images and model loads into `metrics` (the
    /// server's, served at `/metrics`) from now on. Until called they go to
    /// a private registry nobody reads, so `easel generate` and tests that
    /// do not look need nothing.
    pub fn attach_metrics(&self, metrics: Metrics) {
        self.inner.models.attach_metrics(metrics.clone());
        *self.inner.metrics.lock().expect("metrics lock poisoned") = metrics;
    }

    /// The metrics jobs are recorded into.
    pub fn metrics(&self) -> Metrics {
        self.inner
            .metrics
            .lock()
            .expect("metrics lock poisoned")
            .clone()
    }

    /// The post-processing stages in force.
    pub fn post_process(&self) -> Arc<PostProcess> {
        self.inner.post.lock().expect("post lock poisoned").clone()
    }

    /// The queue limits in force.
    pub fn admission_config(&self) -> AdmissionConfig {
        self.admission().config().clone()
    }

    /// Tells the drain-rate estimate that `n` jobs just finished (a batch
    /// of eight is one call with 8). The worker calls this once per finished
    /// job or batch; `Retry-After` of a full queue is computed from it.
    pub fn record_completions(&self, n: u64) {
        // Tokio's clock (the system's, unless a test paused it), so a test
        // can advance it instead of sleeping.
        self.admission()
            .record_completions(n, tokio::time::Instant::now().into_std());
    }

    fn admission(&self) -> std::sync::MutexGuard<'_, Admission> {
        self.inner
            .admission
            .lock()
            .expect("admission lock poisoned")
    }

    /// Fails every queued job whose deadline has passed (code
    /// `deadline_exceeded`), tells their watchers, and returns how many
    /// there were. The worker does the same before it claims, so an overdue
    /// job is never run; a full tier calls this so that overdue jobs do not
    /// hold its slots, and a synchronous request at its deadline so that its
    /// job fails at once.
    pub async fn expire_deadlines(&self) -> Result<usize, JobError> {
        let ids = self
            .inner
            .db
            .expire_overdue(self.inner.db.now())
            .await
            .map_err(JobError::Store)?;
        for &job_id in &ids {
            tracing::info!(job = %job_id, "job reached its deadline while queued; not run");
            if let Ok(job) = self.get(job_id).await {
                self.metrics().job_finished(
                    &job.params.model,
                    job.tier.as_str(),
                    JobOutcome::Failed,
                    "deadline_exceeded",
                );
            }
            self.inner.hub.publish(JobEvent::Failed {
                job_id,
                code: "deadline_exceeded".into(),
                message: "the job was still queued at its deadline (X-Easel-Timeout) and was \
                          not run"
                    .into(),
            });
        }
        Ok(ids.len())
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
        let limit = self.admission().limit(job.tier);
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
        if let Some(image) = &job.init_image {
            // The initial image goes to the object store first: a job row
            // must never point at an image that is not there.
            let png = easel_media::encode(
                image,
                easel_core::OutputFormat::Png,
                None,
                &easel_media::Metadata::none(),
            )
            .map_err(|e| {
                JobError::Param(easel_core::ParamError::new(
                    "image",
                    e.code(),
                    e.to_string(),
                ))
            })?;
            self.inner
                .blobs
                .put(&init_image_key(id), Bytes::from(png))
                .await
                .map_err(JobError::Blob)?;
        }
        let new = easel_store::NewJob {
            id,
            tier: job.tier,
            user_id: job.user_id,
            params: job.params,
            options: job.output,
            idempotency_key: job.idempotency_key,
            request_id: job.request_id,
            trace_parent: job.trace_parent,
            policy: job.policy,
            deadline_at: job
                .timeout
                .and_then(|t| chrono::Duration::from_std(t).ok())
                .map(|t| self.inner.db.now() + t),
        };
        let has_init = job.init_image.is_some();
        let outcome = self.insert_bounded(new, limit).await;
        if has_init && !matches!(outcome, Ok(InsertOutcome::Created(_))) {
            let _ = self.inner.blobs.delete(&init_image_key(id)).await;
        }
        match outcome? {
            InsertOutcome::Created(record) => {
                self.audit("job.created", record.user_id.clone(), record.id)
                    .await;
                self.inner
                    .hub
                    .publish(JobEvent::Queued { job_id: record.id });
                self.inner.wake.notify_one();
                Ok((record, true))
            }
            InsertOutcome::Existing(record) => Ok((record, false)),
        }
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
        let retry_after = self
            .admission()
            .retry_after(backlog, tokio::time::Instant::now().into_std());
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
        self.inner.db.get_job(id).await.map_err(|e| match e {
            StoreError::JobNotFound(id) => JobError::NotFound(id),
            other => JobError::Store(other),
        })
    }

    /// A page of jobs, newest first.
    pub async fn list(
        &self,
        status: Option<JobStatus>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<JobPage, JobError> {
        let filter = JobFilter {
            status,
            user_id: None,
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
                self.audit("job.cancelled", job.user_id.clone(), id).await;
                tracing::info!(job = %id, "queued job cancelled");
                self.metrics().job_finished(
                    &job.params.model,
                    job.tier.as_str(),
                    JobOutcome::Cancelled,
                    CANCELLED,
                );
                self.inner.hub.publish(JobEvent::Cancelled { job_id: id });
                Ok(job)
            }
            // The store has the flag (for workers in other processes); the
            // token stops this process's worker at its next step.
            CancelOutcome::Requested(job) => {
                self.audit("job.cancel_requested", job.user_id.clone(), id)
                    .await;
                self.stop_job(id, CancelReason::User).await;
                Ok(job)
            }
            CancelOutcome::AlreadyFinished(job) => Ok(job),
        }
    }

    /// Appends to the audit log. A failure is logged, not returned: the
    /// action itself already happened.
    async fn audit(&self, event: &str, actor: Option<String>, subject: JobId) {
        let mut entry = easel_store::NewAuditEvent::new(event).subject(subject);
        if let Some(actor) = actor {
            entry = entry.actor(actor);
        }
        self.append_audit(entry).await;
    }

    /// Appends an event to the audit log; a failure is logged, not returned.
    pub async fn append_audit(&self, entry: easel_store::NewAuditEvent) {
        let event = entry.event_type.clone();
        if let Err(e) = self.inner.db.append_audit(entry).await {
            tracing::warn!(event, error = %e, "could not append to the audit log");
        }
    }

    /// Subscribes to a job's events. A job that already finished yields its
    /// terminal event.
    pub async fn watch(&self, id: JobId) -> Result<Watch, JobError> {
        let job = self.get(id).await?;
        let fallback = || terminal_or_current_event(&job);
        match self.inner.hub.subscribe(id, fallback) {
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
        self.inner.wake.notify_waiters();
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
