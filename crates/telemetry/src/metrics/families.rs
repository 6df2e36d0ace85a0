//! Every family of the catalogue, registered under the `easel` prefix.
//!
//! Names are given without `_total`: prometheus-client appends it to
//! counters. Histograms are built with the explicit bounds of
//! [`super::buckets`].

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::buckets;
use super::labels::*;

/// A histogram family whose histograms share one bucket layout.
pub(super) type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;
/// A counter of seconds or money.
pub(super) type FloatCounter = Counter<f64, AtomicU64>;
/// A gauge of a ratio or seconds.
pub(super) type FloatGauge = Gauge<f64, AtomicU64>;

fn http_seconds() -> Histogram {
    Histogram::new(buckets::HTTP_SECONDS.iter().copied())
}
fn generation_seconds() -> Histogram {
    Histogram::new(buckets::GENERATION_SECONDS.iter().copied())
}
fn stage_seconds() -> Histogram {
    Histogram::new(buckets::STAGE_SECONDS.iter().copied())
}
fn batch_images() -> Histogram {
    Histogram::new(buckets::BATCH_IMAGES.iter().copied())
}
fn quality_score() -> Histogram {
    Histogram::new(buckets::QUALITY_SCORE.iter().copied())
}
fn model_load_seconds() -> Histogram {
    Histogram::new(buckets::MODEL_LOAD_SECONDS.iter().copied())
}

/// The families, each a cheap handle onto the registered metric.
pub(super) struct Families {
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Histograms<RouteLabels>,
    pub generation_duration: Histograms<ModelTierLabels>,
    pub stage_duration: Histograms<StageLabels>,
    pub jobs_finished: Family<JobLabels, Counter>,
    pub queue_depth: Family<TierLabels, Gauge>,
    pub queue_oldest_age: Family<TierLabels, FloatGauge>,
    pub batch_images: Histograms<ModelLabels>,
    pub images_generated: Family<ModelLabels, Counter>,
    pub quality_score: Histograms<ModelLabels>,
    pub moderation_decisions: Family<ModerationLabels, Counter>,
    pub memorization_flags: Family<ModelLabels, Counter>,
    pub model_load: Histograms<ModelLabels>,
    pub models_loaded: Gauge,
    pub model_memory: Family<ModelLabels, Gauge>,
    pub model_errors: Family<ModelCodeLabels, Counter>,
    pub model_circuit_open: Family<ModelLabels, Gauge>,
    pub device_busy: Family<DeviceLabels, FloatCounter>,
    pub cpu_utilization: FloatGauge,
    pub gpu_utilization: Family<GpuLabels, FloatGauge>,
    pub cost: Family<ModelLabels, FloatCounter>,
    pub project_images: Family<ProjectLabels, Counter>,
    pub project_cost: Family<ProjectLabels, FloatCounter>,
    pub quota_soft_limit: Family<ProjectLabels, Counter>,
    pub rollout_events: Family<RolloutLabels, Counter>,
    pub rollout_reroutes: Family<ModelCodeLabels, Counter>,
    pub rollout_shadow_jobs: Family<RolloutLabels, Counter>,
    pub rollout_candidate_percent: Family<ModelLabels, FloatGauge>,
    pub version_jobs: Family<ModelVersionOutcomeLabels, Counter>,
    pub version_generation: Histograms<ModelVersionLabels>,
    pub version_quality: Histograms<ModelVersionLabels>,
    pub review_items: Family<ModelReasonLabels, Counter>,
    pub review_verdicts: Family<ModelVersionVerdictLabels, Counter>,
    pub review_score_agreement: Family<ModelLabels, FloatGauge>,
    pub prompt_drift: Family<WindowLabels, FloatGauge>,
    pub build_info: Family<VersionLabels, Gauge>,
}

impl Families {
    /// Creates every family and registers it in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let f = Families {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(http_seconds),
            generation_duration: Family::new_with_constructor(generation_seconds),
            stage_duration: Family::new_with_constructor(stage_seconds),
            jobs_finished: Family::default(),
            queue_depth: Family::default(),
            queue_oldest_age: Family::default(),
            batch_images: Family::new_with_constructor(batch_images),
            images_generated: Family::default(),
            quality_score: Family::new_with_constructor(quality_score),
            moderation_decisions: Family::default(),
            memorization_flags: Family::default(),
            model_load: Family::new_with_constructor(model_load_seconds),
            models_loaded: Gauge::default(),
            model_memory: Family::default(),
            model_errors: Family::default(),
            model_circuit_open: Family::default(),
            device_busy: Family::default(),
            cpu_utilization: FloatGauge::default(),
            gpu_utilization: Family::default(),
            cost: Family::default(),
            project_images: Family::default(),
            project_cost: Family::default(),
            quota_soft_limit: Family::default(),
            rollout_events: Family::default(),
            rollout_reroutes: Family::default(),
            rollout_shadow_jobs: Family::default(),
            rollout_candidate_percent: Family::default(),
            version_jobs: Family::default(),
            version_generation: Family::new_with_constructor(generation_seconds),
            version_quality: Family::new_with_constructor(quality_score),
            review_items: Family::default(),
            review_verdicts: Family::default(),
            review_score_agreement: Family::default(),
            prompt_drift: Family::default(),
            build_info: Family::default(),
        };
        let r = registry;
        r.register(
            "http_requests",
            "HTTP requests by matched route template, method and status",
            f.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request duration by matched route template and method",
            f.http_duration.clone(),
        );
        r.register(
            "generation_duration_seconds",
            "Job created to finished, succeeded jobs only",
            f.generation_duration.clone(),
        );
        r.register(
            "stage_duration_seconds",
            "Duration of each stage of a generation (denoise_step: seconds per denoising step)",
            f.stage_duration.clone(),
        );
        r.register(
            "jobs_finished",
            "Jobs finished by outcome and stable error code (none when succeeded)",
            f.jobs_finished.clone(),
        );
        r.register("queue_depth", "Queued jobs", f.queue_depth.clone());
        r.register(
            "queue_oldest_age_seconds",
            "Age of the oldest queued job (0 when the queue is empty)",
            f.queue_oldest_age.clone(),
        );
        r.register(
            "batch_images",
            "Images per engine call",
            f.batch_images.clone(),
        );
        r.register(
            "images_generated",
            "Images stored",
            f.images_generated.clone(),
        );
        r.register(
            "image_quality_score",
            "Quality scorer's cosine similarity of each stored image and its prompt",
            f.quality_score.clone(),
        );
        r.register(
            "moderation_decisions",
            "Moderation decisions by stage and action",
            f.moderation_decisions.clone(),
        );
        r.register(
            "memorization_flags",
            "Images flagged as near-copies of a training image",
            f.memorization_flags.clone(),
        );
        r.register(
            "model_load_seconds",
            "Model load duration (successful loads)",
            f.model_load.clone(),
        );
        r.register(
            "models_loaded",
            "Models ready in the pool",
            f.models_loaded.clone(),
        );
        r.register(
            "model_memory_bytes",
            "Memory the model's weights take (0 when unloaded)",
            f.model_memory.clone(),
        );
        r.register(
            "model_errors",
            "Model load failures and engine errors by code",
            f.model_errors.clone(),
        );
        r.register(
            "model_circuit_open",
            "1 while this worker's circuit breaker for the model is open",
            f.model_circuit_open.clone(),
        );
        r.register(
            "device_busy_seconds",
            "Wall seconds of engine calls, by device",
            f.device_busy.clone(),
        );
        r.register(
            "cpu_utilization_ratio",
            "Process CPU seconds per wall second divided by the cores available, sampled at scrape",
            f.cpu_utilization.clone(),
        );
        r.register(
            "gpu_utilization_ratio",
            "GPU utilisation from NVML (no series without an NVIDIA GPU)",
            f.gpu_utilization.clone(),
        );
        r.register(
            "cost",
            "Price per device-second times device busy seconds ([metrics] price_per_device_second)",
            f.cost.clone(),
        );
        r.register(
            "project_images",
            "Images stored, by project (billable projects by name, the rest as `other`)",
            f.project_images.clone(),
        );
        r.register(
            "project_cost",
            "Recorded cost of stored images (device time and one month of storage), by project",
            f.project_cost.clone(),
        );
        r.register(
            "quota_soft_limit",
            "Times a project passed the soft limit of a quota or its budget (once a month each)",
            f.quota_soft_limit.clone(),
        );
        r.register(
            "rollout_events",
            "Rollouts started, promoted, rolled back (a guard failed) and aborted, by model",
            f.rollout_events.clone(),
        );
        r.register(
            "rollout_reroutes",
            "Jobs a rollout's candidate version failed and its baseline then ran, by model and failure code",
            f.rollout_reroutes.clone(),
        );
        r.register(
            "rollout_shadow_jobs",
            "Shadow jobs of a shadow rollout's candidate, by model and outcome (`submitted`, or `skipped` when the batch tier had no room)",
            f.rollout_shadow_jobs.clone(),
        );
        r.register(
            "rollout_candidate_percent",
            "Share of a model's requests routed to its running rollout's candidate (0 without one)",
            f.rollout_candidate_percent.clone(),
        );
        r.register(
            "version_jobs",
            "Jobs finished by the worker, by model, version (its content hash's first 12 hex digits; at most 4 per model, then `other`) and outcome",
            f.version_jobs.clone(),
        );
        r.register(
            "version_generation_duration_seconds",
            "Seconds from submission to stored images of succeeded jobs, by model and version",
            f.version_generation.clone(),
        );
        r.register(
            "version_quality_score",
            "Quality score of stored images, by model and version",
            f.version_quality.clone(),
        );
        r.register(
            "review_items",
            "Images put in the human review queue, by model and reason (sampled, flagged)",
            f.review_items.clone(),
        );
        r.register(
            "review_verdicts",
            "Human review verdicts, by model, version and verdict (good, bad)",
            f.review_verdicts.clone(),
        );
        r.register(
            "review_score_agreement",
            "How well the quality score predicts reviewers' verdicts: ROC AUC of the score for `good` over every reviewed image (0.5 = chance)",
            f.review_score_agreement.clone(),
        );
        r.register(
            "prompt_drift_score",
            "How far prompts moved from the 7 days before: the window's mean MiniLM embedding's squared distance from the baseline's, less sampling noise, in units of the baseline's variance (NaN with too few prompts)",
            f.prompt_drift.clone(),
        );
        r.register(
            "build_info",
            "Always 1; the version of the running server",
            f.build_info.clone(),
        );
        f
    }
}
