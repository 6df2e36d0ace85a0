//! Each bad input of the server issue: a 4xx with a stable code in OpenAI's
//! error shape, and nothing stored half-way (rows and files counted).

use serde_json::{Value, json};

use crate::helpers::{
    MODEL, TestApp, assert_error, png_bomb_header, png_image, small_request, spawn_app,
};

/// Asserts that the request left no job, image row or image file behind.
async fn assert_nothing_stored(app: &TestApp) {
    assert_eq!(app.count_jobs().await, 0, "no job row");
    assert_eq!(app.count_images().await, 0, "no image row");
    assert_eq!(app.count_image_files().await, 0, "no image file");
}

fn with(field: &str, value: Value) -> Value {
    let mut req = small_request("a red apple");
    req[field] = value;
    req
}

#[tokio::test]
async fn each_invalid_parameter_is_a_400_with_its_code_and_nothing_is_stored() {
    let app = spawn_app().await;
    let cases: Vec<(Value, &str, &str)> = vec![
        (with("size", json!("513x512")), "invalid_size", "size"),
        (with("size", json!("big")), "invalid_size", "size"),
        (with("size", json!("2048x2048")), "invalid_size", "size"),
        (with("n", json!(0)), "invalid_n", "n"),
        (with("n", json!(11)), "invalid_n", "n"),
        (with("prompt", json!("")), "invalid_prompt", "prompt"),
        (
            with("prompt", json!("   \n\t ")),
            "invalid_prompt",
            "prompt",
        ),
        (with("sampler", json!("plms")), "invalid_sampler", "sampler"),
        (with("steps", json!(0)), "invalid_steps", "steps"),
        (with("steps", json!(151)), "invalid_steps", "steps"),
        (
            with("response_format", json!("gif")),
            "invalid_response_format",
            "response_format",
        ),
        (
            with("output_format", json!("gif")),
            "invalid_output_format",
            "output_format",
        ),
        (
            with("output_compression", json!(101)),
            "invalid_output_compression",
            "output_compression",
        ),
    ];
    for (body, code, param) in cases {
        let err = assert_error(app.generate(&body).await, 400, code).await;
        assert_eq!(err["error"]["param"], param, "{err}");
        assert_eq!(err["error"]["type"], "invalid_request_error");
        // The job route validates the same way.
        assert_error(app.create_job(&body, None).await, 400, code).await;
    }
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn an_unknown_model_is_model_not_found() {
    let app = spawn_app().await;
    let err = assert_error(
        app.generate(&with("model", json!("dall-e-9"))).await,
        404,
        "model_not_found",
    )
    .await;
    assert!(
        err["error"]["message"].as_str().unwrap().contains(MODEL),
        "names the available models"
    );
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn malformed_json_is_invalid_json() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.url("/v1/images/generations"))
        .header("content-type", "application/json")
        .body("{\"prompt\": \"a cat\",")
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "invalid_json").await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn a_wrong_type_is_invalid_request_body() {
    let app = spawn_app().await;
    let r = app.generate(&with("n", json!("three"))).await;
    assert_error(r, 400, "invalid_request_body").await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn a_wrong_content_type_is_unsupported_media_type() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.url("/v1/images/generations"))
        .header("content-type", "text/plain")
        .body(small_request("a cat").to_string())
        .send()
        .await
        .unwrap();
    assert_error(r, 415, "unsupported_media_type").await;
    // Edits want multipart.
    let r = app
        .client
        .post(app.url("/v1/images/edits"))
        .json(&small_request("a cat"))
        .send()
        .await
        .unwrap();
    assert_error(r, 415, "unsupported_media_type").await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_payload_too_large() {
    let app = crate::helpers::spawn_app_with(|c| c.server.body_limit_bytes = 64 * 1024).await;
    let huge = "a".repeat(100 * 1024);
    let r = app.generate(&with("prompt", json!(huge))).await;
    assert_error(r, 413, "payload_too_large").await;
    let r = app
        .edit(vec![0u8; 100 * 1024], &[("prompt", "a cat")])
        .await;
    assert_error(r, 413, "payload_too_large").await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn an_edit_upload_that_is_not_an_image_is_invalid_image() {
    let app = spawn_app().await;
    let r = app
        .edit(
            b"this is not an image at all".to_vec(),
            &[("prompt", "a cat"), ("model", MODEL), ("size", "16x16")],
        )
        .await;
    assert_error(r, 400, "invalid_image").await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn an_image_claiming_100000_by_100000_pixels_is_refused_before_decoding() {
    let app = spawn_app().await;
    let r = app
        .edit(
            png_bomb_header(100_000, 100_000),
            &[("prompt", "a cat"), ("model", MODEL), ("size", "16x16")],
        )
        .await;
    assert_error(r, 400, "image_too_large").await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn an_edit_without_an_image_or_with_bad_fields_is_refused() {
    let app = spawn_app().await;
    let form = reqwest::multipart::Form::new().text("prompt", "a cat");
    let r = app
        .client
        .post(app.url("/v1/images/edits"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "missing_image").await;
    let r = app.edit(png_image(16, 16), &[("prompt", "   ")]).await;
    assert_error(r, 400, "invalid_prompt").await;
    let r = app
        .edit(png_image(16, 16), &[("prompt", "a cat"), ("n", "lots")])
        .await;
    assert_error(r, 400, "invalid_n").await;
    let r = app
        .edit(png_image(16, 16), &[("prompt", "a cat"), ("strength", "2")])
        .await;
    assert_error(r, 400, "invalid_strength").await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn unknown_images_are_image_not_found() {
    let app = spawn_app().await;
    let unknown = format!("img_{}", "0".repeat(32));
    assert_error(app.get_image(&unknown).await, 404, "image_not_found").await;
    assert_error(app.get_image("job_123").await, 404, "image_not_found").await;
    assert_error(
        app.get(&format!("/v1/images/{unknown}/content")).await,
        404,
        "image_not_found",
    )
    .await;
}

#[tokio::test]
async fn a_forged_link_to_an_unknown_image_is_refused_as_a_bad_signature() {
    let app = spawn_app().await;
    let unknown = format!("img_{}", "0".repeat(32));
    let r = app
        .get(&format!(
            "/v1/images/{unknown}/content?expires=99999999999&sig={}",
            "ab".repeat(32)
        ))
        .await;
    assert_error(r, 403, "invalid_signature").await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let app = spawn_app().await;
    assert_error(app.get("/v1/nothing-here").await, 404, "route_not_found").await;
    let r = app.client.put(app.url("/v1/jobs")).send().await.unwrap();
    assert_error(r, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn unknown_fields_style_and_bad_partial_images_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let mut unknown = small_request("a red apple");
    unknown["frobnicate"] = json!(1);
    let mut no_stream = with("partial_images", json!(2));
    no_stream["stream"] = json!(false);
    let mut too_many = with("partial_images", json!(4));
    too_many["stream"] = json!(true);
    let mut negative = with("partial_images", json!(-1));
    negative["stream"] = json!(true);
    let cases: Vec<(Value, &str, &str, &str)> = vec![
        (unknown, "unsupported_parameter", "body", "frobnicate"),
        (
            with("style", json!("vivid")),
            "unsupported_parameter",
            "style",
            "vivid",
        ),
        (
            with("partial_images", json!(2)),
            "invalid_partial_images",
            "partial_images",
            "stream",
        ),
        (
            no_stream,
            "invalid_partial_images",
            "partial_images",
            "stream",
        ),
        (too_many, "invalid_partial_images", "partial_images", "4"),
        (negative, "invalid_partial_images", "partial_images", "-1"),
    ];
    for (body, code, param, needle) in cases {
        let err = assert_error(app.generate(&body).await, 400, code).await;
        assert_eq!(err["error"]["param"], param, "{err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn an_edit_form_stream_other_than_true_or_false_is_refused() {
    let app = spawn_app().await;
    for value in ["yes", "1", "", "flase"] {
        let r = app
            .edit(png_image(16, 16), &[("prompt", "a cat"), ("stream", value)])
            .await;
        let err = assert_error(r, 400, "invalid_stream").await;
        assert_eq!(err["error"]["param"], "stream", "{err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("true or false"),
            "{err}"
        );
    }
    assert_nothing_stored(&app).await;
    // `false` (in any case) is an ordinary edit.
    let r = app
        .edit(
            png_image(16, 16),
            &[
                ("prompt", "a cat"),
                ("size", "16x16"),
                ("steps", "1"),
                ("stream", "False"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/json",
        "not a stream"
    );
}
