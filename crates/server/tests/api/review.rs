//! Human review through the API: the sampled share over 1,000 delivered
//! images, two reviewers working the queue at once never given the same
//! item, verdicts checked, stored, counted and exported with the score's
//! agreement.

use std::collections::HashSet;

use easel_server::auth::Scope;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, auth_with_keys, small_request, spawn_app_with};

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn the_sampled_share_is_honoured_over_1000_images() {
    // Flagging off (no image classifier, no near-copy check), so every
    // item is a sampled one; 10 % sampled.
    let app = spawn_app_with(|c| {
        c.worker.enabled = false;
        c.review.sample_percent = 10.0;
        c.moderation.image_model = None;
        c.moderation.near_copy_max_distance = None;
        c.quality.enabled = false;
    })
    .await;
    for i in 0..100 {
        let mut request = small_request(&format!("a red apple, take {i}"));
        request["n"] = json!(10);
        request["seed"] = json!(i);
        assert_eq!(app.create_job(&request, None).await.status(), 202);
    }
    assert_eq!(app.run_pending_jobs().await, 100);
    assert_eq!(app.count_images().await, 1000);
    let text = app.get("/metrics").await.text().await.unwrap();
    let sampled = metric(
        &text,
        "easel_review_items_total{model=\"fixture\",reason=\"sampled\"}",
    );
    let flagged = metric(
        &text,
        "easel_review_items_total{model=\"fixture\",reason=\"flagged\"}",
    );
    println!("sampled {sampled} of 1000 images at 10 %");
    // Binomial(1000, 0.1): mean 100, sd 9.5; ±4 sd.
    assert!((62.0..=138.0).contains(&sampled), "{sampled}");
    assert_eq!(flagged, 0.0);
    let stats: Value = app.get("/v1/review/stats").await.json().await.unwrap();
    assert_eq!(stats["versions"][0]["pending"], sampled as u64, "{stats}");
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .request(method, app.url(path))
        .bearer_auth(key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

/// Takes items and judges them until the queue is empty: good when the
/// score is at least `cut`. Returns the items judged, and whether good.
async fn work_the_queue(app: &TestApp, key: &str, cut: f64) -> Vec<(String, bool)> {
    let mut judged = Vec::new();
    loop {
        let r = call(app, Method::GET, "/v1/review/next", key, None).await;
        if r.status() == 204 {
            return judged;
        }
        assert_eq!(r.status(), 200);
        let item: Value = r.json().await.unwrap();
        let id = item["image_id"].as_str().unwrap().to_string();
        assert!(
            item["url"].is_string() && item["prompt"].is_string(),
            "{item}"
        );
        let score = item["quality_score"].as_f64().unwrap();
        let verdict = if score >= cut { "good" } else { "bad" };
        let labels = if verdict == "bad" {
            json!(["off_prompt"])
        } else {
            json!([])
        };
        let r = call(
            app,
            Method::POST,
            &format!("/v1/review/{id}"),
            key,
            Some(json!({"verdict": verdict, "labels": labels})),
        )
        .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        judged.push((id, verdict == "good"));
    }
}

#[tokio::test]
async fn two_reviewers_never_get_the_same_item_and_verdicts_are_counted() {
    let (keys, auth) = auth_with_keys(&[
        ("rev-a", &[Scope::Review]),
        ("rev-b", &[Scope::Review]),
        ("maker", &[Scope::Generate]),
    ]);
    let app = spawn_app_with(move |c| {
        c.auth = auth;
        c.worker.enabled = false;
        c.review.sample_percent = 100.0;
    })
    .await;
    let (rev_a, rev_b, maker) = (&keys[0], &keys[1], &keys[2]);
    for i in 0..4 {
        let mut request = small_request(["a red apple", "a blue car"][i % 2]);
        request["n"] = json!(10);
        request["seed"] = json!(i * 100);
        let r = call(&app, Method::POST, "/v1/jobs", maker, Some(request)).await;
        assert_eq!(r.status(), 202);
    }
    assert_eq!(app.run_pending_jobs().await, 4);
    // A key without the review scope may not take items.
    assert_error(
        call(&app, Method::GET, "/v1/review/next", maker, None).await,
        403,
        "missing_scope",
    )
    .await;

    // Bad verdicts, and a verdict on an item someone else holds.
    let first: Value = call(&app, Method::GET, "/v1/review/next", rev_a, None)
        .await
        .json()
        .await
        .unwrap();
    let id = first["image_id"].as_str().unwrap().to_string();
    let again: Value = call(&app, Method::GET, "/v1/review/next", rev_a, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        again["image_id"],
        id.as_str(),
        "a reviewer keeps its item until it judges it"
    );
    let path = format!("/v1/review/{id}");
    let cases = [
        (json!({"verdict": "meh"}), 400, "invalid_verdict"),
        (
            json!({"verdict": "bad", "labels": ["ugly"]}),
            400,
            "invalid_label",
        ),
    ];
    for (body, status, code) in cases {
        assert_error(
            call(&app, Method::POST, &path, rev_a, Some(body)).await,
            status,
            code,
        )
        .await;
    }
    assert_error(
        call(
            &app,
            Method::POST,
            &path,
            rev_b,
            Some(json!({"verdict": "good"})),
        )
        .await,
        409,
        "lease_not_held",
    )
    .await;
    assert_error(
        call(
            &app,
            Method::POST,
            "/v1/review/img_missing",
            rev_a,
            Some(json!({"verdict": "good"})),
        )
        .await,
        404,
        "review_item_not_found",
    )
    .await;

    // The cut between good and bad: the median score of the 40 images.
    let mut scores = Vec::new();
    let jobs: Value = call(&app, Method::GET, "/v1/jobs?limit=10", maker, None)
        .await
        .json()
        .await
        .unwrap();
    for job in jobs["data"].as_array().unwrap() {
        for image in job["image_ids"].as_array().unwrap() {
            let path = format!("/v1/images/{}", image.as_str().unwrap());
            let record: Value = call(&app, Method::GET, &path, maker, None)
                .await
                .json()
                .await
                .unwrap();
            scores.push(record["quality_score"].as_f64().unwrap());
        }
    }
    assert_eq!(scores.len(), 40);
    scores.sort_by(f64::total_cmp);
    let cut = scores[20];

    // Both reviewers work the queue at once.
    let (a, b) = tokio::join!(
        work_the_queue(&app, rev_a, cut),
        work_the_queue(&app, rev_b, cut)
    );
    let (sa, sb): (HashSet<&String>, HashSet<&String>) = (
        a.iter().map(|j| &j.0).collect(),
        b.iter().map(|j| &j.0).collect(),
    );
    let good = a.iter().chain(&b).filter(|j| j.1).count() as u64;
    assert!(
        (10..=30).contains(&good),
        "{good} good of 40: the cut is near the median"
    );
    println!("reviewer a judged {}, reviewer b {}", a.len(), b.len());
    assert!(sa.is_disjoint(&sb), "an item went to both reviewers");
    assert_eq!(a.len() + b.len(), 40, "every item judged exactly once");
    assert!(sa.contains(&id), "the leased item stayed with its reviewer");
    assert_error(
        call(
            &app,
            Method::POST,
            &path,
            rev_a,
            Some(json!({"verdict": "good"})),
        )
        .await,
        409,
        "already_reviewed",
    )
    .await;

    // Stored, counted and exported.
    let stats: Value = call(&app, Method::GET, "/v1/review/stats", rev_a, None)
        .await
        .json()
        .await
        .unwrap();
    let v = &stats["versions"][0];
    assert_eq!(
        (v["pending"].as_u64(), v["good"].as_u64(), v["bad"].as_u64()),
        (Some(0), Some(good), Some(40 - good)),
        "{stats}"
    );
    assert_eq!(v["approval_rate"], good as f64 / 40.0);
    assert_eq!(
        stats["mine"]["good"].as_u64().unwrap() + stats["mine"]["bad"].as_u64().unwrap(),
        a.len() as u64
    );
    // Verdicts that follow the score: it predicts them perfectly.
    assert_eq!(stats["score_agreement"]["fixture"], 1.0, "{stats}");
    let text = app.get("/metrics").await.text().await.unwrap();
    let version = v["model_version"]
        .as_str()
        .unwrap()
        .trim_start_matches("blake3:")[..12]
        .to_string();
    assert_eq!(
        metric(
            &text,
            &format!(
                "easel_review_verdicts_total{{model=\"fixture\",version=\"{version}\",verdict=\"bad\"}}"
            )
        ),
        (40 - good) as f64,
        "{text}"
    );
    assert_eq!(
        metric(&text, "easel_review_score_agreement{model=\"fixture\"}"),
        1.0
    );
}
