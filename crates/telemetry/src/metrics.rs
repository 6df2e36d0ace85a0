//! The metric catalogue of `docs/observability.md` as prometheus-client
//! families, one registry per application.
//!
//! [`Metrics`] is a cheap handle (an `Arc` inside). The server builds one,
//! hands it to the job system, records HTTP requests and prompt moderation
//! through it and renders it at `GET /metrics`; the job system records jobs,
//! stages, images and model loads. Nothing here is global: two servers in
//! one process (the tests) each serve only their own series. A job system
//! built without one records into a private, never-served registry.
//!
//! Methods are named for what happened (`job_finished`, `stage`,
//! `device_busy`); gauges that describe the present (queue, models, CPU)
//! are set by whoever renders, just before rendering.
//!
//! The exposition is OpenMetrics text ([`CONTENT_TYPE`], ending in
//! `# EOF`), which Prometheus negotiates; counters get their `_total`
//! suffix from the library.
//!
//! # Layout
//! - `buckets`: every histogram's explicit bounds.
//! - `labels`: label sets and the closed vocabularies ([`JobOutcome`],
//!   [`ModerationStage`], [`ModerationAction`]).
//! - `families`: registering each family under the `easel` prefix.
//! - `process`: CPU utilisation from `/proc/self/stat`.

mod buckets;
mod families;
mod gpu;
mod labels;
mod process;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use prometheus_client::registry::Registry;

pub use buckets::{
    BATCH_IMAGES, GENERATION_SECONDS, HTTP_SECONDS, MODEL_LOAD_SECONDS, QUALITY_SCORE,
    STAGE_SECONDS,
};
pub use labels::{JobOutcome, ModerationAction, ModerationStage};

use families::Families;
use labels::*;
use process::CpuSample;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `code` of a job that succeeded.
pub const NO_CODE: &str = "none";

/// Every family served, as named in `# TYPE` (counters without `_total`),
/// with its type (`counter`, `gauge` or `histogram`): the metric catalogue
/// of `docs/observability.md`, which a unit test holds to this list. A
/// family appears in the exposition once it has a series.
pub const CATALOGUE: &[(&str, &str)] = &[
    ("easel_http_requests", "counter"),
    ("easel_http_request_duration_seconds", "histogram"),
    ("easel_generation_duration_seconds", "histogram"),
    ("easel_stage_duration_seconds", "histogram"),
    ("easel_jobs_finished", "counter"),
    ("easel_queue_depth", "gauge"),
    ("easel_queue_oldest_age_seconds", "gauge"),
    ("easel_batch_images", "histogram"),
    ("easel_images_generated", "counter"),
    ("easel_image_quality_score", "histogram"),
    ("easel_moderation_decisions", "counter"),
    ("easel_memorization_flags", "counter"),
    ("easel_model_load_seconds", "histogram"),
    ("easel_models_loaded", "gauge"),
    ("easel_model_memory_bytes", "gauge"),
    ("easel_model_errors", "counter"),
    ("easel_model_circuit_open", "gauge"),
    ("easel_device_busy_seconds", "counter"),
    ("easel_cpu_utilization_ratio", "gauge"),
    ("easel_gpu_utilization_ratio", "gauge"),
    ("easel_cost", "counter"),
    ("easel_project_images", "counter"),
    ("easel_project_cost", "counter"),
    ("easel_quota_soft_limit", "counter"),
    ("easel_rollout_events", "counter"),
    ("easel_rollout_reroutes", "counter"),
    ("easel_rollout_shadow_jobs", "counter"),
    ("easel_rollout_candidate_percent", "gauge"),
    ("easel_version_jobs", "counter"),
    ("easel_version_generation_duration_seconds", "histogram"),
    ("easel_version_quality_score", "histogram"),
    ("easel_review_items", "counter"),
    ("easel_review_verdicts", "counter"),
    ("easel_review_score_agreement", "gauge"),
    ("easel_prompt_drift_score", "gauge"),
    ("easel_build_info", "gauge"),
];

/// One application's metrics. Cheap to clone; clones share the series.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    f: Families,
    /// Currency units per device-second; 0 leaves `easel_cost_total` at 0.
    price_per_device_second: f64,
    /// The previous CPU sample, for the utilisation since the last scrape.
    cpu: Mutex<CpuSample>,
    /// The version labels given out so far, per model (bounded).
    versions: Mutex<std::collections::HashMap<String, Vec<String>>>,
}

/// The most version labels one model gets in one process; later versions
/// are counted as `other`. A rollout compares two (baseline and candidate),
/// so four cover a rollout, its successor and the version promoted between.
pub const MAX_VERSION_LABELS: usize = 4;

/// One configured model as the scrape sees it.
#[derive(Debug, Clone)]
pub struct ModelGauge<'a> {
    /// Its configured name.
    pub name: &'a str,
    /// Whether it is ready in the pool.
    pub loaded: bool,
    /// Bytes its weights take while loaded.
    pub bytes: u64,
}

impl Default for Metrics {
    /// No price per device-second.
    fn default() -> Self {
        Self::new(0.0)
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field(
                "price_per_device_second",
                &self.inner.price_per_device_second,
            )
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Every family of the catalogue, empty, with `easel_build_info` set.
    /// `price_per_device_second` must be finite and ≥ 0 (the server's
    /// config check refuses anything else); anything else counts as 0.
    pub fn new(price_per_device_second: f64) -> Self {
        let mut registry = Registry::with_prefix("easel");
        let f = Families::register(&mut registry);
        f.build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        let price = if price_per_device_second.is_finite() && price_per_device_second >= 0.0 {
            price_per_device_second
        } else {
            0.0
        };
        Self {
            inner: Arc::new(Inner {
                registry,
                f,
                price_per_device_second: price,
                cpu: Mutex::new(CpuSample::now()),
                versions: Mutex::new(std::collections::HashMap::new()),
            }),
        }
    }

    fn f(&self) -> &Families {
        &self.inner.f
    }

    /// The exposition: every family, OpenMetrics text, `# EOF` last.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// An HTTP response: `route` is the matched path template (or
    /// `unmatched`), `status` the numeric status.
    pub fn http_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let f = self.f();
        f.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_string(),
                method: method.to_string(),
                status: status.to_string(),
            })
            .inc();
        f.http_duration
            .get_or_create(&RouteLabels {
                route: route.to_string(),
                method: method.to_string(),
            })
            .observe(seconds);
    }

    /// A job ended. `code` is the stable error code, [`NO_CODE`] when it
    /// succeeded.
    pub fn job_finished(&self, model: &str, tier: &str, outcome: JobOutcome, code: &str) {
        self.f()
            .jobs_finished
            .get_or_create(&JobLabels {
                model: model.to_string(),
                tier: tier.to_string(),
                outcome: outcome.as_str(),
                code: code.to_string(),
            })
            .inc();
    }

    /// A job succeeded `seconds` after it was created.
    pub fn generation(&self, model: &str, tier: &str, seconds: f64) {
        self.f()
            .generation_duration
            .get_or_create(&ModelTierLabels {
                model: model.to_string(),
                tier: tier.to_string(),
            })
            .observe(seconds);
    }

    /// One stage of a generation took `seconds`.
    pub fn stage(&self, model: &str, stage: &str, seconds: f64) {
        self.f()
            .stage_duration
            .get_or_create(&StageLabels {
                model: model.to_string(),
                stage: stage.to_string(),
            })
            .observe(seconds);
    }

    /// One engine call made `images` images.
    pub fn batch(&self, model: &str, images: u32) {
        self.f()
            .batch_images
            .get_or_create(&model_labels(model))
            .observe(f64::from(images));
    }

    /// `n` images were stored.
    pub fn images_generated(&self, model: &str, n: u64) {
        self.f()
            .images_generated
            .get_or_create(&model_labels(model))
            .inc_by(n);
    }

    /// A stored image's quality score.
    pub fn quality_score(&self, model: &str, score: f64) {
        self.f()
            .quality_score
            .get_or_create(&model_labels(model))
            .observe(score);
    }

    /// A moderation decision.
    pub fn moderation(&self, stage: ModerationStage, action: ModerationAction) {
        self.f()
            .moderation_decisions
            .get_or_create(&ModerationLabels {
                stage: stage.as_str(),
                action: action.as_str(),
            })
            .inc();
    }

    /// An image was flagged as a near-copy of a training image.
    pub fn memorization_flag(&self, model: &str) {
        self.f()
            .memorization_flags
            .get_or_create(&model_labels(model))
            .inc();
    }

    /// A model finished loading in `seconds`.
    pub fn model_loaded(&self, model: &str, seconds: f64) {
        self.f()
            .model_load
            .get_or_create(&model_labels(model))
            .observe(seconds);
    }

    /// Whether this worker's circuit breaker for `model` is open (it claims
    /// none of the model's jobs for now).
    pub fn set_circuit_open(&self, model: &str, open: bool) {
        self.f()
            .model_circuit_open
            .get_or_create(&model_labels(model))
            .set(i64::from(open));
    }

    /// A model failed to load, or its engine call failed, with `code`.
    pub fn model_error(&self, model: &str, code: &str) {
        self.f()
            .model_errors
            .get_or_create(&ModelCodeLabels {
                model: model.to_string(),
                code: code.to_string(),
            })
            .inc();
    }

    /// An engine call kept `device` (`cpu`, `cuda:N`) busy for `seconds`;
    /// its cost is counted at the configured price.
    pub fn device_busy(&self, model: &str, device: &str, seconds: f64) {
        let f = self.f();
        let seconds = seconds.max(0.0);
        f.device_busy
            .get_or_create(&DeviceLabels {
                model: model.to_string(),
                device: device.to_string(),
            })
            .inc_by(seconds);
        f.cost
            .get_or_create(&model_labels(model))
            .inc_by(seconds * self.inner.price_per_device_second);
    }

    /// `count` images of `project` (a billable project's name, else
    /// `other`) were stored, costing `cost` in all.
    pub fn project_images(&self, project: &str, count: u64, cost: f64) {
        let f = self.f();
        let labels = ProjectLabels {
            project: project.to_string(),
        };
        f.project_images.get_or_create(&labels).inc_by(count);
        f.project_cost.get_or_create(&labels).inc_by(cost.max(0.0));
    }

    /// `project` (a billable project's name, else `other`) passed a soft
    /// limit.
    pub fn quota_soft_limit(&self, project: &str) {
        self.f()
            .quota_soft_limit
            .get_or_create(&ProjectLabels {
                project: project.to_string(),
            })
            .inc();
    }

    /// A rollout of `model` started or ended (`outcome`: `started`,
    /// `promoted`, `rolled_back` or `aborted`); the candidate's share is
    /// `percent` from now on.
    pub fn rollout_event(&self, model: &str, outcome: &str, percent: f64) {
        let f = self.f();
        f.rollout_events
            .get_or_create(&RolloutLabels {
                model: model.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        f.rollout_candidate_percent
            .get_or_create(&model_labels(model))
            .set(percent);
    }

    /// Creates `model`'s rollout and review series at 0 (events of every
    /// outcome, shadow jobs, the candidate's share, review items by
    /// reason), so the first rollback is an increase Prometheus sees rather
    /// than the birth of a series.
    pub fn rollout_series(&self, model: &str) {
        let f = self.f();
        for outcome in ["started", "promoted", "rolled_back", "aborted"] {
            let _ = f.rollout_events.get_or_create(&RolloutLabels {
                model: model.to_string(),
                outcome: outcome.to_string(),
            });
        }
        for outcome in ["submitted", "skipped"] {
            let _ = f.rollout_shadow_jobs.get_or_create(&RolloutLabels {
                model: model.to_string(),
                outcome: outcome.to_string(),
            });
        }
        let _ = f
            .rollout_candidate_percent
            .get_or_create(&model_labels(model));
        for reason in ["sampled", "flagged"] {
            let _ = f.review_items.get_or_create(&ModelReasonLabels {
                model: model.to_string(),
                reason: reason.to_string(),
            });
        }
    }

    /// A shadow job of `model` was queued (`submitted`) or not
    /// (`skipped`: the batch tier was full or the store refused).
    pub fn rollout_shadow_job(&self, model: &str, outcome: &str) {
        self.f()
            .rollout_shadow_jobs
            .get_or_create(&RolloutLabels {
                model: model.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// A job of `model` its rollout's candidate failed (with `code`) was
    /// sent back to the baseline.
    pub fn rollout_reroute(&self, model: &str, code: &str) {
        self.f()
            .rollout_reroutes
            .get_or_create(&ModelCodeLabels {
                model: model.to_string(),
                code: code.to_string(),
            })
            .inc();
    }

    /// The label of `version` of `model`: its content hash's first 12 hex
    /// digits (`none` for a job with no version); the first
    /// [`MAX_VERSION_LABELS`] versions of a model each have their own,
    /// later ones are `other`, so the label stays bounded.
    pub fn version_label(&self, model: &str, version: Option<&str>) -> String {
        let Some(version) = version else {
            return "none".into();
        };
        let hex = version.rsplit(':').next().unwrap_or(version);
        let short: String = hex.chars().take(12).collect();
        let mut seen = self.inner.versions.lock().expect("version labels lock");
        let known = seen.entry(model.to_string()).or_default();
        if known.contains(&short) {
            short
        } else if known.len() < MAX_VERSION_LABELS {
            known.push(short.clone());
            short
        } else {
            "other".into()
        }
    }

    /// A job of `version` of `model` finished with `outcome`; a succeeded
    /// one took `latency_seconds` from submission and its images scored
    /// `quality`.
    pub fn version_job(
        &self,
        model: &str,
        version: Option<&str>,
        outcome: JobOutcome,
        latency_seconds: Option<f64>,
        quality: &[f32],
    ) {
        let f = self.f();
        let version = self.version_label(model, version);
        f.version_jobs
            .get_or_create(&ModelVersionOutcomeLabels {
                model: model.to_string(),
                version: version.clone(),
                outcome: outcome.as_str().to_string(),
            })
            .inc();
        let labels = ModelVersionLabels {
            model: model.to_string(),
            version,
        };
        if let Some(seconds) = latency_seconds {
            f.version_generation.get_or_create(&labels).observe(seconds);
        }
        for &q in quality {
            f.version_quality
                .get_or_create(&labels)
                .observe(f64::from(q));
        }
    }

    /// An image of `model` entered the review queue (`reason`: `sampled`
    /// or `flagged`).
    pub fn review_enqueued(&self, model: &str, reason: &str) {
        self.f()
            .review_items
            .get_or_create(&ModelReasonLabels {
                model: model.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// A reviewer judged an image of `version` of `model` `verdict`.
    pub fn review_verdict(&self, model: &str, version: Option<&str>, verdict: &str) {
        let version = self.version_label(model, version);
        self.f()
            .review_verdicts
            .get_or_create(&ModelVersionVerdictLabels {
                model: model.to_string(),
                version,
                verdict: verdict.to_string(),
            })
            .inc();
    }

    /// The quality score's agreement with the verdicts on `model`'s
    /// images (ROC AUC) is `auc` now.
    pub fn review_score_agreement(&self, model: &str, auc: f64) {
        self.f()
            .review_score_agreement
            .get_or_create(&model_labels(model))
            .set(auc);
    }

    /// The prompt drift score of `window` (`1h`, `1d`) is `score` now (NaN
    /// when it cannot be computed).
    pub fn prompt_drift(&self, window: &str, score: f64) {
        self.f()
            .prompt_drift
            .get_or_create(&WindowLabels {
                window: window.to_string(),
            })
            .set(score);
    }

    /// The queue now: `depth` jobs queued in `tier`, the oldest created
    /// `oldest_age_seconds` ago (0 when empty).
    pub fn set_queue(&self, tier: &str, depth: u64, oldest_age_seconds: f64) {
        let f = self.f();
        let labels = TierLabels {
            tier: tier.to_string(),
        };
        f.queue_depth
            .get_or_create(&labels)
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
        f.queue_oldest_age
            .get_or_create(&labels)
            .set(oldest_age_seconds.max(0.0));
    }

    /// The model pool now. Also creates the zero series of every configured
    /// model's per-model counters (images, cost, near-copy flags), so a
    /// ratio over them has data before the first image.
    pub fn set_models(&self, models: &[ModelGauge<'_>]) {
        let f = self.f();
        f.models_loaded
            .set(models.iter().filter(|m| m.loaded).count() as i64);
        for m in models {
            let labels = model_labels(m.name);
            let bytes = if m.loaded { m.bytes } else { 0 };
            f.model_memory
                .get_or_create(&labels)
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            let _ = f.images_generated.get_or_create(&labels);
            let _ = f.cost.get_or_create(&labels);
            let _ = f.memorization_flags.get_or_create(&labels);
        }
    }

    /// Samples the process's CPU utilisation since the previous sample.
    pub fn sample_cpu(&self) {
        let now = CpuSample::now();
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let mut last = self.inner.cpu.lock().expect("cpu sample lock poisoned");
        if process::cpu_seconds().is_some()
            && let Some(ratio) = last.ratio_until(&now, cores)
        {
            self.f().cpu_utilization.set(ratio);
        }
        *last = now;
    }

    /// Samples every NVIDIA GPU's utilisation through NVML; no series where
    /// NVML (the NVIDIA driver) is missing.
    pub fn sample_gpu(&self) {
        for (index, ratio) in gpu::utilization() {
            self.f()
                .gpu_utilization
                .get_or_create(&GpuLabels {
                    gpu: index.to_string(),
                })
                .set(ratio);
        }
    }
}

fn model_labels(model: &str) -> ModelLabels {
    ModelLabels {
        model: model.to_string(),
    }
}
