//! The quality score: every image is scored against its prompt after the
//! engine, the score is on the image record, and it is reproducible.

use serde_json::{Value, json};

use crate::helpers::{TestApp, small_request, spawn_app, spawn_app_with};

/// Generates one image synchronously and returns its stored record.
async fn record_of(app: &TestApp, request: &Value) -> Value {
    let r = app.generate(request).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    app.get_image(body["data"][0]["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap()
}

fn stages(record: &Value) -> Vec<String> {
    record["timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["stage"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn every_image_is_scored_against_its_prompt_reproducibly() {
    let app = spawn_app().await;
    let mut request = small_request("a red apple");
    request["seed"] = json!(7);
    let first = record_of(&app, &request).await;
    let score = first["quality_score"]
        .as_f64()
        .unwrap_or_else(|| panic!("no quality_score: {first}"));
    assert!((-1.0..=1.0).contains(&score), "{score}");
    assert!(stages(&first).contains(&"score".to_string()), "{first}");

    // Same model, parameters and seed: same pixels, same score.
    let second = record_of(&app, &request).await;
    assert_eq!(second["quality_score"], first["quality_score"]);

    // The score depends on the prompt it is measured against.
    let mut other = request.clone();
    other["prompt"] = json!("a smiling face with sunglasses");
    let third = record_of(&app, &other).await;
    assert_ne!(third["quality_score"], first["quality_score"], "{third}");
}

#[tokio::test]
async fn a_model_without_a_scorer_or_scoring_off_leaves_the_score_null() {
    // The fixture model ships no `scorer/`: with no scorer configured for
    // every model, its images are stored unscored.
    let own = spawn_app_with(|c| c.quality.scorer = None).await;
    let record = record_of(&own, &small_request("a red apple")).await;
    assert_eq!(record["quality_score"], Value::Null, "{record}");
    assert!(!stages(&record).contains(&"score".to_string()), "{record}");

    let off = spawn_app_with(|c| c.quality.enabled = false).await;
    let record = record_of(&off, &small_request("a red apple")).await;
    assert_eq!(record["quality_score"], Value::Null, "{record}");
    assert!(!stages(&record).contains(&"score".to_string()), "{record}");
}

#[tokio::test]
async fn a_configured_scorer_that_does_not_load_stops_startup_naming_the_key() {
    let data = tempfile::tempdir().unwrap();
    let mut config = crate::helpers::test_config(data.path());
    config.quality.scorer = Some(data.path().join("no-such-scorer"));
    let text = crate::helpers::startup_error(config).await;
    assert!(text.contains("quality.scorer"), "{text}");
    assert!(text.contains("no-such-scorer"), "{text}");
}
