//! Building and running the server: store, models, job system, worker and
//! router, with one owner for every background task and one shutdown path;
//! and the HTTP middleware stack around the router ([`middleware`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use easel_jobs::{Bus, Jobs, ModelSpec, Models, Worker, WorkerHandle, WorkerSetup};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::auth::ApiKeys;
use crate::error::{ApiError, ErrorKind};
use crate::signing::{UrlSigner, load_or_create_key};
use crate::state::AppState;
use easel_config::{Config, HttpConfig};

/// A built server, bound to its listener, not yet serving.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// This process's worker (not in the `api` role), built whether or not
    /// its loop runs (tests with `worker.enabled = false` step it by hand).
    worker: Option<Worker>,
    /// Its loop, when `worker.enabled`.
    worker_loop: Option<WorkerHandle>,
    /// The bus's link to other processes on a shared (PostgreSQL)
    /// database; stops when dropped.
    _relay: Option<easel_jobs::relay::Relay>,
    /// The `api` role's reader of the model catalog.
    catalog: Option<tokio::task::JoinHandle<()>>,
    /// The retention sweeper, in processes with a worker; stops when
    /// dropped.
    _sweeper: Option<AbortOnDrop>,
    /// Re-reads the routing table and evaluates rollouts (API processes).
    _rollouts: Option<AbortOnDrop>,
    /// Writes prompt figures and updates the drift score (API processes
    /// with a prompt policy).
    _drift: Option<AbortOnDrop>,
    /// Drives the open batches (API processes).
    _batches: Option<AbortOnDrop>,
}

impl Application {
    /// Opens the data folder, recovers jobs left running by a crash, starts
    /// loading the models in the background and the worker (unless disabled).
    pub async fn build(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        Self::build_with_clock(config, listener, easel_core::SystemClock::shared()).await
    }

    /// [`Application::build`] with `clock` as the source of every time the
    /// application reads: deadlines, leases, link expiry and record
    /// timestamps (tests pass a [`easel_core::ManualClock`] and move it
    /// instead of sleeping).
    pub async fn build_with_clock(
        config: Config,
        listener: TcpListener,
        clock: easel_core::SharedClock,
    ) -> anyhow::Result<Self> {
        let addr = listener
            .local_addr()
            .context("reading the listener's address")?;
        let role = config.role;
        config.check_role()?;
        if let Some(problem) = config.metrics.problem() {
            anyhow::bail!(problem);
        }
        if let Some(problem) = config.http.problem() {
            anyhow::bail!(problem);
        }
        // Before the data folder is touched: a device this build cannot
        // use stops startup here, not at the first model load.
        let mut pool = config.pool.options()?;
        pool.lora_dir = Some(config.lora_dir());
        let specs = model_specs(&config)?;
        let default = config
            .default_model_name()
            .context("no model is configured: pass --model PATH or add a [[models]] entry")?
            .to_string();
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating the data folder {}", config.data_dir.display()))?;
        let database_url = config.database.url_or_default(&config.data_dir);
        let db = easel_store::Db::connect(&database_url)
            .await
            .with_context(|| {
                format!(
                    "opening the database {}",
                    easel_config::storage::redact_password(&database_url)
                )
            })?
            .with_clock(clock);
        // Config-file keys act in projects that must exist.
        for project in ApiKeys::new(config.auth.api_keys.clone()).projects() {
            anyhow::ensure!(
                !project.is_reserved(),
                "auth.api_keys: project `{project}` is kept by the server for shadow rollouts; no key can act in it"
            );
            db.ensure_project(&project)
                .await
                .with_context(|| format!("creating project `{project}` of a config key"))?;
        }
        // A worker serves no API, only probes and metrics. Keys in the
        // database count as keys.
        if role.serves_api()
            && !db
                .any_active_api_key()
                .await
                .context("checking for API keys in the database")?
        {
            config.check_exposure(addr)?;
        }
        // Object keys start with `images/` (or `inputs/` for edit uploads),
        // so the default store's root is the data folder itself.
        let storage_url = config.storage.url_or_default(&config.data_dir);
        let blobs = easel_store::Blobs::connect(&storage_url, &config.storage.s3_options())
            .context("opening the object store")?;
        blobs.check().await.context("checking the object store")?;
        tracing::info!(storage = blobs.location(), "object store ready");
        let key = load_or_create_key(
            &config.data_dir,
            config.urls.signing_key.as_ref().map(|s| s.expose()),
        )
        .context("loading the URL signing key")?;
        // Audited before anything else happens, so every later event is
        // read against the configuration in force.
        db.append_audit(
            easel_store::NewAuditEvent::new(easel_config::summary::CONFIG_LOADED)
                .detail(easel_config::summary::config_summary(&config)),
        )
        .await
        .context("appending config.loaded to the audit log")?;
        let metrics = config.metrics.build();
        let (models, catalog) = if role.runs_worker() {
            let models = Models::with_pool(specs, &default, pool);
            models.attach_audit_log(db.clone());
            models.attach_metrics(metrics.clone());
            models.preload();
            (models, None)
        } else {
            let models = Models::remote(specs, &default).with_lora_dir(pool.lora_dir.clone());
            let known = easel_jobs::models::catalog::refresh(&models, &db)
                .await
                .context("reading the model catalog")?;
            tracing::info!(
                models = known,
                "api role: no model loads here; descriptions from the workers"
            );
            let follow = easel_jobs::models::catalog::follow(models.clone(), db.clone());
            (models, Some(follow))
        };
        let bus = Bus::new();
        let relay = easel_jobs::relay::connect(&bus, &db)
            .await
            .context("listening for other processes on the database")?;
        let jobs = Jobs::new(
            db.clone(),
            blobs.clone(),
            bus.clone(),
            metrics.clone(),
            config.queue.admission(),
        );
        // Every API process routes new jobs to a version of their model
        // and evaluates the running rollouts' guards.
        let rollouts = easel_jobs::Rollouts::new(
            jobs.db().clone(),
            models.clone(),
            metrics.clone(),
            Duration::from_secs_f64(config.rollouts.evaluate_every_seconds),
        );
        let rollout_loop = if role.serves_api() {
            rollouts
                .refresh()
                .await
                .context("reading the model aliases and rollouts")?;
            jobs.attach_rollouts(rollouts.clone());
            Some(AbortOnDrop(rollouts.spawn()))
        } else {
            None
        };
        let prompt_policy = easel_config::build::prompt_policy(&config)?;
        // Prompt drift, measured where prompts are checked.
        let drift = (role.serves_api() && prompt_policy.is_some()).then(|| {
            crate::drift::Drift::new(
                jobs.db().clone(),
                metrics.clone(),
                config.provenance.include_prompt,
            )
        });
        let drift_loop = drift.as_ref().map(|d| {
            AbortOnDrop(d.spawn(Duration::from_secs_f64(config.drift.evaluate_every_seconds)))
        });
        let worker = if role.runs_worker() {
            let worker = Worker::new(WorkerSetup {
                db,
                blobs,
                models: models.clone(),
                bus,
                post: easel_config::build::post_process(&config)?,
                settings: easel_jobs::WorkerSettings {
                    pricing: config.metrics.pricing(),
                    default_limits: config.tenancy.default_limits.clone(),
                    review_sample_percent: config.review.sample_percent,
                    ..config.worker.settings()
                },
                metrics: metrics.clone(),
            });
            worker
                .recover()
                .await
                .context("requeueing jobs left running")?;
            Some(worker)
        } else {
            None
        };
        let worker_loop = worker
            .as_ref()
            .filter(|_| config.worker.enabled)
            .map(Worker::start);
        let sweeper = role.runs_worker().then(|| {
            AbortOnDrop(tokio::spawn(easel_jobs::retention::run_sweeper(
                jobs.db().clone(),
                jobs.blobs().clone(),
                Duration::from_secs(config.tenancy.sweep_interval_seconds),
                i64::from(config.tenancy.sweep_batch),
            )))
        });
        tracing::info!(role = %role, "role");
        let state = AppState {
            signer: Arc::new(UrlSigner::new(key, config.urls.ttl_seconds)),
            keys: Arc::new(ApiKeys::new(config.auth.api_keys.clone())),
            prompt_policy,
            metrics,
            config: Arc::new(config),
            jobs,
            models,
            rollouts,
            drift,
            worker: worker.clone(),
            sd_tasks: crate::sdapi::Tasks::default(),
        };
        // Batches are driven where requests are admitted: the driver asks
        // this process's prompt policy about each item.
        let batch_loop = (role.serves_api() && state.config.batches.drive)
            .then(|| AbortOnDrop(batch_driver(&state).spawn()));
        Ok(Self {
            listener,
            state,
            worker,
            worker_loop,
            _relay: relay,
            catalog,
            _sweeper: sweeper,
            _rollouts: rollout_loop,
            _drift: drift_loop,
            _batches: batch_loop,
        })
    }

    /// The bound address (tests bind port 0 and read the real port here).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The job handle, for tests that submit and watch jobs directly.
    pub fn jobs(&self) -> Jobs {
        self.state.jobs.clone()
    }

    /// A driver of this application's batches, for tests that step them
    /// by hand (with `batches.drive` off).
    pub fn batch_driver(&self) -> easel_jobs::batches::BatchDriver {
        batch_driver(&self.state)
    }

    /// The worker (none in the `api` role), for tests that step jobs by
    /// hand.
    pub fn worker(&self) -> Option<Worker> {
        self.worker.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting connections,
    /// stops taking jobs, lets the running job finish within the grace
    /// period (or puts it back in the queue) and drains open requests.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            worker_loop,
            catalog,
            ..
        } = self;
        let _catalog = catalog.map(AbortOnDrop);
        let grace = Duration::from_secs(state.config.server.shutdown_grace_seconds);
        let jobs = state.jobs.clone();
        let http = state.config.http.clone();
        let router = if state.config.role.serves_api() {
            middleware(crate::routes::router(state), &http)
        } else {
            crate::routes::worker_router(state)
        };
        tracing::info!(addr = %listener.local_addr()?, "listening");
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let mut server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                })
                .await
        });
        tokio::select! {
            ended = &mut server => {
                // The server stopped by itself: an I/O error on the listener.
                ended.context("the HTTP server task panicked")?.context("serving HTTP")?;
                return Ok(());
            }
            () = shutdown => {}
        }
        tracing::info!("shutting down: no new connections or jobs");
        jobs.stop_accepting();
        let _ = stop_tx.send(true);
        if let Some(worker_loop) = worker_loop {
            worker_loop.shutdown(grace).await;
        }
        // Requests still open once the worker has stopped get a little
        // longer to answer; then the process goes anyway.
        match tokio::time::timeout(DRAIN_AFTER_WORKER, &mut server).await {
            Ok(ended) => ended
                .context("the HTTP server task panicked")?
                .context("serving HTTP")?,
            Err(_) => {
                tracing::warn!("requests still open after the drain period; closing them");
                server.abort();
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// The batch driver over `state`, with the server's hooks.
fn batch_driver(state: &AppState) -> easel_jobs::batches::BatchDriver {
    easel_jobs::batches::BatchDriver::new(
        state.jobs.clone(),
        Box::new(crate::batches::hooks::ServerHooks {
            state: state.clone(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs_f64(
                    state.config.batches.webhook_timeout_seconds,
                ))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        }),
        easel_jobs::batches::DriverSettings {
            window: state.config.batches.window,
            interval: Duration::from_secs_f64(state.config.batches.interval_seconds),
            max_attempts: state.config.batches.max_attempts,
            webhook_attempts: state.config.batches.webhook_attempts,
            webhook_backoff: Duration::from_secs_f64(state.config.batches.webhook_backoff_seconds),
            webhook_timeout: Duration::from_secs_f64(state.config.batches.webhook_timeout_seconds),
        },
    )
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long open requests may take to answer after the worker stopped.
const DRAIN_AFTER_WORKER: Duration = Duration::from_secs(5);

/// Wraps the router in the HTTP middleware stack, outermost first:
///
/// 1. a panic in a handler becomes a 500 `internal_error` in the API's error
///    shape (and a log line), instead of a dropped connection;
/// 2. CORS, when `http.cors_allowed_origins` lists any origin: preflights
///    are answered here, before authentication (browsers send them without
///    credentials);
/// 3. response compression (gzip or brotli, as the client's
///    `Accept-Encoding` asks): JSON and other text; tower-http's default
///    predicate leaves images (already compressed), SSE streams (compressing
///    them would hold events back) and bodies under 32 bytes alone;
/// 4. the request timeout, `http.request_timeout_seconds`, for every route
///    but the few that wait on a job by design (`untimed`): a 504 `request_timeout` when the response head
///    is not ready in time. Bodies already streaming are never cut.
///
/// `Router::layer` wraps every route and the fallbacks, so 404s and 405s go
/// through the same stack. Public so tests can wrap a router of their own
/// (with a handler that panics or never answers) in exactly this stack.
pub fn middleware(router: Router, http: &HttpConfig) -> Router {
    let mut router = router;
    if let Some(limit) = http.request_timeout() {
        router = router.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| request_timeout(limit, req, next),
        ));
    }
    router = router.layer(CompressionLayer::new());
    if let Some(cors) = cors_layer(http) {
        router = router.layer(cors);
    }
    router.layer(CatchPanicLayer::custom(panic_response))
}

/// Whether a request is outside the request timeout: the synchronous image
/// routes wait for their job under their own deadline
/// (`worker.sync_timeout_seconds`, `X-Easel-Timeout`) and answer 504
/// themselves; a file upload is bounded by its size; the SSE stream of a job lives as long as the job. Paths as
/// in `crate::routes::router`.
fn untimed(method: &Method, path: &str) -> bool {
    match *method {
        // An upload of up to `batches.max_file_bytes` may take longer to
        // arrive than any answer takes.
        Method::POST => {
            path == "/v1/images/generations" || path == "/v1/images/edits" || path == "/v1/files"
        }
        Method::GET => path
            .strip_prefix("/v1/jobs/")
            .and_then(|rest| rest.strip_suffix("/events"))
            .is_some_and(|id| !id.is_empty() && !id.contains('/')),
        _ => false,
    }
}

/// Answers 504 `request_timeout` when the inner service has not produced a
/// response head within `limit`.
async fn request_timeout(limit: Duration, req: Request, next: Next) -> Response {
    if untimed(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorKind::Timeout,
            "request_timeout",
            format!(
                "the request took longer than http.request_timeout_seconds ({} s)",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}

/// The CORS layer for `http.cors_allowed_origins`; `None` (no CORS headers
/// at all) when the list is empty.
fn cors_layer(http: &HttpConfig) -> Option<CorsLayer> {
    if http.cors_allowed_origins.is_empty() {
        return None;
    }
    // Checked at startup (`HttpConfig::problem`): every listed origin is a
    // valid header value.
    let origins = if http.any_origin() {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            http.cors_allowed_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            // Whatever the preflight asks for (Authorization, Content-Type,
            // X-Easel-Timeout, ...): the origin check is the gate.
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
            // Browsers cap this (Chromium at 2 hours); an hour saves a
            // preflight per request without pinning a changed policy long.
            .max_age(Duration::from_secs(3600)),
    )
}

/// The response for a handler that panicked: the API's 500 shape. The panic
/// message goes to the log only; it may hold internals.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a non-string panic payload)");
    tracing::error!(panic = message, "a request handler panicked");
    ApiError::new(
        ErrorKind::Internal,
        "internal_error",
        "internal error while handling the request; see the server log",
    )
    .into_response()
}

/// Model specs from the config; a missing folder of the default model is a
/// startup error that says which flag to pass.
fn model_specs(config: &Config) -> anyhow::Result<Vec<ModelSpec>> {
    let default = config.default_model_name().unwrap_or_default();
    // An `api` process reads no model folder: the workers describe them.
    for m in config.models.iter().filter(|_| config.role.runs_worker()) {
        if m.name == default && !m.path.is_dir() {
            anyhow::bail!(
                "the model folder {} (model `{}`) does not exist; pass --model PATH with a \
                 diffusers model folder, or set [[models]] in easel.toml",
                m.path.display(),
                m.name
            );
        }
    }
    Ok(config
        .models
        .iter()
        .map(|m| ModelSpec {
            name: m.name.clone(),
            path: m.path.clone(),
        })
        .collect())
}

/// Builds and serves: the `run(listener, config, shutdown)` entry point.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Application::build(config, listener)
        .await?
        .run(shutdown)
        .await
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_job_waiting_routes_are_outside_the_request_timeout() {
        assert!(untimed(&Method::POST, "/v1/images/generations"));
        assert!(untimed(&Method::POST, "/v1/images/edits"));
        assert!(untimed(&Method::GET, "/v1/jobs/job_123/events"));
        assert!(!untimed(&Method::GET, "/v1/jobs/job_123"));
        assert!(!untimed(&Method::GET, "/v1/jobs//events"));
        assert!(!untimed(&Method::GET, "/v1/jobs/a/b/events"));
        assert!(!untimed(&Method::POST, "/v1/jobs"));
        assert!(!untimed(&Method::GET, "/v1/images/generations"));
        assert!(!untimed(&Method::GET, "/v1/models"));
    }
}
