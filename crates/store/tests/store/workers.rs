//! The worker registry: registration, heartbeats, drain requests, the
//! states an operator sees, and the jobs each worker holds.

use std::time::Duration;

use easel_core::Tier;
use easel_store::{NewWorker, StoreError, WorkerBeat, WorkerState};

use crate::helpers::{fresh_db, new_job};

const EVERY: Duration = Duration::from_secs(10);

fn worker(id: &str) -> NewWorker {
    NewWorker {
        id: id.into(),
        host: "node-a".into(),
        pid: 4242,
        version: "0.1.0".into(),
        heartbeat_every: EVERY,
    }
}

#[tokio::test]
async fn a_registered_worker_heartbeats_lists_its_jobs_and_is_lost_after_three_silent_intervals() {
    let t = fresh_db().await;
    t.db.register_worker(&worker("w1")).await.unwrap();
    let job = new_job(Tier::Realtime, "x");
    t.db.insert_job(job.clone()).await.unwrap();
    t.db.claim_next_queued("w1", Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    let beat = WorkerBeat {
        models: vec!["tiny".into()],
        open_circuits: vec!["broken".into()],
        draining: false,
    };
    assert_eq!(
        t.db.worker_heartbeat("w1", &beat).await.unwrap(),
        Some(false)
    );

    let listed = t.db.workers().await.unwrap();
    assert_eq!(listed.len(), 1);
    let w = &listed[0];
    assert_eq!(
        (w.id.as_str(), w.host.as_str(), w.pid),
        ("w1", "node-a", 4242)
    );
    assert_eq!(w.models, ["tiny"]);
    assert_eq!(w.open_circuits, ["broken"]);
    assert_eq!(w.state, WorkerState::Active);
    assert_eq!(w.running_jobs, [job.id]);
    assert_eq!(w.heartbeat_every, EVERY);

    t.clock.advance(EVERY * 3);
    assert_eq!(t.db.worker("w1").await.unwrap().state, WorkerState::Active);
    t.clock.advance(Duration::from_secs(1));
    assert_eq!(t.db.worker("w1").await.unwrap().state, WorkerState::Lost);
    // A heartbeat brings it back.
    t.db.worker_heartbeat("w1", &beat).await.unwrap();
    assert_eq!(t.db.worker("w1").await.unwrap().state, WorkerState::Active);
}

#[tokio::test]
async fn a_drain_request_reaches_the_worker_at_its_next_heartbeat_and_a_stop_is_final() {
    let t = fresh_db().await;
    t.db.register_worker(&worker("w1")).await.unwrap();
    t.db.register_worker(&worker("w2")).await.unwrap();
    let drained = t.db.request_worker_drain("w1").await.unwrap();
    assert!(drained.drain_requested);
    assert_eq!(drained.state, WorkerState::Draining);
    let beat = WorkerBeat::default();
    assert_eq!(
        t.db.worker_heartbeat("w1", &beat).await.unwrap(),
        Some(true)
    );
    assert_eq!(
        t.db.worker_heartbeat("w2", &beat).await.unwrap(),
        Some(false)
    );

    // A worker shutting down reports draining on its own, then stopped.
    let leaving = WorkerBeat {
        draining: true,
        ..WorkerBeat::default()
    };
    t.db.worker_heartbeat("w2", &leaving).await.unwrap();
    assert_eq!(
        t.db.worker("w2").await.unwrap().state,
        WorkerState::Draining
    );
    t.db.worker_stopped("w2").await.unwrap();
    t.clock.advance(EVERY * 10);
    let w2 = t.db.worker("w2").await.unwrap();
    assert_eq!(w2.state, WorkerState::Stopped, "stopped, not lost");
    assert!(w2.stopped_at.is_some());
}

#[tokio::test]
async fn unknown_workers_are_not_found_and_a_pruned_worker_is_told_to_register_again() {
    let t = fresh_db().await;
    let e = t.db.request_worker_drain("nobody").await.unwrap_err();
    assert!(matches!(e, StoreError::WorkerNotFound(ref id) if id == "nobody"));
    assert_eq!(e.code(), "worker_not_found");
    assert!(matches!(
        t.db.worker("nobody").await,
        Err(StoreError::WorkerNotFound(_))
    ));

    t.db.register_worker(&worker("old")).await.unwrap();
    t.clock.advance(Duration::from_millis(
        easel_store::WORKER_RETENTION_MS as u64 + 1,
    ));
    // Registering anyone prunes rows silent for longer than a day.
    t.db.register_worker(&worker("new")).await.unwrap();
    let ids: Vec<String> =
        t.db.workers()
            .await
            .unwrap()
            .into_iter()
            .map(|w| w.id)
            .collect();
    assert_eq!(ids, ["new"]);
    assert_eq!(
        t.db.worker_heartbeat("old", &WorkerBeat::default())
            .await
            .unwrap(),
        None
    );
}
