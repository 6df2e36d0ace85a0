//! `POST /v1/images/edits`: image-to-image from a multipart upload.

use base64::Engine as _;
use serde_json::Value;

use crate::helpers::{MODEL, png_image, spawn_app};

#[tokio::test]
async fn an_edit_returns_an_image_of_the_requested_size() {
    let app = spawn_app().await;
    // A 48x40 upload is resized to the 16x16 output.
    let r = app
        .edit(
            png_image(48, 40),
            &[
                ("prompt", "make it blue"),
                ("model", MODEL),
                ("size", "16x16"),
                ("steps", "2"),
                ("strength", "0.5"),
                ("seed", "3"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["size"], "16x16");
    let png = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let record: Value = app
        .get_image(body["data"][0]["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert!((record["strength"].as_f64().unwrap() - 0.5).abs() < 1e-6);
    assert_eq!(app.count_images().await, 1);
    // The stored input is removed once the job is done: only the output remains.
    assert_eq!(app.count_image_files().await, 1);
}

#[tokio::test]
async fn an_edit_can_answer_with_a_url() {
    let app = spawn_app().await;
    let r = app
        .edit(
            png_image(16, 16),
            &[
                ("prompt", "a cat"),
                ("size", "16x16"),
                ("steps", "1"),
                ("response_format", "url"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let url = body["data"][0]["url"].as_str().unwrap();
    assert_eq!(app.get(url).await.status(), 200);
}

/// An RGBA PNG whose left half is transparent (OpenAI: redraw it).
fn left_half_transparent(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        let pixels: Vec<u8> = (0..width * height)
            .flat_map(|i| [0, 0, 0, if i % width < width / 2 { 0 } else { 255 }])
            .collect();
        writer.write_image_data(&pixels).unwrap();
    }
    out
}

async fn masked_edit(app: &crate::helpers::TestApp, mask: Vec<u8>) -> reqwest::Response {
    let part = |bytes: Vec<u8>, name: &str| {
        reqwest::multipart::Part::bytes(bytes)
            .file_name(name.to_string())
            .mime_str("image/png")
            .unwrap()
    };
    let form = reqwest::multipart::Form::new()
        .part("image", part(png_image(16, 16), "input.png"))
        .part("mask", part(mask, "mask.png"))
        .text("prompt", "a yellow sun")
        .text("model", MODEL)
        .text("size", "16x16")
        .text("steps", "2");
    app.client
        .post(app.url("/v1/images/edits"))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_masked_edit_is_recorded_and_leaves_no_inputs_behind() {
    let app = spawn_app().await;
    let r = masked_edit(&app, left_half_transparent(16, 16)).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let job: Value = app
        .get(&format!("/v1/jobs/{}", body["job_id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(job["params"]["masked"], true, "{job}");
    // The initial image and the mask are removed once the job is done.
    assert_eq!(app.count_image_files().await, 1);
}

#[tokio::test]
async fn a_mask_without_alpha_or_of_another_size_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let r = masked_edit(&app, png_image(16, 16)).await;
    let body = crate::helpers::assert_error(r, 400, "invalid_mask").await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("alpha"),
        "{body}"
    );
    let r = masked_edit(&app, left_half_transparent(8, 16)).await;
    let body = crate::helpers::assert_error(r, 400, "invalid_mask").await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("8x16"),
        "{body}"
    );
    assert_eq!(app.count_rows("jobs").await, 0);
    assert_eq!(app.count_image_files().await, 0);
}
