//! Correlation: every request gets an id and a span, and a job keeps both.
//!
//! [`middleware`] runs around every route (and the 404/405 fallbacks). It
//! takes the client's `x-request-id` when it is 1–128 characters of
//! `[A-Za-z0-9._:-]`, otherwise makes a new one (a UUIDv7, 32 hex digits);
//! opens the `http.request` span (`method`, `route` — the matched path
//! template, `unmatched` for 404s —, `request_id`, then `status`), which
//! continues a W3C `traceparent` when OTLP export is on; rewrites the
//! request's `x-request-id` to the id in use, and returns it on the
//! response, error or not.
//!
//! Handlers that create a job take [`JobTrace::of`] the request: the id
//! and the `traceparent` of the request's span, stored on the job, so the
//! worker's `job.run` span joins the same trace whenever it runs.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use easel_telemetry::trace::{
    REQUEST_ID_HEADER, accept_request_id, continue_trace, record_trace_id, traceparent_of,
};
use tracing::Instrument as _;

/// The route label of a request no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Gives the request its id and span; see the module documentation.
pub async fn middleware(mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let id = accept_request_id(header(headers, REQUEST_ID_HEADER));
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
    let span = tracing::info_span!(
        "http.request",
        otel.kind = "server",
        method = %request.method(),
        route,
        request_id = %id,
        status = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    continue_trace(
        &span,
        header(headers, "traceparent"),
        header(headers, "tracestate"),
    );
    record_trace_id(&span);
    let value = HeaderValue::from_str(&id).expect("an accepted request id is a valid header value");
    request
        .headers_mut()
        .insert(REQUEST_ID_HEADER, value.clone());
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("status", status.as_u16());
    // 503 is deliberate (not ready yet, shutting down, model unavailable)
    // and probes poll it: not worth a warning.
    if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        span.in_scope(|| tracing::warn!(status = status.as_u16(), "request failed"));
    }
    response.headers_mut().insert(REQUEST_ID_HEADER, value);
    response
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// What a job created by a request keeps of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobTrace {
    /// The request's id (`x-request-id`).
    pub request_id: Option<String>,
    /// The W3C `traceparent` of the request's span; `None` unless a trace
    /// is being recorded.
    pub trace_parent: Option<String>,
}

impl JobTrace {
    /// The trace of the request being handled: its id (as [`middleware`]
    /// rewrote it) and the current span's context. Call from a handler.
    pub fn of(headers: &HeaderMap) -> Self {
        Self {
            request_id: header(headers, REQUEST_ID_HEADER).map(str::to_string),
            trace_parent: traceparent_of(&tracing::Span::current()),
        }
    }
}
