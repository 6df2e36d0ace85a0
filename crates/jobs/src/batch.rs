//! One claimed batch, end to end: one engine call for every job in it,
//! then each job stored (or failed, cancelled, requeued) on its own.
//!
//! While the engine works the worker renews every job's lease, notices
//! cancels requested through the store (by another process) and enforces
//! deadlines. Stopping one job of a batch does not stop its companions:
//! that job is *detached* — recorded as cancelled (or failed) at once, its
//! images dropped when the batch ends — and only when every job of the
//! batch has stopped is the engine call itself cancelled, between steps.
//!
//! Every transition names the claim's [`Fence`]: a worker that was paused
//! past its lease, whose job another worker has since claimed, can neither
//! complete nor fail it. Image objects are written under their image's own
//! id ([`easel_store::image_key`]), fresh for every attempt, so such a
//! worker cannot overwrite the images of the attempt that won either; the
//! files of an attempt whose completion the store refused are removed.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use easel_core::{ImageId, JobId, OutputFormat, RgbImage};
use easel_engine::{CancelToken, Progress, ProgressSink};
use easel_store::{Fence, Job};
use easel_telemetry::metrics::JobOutcome;
use tokio::sync::broadcast;
use tracing::Instrument as _;

use crate::error::JobError;
use crate::events::JobEvent;
use crate::handle::{init_image_key, mask_key, terminal_or_current_event};
use crate::housekeeping;
use crate::models::{ModelLookupError, ModelState};
use crate::pipeline::{self, BatchPart, InitInput, RenderedImage};
use crate::recording::{EngineCall, TimedModel};
use crate::running::{CancelReason, Running};
use crate::worker::{Lane, Worker};

mod breaker;
mod row;
mod store;
#[cfg(test)]
mod tests;

/// Numbers the batches of this process, so jobs know their companions.
static NEXT_BATCH: AtomicU64 = AtomicU64::new(1);

/// How many times a job is claimed before a failure on the workers' side
/// (an engine error that is not the request's fault, a panic, a model that
/// failed to load on a shared database, storage that stayed down) is
/// final. Until then the job goes back to the queue, for another worker
/// or a later try.
pub const MAX_ATTEMPTS: u32 = 3;

/// Why a job did not produce images.
pub(crate) struct Failure {
    code: &'static str,
    message: String,
    cancelled: bool,
    /// Image moderation blocked one of its images: the decision.
    rejected: Option<serde_json::Value>,
    /// The worker's side failed, not the request: another try (perhaps on
    /// another worker) may succeed, and it counts against the model's
    /// circuit breaker.
    worker_side: bool,
}

impl Failure {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            cancelled: false,
            rejected: None,
            worker_side: false,
        }
    }

    fn worker_side(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            worker_side: true,
            ..Self::new(code, message)
        }
    }

    fn cancelled() -> Self {
        Self {
            cancelled: true,
            ..Self::new("cancelled", "cancelled")
        }
    }

    fn from_render(e: pipeline::RenderError) -> Self {
        let mut failure = Failure::new(e.code(), e.to_string());
        if let pipeline::RenderError::Rejected { index, decision } = &e {
            failure.rejected = Some(serde_json::json!({ "image": index, "nsfw": decision }));
        }
        failure
    }
}

type Outcome = Result<Vec<RenderedImage>, Failure>;

impl Worker {
    /// Runs the claimed jobs (all with one batching key) as one engine call
    /// and records each job's result. `cancels` carries the cancel requests
    /// of this process, subscribed to before the claim.
    pub(crate) async fn run_batch(
        &self,
        lane: &Lane,
        claimed: Vec<Job>,
        cancels: broadcast::Receiver<JobId>,
    ) -> Result<(), JobError> {
        let batch = NEXT_BATCH.fetch_add(1, Ordering::Relaxed);
        let token = CancelToken::new();
        {
            let mut running = self.inner.running.lock().expect("running lock poisoned");
            for job in &claimed {
                running.insert(
                    job.id,
                    Running {
                        fence: Fence::of(job),
                        token: token.clone(),
                        reason: None,
                        batch,
                    },
                );
            }
        }
        for job in &claimed {
            self.inner.bus.publish(JobEvent::Started { job_id: job.id });
        }
        // Files an earlier attempt wrote but never completed (its process
        // died in between): nothing refers to them.
        for job in &claimed {
            if !job.staged_keys.is_empty() {
                tracing::warn!(job = %job.id, files = job.staged_keys.len(), "removing an earlier attempt's unfinished files");
                self.remove_blobs(&job.staged_keys).await;
            }
        }
        self.record_claimed(&claimed);
        // The pool name: `model@version` for a job routed to a version.
        let model_name = crate::models::slot_name(&claimed[0].params);
        tracing::info!(
            batch,
            jobs = claimed.len(),
            images = claimed.iter().map(|j| j.params.n).sum::<u32>(),
            model = %model_name,
            "batch started"
        );

        // Each job's `job.run` span, continuing its request's trace.
        let mut spans: HashMap<JobId, tracing::Span> = claimed
            .iter()
            .map(|job| (job.id, job_span(job, batch)))
            .collect();

        // Jobs whose initial image cannot be read fail alone.
        let mut ready = Vec::with_capacity(claimed.len());
        for job in claimed {
            match self.init_image(&job).await {
                Ok(init) => ready.push((job, init)),
                Err(failure) => {
                    let span = spans.remove(&job.id).unwrap_or_else(tracing::Span::none);
                    self.finish_job(&job, Err(failure)).instrument(span).await?
                }
            }
        }
        if ready.is_empty() {
            return Ok(());
        }
        let ready_spans: Vec<tracing::Span> = ready
            .iter()
            .map(|(job, _)| spans.remove(&job.id).unwrap_or_else(tracing::Span::none))
            .collect();
        let outcomes = match self.inner.models.get(Some(&model_name)) {
            Ok(model) => {
                self.render(lane, model, &ready, &ready_spans, token, cancels)
                    .await
            }
            Err(e) => {
                // A failed load is this worker's trouble when other workers
                // share the queue (a corrupt copy, a full disk): they may
                // load it. Alone, no other try would fare better.
                let shared = self.inner.db.is_shared();
                let (code, message, worker_side) = match self.inner.models.state(&model_name) {
                    // A LoRA that does not fit the model (or changed on
                    // disk) is the request's fault: its own code, no retry.
                    Some(ModelState::Failed { code, message })
                        if lora_failure_code(&model_name, &code).is_some() =>
                    {
                        let code = lora_failure_code(&model_name, &code).unwrap_or("model_failed");
                        (code, message, false)
                    }
                    Some(ModelState::Failed { code, message }) => (
                        "model_failed",
                        format!("model `{model_name}` failed to load ({code}): {message}"),
                        shared && code != "memory_budget_exceeded",
                    ),
                    _ => (model_error_code(&e), e.to_string(), false),
                };
                ready
                    .iter()
                    .map(|_| {
                        Err(Failure {
                            worker_side,
                            ..Failure::new(code, message.clone())
                        })
                    })
                    .collect()
            }
        };
        // Jobs a canary candidate fails go back to the baseline and count
        // against the candidate's error guard; they do not open its
        // circuit, which would only hold them in the queue meanwhile.
        if !ready.iter().all(|(job, _)| job.fallback_version.is_some()) {
            self.record_circuit(&model_name, &outcomes);
        }
        for (((job, _), outcome), span) in ready.iter().zip(outcomes).zip(ready_spans) {
            self.finish_job(job, outcome).instrument(span).await?;
        }
        Ok(())
    }

    /// Puts a stored job's flagged images, and its sampled share of the
    /// others, in the human review queue. A failure costs the review of
    /// these images, never the job.
    async fn enqueue_review(&self, job: &Job, images: &[RenderedImage]) {
        let list: Vec<(String, bool, Option<f32>)> = images
            .iter()
            .map(|i| (i.id.to_string(), !i.flags.is_empty(), i.quality_score))
            .collect();
        let items = crate::review::items(job, &list, self.inner.settings.review_sample_percent);
        if items.is_empty() {
            return;
        }
        match self.inner.db.enqueue_review(&items).await {
            Ok(()) => {
                for item in &items {
                    self.inner.metrics.review_enqueued(&item.model, item.reason);
                }
            }
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "could not queue images for review")
            }
        }
    }

    /// Puts a job its candidate version failed back in the queue on its
    /// fallback version.
    async fn reroute(&self, job: &Job, f: &Failure) -> Result<(), JobError> {
        let (Some(fallback), Some(from)) = (&job.fallback_version, &job.params.version) else {
            return Ok(());
        };
        tracing::warn!(
            job = %job.id, code = f.code, message = %f.message, candidate = %from, fallback = %fallback,
            "the candidate version failed the job; running it on the baseline"
        );
        let mut params = job.params.clone();
        params.version = Some(fallback.clone());
        let fence = Fence::of(job);
        let requeued = self
            .inner
            .db
            .reroute_job(fence, fallback, &params, from, f.code)
            .await
            .map_err(JobError::Store)?;
        if requeued.is_some() {
            self.inner
                .metrics
                .rollout_reroute(&job.params.model, f.code);
            self.inner.bus.publish(JobEvent::Queued { job_id: job.id });
            self.inner.bus.wake_all();
        }
        Ok(())
    }

    async fn init_image(&self, job: &Job) -> Result<Option<InitInput>, Failure> {
        if job.params.strength.is_none() {
            return Ok(None);
        }
        let read = |key: String| async move {
            let bytes = self
                .inner
                .blobs
                .get(&key)
                .await
                .map_err(|e| Failure::new("init_image_missing", e.to_string()))?;
            easel_media::decode_untrusted(&bytes, &easel_media::DecodeLimits::default())
                .map_err(|e| Failure::new("invalid_image", e.to_string()))
        };
        let image = read(init_image_key(job.id)).await?;
        let mask = match job.params.masked {
            false => None,
            true => Some(
                crate::handle::mask_of(&read(mask_key(job.id)).await?)
                    .map_err(|e| Failure::new("invalid_mask", e.to_string()))?,
            ),
        };
        Ok(Some(InitInput { image, mask }))
    }

    /// The engine call on the engine thread, with lease renewal, remote
    /// cancels and deadlines watched meanwhile. One outcome per job.
    async fn render(
        &self,
        lane: &Lane,
        model: Arc<dyn crate::models::Generator>,
        jobs: &[(Job, Option<InitInput>)],
        spans: &[tracing::Span],
        token: CancelToken,
        cancels: broadcast::Receiver<JobId>,
    ) -> Vec<Outcome> {
        let mut cancels = Some(cancels);
        let mut ranges = Vec::with_capacity(jobs.len());
        let mut start = 0usize;
        for (job, _) in jobs {
            let n = job.params.n as usize;
            ranges.push((job.id, start..start + n));
            start += n;
        }
        let owned: Vec<_> = jobs
            .iter()
            .map(|(job, init)| (job.params.clone(), job.options, init.clone()))
            .collect();
        // Entered on the engine thread: the engine's and post-processing's
        // spans are children of the jobs' spans, not of this task's.
        let spans = spans.to_vec();
        // The worker's cadence and each job's own (`preview_every_steps`
        // of its output options): a step any of them asks for gets one.
        let mut preview_every: Vec<u32> = jobs
            .iter()
            .filter_map(|(job, _)| job.options.preview_every_steps)
            .chain([lane.settings.preview_every_steps])
            .filter(|&every| every > 0)
            .collect();
        preview_every.sort_unstable();
        preview_every.dedup();
        let mut sink = BatchSink {
            worker: self.clone(),
            ranges,
            preview_every,
        };
        let engine_token = token.clone();
        let post = self.inner.post.clone();
        let timed = Arc::new(TimedModel::new(model));
        let model = timed.clone();
        let render = lane.engine.run(move || {
            let parts: Vec<BatchPart<'_>> = owned
                .iter()
                .zip(&spans)
                .map(|((params, output, init), span)| BatchPart {
                    params,
                    output,
                    init_image: init.as_ref(),
                    span: Some(span),
                })
                .collect();
            pipeline::render_batch(&*model, &post, &parts, &mut sink, &engine_token)
        });
        tokio::pin!(render);
        let lease = lane.settings.lease;
        let mut renew = tokio::time::interval(lease / 3);
        renew.tick().await;
        let result = loop {
            let deadline = self.next_deadline(jobs);
            tokio::select! {
                result = &mut render => break result,
                _ = renew.tick() => self.keep_leases(jobs, lease).await,
                _ = sleep_until(deadline, self.inner.db.now()) => self.stop_overdue(jobs).await,
                request = next_cancel(&mut cancels) => match request {
                    Ok(id) => self.on_cancel_request(jobs, Some(id)).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.on_cancel_request(jobs, None).await
                    }
                    // Not while the worker holds the bus; stop listening.
                    Err(broadcast::error::RecvError::Closed) => cancels = None,
                },
            }
        };
        self.record_engine_call(EngineCall {
            model: &jobs[0].0.params.model,
            images: jobs.iter().map(|(job, _)| job.params.n).sum(),
            timed: &timed,
            error: match &result {
                None => Some("engine_panic"),
                Some(Err(e)) if !e.is_cancelled() => Some(e.code()),
                _ => None,
            },
        });
        match result {
            None => jobs
                .iter()
                .map(|_| {
                    Err(Failure::worker_side(
                        "engine_panic",
                        "the engine panicked; see the server log",
                    ))
                })
                .collect(),
            Some(Err(e)) if e.is_cancelled() => {
                jobs.iter().map(|_| Err(Failure::cancelled())).collect()
            }
            Some(Err(e)) => {
                let code = e.code();
                let message = e.to_string();
                let worker_side =
                    matches!(&e, pipeline::RenderError::Engine(engine) if !engine.is_bad_request());
                jobs.iter()
                    .map(|_| {
                        Err(Failure {
                            worker_side,
                            ..Failure::new(code, message.clone())
                        })
                    })
                    .collect()
            }
            Some(Ok(per_job)) => per_job
                .into_iter()
                .map(|r| r.map_err(Failure::from_render))
                .collect(),
        }
    }

    /// The earliest deadline among the batch's jobs that are still live.
    fn next_deadline(&self, jobs: &[(Job, Option<InitInput>)]) -> Option<DateTime<Utc>> {
        let running = self.inner.running.lock().expect("running lock poisoned");
        jobs.iter()
            .filter(|(job, _)| running.get(&job.id).is_some_and(|r| r.reason.is_none()))
            .filter_map(|(job, _)| job.deadline_at)
            .min()
    }

    async fn stop_overdue(&self, jobs: &[(Job, Option<InitInput>)]) {
        let now = self.inner.db.now();
        for (job, _) in jobs {
            if job.deadline_at.is_some_and(|d| d <= now) {
                self.stop_job(job.id, CancelReason::Deadline).await;
            }
        }
    }

    /// A cancel request from this process's job handle: stops the job if
    /// it is one of this batch's. `None`: requests were missed (this batch
    /// fell behind the bus), so the store is asked about every job instead.
    async fn on_cancel_request(&self, jobs: &[(Job, Option<InitInput>)], request: Option<JobId>) {
        match request {
            Some(id) => {
                if jobs.iter().any(|(job, _)| job.id == id) {
                    self.stop_job(id, CancelReason::User).await;
                }
            }
            None => {
                for (job, _) in jobs {
                    if let Ok(true) = self.inner.db.cancel_requested(job.id).await {
                        self.stop_job(job.id, CancelReason::User).await;
                    }
                }
            }
        }
    }

    /// Renews every live job's lease; stops a job whose lease was lost or
    /// whose owner asked (through the store) to cancel it.
    async fn keep_leases(&self, jobs: &[(Job, Option<InitInput>)], lease: Duration) {
        let db = &self.inner.db;
        for (job, _) in jobs {
            let id = job.id;
            if !self.is_live(id) {
                continue;
            }
            let reason = match db.renew_lease(Fence::of(job), lease).await {
                Ok(false) => Some(CancelReason::LeaseLost),
                Ok(true) => match db.cancel_requested(id).await {
                    Ok(true) => Some(CancelReason::User),
                    _ => None,
                },
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "could not renew the lease");
                    None
                }
            };
            if let Some(reason) = reason {
                self.stop_job(id, reason).await;
            }
        }
    }

    /// Records one job's result. The job's stop reason, if any, wins over
    /// what the engine produced.
    async fn finish_job(&self, job: &Job, outcome: Outcome) -> Result<(), JobError> {
        let reason = self
            .inner
            .running
            .lock()
            .expect("running lock poisoned")
            .remove(&job.id)
            .and_then(|r| r.reason);
        let db = &self.inner.db;
        let job_id = job.id;
        let fence = Fence::of(job);
        match (reason, outcome) {
            // The job is no longer ours (its lease expired and another
            // worker took it): store nothing, change nothing.
            (Some(CancelReason::LeaseLost), _) => {
                tracing::warn!(job = %job_id, "lease lost; dropping the job's work");
            }
            (Some(CancelReason::User), _) => {
                // A detached job was recorded when it was stopped.
                if let Some(done) = self.record_stop(fence, CancelReason::User).await? {
                    self.inner.bus.publish(done);
                }
            }
            (Some(CancelReason::Deadline), _) => {
                if let Some(done) = self.record_stop(fence, CancelReason::Deadline).await? {
                    self.inner.bus.publish(done);
                }
            }
            (Some(CancelReason::Shutdown), Err(f)) if f.cancelled => {
                tracing::warn!(job = %job_id, "shutdown: job put back in the queue");
                db.requeue(fence).await.map_err(JobError::Store)?;
                self.inner.bus.publish(JobEvent::Queued { job_id });
            }
            (_, Ok(images)) => self.complete(job, images).await?,
            // A canary candidate failed it: the job runs again on the
            // version it falls back to, and the failure counts against the
            // candidate's guard, so no request fails because of a rollout.
            (_, Err(f))
                if !f.cancelled && f.rejected.is_none() && job.fallback_version.is_some() =>
            {
                self.reroute(job, &f).await?;
            }
            (_, Err(f)) if f.worker_side && job.attempts < MAX_ATTEMPTS => {
                tracing::warn!(
                    job = %job_id, code = f.code, message = %f.message, attempt = job.attempts,
                    "failed on this worker; back to the queue for another try"
                );
                db.requeue(fence).await.map_err(JobError::Store)?;
                self.inner.bus.publish(JobEvent::Queued { job_id });
                self.inner.bus.wake_all();
            }
            (_, Err(f)) if f.cancelled => {
                tracing::info!(job = %job_id, "job cancelled while running");
                if let Some(done) = self.record_stop(fence, CancelReason::User).await? {
                    self.inner.bus.publish(done);
                }
            }
            (_, Err(f)) if f.rejected.is_some() => {
                tracing::warn!(job = %job_id, message = %f.message, "job rejected by image moderation");
                db.mark_rejected(fence, f.code, &f.message)
                    .await
                    .map_err(JobError::Store)?;
                self.record_unsuccessful(job, JobOutcome::Rejected, f.code);
                let mut entry = easel_store::NewAuditEvent::new("moderation.image_blocked")
                    .subject(job_id)
                    .detail(f.rejected.unwrap_or_default());
                if let Some(user) = &job.user_id {
                    entry = entry.actor(user.clone());
                }
                housekeeping::append_audit(&self.inner.db, entry).await;
                self.inner.bus.publish(JobEvent::Failed {
                    job_id,
                    code: f.code.into(),
                    message: f.message,
                });
            }
            (_, Err(f)) => {
                tracing::warn!(job = %job_id, code = f.code, message = %f.message, "job failed");
                db.mark_failed(fence, f.code, &f.message)
                    .await
                    .map_err(JobError::Store)?;
                self.record_unsuccessful(job, JobOutcome::Failed, f.code);
                self.inner.bus.publish(JobEvent::Failed {
                    job_id,
                    code: f.code.into(),
                    message: f.message,
                });
            }
        }
        self.inner.bus.record_completions(1);
        Ok(())
    }

    async fn complete(&self, job: &Job, images: Vec<RenderedImage>) -> Result<(), JobError> {
        let job_id = job.id;
        // Still ours? A worker that was paused past its lease learns here,
        // before it writes anything, that another worker has the job; if it
        // is, the keys it is about to write are recorded first, so that if
        // this process dies before completing, the next claimer removes them.
        let format = job.options.output_format;
        let keys: Vec<String> = images
            .iter()
            .map(|i| easel_store::image_key(i.id, format, job.created_at))
            .collect();
        if let Ok(false) = self
            .inner
            .db
            .stage_objects(Fence::of(job), &keys, self.inner.settings.lease)
            .await
        {
            tracing::warn!(job = %job_id, "lease lost before storing; dropping the job's work");
            let current = housekeeping::get_job(&self.inner.db, job_id).await?;
            if current.status.is_terminal() {
                self.inner.bus.publish(terminal_or_current_event(&current));
            }
            return Ok(());
        }
        let flagged: Vec<_> = images
            .iter()
            .filter(|i| !i.flags.is_empty())
            .map(|i| (i.id, i.flags.clone(), i.moderation.clone()))
            .collect();
        let stored = self.record_processed(job, &images);
        let store_started = std::time::Instant::now();
        let store = tracing::info_span!("store", images = images.len());
        match self
            .store_with_retries(job, &images)
            .instrument(store)
            .await
        {
            Ok(ids) => {
                let seconds = store_started.elapsed().as_secs_f64();
                self.enqueue_review(job, &images).await;
                let project = self.metric_project(&job.project).await;
                self.record_succeeded(job, stored, seconds, &project);
                tracing::info!(job = %job_id, images = ids.len(), "job succeeded");
                for (id, flags, moderation) in flagged {
                    let mut entry = easel_store::NewAuditEvent::new("moderation.image_flagged")
                        .subject(id)
                        .project(&job.project)
                        .detail(serde_json::json!({
                            "job_id": job_id.to_string(),
                            "flags": flags,
                            "moderation": moderation,
                        }));
                    if let Some(user) = &job.user_id {
                        entry = entry.actor(user.clone());
                    }
                    housekeeping::append_audit(&self.inner.db, entry).await;
                }
                self.inner.bus.publish(JobEvent::Completed {
                    job_id,
                    image_ids: ids,
                });
            }
            Err(e) => self.not_stored(job, e).await?,
        }
        Ok(())
    }

    /// Storing a finished job's images failed for good: report what the
    /// store holds if the job is no longer this claim's (cancelled at the
    /// last moment, or taken by another worker), else give the job back to
    /// the queue while it has tries left, else fail it `storage_failed`.
    async fn not_stored(&self, job: &Job, e: JobError) -> Result<(), JobError> {
        let job_id = job.id;
        let fence = Fence::of(job);
        let current = housekeeping::get_job(&self.inner.db, job_id).await?;
        if current.attempts != job.attempts {
            tracing::warn!(job = %job_id, "lease lost while storing; another worker has (or finished) the job");
            if current.status.is_terminal() {
                self.inner.bus.publish(terminal_or_current_event(&current));
            }
            return Ok(());
        }
        if current.status.is_terminal() {
            self.inner.bus.publish(terminal_or_current_event(&current));
            return Ok(());
        }
        if store::retryable(&e) && job.attempts < MAX_ATTEMPTS {
            tracing::error!(job = %job_id, error = %e, attempt = job.attempts,
                "storing images failed; back to the queue for another try");
            self.inner
                .db
                .requeue(fence)
                .await
                .map_err(JobError::Store)?;
            self.inner.bus.publish(JobEvent::Queued { job_id });
            return Ok(());
        }
        tracing::error!(job = %job_id, error = %e, "storing images failed");
        self.inner
            .db
            .mark_failed(fence, "storage_failed", &e.to_string())
            .await
            .map_err(JobError::Store)?;
        self.record_unsuccessful(job, JobOutcome::Failed, "storage_failed");
        self.inner.bus.publish(JobEvent::Failed {
            job_id,
            code: "storage_failed".into(),
            message: "storing the images failed; see the server log".into(),
        });
        Ok(())
    }

    /// Writes the files, then records every image and completes the job in
    /// one transaction. Files written for a transaction that fails are
    /// removed again, so nothing is stored half-way.
    pub(super) async fn store_images(
        &self,
        job: &Job,
        images: &[RenderedImage],
    ) -> Result<Vec<ImageId>, JobError> {
        // Each row comes from its image's record, which carries the hash of
        // the model that rendered it: the model is not looked up again (it
        // may have been evicted since, and a lookup would start its load).
        let format = job.options.output_format;
        let mut records = Vec::with_capacity(images.len());
        let mut written = Vec::with_capacity(images.len());
        for image in images {
            let key = easel_store::image_key(image.id, format, job.created_at);
            let byte_size = image.bytes.len() as u64;
            if let Err(e) = self
                .inner
                .blobs
                .put(&key, Bytes::from(image.bytes.clone()))
                .await
            {
                self.remove_blobs(&written).await;
                return Err(JobError::Blob(e));
            }
            written.push(key.clone());
            let cost = self
                .inner
                .settings
                .pricing
                .cost(image.device_seconds, byte_size);
            records.push(row::image_row(job, image, key, byte_size, cost));
        }
        let ids = records.iter().map(|r| r.id).collect();
        if let Err(e) = self
            .inner
            .db
            .complete_job_with_images(Fence::of(job), records)
            .await
        {
            // The keys are this attempt's own (named by its image ids):
            // nothing else refers to them.
            self.remove_blobs(&written).await;
            return Err(JobError::Store(e));
        }
        if job.params.strength.is_some() {
            let _ = self.inner.blobs.delete(&init_image_key(job.id)).await;
        }
        if job.params.masked {
            let _ = self.inner.blobs.delete(&mask_key(job.id)).await;
        }
        Ok(ids)
    }

    async fn remove_blobs(&self, keys: &[String]) {
        for key in keys {
            if let Err(e) = self.inner.blobs.delete(key).await {
                tracing::warn!(key, error = %e, "could not remove an orphaned image file");
            }
        }
    }
}

/// The next cancel request, or never once the channel is gone.
async fn next_cancel(
    cancels: &mut Option<broadcast::Receiver<JobId>>,
) -> Result<JobId, broadcast::error::RecvError> {
    match cancels {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<DateTime<Utc>>, now: DateTime<Utc>) {
    match deadline {
        Some(at) => {
            let left = (at - now).to_std().unwrap_or(Duration::ZERO);
            tokio::time::sleep(left).await
        }
        None => std::future::pending().await,
    }
}

/// A job's `job.run` span: a child of the request's span when the job
/// stored a `traceparent` (a trace was being recorded), else a trace of its
/// own. Log lines inside carry `job_id` and `request_id`.
fn job_span(job: &Job, batch: u64) -> tracing::Span {
    let span = tracing::info_span!(
        "job.run",
        job_id = %job.id,
        request_id = tracing::field::Empty,
        model = %job.params.model,
        tier = job.tier.as_str(),
        batch,
        images = job.params.n,
        attempt = job.attempts,
        trace_id = tracing::field::Empty,
    );
    if let Some(id) = &job.request_id {
        span.record("request_id", id.as_str());
    }
    easel_telemetry::trace::continue_trace(&span, job.trace_parent.as_deref(), None);
    easel_telemetry::trace::record_trace_id(&span);
    span
}

/// The codes a LoRA combination's load fails with that a job reports as
/// its own (a 400-class error at the API).
const LORA_LOAD_CODES: &[&str] = &[
    "lora_not_found",
    "lora_invalid",
    "lora_unknown_key",
    "lora_unmatched_key",
    "lora_shape_mismatch",
    "lora_invalid_weight",
    "lora_changed",
];

/// `code` as a job's failure code when pool entry `model` is a LoRA
/// combination that failed to load because of a LoRA.
fn lora_failure_code(model: &str, code: &str) -> Option<&'static str> {
    if !crate::models::is_lora_slot(model) {
        return None;
    }
    LORA_LOAD_CODES.iter().find(|c| **c == code).copied()
}

fn model_error_code(e: &ModelLookupError) -> &'static str {
    match e {
        ModelLookupError::NotFound { .. } => "model_not_found",
        _ => "model_not_ready",
    }
}

/// Publishes each engine step to the watchers of every live job of the
/// batch, with that job's slice of the previews.
struct BatchSink {
    worker: Worker,
    ranges: Vec<(JobId, Range<usize>)>,
    /// Preview cadences in steps, each positive.
    preview_every: Vec<u32>,
}

impl ProgressSink for BatchSink {
    fn on_step(&mut self, progress: Progress) {
        for (job_id, range) in &self.ranges {
            if !self.worker.is_live(*job_id) {
                continue;
            }
            let previews = progress
                .previews
                .as_ref()
                .and_then(|all| all.get(range.clone()))
                .map(|mine| mine.iter().filter_map(preview_url).collect())
                .unwrap_or_default();
            self.worker.inner.bus.publish(JobEvent::Progress {
                job_id: *job_id,
                step: progress.step,
                total: progress.total,
                previews,
            });
        }
    }

    fn wants_preview(&self, step: u32) -> bool {
        self.preview_every
            .iter()
            .any(|&every| step.is_multiple_of(every))
    }
}

/// A preview as a `data:` URL of a PNG.
fn preview_url(image: &RgbImage) -> Option<String> {
    let png = easel_media::encode(
        image,
        OutputFormat::Png,
        None,
        &easel_media::Metadata::none(),
    )
    .ok()?;
    Some(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    ))
}
