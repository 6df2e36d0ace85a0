//! Storing a batch's images: each row comes from the image's own record.

use std::sync::Arc;
use std::time::Duration;

use easel_engine::CancelToken;
use easel_store::{Blobs, Db};
use easel_telemetry::metrics::Metrics;

use crate::admission::AdmissionConfig;
use crate::bus::Bus;
use crate::handle::Jobs;
use crate::models::{Generator, ModelSpec, ModelState, Models};
use crate::pipeline;
use crate::postprocess::PostProcess;
use crate::testing::{FAKE_HASH, FakeModel, fake_info, fake_job};
use crate::worker::{Worker, WorkerSettings, WorkerSetup};

/// A job handle and a worker over a fresh store, serving only the fake
/// model.
async fn jobs(dir: &std::path::Path) -> (Jobs, Worker) {
    let db = Db::open(dir.join("easel.db")).await.unwrap();
    let blobs = Blobs::local(dir.join("objects")).unwrap();
    let spec = ModelSpec {
        name: "fake".into(),
        path: "fake".into(),
    };
    let model: Arc<dyn Generator> = Arc::new(FakeModel(fake_info()));
    let (bus, metrics) = (Bus::new(), Metrics::default());
    let jobs = Jobs::new(
        db.clone(),
        blobs.clone(),
        bus.clone(),
        metrics.clone(),
        AdmissionConfig::default(),
    );
    let worker = Worker::new(WorkerSetup {
        db,
        blobs,
        models: Models::from_ready(vec![(spec, model)]),
        bus,
        post: PostProcess::default(),
        settings: WorkerSettings::default(),
        metrics,
    });
    (jobs, worker)
}

/// Regression (issue 13): `store_images` looked the model's hash up again
/// in the pool; after an eviction between render and store that recorded
/// an empty hash (and started a load) while the file carried the right one.
#[tokio::test]
async fn a_model_evicted_between_render_and_store_still_has_its_hash_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (jobs, worker) = jobs(dir.path()).await;
    let (job, _) = jobs.submit(fake_job("16x16", 2)).await.unwrap();
    let job = jobs
        .db()
        .claim_jobs(&[job.id], "test-worker", Duration::from_secs(60))
        .await
        .unwrap()
        .pop()
        .expect("the job is claimed");

    // Render with the pool's model, as the worker does...
    let post = PostProcess {
        watermark: Some(0x00ab),
        ..PostProcess::default()
    };
    let model = worker.models().get(Some("fake")).unwrap();
    let images = pipeline::render(
        &*model,
        &post,
        &job.params,
        &job.options,
        None,
        &mut (),
        &CancelToken::new(),
    )
    .unwrap();
    drop(model);
    let records: Vec<_> = images.iter().map(|i| i.record.clone()).collect();

    // ...evict it...
    worker.models().unload("fake").unwrap();
    assert_eq!(worker.models().state("fake"), Some(ModelState::Unloaded));

    // ...then store.
    worker.finish_job(&job, Ok(images)).await.unwrap();

    let stored = jobs.db().images_for_job(job.id).await.unwrap();
    assert_eq!(stored.len(), 2);
    for (row, record) in stored.iter().zip(&records) {
        assert_eq!(
            row.model_hash, FAKE_HASH,
            "the hash of the model that rendered it"
        );
        assert_eq!(row.model, "fake");
        assert_eq!(row.id, record.image_id);
        assert_eq!(row.seed, record.seed);
        let tag = record.image_tag();
        assert_eq!(row.watermark_id, Some(format!("00ab{tag:08x}")));
        assert_eq!(row.watermark_id, record.watermark_id);
    }
    // Storing asked nothing of the pool: no load was started.
    assert_eq!(worker.models().state("fake"), Some(ModelState::Unloaded));
    let done = jobs.get(job.id).await.unwrap();
    assert_eq!(done.status, easel_core::JobStatus::Succeeded);
}
