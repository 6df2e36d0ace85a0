//! Shadow rollouts through the API: while the bundled model's noisy copy
//! shadows every request, the caller gets exactly the pixels it got
//! without a rollout; each request also runs on the candidate as a batch
//! job of the reserved project `easel-shadow`, whose image is scored and
//! kept, seen by admins, and never listed, fetched or billed by the
//! caller; the candidate's worse quality rolls the rollout back.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, bundled_model, noisy_bundled};
use crate::tenancy::{Tenants, send, tenants};

async fn ok(app: &TestApp, method: Method, path: &str, key: &str, body: Option<Value>) -> Value {
    let r = send(app, method, path, Some(key), body).await;
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert!((200..300).contains(&status), "{path}: {status} {body}");
    body
}

/// The RGB(A) samples of a base64 PNG.
fn pixels(b64: &str) -> Vec<u8> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    buf
}

/// Generates request `i` as project alpha; its job id and pixels.
async fn generate(t: &Tenants, i: usize) -> (String, Vec<u8>) {
    const PROMPTS: [&str; 5] = [
        "a red apple",
        "a smiling face",
        "a yellow star",
        "a green tree",
        "a blue car",
    ];
    let body = json!({
        "model": "emoji", "prompt": PROMPTS[i % PROMPTS.len()], "seed": i,
        "user": format!("user-{i}"), "response_format": "b64_json",
    });
    let answer = ok(
        &t.app,
        Method::POST,
        "/v1/images/generations",
        &t.alpha,
        Some(body),
    )
    .await;
    let job = answer["job_id"].as_str().unwrap().to_string();
    (job, pixels(answer["data"][0]["b64_json"].as_str().unwrap()))
}

/// Every job `key` sees, by id.
async fn all_jobs(t: &Tenants, key: &str) -> HashMap<String, Value> {
    let mut jobs = HashMap::new();
    let mut path = "/v1/jobs?limit=100".to_string();
    loop {
        let page = ok(&t.app, Method::GET, &path, key, None).await;
        for j in page["data"].as_array().unwrap() {
            jobs.insert(j["id"].as_str().unwrap().to_string(), j.clone());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/jobs?limit=100&cursor={cursor}"),
            None => return jobs,
        }
    }
}

#[tokio::test]
async fn a_shadow_is_run_scored_and_kept_but_never_seen_billed_or_listed() {
    let t = tenants(|c| {
        c.models = vec![easel_config::ModelEntry {
            name: "emoji".into(),
            path: bundled_model(),
        }];
        c.default_model = Some("emoji".into());
        c.quality.scorer = None;
        c.rollouts.evaluate_every_seconds = 0.2;
    })
    .await;
    let app = &t.app;

    // The reserved project exists and takes no keys.
    let r = send(
        app,
        Method::POST,
        "/v1/admin/keys",
        Some(&t.admin),
        Some(json!({"project": "easel-shadow", "name": "x", "scopes": ["read"]})),
    )
    .await;
    let error = assert_error(r, 400, "reserved_project").await;
    assert_eq!(error["error"]["param"], "project");
    let r = send(
        app,
        Method::POST,
        "/v1/admin/projects",
        Some(&t.admin),
        Some(json!({"id": "easel-shadow"})),
    )
    .await;
    assert_error(r, 409, "project_exists").await;

    // What the caller gets without a rollout.
    const BEFORE: usize = 5;
    let mut before = Vec::new();
    for i in 0..BEFORE {
        before.push(generate(&t, i).await.1);
    }
    let model = ok(app, Method::GET, "/v1/models/emoji", &t.admin, None).await;
    let baseline = model["version"].as_str().unwrap().to_string();

    let noisy = noisy_bundled();
    let registered = ok(
        app,
        Method::POST,
        "/v1/admin/models/emoji/versions",
        &t.admin,
        Some(json!({"path": noisy.path().display().to_string()})),
    )
    .await;
    let candidate = registered["version"].as_str().unwrap().to_string();
    let rollout = ok(
        app,
        Method::POST,
        "/v1/admin/rollouts",
        &t.admin,
        Some(json!({
            "model": "emoji", "candidate": candidate, "mode": "shadow", "percent": 100,
            "guards": {"min_requests": 10, "max_quality_drop": 0.02},
        })),
    )
    .await;
    assert_eq!(rollout["mode"], "shadow");
    let id = rollout["id"].as_str().unwrap().to_string();
    let path = format!("/v1/admin/rollouts/{id}");

    // The same requests give the same pixels while the shadow runs,
    // watermark included (its tag hashes the model, parameters and seed).
    // The files differ anyway: the C2PA claim has its own id and time.
    let mut primaries = Vec::new();
    for (i, expected) in before.iter().enumerate() {
        let (job, got) = generate(&t, i).await;
        assert!(
            got == *expected,
            "request {i} changed under a shadow rollout"
        );
        primaries.push(job);
    }
    // More traffic until the guard decides.
    let mut state = Value::Null;
    for i in BEFORE..200 {
        primaries.push(generate(&t, i).await.0);
        state = ok(app, Method::GET, &path, &t.admin, None).await;
        if state["state"] != "running" {
            break;
        }
    }
    let e = &state["evaluation"];
    println!(
        "shadow: {} after {} requests; candidate {} jobs, mean quality {} vs baseline {} jobs, {}; {}",
        state["state"],
        primaries.len(),
        e["candidate"]["jobs"],
        e["candidate"]["mean_quality"],
        e["baseline"]["jobs"],
        e["baseline"]["mean_quality"],
        state["reason"],
    );
    assert_eq!(state["state"], "rolled_back", "{state}");
    assert!(
        state["reason"].as_str().unwrap().contains("`quality`"),
        "{state}"
    );

    // Every request after the start has one shadow job; let them finish.
    let mut shadows: Vec<Value> = Vec::new();
    for _ in 0..600 {
        shadows = all_jobs(&t, &t.admin)
            .await
            .into_values()
            .filter(|j| j["project"] == "easel-shadow")
            .collect();
        if shadows.len() == primaries.len() && shadows.iter().all(|j| j["status"] == "succeeded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(shadows.len(), primaries.len(), "{shadows:?}");
    let jobs = all_jobs(&t, &t.admin).await;
    for shadow in &shadows {
        assert_eq!(shadow["status"], "succeeded", "{shadow}");
        assert_eq!(shadow["tier"], "batch");
        assert_eq!(shadow["user"], Value::Null);
        assert_eq!(shadow["model_version"], candidate.as_str());
        let of = shadow["shadow_of"].as_str().unwrap();
        assert!(primaries.iter().any(|p| p == of), "{shadow}");
        let primary = &jobs[of];
        assert_eq!(primary["project"], "alpha");
        assert_eq!(primary["model_version"], baseline.as_str());
        assert_eq!(primary["params"]["seed"], shadow["params"]["seed"]);
        assert_eq!(primary["params"]["prompt"], shadow["params"]["prompt"]);
        // Scored and kept, made by the candidate; only admins see it.
        let image_id = shadow["image_ids"][0].as_str().unwrap();
        let image = ok(
            app,
            Method::GET,
            &format!("/v1/images/{image_id}"),
            &t.admin,
            None,
        )
        .await;
        assert_eq!(image["project"], "easel-shadow");
        assert_eq!(image["model_hash"], candidate.as_str());
        assert!(image["quality_score"].is_number(), "{image}");
        for path in [
            format!("/v1/images/{image_id}"),
            format!("/v1/jobs/{}", shadow["id"].as_str().unwrap()),
        ] {
            let r = send(app, Method::GET, &path, Some(&t.alpha), None).await;
            assert_eq!(r.status(), 404, "{path}");
        }
    }

    // The caller's listing and usage hold its own requests only.
    let own = all_jobs(&t, &t.alpha).await;
    assert_eq!(own.len(), BEFORE + primaries.len());
    assert!(own.values().all(|j| j["project"] == "alpha"));
    let usage = ok(app, Method::GET, "/v1/usage", &t.alpha, None).await;
    assert_eq!(
        usage["total"]["images"],
        (BEFORE + primaries.len()) as u64,
        "{usage}"
    );

    // After the rollback no request is shadowed.
    generate(&t, 0).await;
    let after = all_jobs(&t, &t.admin)
        .await
        .into_values()
        .filter(|j| j["project"] == "easel-shadow")
        .count();
    assert_eq!(after, primaries.len());
    let metrics = send(app, Method::GET, "/metrics", None, None)
        .await
        .text()
        .await
        .unwrap();
    let series = format!(
        "easel_rollout_shadow_jobs_total{{model=\"emoji\",outcome=\"submitted\"}} {}",
        primaries.len()
    );
    assert!(metrics.contains(&series), "{series} not in:\n{metrics}");
}
