//! OpenTelemetry: the OTLP/HTTP exporter, and W3C trace context carried
//! into a span (from a `traceparent` header or a stored job) and out of one
//! (to store on a job).
//!
//! Without an exporter there is no OpenTelemetry layer: every helper here
//! then does nothing and [`traceparent_of`] answers `None`, so callers never
//! check whether tracing is on.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry::{KeyValue, trace::TraceId};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::TraceError;

/// The path OTLP/HTTP collectors serve traces on, appended to the
/// configured base endpoint (as the `OTEL_EXPORTER_OTLP_ENDPOINT`
/// convention does).
pub const TRACES_PATH: &str = "/v1/traces";

/// How long one export may take before it is dropped.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The traces URL for a base endpoint (`http://collector:4318` →
/// `http://collector:4318/v1/traces`), or why the base is unusable: it must
/// be an absolute `http://` or `https://` URL with a host, no query or
/// fragment, and no spaces.
pub fn traces_url(endpoint: &str) -> Result<String, String> {
    let endpoint = endpoint.trim();
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(|| format!("`{endpoint}` is not an http:// or https:// URL"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("`{endpoint}` has no host"));
    }
    if endpoint
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#'))
    {
        return Err(format!(
            "`{endpoint}` must not contain spaces, a query or a fragment"
        ));
    }
    let base = endpoint.trim_end_matches('/');
    if base.ends_with(TRACES_PATH) {
        return Ok(base.to_string());
    }
    Ok(format!("{base}{TRACES_PATH}"))
}

/// A tracer provider exporting over OTLP/HTTP (protobuf) through a batch
/// span processor, which exports from its own thread with the blocking
/// HTTP client. Build it outside any async runtime: the blocking client
/// starts a runtime of its own.
pub(super) fn provider(
    endpoint: &str,
    sample_ratio: f64,
) -> Result<(SdkTracerProvider, SdkTracer), TraceError> {
    let url = traces_url(endpoint).map_err(|reason| TraceError::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason,
    })?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TraceError::Exporter(e.to_string()))?;
    let resource = Resource::builder()
        .with_service_name("easel")
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    // A request that arrives with a sampled `traceparent` is recorded
    // whatever the ratio: the caller already decided to keep its trace.
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
        sample_ratio.clamp(0.0, 1.0),
    )));
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("easel");
    Ok((provider, tracer))
}

/// Makes `span` continue the trace of a W3C `traceparent` (and optional
/// `tracestate`), when it is well formed and tracing is on; otherwise
/// `span` starts a trace of its own. Call before the span is first entered.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let mut carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    if let Some(state) = tracestate {
        carrier.insert("tracestate".to_string(), state.to_string());
    }
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        // Fails only when there is no OpenTelemetry layer: nothing to continue.
        let _ = span.set_parent(parent);
    }
}

/// The W3C `traceparent` of `span`, when tracing is on and the span is
/// part of a trace; `None` otherwise. Starts the span's OpenTelemetry
/// context, so call [`continue_trace`] first.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// The trace id of `span` (32 hex digits), when tracing is on.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    let id = span.context().span().span_context().trace_id();
    (id != TraceId::INVALID).then(|| id.to_string())
}

/// Records `span`'s trace id in its `trace_id` field (declared
/// `trace_id = tracing::field::Empty`), so log lines inside it carry the id
/// that finds the trace. Does nothing when tracing is off.
pub fn record_trace_id(span: &tracing::Span) {
    if let Some(id) = trace_id_of(span) {
        span.record("trace_id", id.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_appended_once() {
        assert_eq!(
            traces_url("http://collector:4318").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://c.example/otlp/").unwrap(),
            "https://c.example/otlp/v1/traces"
        );
        assert_eq!(
            traces_url("http://127.0.0.1:4318/v1/traces").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
    }

    #[test]
    fn an_unusable_endpoint_says_why() {
        assert!(
            traces_url("collector:4318")
                .unwrap_err()
                .contains("http://")
        );
        assert!(traces_url("http://").unwrap_err().contains("no host"));
        assert!(traces_url("http://a b").unwrap_err().contains("spaces"));
    }

    #[test]
    fn without_a_tracing_layer_nothing_is_propagated() {
        let span = tracing::info_span!("test");
        continue_trace(
            &span,
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            None,
        );
        assert_eq!(traceparent_of(&span), None);
        assert_eq!(trace_id_of(&span), None);
    }
}
