//! The worker: everything that runs jobs (claim, render, post-process,
//! store), built once and complete from a [`WorkerSetup`], and its loop:
//! plan a batch, claim it, run it, repeat.
//!
//! Each turn the loop puts back jobs whose lease expired (their worker
//! died), fails queued jobs past their deadline, reads the queued
//! candidates (a bounded number per user) and the fair-share counters all
//! workers share, lets the pure [`Scheduler`] choose the next batch —
//! strict tiers, fair share between users, one batching key — claims
//! exactly those jobs in one conditional `UPDATE`, and charges what it
//! claimed to the shared counters. A batch that is not full may wait a short window for
//! companions; a new submission wakes the loop at once. The batch itself
//! runs in [`crate::batch`].
//!
//! On shutdown the loop stops claiming; a batch still running when the
//! grace period ends is cancelled and its jobs go back to the queue, so the
//! next start finishes them.
//!
//! A running worker registers itself in the store's worker registry and
//! heartbeats ([`registry`]); an operator's drain request reaches it there
//! and it stops claiming, as on shutdown. A model whose engine calls keep
//! failing on this worker is left to other workers for a while
//! ([`crate::circuit`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use easel_core::JobId;
use easel_engine::CancelToken;
use easel_store::{Blobs, Db};
use easel_telemetry::metrics::Metrics;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bus::Bus;
use crate::circuit::Circuits;
use crate::engine_thread::EngineThread;
use crate::error::JobError;
use crate::housekeeping;
use crate::models::{ModelState, Models};
use crate::postprocess::PostProcess;
use crate::running::{CancelReason, Running};
use crate::schedule::{Candidate, Charge, Scheduler};

/// How many plans one turn tries to claim when other workers take the
/// chosen jobs first.
const CLAIM_TRIES: u32 = 4;

/// How long the idle loop sleeps between store polls when nothing wakes it.
/// Submissions wake it at once; the poll covers jobs inserted by another
/// process and leases that expire.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// How often the loop looks again while the only queued work waits for a
/// model to load.
const MODEL_POLL: Duration = Duration::from_millis(100);

/// How the worker batches and reports. `[worker]` in the server's config.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSettings {
    /// Most images in one engine call (at least 1). A job with more images
    /// than this runs alone.
    pub max_batch_images: u32,
    /// How long a batch that is not full may wait, from its first job's
    /// arrival, for companions with the same settings.
    pub batch_window: Duration,
    /// Publish previews every this many steps; 0 turns them off.
    pub preview_every_steps: u32,
    /// How long a claimed job is leased before another worker may take it;
    /// renewed every third of it while the job runs.
    pub lease: Duration,
    /// What an image costs, recorded with it.
    pub pricing: Pricing,
    /// The limits of projects that set none (`tenancy.default_limits`):
    /// their quotas and budget hold batch jobs.
    pub default_limits: easel_core::Limits,
    /// Share of stored images (0 to 100 %) that enter the human review
    /// queue besides every flagged one (`review.sample_percent`).
    pub review_sample_percent: f64,
}

/// The prices an image's cost is computed from; both 0 by default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pricing {
    /// Currency units per second of device time (`metrics.price_per_device_second`).
    pub per_device_second: f64,
    /// Currency units per GB stored for a month (`metrics.storage_price_per_gb_month`).
    pub per_gb_month: f64,
}

impl Pricing {
    /// An image's cost: its device seconds at the device price, plus its
    /// bytes stored for one month.
    pub fn cost(&self, device_seconds: f64, bytes: u64) -> f64 {
        device_seconds * self.per_device_second + bytes as f64 / 1e9 * self.per_gb_month
    }
}

impl Default for WorkerSettings {
    /// The defaults documented in `docs/configuration.md`.
    fn default() -> Self {
        Self {
            // On a 2-core CPU batching was measured to bring no throughput,
            // only latency; see docs/performance.md.
            max_batch_images: 1,
            batch_window: Duration::from_millis(10),
            preview_every_steps: 0,
            lease: Duration::from_secs(60),
            pricing: Pricing::default(),
            default_limits: easel_core::Limits::default(),
            review_sample_percent: 1.0,
        }
    }
}

/// Everything a worker is made of. A worker is built once from this and
/// never reconfigured.
pub struct WorkerSetup {
    /// The queue and the records.
    pub db: Db,
    /// Where image bytes go (and edits' initial images come from).
    pub blobs: Blobs,
    /// The models it serves.
    pub models: Models,
    /// The link to the job handle of this process (events, wake-ups,
    /// cancels, completions); a fresh [`Bus`] when there is none.
    pub bus: Bus,
    /// What happens to every image after the engine.
    pub post: PostProcess,
    /// How it batches, leases and reports.
    pub settings: WorkerSettings,
    /// Where jobs, stages and images are counted.
    pub metrics: Metrics,
}

/// Runs jobs: claims them from the store, renders them on its own engine
/// thread, post-processes and stores their images and records the outcome.
/// Cheap to clone; clones are the same worker.
#[derive(Clone)]
pub struct Worker {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) db: Db,
    pub(crate) blobs: Blobs,
    pub(crate) models: Models,
    pub(crate) bus: Bus,
    pub(crate) post: Arc<PostProcess>,
    pub(crate) settings: WorkerSettings,
    pub(crate) metrics: Metrics,
    /// The jobs this worker is running, with their batch's token.
    pub(crate) running: Mutex<HashMap<JobId, Running>>,
    /// Its id in the worker registry and the owner name of its claims.
    pub(crate) id: String,
    /// Set when it must claim nothing more (drain requested, shutdown).
    pub(crate) draining: AtomicBool,
    /// Its circuit breaker, per model.
    pub(crate) circuits: Mutex<Circuits>,
    /// Projects with a quota or budget, cached.
    pub(crate) budgets: budget::BudgetProjects,
}

/// The running worker loop. Dropping it without [`WorkerHandle::shutdown`]
/// aborts the loop (the store's startup recovery then requeues its jobs).
pub struct WorkerHandle {
    worker: Worker,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    heartbeat: Option<JoinHandle<()>>,
}

/// What one turn of the loop did.
enum Turn {
    /// Ran (or tried to claim) a batch: look again at once.
    Ran,
    /// Nothing can run before this much time passes (or a wake-up).
    Wait(Duration),
}

/// One loop's own state: its engine thread, its scheduler and the name it
/// claims jobs under (its worker's id).
pub(crate) struct Lane {
    pub(crate) engine: Arc<EngineThread>,
    pub(crate) settings: WorkerSettings,
    pub(crate) name: String,
    scheduler: Scheduler,
}

impl Lane {
    fn new(name: &str, settings: WorkerSettings) -> Self {
        Self {
            engine: Arc::new(EngineThread::start()),
            scheduler: Scheduler::new(settings.max_batch_images, settings.batch_window),
            settings,
            name: name.to_string(),
        }
    }
}

/// The host this process runs on (the pod's name on Kubernetes).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "easel".into())
}

/// A worker's id (its registry entry and the jobs' `lease_owner`): host,
/// process and a random part, so that no two workers share one, not even
/// containers that all run as pid 1 or two workers of one process.
fn worker_id() -> String {
    let random = std::hash::BuildHasher::hash_one(
        &std::collections::hash_map::RandomState::new(),
        std::time::SystemTime::now(),
    );
    format!(
        "{}-{}-{:08x}",
        host_name(),
        std::process::id(),
        random & 0xffff_ffff
    )
}

impl Worker {
    /// The worker `setup` describes. Nothing runs until [`Worker::start`]
    /// (or [`Worker::run_pending`]).
    pub fn new(setup: WorkerSetup) -> Self {
        let WorkerSetup {
            db,
            blobs,
            models,
            bus,
            post,
            settings,
            metrics,
        } = setup;
        Self {
            inner: Arc::new(Inner {
                db,
                blobs,
                models,
                bus,
                post: Arc::new(post),
                settings,
                metrics,
                running: Mutex::new(HashMap::new()),
                id: worker_id(),
                draining: AtomicBool::new(false),
                circuits: Mutex::new(Circuits::new()),
                budgets: budget::BudgetProjects::default(),
            }),
        }
    }

    /// Another worker over the same store, models, bus, post-processing
    /// and metrics, with other settings (tests and tools that compare
    /// batching settings on one queue). It has its own running jobs.
    pub fn with_settings(&self, settings: WorkerSettings) -> Worker {
        let inner = &self.inner;
        Self {
            inner: Arc::new(Inner {
                db: inner.db.clone(),
                blobs: inner.blobs.clone(),
                models: inner.models.clone(),
                bus: inner.bus.clone(),
                post: inner.post.clone(),
                settings,
                metrics: inner.metrics.clone(),
                running: Mutex::new(HashMap::new()),
                id: worker_id(),
                draining: AtomicBool::new(false),
                circuits: Mutex::new(Circuits::new()),
                budgets: budget::BudgetProjects::default(),
            }),
        }
    }

    /// Its id in the worker registry (`GET /v1/admin/workers`), which its
    /// claims carry as the jobs' lease owner.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Whether it has stopped claiming jobs (a drain was requested, or it
    /// is shutting down).
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Stops claiming jobs; what it runs finishes. Wakes the loop so it
    /// notices at once. There is no way back short of a restart: a drained
    /// worker is on its way out.
    pub fn drain(&self) {
        if !self.inner.draining.swap(true, Ordering::SeqCst) {
            tracing::warn!(worker = %self.inner.id, "draining: claiming no more jobs");
            self.inner.bus.wake_all();
        }
    }

    /// The models whose circuit breaker is open on this worker now, with
    /// how long until each closes.
    pub fn open_circuits(&self) -> Vec<(String, Duration)> {
        let now = Instant::now();
        self.inner
            .circuits
            .lock()
            .expect("circuits lock poisoned")
            .open(now)
            .into_iter()
            .map(|(model, until)| (model, until - now))
            .collect()
    }

    /// The models this worker serves.
    pub fn models(&self) -> &Models {
        &self.inner.models
    }

    /// The metrics it counts into.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Puts jobs left `running` by a crash back in the queue. Call once at
    /// startup, before the loop starts.
    ///
    /// On a database of its own (SQLite) every running job was this
    /// process's, so all of them go back at once. On a shared database the
    /// other workers' jobs are alive: only jobs whose lease has run out go
    /// back now, and a dead worker's others when theirs does.
    pub async fn recover(&self) -> Result<u64, JobError> {
        let db = &self.inner.db;
        let ids = if db.is_shared() {
            db.requeue_expired_leases().await
        } else {
            db.requeue_running_on_startup().await
        }
        .map_err(JobError::Store)?;
        if !ids.is_empty() {
            tracing::warn!(
                jobs = ids.len(),
                "requeued jobs left running by an earlier process"
            );
        }
        Ok(ids.len() as u64)
    }

    /// Starts the loop on the current runtime, with its own engine thread,
    /// and the registry heartbeat beside it.
    pub fn start(&self) -> WorkerHandle {
        let (stop, stop_rx) = watch::channel(false);
        let worker = self.clone();
        let settings = self.inner.settings.clone();
        let name = self.inner.id.clone();
        let task = tokio::spawn(async move {
            worker_loop(worker, Lane::new(&name, settings), stop_rx).await;
        });
        let heartbeat = tokio::spawn(registry::heartbeat(self.clone()));
        WorkerHandle {
            worker: self.clone(),
            stop,
            task: Some(task),
            heartbeat: Some(heartbeat),
        }
    }

    /// Runs queued jobs until none is left, in the calling task (the engine
    /// work still runs on an engine thread), one job per batch and without
    /// waiting for models. For tests and tools that step the queue by hand;
    /// returns how many jobs ran.
    pub async fn run_pending(&self) -> Result<usize, JobError> {
        self.run_pending_with(WorkerSettings {
            max_batch_images: 1,
            batch_window: Duration::ZERO,
            ..self.inner.settings.clone()
        })
        .await
    }

    /// [`Worker::run_pending`] forming batches with `settings` instead (as
    /// the loop does, without the window).
    pub async fn run_pending_with(&self, settings: WorkerSettings) -> Result<usize, JobError> {
        let mut lane = Lane::new(
            &self.inner.id,
            WorkerSettings {
                batch_window: Duration::ZERO,
                ..settings
            },
        );
        let mut n = 0;
        loop {
            match self.turn(&mut lane).await? {
                (Turn::Ran, ran) => n += ran,
                (Turn::Wait(_), _) => return Ok(n),
            }
        }
    }

    /// Makes the version named by pool name `slot` (`model@version`)
    /// known to the pool from the store's version registry.
    async fn learn_version(&self, slot: &str) {
        let Some((model, version)) = slot.split_once('@') else {
            return;
        };
        match self.inner.db.model_version(model, version).await {
            Ok(Some(v)) => {
                self.inner
                    .models
                    .know_version(model, version, std::path::Path::new(&v.path));
            }
            Ok(None) => tracing::warn!(
                model,
                version,
                "a job names a version that is not registered"
            ),
            Err(e) => {
                tracing::warn!(model, version, error = %e, "could not read the version registry")
            }
        }
    }

    /// One turn: housekeeping, then plan, claim and run a batch.
    /// Returns what to do next and how many jobs ran.
    async fn turn(&self, lane: &mut Lane) -> Result<(Turn, usize), JobError> {
        let inner = &self.inner;
        let db = &inner.db;
        if self.is_draining() {
            return Ok((Turn::Wait(IDLE_POLL), 0));
        }
        let requeued = db.requeue_expired_leases().await.map_err(JobError::Store)?;
        if !requeued.is_empty() {
            tracing::warn!(jobs = requeued.len(), "requeued jobs whose lease expired");
        }
        housekeeping::expire_deadlines(db, &inner.metrics, &inner.bus).await?;
        self.apply_budget_holds().await?;
        let queued = db
            .queued_candidates(lane.scheduler.max_images())
            .await
            .map_err(JobError::Store)?;
        if queued.is_empty() {
            return Ok((Turn::Wait(IDLE_POLL), 0));
        }
        let candidates: Vec<Candidate> = queued.iter().map(Candidate::from).collect();
        let models = &inner.models;
        // A version registered since this pool last looked: learn its
        // folder, so its jobs load it instead of failing as unknown.
        for c in &candidates {
            if models.state(&c.key.model).is_none() {
                self.learn_version(&c.key.model).await;
            }
        }
        // Models this worker gave up on for now: their jobs are left to
        // other workers (or to this one once the back-off ends).
        let open: Vec<String> = self.open_circuits().into_iter().map(|(m, _)| m).collect();
        if candidates.iter().all(|c| open.contains(&c.key.model)) {
            return Ok((Turn::Wait(IDLE_POLL), 0));
        }
        // A job whose model is loading (or waiting for memory) waits, and
        // asking for the model starts its load; an unknown model or one that
        // failed to load is "runnable", so that its jobs fail with the
        // reason instead of waiting for ever.
        let runnable = |c: &Candidate| {
            if open.contains(&c.key.model) {
                return false;
            }
            match models.state(&c.key.model) {
                None | Some(ModelState::Ready) => true,
                Some(ModelState::Failed { code, .. }) if code != "memory_budget_exceeded" => true,
                Some(_) => {
                    let _ = models.get(Some(&c.key.model));
                    false
                }
            }
        };
        // Every worker plans from the same counters, in any process.
        let shares = db.fair_shares().await.map_err(JobError::Store)?;
        lane.scheduler.set_shares(shares);
        let Some(mut plan) = lane.scheduler.plan(&candidates, runnable) else {
            return Ok((Turn::Wait(MODEL_POLL), 0));
        };
        let now = db.now().timestamp_millis();
        if let Some(wait) = lane.scheduler.wait_for_more(&plan, now) {
            return Ok((Turn::Wait(wait), 0));
        }
        // Subscribed before the claim: a cancel sent once a job is ours
        // cannot slip between the claim and the batch's watch.
        let cancels = inner.bus.cancel_requests();
        // Workers planning from the same snapshot choose the same jobs; the
        // losers of a claim choose again from their snapshot without the
        // jobs just taken, rather than reading the queue again.
        let mut candidates = candidates;
        let mut tries = 1;
        let claimed = loop {
            let claimed = db
                .claim_jobs(&plan.jobs, &lane.name, lane.settings.lease)
                .await
                .map_err(JobError::Store)?;
            if !claimed.is_empty() || tries == CLAIM_TRIES {
                break claimed;
            }
            tries += 1;
            candidates.retain(|c| !plan.jobs.contains(&c.id));
            match lane.scheduler.plan(&candidates, runnable) {
                Some(next) => plan = next,
                None => break claimed,
            }
        };
        // Charged before the batch runs, so other workers' plans meanwhile
        // see it; for what was claimed, as another worker may have taken
        // part of the plan. A failed charge costs fairness, not the jobs.
        let ids: Vec<JobId> = claimed.iter().map(|job| job.id).collect();
        let charge = Charge::of(&plan, &ids, &candidates);
        if !charge.per_user.is_empty() {
            if let Err(e) = db
                .charge_fair_share(charge.tier, &charge.per_user, charge.backlog)
                .await
            {
                tracing::warn!(error = %e, "could not charge the batch to fair share");
            }
            lane.scheduler.apply(&charge);
        }
        let ran = claimed.len();
        if ran > 0 {
            self.run_batch(lane, claimed, cancels).await?;
        }
        Ok((Turn::Ran, ran))
    }
}

async fn worker_loop(worker: Worker, mut lane: Lane, mut stop: watch::Receiver<bool>) {
    tracing::info!(
        max_batch_images = lane.settings.max_batch_images,
        batch_window_ms = lane.settings.batch_window.as_millis() as u64,
        "worker started"
    );
    loop {
        if *stop.borrow() {
            break;
        }
        let wait = match worker.turn(&mut lane).await {
            Ok((Turn::Ran, _)) => continue,
            Ok((Turn::Wait(wait), _)) => wait,
            Err(e) => {
                tracing::error!(error = %e, "worker could not run a batch; retrying");
                IDLE_POLL
            }
        };
        tokio::select! {
            _ = worker.inner.bus.woken() => {}
            _ = stop.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!("worker stopped");
}

impl WorkerHandle {
    /// Stops claiming, lets the running batch finish within `grace`, and
    /// otherwise cancels it and puts its jobs back in the queue. Returns
    /// when the loop has ended; the registry then shows it stopped.
    pub async fn shutdown(mut self, grace: Duration) {
        self.worker.drain();
        let _ = self.stop.send(true);
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
        }
        registry::report_draining(&self.worker).await;
        let Some(mut task) = self.task.take() else {
            return;
        };
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            self.requeue_running(grace, task).await;
        }
        registry::report_stopped(&self.worker).await;
    }

    /// The grace period ended with a batch still running: cancel it, and
    /// its jobs go back to the queue.
    async fn requeue_running(&self, grace: Duration, task: JoinHandle<()>) {
        tracing::warn!(
            grace_s = grace.as_secs_f64(),
            "running batch did not finish in time; requeueing its jobs"
        );
        let tokens: Vec<CancelToken> = {
            let mut running = self
                .worker
                .inner
                .running
                .lock()
                .expect("running lock poisoned");
            running
                .values_mut()
                .map(|r| {
                    r.reason.get_or_insert(CancelReason::Shutdown);
                    r.token.clone()
                })
                .collect()
        };
        for token in tokens {
            token.cancel();
        }
        let _ = task.await;
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
        }
    }
}

mod budget;
pub mod registry;
#[cfg(test)]
mod tests;
