//! Easel's configuration: the one typed tree every process reads once at
//! startup, and what each role builds from it.
//!
//! The tree is layered — built-in defaults, then `easel.toml`, then
//! `EASEL_*` environment variables, then command-line flags — and every
//! key is documented, with its default, in `docs/configuration.md`. It is
//! its own crate so that every role can read it without the HTTP layer: an
//! API process, a worker process and `easel generate` all start here.
//!
//! # Layout
//! - [`config`]: the root [`Config`], its plain sections (server, models,
//!   pool, auth, URLs, worker, limits, queue), the layers ([`Config::load`]),
//!   [`Overrides`] from flags, and startup checks.
//! - [`http`], [`metrics`], [`quality`], [`responsible`], [`storage`]
//!   (`[database]`, `[storage]`), [`telemetry`]: the larger sections, one
//!   module each.
//! - [`keys`]: API key hashes as configured, and new keys (`easel keys create`).
//! - [`summary`]: the secret-free `config.loaded` audit event.
//! - [`build`]: what any role builds from the tree: the post-processing
//!   stages and the prompt policy.

pub mod build;
pub mod config;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod quality;
pub mod responsible;
pub mod role;
pub mod storage;
pub mod summary;
pub mod telemetry;

pub use config::{
    ApiKeyEntry, AuthConfig, BatchesConfig, Config, ConfigError, LimitsConfig, ModelEntry,
    Overrides, PoolConfig, QueueConfig, Secret, ServerConfig, UrlConfig, WorkerConfig,
    model_name_for,
};
pub use http::HttpConfig;
pub use metrics::MetricsConfig;
pub use quality::QualityConfig;
pub use responsible::{ModerationConfig, ProvenanceConfig};
pub use role::Role;
pub use storage::{DatabaseConfig, DatabaseUrl, SseMode, StorageConfig};
pub use telemetry::TelemetryConfig;
