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

fn solid_png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    let image = easel_core::RgbImage {
        width,
        height,
        pixels: rgb.repeat((width * height) as usize),
    };
    easel_media::encode(
        &image,
        easel_core::OutputFormat::Png,
        None,
        &easel_media::Metadata::none(),
    )
    .unwrap()
}

async fn edit_with(
    app: &crate::helpers::TestApp,
    images: &[Vec<u8>],
    mask: Option<Vec<u8>>,
) -> reqwest::Response {
    let part = |bytes: Vec<u8>| {
        reqwest::multipart::Part::bytes(bytes)
            .file_name("input.png")
            .mime_str("image/png")
            .unwrap()
    };
    let mut form = reqwest::multipart::Form::new();
    for image in images {
        form = form.part("image[]", part(image.clone()));
    }
    if let Some(mask) = mask {
        form = form.part("mask", part(mask));
    }
    let form = form
        .text("prompt", "two things side by side")
        .text("model", MODEL)
        .text("size", "16x16")
        .text("steps", "20")
        .text("strength", "0.1")
        .text("response_format", "b64_json");
    app.client
        .post(app.url("/v1/images/edits"))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn several_images_are_edited_as_one_grid_in_the_order_sent() {
    let app = spawn_app().await;
    let red = solid_png(20, 20, [230, 20, 20]);
    let blue = solid_png(10, 30, [20, 20, 230]);
    let r = edit_with(&app, &[red.clone(), blue.clone()], None).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let body: Value = r.json().await.unwrap();
    let png = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    let out = easel_media::decode_untrusted(&png, &Default::default()).unwrap();
    // At strength 0.1 the grid shows through: red on the left, blue on
    // the right.
    let mean = |x0: u32, x1: u32, channel: usize| {
        let mut sum = 0.0;
        let mut n = 0.0;
        for y in 0..out.height {
            for x in x0..x1 {
                sum += f64::from(out.pixels[((y * out.width + x) * 3) as usize + channel]);
                n += 1.0;
            }
        }
        sum / n
    };
    let half = out.width / 2;
    assert!(mean(0, half, 0) > mean(0, half, 2) + 60.0, "left is red");
    assert!(
        mean(half, out.width, 2) > mean(half, out.width, 0) + 60.0,
        "right is blue"
    );

    // More than 16, or a mask with several: refused, nothing stored.
    let many = vec![red.clone(); 17];
    let err =
        crate::helpers::assert_error(edit_with(&app, &many, None).await, 400, "too_many_images")
            .await;
    assert!(
        err["error"]["message"].as_str().unwrap().contains("16"),
        "{err}"
    );
    let err = crate::helpers::assert_error(
        edit_with(&app, &[red, blue], Some(left_half_transparent(20, 20))).await,
        400,
        "unsupported_parameter",
    )
    .await;
    assert_eq!(err["error"]["param"], "mask", "{err}");
    assert_eq!(app.count_rows("jobs").await, 1);
}

/// `POST /v1/images/variations` with one image and text fields.
async fn vary(
    app: &crate::helpers::TestApp,
    image: Vec<u8>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(image)
            .file_name("photo.png")
            .mime_str("image/png")
            .unwrap(),
    );
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    app.client
        .post(app.url("/v1/images/variations"))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_image_that_records_no_prompt_is_varied_with_an_empty_prompt() {
    let app = spawn_app().await;
    // A plain PNG: no `parameters` text, so no recorded prompt.
    let plain = png_image(16, 16);
    assert!(easel_media::read_png_text(&plain).unwrap().is_empty());
    let r = vary(
        &app,
        plain,
        &[("size", "16x16"), ("steps", "2"), ("seed", "4")],
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let body: Value = r.json().await.unwrap();
    let record: Value = app
        .get_image(body["data"][0]["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(record["prompt"], "", "{record}");
    assert!((record["strength"].as_f64().unwrap() - 0.6).abs() < 1e-6);
    let job: Value = app
        .get_job(body["job_id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(job["params"]["prompt"], "");

    // An image Easel made is varied with the prompt it records.
    let made: Value = app
        .generate(&crate::helpers::small_request("a green pear"))
        .await
        .json()
        .await
        .unwrap();
    let made = base64::engine::general_purpose::STANDARD
        .decode(made["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    let r = vary(&app, made, &[("size", "16x16"), ("steps", "2")]).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let body: Value = r.json().await.unwrap();
    let record: Value = app
        .get_image(body["data"][0]["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(record["prompt"], "a green pear");
}
