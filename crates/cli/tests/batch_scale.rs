//! A 10,000-line template batch on the real `easel serve` process and the
//! tiny fixture model: created, killed with SIGKILL part-way, restarted on
//! the same data folder, and run to completion. Afterwards the manifest
//! holds every line once, and the database and the image folder hold
//! exactly one job and one image per line: nothing lost, nothing made
//! twice. Prints how long creating the batch, reading its status and
//! reading its manifest took (figures for docs/performance.md come from a
//! release build; no timing is asserted).

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{count_files, free_port, get_json, tiny_model, wait_ready};
use serde_json::{Value, json};

const LINES: u64 = 10_000;

/// `easel serve` on the tiny model, with a driver that keeps the workers
/// fed. It runs in the data folder, so the shipped moderation and scorer
/// models (paths relative to the repository) are not found and those
/// stages are off: what is measured here is the batch machinery, the
/// queue, the watermark, C2PA and the store, not the classifiers.
fn serve(data: &Path, port: u16) -> Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .current_dir(data)
        .arg("serve")
        .arg("--model")
        .arg(tiny_model())
        .env("EASEL_DATA_DIR", data)
        .env("EASEL_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("EASEL_LOG", "warn")
        .env("EASEL_BATCHES__INTERVAL_SECONDS", "0.1")
        .env("EASEL_BATCHES__WINDOW", "256")
        .env("EASEL_WORKER__MAX_BATCH_IMAGES", "32")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("easel serve starts")
}

/// Every job in the database, a page at a time.
async fn count_jobs(db: &easel_store::Db) -> u64 {
    let (mut n, mut cursor) = (0u64, None::<String>);
    loop {
        let page = db
            .list_jobs(&easel_store::JobFilter::default(), cursor.as_deref(), 100)
            .await
            .unwrap();
        n += page.jobs.len() as u64;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return n,
        }
    }
}

async fn batch(client: &reqwest::Client, base: &str, id: &str) -> Value {
    get_json(client, &format!("{base}/v1/batches/{id}")).await
}

fn values(prefix: &str) -> Vec<String> {
    (0..10).map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test]
async fn a_10000_line_batch_survives_a_sigkill_with_nothing_lost_or_made_twice() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    let mut first = serve(data.path(), port);
    wait_ready(&client, &base, &mut first).await;
    let started = Instant::now();
    let r = client
        .post(format!("{base}/v1/batches"))
        .json(&json!({
            "template": {
                "prompt": "a {color} {object}, {style}, {light}",
                "variables": {
                    "color": values("color-"),
                    "object": values("object-"),
                    "style": values("style-"),
                    "light": values("light-"),
                },
                "body": {"size": "16x16", "steps": 1},
            },
        }))
        .send()
        .await
        .unwrap();
    let created = started.elapsed();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["request_counts"]["total"], LINES);
    let id = body["id"].as_str().unwrap().to_string();
    eprintln!("created a {LINES}-line batch in {created:?}");

    // Kill it part-way.
    let waited = Instant::now();
    loop {
        let b = batch(&client, &base, &id).await;
        let done = b["request_counts"]["completed"].as_u64().unwrap();
        assert!(done < LINES, "the batch finished before it could be killed");
        if done >= LINES / 5 {
            eprintln!("killing at {done} lines done");
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(1800),
            "the batch is too slow: {b}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    first.kill().expect("SIGKILL");
    first.wait().unwrap();

    // Restart on the same data: the batch resumes and completes.
    let mut second = serve(data.path(), port);
    wait_ready(&client, &base, &mut second).await;
    let waited = Instant::now();
    let done = loop {
        let b = batch(&client, &base, &id).await;
        if b["status"] == "completed" {
            break b;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(3600),
            "the batch did not complete after the restart: {b}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(done["request_counts"]["completed"], LINES, "{done}");
    assert_eq!(done["request_counts"]["failed"], 0);

    let started = Instant::now();
    let status = batch(&client, &base, &id).await;
    eprintln!("status of the finished batch in {:?}", started.elapsed());
    assert_eq!(status["spend"]["images"], LINES);

    // The manifest: every line once, each with its own image.
    let started = Instant::now();
    let text = client
        .get(format!("{base}/v1/batches/{id}/manifest"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    eprintln!("manifest of {LINES} lines in {:?}", started.elapsed());
    let entries: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len() as u64, LINES);
    let lines: HashSet<u64> = entries
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    let images: HashSet<&str> = entries
        .iter()
        .map(|e| e["image_id"].as_str().unwrap())
        .collect();
    let prompts: HashSet<&str> = entries
        .iter()
        .map(|e| e["prompt"].as_str().unwrap())
        .collect();
    assert_eq!(lines.len() as u64, LINES);
    assert_eq!(images.len() as u64, LINES);
    assert_eq!(prompts.len() as u64, LINES, "every combination once");
    assert!(entries.iter().all(|e| e["status"] == "succeeded"));
    second.kill().unwrap();
    second.wait().unwrap();

    // One job and one image per line in the database, one file per image.
    let db = easel_store::Db::open(data.path().join("easel.db"))
        .await
        .unwrap();
    let items = db.batch_items(&id, None, None, 10_000).await.unwrap();
    let jobs: HashSet<_> = items.iter().filter_map(|i| i.job_id).collect();
    assert_eq!(jobs.len() as u64, LINES, "one job per line");
    assert_eq!(count_jobs(&db).await, LINES, "no other job");
    assert_eq!(count_files(&data.path().join("images")) as u64, LINES);
    db.close().await;
}
