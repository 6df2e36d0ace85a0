//! The AUTOMATIC1111-compatible API (`/sdapi/v1`): the real `webuiapi`
//! client unmodified (tools/webuiapi_check.py), keys over HTTP Basic as
//! A1111 clients send them, per-caller options, and bad input.

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn the_webuiapi_client_works_unmodified() {
    let app = spawn_app().await;
    run_python_check(&app, "webuiapi_check.py", "webuiapi").await;
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[tokio::test]
async fn keys_work_over_http_basic_and_options_are_per_caller() {
    let (key, entry) =
        easel_server::auth::create_key("painter", &[easel_server::auth::Scope::Generate]);
    let (other, other_entry) =
        easel_server::auth::create_key("sketcher", &[easel_server::auth::Scope::Generate]);
    #[derive(serde::Deserialize)]
    struct Wrapper {
        auth: easel_config::AuthConfig,
    }
    let mut auth = toml::from_str::<Wrapper>(&entry).unwrap().auth;
    auth.api_keys.extend(
        toml::from_str::<Wrapper>(&other_entry)
            .unwrap()
            .auth
            .api_keys,
    );
    let app = spawn_app_with(move |c| c.auth = auth).await;
    let get = |auth: String| {
        let app = &app;
        async move {
            app.client
                .get(app.url("/sdapi/v1/options"))
                .header("authorization", auth)
                .send()
                .await
                .unwrap()
        }
    };
    assert_error(
        get(basic("anyone", "easel_sk_wrong")).await,
        401,
        "invalid_api_key",
    )
    .await;
    let mine: Value = get(basic("painter", &key)).await.json().await.unwrap();
    assert!(
        mine["sd_model_checkpoint"]
            .as_str()
            .unwrap()
            .starts_with(MODEL),
        "{mine}"
    );

    // Setting options: validated, and only for this caller.
    let post = |auth: String, body: Value| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/sdapi/v1/options"))
                .header("authorization", auth)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let r = post(basic("p", &key), json!({"show_progress_every_n_steps": 3})).await;
    assert_eq!(r.status(), 200);
    let r = post(
        basic("p", &key),
        json!({"sd_model_checkpoint": "no-such-model [0123456789]"}),
    )
    .await;
    assert_error(r, 404, "model_not_found").await;
    let r = post(basic("p", &key), json!({"sd_vae": "auto"})).await;
    let body = assert_error(r, 400, "unsupported_option").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sd_vae"),
        "{body}"
    );
    let mine: Value = get(basic("p", &key)).await.json().await.unwrap();
    assert_eq!(mine["show_progress_every_n_steps"], 3);
    let theirs: Value = get(format!("Bearer {other}")).await.json().await.unwrap();
    assert_eq!(theirs["show_progress_every_n_steps"], 1, "{theirs}");

    // Another caller's interrupt does not reach this caller's task: with
    // nothing running, both answer 200 and change nothing.
    let r = app
        .client
        .post(app.url("/sdapi/v1/interrupt"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn bad_a1111_bodies_get_a_400_naming_the_field_and_store_nothing() {
    let app = spawn_app().await;
    let jobs_before = app.count_rows("jobs").await;
    for (body, code, needle) in [
        (
            json!({"prompt": "x", "sampler_name": "UniPC"}),
            "unsupported_sampler",
            "sampler_name",
        ),
        (
            json!({"prompt": "x", "scheduler": "beta"}),
            "unsupported_scheduler",
            "scheduler",
        ),
        (
            json!({"prompt": "x", "tiling": true}),
            "unsupported_parameter",
            "tiling",
        ),
        (
            json!({"prompt": "x", "frobnicate": 1}),
            "unsupported_parameter",
            "frobnicate",
        ),
        (
            json!({"prompt": "x", "steps": "many"}),
            "invalid_parameter",
            "steps",
        ),
        (json!({"prompt": "x", "width": 16}), "invalid_size", "width"),
        (
            json!({"prompt": "x", "n_iter": 0}),
            "invalid_n_iter",
            "n_iter",
        ),
        (json!({"prompt": "x", "seed": -2}), "invalid_seed", "seed"),
        (
            json!({"prompt": "", "width": 16, "height": 16}),
            "invalid_prompt",
            "prompt",
        ),
        (json!(["not", "an", "object"]), "invalid_body", "object"),
        (
            json!({"prompt": "a (red:99) apple", "width": 16, "height": 16}),
            "invalid_prompt_weight",
            "99",
        ),
        (
            json!({"prompt": "x", "override_settings": {"CLIP_stop_at_last_layers": 13}}),
            "invalid_clip_skip",
            "clip_skip",
        ),
    ] {
        let r = app.post_json("/sdapi/v1/txt2img", &body).await;
        let got = assert_error(r, 400, code).await;
        let message = got["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    for (body, code) in [
        (json!({"prompt": "x"}), "missing_image"),
        (
            json!({"prompt": "x", "init_images": ["%%%"]}),
            "invalid_image",
        ),
        (
            json!({"prompt": "x", "init_images": ["aGVsbG8="]}),
            "invalid_image",
        ),
        (
            json!({"prompt": "x", "init_images": ["a", "b"]}),
            "too_many_images",
        ),
    ] {
        let r = app.post_json("/sdapi/v1/img2img", &body).await;
        assert_error(r, 400, code).await;
    }
    // Masks: another size, latent fills, a blur or padding over the limit.
    use base64::Engine as _;
    let b64 = |png: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(png);
    let image = b64(png_image(16, 16));
    for (extra, code, needle) in [
        (json!({"mask": b64(png_image(8, 8))}), "invalid_mask", "8x8"),
        (
            json!({"mask": image, "inpaint_full_res": true, "inpaint_full_res_padding": 300}),
            "invalid_parameter",
            "inpaint_full_res_padding",
        ),
        (
            json!({"mask": image, "inpainting_fill": 2}),
            "unsupported_parameter",
            "inpainting_fill",
        ),
        (
            json!({"mask": image, "mask_blur": 100}),
            "invalid_parameter",
            "mask_blur",
        ),
        (json!({"mask": "%%%"}), "invalid_image", "mask"),
    ] {
        let mut body = json!({"prompt": "x", "init_images": [image], "width": 16, "height": 16,
                              "inpaint_full_res": false});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let got = assert_error(app.post_json("/sdapi/v1/img2img", &body).await, 400, code).await;
        let message = got["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{extra}: {message}");
    }
    let r = app
        .post_json("/sdapi/v1/png-info", &json!({"image": "aGVsbG8="}))
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        app.count_rows("jobs").await,
        jobs_before,
        "a refused request stored a job"
    );
}

#[tokio::test]
async fn a_weighted_prompt_is_accepted_and_recorded_as_written() {
    let app = spawn_app().await;
    let body = json!({"prompt": "a (red:1.4) [apple] BREAK on a table", "width": 16,
                      "height": 16, "steps": 2, "seed": 5});
    let r: Value = app
        .post_json("/sdapi/v1/txt2img", &body)
        .await
        .json()
        .await
        .unwrap();
    let info: Value = serde_json::from_str(r["info"].as_str().unwrap()).unwrap();
    assert_eq!(info["prompt"], "a (red:1.4) [apple] BREAK on a table");
    assert!(
        info["infotexts"][0]
            .as_str()
            .unwrap()
            .starts_with("a (red:1.4) [apple] BREAK"),
        "{info}"
    );
}

/// The pixels of the first image of a `txt2img` answer.
fn first_pixels(answer: &Value) -> Vec<u8> {
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD
        .decode(answer["images"][0].as_str().unwrap())
        .unwrap();
    easel_media::decode_untrusted(&png, &Default::default())
        .unwrap()
        .pixels
}

#[tokio::test]
async fn an_unclosed_bracket_weights_the_rest_of_the_prompt_as_the_web_ui_does() {
    // The bundled model (the pixel-space fixture draws saturated noise that
    // a 1.1 weight rarely flips). The watermark differs per image; without
    // it equal conditioning gives equal pixels.
    let app = spawn_app_with(|c| {
        c.models = vec![easel_config::ModelEntry {
            name: "emoji".into(),
            path: bundled_model(),
        }];
        c.default_model = Some("emoji".into());
        c.provenance.watermark = false;
    })
    .await;
    let txt2img = |prompt: &str| {
        let body = json!({"prompt": prompt, "width": 32, "height": 32, "steps": 4, "seed": 9});
        let app = &app;
        async move {
            let r = app.post_json("/sdapi/v1/txt2img", &body).await;
            assert_eq!(r.status(), 200, "{body}");
            r.json::<Value>().await.unwrap()
        }
    };
    let unclosed = txt2img("a (red apple on a table").await;
    // Accepted, and recorded as written, brackets and all.
    let info: Value = serde_json::from_str(unclosed["info"].as_str().unwrap()).unwrap();
    assert_eq!(info["prompt"], "a (red apple on a table");
    let jobs: Value = app.list_jobs("limit=1").await.json().await.unwrap();
    assert_eq!(
        jobs["data"][0]["params"]["prompt"],
        "a (red apple on a table"
    );
    let image: Value = app
        .get_image(jobs["data"][0]["image_ids"][0].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(image["prompt"], "a (red apple on a table");
    assert!(
        image["parameters"]
            .as_str()
            .unwrap()
            .starts_with("a (red apple on a table\n"),
        "{image}"
    );
    // The `(` runs to the end: the same picture as the bracket closed
    // there, not the one of the brackets read as text, nor the unweighted one.
    let pixels = first_pixels(&unclosed);
    let closed = first_pixels(&txt2img("a (red apple on a table)").await);
    assert_eq!(pixels, closed, "an unclosed ( weights the rest ×1.1");
    let literal = first_pixels(&txt2img(r"a \(red apple on a table").await);
    assert_ne!(pixels, literal, "the ( is not read as text");
    let plain = first_pixels(&txt2img("a red apple on a table").await);
    assert_ne!(pixels, plain, "the rest is weighted");
}

#[tokio::test]
async fn only_masked_inpainting_redraws_around_the_mask_and_keeps_the_rest_exactly() {
    use base64::Engine as _;
    let b64 = |png: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(png);
    // The watermark would touch every pixel (and enlarge the picture).
    let app = crate::helpers::spawn_app_with(|c| c.provenance.watermark = false).await;
    let (w, h) = (40u32, 32u32);
    let picture = png_image(w, h);
    let inside = |x: u32, y: u32| (24..32).contains(&x) && (8..16).contains(&y);
    let mask = easel_core::RgbImage {
        width: w,
        height: h,
        pixels: (0..w * h)
            .flat_map(|i| {
                let v = if inside(i % w, i / w) { 255 } else { 0 };
                [v, v, v]
            })
            .collect(),
    };
    let mask = easel_media::encode(
        &mask,
        easel_core::OutputFormat::Png,
        None,
        &easel_media::Metadata::none(),
    )
    .unwrap();
    let body = json!({
        "prompt": "a yellow sun", "init_images": [b64(picture.clone())], "mask": b64(mask),
        "width": 16, "height": 16, "steps": 4, "denoising_strength": 1.0, "seed": 3,
        "mask_blur": 0, "inpainting_fill": 1, "inpaint_full_res_padding": 4,
    });
    let r = app.post_json("/sdapi/v1/img2img", &body).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let answer: Value = r.json().await.unwrap();
    let png = base64::engine::general_purpose::STANDARD
        .decode(answer["images"][0].as_str().unwrap())
        .unwrap();
    let out = easel_media::decode_untrusted(&png, &Default::default()).unwrap();
    let before = easel_media::decode_untrusted(&picture, &Default::default()).unwrap();
    // The initial picture's size, not the generated 16×16.
    assert_eq!((out.width, out.height), (w, h));
    let mut changed_inside = 0;
    for y in 0..h {
        for x in 0..w {
            let i = ((y * w + x) * 3) as usize;
            let (a, b) = (&before.pixels[i..i + 3], &out.pixels[i..i + 3]);
            if inside(x, y) {
                changed_inside += usize::from(a != b);
            } else {
                assert_eq!(a, b, "({x}, {y}) outside the mask changed");
            }
        }
    }
    assert!(
        changed_inside > 32,
        "only {changed_inside} of 64 masked pixels changed"
    );
    let info: Value = serde_json::from_str(answer["info"].as_str().unwrap()).unwrap();
    assert_eq!(info["width"], 16, "{info}");
}
