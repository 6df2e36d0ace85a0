//! Crash recovery of the real `easel serve` process: a worker killed with
//! SIGKILL in the middle of a batch. After a restart on the same data folder
//! every job of that batch completes, and each image is stored exactly once
//! (rows in the database and objects on disk are counted).
//!
//! Uses the bundled model, so the batch takes a few seconds: long enough to
//! kill it half-way.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bundled_model, count_files, free_port, get_json, wait_ready};
use easel_core::JobId;
use serde_json::{Value, json};

const JOBS: usize = 3;
const IMAGES_PER_JOB: u32 = 2;

/// `easel serve` on `port` with its data in `data`. The long batching
/// window makes the jobs submitted one after another share one batch.
fn serve(data: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_easel"))
        .arg("serve")
        .arg("--model")
        .arg(bundled_model())
        .env("EASEL_DATA_DIR", data)
        .env("EASEL_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("EASEL_WORKER__MAX_BATCH_IMAGES", "8")
        .env("EASEL_WORKER__BATCH_WINDOW_MS", "3000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("easel serve starts")
}

async fn job(client: &reqwest::Client, base: &str, id: &str) -> Value {
    get_json(client, &format!("{base}/v1/jobs/{id}")).await
}

#[tokio::test]
async fn a_batch_killed_half_way_completes_after_restart_with_each_image_stored_once() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    let mut first = serve(data.path(), port);
    wait_ready(&client, &base, &mut first).await;
    let mut ids = Vec::new();
    let prompts = ["a red apple", "a cat face", "a red heart"];
    for (i, prompt) in prompts.iter().enumerate().take(JOBS) {
        let r = client
            .post(format!("{base}/v1/jobs"))
            .json(&json!({
                "prompt": prompt,
                "n": IMAGES_PER_JOB,
                "seed": 7 + i,
                "tier": "batch",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        let body: Value = r.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_string());
    }

    // Wait until the batch is running, then kill the process mid-batch.
    let started = Instant::now();
    loop {
        let mut running = 0;
        for id in &ids {
            let status = job(&client, &base, id).await["status"].clone();
            assert_ne!(
                status, "succeeded",
                "the batch finished before it could be killed"
            );
            if status == "running" {
                running += 1;
            }
        }
        if running == JOBS {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the batch never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    first.wait().unwrap();

    // Same data folder, new process: the jobs are recovered and finish.
    let mut second = serve(data.path(), port);
    wait_ready(&client, &base, &mut second).await;
    let started = Instant::now();
    for id in &ids {
        loop {
            let body = job(&client, &base, id).await;
            match body["status"].as_str().unwrap() {
                "succeeded" => {
                    let images = body["image_ids"]
                        .as_array()
                        .or(body["images"].as_array())
                        .cloned()
                        .unwrap_or_default();
                    assert_eq!(images.len(), IMAGES_PER_JOB as usize, "{body}");
                    break;
                }
                "queued" | "running" => {
                    assert!(
                        started.elapsed() < Duration::from_secs(180),
                        "job {id} did not finish after the restart: {body}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => panic!("job {id} ended {other}: {body}"),
            }
        }
    }
    second.kill().unwrap();
    second.wait().unwrap();

    // Each job: its images exactly once in the database, run twice.
    let db = easel_store::Db::open(data.path().join("easel.db"))
        .await
        .unwrap();
    let mut rows = 0;
    for id in &ids {
        let id: JobId = id.parse().unwrap();
        let job = db.get_job(id).await.unwrap();
        assert_eq!(job.attempts, 2, "claimed once before the kill, once after");
        let images = db.images_for_job(id).await.unwrap();
        assert_eq!(images.len(), IMAGES_PER_JOB as usize);
        for image in &images {
            assert!(
                data.path().join(&image.object_key).is_file(),
                "{} is missing",
                image.object_key
            );
        }
        rows += images.len();
    }
    assert_eq!(rows, JOBS * IMAGES_PER_JOB as usize);
    // ...and exactly once on disk: no orphans from the killed attempt.
    assert_eq!(count_files(&data.path().join("images")), rows);
    db.close().await;
}
