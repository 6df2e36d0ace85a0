//! The router: one file per route group, assembled here with the body
//! limit, authentication, the OpenAPI document and the error fallbacks.

pub mod admin;
pub mod audit;
pub mod batch_control;
pub mod batch_results;
pub mod batches;
pub mod content;
pub mod files;
pub mod health;
pub mod image_list;
pub mod images;
pub(crate) mod images_stream;
pub mod jobs;
pub mod keys;
pub mod loras;
pub mod me;
pub mod metrics;
pub mod models;
pub mod projects;
pub mod review;
pub mod rollouts;
pub mod sdapi;
pub mod sdapi_info;
pub mod tenancy;
pub mod usage;
pub mod watermark;
pub mod workers;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, patch, post};
use utoipa::OpenApi as _;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::Scope;
use crate::error::{ApiError, ErrorKind};
use crate::openapi::ApiDoc;
use crate::state::AppState;

/// How a route keeps projects apart: what a key of project A gets when it
/// names or lists project B's things. The isolation test walks
/// [`table`] and checks each route by its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Names one thing by id (job, image): another project's answers 404,
    /// exactly like an id that does not exist.
    Owned,
    /// Lists things: only the caller's project's.
    Listed,
    /// Creates things in the caller's project (or reads an upload against
    /// the caller's project only, as watermark detection).
    Creates,
    /// Holds no project's data (the served models).
    Shared,
    /// Administrative: the `admin` scope only (admin keys see every
    /// project).
    Admin,
    /// Human review: the `review` scope (or `admin`); a reviewer sees its
    /// project's items, an admin every project's.
    Review,
    /// The caller's own state (the A1111 API's options and running task),
    /// kept per project and key: another caller's is never reached.
    Caller,
}

/// One route of the API: what it needs and how it isolates projects.
pub struct RouteSpec {
    /// Its method.
    pub method: Method,
    /// Its path, as axum matches it (`/v1/jobs/{id}`).
    pub path: &'static str,
    /// The scope a key needs; `None`: the route takes no key (probes,
    /// docs, metrics, signed image links).
    pub scope: Option<Scope>,
    /// How it keeps projects apart; `None` for routes without a key.
    pub isolation: Option<Isolation>,
    handler: fn() -> MethodRouter<AppState>,
}

macro_rules! route {
    ($method:ident $verb:ident $path:literal, $scope:expr, $isolation:expr, $handler:path) => {
        RouteSpec {
            method: Method::$method,
            path: $path,
            scope: $scope,
            isolation: $isolation,
            handler: || $verb($handler),
        }
    };
}

/// Every route a key reaches, with its scope and isolation class.
pub fn table() -> Vec<RouteSpec> {
    use Isolation::*;
    let (g, r, a) = (Some(Scope::Generate), Some(Scope::Read), Some(Scope::Admin));
    let v = Some(Scope::Review);
    vec![
        route!(POST post "/v1/images/generations", g, Some(Creates), images::create_generation),
        route!(POST post "/v1/images/edits", g, Some(Creates), images::create_edit),
        route!(POST post "/v1/images/variations", g, Some(Creates), images::create_variation),
        route!(POST post "/v1/jobs", g, Some(Creates), jobs::create_job),
        route!(GET get "/v1/jobs", r, Some(Listed), jobs::list_jobs),
        route!(GET get "/v1/jobs/{id}", r, Some(Owned), jobs::get_job),
        route!(DELETE delete "/v1/jobs/{id}", g, Some(Owned), jobs::cancel_job),
        route!(GET get "/v1/jobs/{id}/events", r, Some(Owned), jobs::job_events),
        route!(GET get "/v1/images", r, Some(Listed), image_list::list_images),
        route!(GET get "/v1/images/{id}", r, Some(Owned), content::get_image),
        route!(DELETE delete "/v1/images/{id}", g, Some(Owned), content::delete_image),
        route!(POST post "/v1/watermark/detect", r, Some(Creates), watermark::detect_watermark),
        route!(POST post "/v1/files", g, Some(Creates), files::create_file),
        route!(GET get "/v1/files", r, Some(Listed), files::list_files),
        route!(GET get "/v1/files/{id}", r, Some(Owned), files::get_file),
        route!(DELETE delete "/v1/files/{id}", g, Some(Owned), files::delete_file),
        route!(GET get "/v1/files/{id}/content", r, Some(Owned), files::get_file_content),
        route!(POST post "/v1/batches", g, Some(Creates), batches::create_batch),
        route!(GET get "/v1/batches", r, Some(Listed), batches::list_batches),
        route!(GET get "/v1/batches/{id}", r, Some(Owned), batches::get_batch),
        route!(PATCH patch "/v1/batches/{id}", g, Some(Owned), batches::update_batch),
        route!(POST post "/v1/batches/{id}/cancel", g, Some(Owned), batches::cancel_batch),
        route!(POST post "/v1/batches/{id}/approve", g, Some(Owned), batches::approve_batch),
        route!(POST post "/v1/batches/{id}/pause", g, Some(Owned), batch_control::pause_batch),
        route!(POST post "/v1/batches/{id}/resume", g, Some(Owned), batch_control::resume_batch),
        route!(GET get "/v1/batches/{id}/manifest", r, Some(Owned), batch_results::get_manifest),
        route!(GET get "/v1/batches/{id}/export", r, Some(Owned), batch_results::get_export),
        route!(GET get "/v1/usage", r, Some(Listed), usage::get_usage),
        route!(GET get "/v1/review/next", v, Some(Review), review::next_item),
        route!(POST post "/v1/review/{image_id}", v, Some(Review), review::record_verdict),
        route!(GET get "/v1/review/stats", v, Some(Review), review::review_stats),
        route!(POST post "/sdapi/v1/txt2img", g, Some(Creates), sdapi::txt2img),
        route!(POST post "/sdapi/v1/img2img", g, Some(Creates), sdapi::img2img),
        route!(POST post "/sdapi/v1/interrupt", g, Some(Caller), sdapi::interrupt),
        route!(POST post "/sdapi/v1/skip", g, Some(Caller), sdapi::skip),
        route!(GET get "/sdapi/v1/progress", r, Some(Caller), sdapi_info::progress),
        route!(GET get "/sdapi/v1/options", r, Some(Caller), sdapi_info::get_options),
        route!(POST post "/sdapi/v1/options", g, Some(Caller), sdapi_info::set_options),
        route!(GET get "/sdapi/v1/sd-models", r, Some(Shared), sdapi_info::sd_models),
        route!(GET get "/sdapi/v1/loras", r, Some(Shared), loras::sd_loras),
        route!(POST post "/sdapi/v1/refresh-loras", r, Some(Shared), loras::refresh_loras),
        route!(POST post "/sdapi/v1/refresh-checkpoints", r, Some(Shared), loras::refresh_checkpoints),
        route!(GET get "/sdapi/v1/samplers", r, Some(Shared), sdapi_info::samplers),
        route!(GET get "/sdapi/v1/schedulers", r, Some(Shared), sdapi_info::schedulers),
        route!(GET get "/sdapi/v1/scripts", r, Some(Shared), sdapi_info::scripts),
        route!(POST post "/sdapi/v1/png-info", r, Some(Shared), sdapi_info::png_info),
        route!(GET get "/v1/me", r, Some(Caller), me::get_me),
        route!(GET get "/v1/models", r, Some(Shared), models::list_models),
        route!(GET get "/v1/models/{name}", r, Some(Shared), models::get_model),
        route!(GET get "/v1/loras", r, Some(Shared), loras::list_loras),
        route!(POST post "/v1/admin/models/{name}/load", a, Some(Admin), admin::load_model),
        route!(POST post "/v1/admin/models/{name}/unload", a, Some(Admin), admin::unload_model),
        route!(POST post "/v1/admin/models/{name}/versions", a, Some(Admin), rollouts::register_version),
        route!(POST post "/v1/admin/rollouts", a, Some(Admin), rollouts::create_rollout),
        route!(GET get "/v1/admin/rollouts", a, Some(Admin), rollouts::list_rollouts),
        route!(GET get "/v1/admin/rollouts/{id}", a, Some(Admin), rollouts::get_rollout),
        route!(POST post "/v1/admin/rollouts/{id}/promote", a, Some(Admin), rollouts::promote_rollout),
        route!(POST post "/v1/admin/rollouts/{id}/abort", a, Some(Admin), rollouts::abort_rollout),
        route!(GET get "/v1/admin/audit", a, Some(Admin), audit::list_audit),
        route!(GET get "/v1/admin/workers", a, Some(Admin), workers::list_workers),
        route!(POST post "/v1/admin/workers/{id}/drain", a, Some(Admin), workers::drain_worker),
        route!(POST post "/v1/admin/images/{id}/legal_hold", a, Some(Admin), content::set_legal_hold),
        route!(POST post "/v1/admin/projects", a, Some(Admin), projects::create_project),
        route!(GET get "/v1/admin/projects", a, Some(Admin), projects::list_projects),
        route!(GET get "/v1/admin/projects/{id}", a, Some(Admin), projects::get_project),
        route!(PATCH patch "/v1/admin/projects/{id}", a, Some(Admin), projects::update_project),
        route!(POST post "/v1/admin/keys", a, Some(Admin), keys::create_key),
        route!(GET get "/v1/admin/keys", a, Some(Admin), keys::list_keys),
        route!(GET get "/v1/admin/keys/{id}", a, Some(Admin), keys::get_key),
        route!(DELETE delete "/v1/admin/keys/{id}", a, Some(Admin), keys::revoke_key),
        route!(POST post "/v1/admin/keys/{id}/rotate", a, Some(Admin), keys::rotate_key),
        // Open: image bytes check a signed link or a key themselves.
        route!(GET get "/v1/images/{id}/content", None, None, content::get_image_content),
        route!(GET get "/healthz", None, None, health::healthz),
        route!(GET get "/readyz", None, None, health::readyz),
    ]
}

/// The scope route `path` (as matched) needs for `method`; `None` for a
/// route not in [`table`].
pub fn scope_of(method: &Method, path: &str) -> Option<Scope> {
    table()
        .into_iter()
        .find(|r| r.method == *method && r.path == path)
        .and_then(|r| r.scope)
}

/// Every route of the API.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.server.body_limit_bytes;
    let file_limit = state.config.batches.max_file_bytes;
    let (keyed, open): (Vec<RouteSpec>, Vec<RouteSpec>) =
        table().into_iter().partition(|r| r.scope.is_some());
    // Batch input files have their own, larger, limit.
    let add = |router: Router<AppState>, spec: &RouteSpec| {
        let handler = (spec.handler)();
        if spec.path == "/v1/files" && spec.method == Method::POST {
            router.route(spec.path, handler.layer(DefaultBodyLimit::max(file_limit)))
        } else {
            router.route(spec.path, handler)
        }
    };
    // Routes that need an API key (when keys exist): authentication, the
    // route's scope and the request rate, in `extract::require_key`.
    let protected =
        keyed
            .iter()
            .fold(Router::new(), add)
            .route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::extract::require_key,
            ));
    let open = open
        .iter()
        .fold(Router::new(), add)
        .merge(metrics_route(&state))
        .merge(crate::ui::routes(&state))
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
