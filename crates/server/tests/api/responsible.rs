//! Responsible generation through the API: the prompt policy at the edge,
//! image moderation and the near-copy check after the engine, and the
//! provenance every image carries (watermark, C2PA, PNG metadata), each
//! recorded on the job, the image and the audit log.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use easel_core::OutputFormat;
use easel_store::AuditQuery;
use serde_json::{Value, json};

use crate::helpers::{assert_error, fixture_model, small_request, spawn_app, spawn_app_with};

fn b64(body: &Value, i: usize) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(body["data"][i]["b64_json"].as_str().unwrap())
        .unwrap()
}

/// Generates synchronously: the first image's bytes and its stored record.
async fn generate_one(app: &crate::helpers::TestApp, request: &Value) -> (Vec<u8>, Value) {
    let r = app.generate(request).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let record: Value = app
        .get_image(body["data"][0]["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    (b64(&body, 0), record)
}

async fn audit(app: &crate::helpers::TestApp, event_type: &str) -> Vec<easel_store::AuditEvent> {
    app.jobs
        .db()
        .list_audit(&AuditQuery {
            event_type: Some(event_type.into()),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// Polls a job until it is terminal.
async fn finished(app: &crate::helpers::TestApp, id: &str) -> Value {
    for _ in 0..600 {
        let job: Value = app.get_job(id).await.json().await.unwrap();
        if ["succeeded", "failed", "rejected", "cancelled"]
            .contains(&job["status"].as_str().unwrap())
        {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {id} did not finish");
}

#[tokio::test]
async fn every_image_carries_a_watermark_content_credentials_and_metadata() {
    // The bundled model: what users get (the engine's pixel-space fixture
    // draws black-and-white noise, which carries no readable mark).
    let app = spawn_app_with(|c| {
        c.models = vec![easel_config::ModelEntry {
            name: "emoji".into(),
            path: crate::helpers::bundled_model(),
        }];
        c.default_model = Some("emoji".into());
    })
    .await;
    let r = app
        .generate(&json!({"model": "emoji", "prompt": "a red apple", "seed": 7}))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let png = b64(&body, 0);
    let id = body["data"][0]["id"].as_str().unwrap();
    let record: Value = app.get_image(id).await.json().await.unwrap();

    // The stages ran in the documented order and were timed.
    let stages: Vec<&str> = record["timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        [
            "text_encode",
            "denoise",
            "decode",
            "upscale",
            "watermark",
            "moderation",
            "memorization",
            "score",
            "encode",
            "sign"
        ]
    );

    // Small outputs are upscaled to the watermark's minimum.
    let side = easel_media::WATERMARK_MIN_SIDE;
    assert!(
        record["width"].as_u64().unwrap() >= u64::from(side),
        "{record}"
    );
    assert_eq!(record["width"], record["height"]);

    // The watermark reads back and names this image's record.
    let pixels = easel_media::decode_untrusted(&png, &Default::default()).unwrap();
    let reading = easel_media::detect_watermark(&pixels).expect("the watermark reads back");
    assert_eq!(json!(reading.payload.id()), record["watermark_id"]);

    // The metadata names the image, its watermark and its parameters.
    let text = easel_media::read_png_text(&png).unwrap();
    let parameters = &text.iter().find(|(k, _)| k == "parameters").unwrap().1;
    assert!(parameters.starts_with("a red apple\n"), "{parameters}");
    assert!(parameters.contains("Seed: 7"), "{parameters}");
    let easel: Value =
        serde_json::from_str(&text.iter().find(|(k, _)| k == "easel").unwrap().1).unwrap();
    assert_eq!(easel["image_id"], id);
    assert_eq!(easel["watermark_id"], record["watermark_id"]);
    assert_eq!(easel["model_hash"], record["model_hash"]);

    // C2PA: valid, trusted with the generated CA, and says what made it.
    let ca = std::fs::read_to_string(app.data_dir.path().join("c2pa/ca.pem")).unwrap();
    let summary = easel_media::read_c2pa(&png, OutputFormat::Png, Some(&ca))
        .unwrap()
        .expect("a manifest");
    assert_eq!(summary.validation_state, "Trusted", "{summary:?}");
    assert!(
        summary.actions.iter().any(|a| a == "c2pa.created"),
        "{summary:?}"
    );
    assert!(
        summary
            .digital_source_type
            .as_deref()
            .is_some_and(|t| t.ends_with("trainedAlgorithmicMedia")),
        "{summary:?}"
    );
    assert_eq!(json!(summary.model_hash), record["model_hash"]);
    // The watermark is bound to the manifest (C2PA soft binding).
    assert_eq!(json!(summary.soft_binding), record["watermark_id"]);

    // Moderation ran and allowed it.
    assert_eq!(record["moderation"]["nsfw"]["action"], "allow", "{record}");
    assert_eq!(record["flags"], json!([]));
}

#[tokio::test]
async fn the_same_seed_gives_the_same_pixels_and_the_same_watermark() {
    let app = spawn_app().await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (bytes, record) = generate_one(&app, &small_request("a blue circle")).await;
        let pixels = easel_media::decode_untrusted(&bytes, &Default::default()).unwrap();
        seen.push((pixels, record["watermark_id"].clone()));
    }
    assert_eq!(
        seen[0].0, seen[1].0,
        "same model, parameters and seed: same pixels"
    );
    assert_eq!(seen[0].1, seen[1].1);
}

#[tokio::test]
async fn jpeg_and_webp_outputs_are_signed_too() {
    let app = spawn_app().await;
    let ca = std::fs::read_to_string(app.data_dir.path().join("c2pa/ca.pem")).unwrap();
    for (format, kind) in [("jpeg", OutputFormat::Jpeg), ("webp", OutputFormat::Webp)] {
        let mut request = small_request("a green leaf");
        request["output_format"] = json!(format);
        let body: Value = app.generate(&request).await.json().await.unwrap();
        let bytes = b64(&body, 0);
        let summary = easel_media::read_c2pa(&bytes, kind, Some(&ca)).unwrap();
        assert_eq!(summary.expect(format).validation_state, "Trusted");
    }
}

#[tokio::test]
async fn without_include_prompt_the_file_does_not_carry_the_prompt() {
    let app = spawn_app_with(|c| c.provenance.include_prompt = false).await;
    let (bytes, record) = generate_one(&app, &small_request("my secret campaign")).await;
    let text = easel_media::read_png_text(&bytes).unwrap();
    assert!(!text.is_empty());
    for (key, value) in &text {
        assert!(!value.contains("secret"), "{key}: {value}");
    }
    // The database record keeps it.
    assert_eq!(record["prompt"], "my secret campaign");
}

fn rules(terms: Value) -> easel_policy::prompt::PromptPolicyConfig {
    serde_json::from_value(
        json!({ "blocked_terms": terms, "blocked_patterns": [], "concepts": [] }),
    )
    .unwrap()
}

#[tokio::test]
async fn a_blocked_prompt_gets_400_with_its_category_and_no_job() {
    let app = spawn_app_with(|c| {
        c.moderation.prompt =
            rules(json!([{ "category": "test_category", "term": "forbiddenword" }]));
    })
    .await;
    // Leetspeak and a zero-width space do not get past it.
    for prompt in ["a f0rbiddenw0rd apple", "a forbidden\u{200b}word apple"] {
        let r = app.generate(&small_request(prompt)).await;
        assert_eq!(r.status(), 400, "{prompt}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "prompt_rejected");
        assert_eq!(body["error"]["param"], "prompt");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("test_category"), "{message}");
        assert!(
            !message.contains("forbiddenword"),
            "the rule is not revealed: {message}"
        );
    }
    let r = app.create_job(&small_request("forbiddenword"), None).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        app.count_rows("jobs").await,
        0,
        "a blocked prompt stores no job"
    );
    let events = audit(&app, "moderation.prompt_blocked").await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].detail["decision"]["category"], "test_category");
    assert_eq!(events[0].detail["decision"]["action"], "block");
}

/// Generates synchronously and returns the stored job.
async fn job_of(app: &crate::helpers::TestApp, prompt: &str) -> easel_store::Job {
    let body: Value = app
        .generate(&small_request(prompt))
        .await
        .json()
        .await
        .unwrap();
    let job_id: easel_core::JobId = body["job_id"].as_str().unwrap().parse().unwrap();
    app.jobs.db().get_job(job_id).await.unwrap()
}

#[tokio::test]
async fn a_flagged_prompt_runs_and_every_decision_is_recorded_on_the_job() {
    let app = spawn_app_with(|c| {
        c.moderation.prompt = rules(json!([
            { "category": "watchlist", "term": "apple", "action": "flag" }
        ]));
    })
    .await;
    let job = job_of(&app, "a red apple").await;
    let policy = job.policy.expect("the decision is on the job");
    assert_eq!(policy["action"], "flag");
    assert_eq!(policy["category"], "watchlist");
    assert_eq!(audit(&app, "moderation.prompt_flagged").await.len(), 1);

    let job = job_of(&app, "a blue circle").await;
    assert_eq!(job.policy.unwrap()["action"], "allow");
}

#[tokio::test]
async fn an_image_above_the_block_threshold_is_never_stored_and_its_job_is_rejected() {
    let app = spawn_app_with(|c| {
        c.moderation.image = serde_json::from_value(json!({ "flag": 0.0, "block": 0.0 })).unwrap();
    })
    .await;
    let r = app.create_job(&small_request("a red apple"), None).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = finished(&app, &id).await;
    assert_eq!(job["status"], "rejected", "{job}");
    assert_eq!(job["error"]["code"], "image_rejected", "{job}");
    assert_eq!(app.count_images().await, 0);
    assert_eq!(app.count_image_files().await, 0);
    let events = audit(&app, "moderation.image_blocked").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].subject.as_deref(), Some(id.as_str()));
    assert_eq!(events[0].detail["nsfw"]["action"], "block");

    // A synchronous request gets a 400 with the same code.
    let r = app.generate(&small_request("a red apple")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "image_rejected"
    );
}

#[tokio::test]
async fn an_image_above_the_flag_threshold_is_stored_flagged_and_audited() {
    let app = spawn_app_with(|c| {
        c.moderation.image = serde_json::from_value(json!({ "flag": 0.0, "block": 1.0 })).unwrap();
    })
    .await;
    let (_, record) = generate_one(&app, &small_request("a red apple")).await;
    let id = record["id"].as_str().unwrap();
    assert_eq!(record["flags"], json!(["nsfw_flagged"]));
    assert_eq!(record["moderation"]["nsfw"]["action"], "flag");
    let events = audit(&app, "moderation.image_flagged").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].subject.as_deref(), Some(id));
}

#[tokio::test]
async fn moderation_low_uses_the_operators_low_thresholds_and_is_refused_without_them() {
    // `auto` blocks everything; `low` only flags.
    let app = spawn_app_with(|c| {
        c.moderation.image = serde_json::from_value(json!({ "flag": 0.0, "block": 0.0 })).unwrap();
        c.moderation.image_low =
            Some(serde_json::from_value(json!({ "flag": 0.0, "block": 1.0 })).unwrap());
    })
    .await;
    let mut auto = small_request("a red apple");
    auto["moderation"] = json!("auto");
    let r = app.generate(&auto).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "image_rejected"
    );

    let mut low = small_request("a red apple");
    low["moderation"] = json!("low");
    let (_, record) = generate_one(&app, &low).await;
    assert_eq!(record["flags"], json!(["nsfw_flagged"]), "{record}");
    assert_eq!(record["moderation"]["nsfw"]["action"], "flag");
    assert_eq!(record["moderation"]["nsfw"]["level"], "low");
    // Jobs keep the level to the worker.
    let r = app.create_job(&low, None).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());

    // Without `moderation.image_low` the server does not offer `low`.
    let strict = spawn_app().await;
    let err = assert_error(strict.generate(&low).await, 400, "unsupported_parameter").await;
    assert_eq!(err["error"]["param"], "moderation", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("moderation.image_low"),
        "{err}"
    );
    assert_eq!(strict.count_jobs().await, 0);
}

/// A copy of the fixture model with a training-set index of one entry.
fn model_with_index(dir: &Path, hash: &str) -> std::path::PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let model = dir.join("model");
    copy(&fixture_model(), &model);
    std::fs::create_dir_all(model.join("index")).unwrap();
    std::fs::write(
        model.join("index/phash.json"),
        json!({ "entries": [{ "hash": hash, "caption": "training image" }] }).to_string(),
    )
    .unwrap();
    model
}

#[tokio::test]
async fn an_output_near_a_training_image_is_flagged_as_a_near_copy() {
    let scratch = tempfile::tempdir().unwrap();
    let model = model_with_index(scratch.path(), "0000000000000000");
    // Every output is within 64 bits of anything: flagged.
    let near = spawn_app_with(|c| {
        c.models[0].path = model.clone();
        c.moderation.near_copy_max_distance = Some(64);
    })
    .await;
    let (_, record) = generate_one(&near, &small_request("a red apple")).await;
    assert_eq!(record["flags"], json!(["near_copy"]), "{record}");
    let memo = &record["moderation"]["memorization"];
    assert_eq!(memo["nearest_caption"], "training image");
    let hash = u64::from_str_radix(record["perceptual_hash"].as_str().unwrap(), 16).unwrap();
    assert_eq!(memo["nearest_distance"], json!(hash.count_ones()));
    assert_eq!(audit(&near, "moderation.image_flagged").await.len(), 1);

    // With a distance the output is not within, nothing is flagged.
    let far = spawn_app_with(|c| {
        c.models[0].path = model.clone();
        c.moderation.near_copy_max_distance = Some(hash.count_ones().saturating_sub(1));
    })
    .await;
    let (_, record) = generate_one(&far, &small_request("a red apple")).await;
    assert_eq!(record["flags"], json!([]), "{record}");
    assert_eq!(record["moderation"]["memorization"]["near_copy"], false);
}

#[tokio::test]
async fn a_missing_signing_certificate_stops_startup_naming_the_file() {
    let data = tempfile::tempdir().unwrap();
    let mut config = crate::helpers::test_config(data.path());
    config.provenance.certificate = Some(data.path().join("nope/chain.pem"));
    config.provenance.private_key = Some(data.path().join("nope/key.pem"));
    let text = crate::helpers::startup_error(config).await;
    assert!(text.contains("nope/chain.pem"), "{text}");
}

/// The AUTOMATIC1111 routes share the OpenAI routes' path: the same prompt
/// moderation (a blocked prompt is refused and stores nothing), and every
/// image they return carries the watermark and a trusted C2PA manifest
/// bound to it, and has its moderation record.
#[tokio::test]
async fn the_a1111_routes_get_the_same_moderation_watermark_and_c2pa() {
    let app = spawn_app_with(|c| {
        c.moderation.prompt =
            rules(json!([{ "category": "test_category", "term": "forbiddenword" }]));
    })
    .await;
    let r = app
        .post_json(
            "/sdapi/v1/txt2img",
            &json!({"prompt": "a forbiddenword apple", "width": 16, "height": 16, "steps": 2}),
        )
        .await;
    let body = assert_error(r, 400, "prompt_rejected").await;
    assert_eq!(body["error"]["param"], "prompt");
    assert_eq!(
        app.count_rows("jobs").await,
        0,
        "a blocked prompt stores no job"
    );
    assert_eq!(audit(&app, "moderation.prompt_blocked").await.len(), 1);

    let r = app
        .post_json(
            "/sdapi/v1/txt2img",
            &json!({"prompt": "a red apple", "width": 16, "height": 16, "steps": 2, "seed": 3}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    let png = base64::engine::general_purpose::STANDARD
        .decode(answer["images"][0].as_str().unwrap())
        .unwrap();
    let jobs: Value = app.list_jobs("limit=1").await.json().await.unwrap();
    let record: Value = app
        .get_image(jobs["data"][0]["image_ids"][0].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let pixels = easel_media::decode_untrusted(&png, &Default::default()).unwrap();
    let reading = easel_media::detect_watermark(&pixels).expect("the watermark reads back");
    assert_eq!(json!(reading.payload.id()), record["watermark_id"]);
    let ca = std::fs::read_to_string(app.data_dir.path().join("c2pa/ca.pem")).unwrap();
    let summary = easel_media::read_c2pa(&png, OutputFormat::Png, Some(&ca))
        .unwrap()
        .expect("a manifest");
    assert_eq!(summary.validation_state, "Trusted", "{summary:?}");
    assert_eq!(json!(summary.soft_binding), record["watermark_id"]);
    assert_eq!(record["moderation"]["nsfw"]["action"], "allow", "{record}");
}
