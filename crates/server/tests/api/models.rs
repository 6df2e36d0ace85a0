//! The warm model pool through the API: a corrupt model next to a good one,
//! admin load and unload, eviction within the memory budget, and the admin
//! scope.

use std::path::{Path, PathBuf};
use std::time::Duration;

use easel_config::ModelEntry;
use serde_json::{Value, json};

use crate::helpers::{MODEL, TestApp, assert_error, fixture_model, small_request, spawn_app_with};

/// Copies the fixture model folder to `dst`.
fn copy_model(dst: &Path) {
    fn copy(src: &Path, dst: &Path) {
        std::fs::create_dir_all(dst).unwrap();
        for entry in std::fs::read_dir(src).unwrap() {
            let entry = entry.unwrap();
            let to = dst.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &to);
            } else if entry.file_name() != ".easel-content-hash.json" {
                std::fs::copy(entry.path(), to).unwrap();
            }
        }
    }
    copy(&fixture_model(), dst);
}

/// A copy of the fixture model whose UNet weights are cut short.
fn corrupt_model(dst: &Path) -> PathBuf {
    copy_model(dst);
    let weights = dst.join("unet/diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..100]).unwrap();
    dst.to_path_buf()
}

async fn model(app: &TestApp, name: &str) -> Value {
    let r = app.get(&format!("/v1/models/{name}")).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Polls `GET /v1/models/{name}` until its state is `state`.
async fn wait_for_state(app: &TestApp, name: &str, state: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        last = model(app, name).await;
        if last["state"] == state {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("model {name} never became {state}: {last}");
}

async fn admin(app: &TestApp, name: &str, action: &str, key: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(&format!("/v1/admin/models/{name}/{action}")));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn a_corrupt_model_fails_alone_and_the_server_keeps_serving_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let broken = corrupt_model(&dir.path().join("broken"));
    let app = spawn_app_with(move |c| {
        c.models.push(ModelEntry {
            name: "broken".into(),
            path: broken,
        });
    })
    .await;
    let failed = wait_for_state(&app, "broken", "failed").await;
    assert_eq!(failed["error_code"], "corrupt_weights", "{failed}");

    assert_eq!(app.get("/healthz").await.status(), 200);
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 200);
    let ready: Value = r.json().await.unwrap();
    let listed = ready["models"].as_array().unwrap();
    let broken = listed.iter().find(|m| m["name"] == "broken").unwrap();
    assert_eq!(broken["state"], "failed");
    assert_eq!(broken["error_code"], "corrupt_weights");
    let good = listed.iter().find(|m| m["name"] == MODEL).unwrap();
    assert_eq!(good["state"], "ready");

    // The good model serves.
    let r = app.generate(&small_request("still serving")).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["data"][0]["b64_json"].is_string(), "{body}");

    // A request naming the broken model is refused with the reason, not a 500.
    let mut req = small_request("broken");
    req["model"] = json!("broken");
    let body = assert_error(app.generate(&req).await, 503, "model_not_ready").await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("corrupt_weights"), "{message}");
    assert_error(app.create_job(&req, None).await, 503, "model_not_ready").await;

    // And the process is still up.
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.generate(&small_request("again")).await.status(), 200);
}

#[tokio::test]
async fn an_admin_unload_then_load_changes_the_state_shown() {
    let app = spawn_app_with(|_| {}).await;
    let r = admin(&app, MODEL, "unload", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "unloaded");
    let list: Value = app.get("/v1/models").await.json().await.unwrap();
    assert_eq!(list["data"][0]["state"], "unloaded");
    // Its description is kept while unloaded.
    assert!(list["data"][0]["content_hash"].is_string(), "{list}");
    assert_error(app.get("/readyz").await, 503, "not_ready").await;

    let r = admin(&app, MODEL, "load", None).await;
    assert_eq!(r.status(), 202);
    let state = r.json::<Value>().await.unwrap()["state"].clone();
    assert!(state == "loading" || state == "ready", "{state}");
    let ready = wait_for_state(&app, MODEL, "ready").await;
    assert!(ready["memory_bytes"].as_u64().unwrap() > 0, "{ready}");
    assert!(ready["last_used_at"].as_i64().unwrap() > 0, "{ready}");
    assert_eq!(app.get("/readyz").await.status(), 200);

    assert_error(
        admin(&app, "nope", "load", None).await,
        404,
        "model_not_found",
    )
    .await;
    assert_error(
        admin(&app, "nope", "unload", None).await,
        404,
        "model_not_found",
    )
    .await;
    assert_error(app.get("/v1/models/nope").await, 404, "model_not_found").await;
}

#[tokio::test]
async fn a_budget_for_one_model_evicts_the_least_recently_used_one() {
    let dir = tempfile::tempdir().unwrap();
    let second = dir.path().join("second");
    copy_model(&second);
    let app = spawn_app_with(move |c| {
        c.models.push(ModelEntry {
            name: "second".into(),
            path: second,
        });
        // One copy of the fixture takes about 1.2 MiB in f32.
        c.pool.memory_budget_mb = 2;
        // Both load once, so both descriptions are known; the default
        // loads last and evicts `second`.
        c.pool.preload = Some(vec!["second".into(), MODEL.into()]);
    })
    .await;
    wait_for_state(&app, MODEL, "ready").await;
    let list: Value = app.get("/v1/models").await.json().await.unwrap();
    assert_eq!(list["memory_budget_bytes"], 2 * 1024 * 1024);
    let evicted = &list["data"][1];
    assert_eq!(evicted["id"], "second");
    assert_eq!(evicted["state"], "unloaded", "{list}");

    // Using `second` loads it, evicting the default (least recently used).
    let mut req = small_request("the other one");
    req["model"] = json!("second");
    let r = app.generate(&req).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let list: Value = app.get("/v1/models").await.json().await.unwrap();
    assert_eq!(list["data"][0]["id"], MODEL);
    assert_eq!(list["data"][0]["state"], "unloaded", "{list}");
    assert_eq!(list["data"][1]["state"], "ready", "{list}");
    let total: u64 = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "ready")
        .map(|m| m["memory_bytes"].as_u64().unwrap())
        .sum();
    assert!(total <= 2 * 1024 * 1024, "{list}");
}

#[tokio::test]
async fn admin_routes_need_the_admin_scope() {
    use easel_server::auth::Scope;
    let (keys, auth) =
        crate::helpers::auth_with_keys(&[("user", &[Scope::Generate]), ("ops", &[Scope::Admin])]);
    let (user_key, admin_key) = (keys[0].clone(), keys[1].clone());
    let app = spawn_app_with(move |c| c.auth = auth).await;
    assert_error(
        admin(&app, MODEL, "unload", None).await,
        401,
        "missing_api_key",
    )
    .await;
    assert_error(
        admin(&app, MODEL, "unload", Some(&user_key)).await,
        403,
        "missing_scope",
    )
    .await;
    assert_error(
        admin(&app, MODEL, "load", Some(&user_key)).await,
        403,
        "missing_scope",
    )
    .await;
    let r = admin(&app, MODEL, "unload", Some(&admin_key)).await;
    assert_eq!(r.status(), 200);
    let r = admin(&app, MODEL, "load", Some(&admin_key)).await;
    assert_eq!(r.status(), 202);
}
