//! What the web UI stands on: the page and its files (`/`, `/ui/…`) with
//! their security headers and revalidation, its settings
//! (`/ui/config.json`), `GET /v1/me`, the gallery's
//! `GET /v1/images`, a job's queue position and per-job previews, and the
//! C2PA half of `POST /v1/watermark/detect`. The UI itself is driven in a
//! real browser by `crates/cli/tests/ui.rs`.

use base64::Engine as _;
use easel_server::auth::Scope;
use serde_json::{Value, json};

use crate::helpers::{assert_error, small_request, spawn_app, spawn_app_with};

#[tokio::test]
async fn the_page_is_served_with_a_strict_policy_and_an_etag() {
    let (keys, auth) = crate::helpers::auth_with_keys(&[("viewer", &[Scope::Read])]);
    let app = spawn_app_with(move |c| c.auth = auth).await;
    // The page itself needs no key (it asks for one); its data does.
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-cache");
    let etag = headers["etag"].to_str().unwrap().to_string();
    let body = page.text().await.unwrap();
    assert!(body.contains("<html"), "{body}");
    assert_eq!(app.get("/v1/jobs").await.status(), 401);
    assert_eq!(
        app.send_with_key(reqwest::Method::GET, "/v1/jobs", &keys[0])
            .await
            .status(),
        200
    );

    // Revalidation: the same file answers 304 with no body.
    let again = app
        .client
        .get(app.url("/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    // Every file the build embedded is reachable under /ui/.
    for (path, bytes) in easel_server::ui::ASSETS {
        let r = app.get(&format!("/ui/{path}")).await;
        assert_eq!(r.status(), 200, "/ui/{path}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), *bytes, "/ui/{path}");
    }
    assert_error(
        app.get("/ui/no-such-file.js").await,
        404,
        "ui_file_not_found",
    )
    .await;
    // An encoded climb reaches the handler as `../Cargo.toml`: refused.
    assert_error(
        app.get("/ui/..%2FCargo.toml").await,
        404,
        "ui_file_not_found",
    )
    .await;
}

#[tokio::test]
async fn the_ui_can_be_turned_off_and_served_from_a_folder() {
    let off = spawn_app_with(|c| c.server.ui = false).await;
    assert_error(off.get("/").await, 404, "route_not_found").await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        "<html>work in progress</html>",
    )
    .unwrap();
    std::fs::write(dir.path().join("app.js"), "export {};").unwrap();
    let path = dir.path().to_path_buf();
    let dev = spawn_app_with(move |c| c.server.ui_dir = Some(path)).await;
    let page = dev.get("/").await.text().await.unwrap();
    assert_eq!(page, "<html>work in progress</html>");
    // Read on every request: an edit shows without a restart.
    std::fs::write(dir.path().join("app.js"), "export const x = 1;").unwrap();
    let r = dev.get("/ui/app.js").await;
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(r.text().await.unwrap(), "export const x = 1;");
}

#[tokio::test]
async fn the_page_config_gives_the_grafana_url_without_a_key() {
    let unset = spawn_app().await;
    let config: Value = unset.get("/ui/config.json").await.json().await.unwrap();
    assert_eq!(config, json!({"grafana_url": null}));

    // Behind keys too (the page reads it before it has one); the trailing
    // slash is dropped, so the page appends `/d/<uid>`.
    let (_keys, auth) = crate::helpers::auth_with_keys(&[("viewer", &[Scope::Read])]);
    let app = spawn_app_with(move |c| {
        c.auth = auth;
        c.server.grafana_url = Some("https://grafana.example.com/ops/".into());
    })
    .await;
    let r = app.get("/ui/config.json").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let config: Value = r.json().await.unwrap();
    assert_eq!(
        config,
        json!({"grafana_url": "https://grafana.example.com/ops"})
    );
}

#[tokio::test]
async fn me_names_the_callers_project_and_scopes() {
    let open = spawn_app().await;
    let me: Value = open.get("/v1/me").await.json().await.unwrap();
    assert_eq!(me["auth"], "open");
    assert_eq!(me["project"], "default");
    assert_eq!(me["scopes"], json!(["generate", "read", "review", "admin"]));

    let (keys, auth) =
        crate::helpers::auth_with_keys(&[("reviewer", &[Scope::Review]), ("ops", &[Scope::Admin])]);
    let app = spawn_app_with(move |c| c.auth = auth).await;
    let me: Value = app
        .send_with_key(reqwest::Method::GET, "/v1/me", &keys[0])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["auth"], "key");
    assert_eq!(me["key_name"], "reviewer");
    assert_eq!(me["scopes"], json!(["read", "review"]), "{me}");
    assert_eq!(me["sees_all_projects"], false);
    let admin: Value = app
        .send_with_key(reqwest::Method::GET, "/v1/me", &keys[1])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(admin["sees_all_projects"], true, "{admin}");
    assert_error(app.get("/v1/me").await, 401, "missing_api_key").await;
}

#[tokio::test]
async fn the_gallery_lists_images_newest_first_with_filters_and_pages() {
    let app = spawn_app().await;
    let mut made = Vec::new();
    for prompt in ["a Red apple", "a green pear", "a red car"] {
        let r = app.generate(&small_request(prompt)).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let job: Value = app.list_jobs("limit=1").await.json().await.unwrap();
        made.push(job["data"][0]["image_ids"][0].as_str().unwrap().to_string());
    }
    made.reverse(); // newest first

    let all: Value = app.get("/v1/images").await.json().await.unwrap();
    let ids: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, made, "{all}");
    assert_eq!(all["has_more"], false);
    let first = &all["data"][0];
    assert_eq!(first["prompt"], "a red car");
    assert!(
        first["parameters"].as_str().unwrap().contains("Steps: 2"),
        "{first}"
    );
    assert_eq!(first["c2pa"], true, "the default config signs every image");
    assert!(first["url"].as_str().unwrap().contains("sig="), "{first}");

    // The prompt filter ignores case; the others narrow as named.
    let red: Value = app.get("/v1/images?prompt=RED").await.json().await.unwrap();
    assert_eq!(red["data"].as_array().unwrap().len(), 2, "{red}");
    let none: Value = app
        .get("/v1/images?model=another-model")
        .await
        .json()
        .await
        .unwrap();
    assert!(none["data"].as_array().unwrap().is_empty());
    let model: Value = app
        .get(&format!("/v1/images?model={}", crate::helpers::MODEL))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(model["data"].as_array().unwrap().len(), 3);
    let created = first["created_at"].as_i64().unwrap();
    let later: Value = app
        .get(&format!("/v1/images?created_after={}", created + 3600))
        .await
        .json()
        .await
        .unwrap();
    assert!(later["data"].as_array().unwrap().is_empty());
    let earlier: Value = app
        .get(&format!("/v1/images?created_before={}", created + 3600))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(earlier["data"].as_array().unwrap().len(), 3);

    // Pages of one walk the same order without repeats.
    let mut walked = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = app
            .get(&format!("/v1/images?limit=1&cursor={cursor}"))
            .await
            .json()
            .await
            .unwrap();
        walked.push(page["data"][0]["id"].as_str().unwrap().to_string());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    assert_eq!(walked, made);

    // Bad queries name their field.
    for (query, code) in [
        ("limit=0", "invalid_limit"),
        ("limit=101", "invalid_limit"),
        ("created_after=yesterday", "invalid_created_after"),
        ("created_before=1.5", "invalid_created_before"),
        ("cursor=not-a-cursor", "invalid_cursor"),
        ("colour=red", "invalid_query"),
    ] {
        assert_error(app.get(&format!("/v1/images?{query}")).await, 400, code).await;
    }
    let long = "x".repeat(501);
    assert_error(
        app.get(&format!("/v1/images?prompt={long}")).await,
        400,
        "invalid_prompt_filter",
    )
    .await;
}

#[tokio::test]
async fn queued_jobs_show_their_place_and_jobs_can_ask_for_previews() {
    let app = spawn_app_with(|c| c.worker.enabled = false).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let mut body = small_request(&format!("job {i}"));
        body["steps"] = json!(4);
        body["preview_every_steps"] = json!(2);
        let r = app.create_job(&body, None).await;
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        let job: Value = r.json().await.unwrap();
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    for (i, id) in ids.iter().enumerate() {
        let job: Value = app.get_job(id).await.json().await.unwrap();
        assert_eq!(job["queue_position"], json!(i + 1), "{job}");
    }
    let listed: Value = app.list_jobs("status=queued").await.json().await.unwrap();
    let positions: Vec<&Value> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| &j["queue_position"])
        .collect();
    assert_eq!(positions, [&json!(3), &json!(2), &json!(1)], "newest first");
    // Cancelling the first moves the others up.
    app.cancel_job(&ids[0]).await;
    let second: Value = app.get_job(&ids[1]).await.json().await.unwrap();
    assert_eq!(second["queue_position"], 1);

    // The previews come on the progress events, every two steps.
    let events = tokio::spawn({
        let client = app.client.clone();
        let url = app.url(&format!("/v1/jobs/{}/events", ids[1]));
        async move {
            let body = client.get(url).send().await.unwrap().text().await.unwrap();
            crate::helpers::parse_sse(&body)
        }
    });
    app.run_pending_jobs().await;
    let events = events.await.unwrap();
    let with_previews: Vec<u64> = events
        .iter()
        .filter(|(name, data)| name == "progress" && data["previews"].is_array())
        .map(|(_, data)| data["step"].as_u64().unwrap())
        .collect();
    assert_eq!(with_previews, [2, 4], "{events:?}");
    let done: Value = app.get_job(&ids[1]).await.json().await.unwrap();
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["queue_position"], Value::Null);

    for (value, why) in [
        (json!(0), "zero"),
        (json!(5), "over steps"),
        (json!(-1), "negative"),
    ] {
        let mut body = small_request("bad previews");
        body["steps"] = json!(4);
        body["preview_every_steps"] = value;
        let r = app.create_job(&body, None).await;
        let err = assert_error(r, 400, "invalid_preview_every_steps").await;
        assert_eq!(err["error"]["param"], "preview_every_steps", "{why}");
    }
}

#[tokio::test]
async fn detection_reads_the_c2pa_manifest_of_a_delivered_image() {
    // The bundled model, whose outputs carry a readable watermark (the
    // pixel-space fixture draws noise).
    let app = spawn_app_with(|c| {
        c.models.push(easel_config::ModelEntry {
            name: "emoji".into(),
            path: crate::helpers::bundled_model(),
        });
    })
    .await;
    let mut body = json!({"model": "emoji", "prompt": "red heart", "seed": 7, "steps": 4});
    body["response_format"] = json!("b64_json");
    let r = app.generate(&body).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let answer: Value = r.json().await.unwrap();
    let png = base64::engine::general_purpose::STANDARD
        .decode(answer["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    let detect = |bytes: Vec<u8>| {
        app.client
            .post(app.url("/v1/watermark/detect"))
            .header("content-type", "image/png")
            .body(bytes)
            .send()
    };
    let read: Value = detect(png.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(read["watermarked"], true, "{read}");
    let c2pa = &read["c2pa"];
    assert_eq!(c2pa["validation_state"], "Trusted", "{read}");
    assert_eq!(c2pa["soft_binding"], read["watermark_id"], "{read}");
    assert_eq!(read["c2pa_error"], Value::Null);

    // The same pixels without the manifest: the mark is all that is left.
    let image = easel_media::decode_untrusted(&png, &Default::default()).unwrap();
    let stripped = easel_media::encode(
        &image,
        easel_core::OutputFormat::Png,
        None,
        &easel_media::Metadata::none(),
    )
    .unwrap();
    let read: Value = detect(stripped).await.unwrap().json().await.unwrap();
    assert_eq!(read["watermarked"], true, "{read}");
    assert_eq!(read["c2pa"], Value::Null, "{read}");
}
