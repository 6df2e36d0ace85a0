//! The router: one file per route group, assembled here with the body
//! limit, authentication, the OpenAPI document and the error fallbacks.

pub mod admin;
pub mod audit;
pub mod content;
pub mod health;
pub mod images;
pub mod jobs;
pub mod metrics;
pub mod models;
pub mod watermark;
pub mod workers;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use utoipa::OpenApi as _;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::{ApiError, ErrorKind};
use crate::openapi::ApiDoc;
use crate::state::AppState;

/// Every route of the API.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.server.body_limit_bytes;
    // Routes that need an API key (when keys are configured).
    let protected = Router::new()
        .route("/v1/images/generations", post(images::create_generation))
        .route("/v1/images/edits", post(images::create_edit))
        .route("/v1/jobs", post(jobs::create_job).get(jobs::list_jobs))
        .route("/v1/jobs/{id}", get(jobs::get_job).delete(jobs::cancel_job))
        .route("/v1/jobs/{id}/events", get(jobs::job_events))
        .route("/v1/images/{id}", get(content::get_image))
        .route("/v1/watermark/detect", post(watermark::detect_watermark))
        .route("/v1/models", get(models::list_models))
        .route("/v1/models/{name}", get(models::get_model))
        // Admin routes check the `admin` scope themselves.
        .route("/v1/admin/models/{name}/load", post(admin::load_model))
        .route("/v1/admin/models/{name}/unload", post(admin::unload_model))
        .route("/v1/admin/audit", get(audit::list_audit))
        .route("/v1/admin/workers", get(workers::list_workers))
        .route("/v1/admin/workers/{id}/drain", post(workers::drain_worker))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::extract::require_key,
        ));
    // Routes open to all: probes, docs, and image bytes (which check a
    // signed link or a key themselves).
    let open = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/v1/images/{id}/content", get(content::get_image_content))
        .merge(metrics_route(&state))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()));
    Router::new()
        .merge(protected)
        .merge(open)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::record_http,
        ))
        // Outermost: every response, the fallbacks' included, carries the
        // request id, and everything below runs in the request's span.
        .layer(axum::middleware::from_fn(crate::correlation::middleware))
        .with_state(state)
}

/// The routes of a `worker` process: probes and metrics, nothing else
/// (its jobs come from the queue, not from clients).
pub fn worker_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(metrics_route(&state))
        .fallback(not_found_on_worker)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(crate::correlation::middleware))
        .with_state(state)
}

async fn not_found_on_worker(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "route_not_found",
        format!(
            "no route for {}: this process runs the worker role, which serves only /healthz, \
             /readyz and /metrics; send API requests to an api (or all) process",
            uri.path()
        ),
    )
}

/// `GET /metrics` unless `[metrics] enabled = false`.
fn metrics_route(state: &AppState) -> Router<AppState> {
    let router = Router::new();
    if state.config.metrics.enabled {
        router.route("/metrics", get(metrics::get_metrics))
    } else {
        router
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "route_not_found",
        format!("no route for {}; see /docs", uri.path()),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
