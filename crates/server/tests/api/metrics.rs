//! `GET /metrics`: the series that requests leave behind, asserted exactly
//! (counters by value, histograms by `_count` and bucket layout, never by
//! timing), and every family of the catalogue present.

use std::collections::BTreeMap;

use easel_server::auth::Scope;
use easel_telemetry::metrics::CATALOGUE;
use serde_json::{Value, json};

use crate::helpers::{MODEL, TestApp, small_request, spawn_app_with};

/// One scrape: `# TYPE` lines and samples keyed by their full text
/// (`name{labels}`), as written.
struct Scrape {
    text: String,
    types: BTreeMap<String, String>,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    fn parse(text: String) -> Self {
        let mut types = BTreeMap::new();
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                types.insert(name.to_string(), kind.to_string());
            } else if !line.starts_with('#') {
                let (series, value) = line.rsplit_once(' ').unwrap();
                samples.insert(series.to_string(), value.parse().unwrap());
            }
        }
        Self {
            text,
            types,
            samples,
        }
    }

    /// The value of one series; panics naming it when absent.
    fn value(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no series {series} in:\n{}", self.text))
    }

    /// Every series of family `prefix` (samples starting with it).
    fn series(&self, prefix: &str) -> BTreeMap<&str, f64> {
        self.samples
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), *v))
            .collect()
    }
}

async fn scrape(app: &TestApp) -> Scrape {
    let r = app.get("/metrics").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    Scrape::parse(text)
}

fn rules(terms: Value) -> easel_policy::prompt::PromptPolicyConfig {
    serde_json::from_value(
        json!({ "blocked_terms": terms, "blocked_patterns": [], "concepts": [] }),
    )
    .unwrap()
}

fn expected(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn owned(map: BTreeMap<&str, f64>) -> BTreeMap<String, f64> {
    map.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[tokio::test]
async fn requests_leave_exactly_their_series_in_metrics() {
    let app = spawn_app_with(|c| {
        c.worker.enabled = false;
        c.metrics.price_per_device_second = 0.5;
        c.moderation.prompt = rules(json!([{ "category": "test", "term": "forbiddenword" }]));
    })
    .await;

    // A queued job shows in the queue gauges.
    let r = app.create_job(&small_request("a red apple"), None).await;
    assert_eq!(r.status(), 202);
    let done_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = scrape(&app).await;
    assert_eq!(before.value("easel_queue_depth{tier=\"batch\"}"), 1.0);
    assert_eq!(before.value("easel_queue_depth{tier=\"realtime\"}"), 0.0);
    assert!(before.value("easel_queue_oldest_age_seconds{tier=\"batch\"}") >= 0.0);
    assert_eq!(
        before.value("easel_queue_oldest_age_seconds{tier=\"realtime\"}"),
        0.0
    );

    // Bad input: a validation error, an extractor's rejection, a blocked
    // prompt; a path with no route; a queued job cancelled.
    let r = app
        .create_job(&json!({ "model": MODEL, "prompt": "x", "n": 0 }), None)
        .await;
    assert_eq!(r.status(), 400);
    let r = app
        .client
        .post(app.url("/v1/jobs"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .create_job(&small_request("a forbiddenword apple"), None)
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(app.get("/no/such/route").await.status(), 404);
    let r = app.create_job(&small_request("a fox"), None).await;
    let cancel_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.cancel_job(&cancel_id).await.status(), 200);

    // The first job runs and succeeds.
    assert_eq!(app.run_pending_jobs().await, 1);
    let job: Value = app.get_job(&done_id).await.json().await.unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    let image_id = job["image_ids"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no image id in {job}"))
        .to_string();
    let record: Value = app.get_image(&image_id).await.json().await.unwrap();

    let m = scrape(&app).await;
    let model = format!("model=\"{MODEL}\"");

    // HTTP: route templates, never ids; `unmatched` for the 404.
    let http = owned(m.series("easel_http_requests_total"));
    assert_eq!(
        http,
        expected(&[
            (
                "easel_http_requests_total{route=\"/metrics\",method=\"GET\",status=\"200\"}",
                1.0
            ),
            (
                "easel_http_requests_total{route=\"/readyz\",method=\"GET\",status=\"200\"}",
                1.0
            ),
            (
                "easel_http_requests_total{route=\"/v1/jobs\",method=\"POST\",status=\"202\"}",
                2.0
            ),
            (
                "easel_http_requests_total{route=\"/v1/jobs\",method=\"POST\",status=\"400\"}",
                3.0
            ),
            (
                "easel_http_requests_total{route=\"/v1/jobs/{id}\",method=\"DELETE\",status=\"200\"}",
                1.0
            ),
            (
                "easel_http_requests_total{route=\"/v1/jobs/{id}\",method=\"GET\",status=\"200\"}",
                1.0
            ),
            (
                "easel_http_requests_total{route=\"/v1/images/{id}\",method=\"GET\",status=\"200\"}",
                1.0
            ),
            (
                "easel_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}",
                1.0
            ),
        ])
        .into_iter()
        // `/readyz` also answered 503 while the model loaded, as often as
        // the helper polled: not counted here.
        .chain(
            http.iter()
                .filter(|(k, _)| k.contains("/readyz") && k.contains("503"))
                .map(|(k, v)| (k.clone(), *v)),
        )
        .collect()
    );
    assert_eq!(
        m.value("easel_http_request_duration_seconds_count{route=\"/v1/jobs\",method=\"POST\"}"),
        5.0
    );

    // Jobs: one succeeded, one cancelled while queued; the bad requests
    // never became jobs.
    assert_eq!(
        owned(m.series("easel_jobs_finished_total")),
        expected(&[
            (
                &format!(
                    "easel_jobs_finished_total{{{model},tier=\"batch\",outcome=\"cancelled\",code=\"cancelled\"}}"
                ),
                1.0
            ),
            (
                &format!(
                    "easel_jobs_finished_total{{{model},tier=\"batch\",outcome=\"succeeded\",code=\"none\"}}"
                ),
                1.0
            ),
        ])
    );
    assert_eq!(
        m.value(&format!(
            "easel_generation_duration_seconds_count{{{model},tier=\"batch\"}}"
        )),
        1.0
    );
    assert_eq!(
        m.value(&format!("easel_images_generated_total{{{model}}}")),
        1.0
    );
    assert_eq!(
        m.value(&format!("easel_batch_images_bucket{{le=\"1.0\",{model}}}")),
        1.0
    );
    assert_eq!(
        m.value(&format!("easel_batch_images_count{{{model}}}")),
        1.0
    );

    // Stages: the queue wait of the job that ran, the engine's stages once
    // per call, each post-processing stage the image went through, the store.
    let mut stages = vec!["queue_wait", "text_encode", "denoise_step", "store"];
    for timing in record["timings"].as_array().unwrap() {
        let stage = timing["stage"].as_str().unwrap();
        match stage {
            "text_encode" => {}
            "denoise" => {}
            "decode" if timing["seconds"].as_f64().unwrap() == 0.0 => {}
            other => stages.push(other),
        }
    }
    stages.sort_unstable();
    let counted: Vec<(String, f64)> = m
        .series("easel_stage_duration_seconds_count")
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let mut wanted: Vec<(String, f64)> = stages
        .iter()
        .map(|s| {
            (
                format!("easel_stage_duration_seconds_count{{{model},stage=\"{s}\"}}"),
                1.0,
            )
        })
        .collect();
    wanted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(counted, wanted, "{}", m.text);

    // Moderation: two prompts allowed, one blocked; the image allowed.
    assert_eq!(
        owned(m.series("easel_moderation_decisions_total")),
        expected(&[
            (
                "easel_moderation_decisions_total{stage=\"image\",action=\"allow\"}",
                1.0
            ),
            (
                "easel_moderation_decisions_total{stage=\"prompt\",action=\"allow\"}",
                2.0
            ),
            (
                "easel_moderation_decisions_total{stage=\"prompt\",action=\"block\"}",
                1.0
            ),
        ])
    );
    assert_eq!(
        m.value(&format!("easel_memorization_flags_total{{{model}}}")),
        0.0
    );

    // The quality score when the image was scored.
    let quality = m.series("easel_image_quality_score_count");
    match record["quality_score"].as_f64() {
        Some(_) => assert_eq!(
            owned(quality),
            expected(&[(&format!("easel_image_quality_score_count{{{model}}}"), 1.0)])
        ),
        None => assert!(quality.is_empty(), "{quality:?}"),
    }

    // Device time, priced at 0.5 per second.
    let busy = m.value(&format!(
        "easel_device_busy_seconds_total{{{model},device=\"cpu\"}}"
    ));
    assert!(busy > 0.0, "{busy}");
    assert_eq!(m.value(&format!("easel_cost_total{{{model}}}")), busy * 0.5);

    // The model pool.
    assert_eq!(
        m.value(&format!("easel_model_load_seconds_count{{{model}}}")),
        1.0
    );
    assert_eq!(m.value("easel_models_loaded"), 1.0);
    let status = app.worker.models().status(MODEL).unwrap();
    assert_eq!(
        m.value(&format!("easel_model_memory_bytes{{{model}}}")),
        status.memory_bytes as f64
    );
    assert!(m.series("easel_model_errors_total").is_empty());

    // The queue is empty again; the process's CPU share is a ratio.
    assert_eq!(m.value("easel_queue_depth{tier=\"batch\"}"), 0.0);
    assert_eq!(
        m.value("easel_queue_oldest_age_seconds{tier=\"batch\"}"),
        0.0
    );
    let cpu = m.value("easel_cpu_utilization_ratio");
    assert!((0.0..=1.0).contains(&cpu), "{cpu}");
    assert_eq!(
        m.value(&format!(
            "easel_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );

    // Every family of the catalogue is served with its type, once it has a
    // series: here all but the model errors and circuit breakers (no model
    // failed), GPU
    // utilisation (no NVML) and, when the image was not scored, the
    // quality score. Those are left out, `# TYPE` included, as Prometheus's
    // own clients do.
    let mut empty = vec![
        "easel_model_errors",
        "easel_model_circuit_open",
        "easel_gpu_utilization_ratio",
        // No project passed a soft limit.
        "easel_quota_soft_limit",
        // No rollout's candidate failed a job.
        "easel_rollout_reroutes",
        // No reviewer gave a verdict.
        "easel_review_verdicts",
        "easel_review_score_agreement",
    ];
    if record["quality_score"].is_null() {
        empty.push("easel_image_quality_score");
    }
    for (name, kind) in CATALOGUE {
        if empty.contains(name) {
            assert!(!m.types.contains_key(*name), "{name}:\n{}", m.text);
            assert!(m.series(name).is_empty(), "{name}");
        } else {
            assert_eq!(
                m.types.get(*name).map(String::as_str),
                Some(*kind),
                "{name} in:\n{}",
                m.text
            );
        }
    }
    assert_eq!(m.types.len() + empty.len(), CATALOGUE.len(), "{}", m.text);
    assert!(!m.types.values().any(|k| k == "summary"));
}

#[tokio::test]
async fn metrics_need_no_api_key() {
    let (_, auth) = crate::helpers::auth_with_keys(&[("ops", &[Scope::Generate])]);
    let keyed = spawn_app_with(|c| {
        c.worker.enabled = false;
        c.auth = auth;
    })
    .await;
    assert_eq!(keyed.get("/metrics").await.status(), 200);
    assert_eq!(keyed.get("/v1/jobs").await.status(), 401);
}

#[tokio::test]
async fn metrics_can_be_turned_off_and_a_bad_price_stops_startup() {
    let app = spawn_app_with(|c| {
        c.worker.enabled = false;
        c.metrics.enabled = false;
    })
    .await;
    assert_eq!(app.get("/metrics").await.status(), 404);

    let data = tempfile::tempdir().unwrap();
    let mut config = crate::helpers::test_config(data.path());
    config.metrics.price_per_device_second = -1.0;
    let err = crate::helpers::startup_error(config).await;
    assert!(err.contains("metrics.price_per_device_second"), "{err}");
}

#[tokio::test]
async fn refused_rejected_and_overdue_jobs_are_counted_by_outcome_and_code() {
    let clock = easel_core::ManualClock::starting_now();
    let app = crate::helpers::spawn_app_with_clock(
        |c| {
            c.worker.enabled = false;
            c.queue.max_queued_batch = 2;
            c.moderation.image =
                serde_json::from_value(json!({ "flag": 0.0, "block": 0.0 })).unwrap();
        },
        clock.shared(),
    )
    .await;
    // One job image moderation will block, one that will be overdue, one
    // the full queue refuses.
    let r = app.create_job(&small_request("a red apple"), None).await;
    assert_eq!(r.status(), 202);
    let r = app
        .client
        .post(app.url("/v1/jobs"))
        .header("X-Easel-Timeout", "1")
        .json(&small_request("too late"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = app.create_job(&small_request("one too many"), None).await;
    assert_eq!(r.status(), 429);
    clock.advance(std::time::Duration::from_secs(2));
    assert_eq!(
        app.run_pending_jobs().await,
        1,
        "the overdue job never runs"
    );

    let m = scrape(&app).await;
    let model = format!("model=\"{MODEL}\"");
    let finished = |outcome: &str, code: &str| {
        format!(
            "easel_jobs_finished_total{{{model},tier=\"batch\",outcome=\"{outcome}\",code=\"{code}\"}}"
        )
    };
    assert_eq!(
        owned(m.series("easel_jobs_finished_total")),
        expected(&[
            (&finished("failed", "deadline_exceeded"), 1.0),
            (&finished("rejected", "image_rejected"), 1.0),
            (&finished("rejected", "queue_full"), 1.0),
        ])
    );
    assert_eq!(
        owned(m.series("easel_moderation_decisions_total")),
        expected(&[
            (
                "easel_moderation_decisions_total{stage=\"image\",action=\"block\"}",
                1.0
            ),
            (
                "easel_moderation_decisions_total{stage=\"prompt\",action=\"allow\"}",
                3.0
            ),
        ])
    );
    // Nothing succeeded: no latency, no images; the blocked job's engine
    // call and its queue wait still count.
    assert!(m.series("easel_generation_duration_seconds").is_empty());
    assert_eq!(
        m.value(&format!("easel_images_generated_total{{{model}}}")),
        0.0
    );
    assert_eq!(
        m.value(&format!("easel_batch_images_count{{{model}}}")),
        1.0
    );
    let stages: Vec<String> = m
        .series("easel_stage_duration_seconds_count")
        .into_keys()
        .map(str::to_string)
        .collect();
    assert_eq!(
        stages,
        ["denoise_step", "queue_wait", "text_encode"]
            .map(|s| format!("easel_stage_duration_seconds_count{{{model},stage=\"{s}\"}}"))
    );
}
