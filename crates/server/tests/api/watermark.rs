//! `POST /v1/watermark/detect`: a marked image is traced back to its stored
//! record (for those allowed to see it); bad uploads are 4xx with codes.
//!
//! The image row is inserted through the store with the watermark id, so
//! these tests do not depend on the worker's post-processing.

use easel_core::{ImageId, OutputFormat, RgbImage};
use easel_media::{Metadata, WatermarkPayload};
use easel_server::auth::Scope;
use easel_store::NewImage;
use serde_json::Value;

use crate::helpers::{TestApp, assert_error, png_bomb_header, small_request, spawn_app_with};

/// Keys `user` (project `default`) and `other` (project `other`), both
/// generate, and `ops` (admin), worker off.
async fn app_with_keys() -> (TestApp, [String; 3]) {
    let (keys, mut auth) = crate::helpers::auth_with_keys(&[
        ("user", &[Scope::Generate]),
        ("other", &[Scope::Generate]),
        ("ops", &[Scope::Admin]),
    ]);
    // `other` acts in another project: it must not see `user`'s images.
    auth.api_keys[1].project = "other".parse().unwrap();
    let [user, other, ops]: [String; 3] = keys.try_into().unwrap();
    let app = spawn_app_with(move |c| {
        c.auth = auth;
        c.worker.enabled = false;
    })
    .await;
    (app, [user, other, ops])
}

/// A 256×256 photograph (a natural test picture of the media crate).
fn picture() -> RgbImage {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../media/tests/fixtures/natural/coffee.jpg");
    let bytes = std::fs::read(path).unwrap();
    let decoded = easel_media::decode_untrusted(&bytes, &Default::default()).unwrap();
    easel_media::resize(&decoded, 256, 256).unwrap()
}

fn encoded(image: &RgbImage, format: OutputFormat) -> Vec<u8> {
    easel_media::encode(image, format, Some(92), &Metadata::none()).unwrap()
}

/// Submits a job as `key` and stores one image of it carrying `watermark`.
async fn stored_image(app: &TestApp, key: &str, watermark: &str) -> (String, String) {
    let job: Value = app
        .client
        .post(app.url("/v1/jobs"))
        .bearer_auth(key)
        .json(&small_request("a lighthouse at dusk"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id: easel_core::JobId = job["id"].as_str().unwrap().parse().unwrap();
    let db = app.jobs.db();
    let params = db.get_job(job_id).await.unwrap().params;
    let id = ImageId::new();
    let image = NewImage {
        id,
        index_in_job: 0,
        prompt: params.prompt.clone(),
        negative_prompt: params.negative_prompt.clone(),
        seed: params.image_seed(0),
        params: params.clone(),
        model: params.model.clone(),
        model_hash: "blake3:00ff".into(),
        sampler: "euler".into(),
        schedule: "karras".into(),
        steps: params.steps,
        guidance: params.guidance_scale,
        width: 256,
        height: 256,
        format: OutputFormat::Png,
        byte_size: 1,
        sha256: "00".repeat(32),
        object_key: format!("images/{id}.png"),
        timings: vec![],
        warnings: vec![],
        watermark_id: Some(watermark.into()),
        perceptual_hash: None,
        moderation: None,
        flags: vec![],
        quality_score: None,
        device_seconds: 0.0,
        cost: 0.0,
        request_id: None,
    };
    db.insert_image(job_id, image).await.unwrap();
    (id.to_string(), job_id.to_string())
}

async fn detect(app: &TestApp, key: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url("/v1/watermark/detect"))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn detect_form(
    app: &TestApp,
    key: &str,
    form: reqwest::multipart::Form,
) -> reqwest::Response {
    app.client
        .post(app.url("/v1/watermark/detect"))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn detect_ok(app: &TestApp, key: &str, content_type: &str, body: Vec<u8>) -> Value {
    let r = detect(app, key, content_type, body).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn a_marked_image_is_traced_to_its_record_for_its_owner_and_admins_only() {
    let (app, [user, other, ops]) = app_with_keys().await;
    let payload = WatermarkPayload {
        server: 0x00e5,
        image: 0x0000_2a2a,
    };
    let (image_id, job_id) = stored_image(&app, &user, &payload.id()).await;
    let marked = easel_media::embed_watermark(&picture(), payload).unwrap();
    let png = encoded(&marked, OutputFormat::Png);

    let found = detect_ok(&app, &user, "image/png", png.clone()).await;
    assert_eq!(found["watermarked"], true, "{found}");
    assert_eq!(found["watermark_id"], "00e500002a2a");
    assert!(found["confidence"].as_f64().unwrap() > 0.5, "{found}");
    assert_eq!(found["method"], "easelmark-v1");
    assert!(
        (found["transform"]["scale"].as_f64().unwrap() - 1.0).abs() < 0.01,
        "{found}"
    );
    assert_eq!(found["image"]["id"], image_id.as_str());
    assert_eq!(
        found["image"]["url"],
        format!("/v1/images/{image_id}").as_str()
    );
    assert_eq!(found["image"]["job_id"], job_id.as_str());
    assert_eq!(found["image"]["model_hash"], "blake3:00ff");
    assert!(found["image"]["created_at"].as_i64().unwrap() > 0);

    let admin = detect_ok(&app, &ops, "image/png", png.clone()).await;
    assert_eq!(admin["image"]["id"], image_id.as_str());
    // Another user learns the mark is there, not whose image it is.
    let stranger = detect_ok(&app, &other, "image/png", png.clone()).await;
    assert_eq!(stranger["watermarked"], true);
    assert_eq!(stranger["image"], Value::Null);

    // The same image as JPEG and through a multipart form.
    let jpeg = encoded(&marked, OutputFormat::Jpeg);
    let via_jpeg = detect_ok(&app, &user, "image/jpeg", jpeg).await;
    assert_eq!(via_jpeg["watermark_id"], "00e500002a2a", "{via_jpeg}");
    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(png)
            .file_name("x.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let r = detect_form(&app, &user, form).await;
    assert_eq!(r.status(), 200);
    let via_form: Value = r.json().await.unwrap();
    assert_eq!(via_form["image"]["id"], image_id.as_str());

    // Cropped at an offset and shrunk: the search says how.
    let mut cropped = Vec::new();
    for y in 20..236u32 {
        let row = (y * 256 + 30) as usize * 3;
        cropped.extend_from_slice(&marked.pixels[row..row + 216 * 3]);
    }
    let cropped = RgbImage {
        width: 216,
        height: 216,
        pixels: cropped,
    };
    let small = easel_media::resize(&cropped, 162, 162).unwrap();
    let found = detect_ok(&app, &user, "image/png", encoded(&small, OutputFormat::Png)).await;
    assert_eq!(found["watermark_id"], "00e500002a2a", "{found}");
    assert_eq!(found["image"]["id"], image_id.as_str());
    let scale = found["transform"]["scale"].as_f64().unwrap();
    assert!((scale - 0.75).abs() < 0.02, "{found}");
}

#[tokio::test]
async fn an_unmarked_image_and_an_unknown_mark_find_nothing() {
    let (app, [user, _other, ops]) = app_with_keys().await;
    let plain = detect_ok(
        &app,
        &ops,
        "image/png",
        encoded(&picture(), OutputFormat::Png),
    )
    .await;
    assert_eq!(
        plain,
        serde_json::json!({
            "watermarked": false, "watermark_id": null, "confidence": null,
            "method": null, "transform": null, "image": null, "c2pa": null, "c2pa_error": null,
        })
    );
    let payload = WatermarkPayload {
        server: 1,
        image: 2,
    };
    let marked = easel_media::embed_watermark(&picture(), payload).unwrap();
    let unknown = detect_ok(
        &app,
        &user,
        "image/webp",
        encoded(&marked, OutputFormat::Webp),
    )
    .await;
    assert_eq!(unknown["watermarked"], true, "{unknown}");
    assert_eq!(unknown["watermark_id"], payload.id());
    assert_eq!(unknown["image"], Value::Null);
}

#[tokio::test]
async fn bad_uploads_are_refused_with_codes_naming_the_field() {
    let (app, [user, ..]) = app_with_keys().await;
    let png = encoded(&picture(), OutputFormat::Png);

    let body = assert_error(
        detect(&app, &user, "image/png", vec![]).await,
        400,
        "missing_image",
    )
    .await;
    assert_eq!(body["error"]["param"], "image");
    let form = reqwest::multipart::Form::new().text("file", "nope");
    let r = detect_form(&app, &user, form).await;
    assert_error(r, 400, "missing_image").await;

    let body = assert_error(
        detect(&app, &user, "image/png", b"this is not an image".to_vec()).await,
        400,
        "invalid_image",
    )
    .await;
    assert_eq!(body["error"]["param"], "image");
    let truncated = png[..png.len() / 2].to_vec();
    assert_error(
        detect(&app, &user, "image/png", truncated).await,
        400,
        "invalid_image",
    )
    .await;

    let body = assert_error(
        detect(&app, &user, "image/png", png_bomb_header(30_000, 30_000)).await,
        400,
        "image_too_large",
    )
    .await;
    assert_eq!(body["error"]["param"], "image");

    // Too small to hold a readable mark: said so, not "not watermarked".
    let tiny = RgbImage {
        width: 80,
        height: 300,
        pixels: vec![128; 80 * 300 * 3],
    };
    let body = assert_error(
        detect(&app, &user, "image/png", encoded(&tiny, OutputFormat::Png)).await,
        400,
        "image_too_small",
    )
    .await;
    assert_eq!(body["error"]["param"], "image");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("96"),
        "{body}"
    );

    assert_error(
        detect(&app, &user, "text/plain", png.clone()).await,
        415,
        "unsupported_media_type",
    )
    .await;
    let r = app
        .client
        .post(app.url("/v1/watermark/detect"))
        .header("content-type", "image/png")
        .body(png)
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "missing_api_key").await;
}

#[tokio::test]
async fn a_body_over_the_server_limit_is_413() {
    let (keys, auth) = crate::helpers::auth_with_keys(&[("user", &[Scope::Generate])]);
    let user = keys[0].clone();
    let app = spawn_app_with(move |c| {
        c.auth = auth;
        c.server.body_limit_bytes = 64 * 1024;
    })
    .await;
    let big = vec![0u8; 200 * 1024];
    assert_error(
        detect(&app, &user, "image/png", big).await,
        413,
        "payload_too_large",
    )
    .await;
}
