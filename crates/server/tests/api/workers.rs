//! The worker registry through the admin API: a running worker registers
//! and heartbeats, an operator drains it (it then claims nothing, and the
//! request is audited), and bad requests get codes. On both backends.

use std::time::Duration;

use easel_server::auth::Scope;
use easel_store::{NewWorker, WorkerState};
use reqwest::Method;
use serde_json::Value;

use crate::helpers::{MODEL, TestApp, assert_error, small_request, spawn_app_with};

/// An app with keys `user` (generate) and `ops` (admin), its worker loop
/// running with the shortest lease (3 s: a heartbeat every 0.5 s).
async fn app_with_keys() -> (TestApp, String, String) {
    let (keys, auth) =
        crate::helpers::auth_with_keys(&[("user", &[Scope::Generate]), ("ops", &[Scope::Admin])]);
    let (user_key, admin_key) = (keys[0].clone(), keys[1].clone());
    let app = spawn_app_with(move |c| {
        c.auth = auth;
        c.worker.lease_seconds = 3;
    })
    .await;
    (app, user_key, admin_key)
}

async fn workers(app: &TestApp, key: &str) -> Vec<Value> {
    let r = app
        .send_with_key(Method::GET, "/v1/admin/workers", key)
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "list");
    body["data"].as_array().unwrap().clone()
}

/// Polls the registry until `check` holds for the app's worker.
async fn wait_for_worker(app: &TestApp, key: &str, check: impl Fn(&Value) -> bool) -> Value {
    let id = app.worker.id().to_string();
    for _ in 0..100 {
        if let Some(w) = workers(app, key).await.into_iter().find(|w| w["id"] == id)
            && check(&w)
        {
            return w;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "worker {id} never reached the state; registry: {:?}",
        workers(app, key).await
    );
}

#[tokio::test]
async fn a_running_worker_is_listed_with_its_host_models_and_heartbeat() {
    let (app, user_key, admin_key) = app_with_keys().await;
    app.wait_until_ready().await;
    let w = wait_for_worker(&app, &admin_key, |w| {
        w["models"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m == MODEL))
    })
    .await;
    assert_eq!(w["object"], "worker");
    assert_eq!(w["state"], "active", "{w}");
    assert_eq!(w["pid"], std::process::id());
    assert_eq!(w["drain_requested"], false);
    assert_eq!(w["open_circuits"], serde_json::json!([]));
    assert_eq!(w["heartbeat_every_seconds"], 0.5);
    assert!(w["heartbeat_age_seconds"].as_f64().unwrap() < 5.0, "{w}");
    assert!(!w["host"].as_str().unwrap().is_empty());

    // /readyz of an `all` process shows its worker.
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["worker"]["id"], app.worker.id());
    assert_eq!(ready["worker"]["state"], "active");

    // Only admins read the registry.
    let r = app
        .send_with_key(Method::GET, "/v1/admin/workers", &user_key)
        .await;
    assert_error(r, 403, "missing_scope").await;
}

#[tokio::test]
async fn a_drained_worker_claims_nothing_more_and_the_drain_is_audited() {
    let (app, _user_key, admin_key) = app_with_keys().await;
    app.wait_until_ready().await;
    let id = app.worker.id().to_string();
    wait_for_worker(&app, &admin_key, |_| true).await;

    let r = app
        .send_with_key(
            Method::POST,
            &format!("/v1/admin/workers/{id}/drain"),
            &admin_key,
        )
        .await;
    assert_eq!(r.status(), 202);
    let w: Value = r.json().await.unwrap();
    assert_eq!(w["drain_requested"], true);
    assert_eq!(w["state"], "draining");

    // The worker hears it at its next heartbeat and says so.
    wait_for_worker(&app, &admin_key, |w| w["state"] == "draining").await;
    for _ in 0..50 {
        if app.worker.is_draining() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(app.worker.is_draining());
    // An `all` process still takes requests while its worker drains.
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["worker"]["state"], "draining");

    // A job submitted now waits in the queue: nobody claims it.
    let r = app
        .client
        .post(app.url("/v1/jobs"))
        .bearer_auth(&admin_key)
        .json(&small_request("a lighthouse"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let path = format!("/v1/jobs/{}", job["id"].as_str().unwrap());
    let job: Value = app
        .send_with_key(Method::GET, &path, &admin_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(job["status"], "queued", "{job}");

    let audit: Value = app
        .send_with_key(
            Method::GET,
            "/v1/admin/audit?type=worker.drain_requested",
            &admin_key,
        )
        .await
        .json()
        .await
        .unwrap();
    let events = audit["data"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(events[0]["actor"], "ops");
    assert_eq!(events[0]["subject"], id.as_str());
}

#[tokio::test]
async fn unknown_and_stopped_workers_get_clear_errors() {
    let (app, _user_key, admin_key) = app_with_keys().await;
    let drain = |id: &str| {
        let path = format!("/v1/admin/workers/{id}/drain");
        let key = admin_key.clone();
        let app = &app;
        async move { app.send_with_key(Method::POST, &path, &key).await }
    };
    let body = assert_error(drain("nobody").await, 404, "worker_not_found").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nobody"),
        "{body}"
    );

    // A worker that stopped (as another process would have recorded it).
    let db = app.jobs.db();
    db.register_worker(&NewWorker {
        id: "gone-1-00000001".into(),
        host: "gone".into(),
        pid: 1,
        version: "0.0.0".into(),
        heartbeat_every: Duration::from_secs(10),
    })
    .await
    .unwrap();
    db.worker_stopped("gone-1-00000001").await.unwrap();
    assert_eq!(
        db.worker("gone-1-00000001").await.unwrap().state,
        WorkerState::Stopped
    );
    assert_error(drain("gone-1-00000001").await, 409, "worker_stopped").await;
    let listed = workers(&app, &admin_key).await;
    let gone = listed
        .iter()
        .find(|w| w["id"] == "gone-1-00000001")
        .unwrap();
    assert_eq!(gone["state"], "stopped");
    assert!(gone["stopped_at"].is_i64());
}

#[tokio::test]
async fn a_worker_that_shuts_down_shows_as_stopped() {
    let (mut app, _user_key, admin_key) = app_with_keys().await;
    app.wait_until_ready().await;
    wait_for_worker(&app, &admin_key, |_| true).await;
    let id = app.worker.id().to_string();
    let db = app.jobs.db().clone();
    app.stop().await.unwrap();
    let w = db.worker(&id).await.unwrap();
    assert_eq!(w.state, WorkerState::Stopped);
    assert!(w.running_jobs.is_empty());
}
