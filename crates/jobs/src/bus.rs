//! What the job handle and the workers of one process share: the seam
//! between the API side ([`crate::Jobs`]) and the worker side
//! ([`crate::Worker`]).
//!
//! Everything durable goes through the store; the bus only carries what
//! makes the process fast: job events for watchers, a wake-up when a job
//! is submitted (workers otherwise find it at their next poll), cancel
//! requests for jobs that are running (a worker otherwise sees the store's
//! flag at its next lease renewal), and completions for the drain-rate
//! estimate behind a full queue's `Retry-After`. Each of these has a
//! store-side fallback, and [`crate::relay`] carries all of them between
//! processes that share a PostgreSQL database (the `api` and `worker`
//! roles).
//!
//! Cheap to clone: clones share one bus.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use easel_core::JobId;
use tokio::sync::{Notify, broadcast, mpsc};

use crate::admission::DrainEstimator;
use crate::events::{EventHub, JobEvent};

/// How many cancel requests a worker that is busy elsewhere may fall behind
/// before it is told it lagged (it then asks the store about its jobs).
const CANCEL_BACKLOG: usize = 256;

/// The in-process link between the job handle and the workers.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    hub: EventHub,
    wake: Notify,
    cancels: broadcast::Sender<JobId>,
    drain: Mutex<DrainEstimator>,
    /// Tells this bus's events from others' on the database's channel.
    origin: u64,
    /// Where published events also go when [`crate::relay`] connects this
    /// bus to other processes.
    outgoing: OnceLock<mpsc::UnboundedSender<JobEvent>>,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    /// A bus with no watchers, no workers and no completions yet.
    pub fn new() -> Self {
        let (cancels, _) = broadcast::channel(CANCEL_BACKLOG);
        Self {
            inner: Arc::new(Inner {
                hub: EventHub::new(),
                wake: Notify::new(),
                cancels,
                drain: Mutex::new(DrainEstimator::new()),
                origin: std::hash::BuildHasher::hash_one(
                    &std::collections::hash_map::RandomState::new(),
                    std::time::SystemTime::now(),
                ),
                outgoing: OnceLock::new(),
            }),
        }
    }

    /// The per-job event channels watchers subscribe to.
    pub fn hub(&self) -> &EventHub {
        &self.inner.hub
    }

    /// Publishes a job's event to its watchers, here and, once relayed,
    /// in every other process.
    pub fn publish(&self, event: JobEvent) {
        if let Some(out) = self.inner.outgoing.get() {
            let _ = out.send(event.clone());
        }
        self.inner.hub.publish(event);
    }

    /// This bus's random identity among the processes sharing a database.
    pub(crate) fn origin(&self) -> u64 {
        self.inner.origin
    }

    /// Sends every event published from now on to `out` as well (the
    /// relay's sending side). Only the first call counts.
    pub(crate) fn relay_to(&self, out: mpsc::UnboundedSender<JobEvent>) {
        let _ = self.inner.outgoing.set(out);
    }

    /// Tells one idle worker that a job was queued.
    pub fn job_queued(&self) {
        self.inner.wake.notify_one();
    }

    /// Wakes every idle worker (to notice a shutdown, say).
    pub fn wake_all(&self) {
        self.inner.wake.notify_waiters();
    }

    /// Resolves at the next [`Bus::job_queued`] (or [`Bus::wake_all`]); a
    /// wake-up sent while no worker waited is kept for the next waiter.
    pub async fn woken(&self) {
        self.inner.wake.notified().await;
    }

    /// Asks the worker running `id`, if it is in this process, to stop it.
    pub fn request_cancel(&self, id: JobId) {
        // No receiver: no batch is running here; the store's flag stands.
        let _ = self.inner.cancels.send(id);
    }

    /// The cancel requests sent from now on. A worker subscribes before it
    /// claims, so none sent after its claim is missed.
    pub fn cancel_requests(&self) -> broadcast::Receiver<JobId> {
        self.inner.cancels.subscribe()
    }

    /// `n` jobs just finished (a batch of eight is one call with 8).
    pub fn record_completions(&self, n: u64) {
        // Tokio's clock (the system's unless a test paused it), so a test
        // can advance it instead of sleeping.
        let now = tokio::time::Instant::now().into_std();
        self.drain().record(n, now);
    }

    /// Jobs finished per second lately, or `None` without enough history.
    pub fn drain_rate(&self, now: Instant) -> Option<f64> {
        self.drain().rate(now)
    }

    fn drain(&self) -> std::sync::MutexGuard<'_, DrainEstimator> {
        self.inner.drain.lock().expect("drain lock poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancel_reaches_every_subscriber_after_it_subscribed() {
        let bus = Bus::new();
        let id = JobId::new();
        bus.request_cancel(id); // nobody listens: dropped
        let mut a = bus.cancel_requests();
        let mut b = bus.clone().cancel_requests();
        bus.request_cancel(id);
        assert_eq!(a.recv().await.unwrap(), id);
        assert_eq!(b.recv().await.unwrap(), id);
        assert!(a.try_recv().is_err(), "the early request was not kept");
    }

    #[tokio::test]
    async fn a_wake_up_sent_before_the_worker_waits_is_kept() {
        let bus = Bus::new();
        bus.job_queued();
        tokio::time::timeout(std::time::Duration::from_secs(5), bus.woken())
            .await
            .expect("the stored permit wakes the waiter at once");
    }
}
