//! Easel's telemetry, shared by the server, the worker and the CLI.
//!
//! - Metrics: the catalogue of `docs/observability.md` as one registry per
//!   application, rendered in the Prometheus text format at `/metrics`.
//! - Logs and traces: the tracing subscriber (text or JSON logs), the
//!   correlation id carried from a request into its job, and OTLP export
//!   of spans when an endpoint is configured.
//!
//! # Layout
//! - [`metrics`]: the metric families, their buckets, and rendering.
//! - [`trace`]: the subscriber, correlation ids and OTLP export.

pub mod metrics;
pub mod trace;
