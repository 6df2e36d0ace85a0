//! The native job routes: create, read, list with pagination, cancel, SSE.

use serde_json::{Value, json};

use crate::helpers::{assert_error, small_request, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_job_is_stored_and_queued_before_the_202() {
    let app = spawn_app_with(|c| c.worker.enabled = false).await;
    let r = app.create_job(&small_request("a fox"), None).await;
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["status"], "queued");
    assert_eq!(job["tier"], "batch");
    assert!(job["id"].as_str().unwrap().starts_with("job_"));
    assert_eq!(app.count_jobs().await, 1);

    assert_eq!(app.run_pending_jobs().await, 1);
    let done: Value = app
        .get_job(job["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["image_ids"].as_array().unwrap().len(), 1);
    assert_eq!(app.count_images().await, 1);
}

#[tokio::test]
async fn an_idempotency_key_retry_returns_the_same_job() {
    let app = spawn_app_with(|c| c.worker.enabled = false).await;
    let first: Value = app
        .create_job(&small_request("a fox"), Some("retry-1"))
        .await
        .json()
        .await
        .unwrap();
    let second: Value = app
        .create_job(&small_request("a fox"), Some("retry-1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["id"], second["id"]);
    assert_eq!(app.count_jobs().await, 1);
}

#[tokio::test]
async fn jobs_are_listed_newest_first_a_page_at_a_time() {
    let app = spawn_app_with(|c| c.worker.enabled = false).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let job: Value = app
            .create_job(&small_request(&format!("job {i}")), None)
            .await
            .json()
            .await
            .unwrap();
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=2&cursor={c}"),
            None => "limit=2".into(),
        };
        let page: Value = app.list_jobs(&query).await.json().await.unwrap();
        assert_eq!(page["object"], "list");
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|j| j["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(page["has_more"], true);
                cursor = Some(c.to_string());
            }
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);

    // Filter by status.
    app.cancel_job(&ids[0]).await;
    let cancelled: Value = app
        .list_jobs("status=cancelled")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled["data"].as_array().unwrap().len(), 1);
    let queued: Value = app.list_jobs("status=queued").await.json().await.unwrap();
    assert_eq!(queued["data"].as_array().unwrap().len(), 4);
    assert_error(app.list_jobs("status=done").await, 400, "invalid_status").await;
    assert_error(app.list_jobs("limit=0").await, 400, "invalid_limit").await;
}

#[tokio::test]
async fn cancelling_a_queued_job_cancels_it_at_once() {
    let app = spawn_app_with(|c| c.worker.enabled = false).await;
    let job: Value = app
        .create_job(&small_request("a fox"), None)
        .await
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap();
    let r = app.cancel_job(id).await;
    assert_eq!(r.status(), 200);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["status"], "cancelled");
    assert_eq!(
        app.run_pending_jobs().await,
        0,
        "a cancelled job never runs"
    );
    assert_eq!(app.count_images().await, 0);
    let events = app.job_events(id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "cancelled");
}

#[tokio::test]
async fn cancelling_a_running_job_stops_it_between_steps() {
    let app = spawn_app().await;
    let mut req = small_request("a long job");
    req["steps"] = json!(150);
    req["n"] = json!(4);
    let job: Value = app.create_job(&req, None).await.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    // Wait until it runs.
    for _ in 0..200 {
        let j: Value = app.get_job(&id).await.json().await.unwrap();
        if j["status"] == "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let r = app.cancel_job(&id).await;
    assert_eq!(r.status(), 200);
    let j: Value = r.json().await.unwrap();
    // Either it stopped at a step, or it finished just before the cancel.
    assert!(
        j["status"] == "cancelled" || j["status"] == "succeeded",
        "{j}"
    );
    if j["status"] == "cancelled" {
        assert_eq!(app.count_images().await, 0, "nothing stored half-way");
    }
}

#[tokio::test]
async fn the_event_stream_reports_each_step_in_order() {
    let app = spawn_app_with(|c| c.worker.enabled = false).await;
    let mut req = small_request("a fox");
    req["steps"] = json!(3);
    let job: Value = app.create_job(&req, None).await.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    let watcher = {
        let base = app.base.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let r = reqwest::get(format!("{base}/v1/jobs/{id}/events"))
                .await
                .unwrap();
            crate::helpers::parse_sse(&r.text().await.unwrap())
        })
    };
    // Let the watcher subscribe before the job runs.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    app.run_pending_jobs().await;
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
            "completed"
        ]
    );
    let steps: Vec<(u64, u64)> = events
        .iter()
        .filter(|(n, _)| n == "progress")
        .map(|(_, d)| (d["step"].as_u64().unwrap(), d["total"].as_u64().unwrap()))
        .collect();
    assert_eq!(steps, [(1, 3), (2, 3), (3, 3)]);
    let completed = &events.last().unwrap().1;
    assert_eq!(completed["type"], "completed");
    assert_eq!(completed["image_ids"].as_array().unwrap().len(), 1);

    // A late watcher gets the final state at once.
    let late = app.job_events(&id).await;
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].0, "completed");
}

#[tokio::test]
async fn unknown_and_malformed_job_ids_are_not_found() {
    let app = spawn_app().await;
    let unknown = format!("job_{}", "0".repeat(32));
    assert_error(app.get_job(&unknown).await, 404, "job_not_found").await;
    assert_error(app.get_job("nonsense").await, 404, "job_not_found").await;
    assert_error(app.cancel_job(&unknown).await, 404, "job_not_found").await;
    let r = app.get(&format!("/v1/jobs/{unknown}/events")).await;
    assert_error(r, 404, "job_not_found").await;
}

#[tokio::test]
async fn a_job_left_running_by_a_crash_is_requeued_and_finished_once_after_a_restart() {
    let app = spawn_app_with(|c| c.worker.enabled = false).await;
    let job: Value = app
        .create_job(&small_request("a fox"), None)
        .await
        .json()
        .await
        .unwrap();
    // Simulate a crash mid-job: the row is claimed and never finished. On
    // SQLite the restart puts it back at once (the process owned every
    // running job); on a shared database other workers' jobs are alive, so
    // it goes back when the dead worker's lease has run out.
    let claimed = app
        .jobs
        .db()
        .claim_next_queued("crashed-worker", std::time::Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id.to_string(), job["id"].as_str().unwrap());
    // A new server on the same data folder recovers and finishes it.
    let config = crate::helpers::test_config(app.data_dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second = easel_server::Application::build(config, listener)
        .await
        .unwrap();
    let jobs = second.jobs();
    let server = tokio::spawn(second.run(std::future::pending()));
    let done = tokio::time::timeout(std::time::Duration::from_secs(120), jobs.wait(claimed.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, easel_core::JobStatus::Succeeded);
    assert_eq!(done.attempts, 2);
    assert_eq!(app.count_images().await, 1, "each image stored once");
    server.abort();
}

#[tokio::test]
async fn a_synchronous_client_that_disconnects_cancels_its_job() {
    let app = spawn_app().await;
    let mut req = small_request("an abandoned request");
    req["steps"] = json!(150);
    req["n"] = json!(10);
    let (client, url) = (app.client.clone(), app.url("/v1/images/generations"));
    let call = tokio::spawn(async move { client.post(url).json(&req).send().await });
    let mut running = None;
    for _ in 0..1000 {
        let page: Value = app.list_jobs("status=running").await.json().await.unwrap();
        if let Some(id) = page["data"][0]["id"].as_str() {
            running = Some(id.to_string());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let id = running.expect("the synchronous job starts running");
    // The client goes away: its connection closes.
    call.abort();
    for _ in 0..1000 {
        let job: Value = app.get_job(&id).await.json().await.unwrap();
        match job["status"].as_str().unwrap() {
            "cancelled" => {
                assert_eq!(app.count_images().await, 0, "nothing stored half-way");
                return;
            }
            "succeeded" => panic!("the job finished before the disconnect was noticed"),
            _ => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
    panic!("the abandoned job was not cancelled");
}
