//! Backpressure and deadlines: bounded queues per tier answering 429 with
//! `Retry-After`, idempotent retries while full, `X-Easel-Timeout`.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{TestApp, assert_error, small_request, spawn_app_with, spawn_app_with_clock};

/// The `Retry-After` header of a response, as whole seconds.
fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()
        .get("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After in {:?}", r.headers()))
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is whole seconds")
}

async fn job_json(app: &TestApp, id: &str) -> Value {
    app.get_job(id).await.json().await.unwrap()
}

/// `POST /v1/jobs` with an `X-Easel-Timeout` header.
async fn create_job_with_timeout(app: &TestApp, body: &Value, timeout: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/jobs"))
        .header("X-Easel-Timeout", timeout)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_full_batch_queue_answers_429_with_retry_after_and_loses_nothing_accepted() {
    let app = spawn_app_with(|c| {
        c.worker.enabled = false;
        c.queue.max_queued_batch = 3;
    })
    .await;
    let mut accepted = Vec::new();
    for i in 0..3 {
        let r = app
            .create_job(&small_request(&format!("fox {i}")), None)
            .await;
        assert_eq!(r.status(), 202);
        let job: Value = r.json().await.unwrap();
        accepted.push(job["id"].as_str().unwrap().to_string());
    }

    let r = app.create_job(&small_request("one too many"), None).await;
    let seconds = retry_after(&r);
    assert!((1..=300).contains(&seconds), "Retry-After {seconds}");
    let body = assert_error(r, 429, "queue_full").await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("batch") && message.contains("limit 3"),
        "{message}"
    );
    assert_eq!(app.count_jobs().await, 3, "the refused job was not stored");

    // The queue drains: every accepted job completes, each image stored once.
    assert_eq!(app.run_pending_jobs().await, 3);
    for id in &accepted {
        assert_eq!(job_json(&app, id).await["status"], "succeeded", "{id}");
    }
    assert_eq!(app.count_images().await, 3);
    // And there is room again.
    let r = app
        .create_job(&small_request("after the drain"), None)
        .await;
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn a_burst_of_concurrent_submissions_never_overshoots_the_limit() {
    let app = spawn_app_with(|c| {
        c.worker.enabled = false;
        c.queue.max_queued_batch = 5;
    })
    .await;
    let calls = (0..20).map(|i| {
        let (client, url) = (app.client.clone(), app.url("/v1/jobs"));
        let body = small_request(&format!("burst {i}"));
        tokio::spawn(async move { client.post(url).json(&body).send().await.unwrap() })
    });
    let mut accepted = Vec::new();
    let mut refused = 0;
    for call in calls.collect::<Vec<_>>() {
        let r = call.await.unwrap();
        match r.status().as_u16() {
            202 => {
                let job: Value = r.json().await.unwrap();
                accepted.push(job["id"].as_str().unwrap().to_string());
            }
            429 => {
                assert!((1..=300).contains(&retry_after(&r)));
                refused += 1;
            }
            other => panic!("unexpected status {other}: {}", r.text().await.unwrap()),
        }
    }
    assert_eq!((accepted.len(), refused), (5, 15));
    assert_eq!(app.count_jobs().await, 5);

    assert_eq!(app.run_pending_jobs().await, 5);
    for id in &accepted {
        assert_eq!(job_json(&app, id).await["status"], "succeeded", "{id}");
    }
    assert_eq!(app.count_images().await, 5);
}

#[tokio::test]
async fn retry_after_follows_the_measured_drain_rate() {
    let app = spawn_app_with(|c| {
        c.worker.enabled = false;
        c.queue.max_queued_batch = 1;
        c.queue.assumed_job_seconds = 30.0;
    })
    .await;
    assert_eq!(
        app.create_job(&small_request("fills it"), None)
            .await
            .status(),
        202
    );
    // No job has finished yet: one job ahead at the assumed 30 s per job.
    let r = app.create_job(&small_request("refused"), None).await;
    assert_eq!((r.status().as_u16(), retry_after(&r)), (429, 30));

    // The worker reports a fast drain: 10 jobs in about a tenth of a second.
    app.jobs.bus().record_completions(1);
    // A tenth of a second on tokio's paused clock, not a real sleep.
    tokio::time::pause();
    tokio::time::advance(Duration::from_millis(100)).await;
    tokio::time::resume();
    app.jobs.bus().record_completions(10);
    let r = app.create_job(&small_request("refused"), None).await;
    assert_eq!((r.status().as_u16(), retry_after(&r)), (429, 1));
}

#[tokio::test]
async fn a_full_realtime_queue_refuses_synchronous_requests() {
    let app = spawn_app_with(|c| {
        c.worker.enabled = false;
        c.queue.max_queued_realtime = 1;
    })
    .await;
    // The first synchronous request waits in the queue (no worker runs).
    let (client, url) = (app.client.clone(), app.url("/v1/images/generations"));
    let first = tokio::spawn(async move {
        client
            .post(url)
            .json(&small_request("waiting"))
            .send()
            .await
    });
    let mut id = None;
    for _ in 0..500 {
        let page: Value = app.list_jobs("status=queued").await.json().await.unwrap();
        if let Some(found) = page["data"][0]["id"].as_str() {
            id = Some(found.to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let id = id.expect("the first request's job is queued");

    let r = app.generate(&small_request("no room")).await;
    assert!((1..=300).contains(&retry_after(&r)));
    let body = assert_error(r, 429, "queue_full").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("realtime"),
        "{body}"
    );
    // The batch tier has its own limit.
    assert_eq!(
        app.create_job(&small_request("batch"), None).await.status(),
        202
    );

    // The waiting client leaves: its queued job is cancelled, not run.
    first.abort();
    for _ in 0..500 {
        if job_json(&app, &id).await["status"] == "cancelled" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the abandoned queued job was not cancelled");
}

#[tokio::test]
async fn an_idempotent_retry_is_answered_while_the_queue_is_full() {
    let app = spawn_app_with(|c| {
        c.worker.enabled = false;
        c.queue.max_queued_batch = 1;
    })
    .await;
    let first: Value = app
        .create_job(&small_request("a fox"), Some("full-retry"))
        .await
        .json()
        .await
        .unwrap();
    assert_error(
        app.create_job(&small_request("another"), None).await,
        429,
        "queue_full",
    )
    .await;
    let r = app
        .create_job(&small_request("a fox"), Some("full-retry"))
        .await;
    assert_eq!(r.status(), 202);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(app.count_jobs().await, 1);
}

#[tokio::test]
async fn concurrent_retries_with_one_idempotency_key_create_one_job() {
    let app = spawn_app_with(|c| c.worker.enabled = false).await;
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url("/v1/jobs"));
            tokio::spawn(async move {
                client
                    .post(url)
                    .header("Idempotency-Key", "same-key")
                    .json(&small_request("a fox"))
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for call in calls {
        let r = call.await.unwrap();
        assert_eq!(r.status(), 202);
        let job: Value = r.json().await.unwrap();
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(app.count_jobs().await, 1);
}

#[tokio::test]
async fn a_job_still_queued_at_its_deadline_fails_and_never_runs() {
    let clock = easel_core::ManualClock::starting_now();
    let app = spawn_app_with_clock(|c| c.worker.enabled = false, clock.shared()).await;
    let r = create_job_with_timeout(&app, &small_request("too late"), "60").await;
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    let deadline = job["deadline_at"].as_i64().expect("deadline_at is set");
    assert_eq!(deadline, job["created_at"].as_i64().unwrap() + 60, "{job}");
    // A job without a deadline, queued behind it, still runs.
    let patient: Value = app
        .create_job(&small_request("patient"), None)
        .await
        .json()
        .await
        .unwrap();
    assert!(patient["deadline_at"].is_null(), "{patient}");

    // Past the deadline by the application's clock; no real time passes.
    clock.advance(Duration::from_secs(61));
    assert_eq!(app.run_pending_jobs().await, 1, "only the patient job runs");
    let late = job_json(&app, &id).await;
    assert_eq!(late["status"], "failed", "{late}");
    assert_eq!(late["error"]["code"], "deadline_exceeded", "{late}");
    assert_eq!(late["started_at"], Value::Null, "never started: {late}");
    let patient = job_json(&app, patient["id"].as_str().unwrap()).await;
    assert_eq!(patient["status"], "succeeded");
    assert_eq!(app.count_images().await, 1);
    let events = app.job_events(&id).await;
    assert_eq!(events.last().unwrap().0, "failed", "{events:?}");
}

#[tokio::test]
async fn a_synchronous_request_past_its_deadline_is_504_and_its_job_is_not_run() {
    let app = spawn_app_with(|c| c.worker.enabled = false).await;
    let r = app
        .client
        .post(app.url("/v1/images/generations"))
        .header("X-Easel-Timeout", "1")
        .json(&small_request("in a hurry"))
        .send()
        .await
        .unwrap();
    assert_error(r, 504, "deadline_exceeded").await;
    let page: Value = app.list_jobs("").await.json().await.unwrap();
    let job = &page["data"][0];
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "deadline_exceeded", "{job}");
    assert_eq!(app.run_pending_jobs().await, 0);
}

#[tokio::test]
async fn a_bad_timeout_is_400_naming_the_header_and_the_limit() {
    let app = spawn_app_with(|c| {
        c.worker.enabled = false;
        c.queue.max_timeout_seconds = 600;
    })
    .await;
    for bad in ["0", "-5", "abc", "1.5", "601", ""] {
        let r = create_job_with_timeout(&app, &small_request("x"), bad).await;
        let body = assert_error(r, 400, "invalid_timeout").await;
        assert_eq!(body["error"]["param"], "X-Easel-Timeout", "{bad}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("600"),
            "{body}"
        );
        let r = app
            .client
            .post(app.url("/v1/images/generations"))
            .header("X-Easel-Timeout", bad)
            .json(&small_request("x"))
            .send()
            .await
            .unwrap();
        assert_error(r, 400, "invalid_timeout").await;
    }
    assert_eq!(app.count_jobs().await, 0);
    // The largest allowed value is taken.
    let r = create_job_with_timeout(&app, &small_request("x"), "600").await;
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn the_openapi_document_describes_the_timeout_header_and_the_429() {
    let app = spawn_app_with(|c| c.worker.enabled = false).await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    for (path, method) in [("/v1/jobs", "post"), ("/v1/images/generations", "post")] {
        let op = &doc["paths"][path][method];
        let params = op["parameters"].as_array().unwrap();
        assert!(
            params
                .iter()
                .any(|p| p["name"] == "X-Easel-Timeout" && p["in"] == "header"),
            "{path}: {params:?}"
        );
        let too_many = &op["responses"]["429"];
        assert!(
            too_many["headers"]["Retry-After"].is_object(),
            "{path}: {too_many}"
        );
    }
}
