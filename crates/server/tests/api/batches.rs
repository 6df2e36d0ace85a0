//! Batches (OpenAI's Batch API): files, batch creation with its input
//! refused line by line, the driver's window, cancel, results in input
//! order, and no request made twice. The official SDK's flow is in
//! `openai_sdk.rs`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{MODEL, TestApp, assert_error, small_request, spawn_app_with};

/// One request line calling the generations endpoint.
pub(crate) fn line(custom_id: &str, body: Value) -> String {
    json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/images/generations",
        "body": body,
    })
    .to_string()
}

/// `n` valid lines, `item-0` … with seeds 100 + i.
pub(crate) fn lines(n: usize) -> String {
    (0..n)
        .map(|i| {
            let mut body = small_request(&format!("a lamp, variant {i}"));
            body["seed"] = json!(100 + i);
            line(&format!("item-{i}"), body) + "\n"
        })
        .collect()
}

pub(crate) async fn upload(app: &TestApp, text: &str, purpose: &str) -> reqwest::Response {
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(text.as_bytes().to_vec()).file_name("requests.jsonl"),
        )
        .text("purpose", purpose.to_string());
    app.client
        .post(app.url("/v1/files"))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn upload_ok(app: &TestApp, text: &str) -> String {
    let r = upload(app, text, "batch").await;
    assert_eq!(r.status(), 200);
    let file: Value = r.json().await.unwrap();
    assert_eq!(file["object"], "file");
    assert_eq!(file["bytes"], text.len());
    file["id"].as_str().unwrap().to_string()
}

pub(crate) async fn create(app: &TestApp, file: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/batches"))
        .json(&json!({
            "input_file_id": file,
            "endpoint": "/v1/images/generations",
            "completion_window": "24h",
        }))
        .send()
        .await
        .unwrap()
}

pub(crate) async fn get(app: &TestApp, path: &str) -> Value {
    let r = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// Polls the batch until `done` holds for it.
pub(crate) async fn wait_for(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..1200 {
        let batch = get(app, &format!("/v1/batches/{id}")).await;
        if done(&batch) {
            return batch;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("batch {id} did not get there");
}

pub(crate) async fn content(app: &TestApp, file: &str) -> Vec<Value> {
    let r = app
        .client
        .get(app.url(&format!("/v1/files/{file}/content")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/jsonl");
    let text = r.text().await.unwrap();
    let size = get(app, &format!("/v1/files/{file}")).await["bytes"]
        .as_u64()
        .unwrap();
    assert_eq!(text.len() as u64, size, "the file's size is its content's");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub(crate) fn fast(c: &mut easel_config::Config) {
    c.batches.interval_seconds = 0.05;
}

#[tokio::test]
async fn a_batch_runs_every_line_and_returns_results_in_input_order() {
    let app = spawn_app_with(fast).await;
    let file = upload_ok(&app, &lines(5)).await;
    let r = create(&app, &file).await;
    assert_eq!(r.status(), 200);
    let batch: Value = r.json().await.unwrap();
    assert_eq!(batch["object"], "batch");
    assert_eq!(batch["status"], "in_progress");
    assert_eq!(batch["request_counts"]["total"], 5);
    let id = batch["id"].as_str().unwrap();
    let batch = wait_for(&app, id, |b| b["status"] == "completed").await;
    assert_eq!(batch["request_counts"]["completed"], 5, "{batch}");
    assert_eq!(batch["request_counts"]["failed"], 0);
    assert!(batch["error_file_id"].is_null());
    assert!(batch["completed_at"].is_i64() && batch["finalizing_at"].is_i64());
    let results = content(&app, batch["output_file_id"].as_str().unwrap()).await;
    assert_eq!(results.len(), 5);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["custom_id"], format!("item-{i}"), "input order");
        assert_eq!(r["response"]["status_code"], 200);
        let body = &r["response"]["body"];
        assert_eq!(body["seed"], 100 + i, "each line keeps its seed");
        assert_eq!(body["model"], MODEL);
        assert!(body["data"][0]["b64_json"].as_str().unwrap().len() > 100);
        // The job is an ordinary batch-tier job of the caller.
        let job = get(
            &app,
            &format!("/v1/jobs/{}", body["job_id"].as_str().unwrap()),
        )
        .await;
        assert_eq!(job["tier"], "batch");
        assert_eq!(job["status"], "succeeded");
    }
    assert_eq!(app.count_jobs().await, 5, "one job per line, none twice");
    // The same request on its own gives the same pixels (same seed).
    let alone = app
        .generate(&{
            let mut b = small_request("a lamp, variant 3");
            b["seed"] = json!(103);
            b
        })
        .await;
    let alone: Value = alone.json().await.unwrap();
    assert_eq!(
        decode(&alone["data"][0]["b64_json"]),
        decode(&results[3]["response"]["body"]["data"][0]["b64_json"]),
    );
    let listed = get(&app, "/v1/batches?limit=5").await;
    assert_eq!(listed["object"], "list");
    assert_eq!(listed["data"][0]["id"], id);
}

/// The decoded pixels of a base64 PNG.
fn decode(b64: &Value) -> Vec<u8> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.as_str().unwrap())
        .unwrap();
    let decoded = easel_media::decode_untrusted(&bytes, &easel_media::DecodeLimits::default())
        .expect("a PNG");
    decoded.pixels
}

/// The worker and the batch driver off: each step by hand.
pub(crate) fn by_hand(window: u32) -> impl FnOnce(&mut easel_config::Config) {
    move |c| {
        c.worker.enabled = false;
        c.batches.drive = false;
        c.batches.window = window;
    }
}

#[tokio::test]
async fn the_driver_keeps_a_window_of_jobs_and_never_submits_an_item_twice() {
    let app = spawn_app_with(by_hand(3)).await;
    let file = upload_ok(&app, &lines(7)).await;
    let batch: Value = create(&app, &file).await.json().await.unwrap();
    let id = batch["id"].as_str().unwrap().to_string();
    // Several passes: still only the window is queued.
    for _ in 0..3 {
        app.tick_batches().await;
    }
    assert_eq!(app.count_jobs().await, 3);
    // A process that died after submitting an item's job but before
    // recording it submits it again: the idempotency key gives it the
    // same job.
    let item = app
        .jobs
        .db()
        .batch_items(&id, None, None, 1)
        .await
        .unwrap()
        .remove(0);
    let request: easel_jobs::batches::ItemRequest =
        serde_json::from_value(item.request.clone()).unwrap();
    let job = app.jobs.get(item.job_id.unwrap()).await.unwrap();
    let (again, created) = app
        .jobs
        .submit(easel_jobs::NewJob {
            params: request.params,
            output: request.output,
            tier: easel_core::Tier::Batch,
            project: job.project.clone(),
            user_id: job.user_id.clone(),
            end_user: job.end_user.clone(),
            idempotency_key: Some(easel_jobs::batches::item_key(&id, 0, 1)),
            init_image: None,
            mask: None,
            timeout: None,
            policy: None,
            request_id: None,
            trace_parent: None,
        })
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.id, job.id);
    assert_eq!(app.count_jobs().await, 3);
    // Working the queue lets the driver feed the rest, three at a time.
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(app.run_pending_jobs().await);
        app.tick_batches().await;
    }
    assert_eq!(made, [3, 3, 1, 0, 0]);
    let batch = get(&app, &format!("/v1/batches/{id}")).await;
    assert_eq!(batch["status"], "completed", "{batch}");
    assert_eq!(batch["request_counts"]["completed"], 7);
    assert_eq!(app.count_jobs().await, 7);
}

#[tokio::test]
async fn cancelling_closes_what_has_not_run_and_keeps_what_has() {
    let app = spawn_app_with(by_hand(2)).await;
    let file = upload_ok(&app, &lines(6)).await;
    let batch: Value = create(&app, &file).await.json().await.unwrap();
    let id = batch["id"].as_str().unwrap().to_string();
    // Two made, two queued, two never submitted.
    app.tick_batches().await;
    assert_eq!(app.run_pending_jobs().await, 2);
    app.tick_batches().await;
    assert_eq!(app.count_jobs().await, 4);
    let r = app
        .client
        .post(app.url(&format!("/v1/batches/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cancelling: Value = r.json().await.unwrap();
    assert_eq!(cancelling["status"], "cancelling");
    app.tick_batches().await;
    assert_eq!(
        app.run_pending_jobs().await,
        0,
        "the queued jobs were cancelled"
    );
    app.tick_batches().await;
    let batch = get(&app, &format!("/v1/batches/{id}")).await;
    assert_eq!(batch["status"], "cancelled", "{batch}");
    assert_eq!(batch["request_counts"]["completed"], 2, "{batch}");
    assert_eq!(batch["request_counts"]["failed"], 4, "{batch}");
    assert!(batch["cancelled_at"].is_i64() && batch["cancelling_at"].is_i64());
    let out = content(&app, batch["output_file_id"].as_str().unwrap()).await;
    let made: Vec<&str> = out
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(made, ["item-0", "item-1"]);
    let errors = content(&app, batch["error_file_id"].as_str().unwrap()).await;
    let closed: Vec<&str> = errors
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(closed, ["item-2", "item-3", "item-4", "item-5"]);
    // Queued jobs the cancel stopped and lines never submitted alike.
    for e in &errors {
        assert!(e["response"].is_null(), "{e}");
        assert_eq!(e["error"]["code"], "batch_cancelled", "{e}");
    }
    assert!(
        errors[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("queued or running")
    );
    // Cancelling again changes nothing.
    let again: Value = app
        .client
        .post(app.url(&format!("/v1/batches/{id}/cancel")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["status"], "cancelled");
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_lines_and_nothing_is_queued() {
    let app = spawn_app_with(|c| {
        fast(c);
        c.batches.max_requests = 4;
    })
    .await;
    let mut text = lines(2);
    text.push_str("{not json\n");
    text.push_str(&line("item-0", small_request("a duplicate id")));
    text.push('\n');
    let bad = upload_ok(&app, &text).await;
    let body = assert_error(create(&app, &bad).await, 400, "invalid_batch_input").await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("line 3:"), "{message}");
    assert!(
        message.contains("line 4:") && message.contains("custom_id"),
        "{message}"
    );
    assert_eq!(body["error"]["param"], "input_file_id");

    let cases = [
        (
            line("a", json!({"model": "no-such-model", "prompt": "x"})),
            "model",
        ),
        (
            line("a", json!({"model": MODEL, "prompt": "x", "size": "7x7"})),
            "size",
        ),
        (
            json!({"custom_id": "a", "method": "GET", "url": "/v1/images/generations", "body": {}})
                .to_string(),
            "method",
        ),
        (
            json!({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}})
                .to_string(),
            "url",
        ),
    ];
    for (text, what) in cases {
        let file = upload_ok(&app, &text).await;
        let body = assert_error(create(&app, &file).await, 400, "invalid_batch_input").await;
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("line 1:") && message.contains(what),
            "{what}: {message}"
        );
    }
    let empty = upload_ok(&app, "\n\n").await;
    assert_error(create(&app, &empty).await, 400, "empty_batch").await;
    let big = upload_ok(&app, &lines(5)).await;
    assert_error(create(&app, &big).await, 400, "batch_too_large").await;

    let ok = upload_ok(&app, &lines(1)).await;
    for (body, code) in [
        (
            json!({"input_file_id": ok, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            "unsupported_endpoint",
        ),
        (
            json!({"input_file_id": ok, "endpoint": "/v1/images/generations", "completion_window": "2d"}),
            "invalid_completion_window",
        ),
        (
            json!({"input_file_id": ok, "endpoint": "/v1/images/generations", "completion_window": "24h",
                   "metadata": {"k": "v".repeat(513)}}),
            "invalid_metadata",
        ),
    ] {
        let r = app
            .client
            .post(app.url("/v1/batches"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_error(r, 400, code).await;
    }
    let r = app
        .client
        .post(app.url("/v1/batches"))
        .json(&json!({"input_file_id": "file_nope", "endpoint": "/v1/images/generations", "completion_window": "24h"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "file_not_found").await;
    assert_error(
        upload(&app, "x", "fine-tune").await,
        400,
        "unsupported_purpose",
    )
    .await;
    let latin1 = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![0xff, 0xfe]).file_name("x.jsonl"),
        )
        .text("purpose", "batch");
    let r = app
        .client
        .post(app.url("/v1/files"))
        .multipart(latin1)
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "invalid_file").await;

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.count_rows("batches").await, 0);
    assert_eq!(app.count_rows("batch_items").await, 0);
    assert_eq!(app.count_jobs().await, 0);
}

#[tokio::test]
async fn an_upload_over_the_file_limit_is_refused() {
    let app = spawn_app_with(|c| c.batches.max_file_bytes = 4096).await;
    let r = upload(&app, &"x".repeat(10_000), "batch").await;
    assert_eq!(r.status(), 413);
    let ok = upload(&app, &lines(2), "batch").await;
    assert_eq!(ok.status(), 200);
}

/// Prices that make an image's cost depend only on its size (identical
/// requests cost the same), and the worker and driver off.
fn priced(c: &mut easel_config::Config) {
    by_hand(2)(c);
    c.metrics.price_per_device_second = 0.0;
    c.metrics.storage_price_per_gb_month = 1000.0;
}

/// Makes one image of `small_request(prompt)` (seed 7) so that the model
/// has a measured cost; that cost.
async fn warm_up(app: &TestApp, prompt: &str) -> f64 {
    let job: Value = app
        .client
        .post(app.url("/v1/jobs"))
        .json(&small_request(prompt))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    app.run_pending_jobs().await;
    let job = get(app, &format!("/v1/jobs/{}", job["id"].as_str().unwrap())).await;
    let image = get(
        app,
        &format!("/v1/images/{}", job["image_ids"][0].as_str().unwrap()),
    )
    .await;
    let cost = image["cost"].as_f64().unwrap();
    assert!(cost > 0.0, "{image}");
    cost
}

pub(crate) async fn create_with(app: &TestApp, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/batches"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Ticks the driver and works the queue until the batch is `status`.
pub(crate) async fn drive_until(app: &TestApp, id: &str, status: &str) -> Value {
    for _ in 0..60 {
        app.tick_batches().await;
        let batch = get(app, &format!("/v1/batches/{id}")).await;
        if batch["status"] == status {
            return batch;
        }
        app.run_pending_jobs().await;
    }
    panic!(
        "batch {id} never got {status}: {}",
        get(app, &format!("/v1/batches/{id}")).await
    );
}

#[tokio::test]
async fn a_template_expands_to_every_combination_and_runs_like_an_upload() {
    let app = spawn_app_with(|c| {
        by_hand(8)(c);
        c.batches.max_requests = 10;
    })
    .await;
    let mut body = small_request("unused");
    body.as_object_mut().unwrap().remove("prompt");
    let r = create_with(
        &app,
        json!({
            "template": {
                "prompt": "a {color} {object}",
                "variables": {"color": ["red", "blue"], "object": ["lamp", "cup", "hat"]},
                "body": body,
            },
            "metadata": {"campaign": "spring"},
        }),
    )
    .await;
    assert_eq!(r.status(), 200);
    let batch: Value = r.json().await.unwrap();
    assert_eq!(batch["request_counts"]["total"], 6);
    assert_eq!(batch["endpoint"], "/v1/images/generations");
    assert_eq!(batch["completion_window"], "24h");
    // The expansion is kept as the batch's input file.
    let input = app
        .client
        .get(app.url(&format!(
            "/v1/files/{}/content",
            batch["input_file_id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prompts: Vec<String> = input
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["body"]["prompt"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(prompts[0], "a red lamp");
    assert_eq!(prompts[5], "a blue hat");
    let id = batch["id"].as_str().unwrap();
    let done = drive_until(&app, id, "completed").await;
    assert_eq!(done["request_counts"]["completed"], 6);
    let results = content(&app, done["output_file_id"].as_str().unwrap()).await;
    let ids: Vec<&str> = results
        .iter()
        .map(|r| r["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["row-0", "row-1", "row-2", "row-3", "row-4", "row-5"]);

    // A placeholder without values, or values without a placeholder:
    // refused, nothing stored.
    let files_before = app.count_rows("files").await;
    for (template, code) in [
        (
            json!({"prompt": "a {colour} lamp", "variables": {"color": ["red"]}}),
            "unknown_variable",
        ),
        (
            json!({"prompt": "a lamp", "variables": {"color": ["red"]}}),
            "unused_variable",
        ),
        (
            json!({"prompt": "{a}{b}", "variables": {"a": ["1", "2", "3"], "b": ["1", "2", "3", "4", "5"]}}),
            "batch_too_large",
        ),
    ] {
        let r = create_with(&app, json!({"template": template})).await;
        assert_error(r, 400, code).await;
    }
    let r = create_with(
        &app,
        json!({"template": {"prompt": "x"}, "input_file_id": "file_x"}),
    )
    .await;
    assert_error(r, 400, "invalid_batch_source").await;
    assert_eq!(app.count_rows("files").await, files_before);
    assert_eq!(app.count_rows("batches").await, 1);
}

#[tokio::test]
async fn a_batch_is_estimated_from_the_models_recent_images() {
    let app = spawn_app_with(priced).await;
    let file = upload_ok(&app, &lines(4)).await;
    // Nothing made yet: no measure, said so.
    let batch: Value = create(&app, &file).await.json().await.unwrap();
    let estimate = &batch["estimate"];
    assert_eq!(estimate["requests"], 4);
    assert_eq!(estimate["images"], 4);
    assert!(estimate["cost"].is_null(), "{estimate}");
    assert!(
        estimate["basis"].as_str().unwrap().contains("no image"),
        "{estimate}"
    );
    let cost = warm_up(&app, "a lamp, variant 0").await;
    let batch: Value = create(&app, &file).await.json().await.unwrap();
    let estimate = &batch["estimate"];
    // The warm-up and the first batch's jobs: only the warm-up has an
    // image, so the mean is its cost.
    assert!(
        (estimate["cost"].as_f64().unwrap() - 4.0 * cost).abs() < 1e-9,
        "{estimate}"
    );
    assert!(estimate["eta_seconds"].as_f64().unwrap() >= 0.0);
    assert!(estimate["device_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(batch["spend"]["completed"], 0);
}

#[tokio::test]
async fn a_dry_run_stops_after_its_sample_and_approval_runs_the_rest() {
    let app = spawn_app_with(|c| by_hand(8)(c)).await;
    let file = upload_ok(&app, &lines(20)).await;
    for (percent, code) in [
        (0.0, "invalid_dry_run_percent"),
        (100.0, "invalid_dry_run_percent"),
    ] {
        let r = create_with(
            &app,
            json!({"input_file_id": file, "endpoint": "/v1/images/generations",
                   "completion_window": "24h", "dry_run_percent": percent}),
        )
        .await;
        assert_error(r, 400, code).await;
    }
    let r = create_with(
        &app,
        json!({"input_file_id": file, "endpoint": "/v1/images/generations",
               "completion_window": "24h", "dry_run_percent": 10}),
    )
    .await;
    let batch: Value = r.json().await.unwrap();
    let id = batch["id"].as_str().unwrap().to_string();
    assert_eq!(batch["dry_run_percent"], 10.0);
    let waiting = drive_until(&app, &id, "awaiting_approval").await;
    assert_eq!(app.count_jobs().await, 2, "only the 10 % sample ran");
    let sample = &waiting["dry_run"];
    assert_eq!(sample["requests"], 2, "{waiting}");
    assert_eq!(sample["completed"], 2, "{waiting}");
    assert!(sample["mean_quality_score"].is_f64(), "{waiting}");
    assert_eq!(sample["moderation_refused"], 0);
    // More passes change nothing until it is approved.
    app.tick_batches().await;
    assert_eq!(app.run_pending_jobs().await, 0);
    let r = app
        .client
        .post(app.url(&format!("/v1/batches/{id}/approve")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let approved: Value = r.json().await.unwrap();
    assert_eq!(approved["status"], "in_progress");
    assert!(approved["approved_at"].is_i64());
    let done = drive_until(&app, &id, "completed").await;
    assert_eq!(done["request_counts"]["completed"], 20);
    assert_eq!(app.count_jobs().await, 20);
    // Approving twice, or a batch without a dry run, is a conflict.
    let r = app
        .client
        .post(app.url(&format!("/v1/batches/{id}/approve")))
        .send()
        .await
        .unwrap();
    assert_error(r, 409, "batch_not_awaiting_approval").await;
}

#[tokio::test]
async fn a_cost_cap_pauses_exactly_at_the_cap_and_raising_it_resumes() {
    let app = spawn_app_with(priced).await;
    // Ten identical lines: each costs what the warm-up cost.
    let same: String = (0..10)
        .map(|i| line(&format!("same-{i}"), small_request("a lamp")) + "\n")
        .collect();
    let cost = warm_up(&app, "a lamp").await;
    let file = upload_ok(&app, &same).await;
    // A cap below the dry run's estimate is refused.
    let r = create_with(
        &app,
        json!({"input_file_id": file, "dry_run_percent": 50, "cost_cap": cost * 2.0}),
    )
    .await;
    assert_error(r, 400, "cap_below_estimate").await;
    let r = create_with(&app, json!({"input_file_id": file, "cost_cap": cost * 3.5})).await;
    let batch: Value = r.json().await.unwrap();
    let id = batch["id"].as_str().unwrap().to_string();
    let paused = drive_until(&app, &id, "paused_budget").await;
    assert_eq!(paused["request_counts"]["completed"], 3, "{paused}");
    let spent = paused["spend"]["cost"].as_f64().unwrap();
    assert!(spent <= cost * 3.5 && spent + cost > cost * 3.5, "{paused}");
    // Raising the cap resumes it, to the new cap.
    let patch = |cap: Value| {
        let app = &app;
        let id = id.clone();
        async move {
            app.client
                .patch(app.url(&format!("/v1/batches/{id}")))
                .json(&json!({"cost_cap": cap}))
                .send()
                .await
                .unwrap()
        }
    };
    let r = patch(json!(cost * 6.2)).await;
    assert_eq!(r.status(), 200);
    let resumed: Value = r.json().await.unwrap();
    assert_eq!(resumed["status"], "in_progress");
    let paused = drive_until(&app, &id, "paused_budget").await;
    assert_eq!(paused["request_counts"]["completed"], 6, "{paused}");
    assert_error(patch(json!(-1.0)).await, 400, "invalid_cost_cap").await;
    // No cap: it finishes.
    assert_eq!(patch(Value::Null).await.status(), 200);
    let done = drive_until(&app, &id, "completed").await;
    assert_eq!(done["request_counts"]["completed"], 10);
    assert_error(patch(json!(1.0)).await, 409, "batch_ended").await;
}
