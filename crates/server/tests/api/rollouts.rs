//! Model versions and guarded rollouts through the API: registering
//! versions, every refused rollout changing nothing, a candidate with
//! identical weights promoted and then served, a failing candidate rolled
//! back with no request failing, and the bundled model with noise in its
//! weights rolled back on quality.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    MODEL, TestApp, assert_error, fixture_model, model_variant, noisy_bundled, small_request,
    spawn_app_with,
};

use crate::helpers::UNET;

async fn send(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = reqwest::Client::new().request(method, app.url(path));
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

async fn json_of(r: reqwest::Response, status: u16) -> Value {
    let got = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(got, status, "{body}");
    body
}

/// The model's versions, once the configured folder's has been recorded
/// (its load writes it in the background).
async fn versions(app: &TestApp, model: &str) -> Value {
    for _ in 0..100 {
        let body = json_of(
            send(app, Method::GET, &format!("/v1/models/{model}"), None).await,
            200,
        )
        .await;
        if body["versions"].as_array().is_some_and(|v| !v.is_empty()) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the configured version of `{model}` was never recorded");
}

async fn register(app: &TestApp, model: &str, path: &Path) -> String {
    let r = send(
        app,
        Method::POST,
        &format!("/v1/admin/models/{model}/versions"),
        Some(json!({"path": path.display().to_string()})),
    )
    .await;
    let body = json_of(r, 201).await;
    body["version"].as_str().unwrap().to_string()
}

async fn rollout(app: &TestApp, id: &str) -> Value {
    json_of(
        send(app, Method::GET, &format!("/v1/admin/rollouts/{id}"), None).await,
        200,
    )
    .await
}

/// The rollback of rollout `id` of `model` is in the audit log and the
/// metrics; returns the metrics text.
async fn assert_rollback_recorded(app: &TestApp, id: &str, model: &str) -> String {
    let path = "/v1/admin/audit?type=rollout.rolled_back";
    let audit = json_of(send(app, Method::GET, path, None).await, 200).await;
    assert_eq!(audit["data"][0]["subject"], id, "{audit}");
    let metrics = send(app, Method::GET, "/metrics", None)
        .await
        .text()
        .await
        .unwrap();
    let series =
        format!("easel_rollout_events_total{{model=\"{model}\",outcome=\"rolled_back\"}} 1");
    assert!(metrics.contains(&series), "{metrics}");
    metrics
}

/// Starts a rollout; its id.
async fn start_rollout(app: &TestApp, body: Value) -> String {
    let r = send(app, Method::POST, "/v1/admin/rollouts", Some(body)).await;
    json_of(r, 201).await["id"].as_str().unwrap().to_string()
}

/// Generates one image as caller `user`; the job's record.
async fn generate_as(app: &TestApp, request: &Value, user: &str) -> Value {
    let mut body = request.clone();
    body["user"] = json!(user);
    body["response_format"] = json!("b64_json");
    let r = app.generate(&body).await;
    let status = r.status().as_u16();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        status, 200,
        "a user request failed during a rollout: {answer}"
    );
    let id = answer["data"][0]["id"].as_str().unwrap();
    app.get_image(id).await.json().await.unwrap()
}

#[tokio::test]
async fn versions_are_registered_checked_and_listed() {
    let app = spawn_app_with(|_| {}).await;
    let model = versions(&app, MODEL).await;
    let configured = model["version"].as_str().unwrap().to_string();
    assert!(configured.starts_with("blake3:"), "{model}");
    assert_eq!(model["content_hash"], configured.as_str());
    let listed = &model["versions"][0];
    assert_eq!(listed["version"], configured.as_str());
    assert_eq!(
        (
            listed["serving"].as_bool(),
            listed["registered_by"].as_str()
        ),
        (Some(true), Some("server"))
    );

    // A copy with new metadata: a new version, registered once.
    let copy = model_variant(&fixture_model(), UNET, "copy", |_, _| {});
    let version = register(&app, MODEL, copy.path()).await;
    assert_ne!(version, configured);
    let again = send(
        &app,
        Method::POST,
        &format!("/v1/admin/models/{MODEL}/versions"),
        Some(json!({"path": copy.path().display().to_string()})),
    )
    .await;
    assert_eq!(json_of(again, 200).await["version"], version.as_str());
    let model = versions(&app, MODEL).await;
    let listed: Vec<(&str, bool)> = model["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap(),
                v["serving"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [(configured.as_str(), true), (version.as_str(), false)]
    );

    // A folder the engine cannot serve, and a model that does not exist.
    let r = send(
        &app,
        Method::POST,
        &format!("/v1/admin/models/{MODEL}/versions"),
        Some(json!({"path": "/nonexistent/model"})),
    )
    .await;
    let body = assert_error(r, 400, "invalid_model_folder").await;
    assert_eq!(body["error"]["param"], "path");
    let r = send(
        &app,
        Method::POST,
        "/v1/admin/models/nope/versions",
        Some(json!({"path": copy.path().display().to_string()})),
    )
    .await;
    assert_error(r, 404, "model_not_found").await;
    let r = send(
        &app,
        Method::POST,
        &format!("/v1/admin/models/{MODEL}/versions"),
        Some(json!({"path": "x", "extra": 1})),
    )
    .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_refused_rollout_changes_nothing() {
    let app = spawn_app_with(|_| {}).await;
    let configured = versions(&app, MODEL).await["version"]
        .as_str()
        .unwrap()
        .to_string();
    let copy = model_variant(&fixture_model(), UNET, "copy", |_, _| {});
    let candidate = register(&app, MODEL, copy.path()).await;
    let start = |patch: Value| {
        let mut body = json!({
            "model": MODEL, "candidate": candidate, "mode": "canary", "percent": 20,
            "guards": {"min_requests": 20},
        });
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        (
            start(json!({"percent": 150})),
            400,
            "invalid_percent",
            "percent",
        ),
        (
            start(json!({"percent": -1})),
            400,
            "invalid_percent",
            "percent",
        ),
        (
            start(json!({"percent": 0})),
            400,
            "invalid_percent",
            "percent",
        ),
        (
            start(json!({"guards": {}})),
            400,
            "invalid_guard",
            "guards.min_requests",
        ),
        (
            start(json!({"guards": {"min_requests": 3}})),
            400,
            "invalid_guard",
            "guards.min_requests",
        ),
        (
            start(json!({"guards": {"min_requests": 20, "alpha": 0.9}})),
            400,
            "invalid_guard",
            "guards.alpha",
        ),
        (
            start(json!({"candidate": "blake3:0000"})),
            404,
            "version_not_found",
            "candidate",
        ),
        (
            start(json!({"candidate": configured})),
            400,
            "candidate_is_baseline",
            "candidate",
        ),
        (
            start(json!({"model": "nope"})),
            404,
            "model_not_found",
            "model",
        ),
    ];
    for (body, status, code, param) in cases {
        let r = send(&app, Method::POST, "/v1/admin/rollouts", Some(body.clone())).await;
        let error = assert_error(r, status, code).await;
        assert_eq!(error["error"]["param"], param, "{body}: {error}");
    }
    // An unknown field or mode is refused, not ignored.
    for bad in [json!({"percnt": 5}), json!({"mode": "blue"})] {
        let r = send(
            &app,
            Method::POST,
            "/v1/admin/rollouts",
            Some(start(bad.clone())),
        )
        .await;
        assert_eq!(r.status(), 400, "{bad}");
    }

    // A registered candidate whose folder no longer loads (its weights
    // changed since registration).
    let broken = model_variant(&fixture_model(), UNET, "broken", |_, _| {});
    let broken_version = register(&app, MODEL, broken.path()).await;
    let unet = broken.path().join(UNET);
    let mut bytes = std::fs::read(&unet).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&unet, bytes).unwrap();
    let r = send(
        &app,
        Method::POST,
        "/v1/admin/rollouts",
        Some(start(json!({"candidate": broken_version}))),
    )
    .await;
    let error = assert_error(r, 400, "candidate_load_failed").await;
    assert_eq!(error["error"]["param"], "candidate");

    let list = json_of(
        send(&app, Method::GET, "/v1/admin/rollouts", None).await,
        200,
    )
    .await;
    assert_eq!(
        list["data"],
        json!([]),
        "refused rollouts left a trace: {list}"
    );
    assert_eq!(versions(&app, MODEL).await["version"], configured.as_str());

    // One running rollout per model.
    let first = start_rollout(&app, start(json!({}))).await;
    let r = send(
        &app,
        Method::POST,
        "/v1/admin/rollouts",
        Some(start(json!({}))),
    )
    .await;
    assert_error(r, 409, "rollout_exists").await;
    let id = first.as_str();
    let aborted = json_of(
        send(
            &app,
            Method::POST,
            &format!("/v1/admin/rollouts/{id}/abort"),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (aborted["state"].as_str(), aborted["percent"].as_f64()),
        (Some("aborted"), Some(0.0))
    );
    let r = send(
        &app,
        Method::POST,
        &format!("/v1/admin/rollouts/{id}/promote"),
        None,
    )
    .await;
    assert_error(r, 409, "rollout_ended").await;
    let r = send(&app, Method::GET, "/v1/admin/rollouts/ro_missing", None).await;
    assert_error(r, 404, "rollout_not_found").await;
    // Aborting left the alias where it was.
    assert_eq!(versions(&app, MODEL).await["version"], configured.as_str());
}

#[tokio::test]
async fn an_identical_candidate_is_promoted_and_then_served() {
    let app = spawn_app_with(|c| c.rollouts.evaluate_every_seconds = 0.1).await;
    let configured = versions(&app, MODEL).await["version"]
        .as_str()
        .unwrap()
        .to_string();
    let copy = model_variant(&fixture_model(), UNET, "resaved", |_, _| {});
    let candidate = register(&app, MODEL, copy.path()).await;
    let mut request = small_request("a red apple");
    let before = generate_as(&app, &request, "before").await;
    assert_eq!(before["model_hash"], configured.as_str());

    let id = start_rollout(
        &app,
        json!({
            "model": MODEL, "candidate": candidate, "percent": 50,
            "guards": {"min_requests": 10}, "auto_promote": true,
        }),
    )
    .await;
    let mut served = std::collections::HashMap::new();
    let mut state = String::new();
    for i in 0..200 {
        request["seed"] = json!(i);
        let record = generate_as(&app, &request, &format!("user-{i}")).await;
        *served
            .entry(record["model_hash"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        state = rollout(&app, &id).await["state"]
            .as_str()
            .unwrap()
            .to_string();
        if state != "running" {
            break;
        }
    }
    let r = rollout(&app, &id).await;
    assert_eq!(state, "promoted", "{r}");
    println!(
        "promoted after {} candidate jobs: {}",
        r["evaluation"]["candidate"]["jobs"], r["reason"]
    );
    assert!(
        served.get(&candidate).copied().unwrap_or(0) >= 10,
        "{served:?}"
    );
    assert!(
        served.get(&configured).copied().unwrap_or(0) >= 10,
        "{served:?}"
    );

    // The alias serves the candidate now, to everyone.
    let model = versions(&app, MODEL).await;
    assert_eq!(model["version"], candidate.as_str(), "{model}");
    request["seed"] = before["seed"].clone();
    let after = generate_as(&app, &request, "before").await;
    assert_eq!(after["model_hash"], candidate.as_str());
    // Same weights: the same image (up to the per-image watermark).
    assert_eq!(after["quality_score"], before["quality_score"]);

    let audit = json_of(
        send(
            &app,
            Method::GET,
            "/v1/admin/audit?type=rollout.promoted",
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(audit["data"][0]["subject"], id.as_str(), "{audit}");
}

#[tokio::test]
async fn a_failing_candidate_is_rolled_back_and_no_request_fails() {
    let app = spawn_app_with(|c| c.rollouts.evaluate_every_seconds = 0.1).await;
    versions(&app, MODEL).await;
    let copy = model_variant(&fixture_model(), UNET, "doomed", |_, _| {});
    let candidate = register(&app, MODEL, copy.path()).await;
    let id = start_rollout(
        &app,
        json!({
            "model": MODEL, "candidate": candidate, "percent": 50,
            "guards": {"min_requests": 50},
        }),
    )
    .await;
    // The candidate loaded when the rollout started; unload it and damage
    // its folder, so every job routed to it fails to load it.
    let slot = format!("{MODEL}@{candidate}");
    let r = send(
        &app,
        Method::POST,
        &format!("/v1/admin/models/{}/unload", slot.replace(':', "%3A")),
        None,
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    std::fs::write(copy.path().join(UNET), b"not weights").unwrap();

    let mut request = small_request("a red apple");
    let mut sent = 0;
    for i in 0..200 {
        request["seed"] = json!(i);
        generate_as(&app, &request, &format!("user-{i}")).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        if rollout(&app, &id).await["state"] != "running" {
            break;
        }
    }
    let r = rollout(&app, &id).await;
    assert_eq!(r["state"], "rolled_back", "{r}");
    assert_eq!(r["percent"], 0.0);
    let candidate_jobs = r["evaluation"]["candidate"]["jobs"].as_u64().unwrap();
    println!(
        "rolled back after {sent} requests, {candidate_jobs} routed to the candidate: {}",
        r["reason"]
    );
    assert!(r["reason"].as_str().unwrap().contains("`errors`"), "{r}");
    assert_eq!(r["evaluation"]["candidate"]["errors"], candidate_jobs);

    let metrics = assert_rollback_recorded(&app, &id, MODEL).await;
    assert!(
        metrics.contains("easel_rollout_reroutes_total{"),
        "{metrics}"
    );

    // After the rollback nobody is routed to the candidate.
    for i in 0..10 {
        request["seed"] = json!(1000 + i);
        let record = generate_as(&app, &request, &format!("user-{i}")).await;
        assert_ne!(record["model_hash"], candidate.as_str());
    }
}

#[tokio::test]
async fn the_bundled_model_with_noisy_weights_is_rolled_back_on_quality() {
    let bundled = crate::helpers::bundled_model();
    let app = spawn_app_with(|c| {
        c.models = vec![easel_config::ModelEntry {
            name: "emoji".into(),
            path: bundled.clone(),
        }];
        c.default_model = Some("emoji".into());
        c.quality.scorer = None;
        c.rollouts.evaluate_every_seconds = 0.2;
    })
    .await;
    versions(&app, "emoji").await;
    let noisy = noisy_bundled();
    let candidate = register(&app, "emoji", noisy.path()).await;
    let id = start_rollout(
        &app,
        json!({
            "model": "emoji", "candidate": candidate, "percent": 20,
            "guards": {"min_requests": 40, "max_quality_drop": 0.02},
            "auto_promote": true,
        }),
    )
    .await;
    let prompts = [
        "a red apple",
        "a smiling face",
        "a yellow star",
        "a green tree",
        "a blue car",
        "a cat face",
        "a slice of pizza",
        "a rocket",
        "a red heart",
        "a sun with sunglasses",
    ];
    let clock = Instant::now();
    let (mut sent, mut failed) = (0, 0);
    for i in 0..400 {
        let body = json!({
            "model": "emoji", "prompt": prompts[i % prompts.len()], "seed": i,
            "user": format!("user-{i}"),
        });
        let r = app.generate(&body).await;
        sent += 1;
        if r.status() != 200 {
            failed += 1;
        }
        if i % 5 == 4 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if rollout(&app, &id).await["state"] != "running" {
                break;
            }
        }
    }
    let r = rollout(&app, &id).await;
    let e = &r["evaluation"];
    println!(
        "noisy candidate: {} after {sent} requests in {:.0} s; candidate {} jobs, mean quality {} vs baseline {} jobs, {}; {}",
        r["state"],
        clock.elapsed().as_secs_f64(),
        e["candidate"]["jobs"],
        e["candidate"]["mean_quality"],
        e["baseline"]["jobs"],
        e["baseline"]["mean_quality"],
        r["reason"],
    );
    assert_eq!(failed, 0, "user requests failed during the rollout");
    assert_eq!(r["state"], "rolled_back", "{r}");
    assert!(r["reason"].as_str().unwrap().contains("`quality`"), "{r}");
    assert_rollback_recorded(&app, &id, "emoji").await;
}
