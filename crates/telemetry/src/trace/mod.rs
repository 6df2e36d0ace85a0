//! Logs and traces: the process's tracing subscriber, correlation ids, and
//! OTLP export of spans.
//!
//! One subscriber per process, set by [`init`] (the CLI calls it once):
//! - a log layer writing to stderr, as text (the default) or JSON lines with
//!   the fields of every enclosing span flattened in (so each line inside a
//!   request or job carries `request_id` and `job_id`), filtered by
//!   `EASEL_LOG`, else `RUST_LOG` (an `EnvFilter` directive), else the
//!   command's default (see [`log_filter_directive`]); ANSI colours only
//!   when stderr is a terminal;
//! - when an OTLP endpoint is configured, an OpenTelemetry layer exporting
//!   Easel's spans over OTLP/HTTP (protobuf) through a batch processor;
//!   the returned [`TraceGuard`] flushes it when dropped.
//!
//! The span tree and the fields are documented in `docs/observability.md`
//! ("Traces and logs").
//!
//! # Layout
//! - `request_id`: accepting or generating the `x-request-id`.
//! - `json`: the JSON line format.
//! - `fresh`: the per-layer filter wrapper that keeps lines from vanishing
//!   (every filter of the subscriber is wrapped in it).
//! - `otel`: the exporter, and W3C trace context into and out of spans.

mod fresh;
mod json;
mod otel;
mod request_id;

use serde::{Deserialize, Serialize};
use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, FilterExt as _, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

pub use otel::{
    TRACES_PATH, continue_trace, record_trace_id, trace_id_of, traceparent_of, traces_url,
};
pub use request_id::{
    MAX_REQUEST_ID_LEN, REQUEST_ID_HEADER, accept_request_id, is_valid_request_id, new_request_id,
};

/// The environment variable holding the log filter (`EnvFilter` syntax,
/// e.g. `info,easel_jobs=debug`).
pub const LOG_FILTER_ENV: &str = "EASEL_LOG";

/// The conventional log filter variable, honoured when `EASEL_LOG` is unset.
pub const RUST_LOG_ENV: &str = "RUST_LOG";

/// The log filter in force: `EASEL_LOG` when set and not blank, else
/// `RUST_LOG` when set and not blank, else the command's default. Easel's
/// own variable wins so that a `RUST_LOG` exported for other Rust programs
/// in the same shell does not change Easel's logs when `EASEL_LOG` is set.
pub fn log_filter_directive(
    easel_log: Option<&str>,
    rust_log: Option<&str>,
    default: &str,
) -> String {
    fn set(v: Option<&str>) -> Option<&str> {
        v.map(str::trim).filter(|v| !v.is_empty())
    }
    set(easel_log)
        .or(set(rust_log))
        .unwrap_or(default)
        .to_string()
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (tracing-subscriber's full format).
    #[default]
    Text,
    /// One JSON object per line, span fields flattened in.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format `{other}`: use text or json")),
        }
    }
}

/// What [`init`] sets up.
#[derive(Debug, Clone)]
pub struct TraceSettings {
    /// Text or JSON lines.
    pub log_format: LogFormat,
    /// The log filter when `EASEL_LOG` and `RUST_LOG` are unset, e.g.
    /// `info,tower_http=warn`.
    pub default_filter: String,
    /// OTLP/HTTP base endpoint (`http://collector:4318`); `None`: no export.
    pub otlp_endpoint: Option<String>,
    /// Share of new traces recorded, 0 to 1 (a request's sampled
    /// `traceparent` is always followed).
    pub sample_ratio: f64,
}

impl TraceSettings {
    /// Text logs with this default filter, no export.
    pub fn logs_only(default_filter: &str) -> Self {
        Self {
            log_format: LogFormat::Text,
            default_filter: default_filter.to_string(),
            otlp_endpoint: None,
            sample_ratio: 1.0,
        }
    }
}

/// Why the subscriber could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The OTLP endpoint is not a usable URL.
    #[error("invalid OTLP endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The exporter could not be built.
    #[error("building the OTLP exporter: {0}")]
    Exporter(String),
    /// A global subscriber was already set in this process.
    #[error("a tracing subscriber is already set in this process")]
    AlreadySet,
}

/// Keeps the exporter alive; dropping it exports the spans still queued
/// and stops the exporter thread. Hold it until the program ends.
#[must_use = "dropping the guard stops the span export"]
#[derive(Debug, Default)]
pub struct TraceGuard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("easel: flushing spans to the OTLP endpoint failed: {e}");
        }
    }
}

/// Spans of Easel's own crates at INFO and above: always kept for the log
/// layer (so a line at any level carries its request and job ids), and
/// what the OpenTelemetry layer exports.
fn easel_spans(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && meta.target().starts_with("easel") && *meta.level() <= Level::INFO
}

/// Sets the process's subscriber. Call once, outside any async runtime
/// (the OTLP exporter's blocking HTTP client starts its own).
pub fn init(settings: &TraceSettings) -> Result<TraceGuard, TraceError> {
    let directive = log_filter_directive(
        std::env::var(LOG_FILTER_ENV).ok().as_deref(),
        std::env::var(RUST_LOG_ENV).ok().as_deref(),
        &settings.default_filter,
    );
    // A directive that does not parse falls back to the default, as before.
    let filter =
        EnvFilter::try_new(&directive).unwrap_or_else(|_| EnvFilter::new(&settings.default_filter));
    let log_filter = fresh::Fresh(filter.or(filter_fn(easel_spans)));
    // Colour codes only for a person reading a terminal, never in files,
    // pipes or CI logs.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let log: Box<dyn Layer<Registry> + Send + Sync> = match settings.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_filter(log_filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .fmt_fields(json::JsonFields)
            .event_format(json::JsonFormat)
            .with_filter(log_filter)
            .boxed(),
    };
    let mut layers = vec![log];
    let mut guard = TraceGuard::default();
    if let Some(endpoint) = &settings.otlp_endpoint {
        let (provider, tracer) = otel::provider(endpoint, settings.sample_ratio)?;
        // Easel's spans, and its INFO-and-above events as span events.
        let exported = Targets::new().with_target("easel", Level::INFO);
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(fresh::Fresh(exported))
                .boxed(),
        );
        guard.provider = Some(provider);
    }
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|_| TraceError::AlreadySet)?;
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn easel_log_wins_over_rust_log_which_wins_over_the_default() {
        assert_eq!(
            log_filter_directive(Some("debug"), Some("trace"), "warn"),
            "debug"
        );
        assert_eq!(log_filter_directive(None, Some("trace"), "warn"), "trace");
        assert_eq!(
            log_filter_directive(Some("  "), Some("info"), "warn"),
            "info"
        );
        assert_eq!(log_filter_directive(None, Some(""), "warn"), "warn");
        assert_eq!(
            log_filter_directive(None, None, "info,tower_http=warn"),
            "info,tower_http=warn"
        );
    }

    #[test]
    fn log_formats_parse_by_name() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!(
            "xml"
                .parse::<LogFormat>()
                .unwrap_err()
                .contains("text or json")
        );
    }
}
