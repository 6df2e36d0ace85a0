//! Building and running the server: store, models, job system, worker and
//! router, with one owner for every background task and one shutdown path.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use easel_jobs::{Jobs, ModelSpec, Models, WorkerHandle};
use tokio::net::TcpListener;

use crate::auth::ApiKeys;
use crate::config::Config;
use crate::signing::{UrlSigner, load_or_create_key};
use crate::state::AppState;

/// A built server, bound to its listener, not yet serving.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    worker: Option<WorkerHandle>,
}

impl Application {
    /// Opens the data folder, recovers jobs left running by a crash, starts
    /// loading the models in the background and the worker (unless disabled).
    pub async fn build(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        let addr = listener
            .local_addr()
            .context("reading the listener's address")?;
        config.check_exposure(addr)?;
        if let Some(problem) = config.metrics.problem() {
            anyhow::bail!(problem);
        }
        // Before the data folder is touched: a device this build cannot
        // use stops startup here, not at the first model load.
        let pool = config.pool.options()?;
        let specs = model_specs(&config)?;
        let default = config
            .default_model_name()
            .context("no model is configured: pass --model PATH or add a [[models]] entry")?
            .to_string();
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating the data folder {}", config.data_dir.display()))?;
        let db = easel_store::Db::open(&config.database_path())
            .await
            .with_context(|| {
                format!("opening the database {}", config.database_path().display())
            })?;
        // Object keys start with `images/` (or `inputs/` for edit uploads),
        // so the store's root is the data folder itself.
        let blobs = easel_store::Blobs::local(&config.data_dir).with_context(|| {
            format!("opening the object store in {}", config.data_dir.display())
        })?;
        let key = load_or_create_key(
            &config.data_dir,
            config.urls.signing_key.as_ref().map(|s| s.expose()),
        )
        .context("loading the URL signing key")?;
        // Audited before anything else happens, so every later event is
        // read against the configuration in force.
        db.append_audit(
            easel_store::NewAuditEvent::new(crate::config_summary::CONFIG_LOADED)
                .detail(crate::config_summary::config_summary(&config)),
        )
        .await
        .context("appending config.loaded to the audit log")?;
        let metrics = config.metrics.build();
        let models = Models::with_pool(specs, &default, pool);
        models.attach_audit_log(db.clone());
        models.attach_metrics(metrics.clone());
        models.preload();
        let jobs = Jobs::new(db, blobs, models);
        jobs.attach_metrics(metrics.clone());
        jobs.configure_admission(config.queue.admission());
        let prompt_policy = crate::responsible::build_prompt_policy(&config)?;
        jobs.configure_post_process(crate::responsible::build_post_process(&config)?);
        jobs.recover()
            .await
            .context("requeueing jobs left running")?;
        let worker = config
            .worker
            .enabled
            .then(|| jobs.start_worker_with(config.worker.settings()));
        let state = AppState {
            signer: Arc::new(UrlSigner::new(key, config.urls.ttl_seconds)),
            keys: Arc::new(ApiKeys::new(config.auth.api_keys.clone())),
            prompt_policy,
            metrics,
            config: Arc::new(config),
            jobs,
        };
        Ok(Self {
            listener,
            state,
            worker,
        })
    }

    /// The bound address (tests bind port 0 and read the real port here).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The job system, for tests that step jobs by hand.
    pub fn jobs(&self) -> Jobs {
        self.state.jobs.clone()
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
            worker,
        } = self;
        let grace = Duration::from_secs(state.config.server.shutdown_grace_seconds);
        let jobs = state.jobs.clone();
        let router = crate::routes::router(state);
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
        if let Some(worker) = worker {
            worker.shutdown(grace).await;
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

/// How long open requests may take to answer after the worker stopped.
const DRAIN_AFTER_WORKER: Duration = Duration::from_secs(5);

/// Model specs from the config; a missing folder of the default model is a
/// startup error that says which flag to pass.
fn model_specs(config: &Config) -> anyhow::Result<Vec<ModelSpec>> {
    let default = config.default_model_name().unwrap_or_default();
    for m in &config.models {
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
