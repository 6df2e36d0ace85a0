//! Models, probes, the OpenAPI document, auth, and shutdown.

use serde_json::Value;

use crate::helpers::{
    MODEL, assert_error, small_request, spawn_app, spawn_app_with, startup_error, test_config,
};

#[tokio::test]
async fn models_are_listed_in_openai_shape_with_easel_fields() {
    let app = spawn_app().await;
    let r = app.get("/v1/models").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "list");
    let m = &body["data"][0];
    assert_eq!(m["id"], MODEL);
    assert_eq!(m["object"], "model");
    assert_eq!(m["owned_by"], "easel");
    assert_eq!(m["state"], "ready");
    assert_eq!(m["default"], true);
    assert!(m["architecture"].is_string());
    assert!(m["content_hash"].as_str().unwrap().starts_with("blake3:"));
    assert!(m["defaults"]["size"].as_str().unwrap().contains('x'));
    assert!(m["defaults"]["steps"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn healthz_and_readyz_answer() {
    let app = spawn_app().await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn readyz_is_503_when_the_default_model_cannot_load() {
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join("model_index.json"), "{ not json").unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(data_dir.path());
    config.models[0].path = broken.path().to_path_buf();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = easel_server::Application::build(config, listener)
        .await
        .unwrap();
    let base = format!("http://{}", app.local_addr());
    let server = tokio::spawn(app.run(std::future::pending()));
    let client = reqwest::Client::new();
    // The server stays up and says why it is not ready.
    let mut last = None;
    for _ in 0..100 {
        let r = client.get(format!("{base}/readyz")).send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        if body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("failed")
        {
            last = Some((status, body));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, body) = last.expect("the model's failure is reported");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "not_ready");
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let models: Value = client
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["state"], "failed");
    assert!(models["data"][0]["error"].is_string());
    let r = client
        .post(format!("{base}/v1/images/generations"))
        .json(&small_request("x"))
        .send()
        .await
        .unwrap();
    assert_error(r, 503, "model_not_ready").await;
    server.abort();
}

#[tokio::test]
async fn the_openapi_document_parses_and_lists_every_route() {
    let app = spawn_app().await;
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/events",
        "/v1/images/{id}",
        "/v1/images/{id}/content",
        "/v1/files",
        "/v1/files/{id}",
        "/v1/files/{id}/content",
        "/v1/batches",
        "/v1/batches/{id}",
        "/v1/batches/{id}/cancel",
        "/v1/models",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(path), "missing {path}");
    }
    let docs = app.get("/docs/").await;
    assert_eq!(docs.status(), 200);
    assert!(
        docs.text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("swagger")
    );
}

#[tokio::test]
async fn with_api_keys_requests_need_a_valid_key() {
    let (key, entry) =
        easel_server::auth::create_key("tester", &[easel_server::auth::Scope::Generate]);
    #[derive(serde::Deserialize)]
    struct Wrapper {
        auth: easel_config::AuthConfig,
    }
    let auth = toml::from_str::<Wrapper>(&entry).unwrap().auth;
    let app = spawn_app_with(move |c| c.auth = auth).await;
    assert_error(app.get("/v1/models").await, 401, "missing_api_key").await;
    let r = app
        .client
        .get(app.url("/v1/models"))
        .bearer_auth("easel_sk_wrong")
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "invalid_api_key").await;
    let r = app
        .client
        .get(app.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Probes stay open.
    assert_eq!(app.get("/healthz").await.status(), 200);

    // Image bytes: by key, or by signed link without a key.
    let mut req = small_request("a key");
    req["response_format"] = serde_json::json!("url");
    let body: Value = app
        .client
        .post(app.url("/v1/images/generations"))
        .bearer_auth(&key)
        .json(&req)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = body["data"][0]["url"].as_str().unwrap();
    assert_eq!(app.get(url).await.status(), 200);
    let bare = url.split('?').next().unwrap();
    assert_error(app.get(bare).await, 401, "missing_api_key").await;
    let r = app.client.get(bare).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_public_address_without_keys_is_refused_at_startup() {
    let data_dir = tempfile::tempdir().unwrap();
    let config = test_config(data_dir.path());
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = easel_server::Application::build(config.clone(), listener)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("--insecure-no-auth"), "{err}");
    let mut config = config;
    config.auth.insecure_no_auth = true;
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    assert!(
        easel_server::Application::build(config, listener)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_missing_model_folder_names_the_flag_to_pass() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(data_dir.path());
    config.models[0].path = data_dir.path().join("no-such-model");
    let err = startup_error(config).await;
    assert!(err.contains("--model"), "{err}");
}

#[tokio::test]
async fn shutdown_stops_cleanly_and_keeps_queued_jobs() {
    let mut app = spawn_app_with(|c| c.worker.enabled = false).await;
    let job: Value = app
        .create_job(&small_request("later"), None)
        .await
        .json()
        .await
        .unwrap();
    let id: easel_core::JobId = job["id"].as_str().unwrap().parse().unwrap();
    let jobs = app.jobs.clone();
    let addr = app.addr;
    app.stop().await.expect("a clean exit");
    // No longer listening, and the queued job is still queued for the next start.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    assert!(!jobs.is_accepting());
    assert_eq!(
        jobs.get(id).await.unwrap().status,
        easel_core::JobStatus::Queued
    );
}
