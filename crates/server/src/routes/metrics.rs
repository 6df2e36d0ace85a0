//! `GET /metrics` and the middleware that counts every HTTP response.
//!
//! The route is open (no API key), like the probes: scrape it over a
//! private network or firewall it. Before rendering it sets the gauges that
//! describe the present: queue depth and oldest queued job per tier (two
//! small store queries each), the model pool, and CPU utilisation since the
//! previous scrape, and GPU utilisation through NVML where the NVIDIA
//! driver is present (no series elsewhere).
//!
//! [`record_http`] runs around every route and the 404/405 fallbacks, so
//! extractor rejections and unmatched paths are counted too; `route` is the
//! matched path template (`/v1/jobs/{id}`), `unmatched` when none matched,
//! so no id ever becomes a label; a method outside the standard ones is
//! `other`. Durations end when the response head is ready: a server-sent
//! event stream counts until its first byte.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use easel_core::Tier;
use easel_telemetry::metrics::{CONTENT_TYPE, ModelGauge};

use crate::state::AppState;

/// The route label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// `GET /metrics`: every family of the catalogue, OpenMetrics text.
pub async fn get_metrics(State(state): State<AppState>) -> Response {
    refresh_gauges(&state).await;
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

/// Sets the scrape-time gauges. A store error leaves the queue gauges as
/// they were (and is logged): the rest of the scrape is still worth having.
async fn refresh_gauges(state: &AppState) {
    let metrics = &state.metrics;
    let db = state.jobs.db();
    for tier in [Tier::Realtime, Tier::Batch] {
        let depth = db.queue_depth(Some(tier)).await;
        let oldest = db.oldest_queued(tier).await;
        match (depth, oldest) {
            (Ok(depth), Ok(oldest)) => {
                let age = oldest
                    .map(|created| (db.now() - created).num_milliseconds() as f64 / 1e3)
                    .unwrap_or(0.0);
                metrics.set_queue(tier.as_str(), depth, age);
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, tier = tier.as_str(), "metrics: could not read the queue");
            }
        }
    }
    let models = state.models.list();
    let gauges: Vec<ModelGauge<'_>> = models
        .iter()
        .map(|m| ModelGauge {
            name: &m.name,
            loaded: m.state == easel_jobs::ModelState::Ready,
            bytes: m.memory_bytes,
        })
        .collect();
    metrics.set_models(&gauges);
    metrics.sample_cpu();
    metrics.sample_gpu();
}

/// Counts the response to every request: route template, method, status
/// and duration.
pub async fn record_http(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| UNMATCHED.to_string());
    let method = method_label(request.method());
    let response = next.run(request).await;
    state.metrics.http_request(
        &route,
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The `method` label: the standard methods by name, any other (a client
/// may send any token) as `other`, so the label stays bounded.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: &[Method] = &[
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("other", |known| known.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_method_is_other_so_the_label_stays_bounded() {
        assert_eq!(method_label(&Method::POST), "POST");
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&odd), "other");
    }
}
