//! The worker loop: plan a batch, claim it, run it, repeat.
//!
//! Each turn the loop puts back jobs whose lease expired (their worker
//! died), fails queued jobs past their deadline, reads the queued
//! candidates (a bounded number per user), lets the pure [`Scheduler`]
//! choose the next batch — strict tiers, fair share between users, one
//! batching key — and claims exactly those jobs in one conditional
//! `UPDATE`. A batch that is not full may wait a short window for
//! companions; a new submission wakes the loop at once. The batch itself
//! runs in [`crate::batch`].
//!
//! On shutdown the loop stops claiming; a batch still running when the
//! grace period ends is cancelled and its jobs go back to the queue, so the
//! next start finishes them.

use std::sync::Arc;
use std::time::Duration;

use easel_engine::CancelToken;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::engine_thread::EngineThread;
use crate::error::JobError;
use crate::handle::{CancelReason, Jobs};
use crate::models::ModelState;
use crate::schedule::{Candidate, Scheduler};

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
        }
    }
}

/// The running worker. Dropping it without [`WorkerHandle::shutdown`]
/// aborts the loop (the store's startup recovery then requeues its jobs).
pub struct WorkerHandle {
    jobs: Jobs,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

/// What one turn of the loop did.
enum Turn {
    /// Ran (or tried to claim) a batch: look again at once.
    Ran,
    /// Nothing can run before this much time passes (or a wake-up).
    Wait(Duration),
}

/// The loop's own state: the engine thread and the scheduler.
pub(crate) struct Worker {
    pub(crate) engine: Arc<EngineThread>,
    pub(crate) settings: WorkerSettings,
    pub(crate) name: String,
    scheduler: Scheduler,
}

impl Worker {
    fn new(settings: WorkerSettings) -> Self {
        Self {
            engine: Arc::new(EngineThread::start()),
            scheduler: Scheduler::new(settings.max_batch_images, settings.batch_window),
            settings,
            name: format!("easel-{}", std::process::id()),
        }
    }
}

impl Jobs {
    /// Starts the worker loop on the current runtime with the default
    /// [`WorkerSettings`].
    pub fn start_worker(&self) -> WorkerHandle {
        self.start_worker_with(WorkerSettings::default())
    }

    /// Starts the worker loop on the current runtime, with its own engine
    /// thread.
    pub fn start_worker_with(&self, settings: WorkerSettings) -> WorkerHandle {
        let (stop, stop_rx) = watch::channel(false);
        let jobs = self.clone();
        let task = tokio::spawn(async move {
            let worker = Worker::new(settings);
            worker_loop(jobs, worker, stop_rx).await;
        });
        WorkerHandle {
            jobs: self.clone(),
            stop,
            task: Some(task),
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
            ..WorkerSettings::default()
        })
        .await
    }

    /// [`Jobs::run_pending`] with these settings (batches form as in the
    /// worker loop, without the window).
    pub async fn run_pending_with(&self, settings: WorkerSettings) -> Result<usize, JobError> {
        let mut worker = Worker::new(WorkerSettings {
            batch_window: Duration::ZERO,
            ..settings
        });
        let mut n = 0;
        loop {
            match self.turn(&mut worker).await? {
                (Turn::Ran, ran) => n += ran,
                (Turn::Wait(_), _) => return Ok(n),
            }
        }
    }

    /// One turn: housekeeping, then plan, claim and run a batch.
    /// Returns what to do next and how many jobs ran.
    async fn turn(&self, worker: &mut Worker) -> Result<(Turn, usize), JobError> {
        let db = &self.inner.db;
        let requeued = db.requeue_expired_leases().await.map_err(JobError::Store)?;
        if !requeued.is_empty() {
            tracing::warn!(jobs = requeued.len(), "requeued jobs whose lease expired");
        }
        self.expire_deadlines().await?;
        let queued = db
            .queued_candidates(worker.scheduler.max_images())
            .await
            .map_err(JobError::Store)?;
        if queued.is_empty() {
            return Ok((Turn::Wait(IDLE_POLL), 0));
        }
        let candidates: Vec<Candidate> = queued.iter().map(Candidate::from).collect();
        let models = &self.inner.models;
        // A job whose model is loading (or waiting for memory) waits, and
        // asking for the model starts its load; an unknown model or one that
        // failed to load is "runnable", so that its jobs fail with the
        // reason instead of waiting for ever.
        let runnable = |c: &Candidate| match models.state(&c.key.model) {
            None | Some(ModelState::Ready) => true,
            Some(ModelState::Failed { code, .. }) if code != "memory_budget_exceeded" => true,
            Some(_) => {
                let _ = models.get(Some(&c.key.model));
                false
            }
        };
        let Some(plan) = worker.scheduler.plan(&candidates, runnable) else {
            return Ok((Turn::Wait(MODEL_POLL), 0));
        };
        let now = self.inner.db.now().timestamp_millis();
        if let Some(wait) = worker.scheduler.wait_for_more(&plan, now) {
            return Ok((Turn::Wait(wait), 0));
        }
        let claimed = db
            .claim_jobs(&plan.jobs, &worker.name, worker.settings.lease)
            .await
            .map_err(JobError::Store)?;
        worker.scheduler.charge(&plan, &candidates);
        let ran = claimed.len();
        if ran > 0 {
            self.run_batch(worker, claimed).await?;
        }
        Ok((Turn::Ran, ran))
    }
}

async fn worker_loop(jobs: Jobs, mut worker: Worker, mut stop: watch::Receiver<bool>) {
    tracing::info!(
        max_batch_images = worker.settings.max_batch_images,
        batch_window_ms = worker.settings.batch_window.as_millis() as u64,
        "worker started"
    );
    loop {
        if *stop.borrow() {
            break;
        }
        let wait = match jobs.turn(&mut worker).await {
            Ok((Turn::Ran, _)) => continue,
            Ok((Turn::Wait(wait), _)) => wait,
            Err(e) => {
                tracing::error!(error = %e, "worker could not run a batch; retrying");
                IDLE_POLL
            }
        };
        tokio::select! {
            _ = jobs.inner.wake.notified() => {}
            _ = stop.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!("worker stopped");
}

impl WorkerHandle {
    /// Stops taking jobs, lets the running batch finish within `grace`, and
    /// otherwise cancels it and puts its jobs back in the queue. Returns
    /// when the loop has ended.
    pub async fn shutdown(mut self, grace: Duration) {
        self.jobs.stop_accepting();
        let _ = self.stop.send(true);
        let Some(mut task) = self.task.take() else {
            return;
        };
        if tokio::time::timeout(grace, &mut task).await.is_ok() {
            return;
        }
        tracing::warn!(
            grace_s = grace.as_secs_f64(),
            "running batch did not finish in time; requeueing its jobs"
        );
        let tokens: Vec<CancelToken> = {
            let mut running = self
                .jobs
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
    }
}
