//! The exposition's shape: names, types, bucket layouts, values.

use super::*;

fn lines(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// The `le` values of a histogram series, in order.
fn bucket_bounds(text: &str, series_prefix: &str) -> Vec<String> {
    lines(text, series_prefix)
        .iter()
        .map(|l| {
            let start = l.find("le=\"").unwrap() + 4;
            let end = start + l[start..].find('"').unwrap();
            l[start..end].to_string()
        })
        .collect()
}

fn expected_bounds(bounds: &[f64]) -> Vec<String> {
    bounds
        .iter()
        .map(|b| format!("{b:?}"))
        .chain(["+Inf".to_string()])
        .collect()
}

/// One series in every family.
fn touch_every_family(m: &Metrics) {
    m.http_request("/metrics", "GET", 200, 0.001);
    m.generation("m", "batch", 1.0);
    m.stage("m", "queue_wait", 0.1);
    m.job_finished("m", "batch", JobOutcome::Succeeded, NO_CODE);
    m.set_queue("batch", 0, 0.0);
    m.batch("m", 1);
    m.images_generated("m", 1);
    m.quality_score("m", 0.3);
    m.moderation(ModerationStage::Image, ModerationAction::Allow);
    m.memorization_flag("m");
    m.model_loaded("m", 0.5);
    m.set_models(&[ModelGauge {
        name: "m",
        loaded: true,
        bytes: 1,
    }]);
    m.model_error("m", "engine_panic");
    m.set_circuit_open("m", true);
    m.device_busy("m", "cpu", 0.5);
    m.project_images("other", 1, 0.5);
    m.quota_soft_limit("other");
    m.rollout_event("m", "started", 20.0);
    m.rollout_reroute("m", "model_failed");
    m.rollout_shadow_job("m", "submitted");
    m.review_enqueued("m", "sampled");
    m.review_verdict("m", Some("blake3:abc"), "good");
    m.review_score_agreement("m", 0.8);
    m.prompt_drift("1d", 0.1);
    m.version_job(
        "m",
        Some("blake3:abc"),
        JobOutcome::Succeeded,
        Some(1.0),
        &[0.3],
    );
    m.f()
        .gpu_utilization
        .get_or_create(&GpuLabels { gpu: "0".into() })
        .set(0.5);
}

#[test]
fn every_family_of_the_catalogue_is_registered_with_its_type() {
    let m = Metrics::default();
    touch_every_family(&m);
    let text = m.render();
    for (name, kind) in CATALOGUE {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} {kind} missing from:\n{text}"
        );
    }
    let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert_eq!(families, CATALOGUE.len(), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(!text.contains("summary"), "{text}");
}

/// The catalogue table of docs/observability.md lists exactly the families
/// of [`CATALOGUE`], each with its type: counters under their exposed name
/// (with `_total`), gauges whatever their note (`gauge (scrape)`).
#[test]
fn the_docs_catalogue_lists_exactly_the_families_served() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/observability.md");
    let docs = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut documented = std::collections::BTreeSet::new();
    for row in docs.lines().filter(|l| l.starts_with("| easel_")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (name, kind) = (cells[1], cells[2]);
        let kind = kind.split_whitespace().next().unwrap_or_default();
        let name = if kind == "counter" {
            name.strip_suffix("_total")
                .unwrap_or_else(|| panic!("counter {name} is documented without `_total`"))
        } else {
            name
        };
        assert!(
            documented.insert((name, kind)),
            "{name} is documented twice"
        );
    }
    let served: std::collections::BTreeSet<(&str, &str)> = CATALOGUE.iter().copied().collect();
    assert_eq!(served.len(), CATALOGUE.len(), "a family is listed twice");
    assert_eq!(
        documented,
        served,
        "documented but not served: {:?}; served but not documented: {:?}",
        documented.difference(&served).collect::<Vec<_>>(),
        served.difference(&documented).collect::<Vec<_>>()
    );
}

/// Like Prometheus's Go client, a family without series is left out of
/// the exposition, `# TYPE` line included; the plain gauges always have one.
#[test]
fn a_fresh_registry_holds_only_the_build_info_and_the_plain_gauges() {
    let text = Metrics::default().render();
    let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        samples,
        [
            "easel_models_loaded 0",
            "easel_cpu_utilization_ratio 0.0",
            &format!(
                "easel_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )
        ]
    );
}

#[test]
fn histograms_have_exactly_the_catalogue_buckets() {
    let m = Metrics::default();
    m.http_request("/v1/jobs", "POST", 202, 0.01);
    m.generation("m", "realtime", 1.0);
    m.stage("m", "denoise_step", 0.01);
    m.batch("m", 2);
    m.quality_score("m", 0.3);
    m.model_loaded("m", 1.5);
    let text = m.render();
    for (series, bounds) in [
        ("easel_http_request_duration_seconds_bucket", HTTP_SECONDS),
        (
            "easel_generation_duration_seconds_bucket",
            GENERATION_SECONDS,
        ),
        ("easel_stage_duration_seconds_bucket", STAGE_SECONDS),
        ("easel_batch_images_bucket", BATCH_IMAGES),
        ("easel_image_quality_score_bucket", QUALITY_SCORE),
        ("easel_model_load_seconds_bucket", MODEL_LOAD_SECONDS),
    ] {
        assert_eq!(
            bucket_bounds(&text, series),
            expected_bounds(bounds),
            "{series}"
        );
    }
    assert!(
        text.contains("easel_batch_images_bucket{le=\"2.0\",model=\"m\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("easel_batch_images_bucket{le=\"1.0\",model=\"m\"} 0\n"),
        "{text}"
    );
}

#[test]
fn counters_render_with_total_and_their_labels() {
    let m = Metrics::default();
    m.http_request("/v1/jobs/{id}", "GET", 404, 0.001);
    m.http_request("/v1/jobs/{id}", "GET", 404, 0.001);
    m.job_finished("m", "batch", JobOutcome::Rejected, "queue_full");
    m.job_finished("m", "realtime", JobOutcome::Succeeded, NO_CODE);
    m.moderation(ModerationStage::Prompt, ModerationAction::Block);
    m.memorization_flag("m");
    m.images_generated("m", 3);
    m.model_error("m", "corrupt_weights");
    let text = m.render();
    for expected in [
        "easel_http_requests_total{route=\"/v1/jobs/{id}\",method=\"GET\",status=\"404\"} 2",
        "easel_http_request_duration_seconds_count{route=\"/v1/jobs/{id}\",method=\"GET\"} 2",
        "easel_jobs_finished_total{model=\"m\",tier=\"batch\",outcome=\"rejected\",code=\"queue_full\"} 1",
        "easel_jobs_finished_total{model=\"m\",tier=\"realtime\",outcome=\"succeeded\",code=\"none\"} 1",
        "easel_moderation_decisions_total{stage=\"prompt\",action=\"block\"} 1",
        "easel_memorization_flags_total{model=\"m\"} 1",
        "easel_images_generated_total{model=\"m\"} 3",
        "easel_model_errors_total{model=\"m\",code=\"corrupt_weights\"} 1",
    ] {
        assert!(
            text.contains(&format!("{expected}\n")),
            "{expected}\n{text}"
        );
    }
}

#[test]
fn device_time_is_priced_and_an_unset_price_costs_nothing() {
    let priced = Metrics::new(0.5);
    priced.device_busy("m", "cpu", 3.0);
    let text = priced.render();
    assert!(
        text.contains("easel_device_busy_seconds_total{model=\"m\",device=\"cpu\"} 3.0\n"),
        "{text}"
    );
    assert!(
        text.contains("easel_cost_total{model=\"m\"} 1.5\n"),
        "{text}"
    );
    let free = Metrics::default();
    free.device_busy("m", "cpu", 3.0);
    assert!(
        free.render()
            .contains("easel_cost_total{model=\"m\"} 0.0\n"),
        "the cost series exists at 0"
    );
    assert_eq!(Metrics::new(f64::NAN).inner.price_per_device_second, 0.0);
}

#[test]
fn scrape_time_gauges_describe_the_present() {
    let m = Metrics::default();
    m.set_queue("realtime", 3, 12.5);
    m.set_queue("batch", 0, 0.0);
    m.set_models(&[
        ModelGauge {
            name: "a",
            loaded: true,
            bytes: 1024,
        },
        ModelGauge {
            name: "b",
            loaded: false,
            bytes: 4096,
        },
    ]);
    let text = m.render();
    for expected in [
        "easel_queue_depth{tier=\"realtime\"} 3",
        "easel_queue_depth{tier=\"batch\"} 0",
        "easel_queue_oldest_age_seconds{tier=\"realtime\"} 12.5",
        "easel_models_loaded 1",
        "easel_model_memory_bytes{model=\"a\"} 1024",
        "easel_model_memory_bytes{model=\"b\"} 0",
        "easel_images_generated_total{model=\"b\"} 0",
        "easel_cost_total{model=\"b\"} 0.0",
    ] {
        assert!(
            text.contains(&format!("{expected}\n")),
            "{expected}\n{text}"
        );
    }
}

#[test]
fn two_handles_of_one_application_share_series_and_two_applications_do_not() {
    let a = Metrics::default();
    let a2 = a.clone();
    let b = Metrics::default();
    a2.images_generated("m", 1);
    assert!(
        a.render()
            .contains("easel_images_generated_total{model=\"m\"} 1\n")
    );
    assert!(!b.render().contains("easel_images_generated_total{model"));
}

#[test]
fn cpu_utilisation_is_a_ratio() {
    let m = Metrics::default();
    // Burn a little CPU so the sample has something to see.
    let mut x = 0u64;
    for i in 0..2_000_000u64 {
        x = x.wrapping_mul(31).wrapping_add(i);
    }
    std::hint::black_box(x);
    m.sample_cpu();
    let value: f64 = lines(&m.render(), "easel_cpu_utilization_ratio ")[0]
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.0..=1.0).contains(&value), "{value}");
}

#[test]
fn version_labels_are_short_and_bounded_per_model() {
    let hash = |i: u32| format!("blake3:{}", i.to_string().repeat(64));
    let m = Metrics::new(0.0);
    assert_eq!(m.version_label("a", None), "none");
    let labels: Vec<String> = (0..6)
        .map(|i| m.version_label("a", Some(&hash(i))))
        .collect();
    assert_eq!(labels[0], "000000000000");
    assert_eq!(labels[3], "333333333333");
    assert_eq!((labels[4].as_str(), labels[5].as_str()), ("other", "other"));
    // A known version keeps its label; another model has its own budget.
    assert_eq!(m.version_label("a", Some(&hash(1))), labels[1]);
    assert_eq!(m.version_label("b", Some(&hash(9))), "999999999999");
    m.version_job(
        "a",
        Some(&hash(1)),
        JobOutcome::Succeeded,
        Some(1.5),
        &[0.25],
    );
    let text = m.render();
    assert!(
        text.contains(
            "easel_version_jobs_total{model=\"a\",version=\"111111111111\",outcome=\"succeeded\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("easel_version_quality_score_count{model=\"a\",version=\"111111111111\"} 1"),
        "{text}"
    );
}
