//! The bus across processes: what [`Bus`] carries inside one process,
//! relayed through the database to every other process that shares it
//! (PostgreSQL's `LISTEN`/`NOTIFY`), so that an API replica and the worker
//! that runs its job behave as if they were one process.
//!
//! - **Job queued** (`easel_queued`, sent by the database on every way a
//!   job becomes queued): wakes an idle worker loop here.
//! - **Cancel requested** (`easel_cancel`, sent by the database): stops the
//!   job if it runs here, at once instead of at the next lease renewal.
//! - **Job events** (`easel_events`, sent by this relay): every event
//!   published here goes out with this bus's origin; events from other
//!   origins reach this process's watchers of that job (an SSE stream, a
//!   synchronous request) and count as completions for the drain rate.
//!
//! Delivery is best effort. Each signal has a fallback in the store: the
//! worker loop polls, lease renewals read the cancel flag, watchers re-read
//! the job. On SQLite (one process) there is nothing to relay.

use std::time::Duration;

use easel_core::JobId;
use easel_store::{CHANNEL_CANCEL, CHANNEL_QUEUED, Db, Listener, Notification};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::bus::Bus;
use crate::error::JobError;
use crate::events::JobEvent;

/// The channel job events travel on.
pub const CHANNEL_EVENTS: &str = "easel_events";

/// PostgreSQL refuses payloads of 8,000 bytes or more; a progress event
/// with previews larger than this goes out without them.
const MAX_PAYLOAD: usize = 7_900;

/// How long the listener waits before trying again after it lost the
/// database and could not reconnect.
const RETRY: Duration = Duration::from_secs(1);

/// One event on the wire.
#[derive(Serialize, Deserialize)]
struct Wire {
    /// The bus that published it ([`Bus::origin`]).
    origin: u64,
    event: JobEvent,
}

/// The running relay; dropping it stops both directions.
pub struct Relay {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Connects `bus` to the other processes sharing `db`: `None` when the
/// database is not shared (SQLite). Fails when the listening session
/// cannot be opened.
pub async fn connect(bus: &Bus, db: &Db) -> Result<Option<Relay>, JobError> {
    let Some(listener) = db
        .listen(&[CHANNEL_QUEUED, CHANNEL_CANCEL, CHANNEL_EVENTS])
        .await
        .map_err(JobError::Store)?
    else {
        return Ok(None);
    };
    let (tx, rx) = mpsc::unbounded_channel();
    bus.relay_to(tx);
    let tasks = vec![
        tokio::spawn(send_loop(db.clone(), bus.origin(), rx)),
        tokio::spawn(listen_loop(bus.clone(), listener)),
    ];
    tracing::info!("job events, wake-ups and cancels relayed through the database");
    Ok(Some(Relay { tasks }))
}

async fn send_loop(db: Db, origin: u64, mut rx: mpsc::UnboundedReceiver<JobEvent>) {
    while let Some(event) = rx.recv().await {
        let Some(payload) = encode(origin, event) else {
            continue;
        };
        if let Err(e) = db.notify(CHANNEL_EVENTS, &payload).await {
            tracing::debug!(error = %e, "could not relay a job event");
        }
    }
}

/// The wire form of `event`, without previews if they make it too large.
fn encode(origin: u64, mut event: JobEvent) -> Option<String> {
    let payload = serde_json::to_string(&Wire {
        origin,
        event: event.clone(),
    })
    .ok()?;
    if payload.len() <= MAX_PAYLOAD {
        return Some(payload);
    }
    if let JobEvent::Progress { previews, .. } = &mut event {
        previews.clear();
    }
    serde_json::to_string(&Wire { origin, event })
        .ok()
        .filter(|p| p.len() <= MAX_PAYLOAD)
}

async fn listen_loop(bus: Bus, mut listener: Listener) {
    loop {
        match listener.recv().await {
            Ok(notification) => deliver(&bus, notification),
            Err(e) => {
                tracing::warn!(error = %e, "lost the database's notifications; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Hands one notification to this process's bus.
fn deliver(bus: &Bus, notification: Notification) {
    match notification.channel.as_str() {
        CHANNEL_QUEUED => bus.job_queued(),
        CHANNEL_CANCEL => {
            if let Ok(id) = notification.payload.parse::<JobId>() {
                bus.request_cancel(id);
            }
        }
        CHANNEL_EVENTS => {
            let Ok(wire) = serde_json::from_str::<Wire>(&notification.payload) else {
                tracing::debug!("ignored a malformed relayed event");
                return;
            };
            if wire.origin == bus.origin() {
                return;
            }
            if wire.event.is_terminal() {
                bus.record_completions(1);
            }
            bus.hub().publish_if_watched(wire.event);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_previews_are_dropped_and_the_event_kept() {
        let job_id = JobId::new();
        let big = JobEvent::Progress {
            job_id,
            step: 3,
            total: 20,
            previews: vec!["x".repeat(MAX_PAYLOAD)],
        };
        let payload = encode(7, big).unwrap();
        let wire: Wire = serde_json::from_str(&payload).unwrap();
        assert_eq!(wire.origin, 7);
        assert_eq!(
            wire.event,
            JobEvent::Progress {
                job_id,
                step: 3,
                total: 20,
                previews: vec![]
            }
        );
    }

    #[test]
    fn events_survive_the_wire() {
        let job_id = JobId::new();
        for event in [
            JobEvent::Started { job_id },
            JobEvent::Completed {
                job_id,
                image_ids: vec![easel_core::ImageId::new(), easel_core::ImageId::new()],
            },
            JobEvent::Failed {
                job_id,
                code: "storage_failed".into(),
                message: "m".into(),
            },
        ] {
            let back: Wire = serde_json::from_str(&encode(1, event.clone()).unwrap()).unwrap();
            assert_eq!(back.event, event);
        }
    }

    #[tokio::test]
    async fn a_bus_ignores_its_own_events_and_forwards_others_to_watchers() {
        let bus = Bus::new();
        let job_id = JobId::new();
        let mut sub = bus
            .hub()
            .subscribe(job_id, || JobEvent::Started { job_id })
            .unwrap();
        let wire = |origin, event| Notification {
            channel: CHANNEL_EVENTS.into(),
            payload: encode(origin, event).unwrap(),
        };
        let step = |step| JobEvent::Progress {
            job_id,
            step,
            total: 2,
            previews: vec![],
        };
        deliver(&bus, wire(bus.origin(), step(1)));
        deliver(&bus, wire(bus.origin() ^ 1, step(2)));
        assert_eq!(sub.receiver.recv().await.unwrap(), step(2));
        let done = JobEvent::Completed {
            job_id,
            image_ids: vec![],
        };
        deliver(&bus, wire(bus.origin() ^ 1, done.clone()));
        assert_eq!(sub.receiver.recv().await.unwrap(), done);
        assert_eq!(bus.hub().live(), 0, "the terminal event closed the channel");
    }
}
