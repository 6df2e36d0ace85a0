//! The simple in-process worker: one job at a time, oldest realtime job
//! first as the store's claim query orders them.
//!
//! The loop is an async task that owns the engine thread: it claims a job
//! from the store, hands the render to the engine thread, stores the bytes
//! and records the images in one transaction, and publishes events on the
//! way. Cancellation of a running job is a [`CancelToken`] checked by the
//! engine between steps. On shutdown the loop stops claiming; a job still
//! running when the grace period ends is cancelled and put back in the
//! queue, so the next start finishes it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use easel_core::{ImageId, JobId};
use easel_engine::{CancelToken, Progress, ProgressSink};
use easel_store::{Job, NewImage, StageTiming, image_key};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::engine_thread::EngineThread;
use crate::error::JobError;
use crate::events::{EventHub, JobEvent};
use crate::handle::{CancelReason, Jobs, Running, init_image_key, terminal_or_current_event};
use crate::pipeline::{self, RenderedImage};

/// How long the idle loop sleeps between store polls when nothing wakes it.
/// Submissions wake it at once; the poll only covers jobs inserted by
/// another process.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// How long a claimed job is leased before another worker may take it,
/// renewed every third of it while the job runs. Long enough that a busy
/// runtime never loses a lease by accident; short enough that a crashed
/// worker's job is picked up within a minute by another process.
const LEASE: Duration = Duration::from_secs(60);

/// How often the loop looks again while models are still loading.
const MODEL_POLL: Duration = Duration::from_millis(100);

/// The running worker. Dropping it without [`WorkerHandle::shutdown`]
/// aborts the loop (the store's startup recovery then requeues its job).
pub struct WorkerHandle {
    jobs: Jobs,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Jobs {
    /// Starts the worker loop on the current runtime, with its own engine
    /// thread.
    pub fn start_worker(&self) -> WorkerHandle {
        let (stop, stop_rx) = watch::channel(false);
        let jobs = self.clone();
        let task = tokio::spawn(async move {
            let engine = Arc::new(EngineThread::start());
            worker_loop(jobs, engine, stop_rx).await;
        });
        WorkerHandle {
            jobs: self.clone(),
            stop,
            task: Some(task),
        }
    }

    /// Runs queued jobs until none is left, in the calling task (the engine
    /// work still runs on an engine thread). For tests and tools that step
    /// the queue by hand; returns how many jobs ran.
    pub async fn run_pending(&self) -> Result<usize, JobError> {
        let engine = Arc::new(EngineThread::start());
        let mut n = 0;
        while self.run_next(&engine).await? {
            n += 1;
        }
        Ok(n)
    }

    /// Claims and runs one job. `Ok(false)` when the queue is empty.
    async fn run_next(&self, engine: &Arc<EngineThread>) -> Result<bool, JobError> {
        let worker = worker_name();
        self.expire_deadlines().await?; // a queued job past its deadline is never run
        let Some(job) = self
            .inner
            .db
            .claim_next_queued(&worker, LEASE)
            .await
            .map_err(JobError::Store)?
        else {
            return Ok(false);
        };
        let id = job.id;
        let token = CancelToken::new();
        self.inner
            .running
            .lock()
            .expect("running lock poisoned")
            .insert(
                id,
                Running {
                    token: token.clone(),
                    reason: None,
                },
            );
        self.inner.hub.publish(JobEvent::Started { job_id: id });
        tracing::info!(job = %id, model = %job.params.model, n = job.params.n, "job started");
        let outcome = self.execute(&job, engine, token, &worker).await;
        let reason = self
            .inner
            .running
            .lock()
            .expect("running lock poisoned")
            .remove(&id)
            .and_then(|r| r.reason);
        self.finish(&job, outcome, reason).await?;
        Ok(true)
    }

    async fn execute(
        &self,
        job: &Job,
        engine: &Arc<EngineThread>,
        token: CancelToken,
        worker: &str,
    ) -> Result<Vec<RenderedImage>, Failure> {
        let model = self
            .inner
            .models
            .get(Some(&job.params.model))
            .map_err(|e| Failure::new(model_error_code(&e), e.to_string()))?;
        let init_image = if job.params.strength.is_some() {
            let bytes = self
                .inner
                .blobs
                .get(&init_image_key(job.id))
                .await
                .map_err(|e| Failure::new("init_image_missing", e.to_string()))?;
            Some(
                easel_media::decode_untrusted(&bytes, &easel_media::DecodeLimits::default())
                    .map_err(|e| Failure::new("invalid_image", e.to_string()))?,
            )
        } else {
            None
        };
        let params = job.params.clone();
        let output = job.options;
        let hub = self.inner.hub.clone();
        let job_id = job.id;
        let engine_token = token.clone();
        let render = engine.run(move || {
            let mut sink = HubSink { hub, job_id };
            pipeline::render(
                &*model,
                &params,
                &output,
                init_image.as_ref(),
                &mut sink,
                &engine_token,
            )
        });
        tokio::pin!(render);
        // While the engine works: keep the lease, and notice a cancel
        // requested through the store (by another process).
        let mut renew = tokio::time::interval(LEASE / 3);
        renew.tick().await;
        let result = loop {
            tokio::select! {
                result = &mut render => break result,
                _ = renew.tick() => self.keep_lease(job_id, worker).await,
            }
        };
        match result {
            None => Err(Failure::new(
                "engine_panic",
                "the engine panicked; see the server log",
            )),
            Some(Err(e)) if e.is_cancelled() => Err(Failure::cancelled()),
            Some(Err(e)) => Err(Failure::new(e.code(), e.to_string())),
            Some(Ok(images)) => Ok(images),
        }
    }

    /// Renews the lease; cancels the run if the lease is lost or the store
    /// says its owner asked to cancel.
    async fn keep_lease(&self, id: JobId, worker: &str) {
        let db = &self.inner.db;
        let reason = match db.renew_lease(id, worker, LEASE).await {
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
            let mut running = self.inner.running.lock().expect("running lock poisoned");
            if let Some(r) = running.get_mut(&id) {
                r.reason.get_or_insert(reason);
                r.token.cancel();
            }
        }
    }

    async fn finish(
        &self,
        job: &Job,
        outcome: Result<Vec<RenderedImage>, Failure>,
        reason: Option<CancelReason>,
    ) -> Result<(), JobError> {
        let db = &self.inner.db;
        let job_id = job.id;
        let outcome = match (outcome, reason) {
            // The job is no longer ours (its lease expired and another worker
            // took it): store nothing, change nothing.
            (_, Some(CancelReason::LeaseLost)) => {
                tracing::warn!(job = %job_id, "lease lost; dropping the job's work");
                return Ok(());
            }
            (outcome, _) => outcome,
        };
        match outcome {
            Ok(images) => match self.store_images(job, images).await {
                Ok(ids) => {
                    tracing::info!(job = %job_id, images = ids.len(), "job succeeded");
                    self.inner.hub.publish(JobEvent::Completed {
                        job_id,
                        image_ids: ids,
                    });
                }
                Err(e) => {
                    // Cancelled (or finished elsewhere) at the last moment: the
                    // store refused the completion, so report what it holds.
                    let current = self.get(job_id).await?;
                    if current.status.is_terminal() {
                        self.inner.hub.publish(terminal_or_current_event(&current));
                        return Ok(());
                    }
                    tracing::error!(job = %job_id, error = %e, "storing images failed");
                    db.mark_failed(job_id, "storage_failed", &e.to_string())
                        .await
                        .map_err(JobError::Store)?;
                    self.inner.hub.publish(JobEvent::Failed {
                        job_id,
                        code: "storage_failed".into(),
                        message: "storing the images failed; see the server log".into(),
                    });
                }
            },
            Err(f) if f.cancelled && reason == Some(CancelReason::Shutdown) => {
                tracing::warn!(job = %job_id, "shutdown: job put back in the queue");
                db.requeue(job_id).await.map_err(JobError::Store)?;
                self.inner.hub.publish(JobEvent::Queued { job_id });
            }
            Err(f) if f.cancelled => {
                tracing::info!(job = %job_id, "job cancelled while running");
                db.mark_cancelled(job_id).await.map_err(JobError::Store)?;
                self.inner.hub.publish(JobEvent::Cancelled { job_id });
            }
            Err(f) => {
                tracing::warn!(job = %job_id, code = f.code, message = %f.message, "job failed");
                db.mark_failed(job_id, f.code, &f.message)
                    .await
                    .map_err(JobError::Store)?;
                self.inner.hub.publish(JobEvent::Failed {
                    job_id,
                    code: f.code.into(),
                    message: f.message,
                });
            }
        }
        self.record_completions(1); // feeds the drain rate behind Retry-After
        Ok(())
    }

    /// Writes the files, then records every image and completes the job in
    /// one transaction. Files written for a transaction that fails are
    /// removed again, so nothing is stored half-way.
    async fn store_images(
        &self,
        job: &Job,
        images: Vec<RenderedImage>,
    ) -> Result<Vec<ImageId>, JobError> {
        let model_hash = self
            .inner
            .models
            .get(Some(&job.params.model))
            .map(|m| m.info().content_hash.clone())
            .unwrap_or_default();
        let format = job.options.output_format;
        let now = chrono::Utc::now();
        let mut records = Vec::with_capacity(images.len());
        let mut written = Vec::with_capacity(images.len());
        for image in images {
            let id = ImageId::new();
            let key = image_key(id, format, now);
            let byte_size = image.bytes.len() as u64;
            if let Err(e) = self.inner.blobs.put(&key, Bytes::from(image.bytes)).await {
                self.remove_blobs(&written).await;
                return Err(JobError::Blob(e));
            }
            written.push(key.clone());
            let p = &job.params;
            records.push(NewImage {
                id,
                index_in_job: image.index,
                prompt: p.prompt.clone(),
                negative_prompt: p.negative_prompt.clone(),
                seed: image.seed,
                params: p.clone(),
                model: p.model.clone(),
                model_hash: model_hash.clone(),
                sampler: image.sampler.as_str().into(),
                schedule: p.schedule.as_str().into(),
                steps: p.steps,
                guidance: p.guidance_scale,
                width: image.width,
                height: image.height,
                format,
                byte_size,
                sha256: image.sha256,
                object_key: key,
                timings: vec![
                    timing("text_encode", image.timings.text_encode_s),
                    timing("denoise", image.timings.denoise_s),
                    timing("decode", image.timings.decode_s),
                    timing("encode", image.encode_s),
                ],
                warnings: image.warnings,
                watermark_id: None,
                perceptual_hash: None,
                moderation: None,
                flags: Vec::new(),
            });
        }
        let ids = records.iter().map(|r| r.id).collect();
        if let Err(e) = self
            .inner
            .db
            .complete_job_with_images(job.id, records)
            .await
        {
            self.remove_blobs(&written).await;
            return Err(JobError::Store(e));
        }
        if job.params.strength.is_some() {
            let _ = self.inner.blobs.delete(&init_image_key(job.id)).await;
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

fn timing(stage: &str, seconds: f64) -> StageTiming {
    StageTiming {
        stage: stage.into(),
        seconds,
    }
}

/// This process's name as a lease owner.
fn worker_name() -> String {
    format!("easel-{}", std::process::id())
}

fn model_error_code(e: &crate::models::ModelLookupError) -> &'static str {
    match e {
        crate::models::ModelLookupError::NotFound { .. } => "model_not_found",
        crate::models::ModelLookupError::NotReady { .. } => "model_not_ready",
    }
}

/// Why a job did not produce images.
struct Failure {
    code: &'static str,
    message: String,
    cancelled: bool,
}

impl Failure {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            cancelled: false,
        }
    }

    fn cancelled() -> Self {
        Self {
            code: "cancelled",
            message: "cancelled".into(),
            cancelled: true,
        }
    }
}

/// Publishes each engine step to the job's watchers.
struct HubSink {
    hub: EventHub,
    job_id: JobId,
}

impl ProgressSink for HubSink {
    fn on_step(&mut self, progress: Progress) {
        self.hub.publish(JobEvent::Progress {
            job_id: self.job_id,
            step: progress.step,
            total: progress.total,
        });
    }
}

async fn worker_loop(jobs: Jobs, engine: Arc<EngineThread>, mut stop: watch::Receiver<bool>) {
    tracing::info!("worker started");
    loop {
        if *stop.borrow() {
            break;
        }
        if !jobs.inner.models.settled() {
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(MODEL_POLL) => {}
            }
            continue;
        }
        match jobs.run_next(&engine).await {
            Ok(true) => continue,
            Ok(false) => {
                tokio::select! {
                    _ = jobs.inner.wake.notified() => {}
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "worker could not run a job; retrying");
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                }
            }
        }
    }
    tracing::info!("worker stopped");
}

impl WorkerHandle {
    /// Stops taking jobs, lets the running job finish within `grace`, and
    /// otherwise cancels it and puts it back in the queue. Returns when the
    /// loop has ended.
    pub async fn shutdown(mut self, grace: Duration) {
        self.jobs.stop_accepting();
        let _ = self.stop.send(true);
        let Some(mut task) = self.task.take() else {
            return;
        };
        if tokio::time::timeout(grace, &mut task).await.is_ok() {
            return;
        }
        tracing::warn!(
            grace_s = grace.as_secs_f64(),
            "running job did not finish in time; requeueing it"
        );
        {
            let mut running = self
                .jobs
                .inner
                .running
                .lock()
                .expect("running lock poisoned");
            for r in running.values_mut() {
                r.reason.get_or_insert(CancelReason::Shutdown);
                r.token.cancel();
            }
        }
        let _ = task.await;
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
