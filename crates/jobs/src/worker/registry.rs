//! The worker's side of the store's worker registry: it registers when its
//! loop starts, heartbeats every sixth of its lease (at least every half
//! second) with the models it holds and its open circuits, learns of an
//! operator's drain request from the heartbeat's answer, and says when it
//! stops. An operator reads the registry with `GET /v1/admin/workers` or
//! `easel workers`; a worker silent for three heartbeats counts as lost.
//!
//! The registry is for people and tools, never for correctness: jobs are
//! protected by leases and fencing tokens whether or not a heartbeat got
//! through, so a failed heartbeat is logged and tried again, nothing more.

use std::time::Duration;

use easel_store::{NewWorker, WorkerBeat};

use super::Worker;

/// How long a registry write at shutdown may take before it is given up
/// (the database may be the reason for the shutdown).
const SHUTDOWN_WRITE: Duration = Duration::from_secs(2);

impl Worker {
    /// How often it heartbeats: a sixth of its lease, at least every half
    /// second.
    pub fn heartbeat_every(&self) -> Duration {
        (self.inner.settings.lease / 6).max(Duration::from_millis(500))
    }

    fn registration(&self) -> NewWorker {
        NewWorker {
            id: self.inner.id.clone(),
            host: super::host_name(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            heartbeat_every: self.heartbeat_every(),
        }
    }

    fn beat(&self) -> WorkerBeat {
        let models = self
            .inner
            .models
            .list()
            .into_iter()
            .filter(|m| matches!(m.state, crate::models::ModelState::Ready))
            .map(|m| m.name)
            .collect();
        WorkerBeat {
            models,
            open_circuits: self.open_circuits().into_iter().map(|(m, _)| m).collect(),
            draining: self.is_draining(),
        }
    }

    /// One heartbeat, registering first when the row is missing. Returns
    /// whether a drain was requested.
    async fn heartbeat_once(&self, registered: &mut bool) -> easel_store::Result<bool> {
        let db = &self.inner.db;
        if !*registered {
            db.register_worker(&self.registration()).await?;
            *registered = true;
            tracing::info!(worker = %self.inner.id, "registered in the worker registry");
        }
        match db.worker_heartbeat(&self.inner.id, &self.beat()).await? {
            Some(drain) => Ok(drain),
            None => {
                *registered = false;
                Ok(false)
            }
        }
    }
}

/// The heartbeat task of a running worker; ends when aborted.
pub(super) async fn heartbeat(worker: Worker) {
    let mut registered = false;
    let mut failing = false;
    let mut tick = tokio::time::interval(worker.heartbeat_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        worker.refresh_circuit_gauges();
        match worker.heartbeat_once(&mut registered).await {
            Ok(drain) => {
                if failing {
                    tracing::info!("worker heartbeat written again");
                    failing = false;
                }
                if drain && !worker.is_draining() {
                    tracing::warn!(worker = %worker.id(), "an operator asked this worker to drain");
                    worker.drain();
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "could not write the worker heartbeat; retrying");
                    failing = true;
                }
            }
        }
    }
}

/// At shutdown: the registry shows the worker draining (best effort).
pub(super) async fn report_draining(worker: &Worker) {
    let db = &worker.inner.db;
    let beat = worker.beat();
    let write = db.worker_heartbeat(&worker.inner.id, &beat);
    if let Ok(Err(e)) = tokio::time::timeout(SHUTDOWN_WRITE, write).await {
        tracing::warn!(error = %e, "could not report draining to the worker registry");
    }
}

/// At the end of shutdown: the registry shows the worker stopped (best
/// effort; if this fails it shows as lost after three heartbeats).
pub(super) async fn report_stopped(worker: &Worker) {
    let db = &worker.inner.db;
    match tokio::time::timeout(SHUTDOWN_WRITE, db.worker_stopped(&worker.inner.id)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not report the stop to the worker registry")
        }
        Err(_) => tracing::warn!("the worker registry did not answer in time at shutdown"),
    }
}
