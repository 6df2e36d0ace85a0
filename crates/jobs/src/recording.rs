//! What the worker counts into the metrics (`easel_telemetry::metrics`)
//! as a batch runs: queue waits when jobs are claimed; batch size, device
//! time, engine stages and engine errors once per engine call; then, per
//! job, its outcome and, when it succeeded, its latency, its images'
//! post-processing stages, moderation decisions, near-copy flags, quality
//! scores and the store stage.
//!
//! Engine stage timings are the call's, so `text_encode`, `denoise_step`
//! and `decode` are observed once per engine call; `denoise_step` is the
//! mean seconds per denoising step of that call (denoising seconds over the
//! steps it ran). `decode` is observed only where the model decodes
//! latents (pixel-space models report 0). Post-processing stages are
//! observed once per image, `store` and `queue_wait` once per job.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use easel_engine::{
    CancelToken, EngineError, GeneratedImage, ImageRequest, ModelInfo, Progress, ProgressSink,
    StageTimings,
};
use easel_store::Job;
use easel_telemetry::metrics::{JobOutcome, ModerationAction, ModerationStage, NO_CODE};

use crate::models::Generator;
use crate::pipeline::RenderedImage;
use crate::postprocess::{FLAG_NEAR_COPY, FLAG_NSFW};
use crate::worker::Worker;

/// A model that measures its engine calls: their wall time (device busy
/// seconds), the steps they ran and the engine's stage timings, whatever
/// post-processing then makes of the images.
pub(crate) struct TimedModel {
    model: Arc<dyn Generator>,
    busy: Mutex<Duration>,
    steps: AtomicU32,
    timings: Mutex<Option<StageTimings>>,
}

impl TimedModel {
    pub(crate) fn new(model: Arc<dyn Generator>) -> Self {
        Self {
            model,
            busy: Mutex::new(Duration::ZERO),
            steps: AtomicU32::new(0),
            timings: Mutex::new(None),
        }
    }

    /// Wall time spent in the model's `generate`, failed calls included.
    pub(crate) fn busy(&self) -> Duration {
        *self.busy.lock().expect("busy lock poisoned")
    }

    /// Denoising steps the last call reported (0 before any step).
    pub(crate) fn steps(&self) -> u32 {
        self.steps.load(Ordering::Relaxed)
    }

    /// The stage timings of the last call that made images.
    pub(crate) fn timings(&self) -> Option<StageTimings> {
        *self.timings.lock().expect("timings lock poisoned")
    }
}

impl Generator for TimedModel {
    fn info(&self) -> &ModelInfo {
        self.model.info()
    }

    fn generate(
        &self,
        requests: &[ImageRequest],
        progress: &mut dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<Vec<GeneratedImage>, EngineError> {
        let started = Instant::now();
        let mut counting = CountingSink {
            inner: progress,
            steps: &self.steps,
        };
        let result = self.model.generate(requests, &mut counting, cancel);
        *self.busy.lock().expect("busy lock poisoned") += started.elapsed();
        if let Some(image) = result.as_ref().ok().and_then(|images| images.first()) {
            *self.timings.lock().expect("timings lock poisoned") = Some(image.timings);
        }
        result
    }
}

/// Passes progress on, remembering the call's total steps.
struct CountingSink<'a> {
    inner: &'a mut dyn ProgressSink,
    steps: &'a AtomicU32,
}

impl ProgressSink for CountingSink<'_> {
    fn on_step(&mut self, progress: Progress) {
        self.steps.store(progress.total, Ordering::Relaxed);
        self.inner.on_step(progress);
    }

    fn wants_preview(&self, step: u32) -> bool {
        self.inner.wants_preview(step)
    }
}

/// One engine call, as the metrics see it.
pub(crate) struct EngineCall<'a> {
    /// The model's configured name.
    pub model: &'a str,
    /// Images requested in the call.
    pub images: u32,
    /// The model's measurements.
    pub timed: &'a TimedModel,
    /// The engine's error code, when it failed (not when cancelled).
    pub error: Option<&'a str>,
}

/// What is counted of a job's images once they are stored.
pub(crate) struct StoredImages {
    count: u64,
    cost: f64,
    quality: Vec<f32>,
    near_copies: usize,
}

impl Worker {
    /// Jobs were claimed: each waited from creation until now.
    pub(crate) fn record_claimed(&self, jobs: &[Job]) {
        let metrics = self.metrics();
        let now = self.inner.db.now();
        for job in jobs {
            let claimed = job.started_at.unwrap_or(now);
            let waited = (claimed - job.created_at).to_std().unwrap_or_default();
            metrics.stage(&job.params.model, "queue_wait", waited.as_secs_f64());
        }
    }

    /// An engine call ended.
    pub(crate) fn record_engine_call(&self, call: EngineCall<'_>) {
        let metrics = self.metrics();
        let model = call.model;
        metrics.batch(model, call.images);
        let device = self.inner.models.device_label();
        metrics.device_busy(model, &device, call.timed.busy().as_secs_f64());
        if let Some(code) = call.error {
            metrics.model_error(model, code);
        }
        if let Some(t) = call.timed.timings() {
            metrics.stage(model, "text_encode", t.text_encode_s);
            let steps = call.timed.steps();
            if steps > 0 {
                metrics.stage(model, "denoise_step", t.denoise_s / f64::from(steps));
            }
            if t.decode_s > 0.0 {
                metrics.stage(model, "decode", t.decode_s);
            }
        }
    }

    /// A job's images are about to be stored: counts their
    /// post-processing stages and image moderation decisions, and returns
    /// what is counted once they are stored.
    pub(crate) fn record_processed(&self, job: &Job, images: &[RenderedImage]) -> StoredImages {
        let metrics = self.metrics();
        let model = &job.params.model;
        for image in images {
            for &(stage, seconds) in &image.post_stages {
                metrics.stage(model, stage, seconds);
            }
            if image.post_stages.iter().any(|(s, _)| *s == "moderation") {
                let action = if image.flags.iter().any(|f| f == FLAG_NSFW) {
                    ModerationAction::Flag
                } else {
                    ModerationAction::Allow
                };
                metrics.moderation(ModerationStage::Image, action);
            }
        }
        let pricing = &self.inner.settings.pricing;
        StoredImages {
            count: images.len() as u64,
            cost: images
                .iter()
                .map(|i| pricing.cost(i.device_seconds, i.bytes.len() as u64))
                .sum(),
            quality: images.iter().filter_map(|i| i.quality_score).collect(),
            near_copies: images
                .iter()
                .filter(|i| i.flags.iter().any(|f| f == FLAG_NEAR_COPY))
                .count(),
        }
    }

    /// A job succeeded: its images were stored in `store_seconds`;
    /// `project` is its project's metric label (`other` unless billable).
    pub(crate) fn record_succeeded(
        &self,
        job: &Job,
        stored: StoredImages,
        store_seconds: f64,
        project: &str,
    ) {
        let metrics = self.metrics();
        let model = &job.params.model;
        let tier = job.tier.as_str();
        metrics.stage(model, "store", store_seconds);
        metrics.images_generated(model, stored.count);
        metrics.project_images(project, stored.count, stored.cost);
        let latency = (self.inner.db.now() - job.created_at)
            .to_std()
            .unwrap_or_default();
        metrics.version_job(
            model,
            job.params.version.as_deref(),
            JobOutcome::Succeeded,
            Some(latency.as_secs_f64()),
            &stored.quality,
        );
        for score in stored.quality {
            metrics.quality_score(model, f64::from(score));
        }
        for _ in 0..stored.near_copies {
            metrics.memorization_flag(model);
        }
        metrics.generation(model, tier, latency.as_secs_f64());
        metrics.job_finished(model, tier, JobOutcome::Succeeded, NO_CODE);
    }

    /// A job ended without images (not through a stop, which
    /// [`Worker::record_stop`] counts).
    pub(crate) fn record_unsuccessful(&self, job: &Job, outcome: JobOutcome, code: &str) {
        if outcome == JobOutcome::Rejected && code == "image_rejected" {
            self.metrics()
                .moderation(ModerationStage::Image, ModerationAction::Block);
        }
        self.metrics()
            .job_finished(&job.params.model, job.tier.as_str(), outcome, code);
        self.metrics().version_job(
            &job.params.model,
            job.params.version.as_deref(),
            outcome,
            None,
            &[],
        );
    }
}
