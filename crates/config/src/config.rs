//! The one typed configuration tree, loaded once at startup.
//!
//! Layers, later ones winning: built-in defaults → `easel.toml` (or the file
//! named by `--config`) → `EASEL_*` environment variables (nested keys joined
//! with `__`, e.g. `EASEL_SERVER__LISTEN=0.0.0.0:8080`) → command-line flags.
//! Every key, its default and its environment variable are listed in
//! `docs/configuration.md`; keep the two in step.
//!
//! This is the only module of Easel that reads the process environment.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::keys::{KeyHash, Scope};
use crate::{
    DatabaseConfig, HttpConfig, MetricsConfig, ModerationConfig, ProvenanceConfig, QualityConfig,
    StorageConfig, TelemetryConfig,
};

/// The top-level keys; environment variables are only read for these, so
/// unrelated `EASEL_*` variables (say, a test's `EASEL_PYTHON`) are ignored.
const TOP_LEVEL_KEYS: &[&str] = &[
    "role",
    "data_dir",
    "database",
    "storage",
    "server",
    "http",
    "models",
    "default_model",
    "pool",
    "auth",
    "tenancy",
    "rollouts",
    "review",
    "drift",
    "urls",
    "worker",
    "limits",
    "queue",
    "moderation",
    "provenance",
    "telemetry",
    "quality",
    "metrics",
];

/// Everything `easel serve` (and the other subcommands) can be configured with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// What this process runs: `all` (API and worker, the default), `api`
    /// or `worker`. Env: `EASEL_ROLE`. Flag: `--role`.
    pub role: crate::Role,
    /// Folder holding the SQLite database (`easel.db`), the image files
    /// (`images/`), uploads of queued edits (`inputs/`) and the generated
    /// URL signing key (`signing.key`).
    /// Default: `./easel-data`. Env: `EASEL_DATA_DIR`.
    pub data_dir: PathBuf,
    /// The database of jobs, images and audit events.
    pub database: DatabaseConfig,
    /// The object store of image bytes.
    pub storage: StorageConfig,
    /// HTTP listener settings.
    pub server: ServerConfig,
    /// The request timeout and CORS.
    pub http: HttpConfig,
    /// Models to serve. Default: one entry, `easel-emoji` at
    /// `models/easel-emoji` (the bundled model). `--model PATH` replaces the
    /// list with that one folder. Env: `EASEL_MODELS` (a TOML array).
    pub models: Vec<ModelEntry>,
    /// The model used when a request names none. Default: the first of
    /// `models`. Env: `EASEL_DEFAULT_MODEL`.
    pub default_model: Option<String>,
    /// The warm model pool: memory budget and preloading.
    pub pool: PoolConfig,
    /// API keys.
    pub auth: AuthConfig,
    /// Projects: the limits of those that set none, and the retention
    /// sweeper.
    pub tenancy: TenancyConfig,
    /// Model rollouts (`[rollouts]`).
    pub rollouts: RolloutsConfig,
    /// Human review (`[review]`).
    pub review: ReviewConfig,
    /// Prompt drift (`[drift]`).
    pub drift: DriftConfig,
    /// Batches: the OpenAI Batch API (`[batches]`).
    pub batches: BatchesConfig,
    /// Signed, expiring image links.
    pub urls: UrlConfig,
    /// The in-process worker.
    pub worker: WorkerConfig,
    /// Input limits.
    pub limits: LimitsConfig,
    /// Queue limits and request deadlines.
    pub queue: QueueConfig,
    /// Prompt policy, image moderation and the near-copy check.
    pub moderation: ModerationConfig,
    /// Watermark, C2PA Content Credentials and file metadata.
    pub provenance: ProvenanceConfig,
    /// Log format and OTLP export of traces.
    pub telemetry: TelemetryConfig,
    /// The quality score of every image.
    pub quality: QualityConfig,
    /// `GET /metrics` and the price of device time.
    pub metrics: MetricsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            role: crate::Role::All,
            data_dir: PathBuf::from("./easel-data"),
            database: DatabaseConfig::default(),
            storage: StorageConfig::default(),
            server: ServerConfig::default(),
            http: HttpConfig::default(),
            models: vec![ModelEntry {
                name: "easel-emoji".into(),
                path: PathBuf::from("models/easel-emoji"),
            }],
            default_model: None,
            pool: PoolConfig::default(),
            auth: AuthConfig::default(),
            tenancy: TenancyConfig::default(),
            rollouts: RolloutsConfig::default(),
            review: ReviewConfig::default(),
            batches: BatchesConfig::default(),
            drift: DriftConfig::default(),
            urls: UrlConfig::default(),
            worker: WorkerConfig::default(),
            limits: LimitsConfig::default(),
            queue: QueueConfig::default(),
            moderation: ModerationConfig::default(),
            provenance: ProvenanceConfig::default(),
            telemetry: TelemetryConfig::default(),
            quality: QualityConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

/// HTTP listener settings (`[server]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on. Default: `127.0.0.1:8080`. A
    /// non-loopback address requires API keys (or `--insecure-no-auth`).
    /// Env: `EASEL_SERVER__LISTEN`.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; larger bodies get 413
    /// `payload_too_large`. Default: 16 MiB (16777216), room for an edits
    /// upload of a few megapixels. Env: `EASEL_SERVER__BODY_LIMIT_BYTES`.
    pub body_limit_bytes: usize,
    /// Base of the links returned with `response_format=url`, e.g.
    /// `https://images.example.com`. Default: unset, which uses the
    /// request's `Host` header over `http://`. Env: `EASEL_SERVER__PUBLIC_URL`.
    pub public_url: Option<String>,
    /// On SIGTERM/SIGINT, how long the running job may take to finish before
    /// it is cancelled and put back in the queue, in seconds. Default: 30.
    /// Env: `EASEL_SERVER__SHUTDOWN_GRACE_SECONDS`.
    pub shutdown_grace_seconds: u64,
    /// Whether the web UI is served at `/` (and its files under `/ui/`) by
    /// processes with the api role. Default: `true`. Env: `EASEL_SERVER__UI`.
    pub ui: bool,
    /// Serve the web UI's files from this folder, read on every request,
    /// instead of the copy built into the binary: for working on the UI
    /// without rebuilding. Default: unset (the built-in copy).
    /// Env: `EASEL_SERVER__UI_DIR`.
    pub ui_dir: Option<PathBuf>,
    /// Base URL of the Grafana where the dashboards of `deploy/grafana/`
    /// are imported (they keep their uids), e.g.
    /// `https://grafana.example.com`: the web UI's operations view links
    /// each dashboard to `<grafana_url>/d/<uid>`. Anyone who can load the
    /// page can read it (`/ui/config.json`), as they can the page. Default:
    /// unset, and the view names the files to import. Must be an `http://`
    /// or `https://` URL. Env: `EASEL_SERVER__GRAFANA_URL`.
    pub grafana_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 16 * 1024 * 1024,
            public_url: None,
            shutdown_grace_seconds: 30,
            ui: true,
            ui_dir: None,
            grafana_url: None,
        }
    }
}

/// One model to serve (`[[models]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Name used in requests and listed by `/v1/models`.
    pub name: String,
    /// The diffusers model folder.
    pub path: PathBuf,
}

/// The warm model pool (`[pool]`); see `docs/models.md`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Memory the loaded models may take together, in MiB. A model counts
    /// 4 bytes per weight (the engine computes in f32 whatever the file's
    /// dtype), estimated from its safetensors headers before it loads and
    /// measured after; activations are not counted. Loading a model that
    /// does not fit evicts the least recently used models not in use; a
    /// model alone larger than the budget still loads, by itself.
    /// Default: 8192 (an SD 1.x or 2.x model is about 4 GiB in f32, so two
    /// fit; SDXL, about 14 GiB, loads alone).
    /// Env: `EASEL_POOL__MEMORY_BUDGET_MB`.
    pub memory_budget_mb: u64,
    /// Models loaded at start, in this order, each evicting older ones if
    /// the budget requires. Default: unset, which loads the default model,
    /// then every other model that fits next to it without evicting
    /// anything; the rest load on first use. Env: `EASEL_POOL__PRELOAD`
    /// (a TOML array, e.g. `["a", "b"]`).
    pub preload: Option<Vec<String>>,
    /// How long a load waits for models held by running batches to be
    /// released when it needs their memory, in seconds, before it fails
    /// with `memory_budget_exceeded` (retried on the next request for the
    /// model). Default: 60. Env: `EASEL_POOL__LOAD_WAIT_SECONDS`.
    pub load_wait_seconds: u64,
    /// The device every model of the pool loads and computes on: `cpu`,
    /// `cuda` (the first GPU, same as `cuda:0`) or `cuda:N` (the GPU with
    /// ordinal N). CUDA needs a build with `--features easel-engine/cuda`;
    /// a build without it refuses `cuda` at startup. Also the `device`
    /// label of the metrics. Default: `cpu`. Env: `EASEL_POOL__DEVICE`.
    pub device: String,
    /// What the models' convolutions and linear layers compute in: `f32`,
    /// or `bf16` (bf16 products with f32 accumulation, half their weight
    /// memory) on CPUs with AMX-BF16 or AVX512-BF16; elsewhere a model
    /// loads in f32 with a warning. Default: `f32`. Env:
    /// `EASEL_POOL__PRECISION`.
    pub precision: String,
    /// The folder of LoRA adapters: every `*.safetensors` file in it is a
    /// LoRA, named in requests by its file stem (`<lora:NAME:WEIGHT>`, or
    /// `loras` in the OpenAI routes). A file is opened and hashed on first
    /// use and again when it changes. A relative path is read from the
    /// working directory. Default: unset, which is `<data_dir>/loras`; a
    /// folder that does not exist serves no LoRAs. Env:
    /// `EASEL_POOL__LORA_DIR`.
    pub lora_dir: Option<PathBuf>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            memory_budget_mb: 8192,
            preload: None,
            load_wait_seconds: 60,
            device: easel_engine::DeviceChoice::Cpu.to_string(),
            precision: easel_engine::model::Precision::F32.to_string(),
            lora_dir: None,
        }
    }
}

impl PoolConfig {
    /// `device` parsed, and refused if this build cannot compute on it
    /// (checked here, where the device is about to be used, rather than in
    /// [`Config::check`], so that commands that load no model still run
    /// with a config meant for a CUDA build).
    pub fn device(&self) -> Result<easel_engine::DeviceChoice, ConfigError> {
        self.parsed_device()?
            .usable()
            .map_err(|e| self.device_problem(e))
    }

    /// `device` parsed: one of the forms, whatever this build supports.
    fn parsed_device(&self) -> Result<easel_engine::DeviceChoice, ConfigError> {
        self.device.parse().map_err(|e| self.device_problem(e))
    }

    /// Why `device` is unusable, naming the key and the value.
    fn device_problem(&self, why: impl std::fmt::Display) -> ConfigError {
        ConfigError::Unusable(format!("pool.device = \"{}\": {why}", self.device))
    }

    /// `precision` parsed; a wrong value names the key and the forms.
    pub fn precision(&self) -> Result<easel_engine::model::Precision, ConfigError> {
        self.precision.parse().map_err(|e| {
            ConfigError::Unusable(format!("pool.precision = \"{}\": {e}", self.precision))
        })
    }

    /// The job system's pool options, models loading on [`Self::device`]
    /// in [`Self::precision`].
    pub fn options(&self) -> Result<easel_jobs::models::PoolOptions, ConfigError> {
        use easel_jobs::models::{PoolOptions, Preload};
        Ok(PoolOptions {
            budget_bytes: self.memory_budget_mb.saturating_mul(1024 * 1024),
            load_wait: std::time::Duration::from_secs(self.load_wait_seconds),
            preload: match &self.preload {
                None => Preload::DefaultThenWhatFits,
                Some(names) => Preload::Named(names.clone()),
            },
            load_options: easel_engine::LoadOptions {
                device: self.device()?,
                precision: self.precision()?,
                ..Default::default()
            },
            lora_dir: self.lora_dir.clone(),
        })
    }
}

/// API key settings (`[auth]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Accepted API keys, by hash. Default: none. When empty, requests are
    /// not authenticated, which is allowed only on a loopback address.
    /// Create one with `easel keys create`.
    pub api_keys: Vec<ApiKeyEntry>,
    /// Serve a non-loopback address without API keys. Default: `false`.
    /// Flag: `--insecure-no-auth`. Env: `EASEL_AUTH__INSECURE_NO_AUTH`.
    pub insecure_no_auth: bool,
}

/// One accepted API key (`[[auth.api_keys]]`). Only the key's hash is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// Who holds the key; recorded in logs and the audit table.
    pub name: String,
    /// `blake3:<64 hex>` (BLAKE3 of the key) or `sha256:<64 hex>`.
    pub hash: KeyHash,
    /// What the key may do. Default: `["generate"]`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<Scope>,
    /// The project the key acts in (created on start if missing).
    /// Default: `default`.
    #[serde(default)]
    pub project: easel_core::ProjectId,
}

/// Projects (`[tenancy]`); they and their keys are managed with
/// `easel projects` and `easel keys` or the admin routes (docs/tenancy.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenancyConfig {
    /// The limits of every project that sets none of its own, field by
    /// field (`requests_per_minute`, `images_per_minute`, `concurrent_jobs`,
    /// `max_n`, `max_steps`, `max_pixels`). Default: none (unlimited).
    /// Env: `EASEL_TENANCY__DEFAULT_LIMITS__MAX_N` and so on.
    pub default_limits: easel_core::Limits,
    /// Seconds between passes of the retention sweeper (run by processes
    /// with a worker), 1 to 86400. Default: 60.
    /// Env: `EASEL_TENANCY__SWEEP_INTERVAL_SECONDS`.
    pub sweep_interval_seconds: u64,
    /// Most images one sweeper pass deletes, 1 to 1000. Default: 100.
    /// Env: `EASEL_TENANCY__SWEEP_BATCH`.
    pub sweep_batch: u32,
}

impl Default for TenancyConfig {
    fn default() -> Self {
        Self {
            default_limits: easel_core::Limits::default(),
            sweep_interval_seconds: 60,
            sweep_batch: 100,
        }
    }
}

/// Model versions and rollouts (`[rollouts]`); rollouts are started with
/// `easel rollout start` or `POST /v1/admin/rollouts` (docs/rollouts.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutsConfig {
    /// Seconds between evaluations of the running rollouts' guards (and
    /// re-reads of the routing table that every API process routes by),
    /// 0.05 to 60. Default: 2.
    /// Env: `EASEL_ROLLOUTS__EVALUATE_EVERY_SECONDS`.
    pub evaluate_every_seconds: f64,
}

impl Default for RolloutsConfig {
    fn default() -> Self {
        Self {
            evaluate_every_seconds: 2.0,
        }
    }
}

/// The human review queue (`[review]`; docs/review.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReviewConfig {
    /// Share of stored images, in percent (0 to 100), that enter the
    /// review queue besides every flagged one, drawn per image id.
    /// Default: 1. Env: `EASEL_REVIEW__SAMPLE_PERCENT`.
    pub sample_percent: f64,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        Self {
            sample_percent: 1.0,
        }
    }
}

/// Batches (`[batches]`; docs/batches.md): uploaded JSONL files of
/// requests, made as batch-tier jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchesConfig {
    /// Whether this API process drives open batches (feeds their requests
    /// to the queue, settles and finishes them). Any number of processes
    /// may; turn it off on replicas kept for interactive traffic only.
    /// Default: true. Env: `EASEL_BATCHES__DRIVE`.
    pub drive: bool,
    /// The largest file `POST /v1/files` takes, in bytes (this route's
    /// body limit instead of `server.body_limit_bytes`), 1 KiB to 1 GiB.
    /// Default: 104857600 (100 MiB). Env: `EASEL_BATCHES__MAX_FILE_BYTES`.
    pub max_file_bytes: usize,
    /// The most request lines one batch may have, 1 to 1000000.
    /// Default: 50000. Env: `EASEL_BATCHES__MAX_REQUESTS`.
    pub max_requests: usize,
    /// Jobs of one batch queued or running at once, 1 to 10000: a batch
    /// never fills the batch tier, and several batches share the workers.
    /// Default: 64. Env: `EASEL_BATCHES__WINDOW`.
    pub window: u32,
    /// Seconds between passes of the driver over open batches, 0.05 to
    /// 60. Default: 1. Env: `EASEL_BATCHES__INTERVAL_SECONDS`.
    pub interval_seconds: f64,
    /// Jobs made for one request line at most, 1 to 10: a line whose job
    /// fails for a passing reason (an engine or storage fault, a
    /// deadline) is made again until then; a refusal is final at once.
    /// Default: 3. Env: `EASEL_BATCHES__MAX_ATTEMPTS`.
    pub max_attempts: u32,
    /// The share (percent, 0 to 100) of a batch's images sent to human
    /// review as a sample, when the batch does not say
    /// (`qa.review_sample_percent`). Default: 1. Env:
    /// `EASEL_BATCHES__REVIEW_SAMPLE_PERCENT`.
    pub review_sample_percent: f64,
    /// Tries of a completion webhook at most, 1 to 50. Default: 8. Env:
    /// `EASEL_BATCHES__WEBHOOK_ATTEMPTS`.
    pub webhook_attempts: u32,
    /// Seconds to wait after a webhook's first failed try, 0.01 to 3600;
    /// the wait doubles after each (at most an hour). Default: 10. Env:
    /// `EASEL_BATCHES__WEBHOOK_BACKOFF_SECONDS`.
    pub webhook_backoff_seconds: f64,
    /// Seconds one webhook try may take, 0.1 to 60. Default: 10. Env:
    /// `EASEL_BATCHES__WEBHOOK_TIMEOUT_SECONDS`.
    pub webhook_timeout_seconds: f64,
    /// Whether webhook URLs may name a loopback or private address
    /// (`127.0.0.1`, `10.…`, `localhost`). Off by default, so a caller
    /// cannot make the server call its own network; turn it on when the
    /// receivers are inside it. Default: false. Env:
    /// `EASEL_BATCHES__WEBHOOK_ALLOW_PRIVATE`.
    pub webhook_allow_private: bool,
}

impl Default for BatchesConfig {
    fn default() -> Self {
        Self {
            drive: true,
            max_file_bytes: 100 * 1024 * 1024,
            max_requests: 50_000,
            window: 64,
            interval_seconds: 1.0,
            max_attempts: 3,
            review_sample_percent: 1.0,
            webhook_attempts: 8,
            webhook_backoff_seconds: 10.0,
            webhook_timeout_seconds: 10.0,
            webhook_allow_private: false,
        }
    }
}

/// Prompt drift (`[drift]`; docs/drift.md). Measured by API processes
/// while the prompt policy's embedder runs (`moderation.prompt_enabled`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftConfig {
    /// Seconds between writes of this process's prompt figures and
    /// updates of `easel_prompt_drift_score`, 0.05 to 3600. Default: 60.
    /// Env: `EASEL_DRIFT__EVALUATE_EVERY_SECONDS`.
    pub evaluate_every_seconds: f64,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            evaluate_every_seconds: 60.0,
        }
    }
}

fn default_scopes() -> Vec<Scope> {
    vec![Scope::Generate]
}

/// Signed image links (`[urls]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UrlConfig {
    /// HMAC-SHA256 key for image links. Default: unset, in which case a
    /// random key is generated on first start and kept in
    /// `<data_dir>/signing.key`, so links survive restarts. Printed as `***`.
    /// Env: `EASEL_URLS__SIGNING_KEY`.
    pub signing_key: Option<Secret>,
    /// How long a link stays valid, in seconds. Default: 3600.
    /// Env: `EASEL_URLS__TTL_SECONDS`.
    pub ttl_seconds: u64,
}

impl Default for UrlConfig {
    fn default() -> Self {
        Self {
            signing_key: None,
            ttl_seconds: 3600,
        }
    }
}

/// The in-process worker (`[worker]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Run the worker in this process. Default: `true`. Turning it off
    /// makes an API-only server whose jobs stay queued (tests use this to
    /// step jobs by hand). Env: `EASEL_WORKER__ENABLED`.
    pub enabled: bool,
    /// How long a synchronous request waits for its job before answering
    /// 504 `timeout` (the job is then cancelled), in seconds. Default: 600.
    /// Env: `EASEL_WORKER__SYNC_TIMEOUT_SECONDS`.
    pub sync_timeout_seconds: u64,
    /// Most images in one engine call; a job with more runs alone. Must be
    /// at least one. Default: 1, because on a 2-core CPU batching was
    /// measured to bring no throughput, only latency (`docs/performance.md`
    /// has the measurement); raise it on a GPU.
    /// Env: `EASEL_WORKER__MAX_BATCH_IMAGES`.
    pub max_batch_images: u32,
    /// How long a batch that is not full may wait for companions with the
    /// same settings, counted from its first job's arrival, in
    /// milliseconds. Default: 10. Env: `EASEL_WORKER__BATCH_WINDOW_MS`.
    pub batch_window_ms: u64,
    /// Publish a preview with the progress event every this many denoising
    /// steps; 0 turns previews off. Default: 0.
    /// Env: `EASEL_WORKER__PREVIEW_EVERY_STEPS`.
    pub preview_every_steps: u32,
    /// How long a claimed job is leased, in seconds; renewed every third of
    /// it while it runs. A job whose worker died goes back to the queue this
    /// long after its last renewal. Default: 60.
    /// Env: `EASEL_WORKER__LEASE_SECONDS`.
    pub lease_seconds: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        let batching = easel_jobs::WorkerSettings::default();
        Self {
            enabled: true,
            sync_timeout_seconds: 600,
            max_batch_images: batching.max_batch_images,
            batch_window_ms: batching.batch_window.as_millis() as u64,
            preview_every_steps: batching.preview_every_steps,
            lease_seconds: batching.lease.as_secs(),
        }
    }
}

impl WorkerConfig {
    /// The job system's worker settings.
    pub fn settings(&self) -> easel_jobs::WorkerSettings {
        easel_jobs::WorkerSettings {
            max_batch_images: self.max_batch_images.max(1),
            batch_window: std::time::Duration::from_millis(self.batch_window_ms),
            preview_every_steps: self.preview_every_steps,
            lease: std::time::Duration::from_secs(self.lease_seconds.max(3)),
            // Prices live in `[metrics]`; the server sets them
            // (`MetricsConfig::pricing`).
            pricing: easel_jobs::Pricing::default(),
            default_limits: easel_core::Limits::default(),
            // `[review]`; the server sets it.
            review_sample_percent: 1.0,
        }
    }
}

/// Input limits (`[limits]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest uploaded image accepted by `/v1/images/edits`, in pixels
    /// (width × height as its header claims, checked before decoding).
    /// Default: 16777216 (4096×4096). Env: `EASEL_LIMITS__MAX_UPLOAD_PIXELS`.
    pub max_upload_pixels: u64,
    /// Largest page of `GET /v1/jobs`. Default: 100.
    /// Env: `EASEL_LIMITS__MAX_PAGE_SIZE`.
    pub max_page_size: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_upload_pixels: 4096 * 4096,
            max_page_size: 100,
        }
    }
}

/// Backpressure and deadlines (`[queue]`).
///
/// A submission to a tier already holding its limit of queued jobs gets 429
/// `queue_full` with `Retry-After` computed from the measured drain rate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Most synchronous (realtime) requests queued at once. Default: 64:
    /// each holds a client connection, and at the bundled model's ~4 s per
    /// image on a CPU the 64th waits about 4 minutes, well inside
    /// `worker.sync_timeout_seconds` (600); a longer queue would only make
    /// clients time out instead of being told to come back.
    /// Env: `EASEL_QUEUE__MAX_QUEUED_REALTIME`.
    pub max_queued_realtime: u64,
    /// Most asynchronous (batch) jobs queued at once. Default: 10000: a
    /// queued job is one database row and nobody waits on a connection, so
    /// the bound only keeps a runaway client from filling the disk; it is
    /// well above a bulk submission of 1,000 jobs.
    /// Env: `EASEL_QUEUE__MAX_QUEUED_BATCH`.
    pub max_queued_batch: u64,
    /// Seconds one job is assumed to take before any job has finished (or
    /// after a minute without one), for `Retry-After`. Default: 4, the
    /// bundled model's time per image on one CPU thread.
    /// Env: `EASEL_QUEUE__ASSUMED_JOB_SECONDS`.
    pub assumed_job_seconds: f64,
    /// Largest `X-Easel-Timeout` a request may give, in seconds. Default:
    /// 86400 (a day). Env: `EASEL_QUEUE__MAX_TIMEOUT_SECONDS`.
    pub max_timeout_seconds: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        let admission = easel_jobs::AdmissionConfig::default();
        Self {
            max_queued_realtime: admission.max_queued_realtime,
            max_queued_batch: admission.max_queued_batch,
            assumed_job_seconds: admission.assumed_job_seconds,
            max_timeout_seconds: 86_400,
        }
    }
}

impl QueueConfig {
    /// The job system's admission settings.
    pub fn admission(&self) -> easel_jobs::AdmissionConfig {
        easel_jobs::AdmissionConfig {
            max_queued_realtime: self.max_queued_realtime,
            max_queued_batch: self.max_queued_batch,
            assumed_job_seconds: self.assumed_job_seconds,
        }
    }
}

/// A secret string: its `Debug` and `Serialize` forms print `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// Values given on the command line; `None` leaves the lower layers alone.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config PATH`: the file layer. Default `easel.toml` in the working
    /// directory, used only when present.
    pub config_file: Option<PathBuf>,
    /// `--model PATH`: serve this one folder, named after the folder.
    pub model: Option<PathBuf>,
    /// `--listen ADDR`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir PATH`.
    pub data_dir: Option<PathBuf>,
    /// `--insecure-no-auth`.
    pub insecure_no_auth: bool,
    /// `--log-format text|json`.
    pub log_format: Option<easel_telemetry::trace::LogFormat>,
    /// `--device cpu|cuda|cuda:N` (`easel generate`): `pool.device`.
    pub device: Option<easel_engine::DeviceChoice>,
    /// `--precision f32|bf16` (`easel generate`): `pool.precision`.
    pub precision: Option<easel_engine::model::Precision>,
    /// `--role all|api|worker` (`easel serve`): `role`.
    pub role: Option<crate::Role>,
}

/// Why the configuration could not be loaded or is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be parsed or has a wrong key or type.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    /// An explicitly named config file does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    /// Values that parse but cannot be served.
    #[error("{0}")]
    Unusable(String),
}

impl Config {
    /// Loads the layers: defaults, file, environment, flags.
    pub fn load(overrides: &Overrides) -> Result<Config, ConfigError> {
        let file = match &overrides.config_file {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.clone())),
            Some(path) => path.clone(),
            None => PathBuf::from("easel.toml"),
        };
        // The filter sees the key after `split` (`SERVER.LISTEN`), before
        // it is lowercased.
        let env = Env::prefixed("EASEL_").split("__").filter(|key| {
            let top = key.as_str().split('.').next().unwrap_or_default();
            TOP_LEVEL_KEYS.iter().any(|k| top.eq_ignore_ascii_case(k))
        });
        // OpenTelemetry's own variable, below Easel's.
        let otel_endpoint = Env::raw()
            .only(&["OTEL_EXPORTER_OTLP_ENDPOINT"])
            .map(|_| "telemetry.otlp_endpoint".into());
        let mut figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(file))
            .merge(otel_endpoint)
            .merge(env);
        if let Some(path) = &overrides.model {
            let name = model_name_for(path);
            figment = figment
                .merge(Serialized::default(
                    "models",
                    vec![ModelEntry {
                        name: name.clone(),
                        path: path.clone(),
                    }],
                ))
                .merge(Serialized::default("default_model", name));
        }
        if let Some(listen) = overrides.listen {
            figment = figment.merge(Serialized::default("server.listen", listen));
        }
        if let Some(dir) = &overrides.data_dir {
            figment = figment.merge(Serialized::default("data_dir", dir));
        }
        if overrides.insecure_no_auth {
            figment = figment.merge(Serialized::default("auth.insecure_no_auth", true));
        }
        if let Some(format) = overrides.log_format {
            figment = figment.merge(Serialized::default("telemetry.log_format", format));
        }
        if let Some(device) = overrides.device {
            figment = figment.merge(Serialized::default("pool.device", device.to_string()));
        }
        if let Some(precision) = overrides.precision {
            figment = figment.merge(Serialized::default("pool.precision", precision.to_string()));
        }
        if let Some(role) = overrides.role {
            figment = figment.merge(Serialized::default("role", role));
        }
        let config: Config = figment.extract().map_err(Box::new)?;
        config.check()?;
        Ok(config)
    }

    /// Checks what the types cannot: names unique, the default model listed.
    pub fn check(&self) -> Result<(), ConfigError> {
        let mut names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::Unusable(format!(
                "model name `{}` is listed twice in `models`",
                w[0]
            )));
        }
        if let Some(default) = &self.default_model
            && !self.models.iter().any(|m| &m.name == default)
        {
            return Err(ConfigError::Unusable(format!(
                "default_model `{default}` is not one of the configured models ({})",
                names.join(", ")
            )));
        }
        for name in self.pool.preload.iter().flatten() {
            if !self.models.iter().any(|m| &m.name == name) {
                return Err(ConfigError::Unusable(format!(
                    "pool.preload names `{name}`, which is not one of the configured models ({})",
                    names.join(", ")
                )));
            }
        }
        for (name, thresholds) in [
            ("moderation.image", Some(&self.moderation.image)),
            ("moderation.image_low", self.moderation.image_low.as_ref()),
        ] {
            if let Some(Err(e)) = thresholds.map(|t| t.validate()) {
                return Err(ConfigError::Unusable(format!("{name}: {e}")));
            }
        }
        self.pool.parsed_device()?;
        self.pool.precision()?;
        if self.pool.memory_budget_mb == 0 {
            return Err(ConfigError::Unusable(
                "pool.memory_budget_mb must be at least 1".into(),
            ));
        }
        if self.queue.max_queued_realtime == 0 || self.queue.max_queued_batch == 0 {
            return Err(ConfigError::Unusable(
                "queue.max_queued_realtime and queue.max_queued_batch must be at least 1".into(),
            ));
        }
        if !(self.queue.assumed_job_seconds > 0.0 && self.queue.assumed_job_seconds.is_finite()) {
            return Err(ConfigError::Unusable(format!(
                "queue.assumed_job_seconds must be a positive number of seconds, got {}",
                self.queue.assumed_job_seconds
            )));
        }
        if self.queue.max_timeout_seconds == 0 {
            return Err(ConfigError::Unusable(
                "queue.max_timeout_seconds must be at least 1".into(),
            ));
        }
        if self.provenance.certificate.is_some() != self.provenance.private_key.is_some() {
            return Err(ConfigError::Unusable(
                "provenance.certificate and provenance.private_key must be given together".into(),
            ));
        }
        if let Some(problem) = self.metrics.problem() {
            return Err(ConfigError::Unusable(problem));
        }
        if let Some(problem) = self.storage.problem() {
            return Err(ConfigError::Unusable(problem));
        }
        if let Some(url) = &self.server.grafana_url
            && !crate::http::is_http_url(url)
        {
            return Err(ConfigError::Unusable(format!(
                "server.grafana_url: {url:?} is not an http:// or https:// URL, e.g. \
                 \"https://grafana.example.com\""
            )));
        }
        self.telemetry.check()?;
        self.check_role()?;
        if let Err(e) = self.tenancy.default_limits.validate() {
            return Err(ConfigError::Unusable(format!(
                "tenancy.default_{}",
                e.message
            )));
        }
        if !(0.05..=3600.0).contains(&self.drift.evaluate_every_seconds) {
            return Err(ConfigError::Unusable(
                "drift.evaluate_every_seconds must be from 0.05 to 3600".into(),
            ));
        }
        if !(1024..=1 << 30).contains(&self.batches.max_file_bytes) {
            return Err(ConfigError::Unusable(
                "batches.max_file_bytes must be from 1024 to 1073741824".into(),
            ));
        }
        if !(1..=1_000_000).contains(&self.batches.max_requests) {
            return Err(ConfigError::Unusable(
                "batches.max_requests must be from 1 to 1000000".into(),
            ));
        }
        if !(1..=10_000).contains(&self.batches.window) {
            return Err(ConfigError::Unusable(
                "batches.window must be from 1 to 10000".into(),
            ));
        }
        if !(0.05..=60.0).contains(&self.batches.interval_seconds) {
            return Err(ConfigError::Unusable(
                "batches.interval_seconds must be from 0.05 to 60".into(),
            ));
        }
        let b = &self.batches;
        for (ok, what) in [
            (
                (1..=10).contains(&b.max_attempts),
                "batches.max_attempts must be from 1 to 10",
            ),
            (
                (0.0..=100.0).contains(&b.review_sample_percent),
                "batches.review_sample_percent must be from 0 to 100",
            ),
            (
                (1..=50).contains(&b.webhook_attempts),
                "batches.webhook_attempts must be from 1 to 50",
            ),
            (
                (0.01..=3600.0).contains(&b.webhook_backoff_seconds),
                "batches.webhook_backoff_seconds must be from 0.01 to 3600",
            ),
            (
                (0.1..=60.0).contains(&b.webhook_timeout_seconds),
                "batches.webhook_timeout_seconds must be from 0.1 to 60",
            ),
        ] {
            if !ok {
                return Err(ConfigError::Unusable(what.into()));
            }
        }
        if !(0.0..=100.0).contains(&self.review.sample_percent) {
            return Err(ConfigError::Unusable(
                "review.sample_percent must be from 0 to 100".into(),
            ));
        }
        if !(0.05..=60.0).contains(&self.rollouts.evaluate_every_seconds) {
            return Err(ConfigError::Unusable(
                "rollouts.evaluate_every_seconds must be from 0.05 to 60".into(),
            ));
        }
        if !(1..=86_400).contains(&self.tenancy.sweep_interval_seconds) {
            return Err(ConfigError::Unusable(
                "tenancy.sweep_interval_seconds must be from 1 to 86400".into(),
            ));
        }
        if !(1..=1000).contains(&self.tenancy.sweep_batch) {
            return Err(ConfigError::Unusable(
                "tenancy.sweep_batch must be from 1 to 1000".into(),
            ));
        }
        if self.server.body_limit_bytes < 1024 {
            return Err(ConfigError::Unusable(
                "server.body_limit_bytes must be at least 1024".into(),
            ));
        }
        Ok(())
    }

    /// Refuses a non-loopback listener without API keys unless explicitly
    /// allowed: an open image generator on a network is someone else's GPU
    /// bill.
    pub fn check_exposure(&self, listen: SocketAddr) -> Result<(), ConfigError> {
        if !listen.ip().is_loopback()
            && self.auth.api_keys.is_empty()
            && !self.auth.insecure_no_auth
        {
            return Err(ConfigError::Unusable(format!(
                "refusing to listen on {listen} without API keys: add an [[auth.api_keys]] entry \
                 (create one with `easel keys create`), listen on 127.0.0.1, or pass \
                 --insecure-no-auth"
            )));
        }
        Ok(())
    }

    /// The name of the default model: `default_model` or the first listed.
    pub fn default_model_name(&self) -> Option<&str> {
        self.default_model
            .as_deref()
            .or_else(|| self.models.first().map(|m| m.name.as_str()))
    }

    /// The effective configuration as TOML, secrets printed as `***`.
    /// API keys' hashes are printed as `***` too: a hash does not
    /// authenticate, but a SHA-256 of a weak operator-chosen token could be
    /// guessed offline.
    pub fn to_toml(&self) -> String {
        let printed = toml::Value::try_from(self).map(|mut value| {
            if let Some(keys) = value
                .get_mut("auth")
                .and_then(|a| a.get_mut("api_keys"))
                .and_then(toml::Value::as_array_mut)
            {
                for key in keys {
                    if let Some(hash) = key.get_mut("hash") {
                        *hash = toml::Value::String("***".into());
                    }
                }
            }
            value
        });
        printed
            .and_then(|v| toml::to_string_pretty(&v))
            .unwrap_or_else(|e: toml::ser::Error| format!("# cannot print config: {e}\n"))
    }

    /// Path of the SQLite database.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("easel.db")
    }

    /// Folder of the stored images.
    pub fn images_dir(&self) -> PathBuf {
        self.data_dir.join("images")
    }

    /// The LoRA folder: `pool.lora_dir`, else `<data_dir>/loras`.
    pub fn lora_dir(&self) -> PathBuf {
        self.pool
            .lora_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("loras"))
    }
}

/// A model's default name: its folder's name.
pub fn model_name_for(path: &Path) -> String {
    path.canonicalize()
        .ok()
        .as_deref()
        .unwrap_or(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

#[cfg(test)]
// figment's `Jail` closures return its large error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn malformed_default_limits_stop_startup_naming_the_field() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("EASEL_TENANCY__DEFAULT_LIMITS__MAX_N", "0");
            let err = Config::load(&Overrides::default()).unwrap_err().to_string();
            assert!(err.contains("tenancy.default_limits.max_n"), "{err}");
            jail.set_env("EASEL_TENANCY__DEFAULT_LIMITS__MAX_N", "4");
            jail.set_env("EASEL_TENANCY__DEFAULT_LIMITS__MAX_M", "4");
            let err = Config::load(&Overrides::default()).unwrap_err().to_string();
            assert!(err.contains("max_m"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn defaults_listen_on_loopback_and_keep_data_in_easel_data() {
        let c = Config::default();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_path(), PathBuf::from("./easel-data/easel.db"));
        assert_eq!(c.default_model_name(), Some("easel-emoji"));
    }

    #[test]
    fn printed_config_hides_secrets() {
        let mut c = Config::default();
        c.urls.signing_key = Some(Secret::new("hunter2"));
        let (_, entry) = crate::keys::create_key("ops", &[crate::keys::Scope::Admin]);
        #[derive(serde::Deserialize)]
        struct Auth {
            auth: AuthConfig,
        }
        c.auth = toml::from_str::<Auth>(&entry).unwrap().auth;
        let hash = c.auth.api_keys[0].hash.to_string();
        let text = c.to_toml();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains(&hash[7..]), "{text}");
        assert!(text.contains("name = \"ops\""), "{text}");
        assert!(text.contains("***"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn printed_config_parses_back() {
        let text = Config::default().to_toml();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back.server.listen, Config::default().server.listen);
    }

    #[test]
    fn file_then_env_then_flags_win_in_that_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "easel.toml",
                "data_dir = \"from-file\"\n[server]\nlisten = \"127.0.0.1:9000\"\nbody_limit_bytes = 5000\n",
            )?;
            jail.set_env("EASEL_SERVER__LISTEN", "127.0.0.1:9001");
            jail.set_env("EASEL_PYTHON", "/usr/bin/python3");
            let c = Config::load(&Overrides::default()).unwrap();
            assert_eq!(c.data_dir, PathBuf::from("from-file"));
            assert_eq!(c.server.listen.port(), 9001);
            assert_eq!(c.server.body_limit_bytes, 5000);
            let c = Config::load(&Overrides {
                listen: Some("127.0.0.1:9002".parse().unwrap()),
                model: Some(PathBuf::from("some/tiny-model")),
                ..Default::default()
            })
            .unwrap();
            assert_eq!(c.server.listen.port(), 9002);
            assert_eq!(c.models.len(), 1);
            assert_eq!(c.default_model_name(), Some("tiny-model"));
            Ok(())
        });
    }

    #[test]
    fn the_grafana_url_is_unset_by_default_and_must_be_http() {
        assert_eq!(Config::default().server.grafana_url, None);
        figment::Jail::expect_with(|jail| {
            jail.set_env("EASEL_SERVER__GRAFANA_URL", "https://grafana.example.com/");
            let c = Config::load(&Overrides::default()).unwrap();
            assert_eq!(
                c.server.grafana_url.as_deref(),
                Some("https://grafana.example.com/")
            );
            jail.set_env("EASEL_SERVER__GRAFANA_URL", "javascript:alert(1)");
            let err = Config::load(&Overrides::default()).unwrap_err().to_string();
            assert!(err.contains("server.grafana_url"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_typo_in_the_file_is_an_error() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("easel.toml", "[server]\nlisten_addr = \"127.0.0.1:9000\"\n")?;
            let err = Config::load(&Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("listen_addr"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn queue_limits_come_from_the_file_and_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("easel.toml", "[queue]\nmax_queued_batch = 5\n")?;
            jail.set_env("EASEL_QUEUE__MAX_QUEUED_REALTIME", "3");
            let c = Config::load(&Overrides::default()).unwrap();
            assert_eq!(
                (c.queue.max_queued_realtime, c.queue.max_queued_batch),
                (3, 5)
            );
            assert_eq!(c.queue.admission().max_queued_batch, 5);
            Ok(())
        });
    }

    #[test]
    fn the_device_comes_from_the_environment_and_a_flag_wins() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(
                Config::load(&Overrides::default()).unwrap().pool.device,
                "cpu"
            );
            jail.set_env("EASEL_POOL__DEVICE", "tpu");
            let err = Config::load(&Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("pool.device = \"tpu\""), "{err}");
            let c = Config::load(&Overrides {
                device: Some(easel_engine::DeviceChoice::Cpu),
                ..Default::default()
            })
            .unwrap();
            assert_eq!(c.pool.device().unwrap(), easel_engine::DeviceChoice::Cpu);
            Ok(())
        });
    }

    #[test]
    fn a_device_that_is_not_one_is_refused_naming_the_key_and_the_forms() {
        let mut c = Config::default();
        for bad in ["tpu", "cuda:x", "cuda:-1"] {
            c.pool.device = bad.into();
            let err = c.check().unwrap_err().to_string();
            assert!(err.contains(&format!("pool.device = \"{bad}\"")), "{err}");
            assert!(err.contains("`cuda:N`"), "{err}");
        }
        c.pool.device = "cuda:1".into();
        assert!(c.check().is_ok(), "the form is right whatever the build");
        if easel_engine::CUDA_BUILT {
            let device = c.pool.options().unwrap().load_options.device;
            assert_eq!(device, easel_engine::DeviceChoice::Cuda(1));
        } else {
            let err = c.pool.options().unwrap_err().to_string();
            assert!(err.contains("pool.device = \"cuda:1\""), "{err}");
            assert!(err.contains("no GPU support"), "{err}");
        }
    }

    #[test]
    fn the_precision_comes_from_the_environment_and_a_flag_wins() {
        use easel_engine::model::Precision;
        figment::Jail::expect_with(|jail| {
            let c = Config::load(&Overrides::default()).unwrap();
            assert_eq!(c.pool.precision().unwrap(), Precision::F32);
            jail.set_env("EASEL_POOL__PRECISION", "bf16");
            let c = Config::load(&Overrides::default()).unwrap();
            assert_eq!(
                c.pool.options().unwrap().load_options.precision,
                Precision::Bf16
            );
            jail.set_env("EASEL_POOL__PRECISION", "fp8");
            let err = Config::load(&Overrides::default()).unwrap_err();
            assert!(
                err.to_string().contains("pool.precision = \"fp8\""),
                "{err}"
            );
            let c = Config::load(&Overrides {
                precision: Some(Precision::F32),
                ..Default::default()
            })
            .unwrap();
            assert_eq!(c.pool.precision().unwrap(), Precision::F32);
            Ok(())
        });
    }

    #[test]
    fn a_precision_that_is_not_one_is_refused_naming_the_key_and_the_forms() {
        let mut c = Config::default();
        for bad in ["fp16", "BF16", ""] {
            c.pool.precision = bad.into();
            let err = c.check().unwrap_err().to_string();
            assert!(
                err.contains(&format!("pool.precision = \"{bad}\"")),
                "{err}"
            );
            assert!(err.contains("`f32` or `bf16`"), "{err}");
        }
    }

    #[test]
    fn a_zero_queue_limit_is_refused() {
        let mut c = Config::default();
        c.queue.max_queued_batch = 0;
        let err = c.check().unwrap_err();
        assert!(err.to_string().contains("queue.max_queued_batch"), "{err}");
    }

    #[test]
    fn a_public_listener_needs_keys_or_an_explicit_opt_out() {
        let mut c = Config::default();
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(c.check_exposure("127.0.0.1:0".parse().unwrap()).is_ok());
        let err = c.check_exposure(public).unwrap_err();
        assert!(err.to_string().contains("--insecure-no-auth"));
        c.auth.insecure_no_auth = true;
        assert!(c.check_exposure(public).is_ok());
    }
}
