//! Seeds: one range (0 to 4294967295, or -1 for a random one) and one
//! error (`invalid_seed`) on every route that takes a seed, the JSON routes
//! and the edit form alike; and the `X-Easel-Timeout` header on the form.
//!
//! Regression (issue 13): the JSON routes took an unsigned 64-bit seed, so
//! `-1` failed as `invalid_request_body`, while the edit form parsed a signed
//! one and answered `invalid_seed`.

use serde_json::{Value, json};

use crate::helpers::{MODEL, assert_error, png_image, small_request, spawn_app, spawn_app_with};

/// The message every route gives for this bad seed.
fn range_message(got: &str) -> String {
    format!("seed must be an integer from 0 to 4294967295 or -1 for a random seed, got `{got}`")
}

/// The seed of a response body, checked to be in the range.
fn seed_of(body: &Value) -> u64 {
    let seed = body["seed"].as_u64().unwrap_or_else(|| panic!("{body}"));
    assert!(seed <= u64::from(u32::MAX), "{body}");
    seed
}

#[tokio::test]
async fn a_json_seed_of_minus_one_draws_a_seed_recorded_in_the_job_and_its_images() {
    let app = spawn_app().await;
    let mut request = small_request("a red apple");
    request["seed"] = json!(-1);
    request["n"] = json!(2);
    let r = app.generate(&request).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let seed = seed_of(&body);
    let data = body["data"].as_array().unwrap();
    assert_eq!(data[0]["seed"], seed);
    assert_eq!(
        data[1]["seed"],
        u64::from((seed as u32).wrapping_add(1)),
        "image i uses seed + i, within the range"
    );
    let record: Value = app
        .get_image(data[0]["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(record["seed"], seed);
    let job: Value = app
        .get_job(body["job_id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(job["params"]["seed"], seed, "{job}");

    // Each random request draws its own (two equal draws: 1 in 2^32).
    let again: Value = app.generate(&request).await.json().await.unwrap();
    assert_ne!(seed_of(&again), seed);
}

#[tokio::test]
async fn a_job_with_seed_minus_one_is_stored_with_a_concrete_seed() {
    let app = spawn_app_with(|c| c.worker.enabled = false).await;
    let mut request = small_request("a red apple");
    request["seed"] = json!(-1);
    let r = app.create_job(&request, None).await;
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    seed_of(&job["params"]);
    // Absent and null are random too.
    let mut absent = small_request("a red apple");
    absent.as_object_mut().unwrap().remove("seed");
    let mut null = small_request("a red apple");
    null["seed"] = Value::Null;
    for request in [absent, null] {
        let r = app.create_job(&request, None).await;
        assert_eq!(r.status(), 202);
        let job: Value = r.json().await.unwrap();
        seed_of(&job["params"]);
    }
}

#[tokio::test]
async fn the_range_ends_are_seeds() {
    let app = spawn_app_with(|c| c.worker.enabled = false).await;
    for seed in [0, u64::from(u32::MAX)] {
        let mut request = small_request("a red apple");
        request["seed"] = json!(seed);
        let r = app.create_job(&request, None).await;
        assert_eq!(r.status(), 202);
        let job: Value = r.json().await.unwrap();
        assert_eq!(job["params"]["seed"], seed);
    }
}

#[tokio::test]
async fn a_seed_out_of_the_range_is_invalid_seed_with_one_message_on_json_and_form() {
    let app = spawn_app_with(|c| c.worker.enabled = false).await;
    for bad in ["4294967296", "-2", "18446744073709551615"] {
        let expected = range_message(bad);
        let mut request = small_request("x");
        request["seed"] = serde_json::from_str(bad).unwrap();

        let json_route = assert_error(app.generate(&request).await, 400, "invalid_seed").await;
        let jobs_route =
            assert_error(app.create_job(&request, None).await, 400, "invalid_seed").await;
        let form = assert_error(
            app.edit(
                png_image(16, 16),
                &[
                    ("prompt", "x"),
                    ("model", MODEL),
                    ("size", "16x16"),
                    ("seed", bad),
                ],
            )
            .await,
            400,
            "invalid_seed",
        )
        .await;
        for body in [json_route, jobs_route, form] {
            assert_eq!(body["error"]["param"], "seed", "{bad}: {body}");
            assert_eq!(body["error"]["message"], expected, "{bad}: {body}");
        }
    }
    // Not integers: the same code, not a generic body error.
    for bad in [json!(1.5), json!("7"), json!(true)] {
        let mut request = small_request("x");
        request["seed"] = bad.clone();
        let body = assert_error(app.generate(&request).await, 400, "invalid_seed").await;
        assert_eq!(body["error"]["message"], range_message(&bad.to_string()));
    }
    for bad in ["1.5", "abc", ""] {
        let body = assert_error(
            app.edit(png_image(16, 16), &[("prompt", "x"), ("seed", bad)])
                .await,
            400,
            "invalid_seed",
        )
        .await;
        assert_eq!(body["error"]["message"], range_message(bad));
    }
    assert_eq!(app.count_jobs().await, 0);
}

#[tokio::test]
async fn the_edit_form_accepts_minus_one_as_a_random_seed() {
    let app = spawn_app().await;
    let r = app
        .edit(
            png_image(16, 16),
            &[
                ("prompt", "make it blue"),
                ("model", MODEL),
                ("size", "16x16"),
                ("steps", "1"),
                ("seed", "-1"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let seed = seed_of(&body);
    assert_eq!(body["data"][0]["seed"], seed);
}

#[tokio::test]
async fn a_bad_timeout_on_the_edit_form_is_invalid_timeout() {
    let app = spawn_app_with(|c| c.queue.max_timeout_seconds = 600).await;
    let form = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(png_image(16, 16))
                .file_name("input.png")
                .mime_str("image/png")
                .unwrap(),
        )
        .text("prompt", "x");
    let r = app
        .client
        .post(app.url("/v1/images/edits"))
        .header("X-Easel-Timeout", "601")
        .multipart(form)
        .send()
        .await
        .unwrap();
    let body = assert_error(r, 400, "invalid_timeout").await;
    assert_eq!(body["error"]["param"], "X-Easel-Timeout", "{body}");
    assert_eq!(app.count_jobs().await, 0);
}

#[tokio::test]
async fn the_openapi_document_states_the_seed_range() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let seed = &doc["components"]["schemas"]["CreateImageRequest"]["properties"]["seed"];
    assert_eq!(seed["minimum"].as_f64(), Some(-1.0), "{seed}");
    assert_eq!(seed["maximum"].as_f64(), Some(4294967295.0), "{seed}");
    let text = seed["description"].as_str().unwrap_or_default();
    assert!(text.contains("-1") && text.contains("4294967295"), "{seed}");
}
