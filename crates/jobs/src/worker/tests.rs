//! The seam between the job handle and the worker: they share only the
//! store and, in one process, a bus.

use std::sync::Arc;
use std::time::Duration;

use easel_core::JobStatus;
use easel_engine::{CancelToken, EngineError, GeneratedImage, ImageRequest, ModelInfo, Progress};
use easel_store::{Blobs, Db};
use easel_telemetry::metrics::Metrics;

use super::{Lane, Worker, WorkerSettings, WorkerSetup};
use crate::admission::AdmissionConfig;
use crate::bus::Bus;
use crate::events::JobEvent;
use crate::handle::{Jobs, Watch};
use crate::models::{Generator, ModelSpec, Models};
use crate::postprocess::PostProcess;
use crate::testing::{FakeModel, fake_info, fake_job};

/// A model that reports step 1 and then holds the engine until its batch
/// is cancelled (or, as a safety net for a broken test, 60 s pass).
struct HoldingModel(ModelInfo);

impl Generator for HoldingModel {
    fn info(&self) -> &ModelInfo {
        &self.0
    }

    fn generate(
        &self,
        requests: &[ImageRequest],
        progress: &mut dyn easel_engine::ProgressSink,
        cancel: &CancelToken,
    ) -> Result<Vec<GeneratedImage>, EngineError> {
        progress.on_step(Progress {
            step: 1,
            total: requests[0].steps,
            previews: None,
        });
        for _ in 0..6_000 {
            if cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(EngineError::Cancelled)
    }
}

/// A handle on `handle_bus` and a worker on `worker_bus` over one fresh
/// store, the worker serving `model` as `fake`.
async fn pair(
    dir: &std::path::Path,
    model: Arc<dyn Generator>,
    handle_bus: Bus,
    worker_bus: Bus,
    settings: WorkerSettings,
) -> (Jobs, Worker) {
    let db = Db::open(dir.join("easel.db")).await.unwrap();
    let blobs = Blobs::local(dir.join("objects")).unwrap();
    let jobs = Jobs::new(
        db.clone(),
        blobs.clone(),
        handle_bus,
        Metrics::default(),
        AdmissionConfig::default(),
    );
    let spec = ModelSpec {
        name: "fake".into(),
        path: "fake".into(),
    };
    let worker = Worker::new(WorkerSetup {
        db,
        blobs,
        models: Models::from_ready(vec![(spec, model)]),
        bus: worker_bus,
        post: PostProcess::default(),
        settings,
        metrics: Metrics::default(),
    });
    (jobs, worker)
}

#[tokio::test]
async fn a_worker_that_shares_only_the_store_runs_what_the_handle_submits() {
    let dir = tempfile::tempdir().unwrap();
    // Two buses: as if the handle and the worker were two processes.
    let model = Arc::new(FakeModel(fake_info()));
    let (jobs, worker) = pair(
        dir.path(),
        model,
        Bus::new(),
        Bus::new(),
        WorkerSettings::default(),
    )
    .await;
    let (job, created) = jobs.submit(fake_job("16x16", 1)).await.unwrap();
    assert!(created);
    assert_eq!(worker.run_pending().await.unwrap(), 1);
    let done = tokio::time::timeout(Duration::from_secs(30), jobs.wait(job.id))
        .await
        .expect("the handle sees the job finish through the store")
        .unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.image_ids.len(), 1);
    let images = jobs.db().images_for_job(job.id).await.unwrap();
    assert_eq!(images.len(), 1);
    assert!(jobs.blobs().exists(&images[0].object_key).await.unwrap());
}

#[tokio::test]
async fn a_cancel_on_the_bus_stops_a_running_job_without_waiting_for_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new();
    // A lease renewed only every 200 s: the store's cancel flag would not
    // be seen for minutes, so only the bus can stop the job in time.
    let settings = WorkerSettings {
        lease: Duration::from_secs(600),
        ..WorkerSettings::default()
    };
    let model = Arc::new(HoldingModel(fake_info()));
    let (jobs, worker) = pair(dir.path(), model, bus.clone(), bus, settings).await;
    let running = worker.start();
    let (job, _) = jobs.submit(fake_job("16x16", 1)).await.unwrap();
    let Watch::Live(mut sub) = jobs.watch(job.id).await.unwrap() else {
        panic!("the job cannot have finished: the model holds it");
    };
    // Wait for its first step: it is running on the engine thread.
    let stepped = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let JobEvent::Progress { .. } = sub.receiver.recv().await.unwrap() {
                return;
            }
        }
    })
    .await;
    assert!(stepped.is_ok(), "the job never reported a step");
    let requested = jobs.cancel(job.id).await.unwrap();
    assert_eq!(requested.status, JobStatus::Running);
    let done = tokio::time::timeout(Duration::from_secs(30), jobs.wait(job.id))
        .await
        .expect("the bus stopped the job at its next check")
        .unwrap();
    assert_eq!(done.status, JobStatus::Cancelled);
    running.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn workers_have_ids_of_their_own() {
    let (a, b) = (super::worker_id(), super::worker_id());
    assert_ne!(a, b, "two workers of one process");
    assert!(a.contains(&format!("-{}-", std::process::id())), "{a}");
}

/// Another worker over the store in `dir`, with a database handle of its
/// own, as a second process would open it.
async fn another_worker(dir: &std::path::Path, settings: WorkerSettings) -> Worker {
    let spec = ModelSpec {
        name: "fake".into(),
        path: "fake".into(),
    };
    let model: Arc<dyn Generator> = Arc::new(FakeModel(fake_info()));
    Worker::new(WorkerSetup {
        db: Db::open(dir.join("easel.db")).await.unwrap(),
        blobs: Blobs::local(dir.join("objects")).unwrap(),
        models: Models::from_ready(vec![(spec, model)]),
        bus: Bus::new(),
        post: PostProcess::default(),
        settings,
        metrics: Metrics::default(),
    })
}

#[tokio::test]
async fn two_workers_share_one_fair_order_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let settings = WorkerSettings {
        max_batch_images: 1,
        batch_window: Duration::ZERO,
        ..WorkerSettings::default()
    };
    let model = Arc::new(FakeModel(fake_info()));
    let (jobs, first) = pair(dir.path(), model, Bus::new(), Bus::new(), settings.clone()).await;
    let second = another_worker(dir.path(), settings.clone()).await;
    let submit = |user: &str| {
        let mut job = fake_job("16x16", 1);
        job.user_id = Some(user.into());
        jobs.submit(job)
    };
    for _ in 0..6 {
        submit("heavy").await.unwrap();
    }
    // Later than every heavy job, so it never wins a tie on age.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (light, _) = submit("light").await.unwrap();

    // The first worker runs one of the heavy user's (older) jobs. The second
    // worker has run nothing itself, but plans from the counters the first
    // one charged: the light user leads the second batch overall. With
    // counters per process it would have run another heavy job first.
    let mut first_lane = Lane::new(first.id(), settings.clone());
    let mut second_lane = Lane::new(second.id(), settings);
    let (_, ran) = first.turn(&mut first_lane).await.unwrap();
    assert_eq!(ran, 1);
    assert_eq!(
        jobs.db().get_job(light.id).await.unwrap().status,
        JobStatus::Queued
    );
    let (_, ran) = second.turn(&mut second_lane).await.unwrap();
    assert_eq!(ran, 1);
    assert_eq!(
        jobs.db().get_job(light.id).await.unwrap().status,
        JobStatus::Succeeded,
        "the light user's job ran in the second batch"
    );
}

/// A model whose engine calls fail (as a broken device or a corrupt file
/// would make them) while `failing` is set, and otherwise work.
struct FlakyModel {
    inner: FakeModel,
    failing: std::sync::atomic::AtomicBool,
    calls: std::sync::atomic::AtomicUsize,
}

impl Generator for FlakyModel {
    fn info(&self) -> &ModelInfo {
        self.inner.info()
    }

    fn generate(
        &self,
        requests: &[ImageRequest],
        progress: &mut dyn easel_engine::ProgressSink,
        cancel: &CancelToken,
    ) -> Result<Vec<GeneratedImage>, EngineError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(EngineError::Compute("device lost".into()));
        }
        self.inner.generate(requests, progress, cancel)
    }
}

#[tokio::test]
async fn engine_failures_requeue_a_job_up_to_its_attempts_and_trip_the_models_circuit() {
    let dir = tempfile::tempdir().unwrap();
    let model = Arc::new(FlakyModel {
        inner: FakeModel(fake_info()),
        failing: true.into(),
        calls: 0.into(),
    });
    let bus = Bus::new();
    let (jobs, worker) = pair(
        dir.path(),
        model.clone(),
        bus.clone(),
        bus,
        WorkerSettings::default(),
    )
    .await;
    let (first, _) = jobs.submit(fake_job("16x16", 1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (second, _) = jobs.submit(fake_job("16x16", 1)).await.unwrap();

    // The first job is tried three times (each failure puts it back), then
    // fails for good; the third failure in a row opens the circuit, so the
    // second job is not claimed at all.
    worker.run_pending().await.unwrap();
    assert_eq!(model.calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    let failed = jobs.db().get_job(first.id).await.unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.attempts, crate::batch::MAX_ATTEMPTS);
    assert_eq!(failed.error_code.as_deref(), Some("engine_error"));
    let waiting = jobs.db().get_job(second.id).await.unwrap();
    assert_eq!(waiting.status, JobStatus::Queued);
    assert_eq!(waiting.attempts, 0);
    let open = worker.open_circuits();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].0, "fake");
    assert!(open[0].1 <= crate::circuit::FIRST_BACKOFF);
    assert!(
        worker
            .metrics()
            .render()
            .contains("easel_model_circuit_open{model=\"fake\"} 1"),
        "{}",
        worker.metrics().render()
    );
}

#[tokio::test]
async fn a_drained_worker_claims_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new();
    let model = Arc::new(FakeModel(fake_info()));
    let (jobs, worker) = pair(
        dir.path(),
        model,
        bus.clone(),
        bus,
        WorkerSettings::default(),
    )
    .await;
    jobs.submit(fake_job("16x16", 1)).await.unwrap();
    worker.drain();
    assert!(worker.is_draining());
    assert_eq!(worker.run_pending().await.unwrap(), 0);
}

#[tokio::test]
async fn jobs_a_sick_worker_fails_go_to_a_healthy_one_and_its_open_circuit_leaves_them_alone() {
    let dir = tempfile::tempdir().unwrap();
    let settings = WorkerSettings {
        max_batch_images: 1,
        batch_window: Duration::ZERO,
        ..WorkerSettings::default()
    };
    let sick_model = Arc::new(FlakyModel {
        inner: FakeModel(fake_info()),
        failing: true.into(),
        calls: 0.into(),
    });
    let (jobs, sick) = pair(
        dir.path(),
        sick_model.clone(),
        Bus::new(),
        Bus::new(),
        settings.clone(),
    )
    .await;
    let healthy = another_worker(dir.path(), settings.clone()).await;
    let mut sick_lane = Lane::new(sick.id(), settings.clone());
    let mut healthy_lane = Lane::new(healthy.id(), settings);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(jobs.submit(fake_job("16x16", 1)).await.unwrap().0.id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The two workers take turns: each job fails on the sick one, goes back
    // to the queue, and the healthy one runs it.
    for id in &ids {
        let (_, ran) = sick.turn(&mut sick_lane).await.unwrap();
        assert_eq!(ran, 1);
        assert_eq!(
            jobs.db().get_job(*id).await.unwrap().status,
            JobStatus::Queued
        );
        let (_, ran) = healthy.turn(&mut healthy_lane).await.unwrap();
        assert_eq!(ran, 1);
        let done = jobs.db().get_job(*id).await.unwrap();
        assert_eq!(done.status, JobStatus::Succeeded, "{id}");
        assert_eq!(done.attempts, 2);
    }
    // Three failures in a row: the sick worker's circuit is open, so it
    // leaves the next job alone and the healthy worker gets it first try.
    assert_eq!(sick.open_circuits().len(), 1);
    let (next, _) = jobs.submit(fake_job("16x16", 1)).await.unwrap();
    let (_, ran) = sick.turn(&mut sick_lane).await.unwrap();
    assert_eq!(ran, 0, "an open circuit claims nothing");
    assert_eq!(
        sick_model.calls.load(std::sync::atomic::Ordering::SeqCst),
        3
    );
    healthy.turn(&mut healthy_lane).await.unwrap();
    let done = jobs.db().get_job(next.id).await.unwrap();
    assert_eq!((done.status, done.attempts), (JobStatus::Succeeded, 1));
    assert!(healthy.open_circuits().is_empty());
}
