//! The worker registry: each worker process registers, heartbeats and
//! says when it stops; an operator lists them and asks one to drain. Times
//! come from the database's clock, like leases, so a worker's clock cannot
//! make it look alive or lost.

use super::{Db, dispatch};
use crate::error::{Result, StoreError};
use crate::records::worker::{NewWorker, WorkerBeat, WorkerRecord};

/// How long the rows of workers that stopped or vanished are kept.
pub const WORKER_RETENTION_MS: i64 = 24 * 3600 * 1000;

impl Db {
    /// Registers `worker` (or re-registers it after its row was pruned):
    /// active, not draining, heartbeat now. Rows of workers silent for
    /// longer than a day are removed on the way.
    pub async fn register_worker(&self, worker: &NewWorker) -> Result<()> {
        let now = self.lease_clock();
        let every = i64::try_from(worker.heartbeat_every.as_millis()).unwrap_or(i64::MAX);
        dispatch!(self, b => b.register_worker(worker, every, now, WORKER_RETENTION_MS).await)
    }

    /// Records a heartbeat of worker `id` with what it reports. Returns
    /// whether an operator asked it to drain, or `None` when its row is
    /// gone (pruned after a long outage): register again.
    pub async fn worker_heartbeat(&self, id: &str, beat: &WorkerBeat) -> Result<Option<bool>> {
        let now = self.lease_clock();
        let models = crate::rows::to_json(&beat.models, "workers.models")?;
        let circuits = crate::rows::to_json(&beat.open_circuits, "workers.open_circuits")?;
        dispatch!(self, b => b.worker_heartbeat(id, &models, &circuits, beat.draining, now).await)
    }

    /// Records that worker `id` stopped.
    pub async fn worker_stopped(&self, id: &str) -> Result<()> {
        let now = self.lease_clock();
        dispatch!(self, b => b.worker_stopped(id, now).await)
    }

    /// Asks worker `id` to drain: at its next heartbeat it stops claiming
    /// jobs, finishes what it holds, and reports `draining`. Returns the
    /// worker as it stands; [`StoreError::WorkerNotFound`] for an unknown id.
    pub async fn request_worker_drain(&self, id: &str) -> Result<WorkerRecord> {
        dispatch!(self, b => b.request_worker_drain(id).await)?;
        self.worker(id).await
    }

    /// One worker, with the jobs it holds.
    pub async fn worker(&self, id: &str) -> Result<WorkerRecord> {
        self.workers()
            .await?
            .into_iter()
            .find(|w| w.id == id)
            .ok_or_else(|| StoreError::WorkerNotFound(id.to_string()))
    }

    /// Every registered worker (those that stopped or vanished within the
    /// last day included), newest first, each with the jobs it holds a
    /// lease on.
    pub async fn workers(&self) -> Result<Vec<WorkerRecord>> {
        let now = self.lease_clock();
        let mut workers = dispatch!(self, b => b.workers(now).await)?;
        let running = dispatch!(self, b => b.running_owners().await)?;
        for (job, owner) in running {
            if let Some(w) = workers.iter_mut().find(|w| w.id == owner) {
                w.running_jobs.push(job);
            }
        }
        Ok(workers)
    }
}
