//! The roles on one shared database: an `api` process that loads no model
//! and a `worker` process that serves no API, as two applications on one
//! PostgreSQL database. They share nothing but the database and the object
//! store: the request, the progress events and the image cross between
//! them through those alone. Runs only when the suite runs on PostgreSQL
//! (`EASEL_TEST_DATABASE_URL`); the roles refuse SQLite.

use std::time::Duration;

use easel_config::{Role, Secret};
use easel_server::Application;
use serde_json::{Value, json};

use crate::helpers::{parse_sse, small_request, test_config};

/// A built application of `role` on `data_dir`'s backend, serving in the
/// background; returns its base URL, its worker and the server task.
async fn start(
    data_dir: &std::path::Path,
    role: Role,
) -> (
    String,
    Option<easel_jobs::Worker>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let mut config = test_config(data_dir);
    config.role = role;
    // The replicas of a fleet share their secrets.
    config.urls.signing_key = Some(Secret::new("fleet-test-signing-key"));
    config.provenance.server_tag = Some(0x4242);
    config.provenance.c2pa = false;
    // The test steps the worker by hand, so it knows when jobs run.
    config.worker.enabled = false;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = Application::build(config, listener)
        .await
        .unwrap_or_else(|e| panic!("the {role} process builds: {e:#}"));
    let base = format!("http://{}", app.local_addr());
    let worker = app.worker();
    let server = tokio::spawn(app.run(std::future::pending()));
    (base, worker, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_replica_answers_with_images_and_events_of_a_worker_process() {
    if std::env::var("EASEL_TEST_DATABASE_URL").is_err() {
        eprintln!("skipped: the roles need PostgreSQL (EASEL_TEST_DATABASE_URL)");
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let (worker_base, worker, worker_server) = start(data_dir.path(), Role::Worker).await;
    let worker = worker.expect("a worker process has a worker");
    let (api_base, api_worker, api_server) = start(data_dir.path(), Role::Api).await;
    assert!(api_worker.is_none(), "an api process runs no worker");
    let client = reqwest::Client::new();

    // The worker serves probes and metrics, and no API.
    let r = client
        .post(format!("{worker_base}/v1/images/generations"))
        .json(&small_request("a fox"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "route_not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("worker role"),
        "{body}"
    );
    let r = client
        .get(format!("{worker_base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The api process is ready once a worker has described the default
    // model in the catalog (it loads none itself).
    let mut ready = false;
    for _ in 0..300 {
        let r = client
            .get(format!("{api_base}/readyz"))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the api process became ready from the catalog");

    // A synchronous request on the api process gets the image the worker
    // process made.
    let mut req = small_request("a red apple");
    req["response_format"] = json!("b64_json");
    let call = {
        let (client, url) = (client.clone(), format!("{api_base}/v1/images/generations"));
        tokio::spawn(async move { client.post(url).json(&req).send().await.unwrap() })
    };
    let mut ran = 0;
    for _ in 0..300 {
        ran += worker.run_pending().await.unwrap();
        if ran > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ran, 1, "the worker process ran the api process's job");
    let r = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the synchronous request was answered")
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let b64 = body["data"][0]["b64_json"].as_str().unwrap();
    assert!(!b64.is_empty());

    // An SSE watcher on the api process sees every event of a job that the
    // worker process runs.
    let mut req = small_request("a fox");
    req["steps"] = json!(4);
    let job: Value = client
        .post(format!("{api_base}/v1/jobs"))
        .json(&req)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    let watcher = {
        let url = format!("{api_base}/v1/jobs/{id}/events");
        tokio::spawn(
            async move { parse_sse(&reqwest::get(url).await.unwrap().text().await.unwrap()) },
        )
    };
    // Let the watcher subscribe before the job runs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(worker.run_pending().await.unwrap(), 1);
    let events = tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .expect("the stream ended with the job")
        .unwrap();
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
        ],
        "{events:?}"
    );
    let steps: Vec<u64> = events
        .iter()
        .filter(|(n, _)| n == "progress")
        .map(|(_, d)| d["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [1, 2, 3, 4]);

    worker_server.abort();
    api_server.abort();
}

#[tokio::test]
async fn a_role_without_a_shared_database_or_secrets_is_refused_naming_the_keys() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(data_dir.path());
    config.role = Role::Api;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = match Application::build(config, listener).await {
        Ok(_) => panic!("an api process without a shared database or secrets started"),
        Err(e) => format!("{e:#}"),
    };
    if std::env::var("EASEL_TEST_DATABASE_URL").is_err() {
        assert!(err.contains("database.url"), "{err}");
    } else {
        assert!(err.contains("urls.signing_key"), "{err}");
        assert!(err.contains("provenance.server_tag"), "{err}");
    }
}
