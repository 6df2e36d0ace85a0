//! Batches, part two: bounded retries per line with their reasons, the
//! automatic QA (threshold → `needs_review` and the review queue, and a
//! sample), the manifest (JSONL and CSV) and zip export as delivered, the
//! signed completion webhook with its bounded retries, and realtime
//! requests going first while a batch runs.

use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::batches::{
    by_hand, create, create_with, drive_until, fast, get, line, lines, upload_ok, wait_for,
};
use crate::helpers::{TestApp, assert_error, small_request, spawn_app_with};

/// Claims the queued job and fails it with `code`, as a worker would.
async fn fail_next_job(app: &TestApp, code: &str) -> String {
    let db = app.jobs.db();
    let job = db
        .claim_next_queued("test-worker", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("a queued job");
    db.mark_failed(
        easel_store::Fence::of(&job),
        code,
        &format!("injected {code}"),
    )
    .await
    .unwrap();
    job.id.to_string()
}

#[tokio::test]
async fn a_line_that_fails_for_a_passing_reason_is_retried_a_bounded_number_of_times() {
    let app = spawn_app_with(|c| {
        by_hand(4)(c);
        c.batches.max_attempts = 3;
    })
    .await;
    let file = upload_ok(&app, &lines(2)).await;
    let batch: Value = create(&app, &file).await.json().await.unwrap();
    let id = batch["id"].as_str().unwrap().to_string();
    app.tick_batches().await;
    assert_eq!(app.count_jobs().await, 2);
    // Line 0 fails three times for passing reasons; line 1 is refused
    // once, which is final.
    let mut failed_jobs = vec![fail_next_job(&app, "engine_error").await];
    fail_next_job(&app, "content_blocked").await;
    app.tick_batches().await;
    assert_eq!(
        app.count_jobs().await,
        3,
        "one retry of line 0, none of line 1"
    );
    failed_jobs.push(fail_next_job(&app, "storage_failed").await);
    app.tick_batches().await;
    assert_eq!(app.count_jobs().await, 4);
    failed_jobs.push(fail_next_job(&app, "engine_error").await);
    app.tick_batches().await;
    app.tick_batches().await;
    assert_eq!(app.count_jobs().await, 4, "no fourth attempt");
    let batch = get(&app, &format!("/v1/batches/{id}")).await;
    assert_eq!(batch["status"], "completed", "{batch}");
    assert_eq!(batch["request_counts"]["failed"], 2);

    let manifest = manifest_jsonl(&app, &id).await;
    assert_eq!(manifest.len(), 2);
    let retried = &manifest[0];
    assert_eq!(retried["status"], "failed");
    assert_eq!(retried["attempts"], 3);
    assert_eq!(retried["error_code"], "engine_error");
    let retries = retried["retries"].as_array().unwrap();
    assert_eq!(retries.len(), 2, "{retried}");
    assert_eq!(retries[0]["attempt"], 1);
    assert_eq!(retries[0]["code"], "engine_error");
    assert_eq!(retries[0]["job_id"], failed_jobs[0]);
    assert_eq!(retries[1]["code"], "storage_failed");
    assert_eq!(retries[1]["message"], "injected storage_failed");
    let refused = &manifest[1];
    assert_eq!(refused["attempts"], 1);
    assert_eq!(refused["error_code"], "content_blocked");
    assert!(refused.get("retries").is_none(), "{refused}");
    // The error file names the last reason.
    let errors = crate::batches::content(&app, batch["error_file_id"].as_str().unwrap()).await;
    assert_eq!(
        errors[0]["response"]["body"]["error"]["code"],
        "engine_error"
    );
}

async fn manifest_jsonl(app: &TestApp, id: &str) -> Vec<Value> {
    let r = app
        .client
        .get(app.url(&format!("/v1/batches/{id}/manifest")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/jsonl");
    r.text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn qa_marks_lines_below_the_threshold_and_sends_them_and_a_sample_to_review() {
    // The worker's own sample of every job's images off, so each image
    // enters the queue for the batch's reason only.
    let app = spawn_app_with(|c| {
        by_hand(8)(c);
        c.review.sample_percent = 0.0;
    })
    .await;
    let file = upload_ok(&app, &lines(3)).await;
    // A threshold no image reaches: every line needs review.
    let strict: Value = create_with(
        &app,
        json!({"input_file_id": file, "qa": {"min_quality_score": 1.0, "review_sample_percent": 0}}),
    )
    .await
    .json()
    .await
    .unwrap();
    let strict_id = strict["id"].as_str().unwrap();
    assert_eq!(strict["qa"]["min_quality_score"], 1.0);
    let done = drive_until(&app, strict_id, "completed").await;
    assert_eq!(done["qa"]["needs_review"], 3, "{done}");
    for entry in manifest_jsonl(&app, strict_id).await {
        assert_eq!(entry["needs_review"], true, "{entry}");
        assert!(entry["quality_score"].as_f64().unwrap() < 1.0);
    }
    assert_eq!(in_review(&app, "below_threshold").await, 3);
    assert_eq!(app.count_rows("review_items").await, 3, "no sample asked");

    // No threshold, everything sampled: nothing needs review, every image
    // is in the queue as a sample.
    let sampled: Value = create_with(
        &app,
        json!({"input_file_id": file, "qa": {"review_sample_percent": 100}}),
    )
    .await
    .json()
    .await
    .unwrap();
    let sampled_id = sampled["id"].as_str().unwrap();
    let done = drive_until(&app, sampled_id, "completed").await;
    assert_eq!(done["qa"]["needs_review"], 0);
    assert!(done["qa"]["min_quality_score"].is_null());
    assert_eq!(in_review(&app, "sampled").await, 3);
    assert_eq!(in_review(&app, "below_threshold").await, 3);

    // Settings out of range: refused, naming the field.
    for (qa, param) in [
        (json!({"min_quality_score": 2.0}), "qa.min_quality_score"),
        (
            json!({"review_sample_percent": 101}),
            "qa.review_sample_percent",
        ),
    ] {
        let r = create_with(&app, json!({"input_file_id": file, "qa": qa})).await;
        let body = assert_error(r, 400, "invalid_qa").await;
        assert_eq!(body["error"]["param"], param);
    }
}

/// Review queue items with `reason`.
async fn in_review(app: &TestApp, reason: &str) -> i64 {
    crate::backend::scalar(
        app.data_dir.path(),
        &format!("SELECT COUNT(*) FROM review_items WHERE reason = '{reason}'"),
    )
    .await
}

#[tokio::test]
async fn the_manifest_and_the_zip_export_hold_every_image_as_delivered() {
    let app = spawn_app_with(fast).await;
    let file = upload_ok(&app, &lines(3)).await;
    let batch: Value = create(&app, &file).await.json().await.unwrap();
    let id = batch["id"].as_str().unwrap().to_string();
    wait_for(&app, &id, |b| b["status"] == "completed").await;

    let manifest = manifest_jsonl(&app, &id).await;
    assert_eq!(manifest.len(), 3);
    for (i, e) in manifest.iter().enumerate() {
        assert_eq!(e["custom_id"], format!("item-{i}"));
        assert_eq!(e["line"], i);
        assert_eq!(e["status"], "succeeded");
        assert_eq!(e["prompt"], format!("a lamp, variant {i}"));
        assert_eq!(e["seed"], 100 + i);
        assert!(e["quality_score"].is_f64(), "{e}");
        assert!(e["cost"].is_f64());
        assert_eq!(e["attempts"], 1);
        assert_eq!(
            e["file"],
            format!("images/{i:06}_item-{i}_0.png"),
            "the name in the zip"
        );
    }
    // The signed link serves the image.
    let via_link = app
        .get(manifest[1]["url"].as_str().unwrap())
        .await
        .bytes()
        .await
        .unwrap();
    assert!(via_link.starts_with(b"\x89PNG"));

    let r = app
        .client
        .get(app.url(&format!("/v1/batches/{id}/manifest?format=csv")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = r.text().await.unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(rows[0].starts_with("custom_id,line,status,prompt,seed,image_id,file,url"));
    assert!(rows[1].starts_with("item-0,0,succeeded,\"a lamp, variant 0\",100,"));
    let r = app
        .client
        .get(app.url(&format!("/v1/batches/{id}/manifest?format=xml")))
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "invalid_format").await;

    // The zip: each image under its manifest name, byte for byte what the
    // link serves, and both manifests.
    let r = app
        .client
        .get(app.url(&format!("/v1/batches/{id}/export")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/zip");
    let bytes = r.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut names: Vec<String> = zip.file_names().map(|n| n.unwrap().to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "images/000000_item-0_0.png",
            "images/000001_item-1_0.png",
            "images/000002_item-2_0.png",
            "manifest.csv",
            "manifest.jsonl",
        ]
    );
    let mut image = Vec::new();
    zip.by_name("images/000001_item-1_0.png")
        .unwrap()
        .read_to_end(&mut image)
        .unwrap();
    assert_eq!(image, via_link.to_vec());
    let mut inner = String::new();
    zip.by_name("manifest.jsonl")
        .unwrap()
        .read_to_string(&mut inner)
        .unwrap();
    assert_eq!(inner.lines().count(), 3);
    // Another project's caller sees neither.
    let r = app
        .client
        .get(app.url("/v1/batches/batch_nope/export"))
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "batch_not_found").await;
}

#[tokio::test]
async fn the_csv_manifest_defuses_formulas_in_ids_and_prompts() {
    let app = spawn_app_with(fast).await;
    let mut refused = small_request("a lamp");
    refused["prompt"] = json!("=HYPERLINK(\"x\")");
    let text = line("=first", refused) + "\n";
    let file = upload_ok(&app, &text).await;
    let batch: Value = create(&app, &file).await.json().await.unwrap();
    let id = batch["id"].as_str().unwrap().to_string();
    wait_for(&app, &id, |b| b["status"] == "completed").await;
    let csv = app
        .client
        .get(app.url(&format!("/v1/batches/{id}/manifest?format=csv")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row = csv.lines().nth(1).unwrap();
    assert!(row.starts_with("'=first,0,"), "{row}");
    assert!(row.contains("\"'=HYPERLINK(\"\"x\"\")\""), "{row}");
}

/// The deliveries a receiver got: headers and body of each.
type Deliveries = Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;

/// A webhook receiver on a free port: answers 500 to the first `fail`
/// calls (all of them when `None`), then 200; keeps what it got.
struct Receiver {
    url: String,
    calls: Arc<AtomicUsize>,
    got: Deliveries,
}

async fn receiver(fail: Option<usize>) -> Receiver {
    let calls = Arc::new(AtomicUsize::new(0));
    let got: Deliveries = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, g) = (calls.clone(), got.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (c, g) = (c.clone(), g.clone());
                async move {
                    let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                    g.lock().unwrap().push((headers, body.to_vec()));
                    if fail.is_none_or(|f| n <= f) {
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        axum::http::StatusCode::NO_CONTENT
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, calls, got }
}

/// Checks a delivery's signature as a receiver following the Standard
/// Webhooks specification would, with the batch's secret.
fn verify(secret: &str, headers: &axum::http::HeaderMap, body: &[u8]) -> bool {
    use base64::Engine as _;
    use hmac::Mac as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let id = headers["webhook-id"].to_str().unwrap();
    let ts = headers["webhook-timestamp"].to_str().unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", engine.encode(mac.finalize().into_bytes()));
    headers["webhook-signature"]
        .to_str()
        .unwrap()
        .split(' ')
        .any(|s| s == expected)
}

fn webhooks(c: &mut easel_config::Config) {
    fast(c);
    c.batches.webhook_allow_private = true;
    c.batches.webhook_attempts = 3;
    c.batches.webhook_backoff_seconds = 0.05;
}

#[tokio::test]
async fn the_completion_webhook_is_signed_and_retried_until_delivered() {
    let app = spawn_app_with(webhooks).await;
    let hook = receiver(Some(2)).await;
    let file = upload_ok(&app, &lines(2)).await;
    let r = create_with(
        &app,
        json!({"input_file_id": file, "webhook_url": hook.url}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let batch: Value = r.json().await.unwrap();
    let secret = batch["webhook_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(batch["webhook"]["url"], hook.url);
    assert!(batch["webhook"]["status"].is_null());
    let id = batch["id"].as_str().unwrap().to_string();
    let done = wait_for(&app, &id, |b| b["webhook"]["status"] == "delivered").await;
    assert_eq!(done["webhook"]["attempts"], 3, "{done}");
    assert!(done["webhook_secret"].is_null(), "the secret is shown once");
    assert_eq!(hook.calls.load(Ordering::SeqCst), 3);
    let got = hook.got.lock().unwrap().clone();
    for (headers, body) in &got {
        assert!(verify(&secret, headers, body), "the signature verifies");
        assert!(!verify("whsec_AAAAAAAA", headers, body));
        assert_eq!(
            headers["webhook-id"],
            format!("msg_{id}"),
            "one id for every try"
        );
        let event: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(event["type"], "batch.completed");
        assert_eq!(event["data"]["id"], id);
        assert_eq!(event["data"]["request_counts"]["completed"], 2);
    }
    // A changed body does not verify.
    let (headers, body) = &got[2];
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert!(!verify(&secret, headers, &tampered));
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_gets_a_bounded_number_of_tries() {
    let app = spawn_app_with(webhooks).await;
    let hook = receiver(None).await;
    let file = upload_ok(&app, &lines(1)).await;
    let batch: Value = create_with(
        &app,
        json!({"input_file_id": file, "webhook_url": hook.url}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = batch["id"].as_str().unwrap().to_string();
    let done = wait_for(&app, &id, |b| b["webhook"]["status"] == "failed").await;
    assert_eq!(done["webhook"]["attempts"], 3);
    assert!(
        done["webhook"]["last_error"]
            .as_str()
            .unwrap()
            .contains("500"),
        "{done}"
    );
    // Several more passes of the driver: no fourth try.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.calls.load(Ordering::SeqCst), 3);

    // Without `webhook_allow_private`, an address inside the network is
    // refused when the batch is created.
    let strict = spawn_app_with(fast).await;
    let file = upload_ok(&strict, &lines(1)).await;
    for url in [
        hook.url.as_str(),
        "ftp://example.com/x",
        "http://169.254.169.254/",
    ] {
        let r = create_with(&strict, json!({"input_file_id": file, "webhook_url": url})).await;
        let body = assert_error(r, 400, "invalid_webhook_url").await;
        assert_eq!(body["error"]["param"], "webhook_url");
    }
    assert_eq!(strict.count_rows("batches").await, 0);
}

#[tokio::test]
async fn realtime_requests_go_before_the_queued_lines_of_a_large_batch() {
    let app = spawn_app_with(|c| {
        fast(c);
        c.batches.window = 64;
    })
    .await;
    let file = upload_ok(&app, &lines(40)).await;
    let batch: Value = create(&app, &file).await.json().await.unwrap();
    let id = batch["id"].as_str().unwrap().to_string();
    // Once the batch is running, with lines still queued behind it…
    wait_for(&app, &id, |b| {
        let done = b["request_counts"]["completed"].as_u64().unwrap();
        (2..30).contains(&done)
    })
    .await;
    // …a realtime request.
    let mut request = small_request("a realtime lamp");
    request["tier"] = json!("realtime");
    let job: Value = app
        .client
        .post(app.url("/v1/jobs"))
        .json(&request)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rt_id: easel_core::JobId = job["id"].as_str().unwrap().parse().unwrap();
    let db = app.jobs.db();
    let rt = loop {
        let j = db.get_job(rt_id).await.unwrap();
        if j.status.is_terminal() {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(rt.status.as_str(), "succeeded");
    let (arrived, started) = (rt.created_at, rt.started_at.unwrap());
    // Batch lines that started between the realtime job's arrival and its
    // start: at most one engine call's worth (a claim already under way
    // when it arrived), never a second.
    let items = db.batch_items(&id, None, None, 100).await.unwrap();
    let mut overtaking = std::collections::BTreeMap::new();
    for item in items {
        let Some(job) = item.job_id else { continue };
        let job = db.get_job(job).await.unwrap();
        if let Some(s) = job.started_at
            && s > arrived
            && s < started
        {
            overtaking.entry(s).or_insert_with(Vec::new).push(item.line);
        }
    }
    assert!(
        overtaking.len() <= 1,
        "batch lines of several engine calls started first: {overtaking:?}"
    );
    wait_for(&app, &id, |b| b["status"] == "completed").await;
}

async fn post(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.post(app.url(path)).send().await.unwrap()
}

#[tokio::test]
async fn batches_share_the_workers_and_a_paused_batch_submits_nothing_until_resumed() {
    let app = spawn_app_with(by_hand(2)).await;
    let file = upload_ok(&app, &lines(5)).await;
    let a: Value = create(&app, &file).await.json().await.unwrap();
    let b: Value = create(&app, &file).await.json().await.unwrap();
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let db = app.jobs.db();
    let submitted = |id: &str| {
        let id = id.to_string();
        async move {
            db.count_batch_items(&id, easel_store::ItemStatus::Submitted)
                .await
                .unwrap()
        }
    };
    // Each batch has its own window: both run side by side.
    app.tick_batches().await;
    assert_eq!((submitted(a).await, submitted(b).await), (2, 2));

    let r = post(&app, &format!("/v1/batches/{a}/pause")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "paused");
    assert_error(
        post(&app, &format!("/v1/batches/{a}/pause")).await,
        409,
        "batch_not_pausable",
    )
    .await;
    assert_error(
        post(&app, &format!("/v1/batches/{b}/resume")).await,
        409,
        "batch_not_paused",
    )
    .await;
    // What was queued runs; the paused batch submits nothing more.
    assert_eq!(app.run_pending_jobs().await, 4);
    app.tick_batches().await;
    app.tick_batches().await;
    assert_eq!((submitted(a).await, submitted(b).await), (0, 2));
    let paused = get(&app, &format!("/v1/batches/{a}")).await;
    assert_eq!(paused["status"], "paused");
    assert_eq!(paused["request_counts"]["completed"], 2);
    assert_eq!(app.count_jobs().await, 6);

    let r = post(&app, &format!("/v1/batches/{a}/resume")).await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "in_progress");
    drive_until(&app, a, "completed").await;
    drive_until(&app, b, "completed").await;
    assert_eq!(app.count_jobs().await, 10, "each line once");
}
