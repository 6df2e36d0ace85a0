//! `POST /v1/images/generations`, `/v1/images/{id}` and its content.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::helpers::{MODEL, assert_error, small_request, spawn_app};

#[tokio::test]
async fn a_generation_returns_base64_png_and_stores_its_record() {
    let app = spawn_app().await;
    let r = app
        .generate(&json!({
            "model": MODEL, "prompt": "a red apple", "size": "16x16", "steps": 2, "seed": 42, "n": 2
        }))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["created"].as_i64().unwrap() > 0);
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(body["seed"], 42);
    assert_eq!(data[1]["seed"], 43, "image i uses seed + i");
    let png = base64::engine::general_purpose::STANDARD
        .decode(data[0]["b64_json"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    assert!(data[0].get("url").is_none());

    let id = data[0]["id"].as_str().unwrap();
    let record: Value = app.get_image(id).await.json().await.unwrap();
    assert_eq!(record["prompt"], "a red apple");
    assert_eq!(record["seed"], 42);
    assert_eq!(record["steps"], 2);
    // 16×16 is below the watermark's minimum: delivered upscaled by the
    // smallest integer factor that reaches it.
    let side = u64::from(16 * easel_media::WATERMARK_MIN_SIDE.div_ceil(16));
    assert_eq!(
        (record["width"].as_u64(), record["height"].as_u64()),
        (Some(side), Some(side))
    );
    assert_eq!(record["format"], "png");
    assert_eq!(record["bytes"].as_u64().unwrap(), png.len() as u64);
    assert_eq!(record["job_id"], body["job_id"]);
    assert!(
        record["model_hash"]
            .as_str()
            .unwrap()
            .starts_with("blake3:")
    );
    let sha = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&png))
    };
    assert_eq!(record["sha256"], sha);
    assert_eq!(app.count_images().await, 2);
}

#[tokio::test]
async fn a_url_response_is_a_signed_link_that_serves_the_image() {
    let app = spawn_app().await;
    let mut req = small_request("a green square");
    req["response_format"] = json!("url");
    let r = app.generate(&req).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let url = body["data"][0]["url"].as_str().unwrap().to_string();
    assert!(body["data"][0].get("b64_json").is_none());
    assert!(url.contains("expires=") && url.contains("sig="), "{url}");

    let r = app.get(&url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    let bytes = r.bytes().await.unwrap();
    assert!(bytes.starts_with(b"\x89PNG"));

    // Tampered signature, tampered expiry, a link moved to another image.
    let tampered_sig = {
        let (head, sig) = url.rsplit_once("sig=").unwrap();
        let mut sig: Vec<char> = sig.chars().collect();
        sig[0] = if sig[0] == 'a' { 'b' } else { 'a' };
        format!("{head}sig={}", sig.into_iter().collect::<String>())
    };
    assert_error(app.get(&tampered_sig).await, 403, "invalid_signature").await;
    let expires: i64 = url
        .split("expires=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let later = url.replace(
        &format!("expires={expires}"),
        &format!("expires={}", expires + 3600),
    );
    assert_error(app.get(&later).await, 403, "invalid_signature").await;
}

#[tokio::test]
async fn an_expired_link_is_refused() {
    let clock = easel_core::ManualClock::starting_now();
    let app =
        crate::helpers::spawn_app_with_clock(|c| c.urls.ttl_seconds = 3600, clock.shared()).await;
    let mut req = small_request("a yellow star");
    req["response_format"] = json!("url");
    let body: Value = app.generate(&req).await.json().await.unwrap();
    let url = body["data"][0]["url"].as_str().unwrap().to_string();
    clock.advance(std::time::Duration::from_secs(3599));
    assert_eq!(
        app.get(&url).await.status(),
        200,
        "valid until its last second"
    );
    clock.advance(std::time::Duration::from_secs(2));
    assert_error(app.get(&url).await, 403, "link_expired").await;
}

#[tokio::test]
async fn output_compression_on_a_lossless_format_is_refused() {
    let app = spawn_app().await;
    for format in ["png", "webp"] {
        let mut req = small_request("a cat");
        req["output_format"] = json!(format);
        req["output_compression"] = json!(50);
        let body = assert_error(app.generate(&req).await, 400, "unsupported_parameter").await;
        assert_eq!(body["error"]["param"], "output_compression", "{body}");
    }
}

#[tokio::test]
async fn jpeg_and_webp_outputs_have_their_formats() {
    let app = spawn_app().await;
    for (format, magic) in [("jpeg", &b"\xff\xd8"[..]), ("webp", &b"RIFF"[..])] {
        let mut req = small_request("a cat");
        req["output_format"] = json!(format);
        if format == "jpeg" {
            req["output_compression"] = json!(80);
        }
        let body: Value = app.generate(&req).await.json().await.unwrap();
        assert_eq!(body["output_format"], format);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body["data"][0]["b64_json"].as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(magic), "{format}");
    }
}

#[tokio::test]
async fn image_content_without_a_link_is_served_when_auth_is_off() {
    let app = spawn_app().await;
    let body: Value = app
        .generate(&small_request("a tree"))
        .await
        .json()
        .await
        .unwrap();
    let id = body["data"][0]["id"].as_str().unwrap();
    let r = app.get(&format!("/v1/images/{id}/content")).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_generation_stores_the_job_as_succeeded() {
    let app = spawn_app().await;
    let body: Value = app
        .generate(&small_request("a boat"))
        .await
        .json()
        .await
        .unwrap();
    let job: Value = app
        .get_job(body["job_id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["tier"], "realtime");
    assert_eq!(job["image_ids"][0], body["data"][0]["id"]);
}

/// Steps of a finished generation as its job and its first image record them.
async fn recorded_steps(app: &crate::helpers::TestApp, body: &Value) -> (Value, Value) {
    let r = app.generate(body).await;
    assert_eq!(r.status(), 200, "{body}");
    let answer: Value = r.json().await.unwrap();
    let job: Value = app
        .get_job(answer["job_id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let record: Value = app
        .get_image(answer["data"][0]["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    (job["params"]["steps"].clone(), record["steps"].clone())
}

#[tokio::test]
async fn each_quality_preset_sets_the_steps_its_job_and_images_use() {
    let app = spawn_app().await;
    let model: Value = app
        .get(&format!("/v1/models/{MODEL}"))
        .await
        .json()
        .await
        .unwrap();
    let default = model["defaults"]["steps"].as_u64().unwrap();
    // Below 2 the low preset would equal the default and prove nothing.
    assert!(default >= 2, "the fixture's default steps: {default}");
    for (quality, want) in [
        ("low", default / 2),
        ("medium", default),
        ("standard", default),
        ("auto", default),
        ("high", (default * 2).min(150)),
        ("hd", (default * 2).min(150)),
    ] {
        let mut body = small_request("a red apple");
        body.as_object_mut().unwrap().remove("steps");
        body["quality"] = json!(quality);
        let (job, record) = recorded_steps(&app, &body).await;
        assert_eq!(job, want, "quality {quality}: the job's steps");
        assert_eq!(record, want, "quality {quality}: the image's steps");
    }
    // `auto` leaves explicit steps alone; any other preset with steps, or
    // an unknown preset, is refused naming `quality`.
    let mut body = small_request("a red apple");
    body["quality"] = json!("auto");
    assert_eq!(recorded_steps(&app, &body).await, (json!(2), json!(2)));
    let jobs = app.count_jobs().await;
    body["quality"] = json!("high");
    let err = assert_error(app.generate(&body).await, 400, "conflicting_parameters").await;
    assert_eq!(err["error"]["param"], "quality", "{err}");
    body.as_object_mut().unwrap().remove("steps");
    body["quality"] = json!("ultra");
    let err = assert_error(app.generate(&body).await, 400, "invalid_quality").await;
    assert_eq!(err["error"]["param"], "quality", "{err}");
    assert_eq!(
        app.count_jobs().await,
        jobs,
        "a refused request stored a job"
    );
}

/// The `user`, `end_user` of a job and `end_user` of its first image, for a
/// generation and a queued job sent with `key` (or none).
async fn users_recorded(
    app: &crate::helpers::TestApp,
    key: Option<&str>,
    user: &str,
) -> Vec<Value> {
    let send = |path: &str, body: Value| {
        let mut req = app.client.post(app.url(path)).json(&body);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        req.send()
    };
    let get = |path: String| {
        let mut req = app.client.get(app.url(&path));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let mut body = small_request("a red apple");
    body["user"] = json!(user);
    let r = send("/v1/images/generations", body.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    let job = get(format!("/v1/jobs/{}", answer["job_id"].as_str().unwrap())).await;
    let image = get(format!(
        "/v1/images/{}",
        answer["data"][0]["id"].as_str().unwrap()
    ))
    .await;
    // The gallery shows the image's record, `end_user` included.
    let gallery = get("/v1/images".into()).await;
    let listed = gallery["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == image["id"])
        .expect("the image is in the gallery")
        .clone();
    // A queued job (POST /v1/jobs) records it too.
    let r = send("/v1/jobs", body).await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let queued: Value = r.json().await.unwrap();
    vec![
        job["user"].clone(),
        job["end_user"].clone(),
        image["end_user"].clone(),
        listed["end_user"].clone(),
        queued["end_user"].clone(),
    ]
}

#[tokio::test]
async fn the_requests_user_is_recorded_with_its_job_and_images_with_keys_on_or_off() {
    // Keys off: the request's `user` is the job's user and its end user.
    let app = spawn_app().await;
    assert_eq!(
        users_recorded(&app, None, "end-user-7").await,
        vec![json!("end-user-7"); 5]
    );

    // Keys on: the job's user is the key's name, the end user is still
    // the request's `user`, on the job and on its images.
    use easel_server::auth::Scope;
    let (keys, auth) =
        crate::helpers::auth_with_keys(&[("painter", &[Scope::Generate, Scope::Read])]);
    let app = crate::helpers::spawn_app_with(move |c| c.auth = auth).await;
    let mut recorded = users_recorded(&app, Some(&keys[0]), "end-user-7").await;
    assert_eq!(recorded.remove(0), "painter", "the job's user is the key");
    assert_eq!(recorded, vec![json!("end-user-7"); 4]);

    // Without one (or an empty one), nothing is recorded.
    let r: Value = app
        .client
        .post(app.url("/v1/images/generations"))
        .bearer_auth(&keys[0])
        .json(&json!({"prompt": "a boat", "size": "16x16", "steps": 1, "user": ""}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job: Value = app
        .client
        .get(app.url(&format!("/v1/jobs/{}", r["job_id"].as_str().unwrap())))
        .bearer_auth(&keys[0])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["end_user"], Value::Null, "{job}");
    assert_eq!(job["user"], "painter");
}
