//! Tenancy through the API: projects and keys made by an admin, scopes,
//! the isolation matrix over every route of the router's table, rate
//! limits (also across two API processes on one database), caps and
//! concurrency limits.

use std::time::Duration;

use easel_server::auth::Scope;
use easel_server::routes::{Isolation, table};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, small_request, spawn_app_with};

/// An app with an admin config key `ops`, projects `alpha` and `beta`,
/// and one `generate` key in each.
pub struct Tenants {
    pub app: TestApp,
    pub admin: String,
    pub alpha: String,
    pub beta: String,
}

pub async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = app.client.request(method, app.url(path));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

/// Uploads a one-line batch input file as `key`; its id.
async fn upload_batch_file(app: &TestApp, key: &str) -> String {
    let line = json!({
        "custom_id": "one",
        "method": "POST",
        "url": "/v1/images/generations",
        "body": small_request("a batch line"),
    });
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(format!("{line}\n").into_bytes()).file_name("in.jsonl"),
        )
        .text("purpose", "batch");
    let r = app
        .client
        .post(app.url("/v1/files"))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    ok_json(r, 200).await["id"].as_str().unwrap().to_string()
}

/// `POST /v1/batches` for an input file.
fn batch_body(file: &str) -> Value {
    json!({
        "input_file_id": file,
        "endpoint": "/v1/images/generations",
        "completion_window": "24h",
    })
}

async fn ok_json(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(got, status, "{body}");
    body
}

/// Creates project `name` (with `limits`) and a key in it with `scopes`;
/// returns the key's secret.
pub async fn project_with_key(
    app: &TestApp,
    admin: &str,
    name: &str,
    limits: Value,
    scopes: &[&str],
) -> String {
    let project = json!({ "id": name, "limits": limits });
    let r = send(
        app,
        Method::POST,
        "/v1/admin/projects",
        Some(admin),
        Some(project),
    )
    .await;
    ok_json(r, 201).await;
    let key = json!({ "project": name, "name": format!("{name}-key"), "scopes": scopes });
    let r = send(app, Method::POST, "/v1/admin/keys", Some(admin), Some(key)).await;
    let body = ok_json(r, 201).await;
    body["key"].as_str().unwrap().to_string()
}

pub async fn tenants(change: impl FnOnce(&mut easel_config::Config)) -> Tenants {
    let (keys, auth) = crate::helpers::auth_with_keys(&[("ops", &[Scope::Admin])]);
    let app = spawn_app_with(move |c| {
        c.auth = auth;
        change(c);
    })
    .await;
    let admin = keys[0].clone();
    let alpha = project_with_key(&app, &admin, "alpha", json!({}), &["generate"]).await;
    let beta = project_with_key(&app, &admin, "beta", json!({}), &["generate"]).await;
    Tenants {
        app,
        admin,
        alpha,
        beta,
    }
}

async fn finished_job(app: &TestApp, key: &str, body: Value) -> Value {
    let job = ok_json(
        send(app, Method::POST, "/v1/jobs", Some(key), Some(body)).await,
        202,
    )
    .await;
    let path = format!("/v1/jobs/{}", job["id"].as_str().unwrap());
    for _ in 0..600 {
        let job = ok_json(send(app, Method::GET, &path, Some(key), None).await, 200).await;
        if job["status"] == "succeeded" {
            return job;
        }
        assert!(
            job["status"] == "queued" || job["status"] == "running",
            "{job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {path} did not finish");
}

async fn job_ids(app: &TestApp, key: &str) -> Vec<String> {
    let list = ok_json(
        send(app, Method::GET, "/v1/jobs?limit=100", Some(key), None).await,
        200,
    )
    .await;
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn keys_are_created_listed_rotated_and_revoked_by_an_admin() {
    let t = tenants(|c| c.worker.enabled = false).await;
    let app = &t.app;
    // The secret is shown once: listings carry its prefix, never it.
    let list = ok_json(
        send(
            app,
            Method::GET,
            "/v1/admin/keys?project=alpha",
            Some(&t.admin),
            None,
        )
        .await,
        200,
    )
    .await;
    let keys = list["data"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{list}");
    let listed = &keys[0];
    assert!(listed.get("key").is_none(), "{listed}");
    assert!(t.alpha.starts_with(listed["prefix"].as_str().unwrap()));
    assert!(!list.to_string().contains(&t.alpha));
    assert_eq!(listed["status"], "active");
    assert!(listed["last_used_at"].is_null());
    let id = listed["id"].as_str().unwrap().to_string();

    // Using the key stamps last_used_at; its jobs belong to its project.
    let job = ok_json(
        send(
            app,
            Method::POST,
            "/v1/jobs",
            Some(&t.alpha),
            Some(small_request("a key at work")),
        )
        .await,
        202,
    )
    .await;
    assert_eq!(job["project"], "alpha");
    assert_eq!(job["user"], "alpha-key");
    let key = ok_json(
        send(
            app,
            Method::GET,
            &format!("/v1/admin/keys/{id}"),
            Some(&t.admin),
            None,
        )
        .await,
        200,
    )
    .await;
    assert!(key["last_used_at"].is_i64(), "{key}");

    // Rotation: a new secret; the old one stops at once (no grace).
    let rotated = ok_json(
        send(
            app,
            Method::POST,
            &format!("/v1/admin/keys/{id}/rotate"),
            Some(&t.admin),
            None,
        )
        .await,
        201,
    )
    .await;
    let new_secret = rotated["key"].as_str().unwrap().to_string();
    assert_ne!(new_secret, t.alpha);
    assert_eq!(rotated["project"], "alpha");
    assert_eq!(rotated["scopes"], json!(["generate"]));
    assert_error(
        send(app, Method::GET, "/v1/jobs", Some(&t.alpha), None).await,
        401,
        "invalid_api_key",
    )
    .await;
    ok_json(
        send(app, Method::GET, "/v1/jobs", Some(&new_secret), None).await,
        200,
    )
    .await;
    // With a grace period the old key keeps working until it ends.
    let new_id = rotated["id"].as_str().unwrap().to_string();
    let graced = ok_json(
        send(
            app,
            Method::POST,
            &format!("/v1/admin/keys/{new_id}/rotate"),
            Some(&t.admin),
            Some(json!({"grace_seconds": 3600})),
        )
        .await,
        201,
    )
    .await;
    ok_json(
        send(app, Method::GET, "/v1/jobs", Some(&new_secret), None).await,
        200,
    )
    .await;
    let newest = graced["key"].as_str().unwrap().to_string();

    // Revocation is immediate.
    let revoked = ok_json(
        send(
            app,
            Method::DELETE,
            &format!("/v1/admin/keys/{}", graced["id"].as_str().unwrap()),
            Some(&t.admin),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(revoked["status"], "revoked");
    assert_error(
        send(app, Method::GET, "/v1/jobs", Some(&newest), None).await,
        401,
        "invalid_api_key",
    )
    .await;
    // A missing key, once keys exist, is told so.
    assert_error(
        send(app, Method::GET, "/v1/jobs", None, None).await,
        401,
        "missing_api_key",
    )
    .await;

    // Every change is audited under its project, with no secret in it.
    let audit = ok_json(
        send(
            app,
            Method::GET,
            "/v1/admin/audit?project=alpha&limit=1000",
            Some(&t.admin),
            None,
        )
        .await,
        200,
    )
    .await;
    let types: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for wanted in [
        "project.created",
        "key.created",
        "key.rotated",
        "key.revoked",
        "job.created",
    ] {
        assert!(types.contains(&wanted), "{wanted} in {types:?}");
    }
    for secret in [&t.alpha, &new_secret, &newest] {
        assert!(!audit.to_string().contains(secret.as_str()));
    }
}

#[tokio::test]
async fn bad_admin_input_names_the_field_and_creates_nothing() {
    let t = tenants(|c| c.worker.enabled = false).await;
    let app = &t.app;
    let before = app.count_rows("api_keys").await;
    let cases = [
        (
            "/v1/admin/keys",
            json!({"project": "nope", "name": "x", "scopes": ["read"]}),
            404,
            "project_not_found",
        ),
        (
            "/v1/admin/keys",
            json!({"project": "alpha", "name": "x", "scopes": ["owner"]}),
            400,
            "invalid_scopes",
        ),
        (
            "/v1/admin/keys",
            json!({"project": "alpha", "name": "x", "scopes": []}),
            400,
            "invalid_scopes",
        ),
        (
            "/v1/admin/keys",
            json!({"project": "alpha", "name": "", "scopes": ["read"]}),
            400,
            "invalid_name",
        ),
        (
            "/v1/admin/keys",
            json!({"project": "alpha", "name": "x", "scopes": ["read"], "limits": {"max_n": 0}}),
            400,
            "invalid_limit",
        ),
        (
            "/v1/admin/keys",
            json!({"project": "alpha", "name": "x", "scopes": ["read"], "expires_at": 1}),
            400,
            "invalid_expiry",
        ),
        (
            "/v1/admin/projects",
            json!({"id": "Bad Name"}),
            400,
            "invalid_project",
        ),
        (
            "/v1/admin/projects",
            json!({"id": "gamma", "limits": {"requests_per_minute": 0}}),
            400,
            "invalid_limit",
        ),
        (
            "/v1/admin/projects",
            json!({"id": "alpha"}),
            409,
            "project_exists",
        ),
    ];
    for (path, body, status, code) in cases {
        let error = assert_error(
            send(app, Method::POST, path, Some(&t.admin), Some(body.clone())).await,
            status,
            code,
        )
        .await;
        if code == "invalid_limit" {
            assert!(
                error["error"]["param"]
                    .as_str()
                    .unwrap()
                    .starts_with("limits."),
                "{error}"
            );
        }
    }
    assert_eq!(app.count_rows("api_keys").await, before);
    let projects = ok_json(
        send(app, Method::GET, "/v1/admin/projects", Some(&t.admin), None).await,
        200,
    )
    .await;
    let names: Vec<&str> = projects["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta", "default", "easel-shadow"]);
    // An unknown field is refused, not ignored.
    let r = send(
        app,
        Method::POST,
        "/v1/admin/projects",
        Some(&t.admin),
        Some(json!({"id": "delta", "limit": {}})),
    )
    .await;
    assert_eq!(r.status(), 400);
    // Project keys may not administer.
    assert_error(
        send(
            app,
            Method::POST,
            "/v1/admin/keys",
            Some(&t.alpha),
            Some(json!({"project": "alpha", "name": "x", "scopes": ["admin"]})),
        )
        .await,
        403,
        "missing_scope",
    )
    .await;
}

#[tokio::test]
async fn a_missing_scope_is_403_naming_it() {
    let t = tenants(|c| c.worker.enabled = false).await;
    let app = &t.app;
    let reader = {
        let key = json!({ "project": "alpha", "name": "reader", "scopes": ["read"] });
        let body = ok_json(
            send(
                app,
                Method::POST,
                "/v1/admin/keys",
                Some(&t.admin),
                Some(key),
            )
            .await,
            201,
        )
        .await;
        body["key"].as_str().unwrap().to_string()
    };
    let error = assert_error(
        send(
            app,
            Method::POST,
            "/v1/jobs",
            Some(&reader),
            Some(small_request("no")),
        )
        .await,
        403,
        "missing_scope",
    )
    .await;
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`generate`"),
        "{error}"
    );
    ok_json(
        send(app, Method::GET, "/v1/jobs", Some(&reader), None).await,
        200,
    )
    .await;
    ok_json(
        send(app, Method::GET, "/v1/models", Some(&reader), None).await,
        200,
    )
    .await;
}

/// For every route in the router's table, project `alpha`'s key on
/// project `beta`'s things: 404 exactly like an unknown id, an empty
/// share of a list, or 403 for admin routes; never `beta`'s data. A route
/// this test does not know fails it.
#[tokio::test]
async fn no_route_shows_one_project_what_another_owns() {
    // The bundled model, whose outputs carry a readable watermark (the
    // pixel-space fixture draws noise).
    let t = tenants(|c| {
        c.models.push(easel_config::ModelEntry {
            name: "emoji".into(),
            path: crate::helpers::bundled_model(),
        });
    })
    .await;
    let app = &t.app;
    let mut request = json!({"model": "emoji", "prompt": "beta's lighthouse", "seed": 7});
    request["n"] = json!(2);
    let job = finished_job(app, &t.beta, request).await;
    let job_id = job["id"].as_str().unwrap().to_string();
    let image_id = job["image_ids"][0].as_str().unwrap().to_string();
    // The owner's check of DELETE deletes: it gets an image of its own.
    let doomed_id = job["image_ids"][1].as_str().unwrap().to_string();
    let unknown_job = "job_0192a0b0c0d07000800000000000abcd";
    let unknown_image = "img_0192a0b0c0d07000800000000000abcd";
    let record = ok_json(
        send(
            app,
            Method::GET,
            &format!("/v1/images/{image_id}"),
            Some(&t.beta),
            None,
        )
        .await,
        200,
    )
    .await;
    let bytes = app
        .get(record["url"].as_str().unwrap())
        .await
        .bytes()
        .await
        .unwrap();
    assert!(
        record["watermark_id"].is_string(),
        "the image is watermarked: {record}"
    );

    // Beta's batch input files (one to delete) and a batch.
    let beta_file = upload_batch_file(app, &t.beta).await;
    let doomed_file = upload_batch_file(app, &t.beta).await;
    let beta_batch = ok_json(
        send(
            app,
            Method::POST,
            "/v1/batches",
            Some(&t.beta),
            Some(batch_body(&beta_file)),
        )
        .await,
        200,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Its job made before the routes are walked (the create routes compare
    // beta's job list before and after).
    for _ in 0..600 {
        let b = ok_json(
            send(
                app,
                Method::GET,
                &format!("/v1/batches/{beta_batch}"),
                Some(&t.beta),
                None,
            )
            .await,
            200,
        )
        .await;
        if b["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unknown_file = "file_0192a0b0c0d07000800000000000abcd";
    let unknown_batch = "batch_0192a0b0c0d07000800000000000abcd";

    let mut checked = 0;
    for route in table() {
        let (method, path) = (route.method.clone(), route.path);
        let owned_id = |path: &str| -> Option<(String, String)> {
            if path.starts_with("/v1/files/{id}") && method == Method::DELETE {
                Some((
                    path.replace("{id}", &doomed_file),
                    path.replace("{id}", unknown_file),
                ))
            } else if path.starts_with("/v1/files/{id}") {
                Some((
                    path.replace("{id}", &beta_file),
                    path.replace("{id}", unknown_file),
                ))
            } else if path.starts_with("/v1/batches/{id}") {
                Some((
                    path.replace("{id}", &beta_batch),
                    path.replace("{id}", unknown_batch),
                ))
            } else if path.starts_with("/v1/jobs/{id}") {
                Some((
                    path.replace("{id}", &job_id),
                    path.replace("{id}", unknown_job),
                ))
            } else if path.starts_with("/v1/images/{id}") && method == Method::DELETE {
                Some((
                    path.replace("{id}", &doomed_id),
                    path.replace("{id}", unknown_image),
                ))
            } else if path.starts_with("/v1/images/{id}") {
                Some((
                    path.replace("{id}", &image_id),
                    path.replace("{id}", unknown_image),
                ))
            } else {
                None
            }
        };
        match (route.isolation, method.as_str(), path) {
            (Some(Isolation::Owned), _, _) | (None, "GET", "/v1/images/{id}/content") => {
                let (theirs, unknown) =
                    owned_id(path).unwrap_or_else(|| panic!("{method} {path}: no id to try"));
                let body = (method == Method::PATCH).then(|| json!({"cost_cap": 100.0}));
                let foreign =
                    send(app, method.clone(), &theirs, Some(&t.alpha), body.clone()).await;
                let missing =
                    send(app, method.clone(), &unknown, Some(&t.alpha), body.clone()).await;
                let (fs, ms) = (foreign.status(), missing.status());
                let (fb, mb): (Value, Value) =
                    (foreign.json().await.unwrap(), missing.json().await.unwrap());
                assert_eq!(fs, 404, "{method} {path}: {fb}");
                assert_eq!(
                    (fs, &fb["error"]["code"]),
                    (ms, &mb["error"]["code"]),
                    "{method} {path}: answered unlike an unknown id"
                );
                assert!(
                    !fb.to_string().contains(&job_id)
                        || fb["error"]["message"]
                            .as_str()
                            .is_some_and(|m| m.contains(&job_id)),
                    "{fb}"
                );
                // The owner does see it (the check above is not vacuous).
                let own = send(app, method.clone(), &theirs, Some(&t.beta), body).await;
                // Beta's batch has finished and has no dry run: changing
                // its cap, approving, pausing or resuming it is a
                // conflict, not a 404.
                let settled = method == Method::PATCH
                    || ["/approve", "/pause", "/resume"]
                        .iter()
                        .any(|s| path.ends_with(s));
                assert!(
                    own.status().is_success() || (settled && own.status() == 409),
                    "{method} {path} for its owner: {}",
                    own.status()
                );
            }
            (Some(Isolation::Listed), "GET", "/v1/jobs") => {
                assert!(!job_ids(app, &t.alpha).await.contains(&job_id));
                assert!(job_ids(app, &t.beta).await.contains(&job_id));
                assert!(
                    job_ids(app, &t.admin).await.contains(&job_id),
                    "admins see every project"
                );
            }
            (Some(Isolation::Listed), "GET", "/v1/images") => {
                for (key, sees) in [(&t.alpha, false), (&t.beta, true), (&t.admin, true)] {
                    let page = ok_json(
                        send(app, Method::GET, "/v1/images?limit=100", Some(key), None).await,
                        200,
                    )
                    .await;
                    let ids: Vec<&str> = page["data"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|o| o["id"].as_str().unwrap())
                        .collect();
                    assert_eq!(ids.contains(&image_id.as_str()), sees, "{path}: {page}");
                }
            }
            (Some(Isolation::Caller), "GET", "/v1/me") => {
                let me = ok_json(
                    send(app, Method::GET, path, Some(&t.alpha), None).await,
                    200,
                )
                .await;
                assert_eq!(me["project"], "alpha", "{me}");
                assert_eq!(me["sees_all_projects"], false, "{me}");
            }
            (Some(Isolation::Listed), "GET", "/v1/files" | "/v1/batches") => {
                let theirs = if path == "/v1/files" {
                    &beta_file
                } else {
                    &beta_batch
                };
                for (key, sees) in [(&t.alpha, false), (&t.beta, true), (&t.admin, true)] {
                    let page =
                        ok_json(send(app, Method::GET, path, Some(key), None).await, 200).await;
                    let ids: Vec<&str> = page["data"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|o| o["id"].as_str().unwrap())
                        .collect();
                    assert_eq!(ids.contains(&theirs.as_str()), sees, "{path}: {page}");
                }
            }
            (Some(Isolation::Creates), "POST", "/v1/files") => {
                let mine = upload_batch_file(app, &t.alpha).await;
                let beta_sees = ok_json(
                    send(app, Method::GET, "/v1/files", Some(&t.beta), None).await,
                    200,
                )
                .await;
                assert!(!beta_sees.to_string().contains(&mine), "{beta_sees}");
            }
            (Some(Isolation::Creates), "POST", "/v1/batches") => {
                // Another project's input file is unknown.
                assert_error(
                    send(
                        app,
                        Method::POST,
                        path,
                        Some(&t.alpha),
                        Some(batch_body(&beta_file)),
                    )
                    .await,
                    404,
                    "file_not_found",
                )
                .await;
                let mine = upload_batch_file(app, &t.alpha).await;
                let batch = ok_json(
                    send(
                        app,
                        Method::POST,
                        path,
                        Some(&t.alpha),
                        Some(batch_body(&mine)),
                    )
                    .await,
                    200,
                )
                .await;
                let id = batch["id"].as_str().unwrap();
                let beta_sees = ok_json(
                    send(app, Method::GET, "/v1/batches", Some(&t.beta), None).await,
                    200,
                )
                .await;
                assert!(!beta_sees.to_string().contains(id), "{beta_sees}");
            }
            (Some(Isolation::Listed), "GET", "/v1/usage") => {
                let groups = |report: Value| -> Vec<String> {
                    report["data"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|g| g["group"].as_str().unwrap().to_string())
                        .collect()
                };
                let own = ok_json(
                    send(
                        app,
                        Method::GET,
                        "/v1/usage?group_by=project",
                        Some(&t.alpha),
                        None,
                    )
                    .await,
                    200,
                )
                .await;
                assert!(!groups(own).contains(&"beta".to_string()));
                // Asking for another project's usage still reports one's own.
                let asked = ok_json(
                    send(
                        app,
                        Method::GET,
                        "/v1/usage?project=beta",
                        Some(&t.alpha),
                        None,
                    )
                    .await,
                    200,
                )
                .await;
                assert!(!groups(asked).contains(&"beta".to_string()));
                let theirs = ok_json(
                    send(app, Method::GET, "/v1/usage", Some(&t.beta), None).await,
                    200,
                )
                .await;
                assert_eq!(groups(theirs), ["beta"]);
                let all = ok_json(
                    send(app, Method::GET, "/v1/usage", Some(&t.admin), None).await,
                    200,
                )
                .await;
                assert!(
                    groups(all).contains(&"beta".to_string()),
                    "admins see every project"
                );
            }
            (
                Some(Isolation::Creates),
                "POST",
                "/v1/jobs"
                | "/v1/images/generations"
                | "/v1/images/edits"
                | "/v1/images/variations"
                | "/sdapi/v1/txt2img"
                | "/sdapi/v1/img2img",
            ) => {
                let before = job_ids(app, &t.beta).await;
                let r = if path.starts_with("/sdapi/") {
                    use base64::Engine as _;
                    let mut body =
                        json!({"prompt": "alpha's own", "width": 16, "height": 16, "steps": 2});
                    if path.ends_with("img2img") {
                        body["init_images"] = json!([base64::engine::general_purpose::STANDARD
                            .encode(crate::helpers::png_image(16, 16))]);
                    }
                    send(app, method.clone(), path, Some(&t.alpha), Some(body)).await
                } else if path == "/v1/images/edits" || path == "/v1/images/variations" {
                    let form = reqwest::multipart::Form::new()
                        .part(
                            "image",
                            reqwest::multipart::Part::bytes(crate::helpers::png_image(16, 16))
                                .file_name("in.png"),
                        )
                        .text("prompt", "alpha's edit")
                        .text("model", crate::helpers::MODEL)
                        .text("size", "16x16")
                        .text("steps", "2");
                    app.client
                        .post(app.url(path))
                        .bearer_auth(&t.alpha)
                        .multipart(form)
                        .send()
                        .await
                        .unwrap()
                } else {
                    send(
                        app,
                        method.clone(),
                        path,
                        Some(&t.alpha),
                        Some(small_request("alpha's own")),
                    )
                    .await
                };
                assert!(r.status().is_success(), "{method} {path}: {}", r.status());
                assert_eq!(
                    job_ids(app, &t.beta).await,
                    before,
                    "{path} made something beta sees"
                );
                let mine = job_ids(app, &t.alpha).await;
                let newest = ok_json(
                    send(
                        app,
                        Method::GET,
                        &format!("/v1/jobs/{}", mine[0]),
                        Some(&t.alpha),
                        None,
                    )
                    .await,
                    200,
                )
                .await;
                assert_eq!(newest["project"], "alpha");
            }
            (Some(Isolation::Creates), "POST", "/v1/watermark/detect") => {
                let detect = |key: String| {
                    let bytes = bytes.clone();
                    async move {
                        let r = app
                            .client
                            .post(app.url(path))
                            .bearer_auth(key)
                            .header("content-type", "image/png")
                            .body(bytes)
                            .send()
                            .await
                            .unwrap();
                        ok_json(r, 200).await
                    }
                };
                let foreign = detect(t.alpha.clone()).await;
                assert_eq!(foreign["watermarked"], true, "{foreign}");
                assert!(
                    foreign["image"].is_null(),
                    "another project's record leaked: {foreign}"
                );
                let own = detect(t.beta.clone()).await;
                assert_eq!(own["image"]["id"], image_id.as_str(), "{own}");
            }
            (Some(Isolation::Shared), "POST", "/sdapi/v1/png-info") => {
                use base64::Engine as _;
                let png =
                    json!({"image": base64::engine::general_purpose::STANDARD.encode(&bytes)});
                let info = ok_json(
                    send(app, method.clone(), path, Some(&t.alpha), Some(png)).await,
                    200,
                )
                .await;
                assert!(info["info"].as_str().unwrap().contains("Steps:"), "{info}");
            }
            (Some(Isolation::Caller), "POST", "/sdapi/v1/options") => {
                let body = json!({"show_progress_every_n_steps": 5});
                ok_json(
                    send(app, method.clone(), path, Some(&t.alpha), Some(body)).await,
                    200,
                )
                .await;
                let theirs =
                    ok_json(send(app, Method::GET, path, Some(&t.beta), None).await, 200).await;
                assert_eq!(
                    theirs["show_progress_every_n_steps"], 1,
                    "alpha's option reached beta"
                );
                let mine = ok_json(
                    send(app, Method::GET, path, Some(&t.alpha), None).await,
                    200,
                )
                .await;
                assert_eq!(mine["show_progress_every_n_steps"], 5);
            }
            (Some(Isolation::Caller), _, _) => {
                // The caller's own task and options: nothing of beta's is
                // reachable, and with nothing running these change nothing.
                let r = send(app, method.clone(), path, Some(&t.alpha), None).await;
                assert!(r.status().is_success(), "{method} {path}: {}", r.status());
            }
            (
                Some(Isolation::Shared),
                "POST",
                "/sdapi/v1/refresh-loras" | "/sdapi/v1/refresh-checkpoints",
            ) => {
                let r = send(app, method.clone(), path, Some(&t.alpha), None).await;
                assert_eq!(r.status(), 200, "{method} {path}");
            }
            (Some(Isolation::Shared), "GET", _) => {
                let path = path.replace("{name}", crate::helpers::MODEL);
                ok_json(
                    send(app, method.clone(), &path, Some(&t.alpha), None).await,
                    200,
                )
                .await;
            }
            (Some(Isolation::Admin), _, _) => {
                let path = path
                    .replace("{name}", crate::helpers::MODEL)
                    .replace("{id}", "anything");
                let body = (method == Method::POST || method == Method::PATCH).then(|| json!({}));
                assert_error(
                    send(app, method.clone(), &path, Some(&t.alpha), body).await,
                    403,
                    "missing_scope",
                )
                .await;
            }
            (Some(Isolation::Review), _, _) => {
                // A key with only `generate` may not review.
                let path = path.replace("{image_id}", &image_id);
                let body = (method == Method::POST).then(|| json!({"verdict": "good"}));
                assert_error(
                    send(app, method.clone(), &path, Some(&t.alpha), body).await,
                    403,
                    "missing_scope",
                )
                .await;
            }
            (None, "GET", "/healthz" | "/readyz") => {
                assert!(
                    send(app, method.clone(), path, None, None)
                        .await
                        .status()
                        .is_success()
                );
            }
            _ => panic!(
                "route {method} {path} ({:?}) is not classified in the isolation matrix",
                route.isolation
            ),
        }
        checked += 1;
    }
    assert!(checked >= 42, "only {checked} routes checked");

    // A signed link names its project: changing it breaks the signature.
    let url = record["url"].as_str().unwrap();
    assert!(url.contains("project=beta"), "{url}");
    assert_error(
        app.get(&url.replace("project=beta", "project=alpha")).await,
        403,
        "invalid_signature",
    )
    .await;
}

#[tokio::test]
async fn a_burst_gets_exactly_the_rate_limit_with_openai_headers() {
    let t = tenants(|c| c.worker.enabled = false).await;
    let app = &t.app;
    let key = project_with_key(
        app,
        &t.admin,
        "limited",
        json!({"requests_per_minute": 10}),
        &["generate"],
    )
    .await;
    let sends = (0..50).map(|_| send(app, Method::GET, "/v1/models", Some(&key), None));
    let answers = futures::future::join_all(sends).await;
    let mut ok = 0;
    let mut limited = 0;
    for r in answers {
        let h = r.headers().clone();
        assert_eq!(h["x-ratelimit-limit-requests"], "10");
        assert!(h.contains_key("x-ratelimit-remaining-requests"));
        assert!(h.contains_key("x-ratelimit-reset-requests"));
        match r.status().as_u16() {
            200 => ok += 1,
            429 => {
                limited += 1;
                let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=60).contains(&retry), "{retry}");
                assert_eq!(h["x-ratelimit-remaining-requests"], "0");
                assert_error(r, 429, "rate_limit_exceeded").await;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, limited), (10, 40));
    // Another project is not limited by this one's bucket.
    ok_json(
        send(app, Method::GET, "/v1/models", Some(&t.alpha), None).await,
        200,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_api_processes_on_one_database_share_the_limit() {
    let t = tenants(|c| c.worker.enabled = false).await;
    let key = project_with_key(
        &t.app,
        &t.admin,
        "shared",
        json!({"requests_per_minute": 10}),
        &["read"],
    )
    .await;
    // A second application on the same database (and the same signing key).
    let mut config = crate::helpers::test_config(t.app.data_dir.path());
    config.worker.enabled = false;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second = easel_server::Application::build(config, listener)
        .await
        .unwrap();
    let second_base = format!("http://{}", second.local_addr());
    let server = tokio::spawn(second.run(std::future::pending()));
    let client = reqwest::Client::new();
    let sends = (0..50).map(|i| {
        let url = if i % 2 == 0 {
            t.app.url("/v1/models")
        } else {
            format!("{second_base}/v1/models")
        };
        client.get(url).bearer_auth(&key).send()
    });
    let answers = futures::future::join_all(sends).await;
    let admitted = answers
        .iter()
        .filter(|r| r.as_ref().unwrap().status() == 200)
        .count();
    let refused = answers
        .iter()
        .filter(|r| r.as_ref().unwrap().status() == 429)
        .count();
    // The buckets live in the database and are charged under a lock:
    // exactly the limit, whichever process a request reached.
    assert_eq!((admitted, refused), (10, 40));
    server.abort();
}

#[tokio::test]
async fn caps_concurrency_and_image_rates_hold_per_project() {
    let t = tenants(|c| c.worker.enabled = false).await;
    let app = &t.app;
    let limits = json!({"images_per_minute": 4, "max_n": 3, "max_steps": 5, "concurrent_jobs": 2});
    let key = project_with_key(app, &t.admin, "capped", limits, &["generate"]).await;
    let job = |n: u32, steps: u32| {
        let mut body = small_request("capped");
        body["n"] = json!(n);
        body["steps"] = json!(steps);
        send(app, Method::POST, "/v1/jobs", Some(&key), Some(body))
    };
    let e = assert_error(job(4, 2).await, 400, "limit_exceeded").await;
    assert_eq!(e["error"]["param"], "n");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("max_n"),
        "{e}"
    );
    let e = assert_error(job(1, 6).await, 400, "limit_exceeded").await;
    assert_eq!(e["error"]["param"], "steps");
    // 3 images, then 1: the bucket of 4 per minute is empty.
    let r = job(3, 2).await;
    assert_eq!(r.headers()["x-ratelimit-limit-images"], "4");
    assert_eq!(r.headers()["x-ratelimit-remaining-images"], "1");
    ok_json(r, 202).await;
    let r = job(2, 2).await;
    assert_eq!(r.headers()["x-ratelimit-remaining-images"], "1");
    assert_error(r, 429, "rate_limit_exceeded").await;
    ok_json(job(1, 2).await, 202).await;
    // Two jobs queued: the third waits for one to finish.
    let e = assert_error(job(1, 2).await, 429, "rate_limit_exceeded").await;
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("concurrent"),
        "{e}"
    );
    // Nothing refused was stored.
    assert_eq!(job_ids(app, &key).await.len(), 2);
}

#[tokio::test]
async fn a_config_key_acts_in_its_project() {
    let (keys, mut auth) =
        crate::helpers::auth_with_keys(&[("ci", &[Scope::Generate]), ("ops", &[Scope::Admin])]);
    auth.api_keys[0].project = "ci-project".parse().unwrap();
    let app = spawn_app_with(move |c| {
        c.auth = auth;
        c.worker.enabled = false;
    })
    .await;
    let job = ok_json(
        send(
            &app,
            Method::POST,
            "/v1/jobs",
            Some(&keys[0]),
            Some(small_request("ci")),
        )
        .await,
        202,
    )
    .await;
    assert_eq!(job["project"], "ci-project");
    let projects = ok_json(
        send(
            &app,
            Method::GET,
            "/v1/admin/projects",
            Some(&keys[1]),
            None,
        )
        .await,
        200,
    )
    .await;
    assert!(projects.to_string().contains("ci-project"), "{projects}");
}

#[tokio::test]
async fn retention_deletes_object_and_row_with_a_tombstone_and_legal_hold_keeps() {
    let t = tenants(|c| c.tenancy.sweep_interval_seconds = 1).await;
    let app = &t.app;
    let r = send(
        app,
        Method::PATCH,
        "/v1/admin/projects/beta",
        Some(&t.admin),
        Some(json!({"retention_seconds": 1})),
    )
    .await;
    assert_eq!(ok_json(r, 200).await["retention_seconds"], 1);
    let mut request = small_request("short-lived");
    request["n"] = json!(2);
    let job = finished_job(app, &t.beta, request).await;
    let (gone, held) = (
        job["image_ids"][0].as_str().unwrap(),
        job["image_ids"][1].as_str().unwrap(),
    );
    let hold = send(
        app,
        Method::POST,
        &format!("/v1/admin/images/{held}/legal_hold"),
        Some(&t.admin),
        Some(json!({"hold": true})),
    )
    .await;
    assert_eq!(ok_json(hold, 200).await["legal_hold"], true);
    let record = ok_json(
        send(
            app,
            Method::GET,
            &format!("/v1/images/{gone}"),
            Some(&t.beta),
            None,
        )
        .await,
        200,
    )
    .await;
    let link = record["url"].as_str().unwrap().to_string();
    assert_eq!(app.get(&link).await.status(), 200);
    let files_before = app.count_image_files().await;

    // The sweeper runs every second in this app.
    let mut swept = false;
    for _ in 0..100 {
        if send(
            app,
            Method::GET,
            &format!("/v1/images/{gone}"),
            Some(&t.beta),
            None,
        )
        .await
        .status()
            == 404
        {
            swept = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(swept, "the expired image was not swept");
    assert_error(app.get(&link).await, 404, "image_not_found").await;
    assert_eq!(
        app.count_image_files().await,
        files_before - 1,
        "the object is gone too"
    );
    assert_eq!(app.count_rows("pending_deletions").await, 0);
    // The held one stays, and cannot be deleted by request either.
    ok_json(
        send(
            app,
            Method::GET,
            &format!("/v1/images/{held}"),
            Some(&t.beta),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_error(
        send(
            app,
            Method::DELETE,
            &format!("/v1/images/{held}"),
            Some(&t.beta),
            None,
        )
        .await,
        409,
        "legal_hold",
    )
    .await;
    // The tombstone names what was deleted, and why.
    let audit = ok_json(
        send(
            app,
            Method::GET,
            "/v1/admin/audit?type=image.deleted&project=beta",
            Some(&t.admin),
            None,
        )
        .await,
        200,
    )
    .await;
    let stones = audit["data"].as_array().unwrap();
    assert_eq!(stones.len(), 1, "{audit}");
    assert_eq!(stones[0]["subject"], gone);
    assert_eq!(stones[0]["detail"]["reason"], "retention");
    assert_eq!(stones[0]["detail"]["object_removed"], true);
    assert_eq!(stones[0]["detail"]["sha256"], record["sha256"]);

    // Released, a request deletes it: object, row, link.
    let release = send(
        app,
        Method::POST,
        &format!("/v1/admin/images/{held}/legal_hold"),
        Some(&t.admin),
        Some(json!({"hold": false})),
    )
    .await;
    ok_json(release, 200).await;
    let deleted = ok_json(
        send(
            app,
            Method::DELETE,
            &format!("/v1/images/{held}"),
            Some(&t.beta),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(deleted["deleted"], true);
    assert_error(
        send(
            app,
            Method::GET,
            &format!("/v1/images/{held}"),
            Some(&t.beta),
            None,
        )
        .await,
        404,
        "image_not_found",
    )
    .await;
    assert_eq!(app.count_image_files().await, files_before - 2);
    // Bad retention values name the field.
    let e = assert_error(
        send(
            app,
            Method::PATCH,
            "/v1/admin/projects/beta",
            Some(&t.admin),
            Some(json!({"retention_seconds": 0})),
        )
        .await,
        400,
        "invalid_retention",
    )
    .await;
    assert_eq!(e["error"]["param"], "retention_seconds");
}

#[tokio::test]
async fn a_quota_of_five_images_admits_five_of_eight_and_usage_shows_their_cost() {
    let t = tenants(|c| {
        c.metrics.price_per_device_second = 2.0;
        c.metrics.storage_price_per_gb_month = 0.05;
    })
    .await;
    let app = &t.app;
    let key = project_with_key(
        app,
        &t.admin,
        "quota",
        json!({"images_per_month": 5}),
        &["generate"],
    )
    .await;
    let mut outcomes = Vec::new();
    for i in 0..8 {
        let r = send(
            app,
            Method::POST,
            "/v1/images/generations",
            Some(&key),
            Some(small_request(&format!("quota {i}"))),
        )
        .await;
        outcomes.push(r.status().as_u16());
        if r.status() == 429 {
            let e = assert_error(r, 429, "insufficient_quota").await;
            assert!(
                e["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("images_per_month"),
                "{e}"
            );
        }
    }
    assert_eq!(outcomes, [200, 200, 200, 200, 200, 429, 429, 429]);
    let usage = ok_json(
        send(
            app,
            Method::GET,
            "/v1/usage?group_by=model",
            Some(&key),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(usage["total"]["images"], 5, "{usage}");
    let cost = usage["total"]["cost"].as_f64().unwrap();
    let seconds = usage["total"]["device_seconds"].as_f64().unwrap();
    assert!(seconds > 0.0 && cost >= 2.0 * seconds, "{usage}");
    // Each image records its own cost, and the sums match.
    let jobs = ok_json(
        send(app, Method::GET, "/v1/jobs", Some(&key), None).await,
        200,
    )
    .await;
    let mut recorded = 0.0;
    for job in jobs["data"].as_array().unwrap() {
        for id in job["image_ids"].as_array().unwrap() {
            let path = format!("/v1/images/{}", id.as_str().unwrap());
            let image = ok_json(send(app, Method::GET, &path, Some(&key), None).await, 200).await;
            let expected = image["device_seconds"].as_f64().unwrap() * 2.0
                + image["bytes"].as_f64().unwrap() / 1e9 * 0.05;
            assert!(
                (image["cost"].as_f64().unwrap() - expected).abs() < 1e-9,
                "{image}"
            );
            recorded += image["cost"].as_f64().unwrap();
        }
    }
    assert!((recorded - cost).abs() < 1e-9);
    // By key too.
    let by_key = ok_json(
        send(
            app,
            Method::GET,
            "/v1/usage?group_by=key",
            Some(&t.admin),
            None,
        )
        .await,
        200,
    )
    .await;
    assert!(by_key.to_string().contains("quota/quota-key"), "{by_key}");
    let by_day = ok_json(
        send(app, Method::GET, "/v1/usage?group_by=day", Some(&key), None).await,
        200,
    )
    .await;
    assert_eq!(by_day["data"].as_array().unwrap().len(), 1, "{by_day}");
    let e = assert_error(
        send(
            app,
            Method::GET,
            "/v1/usage?group_by=color",
            Some(&key),
            None,
        )
        .await,
        400,
        "invalid_group_by",
    )
    .await;
    assert_eq!(e["error"]["param"], "group_by");
}

#[tokio::test]
async fn a_queued_batch_stops_at_the_budget_and_resumes_when_it_is_raised() {
    let t = tenants(|c| {
        c.worker.enabled = false;
        c.metrics.price_per_device_second = 1000.0;
    })
    .await;
    let app = &t.app;
    // A budget the first image passes: its cost is known only once made.
    let key = project_with_key(
        app,
        &t.admin,
        "budget",
        json!({"monthly_budget": 0.000001}),
        &["generate"],
    )
    .await;
    for i in 0..4 {
        let mut body = small_request(&format!("batch {i}"));
        body["tier"] = json!("batch");
        ok_json(
            send(app, Method::POST, "/v1/jobs", Some(&key), Some(body)).await,
            202,
        )
        .await;
    }
    // The worker runs one, sees the budget spent, holds the rest.
    assert_eq!(app.run_pending_jobs().await, 1);
    let jobs = ok_json(
        send(app, Method::GET, "/v1/jobs", Some(&key), None).await,
        200,
    )
    .await;
    let held: Vec<&Value> = jobs["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["status"] == "queued")
        .collect();
    assert_eq!(held.len(), 3);
    assert!(
        held.iter().all(|j| j["hold_reason"] == "budget_exhausted"),
        "{jobs}"
    );
    // New work is refused outright.
    let e = assert_error(
        send(
            app,
            Method::POST,
            "/v1/jobs",
            Some(&key),
            Some(small_request("more")),
        )
        .await,
        429,
        "insufficient_quota",
    )
    .await;
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("monthly_budget"),
        "{e}"
    );
    // Another project is not held.
    ok_json(
        send(
            app,
            Method::POST,
            "/v1/jobs",
            Some(&t.alpha),
            Some(small_request("alpha")),
        )
        .await,
        202,
    )
    .await;
    assert_eq!(app.run_pending_jobs().await, 1);

    // Raised: the held jobs run, each once.
    let raise = json!({"limits": {"monthly_budget": 1000000.0}});
    ok_json(
        send(
            app,
            Method::PATCH,
            "/v1/admin/projects/budget",
            Some(&t.admin),
            Some(raise),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(app.run_pending_jobs().await, 3);
    let jobs = ok_json(
        send(app, Method::GET, "/v1/jobs", Some(&key), None).await,
        200,
    )
    .await;
    let all = jobs["data"].as_array().unwrap();
    assert!(
        all.iter()
            .all(|j| j["status"] == "succeeded" && j["hold_reason"].is_null()),
        "{jobs}"
    );
    let usage = ok_json(
        send(app, Method::GET, "/v1/usage", Some(&key), None).await,
        200,
    )
    .await;
    assert_eq!(usage["total"]["images"], 4);
    let ids: std::collections::HashSet<&str> = all
        .iter()
        .flat_map(|j| {
            j["image_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_str().unwrap())
        })
        .collect();
    assert_eq!(ids.len(), 4, "no image made twice");
}

#[tokio::test]
async fn the_soft_limit_is_audited_once_and_counted_without_refusing() {
    let t = tenants(|c| c.worker.enabled = false).await;
    let app = &t.app;
    let limits = json!({"images_per_day": 10, "soft_limit_percent": 50});
    let key = project_with_key(app, &t.admin, "soft", limits, &["generate"]).await;
    let r = send(
        app,
        Method::PATCH,
        "/v1/admin/projects/soft",
        Some(&t.admin),
        Some(json!({"billable": true})),
    )
    .await;
    ok_json(r, 200).await;
    for i in 0..7 {
        let body = small_request(&format!("soft {i}"));
        ok_json(
            send(app, Method::POST, "/v1/jobs", Some(&key), Some(body)).await,
            202,
        )
        .await;
        app.run_pending_jobs().await;
    }
    let path = "/v1/admin/audit?type=project.soft_limit_reached&project=soft";
    let audit = ok_json(
        send(app, Method::GET, path, Some(&t.admin), None).await,
        200,
    )
    .await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 1, "{audit}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("easel_quota_soft_limit_total{project=\"soft\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("easel_project_images_total{project=\"soft\"} 7"),
        "{metrics}"
    );
}
