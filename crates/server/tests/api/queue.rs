//! The queue's scheduling through the API, with the real worker: priority
//! tiers, fair share between users, batching. Ordering is read from the
//! jobs' `started_at` in the database, never from timings.

use std::time::Duration;

use easel_jobs::WorkerSettings;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

const BATCH: u32 = 4;

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    crate::backend::scalar(app.data_dir.path(), sql).await
}

async fn wait_finished(app: &TestApp, id: &str) -> Value {
    for _ in 0..1200 {
        let job: Value = app.get_job(id).await.json().await.unwrap();
        if job["status"] != "queued" && job["status"] != "running" {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} did not finish");
}

/// Batch-tier jobs of `user` that started after `job` was queued and before
/// it started: the batches that overtook it.
async fn overtaken_by(app: &TestApp, id: &str, user: &str) -> i64 {
    scalar(
        app,
        &format!(
            "SELECT COUNT(*) FROM jobs o, jobs j WHERE j.id = '{id}' AND o.user_id = '{user}' \
             AND o.started_at > j.created_at AND o.started_at < j.started_at"
        ),
    )
    .await
}

#[tokio::test]
async fn a_thousand_queued_jobs_of_one_user_delay_others_by_at_most_one_batch() {
    let app = spawn_app_with(|c| {
        c.worker.enabled = false;
        c.queue.max_queued_batch = 5_000;
    })
    .await;
    let heavy = json!({"prompt": "heavy", "user": "heavy", "tier": "batch", "steps": 30});
    for _ in 0..1_000 {
        let r = app.create_job(&heavy, None).await;
        assert_eq!(r.status(), 202);
    }
    let _worker = app
        .worker
        .with_settings(WorkerSettings {
            max_batch_images: BATCH,
            batch_window: Duration::ZERO,
            ..WorkerSettings::default()
        })
        .start();
    // Let the heavy user's backlog get going.
    while scalar(&app, "SELECT COUNT(*) FROM jobs WHERE status = 'succeeded'").await < 8 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Another user's single batch job: fair share within the tier.
    let r = app
        .create_job(
            &json!({"prompt": "light", "user": "light", "tier": "batch", "steps": 2}),
            None,
        )
        .await;
    assert_eq!(r.status(), 202);
    let light: Value = r.json().await.unwrap();
    let light_id = light["id"].as_str().unwrap();
    assert_eq!(wait_finished(&app, light_id).await["status"], "succeeded");
    let overtook = overtaken_by(&app, light_id, "heavy").await;
    assert!(
        overtook <= i64::from(BATCH),
        "{overtook} of the heavy user's jobs started while the light user's job waited"
    );

    // A realtime (synchronous) request from a third user: ahead of the tier.
    let base = app.url("/v1/images/generations");
    let client = app.client.clone();
    let sync = tokio::spawn(async move {
        client
            .post(base)
            .json(&json!({"prompt": "now", "user": "rt", "steps": 2}))
            .send()
            .await
            .unwrap()
    });
    assert_eq!(sync.await.unwrap().status(), 200);
    let rt_id = scalar(&app, "SELECT COUNT(*) FROM jobs WHERE tier = 'realtime'").await;
    assert_eq!(rt_id, 1);
    let rt = crate::backend::text(
        app.data_dir.path(),
        "SELECT id FROM jobs WHERE tier = 'realtime'",
    )
    .await;
    let overtook = overtaken_by(&app, &rt, "heavy").await;
    assert!(
        overtook <= i64::from(BATCH),
        "{overtook} batch jobs started while the realtime job waited"
    );

    // The test did exercise a backlog: most heavy jobs were still waiting.
    let behind = scalar(
        &app,
        &format!(
            "SELECT COUNT(*) FROM jobs o, jobs j WHERE j.id = '{rt}' AND o.user_id = 'heavy' \
             AND (o.started_at IS NULL OR o.started_at > j.started_at)"
        ),
    )
    .await;
    assert!(behind > 100, "only {behind} heavy jobs were behind");
}

#[tokio::test]
async fn compatible_jobs_share_one_engine_call_and_keep_nearly_their_pixels() {
    // Reference: each job alone. Both servers get the same watermark tag
    // (each would otherwise generate its own, and the mark is in the pixels).
    let setup = |c: &mut easel_server::Config| {
        c.worker.enabled = false;
        c.provenance.server_tag = Some(7);
    };
    let alone = spawn_app_with(setup).await;
    let jobs = [
        json!({"prompt": "a red apple", "seed": 1, "n": 2, "tier": "batch"}),
        json!({"prompt": "a cat face", "seed": 2, "n": 1, "tier": "batch"}),
        json!({"prompt": "a heart", "seed": 3, "n": 1, "tier": "batch"}),
    ];
    let mut want = Vec::new();
    for body in &jobs {
        let r: Value = alone.create_job(body, None).await.json().await.unwrap();
        alone.run_pending_jobs().await;
        want.push(job_pixels(&alone, r["id"].as_str().unwrap()).await);
    }

    // The same jobs queued together and run as batches of up to 4 images.
    let together = spawn_app_with(setup).await;
    let mut ids = Vec::new();
    for body in &jobs {
        let r: Value = together.create_job(body, None).await.json().await.unwrap();
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    let ran = together
        .worker
        .run_pending_with(WorkerSettings {
            max_batch_images: 4,
            ..WorkerSettings::default()
        })
        .await
        .unwrap();
    assert_eq!(ran, 3);
    // One claim for all three: the same started_at.
    let claims = scalar(
        &together,
        "SELECT COUNT(DISTINCT started_at) FROM jobs WHERE status = 'succeeded'",
    )
    .await;
    assert_eq!(claims, 1, "the three jobs ran as one batch");
    // The engine runs a batch as one forward pass, so an image may differ
    // from its unbatched run in the last float bits (the engine's
    // tolerance, `crates/engine/src/pipeline.rs`): after upscaling and the
    // watermark, a few 8-bit values a few levels off at most.
    for (id, want) in ids.iter().zip(&want) {
        let got = job_pixels(&together, id).await;
        assert_eq!(got.len(), want.len(), "job {id}");
        for (a, b) in got.iter().zip(want) {
            assert_eq!(a.len(), b.len(), "job {id}");
            let (differing, max) = a
                .iter()
                .zip(b)
                .filter(|(x, y)| x != y)
                .fold((0, 0), |(n, m), (x, y)| (n + 1, m.max(x.abs_diff(*y))));
            assert!(
                differing * 100 <= a.len() && max <= 8,
                "job {id}: {differing} of {} values off, by up to {max}",
                a.len()
            );
        }
    }
}

/// Each image's decoded 8-bit pixels, in index order. (The files differ
/// between runs: each records its own image id and C2PA claim.)
async fn job_pixels(app: &TestApp, job: &str) -> Vec<Vec<u8>> {
    let job: Value = app.get_job(job).await.json().await.unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    let mut out = Vec::new();
    for id in job["image_ids"].as_array().unwrap() {
        let image: Value = app
            .get_image(id.as_str().unwrap())
            .await
            .json()
            .await
            .unwrap();
        let bytes = app
            .get(image["url"].as_str().unwrap())
            .await
            .bytes()
            .await
            .unwrap();
        let pixels = easel_media::decode_untrusted(&bytes, &Default::default()).unwrap();
        out.push(pixels.pixels);
    }
    out
}

#[tokio::test]
async fn every_watcher_gets_every_event_with_previews_every_k_steps() {
    let app = spawn_app_with(|c| c.worker.enabled = false).await;
    let job: Value = app
        .create_job(
            &json!({"prompt": "a fox", "steps": 4, "n": 2, "tier": "batch"}),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    let watchers: Vec<_> = (0..3)
        .map(|_| {
            let url = app.url(&format!("/v1/jobs/{id}/events"));
            tokio::spawn(async move {
                let r = reqwest::get(url).await.unwrap();
                crate::helpers::parse_sse(&r.text().await.unwrap())
            })
        })
        .collect();
    // Let the watchers subscribe before the job runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.worker
        .run_pending_with(WorkerSettings {
            preview_every_steps: 2,
            ..WorkerSettings::default()
        })
        .await
        .unwrap();
    for watcher in watchers {
        let events = watcher.await.unwrap();
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "queued",
                "started",
                "progress",
                "progress",
                "progress",
                "progress",
                "completed"
            ]
        );
        for (_, data) in events.iter().filter(|(n, _)| n == "progress") {
            let step = data["step"].as_u64().unwrap();
            let previews = data["previews"].as_array();
            if step % 2 == 0 {
                let previews = previews.expect("a preview every 2 steps");
                assert_eq!(previews.len(), 2, "one per image of the job");
                for p in previews {
                    assert!(
                        p.as_str().unwrap().starts_with("data:image/png;base64,"),
                        "{p}"
                    );
                }
            } else {
                assert!(previews.is_none(), "no preview at step {step}: {data}");
            }
        }
    }
}
