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
